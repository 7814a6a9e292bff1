package session

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

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
		// While the unit still reports the cheat attempt the sign-off is refused: it would put
		// a kiosk whose unit takes no note back in service.
		if _, err := r.e.Do(ctx, Command{Kind: CmdSignoff, Condition: SignoffFraud, Who: "technician/1", Why: "inspected"}); err == nil {
			t.Fatal("sign-off accepted while the unit reports the cheat attempt")
		}
		h.Event(ctx, acceptor.Event{Kind: acceptor.Disabled}) // the unit after its reset
		synctest.Wait()
		if !r.health.Has(SignoffFraud) {
			t.Fatal("fraud cleared by the unit's reset, without a sign-off")
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
		var got []journal.SignoffEvent
		if err := r.j.Events(0, func(rec journal.Record) bool {
			if p, _ := rec.Payload(); p != nil {
				if s, ok := p.(*journal.SignoffEvent); ok {
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

// TestNoteTest: in maintenance only, the unit is enabled for every denomination, the test
// note is returned from escrow and journaled as refused ("acceptor self-test"), nothing is
// credited or counted, and the unit is inhibited again.
func TestNoteTest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, "", okAuthz())
		r.start()
		defer r.stop()
		ctx := context.Background()
		h := r.e.Handler()
		h.Event(ctx, acceptor.Event{Kind: acceptor.Disabled})
		r.waitState(Idle)
		if _, err := r.e.NoteTest(ctx); !errors.Is(err, ErrNoteTest) {
			t.Fatalf("note test outside maintenance: %v", err)
		}
		if _, err := r.e.SetMaintenance(ctx, true, true); err != nil {
			t.Fatal(err)
		}
		type res struct {
			r   NoteTestResult
			err error
		}
		got := make(chan res, 1)
		go func() {
			nr, err := r.e.NoteTest(ctx)
			got <- res{nr, err}
		}()
		synctest.Wait()
		if en := r.unit.Enabled(); len(en) != len(denoms) {
			t.Fatalf("enabled for the test: %v", en)
		}
		if d := h.Escrow(ctx, note(0x62)); d != acceptor.Return {
			t.Fatalf("test note: %v", d)
		}
		h.Event(ctx, acceptor.Event{Kind: acceptor.Returned})
		out := <-got
		if out.err != nil || out.r.ValueMinor != 5000 || !out.r.Known {
			t.Fatalf("result %+v", out)
		}
		synctest.Wait()
		if en := r.unit.Enabled(); en != nil {
			t.Fatalf("still enabled after the test: %v", en)
		}
		// A second note in maintenance is returned as usual.
		if d := h.Escrow(ctx, note(0x62)); d != acceptor.Return {
			t.Fatalf("note after the test: %v", d)
		}
		c, err := r.j.Cassette()
		if err != nil || c.Count != 0 || c.ValueMinor != 0 {
			t.Fatalf("cassette %+v %v", c, err)
		}
		found := false
		_ = r.j.Events(0, func(rec journal.Record) bool {
			if p, _ := rec.Payload(); p != nil {
				if nr, ok := p.(*journal.NoteRefusedEvent); ok && nr.Reason == "acceptor self-test: test note returned" {
					found = true
				}
			}
			return true
		})
		if !found {
			t.Fatal("the test note is not journaled")
		}
		// A test nobody feeds ends with its context and leaves the unit inhibited.
		tctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if _, err := r.e.NoteTest(tctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("unfed test: %v", err)
		}
		synctest.Wait()
		if en := r.unit.Enabled(); en != nil {
			t.Fatalf("enabled after an unfed test: %v", en)
		}
	})
}
