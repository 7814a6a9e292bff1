package session

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/journal"
)

// TestCreditAfterCloseIsFollowUp: the acceptor's link drops while a note is stacking and
// stays down past the in-transit timeout, so the session closes with the note as its one
// uncertain item. When the link is back the unit reports the credit of that note. It must
// resolve that item (one note, one item) and reach the customer as a follow-up top-up of the
// same account and wallet code, linked to the original, with its own receipt printed, not
// become a second uncertain item and an "unexpected credit" alarm.
func TestCreditAfterCloseIsFollowUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, "", okAuthz())
		var mu sync.Mutex
		var alarms []string
		r.health.Listen(func(c health.Condition) {
			mu.Lock()
			alarms = append(alarms, c.Kind)
			mu.Unlock()
		})
		r.start()
		defer r.stop()
		r.startSession("nonce7f01", true) // one 50 note credited
		h := r.e.Handler()
		ctx := context.Background()
		if d := h.Escrow(ctx, note(0x63)); d != acceptor.Stack {
			t.Fatal(d)
		}
		h.Event(ctx, acceptor.Event{Kind: acceptor.Stacking})
		h.Event(ctx, acceptor.Event{Kind: acceptor.CommLost})
		// Past the settle and in-transit timeouts: the session closes without the note.
		time.Sleep(30*time.Second + 10*time.Minute + time.Minute)
		synctest.Wait()
		ob, _ := r.j.Outbox()
		if len(ob) != 1 || ob[0].AmountMinor != 5000 {
			t.Fatalf("outbox after the close %+v", ob)
		}
		orig := ob[0]
		u, _ := r.j.UncertainItems()
		if len(u) != 1 || u[0].ValueMinor != 10000 {
			t.Fatalf("uncertain after the close %+v, want the note in transit", u)
		}
		item := u[0]

		h.Event(ctx, acceptor.Event{Kind: acceptor.CommRestored})
		if err := h.Credited(ctx, note(0x63)); err != nil {
			t.Fatal(err)
		}
		// The unit repeats the report (its ACK lost): it is acknowledged, counted nothing.
		if err := h.Credited(ctx, note(0x63)); err != nil {
			t.Fatal(err)
		}
		h.Event(ctx, acceptor.Event{Kind: acceptor.Stacked})
		h.Event(ctx, acceptor.Event{Kind: acceptor.Disabled})
		r.waitState(Idle)
		synctest.Wait()

		if u, _ := r.j.UncertainItems(); len(u) != 0 {
			t.Fatalf("uncertain after the late credit %+v, want the item resolved", u)
		}
		got, ok, _ := r.j.UncertainItem(item.ID)
		ob, _ = r.j.Outbox()
		if len(ob) != 2 {
			t.Fatalf("outbox %+v, want the original and its follow-up", ob)
		}
		fu := ob[1]
		if !ok || !got.Settled || got.ResolvedBy != fu.TopupID {
			t.Fatalf("item %+v not resolved by %s", got, fu.TopupID)
		}
		w, _ := fu.Wire()
		ow, _ := orig.Wire()
		if w.FollowsTopupID != orig.TopupID || w.Account != ow.Account || w.QR == "" || w.QR != ow.QR ||
			w.AmountMinor != 10000 || fu.ReceiptNo != orig.ReceiptNo+1 || len(w.Uncertain) != 0 {
			t.Fatalf("follow-up %+v of %+v", w, ow)
		}
		if c, _ := r.j.Cassette(); c.Count != 2 || c.ValueMinor != 15000 {
			t.Fatalf("cassette %+v, want the two physical notes", c)
		}
		mu.Lock()
		for _, a := range alarms {
			if a == "unexpected_credit" {
				t.Errorf("alarm %s for the late credit of a known note", a)
			}
		}
		mu.Unlock()
		rs := r.printer.Receipts()
		if len(rs) != 2 || rs[1].Topup.TopupID != fu.TopupID || rs[1].Copy || rs[1].FollowsReceiptNo != orig.ReceiptNo {
			t.Fatalf("receipts %+v, want the follow-up's original after the first", rs)
		}
		if tp, _, _ := r.j.Topup(fu.Seq); tp.PrintState != "printed" {
			t.Fatalf("follow-up print state %q", tp.PrintState)
		}
		if _, err := r.j.Verify(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestCreditRefusedPastInTransitTimeoutIsFollowUp: the journal cannot take a credit (disk
// full) for longer than the session waits for it; the session closes with the note as its
// uncertain item once the disk works again. The unit, never acknowledged, reports the credit
// again: a follow-up top-up of that note, no second item.
func TestCreditRefusedPastInTransitTimeoutIsFollowUp(t *testing.T) {
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
		r.startSession("nonce7f02", true)
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
		time.Sleep(30*time.Second + 10*time.Minute + time.Minute)
		disk.free(t)
		time.Sleep(time.Minute)
		synctest.Wait()
		ob, _ := r.j.Outbox()
		if u, _ := r.j.UncertainItems(); len(ob) != 1 || len(u) != 1 {
			t.Fatalf("after the close: outbox %+v, uncertain %+v", ob, u)
		}
		if err := h.Credited(ctx, note(0x63)); err != nil {
			t.Fatal(err)
		}
		h.Event(ctx, acceptor.Event{Kind: acceptor.Stacked})
		h.Event(ctx, acceptor.Event{Kind: acceptor.Disabled})
		r.waitState(Idle)
		synctest.Wait()
		if u, _ := r.j.UncertainItems(); len(u) != 0 {
			t.Fatalf("uncertain %+v", u)
		}
		ob2, _ := r.j.Outbox()
		if len(ob2) != 2 || ob2[1].AmountMinor != 10000 {
			t.Fatalf("outbox %+v", ob2)
		}
		if w, _ := ob2[1].Wire(); w.FollowsTopupID != ob[0].TopupID {
			t.Fatalf("follow-up %+v", w)
		}
		if rs := r.printer.Receipts(); len(rs) != 2 || rs[1].FollowsReceiptNo != ob[0].ReceiptNo || rs[1].Copy {
			t.Fatalf("receipts %+v", rs)
		}
		if _, err := r.j.Verify(); err != nil {
			t.Fatal(err)
		}
	})
}
