package daemon

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kioskd/kioskd/kiosk/session"
)

// notes records the lines sent to the service manager.
type notes struct {
	mu    sync.Mutex
	lines []string
}

func (n *notes) Notify(s string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.lines = append(n.lines, s)
	return nil
}

// take returns the lines sent since the last take.
func (n *notes) take() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	l := n.lines
	n.lines = nil
	return l
}

func count(lines []string, s string) int {
	n := 0
	for _, l := range lines {
		if l == s {
			n++
		}
	}
	return n
}

// fakeEngine answers status requests with st, or, while stuck, never picks them up (as a run
// loop blocked in a call that does not come back): the request ends with its context.
type fakeEngine struct {
	mu    sync.Mutex
	st    session.Status
	stuck bool
	ended bool
}

func (f *fakeEngine) Status(ctx context.Context) (session.Status, error) {
	f.mu.Lock()
	st, stuck, ended := f.st, f.stuck, f.ended
	f.mu.Unlock()
	if ended {
		return session.Status{}, session.ErrNotRunning
	}
	if stuck {
		<-ctx.Done()
		return session.Status{}, ctx.Err()
	}
	return st, nil
}

func (f *fakeEngine) set(fn func(f *fakeEngine)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// TestWatchdogFeedsOnlyWhileTheEngineAnswers: a healthy engine gets WATCHDOG=1 every
// interval; an engine whose run loop is stuck (a status request never answered) stops the
// feeding for as long as it is stuck, which is what makes systemd restart the kiosk; a
// journal that cannot be read stops it too. Status lines follow the state.
func TestWatchdogFeedsOnlyWhileTheEngineAnswers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := &notes{}
		eng := &fakeEngine{st: session.Status{State: "idle"}}
		var jerr error
		var jmu sync.Mutex
		w := &Watchdog{Notifier: n, Every: 10 * time.Second, Feed: true, Timeout: 2 * time.Second, Engine: eng,
			Journal: func() error { jmu.Lock(); defer jmu.Unlock(); return jerr }}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); w.Run(ctx) }()

		synctest.Wait()
		if got := n.take(); !slices.Equal(got, []string{"STATUS=idle", "WATCHDOG=1"}) {
			t.Fatalf("first probe sent %q", got)
		}
		// 60 s healthy: one feed per interval, no repeated status.
		time.Sleep(60 * time.Second)
		synctest.Wait()
		if got := n.take(); count(got, "WATCHDOG=1") != 6 || len(got) != 6 {
			t.Fatalf("healthy minute sent %q, want 6 feeds", got)
		}

		// A state change is told once.
		eng.set(func(f *fakeEngine) {
			f.st = session.Status{State: "out_of_service", Reason: "[acceptor_jam]", Conditions: []string{"acceptor_jam"}}
		})
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if got := n.take(); !slices.Equal(got, []string{"STATUS=out of service: [acceptor_jam]", "WATCHDOG=1"}) {
			t.Fatalf("state change sent %q", got)
		}

		// Stuck: no feed at all for 60 s (systemd, WatchdogSec=30, would have restarted it).
		eng.set(func(f *fakeEngine) { f.stuck = true })
		time.Sleep(65 * time.Second) // past the last stuck probe's timeout
		synctest.Wait()
		got := n.take()
		if c := count(got, "WATCHDOG=1"); c != 0 {
			t.Fatalf("stuck engine still fed the watchdog %d times: %q", c, got)
		}
		if len(got) != 1 || !strings.HasPrefix(got[0], "STATUS=not responding: engine") {
			t.Fatalf("stuck engine: status lines %q", got)
		}

		// It answers again: feeding resumes and the status is told again.
		eng.set(func(f *fakeEngine) { f.stuck = false })
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if got := n.take(); !slices.Equal(got, []string{"STATUS=out of service: [acceptor_jam]", "WATCHDOG=1"}) {
			t.Fatalf("recovered engine sent %q", got)
		}

		// A journal that cannot be read stops the feeding too.
		jmu.Lock()
		jerr = errors.New("database not open")
		jmu.Unlock()
		time.Sleep(30 * time.Second)
		synctest.Wait()
		got = n.take()
		if count(got, "WATCHDOG=1") != 0 || len(got) == 0 || !strings.Contains(got[0], "journal not readable") {
			t.Fatalf("unreadable journal sent %q", got)
		}

		cancel()
		<-done
	})
}

// TestWatchdogStop: once the stop begins, STOPPING=1 is sent once and the watchdog is fed
// without probing (the engine is stopped during the stop, by design), until Run returns.
// An engine that ended on its own counts as the start of the stop.
func TestWatchdogStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := &notes{}
		eng := &fakeEngine{st: session.Status{State: "idle"}}
		stopping := make(chan struct{})
		w := &Watchdog{Notifier: n, Every: 10 * time.Second, Feed: true, Engine: eng, Stopping: stopping}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); w.Run(ctx) }()
		synctest.Wait()
		n.take()

		close(stopping)
		eng.set(func(f *fakeEngine) { f.stuck = true }) // would stop the feeding if probed
		synctest.Wait()
		if got := n.take(); !slices.Equal(got, []string{"STOPPING=1", "STATUS=stopping", "WATCHDOG=1"}) {
			t.Fatalf("stop sent %q", got)
		}
		time.Sleep(20 * time.Second)
		synctest.Wait()
		if got := n.take(); !slices.Equal(got, []string{"WATCHDOG=1", "WATCHDOG=1"}) {
			t.Fatalf("during the stop: %q", got)
		}
		cancel()
		<-done

		// Not started yet: no feed, nothing said. Then it runs, then it ends (System.Run
		// then stops the kiosk).
		n2 := &notes{}
		ended := &fakeEngine{ended: true}
		w2 := &Watchdog{Notifier: n2, Every: 10 * time.Second, Feed: true, Engine: ended}
		w2.Tick(context.Background())
		if got := n2.take(); len(got) != 0 {
			t.Fatalf("engine not started yet: %q", got)
		}
		ended.set(func(f *fakeEngine) { f.ended, f.st = false, session.Status{State: "idle"} })
		w2.Tick(context.Background())
		if got := n2.take(); !slices.Equal(got, []string{"STATUS=idle", "WATCHDOG=1"}) {
			t.Fatalf("engine started: %q", got)
		}
		ended.set(func(f *fakeEngine) { f.ended = true })
		w2.Tick(context.Background())
		w2.Tick(context.Background())
		if got := n2.take(); !slices.Equal(got, []string{"STOPPING=1", "STATUS=stopping", "WATCHDOG=1", "WATCHDOG=1"}) {
			t.Fatalf("ended engine: %q", got)
		}
	})
}

// TestWatchdogWithoutSystemdWatchdog: without WatchdogSec nothing is fed, status lines still go.
func TestWatchdogWithoutSystemdWatchdog(t *testing.T) {
	n := &notes{}
	w := &Watchdog{Notifier: n, Every: time.Second, Engine: &fakeEngine{st: session.Status{State: "maintenance", UpdateReady: true}}}
	w.Tick(context.Background())
	if got := n.take(); !slices.Equal(got, []string{"STATUS=maintenance (ready for an update)"}) {
		t.Fatalf("sent %q", got)
	}
	w = &Watchdog{Notifier: n, Every: time.Second, Feed: true, SafeMode: errors.New("bad hash chain")}
	w.Tick(context.Background())
	if got := n.take(); len(got) != 2 || !strings.HasPrefix(got[0], "STATUS=safe mode") || got[1] != "WATCHDOG=1" {
		t.Fatalf("safe mode sent %q", got)
	}
}
