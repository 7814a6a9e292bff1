package e2e

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kioskd/kioskd/hw-sim/simrig"
	"github.com/kioskd/kioskd/kiosk/config"
	"github.com/kioskd/kioskd/kiosk/ctl"
	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/kiosk/session"
	"github.com/kioskd/kioskd/sync/ledger"
	"github.com/kioskd/kioskd/sync/wire"
)

// Cash collection end to end: kioskd as a process, the acceptor emulator's cassette pulled
// and put back, the collector's count taken from the emulator's own log of the cassette, the
// record at the reference ledger, the slip on the printer emulator.

// newCollectEnv is an environment whose kiosk speaks Chinese on a printer with a Chinese
// font, so that the slip carries both languages.
func newCollectEnv(t *testing.T, deadline time.Duration, kind brokerKind) *env {
	e := newEnv(t, options{resultDisplay: 300 * time.Millisecond, ackWait: 300 * time.Millisecond, deadline: deadline, broker: kind})
	e.cfg.Kiosk.Language = "zh-CN"
	e.cfg.Printer.Profile = "chinese80"
	if err := config.WriteFile(e.cfgPath, e.cfg); err != nil {
		t.Fatal(err)
	}
	return e
}

// collect runs one collect action over the control socket.
func (e *env) collect(req ctl.CollectRequest) (session.Reply, error) {
	ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	defer cancel()
	return ctl.NewClient(e.cfg.Control.Socket).Collect(ctx, req)
}

func (e *env) mustCollect(req ctl.CollectRequest) session.Reply {
	e.t.Helper()
	rep, err := e.collect(req)
	if err != nil {
		e.t.Fatalf("collect %s: %v", req.Action, err)
	}
	return rep
}

// customer tops up account with notes and waits until the ledger credited them.
func (e *env) customer(account string, notes ...int64) {
	e.t.Helper()
	before := e.account(account).Balances["CNY"]
	e.waitView("idle", func(v session.View) bool { return v.State == "idle" })
	e.scan(account)
	e.waitView("accepting", func(v session.View) bool { return v.State == "accepting" })
	var sum int64
	for _, n := range notes {
		e.insert(n)
		sum += n
		e.waitView("note counted", func(v session.View) bool { return v.TotalMinor == sum })
	}
	e.post("/api/finish")
	e.waitFor("credited at the ledger", func() bool { return e.account(account).Balances["CNY"] == before+sum })
}

func countOf(c simrig.CassetteCount) []journal.NoteLine {
	out := []journal.NoteLine{}
	for _, n := range c.Notes {
		out = append(out, journal.NoteLine{ValueMinor: n.ValueMinor, Count: n.Count})
	}
	return out
}

func (e *env) counters() ctl.Counters {
	e.t.Helper()
	var c ctl.Counters
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	if err := ctl.NewClient(e.cfg.Control.Socket).Get(ctx, "/v1/counters", &c); err != nil {
		e.t.Fatal(err)
	}
	return c
}

func (e *env) slips() []string {
	var out []string
	for _, d := range e.rig.Printer.Documents() {
		if d.Cut && strings.Contains(d.Text, "CASH COLLECTION SLIP") {
			out = append(out, d.Text)
		}
	}
	return out
}

// TestCashCollectionEndToEnd: notes in, one note made uncertain by a stacker jam, the
// collection counts the cassette and finds it; the record reaches the ledger with expected,
// counted, difference and the item; ops settle the item with the collection as evidence; the
// slip is printed in both languages; the counters start from zero and service is back.
func TestCashCollectionEndToEnd(t *testing.T) { cashCollection(t, embedded) }

// TestCashCollectionMosquittoTLS runs it under the production broker configuration and ACL:
// the ledger may answer on down/collection_ack.
func TestCashCollectionMosquittoTLS(t *testing.T) { cashCollection(t, mosquitto) }

func cashCollection(t *testing.T, kind brokerKind) {
	e := newCollectEnv(t, 0, kind)
	e.startKiosk("")
	e.waitOnline()
	e.customer("gina", 10000, 5000)

	// The fault: the next note jams in the stacker past its point of no return, before its
	// credit. The session closes interrupted with the note an uncertain item.
	e.waitView("idle", func(v session.View) bool { return v.State == "idle" })
	e.scan("hank")
	e.waitView("accepting", func(v session.View) bool { return v.State == "accepting" })
	e.insert(5000)
	e.waitView("note counted", func(v session.View) bool { return v.TotalMinor == 5000 })
	if err := e.rig.JamNextStack(); err != nil {
		t.Fatal(err)
	}
	e.insert(2000)
	v := e.waitView("interrupted with an uncertain item", func(v session.View) bool {
		return v.Result != nil && v.Result.Uncertain == 1 && v.Result.Printed
	})
	if v.Result.AmountMinor != 5000 || v.Result.Outcome != wire.OutcomeInterrupted {
		t.Fatalf("result %+v", v.Result)
	}
	hankTopup := v.Result.TopupID
	e.rig.Acc.ClearJam() // the technician pushes the note into the cassette
	e.waitFor("hank credited", func() bool { return e.account("hank").Balances["CNY"] == 5000 })
	e.waitView("idle", func(v session.View) bool { return v.State == "idle" })

	// The collection.
	rep := e.mustCollect(ctl.CollectRequest{Action: "start", Operator: "alice", CassetteID: "CAS-1", Wait: true})
	if rep.Status.State != "maintenance" || rep.Status.Collection == nil {
		t.Fatalf("start: %+v", rep.Status)
	}
	id := rep.Status.Collection.ID
	if err := e.rig.Acc.PullCassette(); err != nil {
		t.Fatal(err)
	}
	e.waitFor("the unit's cassette-out report", func() bool {
		rep, err := e.collect(ctl.CollectRequest{Action: "status"})
		return err == nil && rep.Status.Collection != nil && rep.Status.Collection.Step == journal.CollectCassetteOut
	})
	count := e.rig.CountCassette(0)
	if count.TotalMinor != 22000 || count.Count != 4 {
		t.Fatalf("the emulator's cassette %+v", count)
	}
	rep = e.mustCollect(ctl.CollectRequest{Action: "count", Counts: countOf(count)})
	rec := rep.Status.Collection.Record
	if rec.ExpectedMinor != 20000 || rec.CountedMinor != 22000 || rec.DifferenceMinor != 2000 || len(rec.Uncertain) != 1 ||
		rec.Uncertain[0].ValueMinor != 2000 || rec.Uncertain[0].TopupID != hankTopup || rec.CassetteOutBy != "device" {
		t.Fatalf("the record before finish %+v", rec)
	}
	rep = e.mustCollect(ctl.CollectRequest{Action: "finish"})
	if rep.Status.Collection.Step != journal.CollectRecorded {
		t.Fatalf("finish: %+v", rep.Status.Collection)
	}
	if c := e.counters(); c.Notes != 0 || c.ValueMinor != 0 {
		t.Fatalf("counters after the record: %+v", c)
	}
	e.waitFor("the slip", func() bool { return len(e.slips()) == 1 })
	slip := e.slips()[0]
	for _, want := range []string{"现金清机单", "CASH COLLECTION SLIP", id, "CAS-1", "alice", "长款", "SURPLUS", "+20.00",
		"清机员签字", "Collector signature", "复核人签字", "Witness signature", "待核实项目", "Uncertain items", hankTopup} {
		if !strings.Contains(slip, want) {
			t.Errorf("slip lacks %q:\n%s", want, slip)
		}
	}
	if strings.Contains(slip, "COPY") {
		t.Errorf("the first slip says COPY:\n%s", slip)
	}
	if err := e.rig.Acc.ReplaceCassette(); err != nil {
		t.Fatal(err)
	}
	e.waitView("service back", func(v session.View) bool { return v.State == "idle" })
	if st, err := e.collect(ctl.CollectRequest{Action: "status"}); err != nil || st.Status.Collection != nil || st.Status.Maintenance {
		t.Fatalf("after the collection: %+v %v", st.Status, err)
	}

	// The ledger: the record with the item linked to the top-up's suspense record.
	var view ledger.CollectionView
	e.waitFor("the record at the ledger", func() bool {
		var err error
		view, err = e.store.Collection(id)
		return err == nil
	})
	c := view.Collection
	if c.ExpectedMinor != 20000 || c.CountedMinor != 22000 || c.DifferenceMinor != 2000 || c.Operator != "alice" || len(view.Items) != 1 {
		t.Fatalf("ledger record %+v items %+v", c, view.Items)
	}
	item := view.Items[0]
	if item.TopupID != hankTopup || item.Account != "hank" || item.ValueMinor != 2000 || item.CollectionID != id {
		t.Fatalf("item %+v", item)
	}
	if sus, _ := e.store.Suspense(); len(sus) != 1 {
		t.Fatalf("suspense records %+v", sus) // linked, not doubled
	}
	// Ops settle it on the count's evidence: hank gets the note.
	if _, err := e.store.DecideSuspense(item.Ref, ledger.Decision{Action: ledger.ActionRelease, Operator: "ops1",
		Note: "found in the cassette at collection", CollectionID: id}); err != nil {
		t.Fatal(err)
	}
	if got := e.account("hank").Balances["CNY"]; got != 7000 {
		t.Fatalf("hank after the settlement: %d", got)
	}
	// The kiosk's outbox entry left on the ledger's signed ack.
	e.waitFor("the record acked", func() bool {
		var d map[string]any
		return e.diag(&d) == nil && !strings.Contains(e.kioskOut.String(), "collection publish failed") &&
			strings.Contains(e.kioskOut.String(), "collection ack applied")
	})

	// Service is back and the counters count from zero.
	e.customer("ivan", 1000)
	if c := e.counters(); c.Notes != 1 || c.ValueMinor != 1000 {
		t.Fatalf("counters after the next customer: %+v", c)
	}
}

// collectCrashPoints are the failpoints of the collection procedure (engine and uplink).
var collectCrashPoints = []string{
	"collect-before-start", "collect-after-start", "collect-before-cassette-out", "collect-after-cassette-out",
	"collect-before-count", "collect-after-count", "collect-before-record", "collect-after-record",
	"collect-before-slip", "collect-after-slip", "collect-before-cassette-in", "collect-after-cassette-in",
	"collect-before-end", "collect-after-end", "before-publish-collection", "after-publish-collection",
}

// TestCashCollectionCrashAtEachStep runs one collection per crash point on one kiosk: kioskd
// is SIGKILLed at the point, restarted, and the collector carries on from the step the kiosk
// reports. Each collection makes one record (at the ledger, numbered without gaps) and one
// reset: each period's expected amount is exactly what its customer put in.
func TestCashCollectionCrashAtEachStep(t *testing.T) {
	if testing.Short() {
		t.Skip("a kioskd crash per collection step")
	}
	e := newCollectEnv(t, time.Duration(len(collectCrashPoints))*40*time.Second+time.Minute, embedded)
	e.startKiosk("")
	e.waitOnline()
	crashes := 0
	for i, point := range collectCrashPoints {
		note := []int64{1000, 2000, 5000, 10000}[i%4]
		e.customer("judy", note)
		e.stopKiosk()
		e.startKiosk(point)
		if e.driveCollection() {
			crashes++
		} else {
			t.Errorf("%s: the crash point was never reached", point)
		}
		e.stopKiosk()
		e.startKiosk("")
		e.waitOnline()
	}
	recs, err := e.store.Collections(kioskID)
	e.waitFor("every record at the ledger", func() bool {
		recs, err = e.store.Collections(kioskID)
		return err == nil && len(recs) == len(collectCrashPoints)
	})
	for i, r := range recs {
		c := r.Collection
		want := []int64{1000, 2000, 5000, 10000}[i%4]
		if c.No != uint64(i+1) || c.ExpectedMinor != want || c.CountedMinor != want || c.DifferenceMinor != 0 || r.Conflicts != 0 {
			t.Errorf("collection %d (%s): %+v", i+1, collectCrashPoints[i], c)
		}
	}
	if c := e.counters(); c.Notes != 0 {
		t.Errorf("counters after the last collection %+v", c)
	}
	var rep journal.VerifyReport
	ctx, cancel := context.WithTimeout(e.ctx, time.Minute)
	defer cancel()
	if err := ctl.NewClient(e.cfg.Control.Socket).Post(ctx, "/v1/journal/verify", nil, &rep); err != nil {
		t.Fatalf("journal verify: %v", err)
	}
	t.Logf("collections=%d crashes=%d", len(recs), crashes)
}

// driveCollection is a collector carrying out one collection on a kioskd that may die at its
// armed crash point: after a crash it restarts kioskd and goes on from the step the kiosk
// reports (its journaled step). It reports whether kioskd crashed.
func (e *env) driveCollection() (crashed bool) {
	e.t.Helper()
	seen := ""
	out := false // the driver alone pulls and replaces the cassette
	deadline := time.Now().Add(2 * time.Minute)
	var lastStep string
	var stepSince time.Time
	for time.Now().Before(deadline) {
		if e.kioskDied() {
			crashed = true
			e.startKiosk("")
			continue
		}
		rep, err := e.collect(ctl.CollectRequest{Action: "status"})
		if err != nil {
			e.pause()
			continue
		}
		col := rep.Status.Collection
		step := ""
		if col != nil {
			step, seen = col.Step, col.ID
		}
		if step != lastStep {
			lastStep, stepSince = step, time.Now()
		}
		stuck := time.Since(stepSince) > 3*time.Second
		switch step {
		case "":
			if seen != "" {
				// It ended; the uplink may still be armed to crash on the record's publish.
				e.waitFor("the record sent", func() bool { _, err := e.store.Collection(seen); return err == nil || e.kioskDied() })
				if e.kioskDied() {
					crashed = true
					e.startKiosk("")
					e.waitFor("the record sent after the restart", func() bool { _, err := e.store.Collection(seen); return err == nil })
				}
				return crashed
			}
			_, _ = e.collect(ctl.CollectRequest{Action: "start", Operator: "kim", Wait: true})
		case journal.CollectStarted:
			if !out {
				if err := e.rig.Acc.PullCassette(); err != nil {
					e.t.Fatal(err)
				}
				out = true
			} else if stuck {
				// The unit's report went to a process that died: the collector confirms.
				_, _ = e.collect(ctl.CollectRequest{Action: "cassette_out"})
			}
		case journal.CollectCassetteOut, journal.CollectCounted:
			if step == journal.CollectCassetteOut || stuck {
				_, _ = e.collect(ctl.CollectRequest{Action: "count", Counts: countOf(e.rig.CountCassette(0))})
			}
			if step == journal.CollectCounted {
				_, _ = e.collect(ctl.CollectRequest{Action: "finish"})
			}
		case journal.CollectRecorded:
			switch {
			case !col.SlipDone():
				// The slip prints by itself.
			case out:
				if err := e.rig.Acc.ReplaceCassette(); err != nil {
					e.t.Fatal(err)
				}
				out = false
			case !col.CassetteIn && stuck:
				_, _ = e.collect(ctl.CollectRequest{Action: "cassette_in"})
			}
		}
		e.pause()
	}
	e.t.Fatalf("collection did not finish; kioskd output:\n%s", tail(e.kioskOut.String(), 40))
	return crashed
}

func (e *env) pause() {
	select {
	case <-e.ctx.Done():
		e.t.Fatal("test deadline")
	case <-time.After(50 * time.Millisecond):
	}
}

// kioskDied reports (and reaps) a kioskd that ended.
func (e *env) kioskDied() bool {
	if e.kiosk == nil {
		return true
	}
	select {
	case err := <-e.exited:
		var ee interface{ ExitCode() int }
		if !errors.As(err, &ee) {
			e.t.Fatalf("kioskd ended with %v", err)
		}
		e.kiosk = nil
		return true
	default:
		return false
	}
}
