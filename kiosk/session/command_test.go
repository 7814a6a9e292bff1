package session

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/sync/wire"
)

func okAuthz() *fakeAuthz {
	return &fakeAuthz{resp: wire.AuthzResponse{ReqID: "x", Status: wire.AuthzOK, RemainingMinor: 50000}}
}

// startSession brings a running rig to accepting with one 50 note credited.
func (r *rig) startSession(nonce string, credit bool) {
	r.t.Helper()
	h := r.e.Handler()
	ctx := context.Background()
	h.Event(ctx, acceptor.Event{Kind: acceptor.Disabled})
	r.waitState(Idle)
	if err := r.e.Scan(code("zed", time.Now().Add(time.Minute), nonce)); err != nil {
		r.t.Fatal(err)
	}
	r.waitState(Accepting)
	if credit {
		h.Escrow(ctx, note(0x62))
		if err := h.Credited(ctx, note(0x62)); err != nil {
			r.t.Fatal(err)
		}
		h.Event(ctx, acceptor.Event{Kind: acceptor.Stacked})
		h.Event(ctx, acceptor.Event{Kind: acceptor.Idle})
	}
}

func TestCommandTable(t *testing.T) {
	for _, tc := range []struct {
		k  CommandKind
		s  State
		ok bool
	}{
		{CmdScan, Idle, true}, {CmdScan, Accepting, false}, {CmdScan, OutOfService, false}, {CmdScan, Maintenance, false},
		{CmdFinish, Accepting, true}, {CmdFinish, Idle, false},
		{CmdCancel, Authorizing, true}, {CmdCancel, Closing, false},
		{CmdMoreTime, Accepting, true}, {CmdMoreTime, Done, false},
		{CmdStatus, Starting, true}, {CmdMaintenance, Accepting, true},
		{CmdReprint, Idle, true}, {CmdReprint, Accepting, false},
		{CmdPrepareUpdate, Starting, false}, {CmdPrepareUpdate, Accepting, true},
	} {
		if got := Legal(tc.k, tc.s); got != tc.ok {
			t.Errorf("Legal(%s, %s) = %v", tc.k, tc.s, got)
		}
	}
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, "", okAuthz())
		if _, err := r.e.Do(context.Background(), Command{Kind: CmdStatus}); !errors.Is(err, ErrNotRunning) {
			t.Fatalf("before Run: %v", err)
		}
		r.start()
		defer r.stop()
		if _, err := r.e.Do(context.Background(), Command{Kind: "launch"}); !errors.Is(err, ErrUnknownCommand) {
			t.Fatalf("unknown command: %v", err)
		}
		r.startSession("nonceC001", true)
		if err := r.e.Reprint(1); !errors.Is(err, ErrBusy) {
			t.Fatalf("reprint during a session: %v", err)
		}
		st, err := r.e.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st.State != "accepting" || st.Session == nil || st.Session.TotalMinor != 5000 || st.Session.AccountMasked == "" {
			t.Fatalf("status %+v", st)
		}
	})
}

// TestMaintenanceWaitsForTheCustomer: maintenance asked during a session takes effect once
// the customer has finished; while on, the acceptor is inhibited and nobody can start.
func TestMaintenanceWaitsForTheCustomer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, "", okAuthz())
		r.start()
		defer r.stop()
		r.startSession("nonceM001", true)
		ctx := context.Background()
		rep, err := r.e.SetMaintenance(ctx, true, false)
		if err != nil || rep.Progress != ProgressWaitingIdle || rep.Status.State != "accepting" {
			t.Fatalf("maintenance during a session: %+v %v", rep, err)
		}
		done := make(chan Reply, 1)
		go func() {
			rep, err := r.e.SetMaintenance(ctx, true, true)
			if err != nil {
				t.Errorf("blocking maintenance: %v", err)
			}
			done <- rep
		}()
		synctest.Wait()
		select {
		case <-done:
			t.Fatal("maintenance took effect with a customer in session")
		default:
		}
		if err := r.e.Finish(); err != nil {
			t.Fatal(err)
		}
		r.e.Handler().Event(ctx, acceptor.Event{Kind: acceptor.Disabled})
		rep = <-done
		if rep.Progress != ProgressDone || !rep.Status.Maintenance {
			t.Fatalf("reply %+v", rep)
		}
		if ob, _ := r.j.Outbox(); len(ob) != 1 || ob[0].AmountMinor != 5000 {
			t.Fatalf("outbox %+v", ob)
		}
		r.waitState(Maintenance)
		synctest.Wait()
		if got := r.unit.Enabled(); got != nil {
			t.Fatalf("acceptor enabled in maintenance: %v", got)
		}
		if err := r.e.Scan(code("yan", time.Now().Add(time.Minute), "nonceM002")); !errors.Is(err, ErrBusy) {
			t.Fatalf("scan in maintenance: %v", err)
		}
		// A copy of the receipt for the technician.
		if err := r.e.Reprint(1); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if rs := r.printer.Receipts(); len(rs) != 2 || rs[0].Copy || !rs[1].Copy || rs[1].Topup.ReceiptNo != 1 {
			t.Fatalf("receipts %+v", rs)
		}
		if err := r.e.Reprint(99); err == nil {
			t.Fatal("reprint of a receipt that does not exist")
		}
		if _, err := r.e.SetMaintenance(ctx, false, false); err != nil {
			t.Fatal(err)
		}
		r.waitState(Idle)
	})
}

func TestOperatorOutOfService(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, "", okAuthz())
		r.start()
		defer r.stop()
		r.e.Handler().Event(context.Background(), acceptor.Event{Kind: acceptor.Disabled})
		r.waitState(Idle)
		if err := r.e.SetOutOfService(true, "cleaning"); err != nil {
			t.Fatal(err)
		}
		r.waitState(OutOfService)
		st, _ := r.e.Status(context.Background())
		if st.Reason != "cleaning" || st.OutOfService != "cleaning" {
			t.Fatalf("status %+v", st)
		}
		if err := r.e.Scan(code("xia", time.Now().Add(time.Minute), "nonceO001")); !errors.Is(err, ErrBusy) {
			t.Fatalf("scan out of service: %v", err)
		}
		if err := r.e.SetOutOfService(false, ""); err != nil {
			t.Fatal(err)
		}
		r.waitState(Idle)
	})
}

// TestMoreTimeExtendsTheCountdown: the inactivity countdown starts again at MoreTime.
func TestMoreTimeExtendsTheCountdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, "", okAuthz())
		r.start()
		defer r.stop()
		r.startSession("nonceT001", false)
		time.Sleep(100 * time.Second) // the accept timeout is 120 s
		if err := r.e.MoreTime(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Second)
		if st := r.e.State(); st != Accepting {
			t.Fatalf("state %v 100 s after MoreTime", st)
		}
		time.Sleep(21 * time.Second)
		synctest.Wait()
		if st := r.e.State(); st == Accepting {
			t.Fatal("session still open past the countdown")
		}
	})
}

// TestPrepareUpdate finishes the customer's session, inhibits the unit and reports ready.
func TestPrepareUpdate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, "", okAuthz())
		r.start()
		defer r.stop()
		r.startSession("nonceU001", true)
		ctx := context.Background()
		rep, err := r.e.PrepareUpdate(ctx, false)
		if err != nil || rep.Progress != ProgressWaitingIdle {
			t.Fatalf("prepare with a customer: %+v %v", rep, err)
		}
		r.e.Handler().Event(ctx, acceptor.Event{Kind: acceptor.Disabled})
		rep, err = r.e.WaitIdle(ctx)
		if err != nil || rep.Progress != ProgressReady || !rep.Status.UpdateReady {
			t.Fatalf("wait idle: %+v %v", rep, err)
		}
		if got := r.unit.Enabled(); got != nil {
			t.Fatalf("unit enabled: %v", got)
		}
		if ob, _ := r.j.Outbox(); len(ob) != 1 || ob[0].Outcome != wire.OutcomeComplete {
			t.Fatalf("outbox %+v", ob)
		}
		if len(r.printer.Receipts()) != 1 {
			t.Fatal("receipt not printed before ready")
		}
	})
}
