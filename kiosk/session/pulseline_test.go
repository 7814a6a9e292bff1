package session

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/kiosk/journal/journaltest"
	"github.com/kioskd/kioskd/sync/wire"
)

var pulseDenoms = acceptor.Denominations{1: {Code: 1, ValueMinor: 1000, Currency: "CNY"}, 5: {Code: 5, ValueMinor: 5000, Currency: "CNY"}}

// pulseUnit is a pulse unit's control as the engine sees it; it counts the Enable calls made
// while the journal did not hold the line enabled (the line released with no record).
type pulseUnit struct {
	fakeUnit
	j *journal.Journal

	mu          sync.Mutex
	unjournaled int
}

func (u *pulseUnit) Enable(ctx context.Context, codes []int) error {
	if pl, err := u.j.PulseLineState(); err != nil || !pl.Enabled {
		u.mu.Lock()
		u.unjournaled++
		u.mu.Unlock()
	}
	return u.fakeUnit.Enable(ctx, codes)
}

func (u *pulseUnit) Unjournaled() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.unjournaled
}

// newPulseRig is one run of the daemon with a pulse unit on the journal at path; of, when
// set, is the journal's OpenFile (to break its storage).
func newPulseRig(t *testing.T, path string, of func(string, int, os.FileMode) (*os.File, error)) (*rig, *pulseUnit) {
	t.Helper()
	return newPulseRigWith(t, path, of, nil)
}

// newPulseRigWith is newPulseRig with mod applied to the engine's configuration.
func newPulseRigWith(t *testing.T, path string, of func(string, int, os.FileMode) (*os.File, error), mod func(*Config)) (*rig, *pulseUnit) {
	t.Helper()
	j, err := journal.Open(path, journal.Options{KioskID: "K1", Currency: "CNY", OpenFile: of})
	if err != nil {
		t.Fatal(err)
	}
	u := &pulseUnit{j: j}
	r := &rig{t: t, j: j, unit: &u.fakeUnit, printer: &fakePrinter{}, health: health.New("b1", nil), path: path}
	cfg := Config{ClockTrusted: trustClock, Journal: j, Acceptor: u, Denominations: pulseDenoms, Printer: r.printer, Health: r.health,
		WalletKeys: walletKeys, Escrowless: true, Authorizer: &fakeAuthz{resp: wire.AuthzResponse{ReqID: "x", Status: wire.AuthzOK, RemainingMinor: 50000}},
		Limits: Limits{SessionMax: 50000, OfflineSessionMax: 20000, OfflineTotalMax: 30000},
		Timing: Timing{RecoveryTimeout: 5 * time.Second, AckWait: time.Second}}
	if mod != nil {
		mod(&cfg)
	}
	r.e, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.health.Listen(func(health.Condition) { r.e.HealthChanged() })
	return r, u
}

// pulseNote feeds a whole train of the given pulses and its credit, as the pulse driver does.
func pulseNote(t *testing.T, h acceptor.Handler, train uint64, pulses int) {
	t.Helper()
	ctx := context.Background()
	pr := h.(acceptor.PulseRecorder)
	for c := 1; c <= pulses; c++ {
		if err := pr.Pulse(ctx, train, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.Credited(ctx, pulseDenoms.Lookup(pulses)); err != nil {
		t.Fatal(err)
	}
	h.Event(ctx, acceptor.Event{Kind: acceptor.Stacked, Code: pulses})
	h.Event(ctx, acceptor.Event{Kind: acceptor.Idle})
}

// acceptingPulseSession starts a session on a running pulse rig and waits for the unit to be
// enabled.
func acceptingPulseSession(t *testing.T, r *rig, u *pulseUnit, nonce string) journal.Session {
	t.Helper()
	r.waitState(Idle)
	r.e.Handler().Event(context.Background(), acceptor.Event{Kind: acceptor.Disabled})
	if err := r.e.Scan(code("pia", time.Now().Add(time.Minute), nonce)); err != nil {
		t.Fatal(err)
	}
	r.waitState(Accepting)
	synctest.Wait()
	if u.Enabled() == nil {
		t.Fatal("the unit was not enabled for the session")
	}
	if n := u.Unjournaled(); n != 0 {
		t.Fatalf("the unit was enabled %d time(s) before the journal said so", n)
	}
	s, ok, err := r.j.CurrentSession()
	if err != nil || !ok {
		t.Fatalf("no open session: %v", err)
	}
	return s
}

// restartPulse boots the next run on path and waits for its recovery to end; the driver
// reports the unit at rest behind its inhibit, as the pulse driver does at start.
func restartPulse(t *testing.T, path string) *rig {
	t.Helper()
	r, _ := newPulseRig(t, path, nil)
	r.start()
	r.e.Handler().Event(context.Background(), acceptor.Event{Kind: acceptor.Disabled})
	r.waitState(Idle)
	return r
}

// TestPulseNoteWhoseRecordAPowerCutTookIsUncertain: the host crashes at the credit of a
// note whose only pulse was its last commit, and the power cut takes that commit: the note
// is in the cassette with no record. The line was journaled enabled (sealed) before the unit
// could take it, so the next start-up records an uncertain item for it on the interrupted
// session (sim seed 800294).
func TestPulseNoteWhoseRecordAPowerCutTookIsUncertain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "j.db")
		r, u := newPulseRig(t, path, nil)
		r.start()
		s := acceptingPulseSession(t, r, u, "nonce-pc-1")
		h := r.e.Handler()
		pulseNote(t, h, 1, 5)
		// The next note: one pulse journaled, then the host dies before its credit commits.
		if err := h.(acceptor.PulseRecorder).Pulse(context.Background(), 2, 1); err != nil {
			t.Fatal(err)
		}
		r.stop()
		if err := journaltest.DropLastCommit(path); err != nil {
			t.Fatal(err)
		}

		r2 := restartPulse(t, path)
		defer r2.stop()
		if _, open, _ := r2.j.OpenPulseTrain(); open {
			t.Fatal("the pulse the power cut took is still journaled")
		}
		if w := oneUnknownNoteTopup(t, r2.j, s.ID, 5000); w.Outcome != wire.OutcomeInterrupted {
			t.Fatalf("top-up %+v, want it interrupted", w)
		}
		if pl, _ := r2.j.PulseLineState(); pl.Enabled {
			t.Fatalf("line %+v still enabled after a recovery with the unit at rest", pl)
		}
	})
}

// TestPulseCreditOwedAtAStorageFaultIsUncertain: the journal's writes fail while a note pulses
// in; its pulses and its credit cannot be journaled (the driver inhibits the unit and owes the
// credit), and the restart after the storage fault ends the process that owed it. The journal
// could not record "inhibited" either, so the next start-up finds the line enabled and records
// an uncertain item on the interrupted session (sim seed 800142).
func TestPulseCreditOwedAtAStorageFaultIsUncertain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "j.db")
		var file *os.File
		r, u := newPulseRig(t, path, func(name string, flag int, perm os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, perm)
			file = f
			return f, err
		})
		r.start()
		s := acceptingPulseSession(t, r, u, "nonce-sf-1")
		h := r.e.Handler()
		pulseNote(t, h, 1, 1)
		// The storage fails (EIO on every write and fsync) while the next note pulses in.
		file.Close()
		ctx := context.Background()
		if err := h.(acceptor.PulseRecorder).Pulse(ctx, 2, 1); err == nil {
			t.Fatal("a pulse was journaled on broken storage")
		}
		if err := h.Credited(ctx, pulseDenoms.Lookup(1)); err == nil {
			t.Fatal("a credit was journaled on broken storage")
		}
		h.Event(ctx, acceptor.Event{Kind: acceptor.Failure})
		synctest.Wait()
		// The supervisor restarts the daemon; the owed credit dies with it.
		r.stop()

		r2 := restartPulse(t, path)
		defer r2.stop()
		oneUnknownNoteTopup(t, r2.j, s.ID, 1000)
	})
}

// TestPulseLineInhibitedOnlyAtRest: the line is journaled inhibited only once the unit
// reported Disabled after the inhibit (a note drawn in just before the inhibit still
// pulses within the driver's grace); a restart after that records nothing, while a crash
// with the line enabled (no power cut) records one item: the kernel keeps the line released
// until the next process inhibits it, and the notes it takes meanwhile pulse to nobody.
func TestPulseLineInhibitedOnlyAtRest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "j.db")
		r, u := newPulseRig(t, path, nil)
		r.start()
		acceptingPulseSession(t, r, u, "nonce-ir-1")
		h := r.e.Handler()
		ctx := context.Background()
		pulseNote(t, h, 1, 5)
		if err := r.e.Finish(); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if u.Enabled() != nil {
			t.Fatal("the unit is still enabled after Finish")
		}
		// Inhibited, but not yet at rest: the state stands.
		if pl, _ := r.j.PulseLineState(); !pl.Enabled {
			t.Fatal("the line was journaled inhibited before the unit reported Disabled")
		}
		h.Event(ctx, acceptor.Event{Kind: acceptor.Disabled})
		if pl, _ := r.j.PulseLineState(); pl.Enabled {
			t.Fatal("the line is still journaled enabled with the unit at rest behind its inhibit")
		}
		r.waitState(Idle)
		r.stop()

		r2 := restartPulse(t, path)
		if items, _ := r2.j.UncertainItems(); len(items) != 0 {
			t.Fatalf("uncertain items %+v after a restart with the unit at rest", items)
		}
		// A crash while the unit accepts, with no power cut: one item.
		if err := r2.e.Scan(code("pia", time.Now().Add(time.Minute), "nonce-ir-2")); err != nil {
			t.Fatal(err)
		}
		r2.waitState(Accepting)
		synctest.Wait()
		s2, _, _ := r2.j.CurrentSession()
		r2.stop()

		r3 := restartPulse(t, path)
		defer r3.stop()
		items, _ := r3.j.UncertainItems()
		if len(items) != 1 || items[0].SessionID != s2.ID {
			t.Fatalf("uncertain items %+v, want one on the session %d the crash interrupted", items, s2.ID)
		}
		if _, err := r3.j.Verify(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestPulseShutdownWaitsForTheLineAtRest: a graceful stop parks a pulse unit only once its
// line is journaled at rest, so a planned stop (an update, a reboot) leaves the next start
// nothing to doubt.
func TestPulseShutdownWaitsForTheLineAtRest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "j.db")
		r, u := newPulseRig(t, path, nil)
		r.start()
		acceptingPulseSession(t, r, u, "nonce-sd-1")
		h := r.e.Handler()
		pulseNote(t, h, 1, 1)
		done := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			done <- r.e.Shutdown(ctx)
		}()
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("Shutdown returned before the unit was at rest behind its inhibit: %v", err)
		default:
		}
		if u.Enabled() != nil {
			t.Fatal("the unit is still enabled while stopping")
		}
		h.Event(context.Background(), acceptor.Event{Kind: acceptor.Disabled})
		if err := <-done; err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		r.stop()

		r2 := restartPulse(t, path)
		defer r2.stop()
		if items, _ := r2.j.UncertainItems(); len(items) != 0 {
			t.Fatalf("uncertain items %+v after a graceful stop", items)
		}
	})
}

// TestPulseUnitWithoutInhibitLine: a unit whose inhibit line is not wired takes notes
// whenever it is powered, also while no process reads it: its line is never journaled at
// rest, and every start-up records one uncertain item for the run before it, even one that
// stopped gracefully with no session.
func TestPulseUnitWithoutInhibitLine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "j.db")
		noInhibit := func(c *Config) { c.NoInhibitLine = true }
		for run := range 3 {
			r, _ := newPulseRigWith(t, path, nil, noInhibit)
			r.start()
			r.e.Handler().Event(context.Background(), acceptor.Event{Kind: acceptor.Disabled})
			r.waitState(Idle)
			if items, _ := r.j.UncertainItems(); len(items) != run {
				t.Fatalf("run %d: uncertain items %+v, want one per run before", run, items)
			}
			if pl, _ := r.j.PulseLineState(); !pl.Enabled || pl.Uncertain != 0 {
				t.Fatalf("run %d: line %+v, want a new enabled stretch", run, pl)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			if err := r.e.Shutdown(ctx); err != nil {
				t.Fatalf("run %d: Shutdown: %v (a unit that cannot be inhibited is never waited for)", run, err)
			}
			cancel()
			r.stop()
		}
	})
}

// oneUnknownNoteTopup checks what a recovery leaves for an interrupted pulse session sid: one
// uncertain item of unknown value on it, and its one top-up of amount carrying that note.
func oneUnknownNoteTopup(t *testing.T, j *journal.Journal, sid uint64, amount int64) wire.Topup {
	t.Helper()
	items, err := j.UncertainItems()
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 1 || items[0].ValueMinor != 0 || items[0].SessionID != sid {
		t.Fatalf("uncertain items %+v, want one of unknown value on the interrupted session %d", items, sid)
	}
	ob, _ := j.Outbox()
	if len(ob) != 1 {
		t.Fatalf("outbox %+v", ob)
	}
	w, _ := ob[0].Wire()
	if w.AmountMinor != amount || len(w.Uncertain) != 1 {
		t.Fatalf("top-up %+v, want %d and the uncertain note", w, amount)
	}
	return w
}
