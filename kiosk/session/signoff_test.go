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

// A cassette taken out while a note is between the stack decision and its credit latches
// acceptor_cassette_pulled_mid_stack: the note becomes an uncertain item as any note whose
// fate is unknown, and the kiosk stays out of service, the unit back to normal and a restart
// included, until a technician signs it off. A cassette taken out with no note on its way,
// or for a cash collection, latches nothing.
func TestCassettePulledMidStackLatchesUntilSignoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		r := newRig(t, "", okAuthz())
		r.start()
		h := r.e.Handler()
		r.startSession("nonceM001", false)
		if d := h.Escrow(ctx, note(0x62)); d != acceptor.Stack {
			t.Fatalf("escrow decision %v", d)
		}
		h.Event(ctx, acceptor.Event{Kind: acceptor.Stacking})
		h.Event(ctx, acceptor.Event{Kind: acceptor.CassetteRemoved})
		r.waitState(OutOfService)
		if !r.health.Has(SignoffMidStack) {
			t.Fatalf("not raised: %+v", r.health.Active())
		}
		if u, _ := r.j.UncertainItems(); len(u) != 1 || u[0].ValueMinor != 5000 {
			t.Fatalf("uncertain items %+v", u)
		}
		if l, _ := r.j.Latched(); len(l) != 1 || l[0].Kind != SignoffMidStack {
			t.Fatalf("latched %+v", l)
		}
		h.Event(ctx, acceptor.Event{Kind: acceptor.CassetteReplaced})
		h.Event(ctx, acceptor.Event{Kind: acceptor.Disabled})
		synctest.Wait()
		if st, _ := r.e.Status(ctx); st.State != OutOfService.String() {
			t.Fatalf("the cassette back cleared the latch: %+v", st)
		}
		r.stop()

		r = newRig(t, r.path, okAuthz())
		r.start()
		h = r.e.Handler()
		h.Event(ctx, acceptor.Event{Kind: acceptor.Disabled})
		r.waitState(OutOfService)
		if !r.health.Has(SignoffMidStack) {
			t.Fatalf("not raised after a restart: %+v", r.health.Active())
		}
		if err := r.e.SignOff(ctx, SignoffMidStack, "tech 9", "cassette counted and sealed"); err != nil {
			t.Fatal(err)
		}
		r.waitState(Idle)
		if l, _ := r.j.Latched(); len(l) != 0 {
			t.Fatalf("still latched: %+v", l)
		}

		// No note on its way: the cassette's own fault only, cleared by its return.
		h.Event(ctx, acceptor.Event{Kind: acceptor.CassetteRemoved})
		r.waitState(OutOfService)
		h.Event(ctx, acceptor.Event{Kind: acceptor.CassetteReplaced})
		h.Event(ctx, acceptor.Event{Kind: acceptor.Disabled})
		r.waitState(Idle)

		// A collection's cassette out is a step of the procedure, not this condition.
		r.do(Command{Kind: CmdCollectStart, Operator: "alice", CassetteID: "CAS-2"})
		r.waitState(Maintenance)
		h.Event(ctx, acceptor.Event{Kind: acceptor.CassetteRemoved})
		synctest.Wait()
		if r.health.Has(SignoffMidStack) {
			t.Fatalf("latched by a collection: %+v", r.health.Active())
		}
		if l, _ := r.j.Latched(); len(l) != 0 {
			t.Fatalf("latched by a collection: %+v", l)
		}
		r.stop()
	})
}
