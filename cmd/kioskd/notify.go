package main

import (
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
)

// systemdNotifier sends state lines to systemd's notification socket (Type=notify). Outside
// systemd (no NOTIFY_SOCKET) every line is dropped without error.
type systemdNotifier struct{}

func (systemdNotifier) Notify(state string) error {
	_, err := sd.SdNotify(false, state)
	return err
}

// watchdogPlan is how often kioskd probes itself and whether systemd expects WATCHDOG=1:
// a third of WatchdogSec when it is set (one slow probe must not get a healthy kiosk
// killed), otherwise every 10 s, for the STATUS lines only.
func watchdogPlan() (every time.Duration, feed bool, err error) {
	wd, err := sd.SdWatchdogEnabled(false)
	if err != nil || wd <= 0 {
		return 10 * time.Second, false, err
	}
	return max(wd/3, 100*time.Millisecond), true, nil
}
