package ledger

import (
	"errors"
	"testing"
	"time"

	"github.com/kioskd/kioskd/sync/wire"
)

func collectionOf(tp wire.Topup) wire.Collection {
	_, epoch, _, _ := wire.ParseTopupID(tp.TopupID)
	c := wire.Collection{V: 1, CollectionID: wire.CollectionID(tp.KioskID, epoch, 1), KioskID: tp.KioskID, No: 1, FromSeq: 1, ToSeq: 40,
		PeriodTo: t0.Add(time.Hour), CassetteID: "CAS-1", CassetteOutBy: "device", Currency: "CNY", Operator: "alice", RecordedAt: t0.Add(2 * time.Hour),
		Lines: []wire.NoteDiff{{ValueMinor: 5000, Expected: 1, Counted: 1}, {ValueMinor: 10000, Expected: 0, Counted: 1, Difference: 1, DifferenceMinor: 10000}},
		Uncertain: []wire.CollectionItem{
			{ItemID: 7, TopupID: tp.TopupID, ValueMinor: 10000, Reason: "stack_commanded_no_credit"},
			{ItemID: 9, ValueMinor: 0, Reason: "the unit counted a note the journal has no record of"},
		}}
	c.ExpectedNotes, c.ExpectedMinor, c.CountedNotes, c.CountedMinor, c.DifferenceMinor = 1, 5000, 2, 15000, 10000
	return c
}

// A collection is stored once per collection_id and links its items to suspense records
// (the top-up's own, or a new one for an item outside any session); settling an item names
// the collection as evidence.
func TestCollectionStoredOnceAndSettled(t *testing.T) {
	forEachStore(t, testCollectionStoredOnceAndSettled)
}

func testCollectionStoredOnceAndSettled(t *testing.T, open openFunc) {
	s := open(nil)
	cs := s.(CollectionStore)
	tp := topup("K1", 1, 1, "bob", 5000)
	tp.Outcome = wire.OutcomeInterrupted
	tp.Uncertain = []wire.Uncertain{{ValueMinor: 10000, Reason: "stack_commanded_no_credit"}}
	mustApply(t, s, tp, wire.AckCredited)
	c := collectionOf(tp)
	st, ref, err := cs.PutCollection(c)
	if err != nil || st != wire.CollectionStored || ref == "" {
		t.Fatalf("put: %s %s %v", st, ref, err)
	}
	if st, ref2, _ := cs.PutCollection(c); st != wire.CollectionDuplicate || ref2 != ref {
		t.Fatalf("redelivery: %s %s", st, ref2)
	}
	other := c
	other.Operator = "mallory"
	other.Lines = []wire.NoteDiff{{ValueMinor: 5000, Expected: 1, Counted: 1}}
	other.CountedNotes, other.CountedMinor, other.DifferenceMinor = 1, 5000, 0
	if st, _, _ := cs.PutCollection(other); st != wire.CollectionConflict {
		t.Fatalf("other content: %s", st)
	}
	bad := c
	bad.DifferenceMinor = 0
	if _, _, err := cs.PutCollection(bad); !errors.Is(err, ErrInvalid) {
		t.Fatalf("inconsistent record: %v", err)
	}
	v, err := cs.Collection(c.CollectionID)
	if err != nil || v.Collection.DifferenceMinor != 10000 || v.Conflicts != 1 || len(v.Items) != 2 {
		t.Fatalf("view %+v %v", v, err)
	}
	sus, _ := s.Suspense()
	if len(sus) != 2 {
		t.Fatalf("suspense %+v", sus) // the top-up's record was linked, not doubled
	}
	var withTopup, orphan SuspenseRecord
	for _, r := range v.Items {
		if r.TopupID != "" {
			withTopup = r
		} else {
			orphan = r
		}
	}
	if withTopup.Account != "bob" || withTopup.CollectionID != c.CollectionID || orphan.Account != "" || orphan.CollectionID != c.CollectionID {
		t.Fatalf("items %+v / %+v", withTopup, orphan)
	}
	if list, err := cs.Collections("K1"); err != nil || len(list) != 1 {
		t.Fatalf("list %+v %v", list, err)
	}
	if list, _ := cs.Collections("K2"); len(list) != 0 {
		t.Fatalf("other kiosk's list %+v", list)
	}
	// The count found the note: credit bob, with the collection as evidence.
	if _, err := s.DecideSuspense(withTopup.Ref, Decision{Action: ActionRelease, Operator: "ops1", CollectionID: wire.CollectionID("K1", 1, 2)}); !errors.Is(err, ErrDecision) {
		t.Fatalf("another collection as evidence: %v", err)
	}
	r, err := s.DecideSuspense(withTopup.Ref, Decision{Action: ActionRelease, Operator: "ops1", Note: "counted 1 x 100 surplus", CollectionID: c.CollectionID})
	if err != nil || r.Status != HeldReleased || r.Decision.CollectionID != c.CollectionID || r.CreditRef == "" {
		t.Fatalf("release %+v %v", r, err)
	}
	if a, _ := s.Account("bob"); a.Balances["CNY"] != 15000 {
		t.Fatalf("bob %+v", a.Balances)
	}
	// The orphan has neither account nor value: a release must name both.
	if _, err := s.DecideSuspense(orphan.Ref, Decision{Action: ActionRelease, Operator: "ops1", CollectionID: c.CollectionID}); !errors.Is(err, ErrDecision) {
		t.Fatalf("release without an account: %v", err)
	}
	r, err = s.DecideSuspense(orphan.Ref, Decision{Action: ActionReject, Operator: "ops1", Note: "no claim", CollectionID: c.CollectionID})
	if err != nil || r.Status != HeldRejected {
		t.Fatalf("reject %+v %v", r, err)
	}
}
