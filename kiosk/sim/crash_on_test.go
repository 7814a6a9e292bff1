//go:build kioskd_failpoints

package sim

import "github.com/kioskd/kioskd/kiosk/session"

// This build has the engine's crash points (the kioskd_failpoints tag).
const crashHooks = true

func installCrashHook(e *session.Engine, f func(string)) { session.SetCrashHook(e, f) }
