//go:build kioskd_failpoints

package conformance

import "github.com/kioskd/kioskd/kiosk/session"

// crashHooks: this build has the engine's crash points (the kioskd_failpoints tag).
const crashHooks = true

func installCrashHook(e *session.Engine, f func(string)) { session.SetCrashHook(e, f) }
