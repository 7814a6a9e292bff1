package session

import (
	"context"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/sync/wire"
)

// TestFraudLatchedAfterJournalRecovers: the acceptor reports a cheat attempt while the disk
// is full, so the journal cannot latch it. The kiosk stops service at once; once the space
// is freed the latch is written (it survives a restart from then on) and a technician's
// sign-off puts the kiosk back in service with no restart. Before, the sign-off found no
// latch in the journal and was refused: the kiosk stayed out of service until a restart,
// which forgot the cheat attempt (the simulation's disk-full fault, seed 1052 -sim.steps=57).
func TestFraudLatchedAfterJournalRecovers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		disk := &brokenDisk{}
		j, err := journal.Open(filepath.Join(t.TempDir(), "j.db"), journal.Options{KioskID: "K1", Currency: "CNY", OpenFile: disk.open})
		if err != nil {
			t.Fatal(err)
		}
		r := diskRig(t, j)
		r.start()
		defer r.stop()
		ctx := context.Background()
		h := r.e.Handler()
		h.Event(ctx, acceptor.Event{Kind: acceptor.Disabled})
		r.waitState(Idle)

		disk.fill(t)
		h.Event(ctx, acceptor.Event{Kind: acceptor.Fraud})
		r.waitState(OutOfService)
		if !r.health.Has(CondAcceptorFraud) || !r.health.Has("journal_failure") {
			t.Fatalf("conditions %+v, want the cheat attempt and the journal failure", r.health.Active())
		}
		h.Event(ctx, acceptor.Event{Kind: acceptor.Disabled}) // the unit after its reset
		time.Sleep(time.Minute)
		if l, _ := r.j.Latched(); len(l) != 0 {
			t.Fatalf("latched %+v on a full disk", l)
		}

		disk.free(t)
		time.Sleep(time.Minute) // the engine's probe finds the journal working
		synctest.Wait()
		if r.health.Has("journal_failure") {
			t.Fatal("journal_failure still active a minute after the space was freed")
		}
		l, err := r.j.Latched()
		if err != nil || len(l) != 1 || l[0].Kind != CondAcceptorFraud {
			t.Fatalf("latched %+v (%v), want the cheat attempt latched once the journal works", l, err)
		}
		if st := r.e.State(); st != OutOfService {
			t.Fatalf("state %v before the sign-off", st)
		}
		if _, err := r.e.Do(ctx, Command{Kind: CmdSignoff, Condition: SignoffFraud, Who: "technician/1", Why: "inspected"}); err != nil {
			t.Fatalf("sign-off after the storage recovered: %v", err)
		}
		r.waitState(Idle)
	})
}

// TestReceiptOwedAtStartUpPrintedAfterJournalRecovers is the regression of sim seeds
// 774971529 and 774977141 (pulse), 774934913 and 774939981 (SSP), 200388404 (eSSP): a crash
// right after a session closed left its receipt unprinted; the restart found the disk full,
// so the reprint of what the crash left unprinted failed on its first journal write, and
// nothing tried it again once space was freed: a top-up with no receipt at all until the
// next restart. It is printed once the journal works again, with no restart.
func TestReceiptOwedAtStartUpPrintedAfterJournalRecovers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		disk := &brokenDisk{}
		j, err := journal.Open(filepath.Join(t.TempDir(), "j.db"), journal.Options{KioskID: "K1", Currency: "CNY", OpenFile: disk.open})
		if err != nil {
			t.Fatal(err)
		}
		s, _ := j.OpenSession(journal.OpenSessionParams{Account: "hana", LimitMinor: 50000})
		in, _ := j.StackIntent(s.ID, journal.Note{Code: 0x63, ValueMinor: 10000})
		j.CreditNote(in.ID, journal.Note{}, "")
		res, err := j.CloseSession(journal.CloseParams{SessionID: s.ID, Outcome: wire.OutcomeComplete})
		if err != nil || res.Topup == nil {
			t.Fatalf("close: %+v %v", res, err)
		}
		// The crash came here, before the receipt; the restart finds the disk full.
		disk.fill(t)
		r := diskRig(t, j)
		r.start()
		defer r.stop()
		r.e.Handler().Event(context.Background(), acceptor.Event{Kind: acceptor.Disabled})
		time.Sleep(time.Minute)
		synctest.Wait()
		if rs := r.printer.Receipts(); len(rs) != 0 {
			t.Fatalf("printed %+v with the journal failing", rs)
		}
		if !r.health.Has("journal_failure") {
			t.Fatalf("conditions %+v, want the journal failure", r.health.Active())
		}

		disk.free(t)
		time.Sleep(time.Minute) // the engine's probe finds the journal working
		synctest.Wait()
		rs := r.printer.Receipts()
		if len(rs) != 1 || rs[0].Copy || rs[0].Topup.Seq != res.Topup.Seq {
			t.Fatalf("receipts %+v, want the owed original of top-up %d", rs, res.Topup.Seq)
		}
		if tp, ok, _ := r.j.Topup(res.Topup.Seq); !ok || tp.PrintState != journal.PrintDone {
			t.Fatalf("top-up %+v: print state not done", tp)
		}
		r.waitState(Idle)
	})
}

// diskRig is an engine on journal j (opened on a brokenDisk by the caller), with a printer,
// an authorizer that says yes and the health registry wired to the engine.
func diskRig(t *testing.T, j *journal.Journal) *rig {
	t.Helper()
	r := &rig{t: t, j: j, unit: &fakeUnit{}, printer: &fakePrinter{}, health: health.New("b1", nil)}
	var err error
	r.e, err = New(Config{ClockTrusted: trustClock, Journal: j, Acceptor: r.unit, Denominations: denoms, Printer: r.printer, Health: r.health,
		WalletKeys: walletKeys, Authorizer: okAuthz(), Limits: Limits{SessionMax: 50000, OfflineSessionMax: 20000, OfflineTotalMax: 30000}})
	if err != nil {
		t.Fatal(err)
	}
	r.health.Listen(func(health.Condition) { r.e.HealthChanged() })
	return r
}
