//go:build kioskd_failpoints

package failpoint

import "sync/atomic"

// Enabled reports whether this build carries failpoints.
const Enabled = true

var hook atomic.Pointer[func(string)]

// Set installs the function every Hit calls (nil removes it).
func Set(f func(point string)) {
	if f == nil {
		hook.Store(nil)
		return
	}
	hook.Store(&f)
}

// Hit calls the installed hook with the point's name.
func Hit(point string) {
	if f := hook.Load(); f != nil {
		(*f)(point)
	}
}
