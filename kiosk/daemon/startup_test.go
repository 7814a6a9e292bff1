package daemon

import (
	"log/slog"
	"testing"
	"testing/synctest"
	"time"
)

// A slow start-up stage (an old journal's first full check) extends systemd's start timeout
// every extendEvery while it runs, and no longer once past its limit: a start-up that makes
// progress is not killed by TimeoutStartSec, one that hangs still is.
func TestStartStageExtendsStartTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := &notes{}
		s := &System{opts: Options{Notifier: n}, log: slog.New(slog.DiscardHandler)}
		start := time.Now()
		if err := s.startStage("opening the journal", time.Hour, func() error {
			time.Sleep(95 * time.Second) // the bubble's clock: a verify taking 95 s
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took != 95*time.Second {
			t.Fatalf("stage took %v", took)
		}
		lines := n.take()
		if len(lines) == 0 || lines[0] != "STATUS=starting: opening the journal" {
			t.Fatalf("lines %q", lines)
		}
		// At 0, 10, ... 90 s: each asks for 30 s more, so the timeout never runs out.
		if got := count(lines, "EXTEND_TIMEOUT_USEC=30000000"); got != 10 {
			t.Fatalf("%d extensions in 95 s, want 10: %q", got, lines)
		}
		synctest.Wait()
		if l := n.take(); len(l) != 0 {
			t.Fatalf("extended after the stage ended: %q", l)
		}

		// Past its limit the stage is no longer covered.
		if err := s.startStage("checking the journal", 25*time.Second, func() error {
			time.Sleep(10 * time.Minute)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if got := count(n.take(), "EXTEND_TIMEOUT_USEC=30000000"); got != 3 {
			t.Fatalf("%d extensions with a 25 s limit, want 3 (0, 10, 20 s)", got)
		}

		// Without a service manager the stage just runs.
		s.opts.Notifier = nil
		ran := false
		if err := s.startStage("x", time.Second, func() error { ran = true; return nil }); err != nil || !ran {
			t.Fatal("stage did not run")
		}
	})
}
