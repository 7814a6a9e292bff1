package daemon

import (
	"fmt"
	"sync"
	"time"
)

// Slow start-up stages and the service manager's start timeout.
//
// systemd kills a Type=notify service that has not said READY=1 within TimeoutStartSec (90 s
// by default). Two stages before READY=1 can take longer on a kiosk's SD card: the check child
// (a full check of the journal file, bounded by its own time-out) and the first open of a
// journal without a checkpoint (an old journal: its whole hash chain is verified once). While
// such a stage runs, kioskd sends EXTEND_TIMEOUT_USEC= every extendEvery, each time asking for
// extendBy more from now, and STATUS=starting: <stage>; it stops at the stage's own limit, so
// a start-up that hangs is still killed (TimeoutStartSec after the last extension).
const (
	extendEvery = 10 * time.Second
	extendBy    = 30 * time.Second
	// checkStageLimit covers the check child (journal.CheckInChild's own bound is 5 minutes).
	checkStageLimit = 6 * time.Minute
	// openStageLimit covers the open of the journal, with a full verify at worst.
	openStageLimit = 30 * time.Minute
)

// startStage runs fn as the named start-up stage, extending the service manager's start
// timeout while it runs (at most limit). Without a Notifier it only runs fn.
func (s *System) startStage(name string, limit time.Duration, fn func() error) error {
	n := s.opts.Notifier
	if n == nil {
		return fn()
	}
	_ = n.Notify("STATUS=starting: " + name)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		extend := func() {
			// Notify may block while the service manager does not read its socket; it is
			// on this goroutine, never on the start-up's.
			if err := n.Notify(fmt.Sprintf("EXTEND_TIMEOUT_USEC=%d", extendBy.Microseconds())); err != nil {
				s.log.Warn("sd_notify", "err", err)
			}
		}
		extend()
		t := time.NewTicker(extendEvery)
		defer t.Stop()
		end := time.NewTimer(limit)
		defer end.Stop()
		for {
			select {
			case <-done:
				return
			case <-end.C:
				s.log.Warn("start-up stage past its limit; the start timeout is no longer extended", "stage", name, "limit", limit)
				return
			case <-t.C:
				extend()
			}
		}
	})
	err := fn()
	close(done)
	wg.Wait()
	return err
}
