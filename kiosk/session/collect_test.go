package session

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/kiosk/journal"
)

type slipFake struct {
	*fakePrinter
	mu    sync.Mutex
	slips []Slip
}

func (p *slipFake) PrintCollectionSlip(ctx context.Context, s Slip) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.slips = append(p.slips, s)
	return nil
}

func (p *slipFake) Slips() []Slip {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Slip(nil), p.slips...)
}

func (r *rig) withSlips() *slipFake {
	sp := &slipFake{fakePrinter: r.printer}
	r.e.cfg.Printer = sp
	return sp
}

func (r *rig) do(cmd Command) Reply {
	r.t.Helper()
	rep, err := r.e.Do(context.Background(), cmd)
	if err != nil {
		r.t.Fatalf("%s: %v", cmd.Kind, err)
	}
	return rep
}

// A collection asked for during a session waits for the customer; the unit's cassette
// reports are its cassette-out and cassette-in steps; the record resets the counters once and
// the slip prints; then service resumes.
func TestCollectionProcedure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, "", okAuthz())
		sp := r.withSlips()
		r.start()
		defer r.stop()
		r.startSession("nonceK001", true)
		ctx := context.Background()
		rep := r.do(Command{Kind: CmdCollectStart, Operator: "alice", CassetteID: "CAS-1"})
		if rep.Progress != ProgressWaitingIdle || rep.Status.Collection == nil || rep.Status.Collection.Step != journal.CollectStarted {
			t.Fatalf("start during a session: %+v", rep)
		}
		if _, err := r.e.Do(ctx, Command{Kind: CmdCollectCount}); !errors.Is(err, ErrBusy) {
			t.Fatalf("count while the customer is in session: %v", err)
		}
		if err := r.e.Finish(); err != nil {
			t.Fatal(err)
		}
		r.e.Handler().Event(ctx, acceptor.Event{Kind: acceptor.Disabled})
		r.waitState(Maintenance)
		if _, err := r.e.SetMaintenance(ctx, false, false); !errors.Is(err, ErrCollection) {
			t.Fatalf("maintenance off during a collection: %v", err)
		}
		if _, err := r.e.Do(ctx, Command{Kind: CmdCollectFinish}); !errors.Is(err, ErrCollection) {
			t.Fatalf("finish before the count: %v", err)
		}
		r.e.Handler().Event(ctx, acceptor.Event{Kind: acceptor.CassetteRemoved})
		synctest.Wait()
		st, _ := r.e.Status(ctx)
		if st.Collection == nil || st.Collection.Step != journal.CollectCassetteOut || st.Collection.CassetteOutBy != "device" ||
			st.Collection.Record.ExpectedMinor != 5000 {
			t.Fatalf("after the cassette came out: %+v", st.Collection)
		}
		if _, err := r.e.Do(ctx, Command{Kind: CmdCollectCount, Counts: []journal.NoteLine{{ValueMinor: 777, Count: 1}}}); !errors.Is(err, ErrCollection) {
			t.Fatalf("count of a value the kiosk does not take: %v", err)
		}
		rep = r.do(Command{Kind: CmdCollectCount, Counts: []journal.NoteLine{{ValueMinor: 5000, Count: 1}, {ValueMinor: 1000, Count: 1}}})
		if rec := rep.Status.Collection.Record; rec.DifferenceMinor != 1000 || rec.CountedMinor != 6000 {
			t.Fatalf("preview %+v", rec)
		}
		r.do(Command{Kind: CmdCollectFinish})
		synctest.Wait()
		if s := sp.Slips(); len(s) != 1 || s[0].Copy || s[0].Record.DifferenceMinor != 1000 || s[0].Record.Operator != "alice" {
			t.Fatalf("slips %+v", s)
		}
		if cas, _ := r.j.Cassette(); cas.Count != 0 {
			t.Fatalf("cassette not reset: %+v", cas)
		}
		if st, _ := r.e.Status(ctx); st.State != "maintenance" || st.Collection == nil {
			t.Fatalf("ended before the cassette is in: %+v", st)
		}
		r.e.Handler().Event(ctx, acceptor.Event{Kind: acceptor.CassetteReplaced})
		r.waitState(Idle)
		st, _ = r.e.Status(ctx)
		if st.Collection != nil || st.Maintenance {
			t.Fatalf("after the collection: %+v", st)
		}
		if box, _ := r.j.CollectionOutbox(); len(box) != 1 {
			t.Fatalf("collection outbox %+v", box)
		}
	})
}

// A restart in the middle resumes the procedure at its journaled step, in maintenance.
func TestCollectionResumesAfterRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, "", okAuthz())
		r.start()
		r.e.Handler().Event(context.Background(), acceptor.Event{Kind: acceptor.Disabled})
		r.waitState(Idle)
		r.do(Command{Kind: CmdCollectStart, Operator: "bob"})
		r.do(Command{Kind: CmdCollectCassetteOut})
		r.do(Command{Kind: CmdCollectCount, Counts: []journal.NoteLine{}})
		path := r.path
		r.stop()

		r = newRig(t, path, okAuthz())
		sp := r.withSlips()
		r.start()
		defer r.stop()
		r.e.Handler().Event(context.Background(), acceptor.Event{Kind: acceptor.Disabled})
		r.waitState(Maintenance)
		st, _ := r.e.Status(context.Background())
		if st.Collection == nil || st.Collection.Step != journal.CollectCounted || st.Collection.Operator != "bob" {
			t.Fatalf("resumed %+v", st.Collection)
		}
		rep := r.do(Command{Kind: CmdCollectStart, Operator: "someone else"})
		if rep.Status.Collection.Operator != "bob" {
			t.Fatalf("start again did not resume: %+v", rep.Status.Collection)
		}
		r.do(Command{Kind: CmdCollectFinish})
		r.do(Command{Kind: CmdCollectCassetteIn})
		r.waitState(Idle)
		if len(sp.Slips()) != 1 {
			t.Fatalf("slips %+v", sp.Slips())
		}
	})
}
