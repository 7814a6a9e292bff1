package journal

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/kioskd/kioskd/sync/wire"
)

// collectionFixture leaves a journal with 3 notes credited (two of 100.00, one of 50.00) and
// one uncertain item of 20.00 (an intent open when its session closed).
func collectionFixture(t *testing.T, j *Journal) {
	t.Helper()
	s := mustSession(t, j, 1_000_000)
	credit(t, j, s.ID, 10000)
	credit(t, j, s.ID, 10000)
	credit(t, j, s.ID, 5000)
	if _, err := j.StackIntent(s.ID, Note{Code: 0x61, ValueMinor: 2000}); err != nil {
		t.Fatal(err)
	}
	if _, err := j.CloseSession(CloseParams{SessionID: s.ID, Outcome: wire.OutcomeComplete}); err != nil {
		t.Fatal(err)
	}
	if u, err := j.UncertainItems(); err != nil || len(u) != 1 {
		t.Fatalf("fixture: uncertain %v %v", u, err)
	}
}

// The procedure's steps, in order; each is one journal commit.
var collectionSteps = []struct {
	name string
	do   func(j *Journal) error
}{
	{"start", func(j *Journal) error { _, _, err := j.StartCollection("alice", "CAS-7"); return err }},
	{"cassette_out", func(j *Journal) error { _, err := j.CollectionCassetteOut("device"); return err }},
	{"count", func(j *Journal) error {
		// The collector finds the uncertain note: one 20.00 more than expected.
		_, err := j.CountCollection([]NoteLine{{ValueMinor: 10000, Count: 2}, {ValueMinor: 5000, Count: 1}, {ValueMinor: 2000, Count: 1}})
		return err
	}},
	{"record", func(j *Journal) error { _, err := j.RecordCollection(); return err }},
	{"slip_start", func(j *Journal) error { _, _, err := j.CollectionSlipStart(); return err }},
	{"slip_done", func(j *Journal) error { _, err := j.CollectionSlipDone(true, ""); return err }},
	{"cassette_in", func(j *Journal) error { _, err := j.CollectionCassetteIn("device"); return err }},
	{"end", func(j *Journal) error { _, err := j.EndCollection(); return err }},
}

// A crash after any step: the reopened journal verifies, the procedure resumes at the
// journaled step (repeating a step that committed changes nothing), and at the end there is
// one record and one reset.
func TestCollectionResumesAfterEveryStep(t *testing.T) {
	for crashAfter := range collectionSteps {
		t.Run(collectionSteps[crashAfter].name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "journal.db")
			clk := &fakeClock{t: time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)}
			open := func() *Journal {
				j, err := Open(path, Options{KioskID: "K1", Currency: "CNY", Now: clk.Now})
				if err != nil {
					t.Fatal(err)
				}
				return j
			}
			j := open()
			collectionFixture(t, j)
			for i, st := range collectionSteps {
				if err := st.do(j); err != nil {
					t.Fatalf("step %s: %v", st.name, err)
				}
				if i == crashAfter {
					j.Close()
					j = open() // verifies the chain and the views
					// Resume: the step that committed may be asked again (the operator
					// does not know whether it got through); it must change nothing.
					if st.name != "slip_start" && st.name != "end" {
						if err := st.do(j); err != nil && !errors.Is(err, ErrCollectionStep) && !errors.Is(err, ErrNoCollection) {
							t.Fatalf("repeating %s: %v", st.name, err)
						}
					}
				}
			}
			defer j.Close()
			checkOneCollection(t, j)
		})
	}
}

func checkOneCollection(t *testing.T, j *Journal) {
	t.Helper()
	all, err := j.Collections()
	if err != nil || len(all) != 1 {
		t.Fatalf("collections %+v %v", all, err)
	}
	c := all[0]
	if c.Step != CollectEnded || c.State != CollectionPending {
		t.Fatalf("collection %+v", c)
	}
	w, err := c.Wire("K1", "CNY")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Validate(); err != nil {
		t.Fatal(err)
	}
	if w.ExpectedMinor != 25000 || w.CountedMinor != 27000 || w.DifferenceMinor != 2000 || len(w.Uncertain) != 1 || w.Uncertain[0].ValueMinor != 2000 {
		t.Fatalf("record %+v", w)
	}
	if w.Uncertain[0].TopupID == "" || w.CassetteID != "CAS-7" || w.Operator != "alice" || w.CassetteOutBy != "device" {
		t.Fatalf("record %+v", w)
	}
	cas, err := j.Cassette()
	if err != nil || cas.Count != 0 || cas.ValueMinor != 0 || len(cas.ByValue) != 0 {
		t.Fatalf("cassette after collection %+v %v", cas, err)
	}
	if u, err := j.UncertainItems(); err != nil || len(u) != 0 {
		t.Fatalf("uncertain after collection %+v %v", u, err)
	}
	if _, open, _ := j.OpenCollection(); open {
		t.Fatal("collection still open")
	}
	recorded := 0
	j.Events(1, func(r Record) bool {
		if r.Type == EvCollectionRecorded {
			recorded++
		}
		return true
	})
	if recorded != 1 {
		t.Fatalf("%d collection_recorded events", recorded)
	}
	if _, err := j.Verify(); err != nil {
		t.Fatal(err)
	}
}

// The next collection's period starts after this one, and notes credited after it count
// from zero; the outbox entry leaves on the ledger's ack.
func TestCollectionPeriodsAndAck(t *testing.T) {
	j, _ := openTest(t)
	collectionFixture(t, j)
	for _, st := range collectionSteps {
		if err := st.do(j); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
	}
	first, _ := j.Collections()
	box, err := j.CollectionOutbox()
	if err != nil || len(box) != 1 {
		t.Fatalf("outbox %v %v", box, err)
	}
	if _, _, err := j.ApplyCollectionAck(wire.CollectionAck{V: 1, CollectionID: first[0].ID, Status: wire.CollectionStored, LedgerRef: "CO1"}); err != nil {
		t.Fatal(err)
	}
	if _, changed, err := j.ApplyCollectionAck(wire.CollectionAck{V: 1, CollectionID: first[0].ID, Status: wire.CollectionDuplicate}); err != nil || changed {
		t.Fatalf("repeated ack changed=%v err=%v", changed, err)
	}
	if box, _ := j.CollectionOutbox(); len(box) != 0 {
		t.Fatalf("outbox after ack %v", box)
	}
	s := mustSession(t, j, 1_000_000)
	credit(t, j, s.ID, 5000)
	if _, err := j.CloseSession(CloseParams{SessionID: s.ID, Outcome: wire.OutcomeComplete}); err != nil {
		t.Fatal(err)
	}
	c, started, err := j.StartCollection("bob", "")
	if err != nil || !started || c.PreviousID != first[0].ID || c.FromSeq != first[0].CassetteOutSeq+1 {
		t.Fatalf("second collection %+v started=%v %v", c, started, err)
	}
	if _, _, err := j.StartCollection("bob", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := j.RecordCollection(); !errors.Is(err, ErrCollectionStep) {
		t.Fatalf("record before the count: %v", err)
	}
	c, err = j.CollectionCassetteOut("collector")
	if err != nil || len(c.Expected) != 1 || c.Expected[0] != (NoteLine{ValueMinor: 5000, Count: 1}) || len(c.Uncertain) != 0 {
		t.Fatalf("second cassette out %+v %v", c, err)
	}
	if _, err := j.AbortCollection("x"); !errors.Is(err, ErrCollectionStep) {
		t.Fatalf("abort with the cassette out: %v", err)
	}
	if _, err := j.CountCollection([]NoteLine{{ValueMinor: 5000, Count: -1}}); !errors.Is(err, ErrCollectionCount) {
		t.Fatalf("negative count: %v", err)
	}
	if _, err := j.CountCollection(nil); err != nil {
		t.Fatal(err)
	}
	c, err = j.RecordCollection()
	if err != nil {
		t.Fatal(err)
	}
	w, _ := c.Wire("K1", "CNY")
	if w.DifferenceMinor != -5000 || w.Lines[0].Difference != -1 {
		t.Fatalf("shortage %+v", w)
	}
	if _, err := j.EndCollection(); !errors.Is(err, ErrCollectionStep) {
		t.Fatalf("end before the cassette is in and the slip is done: %v", err)
	}
	if _, err := j.Verify(); err != nil {
		t.Fatal(err)
	}
}
