package session

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/kiosk/journal"
)

// TestSignoff: a fraud attempt stops service until a sign-off with who and why, which the
// journal keeps; a swapped unit reported as a failure is signed off under its own name; a
// sign-off of anything else, or without a reason, is refused and journals nothing.
func TestSignoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, "", okAuthz())
		r.start()
		defer r.stop()
		ctx := context.Background()
		h := r.e.Handler()
		h.Event(ctx, acceptor.Event{Kind: acceptor.Disabled})
		r.waitState(Idle)
		if _, err := r.e.Do(ctx, Command{Kind: CmdSignoff, Condition: SignoffFraud, Who: "technician/1", Why: "looked"}); !errors.Is(err, ErrNothingToSignOff) {
			t.Fatalf("sign-off with nothing active: %v", err)
		}
		h.Event(ctx, acceptor.Event{Kind: acceptor.Fraud})
		r.waitState(OutOfService)
		for _, c := range []Command{
			{Kind: CmdSignoff, Condition: SignoffFraud, Who: "technician/1"},
			{Kind: CmdSignoff, Condition: "printer_paper_out", Who: "technician/1", Why: "x"},
		} {
			if _, err := r.e.Do(ctx, c); err == nil {
				t.Fatalf("%+v accepted", c)
			}
		}
		if _, err := r.e.Do(ctx, Command{Kind: CmdSignoff, Condition: SignoffFraud, Who: "technician/1", Why: "inspected"}); err != nil {
			t.Fatal(err)
		}
		if r.health.Has(SignoffFraud) {
			t.Fatal("fraud still active after the sign-off")
		}
		r.waitState(Idle)

		// A unit swapped on the line (eSSP reports it as a failure).
		h.Event(ctx, acceptor.Event{Kind: acceptor.Failure, Code: 0xF1, Detail: "unit swapped: serial 00000001 -> 00000002"})
		r.waitState(OutOfService)
		if _, err := r.e.Do(ctx, Command{Kind: CmdSignoff, Condition: SignoffUnitSwapped, Who: "kioskctl uid 0 (alice)", Why: "replaced by us"}); err != nil {
			t.Fatal(err)
		}
		var got []journal.SignOffEvent
		if err := r.j.Events(0, func(rec journal.Record) bool {
			if p, _ := rec.Payload(); p != nil {
				if s, ok := p.(*journal.SignOffEvent); ok {
					got = append(got, *s)
				}
			}
			return true
		}); err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[0].Condition != SignoffFraud || got[0].Why != "inspected" || got[1].Condition != SignoffUnitSwapped || got[1].Who != "kioskctl uid 0 (alice)" {
			t.Fatalf("sign-offs %+v", got)
		}
	})
}
