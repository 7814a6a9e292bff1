//go:build kioskd_failpoints

package session

import "sync"

// crashHooks holds the per-engine crash hooks of in-process crash tests (the acceptor
// conformance suite runs several engines, one after another, each with its own).
var crashHooks sync.Map // *Engine → func(string)

// SetCrashHook makes e call f at each named crash point (the failpoint names), after the
// process-wide failpoint hook. It exists only in builds with the kioskd_failpoints tag.
// The registry holds e (and whatever f reaches) until SetCrashHook(e, nil) removes it: a
// harness that runs many engines in one process must remove each one's hook when done.
func SetCrashHook(e *Engine, f func(point string)) {
	if f == nil {
		crashHooks.Delete(e)
		return
	}
	crashHooks.Store(e, f)
}

func (e *Engine) crashHook(point string) {
	if f, ok := crashHooks.Load(e); ok {
		f.(func(string))(point)
	}
}
