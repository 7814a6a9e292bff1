package session

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/kiosk/journal/journaltest"
	"github.com/kioskd/kioskd/sync/wire"
	"golang.org/x/sys/unix"
)

// TestStackerNoteAfterLostIntentIsUncertain is the crash of the id003 campaign: the previous
// run died after a credit commit, before the unit was seen to finish that note; the next
// session's stack intent was lost with the storage's last transactions; the unit powered up
// with the new note in its stacker. The note must become exactly one uncertain item, not be
// taken for the old, long finished note. (A stack intent is sealed before the unit is told
// to stack, so one lost commit no longer takes it; the test builds the journal such a loss
// would leave: the escrow's first commit, marking the old note finished, and nothing after.)
func TestStackerNoteAfterLostIntentIsUncertain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "j.db")
		j, err := journal.Open(path, journal.Options{KioskID: "K1", Currency: "CNY"})
		if err != nil {
			t.Fatal(err)
		}
		s, _ := j.OpenSession(journal.OpenSessionParams{Account: "ann", LimitMinor: 50000})
		in, _ := j.StackIntent(s.ID, journal.Note{Code: 0x61, ValueMinor: 1000})
		if _, err := j.CreditNote(in.ID, journal.Note{}, ""); err != nil {
			t.Fatal(err)
		}
		j.Close() // crash right after the credit commit

		// The next run: recovery closes the interrupted session, the next customer scans.
		r := newRig(t, path, &fakeAuthz{resp: wire.AuthzResponse{ReqID: "x", Status: wire.AuthzOK, RemainingMinor: 50000}})
		r.start()
		ctx := context.Background()
		r.e.Handler().Event(ctx, acceptor.Event{Kind: acceptor.Disabled})
		r.waitState(Done)
		if err := r.e.Scan(code("bea", time.Now().Add(time.Minute), "nonce5a01")); err != nil {
			t.Fatal(err)
		}
		r.waitState(Accepting)
		r.stop()
		// The escrow's first commit (the old note finished) survived; its intent did not.
		j, err = journal.Open(path, journal.Options{KioskID: "K1", Currency: "CNY"})
		if err != nil {
			t.Fatal(err)
		}
		if err := j.NoteCompleted(); err != nil {
			t.Fatal(err)
		}
		j.Close()

		r2 := newRig(t, path, nil)
		if in, _ := r2.j.OpenIntents(); len(in) != 0 {
			t.Fatalf("the intent survived the power cut: %+v", in)
		}
		r2.start()
		defer r2.stop()
		h2 := r2.e.Handler()
		h2.Event(ctx, acceptor.Event{Kind: acceptor.PowerUpNoteInStacker, Code: 0x42})
		h2.Event(ctx, acceptor.Event{Kind: acceptor.Disabled})
		synctest.Wait()
		if st := r2.e.State(); st == Starting {
			t.Fatalf("still recovering")
		}
		u, err := r2.j.UncertainItems()
		if err != nil {
			t.Fatal(err)
		}
		if len(u) != 1 {
			t.Fatalf("uncertain items %+v, want exactly one for the note in the stacker", u)
		}
		if _, err := r2.j.Verify(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestStackerNoteOfUnfinishedCreditIsNotUncertain: the other side of the rule. The unit
// powers up with the last credited note in its stacker before it was seen to finish it: that
// note is credited already and must not become an uncertain item.
func TestStackerNoteOfUnfinishedCreditIsNotUncertain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "j.db")
		j, _ := journal.Open(path, journal.Options{KioskID: "K1", Currency: "CNY"})
		s, _ := j.OpenSession(journal.OpenSessionParams{Account: "cat", LimitMinor: 50000})
		in, _ := j.StackIntent(s.ID, journal.Note{Code: 0x61, ValueMinor: 1000})
		j.CreditNote(in.ID, journal.Note{}, "")
		j.Close()
		r := newRig(t, path, nil)
		r.start()
		defer r.stop()
		ctx := context.Background()
		r.e.Handler().Event(ctx, acceptor.Event{Kind: acceptor.PowerUpNoteInStacker, Code: 0x42})
		r.e.Handler().Event(ctx, acceptor.Event{Kind: acceptor.Disabled})
		r.waitState(Done)
		if u, _ := r.j.UncertainItems(); len(u) != 0 {
			t.Fatalf("uncertain %+v", u)
		}
		ob, _ := r.j.Outbox()
		if len(ob) != 1 || ob[0].AmountMinor != 1000 {
			t.Fatalf("outbox %+v", ob)
		}
	})
}

// brokenDisk makes the journal file's writes fail (as a full disk does) and come back. It
// swaps the descriptor bbolt writes through for a read-only one of the same file: reads and
// the memory map keep working, every write of a commit fails.
type brokenDisk struct {
	mu    sync.Mutex
	f     *os.File
	saved int
}

func (b *brokenDisk) open(name string, flag int, perm os.FileMode) (*os.File, error) {
	f, err := os.OpenFile(name, flag, perm)
	b.mu.Lock()
	b.f = f
	b.mu.Unlock()
	return f, err
}

func (b *brokenDisk) fill(t *testing.T) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ro, err := os.Open(b.f.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	fd := int(b.f.Fd())
	if b.saved, err = unix.Dup(fd); err != nil {
		t.Fatal(err)
	}
	if err := unix.Dup2(int(ro.Fd()), fd); err != nil {
		t.Fatal(err)
	}
}

func (b *brokenDisk) free(t *testing.T) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := unix.Dup2(b.saved, int(b.f.Fd())); err != nil {
		t.Fatal(err)
	}
	unix.Close(b.saved)
}

// TestJournalFailureHeals: the disk fills during a session. The note that could not be
// journaled goes back; the customer gets a result with a reference instead of an endless
// "Finishing"; the kiosk is out of service while the journal fails, and comes back on its
// own once space is freed: the session's top-up is closed and its receipt printed.
func TestJournalFailureHeals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		disk := &brokenDisk{}
		j, err := journal.Open(filepath.Join(t.TempDir(), "j.db"), journal.Options{KioskID: "K1", Currency: "CNY", OpenFile: disk.open})
		if err != nil {
			t.Fatal(err)
		}
		r := &rig{t: t, j: j, unit: &fakeUnit{}, printer: &fakePrinter{}, health: health.New("b1", nil)}
		r.e, err = New(Config{ClockTrusted: trustClock, Journal: j, Acceptor: r.unit, Denominations: denoms, Printer: r.printer, Health: r.health, WalletKeys: walletKeys,
			Authorizer: &fakeAuthz{resp: wire.AuthzResponse{ReqID: "x", Status: wire.AuthzOK, RemainingMinor: 50000}},
			Limits:     Limits{SessionMax: 50000, OfflineSessionMax: 20000, OfflineTotalMax: 30000}})
		if err != nil {
			t.Fatal(err)
		}
		r.health.Listen(func(health.Condition) { r.e.HealthChanged() })
		r.start()
		defer r.stop()
		h := r.e.Handler()
		ctx := context.Background()
		h.Event(ctx, acceptor.Event{Kind: acceptor.Disabled})
		r.waitState(Idle)
		r.e.Scan(code("dan", time.Now().Add(time.Minute), "nonce5c01"))
		r.waitState(Accepting)
		h.Escrow(ctx, note(0x62))
		if err := h.Credited(ctx, note(0x62)); err != nil {
			t.Fatal(err)
		}
		h.Event(ctx, acceptor.Event{Kind: acceptor.Stacked})
		h.Event(ctx, acceptor.Event{Kind: acceptor.Idle})

		disk.fill(t)
		if d := h.Escrow(ctx, note(0x61)); d != acceptor.Return {
			t.Fatalf("a note whose intent cannot be journaled was %v", d)
		}
		h.Event(ctx, acceptor.Event{Kind: acceptor.Returned})
		h.Event(ctx, acceptor.Event{Kind: acceptor.Disabled})
		r.waitState(Done)
		v := r.e.View()
		if v.Result == nil || !strings.HasPrefix(v.Result.Reference, "S") || v.Result.AmountMinor != 5000 || v.Result.Status != ReceiptPending {
			t.Fatalf("result while the journal fails: %+v", v.Result)
		}
		if strings.Contains(v.Message, "Finishing") {
			t.Fatalf("message %q", v.Message)
		}
		r.waitState(OutOfService)
		if !r.health.Has("journal_failure") {
			t.Fatal("no journal_failure condition")
		}
		// Minutes later, still failing: retries go on, nothing is lost or doubled.
		time.Sleep(5 * time.Minute)
		if st := r.e.State(); st != OutOfService {
			t.Fatalf("state %v while the disk is full", st)
		}

		disk.free(t)
		r.waitState(Idle)
		if r.health.Has("journal_failure") {
			t.Fatal("journal_failure still active after a successful write")
		}
		ob, _ := r.j.Outbox()
		if len(ob) != 1 || ob[0].AmountMinor != 5000 || ob[0].Outcome != wire.OutcomeInterrupted {
			t.Fatalf("outbox %+v", ob)
		}
		if rs := r.printer.Receipts(); len(rs) != 1 || rs[0].Topup.AmountMinor != 5000 {
			t.Fatalf("receipts %+v", rs)
		}
		// Back in service without a restart.
		if err := r.e.Scan(code("eve", time.Now().Add(time.Minute), "nonce5c02")); err != nil {
			t.Fatal(err)
		}
		r.waitState(Accepting)
		if _, err := r.j.Verify(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestCreditAfterLongLinkOutage: the link to the unit is lost while a note is on its way to
// the cassette, for longer than the settle timeout. The customer gets a pending result with
// a reference; the session stays open for the unit's report, and the credit that comes when
// the link is back is counted in it: one note, credited once, no uncertain item, no alarm
// of an unexpected credit.
func TestCreditAfterLongLinkOutage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, "", &fakeAuthz{resp: wire.AuthzResponse{ReqID: "x", Status: wire.AuthzOK, RemainingMinor: 50000}})
		var mu sync.Mutex
		var alarms []string
		r.health.Listen(func(c health.Condition) {
			mu.Lock()
			alarms = append(alarms, c.Kind)
			mu.Unlock()
		})
		r.start()
		defer r.stop()
		h := r.e.Handler()
		ctx := context.Background()
		h.Event(ctx, acceptor.Event{Kind: acceptor.Disabled})
		r.waitState(Idle)
		r.e.Scan(code("fay", time.Now().Add(time.Minute), "nonce5b01"))
		r.waitState(Accepting)
		h.Escrow(ctx, note(0x62))
		h.Credited(ctx, note(0x62))
		h.Event(ctx, acceptor.Event{Kind: acceptor.Stacked})
		h.Event(ctx, acceptor.Event{Kind: acceptor.Idle})
		if d := h.Escrow(ctx, note(0x63)); d != acceptor.Stack {
			t.Fatal(d)
		}
		h.Event(ctx, acceptor.Event{Kind: acceptor.Stacking})
		h.Event(ctx, acceptor.Event{Kind: acceptor.CommLost})
		time.Sleep(35 * time.Second)
		v := r.e.View()
		if v.State != "done" || v.Result == nil || !strings.HasPrefix(v.Result.Reference, "S") || v.Result.AmountMinor != 5000 {
			t.Fatalf("view a minute into the outage: %s %+v %q", v.State, v.Result, v.Message)
		}
		if u, _ := r.j.UncertainItems(); len(u) != 0 {
			t.Fatalf("uncertain during the outage: %+v", u)
		}
		time.Sleep(90 * time.Second)
		if st := r.e.State(); st != OutOfService {
			t.Fatalf("state %v during the outage", st)
		}
		h.Event(ctx, acceptor.Event{Kind: acceptor.CommRestored})
		if err := h.Credited(ctx, note(0x63)); err != nil {
			t.Fatal(err)
		}
		h.Event(ctx, acceptor.Event{Kind: acceptor.Stacked})
		h.Event(ctx, acceptor.Event{Kind: acceptor.Disabled})
		r.waitState(Idle)
		ob, _ := r.j.Outbox()
		if len(ob) != 1 || ob[0].AmountMinor != 15000 || ob[0].Outcome != wire.OutcomeInterrupted {
			t.Fatalf("outbox %+v", ob)
		}
		if u, _ := r.j.UncertainItems(); len(u) != 0 {
			t.Fatalf("uncertain %+v", u)
		}
		mu.Lock()
		defer mu.Unlock()
		for _, a := range alarms {
			if a == "unexpected_credit" || a == "uncertain_item" {
				t.Fatalf("alarm %s for a note credited once", a)
			}
		}
		if rs := r.printer.Receipts(); len(rs) != 1 || rs[0].Topup.AmountMinor != 15000 {
			t.Fatalf("receipts %+v", rs)
		}
		if _, err := r.j.Verify(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestCreditRefusedByFullDiskThenReReported: the journal cannot take a credit (disk full);
// the driver does not acknowledge it and the unit reports it again once space is back. The
// session waited for it: the note is credited once, in its session, with no uncertain item.
func TestCreditRefusedByFullDiskThenReReported(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		disk := &brokenDisk{}
		j, err := journal.Open(filepath.Join(t.TempDir(), "j.db"), journal.Options{KioskID: "K1", Currency: "CNY", OpenFile: disk.open})
		if err != nil {
			t.Fatal(err)
		}
		r := &rig{t: t, j: j, unit: &fakeUnit{}, printer: &fakePrinter{}, health: health.New("b1", nil)}
		r.e, err = New(Config{ClockTrusted: trustClock, Journal: j, Acceptor: r.unit, Denominations: denoms, Printer: r.printer, Health: r.health, WalletKeys: walletKeys,
			Authorizer: okAuthz(), Limits: Limits{SessionMax: 50000, OfflineSessionMax: 20000, OfflineTotalMax: 30000}})
		if err != nil {
			t.Fatal(err)
		}
		r.health.Listen(func(health.Condition) { r.e.HealthChanged() })
		r.start()
		defer r.stop()
		r.startSession("nonce5b02", true)
		h := r.e.Handler()
		ctx := context.Background()
		if d := h.Escrow(ctx, note(0x63)); d != acceptor.Stack {
			t.Fatal(d)
		}
		h.Event(ctx, acceptor.Event{Kind: acceptor.Stacking})
		disk.fill(t)
		if err := h.Credited(ctx, note(0x63)); err == nil {
			t.Fatal("a credit the journal could not take was acknowledged")
		}
		time.Sleep(2 * time.Minute)
		if v := r.e.View(); v.State != "out_of_service" {
			t.Fatalf("state %s during the failure", v.State)
		}
		disk.free(t)
		if err := h.Credited(ctx, note(0x63)); err != nil {
			t.Fatal(err)
		}
		h.Event(ctx, acceptor.Event{Kind: acceptor.Stacked})
		h.Event(ctx, acceptor.Event{Kind: acceptor.Disabled})
		r.waitState(Idle)
		ob, _ := r.j.Outbox()
		if len(ob) != 1 || ob[0].AmountMinor != 15000 {
			t.Fatalf("outbox %+v", ob)
		}
		if u, _ := r.j.UncertainItems(); len(u) != 0 {
			t.Fatalf("uncertain %+v", u)
		}
		if r.health.Has("journal_failure") {
			t.Fatal("journal_failure still active")
		}
	})
}

// TestPowerUpReportRefusedWhileJournalFails: the unit powers up with a note in its stacker
// that no stack intent accounts for (seed 107442 of the kiosk simulation: its intent was
// lost at a power cut, and then the storage failed). While the journal cannot record the
// note, the handler refuses the report (acceptor.PowerUpRecorder), so the driver does not
// reset the unit, which would forget the note; once the journal works, the report is
// recorded as exactly one uncertain item, and a repeat of it adds nothing.
func TestPowerUpReportRefusedWhileJournalFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		disk := &brokenDisk{}
		j, err := journal.Open(filepath.Join(t.TempDir(), "j.db"), journal.Options{KioskID: "K1", Currency: "CNY", OpenFile: disk.open})
		if err != nil {
			t.Fatal(err)
		}
		r := &rig{t: t, j: j, unit: &fakeUnit{}, printer: &fakePrinter{}, health: health.New("b1", nil)}
		r.e, err = New(Config{Journal: j, Acceptor: r.unit, Denominations: denoms, Printer: r.printer, Health: r.health, WalletKeys: walletKeys,
			Authorizer: okAuthz(), Limits: Limits{SessionMax: 50000, OfflineSessionMax: 20000, OfflineTotalMax: 30000}})
		if err != nil {
			t.Fatal(err)
		}
		r.health.Listen(func(health.Condition) { r.e.HealthChanged() })
		r.start()
		defer r.stop()
		rec, ok := r.e.Handler().(acceptor.PowerUpRecorder)
		if !ok {
			t.Fatal("the engine's handler cannot refuse a power-up report (acceptor.PowerUpRecorder)")
		}
		ctx := context.Background()
		ev := acceptor.Event{Kind: acceptor.PowerUpNoteInStacker, Code: 0x42}
		disk.fill(t)
		if err := rec.PowerUp(ctx, ev); err == nil {
			t.Fatal("a power-up report the journal could not take was accepted: the unit would be reset")
		}
		if !r.health.Has("journal_failure") {
			t.Fatal("no journal_failure raised")
		}
		disk.free(t)
		if err := rec.PowerUp(ctx, ev); err != nil {
			t.Fatalf("the report again, journal working: %v", err)
		}
		if err := rec.PowerUp(ctx, ev); err != nil { // the unit powered up again before its reset
			t.Fatalf("a repeat of the report: %v", err)
		}
		r.e.Handler().Event(ctx, acceptor.Event{Kind: acceptor.Disabled})
		synctest.Wait()
		if u, _ := r.j.UncertainItems(); len(u) != 1 {
			t.Fatalf("uncertain items %+v, want exactly one for the note in the stacker", u)
		}
		if r.health.Has("journal_failure") {
			t.Fatal("journal_failure still active")
		}
	})
}

// TestPowerUpCreditSurvivesTheLostLastCommit is the regression of sim seed 1500065 (ID-003):
// the unit powered up with the note of an open stack intent in its stacker; the engine
// credited it and the driver reset the unit, which stacked the note and forgot it. That
// credit was the journal's last commit, and a power cut took it: the intent looked open with
// no note anywhere. The credit must be sealed before the driver may reset the unit.
func TestPowerUpCreditSurvivesTheLostLastCommit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		j := lastCommitLostAfter(t, "nonce1500065", func(ctx context.Context, h acceptor.Handler) {
			if err := h.(acceptor.PowerUpRecorder).PowerUp(ctx, acceptor.Event{Kind: acceptor.PowerUpNoteInStacker, Code: 0x42}); err != nil {
				t.Fatalf("power-up report refused: %v", err)
			}
			// The driver resets the unit now.
		})
		if in, _ := j.OpenIntents(); len(in) != 0 {
			t.Fatalf("the power-up credit was lost: intent still open %+v", in)
		}
		if c, _ := j.Cassette(); c.Count != 1 {
			t.Fatalf("cassette %+v, want the note credited", c)
		}
	})
}

// lastCommitLostAfter opens a session, has the unit escrow a 50 note that the engine stacks,
// runs report (what the unit says next), stops the engine, drops the journal's last commit
// (a power cut on storage that lied about fsync) and returns the journal reopened.
func lastCommitLostAfter(t *testing.T, nonce string, report func(ctx context.Context, h acceptor.Handler)) *journal.Journal {
	t.Helper()
	path := filepath.Join(t.TempDir(), "j.db")
	r := newRig(t, path, &fakeAuthz{resp: wire.AuthzResponse{ReqID: "x", Status: wire.AuthzOK, RemainingMinor: 50000}})
	r.start()
	h := r.e.Handler()
	ctx := context.Background()
	h.Event(ctx, acceptor.Event{Kind: acceptor.Disabled})
	r.waitState(Idle)
	if err := r.e.Scan(code("dan", time.Now().Add(time.Minute), nonce)); err != nil {
		t.Fatal(err)
	}
	r.waitState(Accepting)
	if d := h.Escrow(ctx, note(0x62)); d != acceptor.Stack {
		t.Fatalf("escrow: %v", d)
	}
	report(ctx, h)
	r.stop()
	if err := journaltest.DropLastCommit(path); err != nil {
		t.Fatal(err)
	}
	j, err := journal.Open(path, journal.Options{KioskID: "K1", Currency: "CNY"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}

// TestCreditSurvivesTheLostLastCommit is the regression of sim seed 7000940 (CCNET): the
// engine credited a note and the driver ACKed it; the unit finished it and drew in the next
// customer's note before the driver's next poll, so nothing had been committed since the
// credit. A power cut took that last commit, and the power-up report of the new note in the
// acceptor resolved the old note's intent as returned: a 1000 note in the cassette with no
// trace. A credit must be sealed before the driver may acknowledge it.
func TestCreditSurvivesTheLostLastCommit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		j := lastCommitLostAfter(t, "nonce7000940", func(ctx context.Context, h acceptor.Handler) {
			if err := h.Credited(ctx, note(0x62)); err != nil {
				t.Fatalf("credit refused: %v", err)
			}
			// The driver ACKs now and the unit forgets the note.
		})
		if in, _ := j.OpenIntents(); len(in) != 0 {
			t.Fatalf("the credit was lost: intent still open %+v", in)
		}
		if c, _ := j.Cassette(); c.Count != 1 {
			t.Fatalf("cassette %+v, want the note credited", c)
		}
	})
}

// TestStackIntentSurvivesTheLostLastCommit is the regression of sim seed 897709695 (ID-003):
// a stack intent was the journal's last commit when the disk filled up, so the credit that
// followed failed and its VEND VALID went unacknowledged; the unit stacked the note anyway,
// a power cut took the intent, and the unit's power-up report named no note: a 2000 note in
// the cassette with no trace in the journal. The intent must be sealed before the unit is
// told to stack.
func TestStackIntentSurvivesTheLostLastCommit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		j := lastCommitLostAfter(t, "nonce897709695", func(context.Context, acceptor.Handler) {
			// The disk is full from here: nothing else is committed before the power cut.
		})
		in, err := j.OpenIntents()
		if err != nil || len(in) != 1 || in[0].Note.ValueMinor != 5000 {
			t.Fatalf("open intents %+v (%v), want the intent of the 5000 note the unit was told to stack", in, err)
		}
	})
}
