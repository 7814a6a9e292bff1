package session

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/sync/wire"
)

func TestSetLimitsAndSignoffAreLegalEverywhere(t *testing.T) {
	for _, s := range allStates {
		if !Legal(CmdSetLimits, s) || !Legal(CmdSignoff, s) {
			t.Errorf("set_limits/signoff not legal in %s", s)
		}
	}
}

// set_limits: checked like the configuration, newer versions only, journaled, in force for
// the next authorization (a session already open keeps its limit), and in force again after
// a restart on the same journal.
func TestSetLimits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		authz := &fakeAuthz{resp: wire.AuthzResponse{ReqID: "x", Status: wire.AuthzOK, RemainingMinor: 1_000_000}}
		r := newRig(t, "", authz)
		r.start()
		r.waitState(Idle)
		st, _ := r.e.Status(ctx)
		if st.Limits == nil || st.Limits.Version != 0 || st.Limits.SessionMaxMinor != 50000 {
			t.Fatalf("configured limits %+v", st.Limits)
		}
		// A session open before the change keeps its limit.
		r.startSession("nonceL001", false)
		for _, bad := range []struct {
			v int64
			l Limits
		}{
			{1, Limits{SessionMax: 0, OfflineSessionMax: 0, OfflineTotalMax: 0}},
			{1, Limits{SessionMax: 30000, OfflineSessionMax: 40000, OfflineTotalMax: 40000}},
			{1, Limits{SessionMax: 30000, OfflineSessionMax: 20000, OfflineTotalMax: 10000}},
			{0, Limits{SessionMax: 30000, OfflineSessionMax: 10000, OfflineTotalMax: 20000}},
		} {
			if err := r.e.SetLimits(ctx, bad.v, bad.l); err == nil {
				t.Fatalf("limits %+v version %d accepted", bad.l, bad.v)
			}
		}
		if err := r.e.SetLimits(ctx, 4, Limits{SessionMax: 30000, OfflineSessionMax: 10000, OfflineTotalMax: 20000}); err != nil {
			t.Fatal(err)
		}
		if err := r.e.SetLimits(ctx, 4, Limits{SessionMax: 60000, OfflineSessionMax: 10000, OfflineTotalMax: 20000}); err == nil {
			t.Fatal("same version accepted twice")
		}
		st, _ = r.e.Status(ctx)
		if st.Session == nil || st.Session.LimitMinor != 50000 || st.Limits.Version != 4 || st.Limits.SessionMaxMinor != 30000 {
			t.Fatalf("open session %+v, limits %+v", st.Session, st.Limits)
		}
		if err := r.e.Finish(); err != nil { // no money: the session is cancelled
			t.Fatal(err)
		}
		r.waitState(Idle)
		if err := r.e.Scan(code("zed", time.Now().Add(time.Minute), "nonceL002")); err != nil {
			t.Fatal(err)
		}
		r.waitState(Accepting)
		if st, _ = r.e.Status(ctx); st.Session == nil || st.Session.LimitMinor != 30000 {
			t.Fatalf("session after the change %+v", st.Session)
		}
		r.e.Cancel()
		r.waitState(Idle)
		n := 0
		r.j.Events(1, func(rec journal.Record) bool {
			if rec.Type == journal.EvLimitsSet {
				n++
			}
			return true
		})
		if n != 1 {
			t.Fatalf("%d limits_set events", n)
		}
		r.stop()

		r2 := newRig(t, r.path, authz)
		r2.start()
		defer r2.stop()
		r2.waitState(Idle)
		if st, _ = r2.e.Status(ctx); st.Limits.Version != 4 || st.Limits.SessionMaxMinor != 30000 || st.Limits.OfflineTotalMaxMinor != 20000 {
			t.Fatalf("after a restart: %+v", st.Limits)
		}
	})
}

// A cheat attempt latches: the unit's next normal report and a restart leave the kiosk out of
// service; only a sign-off with who and why clears it, and it is journaled.
func TestFraudLatchedUntilSignoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		r := newRig(t, "", okAuthz())
		r.start()
		h := r.e.Handler()
		h.Event(ctx, acceptor.Event{Kind: acceptor.Disabled})
		r.waitState(Idle)
		if err := r.e.SignOff(ctx, CondAcceptorFraud, "tech", "nothing"); !errors.Is(err, ErrNothingToSignOff) {
			t.Fatalf("sign-off with nothing latched: %v", err)
		}
		h.Event(ctx, acceptor.Event{Kind: acceptor.Fraud})
		h.Event(ctx, acceptor.Event{Kind: acceptor.Fraud}) // reported again: one latch
		r.waitState(OutOfService)
		if err := r.e.SignOff(ctx, CondAcceptorFraud, "tech", "checked"); err == nil || !strings.Contains(err.Error(), "reset it first") {
			t.Fatalf("sign-off while the unit still reports the cheat: %v", err)
		}
		h.Event(ctx, acceptor.Event{Kind: acceptor.Disabled}) // the unit is back to normal
		synctest.Wait()
		if st, _ := r.e.Status(ctx); st.State != OutOfService.String() || !r.health.Has(CondAcceptorFraud) {
			t.Fatalf("fraud cleared by the unit's normal report: %+v", st)
		}
		r.stop()

		r = newRig(t, r.path, okAuthz())
		r.start()
		h = r.e.Handler()
		h.Event(ctx, acceptor.Event{Kind: acceptor.Disabled})
		r.waitState(OutOfService)
		var c health.Condition
		for _, a := range r.health.Active() {
			if a.Kind == CondAcceptorFraud {
				c = a
			}
		}
		if c.Actor != health.Engineer || c.Effect != health.StopsService {
			t.Fatalf("after a restart: %+v", r.health.Active())
		}
		for _, bad := range []Command{
			{Kind: CmdSignoff, Condition: CondAcceptorFraud, Who: "", Why: "checked"},
			{Kind: CmdSignoff, Condition: CondAcceptorFraud, Who: "tech", Why: " "},
			{Kind: CmdSignoff, Condition: CondAcceptorFraud, Who: "tech\n", Why: "checked"},
			{Kind: CmdSignoff, Condition: "tamper", Who: "tech", Why: "checked"},
		} {
			if _, err := r.e.Do(ctx, bad); err == nil {
				t.Fatalf("sign-off %+v accepted", bad)
			}
		}
		if err := r.e.SignOff(ctx, CondAcceptorFraud, "Li Wei (tech 17)", "string removed from the note path"); err != nil {
			t.Fatal(err)
		}
		r.waitState(Idle)
		var latched, signed int
		var so journal.SignoffEvent
		r.j.Events(1, func(rec journal.Record) bool {
			switch rec.Type {
			case journal.EvConditionLatched:
				latched++
			case journal.EvSignoff:
				signed++
				p, _ := rec.Payload()
				so = *p.(*journal.SignoffEvent)
			}
			return true
		})
		if latched != 1 || signed != 1 || so.Who != "Li Wei (tech 17)" || so.Condition != CondAcceptorFraud || so.Latched == 0 {
			t.Fatalf("journal: %d latched, %d sign-offs, %+v", latched, signed, so)
		}
		if l, _ := r.j.Latched(); len(l) != 0 {
			t.Fatalf("still latched: %+v", l)
		}
		r.stop()
	})
}

// A condition the journal does not latch (the tamper switch's) is signed off only when the
// SignOffCheck allows it.
func TestSignoffOfAnExternalLatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		r := newRig(t, "", okAuthz())
		switchActive := true
		r.e.cfg.SignOffCheck = func(cond string) error {
			if cond == "tamper" && switchActive {
				return errors.New("tamper switch still triggered")
			}
			return nil
		}
		r.start()
		defer r.stop()
		r.e.Handler().Event(ctx, acceptor.Event{Kind: acceptor.Disabled})
		r.waitState(Idle)
		r.health.Set("tamper", health.Critical, health.Engineer, health.StopsService, "tamper switch triggered")
		r.waitState(OutOfService)
		if err := r.e.SignOff(ctx, "tamper", "tech", "checked"); err == nil {
			t.Fatal("signed off while the switch is triggered")
		}
		switchActive = false
		if err := r.e.SignOff(ctx, "tamper", "tech", "cabinet inspected, seal replaced"); err != nil {
			t.Fatal(err)
		}
		r.waitState(Idle)
		if err := r.e.SignOff(ctx, "tamper", "tech", "again"); !errors.Is(err, ErrNothingToSignOff) {
			t.Fatalf("second sign-off: %v", err)
		}
	})
}
