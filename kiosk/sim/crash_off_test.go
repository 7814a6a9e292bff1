//go:build !kioskd_failpoints

package sim

import "github.com/kioskd/kioskd/kiosk/session"

// Without the kioskd_failpoints tag the engine has no crash points: hosts die only at random
// instants.
const crashHooks = false

func installCrashHook(*session.Engine, func(string)) {}
