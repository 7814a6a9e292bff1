package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/kioskd/kioskd/kiosk/session"
)

// Notifier sends one state line to the service manager (systemd's sd_notify: "READY=1",
// "STATUS=...", "STOPPING=1", "WATCHDOG=1"). cmd/kioskd gives it systemd's socket; tests
// record the lines.
type Notifier interface {
	Notify(state string) error
}

// StatusSource is the part of the session engine the watchdog asks: Status goes through the
// engine's command API, so an answer proves the run loop takes commands.
type StatusSource interface {
	Status(ctx context.Context) (session.Status, error)
}

// Watchdog tells the service manager how the kiosk is (STATUS= on every change) and feeds
// its watchdog (WATCHDOG=1) only while the kiosk makes progress: every Every, the engine must
// answer a status request within Timeout and the journal must be readable. A run loop stuck
// on a command that does not come back, or a journal that cannot be read, stops the feeding,
// and systemd restarts the kiosk (WatchdogSec); the journal makes that restart safe.
//
// Once the stop has begun (Stopping closed, or the engine ended, which stops the kiosk), it
// says STOPPING=1 and feeds without probing: the engine is stopped by design during the stop,
// and the stop is bounded by StopBudget, which systemd enforces with TimeoutStopSec.
type Watchdog struct {
	Notifier Notifier
	// Every is how often the kiosk is probed: a third of WatchdogSec, so one slow probe does
	// not get a healthy kiosk killed. Without a watchdog it still paces the STATUS lines.
	Every time.Duration
	// Feed says whether systemd expects WATCHDOG=1 (WatchdogSec is set).
	Feed bool
	// Timeout bounds each probe; default Every/2.
	Timeout time.Duration
	Engine  StatusSource
	// Journal reads the journal (a read transaction); nil in safe mode.
	Journal func() error
	// SafeMode is why the kiosk runs in safe mode (no engine, no journal), or nil.
	SafeMode error
	// Stopping is closed when the stop begins.
	Stopping <-chan struct{}
	Logger   *slog.Logger

	// status is the last STATUS line sent; failing whether the last probe failed.
	status  string
	failing bool
	// answered: the engine answered once (until then, not running means not started yet).
	answered bool
}

// NewWatchdog builds the watchdog of s: it probes s's engine and journal. every is the
// probe interval; feed whether systemd's watchdog is on.
func (s *System) NewWatchdog(n Notifier, every time.Duration, feed bool, stopping <-chan struct{}) *Watchdog {
	w := &Watchdog{Notifier: n, Every: every, Feed: feed, SafeMode: s.safe, Stopping: stopping, Logger: s.log}
	if s.engine != nil {
		w.Engine = s.engine
	}
	if j := s.j; j != nil {
		w.Journal = func() error {
			// A cheap stat of the file (gone, or its file system unmounted) and one read
			// transaction; neither waits for the writer (bbolt readers do not).
			if _, err := os.Stat(j.Path()); err != nil {
				return err
			}
			_, err := j.Cassette()
			return err
		}
	}
	return w
}

// Run probes and notifies until ctx ends (cmd/kioskd ends it when System.Run has returned).
func (w *Watchdog) Run(ctx context.Context) {
	w.defaults()
	t := time.NewTicker(w.Every)
	defer t.Stop()
	for {
		w.Tick(ctx)
		select {
		case <-ctx.Done():
			return
		case <-w.Stopping:
			w.stopping()
			// From here on only the feeding, at the same pace, until Run has returned.
			w.Stopping = nil
		case <-t.C:
		}
	}
}

// Tick probes once: it sends the status if it changed and feeds the watchdog if the kiosk
// made progress.
func (w *Watchdog) Tick(ctx context.Context) {
	w.defaults()
	if w.isStopping() {
		w.feed()
		return
	}
	status, err := w.probe(ctx)
	if errors.Is(err, session.ErrNotRunning) {
		if !w.answered {
			// Its run loop has not started yet (Ready comes first): no feed until it answers.
			return
		}
		// The engine ended: System.Run stops the whole kiosk after it (bounded).
		w.stopping()
		w.feed()
		return
	}
	if err != nil {
		if !w.failing {
			w.Logger.Error("watchdog: the kiosk does not make progress; not feeding systemd's watchdog", "err", err)
		}
		w.failing = true
		if line := "not responding: " + err.Error(); line != w.status {
			w.send("STATUS=" + line)
			w.status = line
		}
		return
	}
	w.answered = true
	if w.failing {
		w.Logger.Info("watchdog: the kiosk answers again")
		w.failing = false
	}
	if status != w.status {
		w.send("STATUS=" + status)
		w.status = status
	}
	w.feed()
}

func (w *Watchdog) defaults() {
	if w.Logger == nil {
		w.Logger = slog.New(slog.DiscardHandler)
	}
	if w.Every <= 0 {
		w.Every = 10 * time.Second
	}
	if w.Timeout <= 0 {
		w.Timeout = w.Every / 2
	}
}

func (w *Watchdog) isStopping() bool {
	if w.status == statusStopping {
		return true
	}
	select {
	case <-w.Stopping:
		w.stopping()
		return true
	default:
		return false
	}
}

const statusStopping = "stopping"

func (w *Watchdog) stopping() {
	if w.status == statusStopping {
		return
	}
	w.status = statusStopping
	w.send("STOPPING=1")
	w.send("STATUS=" + statusStopping)
}

func (w *Watchdog) feed() {
	if w.Feed {
		w.send("WATCHDOG=1")
	}
}

func (w *Watchdog) send(state string) {
	if w.Notifier == nil {
		return
	}
	if err := w.Notifier.Notify(state); err != nil {
		w.Logger.Warn("sd_notify", "state", state, "err", err)
	}
}

// probe asks the engine and reads the journal, within Timeout; it returns the status line.
func (w *Watchdog) probe(ctx context.Context) (string, error) {
	if w.SafeMode != nil {
		// No engine and no journal run in safe mode: nothing can be stuck that a restart
		// would fix (it comes back in safe mode); the process answering is enough.
		return "safe mode: journal unusable, acceptor inhibited (" + w.SafeMode.Error() + ")", nil
	}
	pctx, cancel := context.WithTimeout(ctx, w.Timeout)
	defer cancel()
	st, err := w.Engine.Status(pctx)
	if err != nil {
		if errors.Is(err, session.ErrNotRunning) {
			return "", err
		}
		return "", fmt.Errorf("engine: no answer to a status request within %v: %w", w.Timeout, err)
	}
	if w.Journal != nil {
		if err := w.Journal(); err != nil {
			return "", fmt.Errorf("journal not readable: %w", err)
		}
	}
	return StatusLine(st), nil
}

// StatusLine is the one-line state systemd shows (systemctl status): "idle", "out of
// service: <reason>", "maintenance", ...
func StatusLine(st session.Status) string {
	var s string
	switch st.State {
	case session.OutOfService.String():
		reason := st.Reason
		if reason == "" {
			reason = st.OutOfService
		}
		s = "out of service: " + reason
	case session.Maintenance.String():
		s = "maintenance"
		if st.UpdateReady {
			s += " (ready for an update)"
		}
	case session.Starting.String():
		s = "starting (recovering the previous run)"
	case session.Authorizing.String(), session.Accepting.String(), session.Closing.String():
		s = "in session (" + st.State + ")"
	default:
		s = strings.ReplaceAll(st.State, "_", " ")
	}
	if st.Waiting {
		s += "; maintenance requested, waiting for the customer"
	}
	if len(st.Degraded) > 0 {
		s += "; degraded: " + strings.Join(st.Degraded, ", ")
	}
	return s
}
