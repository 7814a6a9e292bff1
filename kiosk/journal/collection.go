package journal

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/kioskd/kioskd/sync/wire"
)

// Cash collection (DESIGN.md §10) is one procedure with a journaled step per fact, so that a
// crash at any point resumes it where the journal says, and it makes exactly one record and
// one reset of the cassette counters:
//
//	started       StartCollection: the kiosk goes to maintenance (a customer in session
//	              finishes first); nothing is frozen yet, so the procedure may be aborted.
//	cassette_out  CollectionCassetteOut (the unit reported the cassette removed, or the
//	              collector confirmed it): what the journal expects in the cassette (notes
//	              per denomination), the unit's stacked counter and the period's uncertain
//	              items are frozen into the collection.
//	counted       CountCollection: the collector's count per denomination (may be entered
//	              again until the record is made).
//	recorded      RecordCollection, ONE transaction: the record (wire.Collection) is final,
//	              it enters the collection outbox, the cassette counters drop by what was
//	              expected (the only place they ever go down), the period's uncertain items
//	              are marked settled at this collection and the unit-counter baseline is
//	              moved along. A crash before it leaves none of it; after it, all of it.
//	              Then the slip is printed (CollectionSlipStart before, CollectionSlipDone
//	              after: an interrupted print is printed again as a COPY).
//	ended         EndCollection, once the cassette is back in (CollectionCassetteIn, from
//	              the unit's report or the collector) and the slip was printed or tried:
//	              service resumes.
//
// The record is sent on up/collection from its own outbox (CollectionOutbox), idempotent by
// collection_id, until the ledger's signed ack (ApplyCollectionAck).
//
// The collections live in their own bucket, created by the first collection: a journal
// written before collections existed has none, and reads of the missing bucket find nothing.

var (
	bCollections = []byte("collections")
	// kCollOpen (meta) is the number of the collection in progress; absent when none is.
	kCollOpen = []byte("collection_open")
)

// Collection steps.
const (
	CollectStarted     = "started"
	CollectCassetteOut = "cassette_out"
	CollectCounted     = "counted"
	CollectRecorded    = "recorded"
	CollectEnded       = "ended"
	CollectAborted     = "aborted"
)

// Collection outbox states.
const (
	CollectionPending  = "pending"
	CollectionStored   = "stored"
	CollectionConflict = "conflict"
)

// Collection errors.
var (
	// ErrNoCollection: no collection is in progress (or none with that id).
	ErrNoCollection = errors.New("journal: no cash collection in progress")
	// ErrCollectionStep: the step asked for does not follow the collection's current step.
	ErrCollectionStep = errors.New("journal: not at that step of the cash collection")
	// ErrCollectionCount: a count that cannot be right (negative, unknown value).
	ErrCollectionCount = errors.New("journal: invalid cash count")
)

// Collection is the view of one cash collection.
type Collection struct {
	No         uint64    `json:"no"`
	ID         string    `json:"collection_id"`
	Step       string    `json:"step"`
	Operator   string    `json:"operator,omitempty"`
	CassetteID string    `json:"cassette_id"`
	StartedAt  time.Time `json:"started_at"`
	// The period: the previous collection, and the first event after its cassette-out.
	PreviousID string    `json:"previous_collection_id,omitempty"`
	FromSeq    uint64    `json:"from_seq"`
	PeriodFrom time.Time `json:"period_from,omitzero"`
	// Frozen at cassette-out.
	CassetteOutBy  string                `json:"cassette_out_by,omitempty"`
	CassetteOutSeq uint64                `json:"cassette_out_seq,omitempty"`
	CassetteOutAt  time.Time             `json:"cassette_out_at,omitzero"`
	Expected       []NoteLine            `json:"expected,omitempty"`
	UnitCounter    *wire.UnitCounter     `json:"unit_counter,omitempty"`
	Uncertain      []wire.CollectionItem `json:"uncertain,omitempty"`
	// The collector's count.
	Counted []NoteLine `json:"counted,omitempty"`
	// The record, from the recorded step on; State is its outbox state.
	Payload   json.RawMessage `json:"payload,omitempty"`
	State     string          `json:"state,omitempty"`
	LedgerRef string          `json:"ledger_ref,omitempty"`
	// The slip: print attempts started, and whether one finished.
	SlipPrints  int    `json:"slip_prints,omitempty"`
	SlipPrinted bool   `json:"slip_printed,omitempty"`
	SlipDetail  string `json:"slip_detail,omitempty"`
	// CassetteIn: the cassette is back (it may come back before the record is made).
	CassetteIn   bool      `json:"cassette_in,omitempty"`
	CassetteInBy string    `json:"cassette_in_by,omitempty"`
	EndedAt      time.Time `json:"ended_at,omitzero"`
	Reason       string    `json:"reason,omitempty"` // why it was aborted
}

// Open reports whether the procedure is still in progress.
func (c Collection) Open() bool { return c.Step != CollectEnded && c.Step != CollectAborted }

// SlipDone reports whether the slip was printed, or an attempt at it finished.
func (c Collection) SlipDone() bool { return c.SlipPrinted || c.SlipDetail != "" }

// Wire returns the record: the journaled payload once recorded, before that a preview of it
// from the count so far (RecordedAt zero).
func (c Collection) Wire(kioskID, currency string) (wire.Collection, error) {
	if len(c.Payload) > 0 {
		var w wire.Collection
		err := json.Unmarshal(c.Payload, &w)
		return w, err
	}
	return c.build(kioskID, currency, time.Time{}), nil
}

// build computes the record from the frozen expectation and the count.
func (c Collection) build(kioskID, currency string, at time.Time) wire.Collection {
	w := wire.Collection{V: wire.Version, CollectionID: c.ID, KioskID: kioskID, No: c.No, PreviousID: c.PreviousID,
		FromSeq: c.FromSeq, ToSeq: c.CassetteOutSeq, PeriodFrom: c.PeriodFrom, PeriodTo: c.CassetteOutAt,
		CassetteID: c.CassetteID, CassetteOutBy: c.CassetteOutBy, Currency: currency, UnitCounter: c.UnitCounter,
		Uncertain: slices.Clone(c.Uncertain), Operator: c.Operator, RecordedAt: at}
	if w.Uncertain == nil {
		w.Uncertain = []wire.CollectionItem{}
	}
	w.Lines = diffLines(c.Expected, c.Counted)
	for _, l := range w.Lines {
		w.ExpectedNotes += l.Expected
		w.ExpectedMinor += l.Expected * l.ValueMinor
		w.CountedNotes += l.Counted
		w.CountedMinor += l.Counted * l.ValueMinor
	}
	w.DifferenceMinor = w.CountedMinor - w.ExpectedMinor
	return w
}

// diffLines joins expected and counted notes by value, in value order.
func diffLines(expected, counted []NoteLine) []wire.NoteDiff {
	by := map[int64]*wire.NoteDiff{}
	get := func(v int64) *wire.NoteDiff {
		if by[v] == nil {
			by[v] = &wire.NoteDiff{ValueMinor: v}
		}
		return by[v]
	}
	for _, n := range expected {
		get(n.ValueMinor).Expected += n.Count
	}
	for _, n := range counted {
		get(n.ValueMinor).Counted += n.Count
	}
	out := make([]wire.NoteDiff, 0, len(by))
	for _, d := range by {
		d.Difference = d.Counted - d.Expected
		d.DifferenceMinor = d.Difference * d.ValueMinor
		out = append(out, *d)
	}
	slices.SortFunc(out, func(a, b wire.NoteDiff) int { return compareInt64(a.ValueMinor, b.ValueMinor) })
	return out
}

func compareInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Collection events. Each step is one event in the step's own transaction.
const (
	EvCollectionStarted     = "collection_started"
	EvCollectionCassetteOut = "collection_cassette_out"
	EvCollectionCounted     = "collection_counted"
	EvCollectionRecorded    = "collection_recorded"
	EvCollectionSlip        = "collection_slip_print"
	EvCollectionSlipDone    = "collection_slip_done"
	EvCollectionCassetteIn  = "collection_cassette_in"
	EvCollectionEnded       = "collection_ended"
	EvCollectionAborted     = "collection_aborted"
	EvCollectionAcked       = "collection_acked"
)

// CollectionStartedEvent starts collection No.
type CollectionStartedEvent struct {
	CollectionID string `json:"collection_id"`
	No           uint64 `json:"no"`
	Operator     string `json:"operator,omitempty"`
	CassetteID   string `json:"cassette_id"`
	PreviousID   string `json:"previous_collection_id,omitempty"`
	FromSeq      uint64 `json:"from_seq"`
}

// CollectionCassetteOutEvent freezes what the cassette should hold.
type CollectionCassetteOutEvent struct {
	CollectionID string                `json:"collection_id"`
	By           string                `json:"by"`
	Expected     []NoteLine            `json:"expected"`
	UnitCounter  *wire.UnitCounter     `json:"unit_counter,omitempty"`
	Uncertain    []wire.CollectionItem `json:"uncertain"`
}

// CollectionCountedEvent is the collector's count.
type CollectionCountedEvent struct {
	CollectionID string     `json:"collection_id"`
	Counted      []NoteLine `json:"counted"`
}

// CollectionRecordedEvent makes the record final and resets the cassette counters by
// Expected (the notes the journal counted into the cassette that came out); Settled are the
// uncertain items settled at this collection.
type CollectionRecordedEvent struct {
	CollectionID string          `json:"collection_id"`
	Expected     []NoteLine      `json:"expected"`
	Settled      []uint64        `json:"settled,omitempty"`
	Payload      json.RawMessage `json:"payload"`
}

// CollectionSlipEvent is committed before a slip print starts.
type CollectionSlipEvent struct {
	CollectionID string `json:"collection_id"`
	Attempt      int    `json:"attempt"`
}

// CollectionSlipDoneEvent records how a slip print ended.
type CollectionSlipDoneEvent struct {
	CollectionID string `json:"collection_id"`
	Printed      bool   `json:"printed"`
	Detail       string `json:"detail,omitempty"`
}

// CollectionCassetteInEvent records the cassette back in.
type CollectionCassetteInEvent struct {
	CollectionID string `json:"collection_id"`
	By           string `json:"by"`
}

// CollectionEndedEvent ends the procedure: service may resume.
type CollectionEndedEvent struct {
	CollectionID string `json:"collection_id"`
}

// CollectionAbortedEvent ends a collection before its cassette came out.
type CollectionAbortedEvent struct {
	CollectionID string `json:"collection_id"`
	Reason       string `json:"reason"`
}

// CollectionAckedEvent records the ledger's ack of a record.
type CollectionAckedEvent struct {
	CollectionID string `json:"collection_id"`
	Status       string `json:"status"`
	LedgerRef    string `json:"ledger_ref,omitempty"`
}

func (CollectionStartedEvent) EventType() string     { return EvCollectionStarted }
func (CollectionCassetteOutEvent) EventType() string { return EvCollectionCassetteOut }
func (CollectionCountedEvent) EventType() string     { return EvCollectionCounted }
func (CollectionRecordedEvent) EventType() string    { return EvCollectionRecorded }
func (CollectionSlipEvent) EventType() string        { return EvCollectionSlip }
func (CollectionSlipDoneEvent) EventType() string    { return EvCollectionSlipDone }
func (CollectionCassetteInEvent) EventType() string  { return EvCollectionCassetteIn }
func (CollectionEndedEvent) EventType() string       { return EvCollectionEnded }
func (CollectionAbortedEvent) EventType() string     { return EvCollectionAborted }
func (CollectionAckedEvent) EventType() string       { return EvCollectionAcked }

func newCollectionEvent(typ string) Event {
	switch typ {
	case EvCollectionStarted:
		return &CollectionStartedEvent{}
	case EvCollectionCassetteOut:
		return &CollectionCassetteOutEvent{}
	case EvCollectionCounted:
		return &CollectionCountedEvent{}
	case EvCollectionRecorded:
		return &CollectionRecordedEvent{}
	case EvCollectionSlip:
		return &CollectionSlipEvent{}
	case EvCollectionSlipDone:
		return &CollectionSlipDoneEvent{}
	case EvCollectionCassetteIn:
		return &CollectionCassetteInEvent{}
	case EvCollectionEnded:
		return &CollectionEndedEvent{}
	case EvCollectionAborted:
		return &CollectionAbortedEvent{}
	case EvCollectionAcked:
		return &CollectionAckedEvent{}
	}
	return nil
}

// removeFromCassette takes lines out of the cassette counters (the view and the replay use
// it alike); a value that reaches zero leaves the map.
func removeFromCassette(c *Cassette, lines []NoteLine) {
	if c.ByValue == nil {
		c.ByValue = map[int64]int64{}
	}
	for _, n := range lines {
		c.Count -= n.Count
		c.ValueMinor -= n.Count * n.ValueMinor
		c.ByValue[n.ValueMinor] -= n.Count
		if c.ByValue[n.ValueMinor] == 0 {
			delete(c.ByValue, n.ValueMinor)
		}
	}
}

// cassetteLines lists the cassette counters as note lines in value order.
func cassetteLines(c Cassette) []NoteLine {
	out := []NoteLine{}
	for v, n := range c.ByValue {
		if n != 0 {
			out = append(out, NoteLine{ValueMinor: v, Count: n})
		}
	}
	slices.SortFunc(out, func(a, b NoteLine) int { return compareInt64(a.ValueMinor, b.ValueMinor) })
	return out
}

func getCollection(tx *bolt.Tx, no uint64) (Collection, bool, error) {
	var c Collection
	b := tx.Bucket(bCollections)
	if b == nil {
		return c, false, nil
	}
	v := b.Get(u64(no))
	if v == nil {
		return c, false, nil
	}
	if err := json.Unmarshal(v, &c); err != nil {
		return c, true, fmt.Errorf("%w: collection %d: %v", ErrCorrupt, no, err)
	}
	return c, true, nil
}

func (w *writer) putCollection(c Collection) error {
	b, err := w.tx.CreateBucketIfNotExists(bCollections)
	if err != nil {
		return err
	}
	v, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return b.Put(u64(c.No), v)
}

func openCollection(tx *bolt.Tx) (Collection, bool, error) {
	no := btoi(tx.Bucket(bMeta).Get(kCollOpen))
	if no == 0 {
		return Collection{}, false, nil
	}
	c, ok, err := getCollection(tx, no)
	if err == nil && !ok {
		err = fmt.Errorf("%w: open collection %d missing", ErrCorrupt, no)
	}
	return c, ok, err
}

// OpenCollection returns the collection in progress; ok is false when none is.
func (j *Journal) OpenCollection() (c Collection, ok bool, err error) {
	err = j.db.View(func(tx *bolt.Tx) error {
		c, ok, err = openCollection(tx)
		return err
	})
	return c, ok, err
}

// CollectionByID returns a collection by its id; ok is false when this journal has none.
func (j *Journal) CollectionByID(id string) (c Collection, ok bool, err error) {
	kid, epoch, no, perr := wire.ParseCollectionID(id)
	if perr != nil || kid != j.kioskID || epoch != j.epoch {
		return c, false, nil
	}
	err = j.db.View(func(tx *bolt.Tx) error {
		c, ok, err = getCollection(tx, no)
		return err
	})
	return c, ok, err
}

// Collections returns every collection of this journal, oldest first.
func (j *Journal) Collections() ([]Collection, error) {
	var out []Collection
	err := j.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bCollections)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var c Collection
			if err := json.Unmarshal(v, &c); err != nil {
				return fmt.Errorf("%w: collection %d: %v", ErrCorrupt, btoi(k), err)
			}
			out = append(out, c)
			return nil
		})
	})
	return out, err
}

// lastRecorded returns the newest collection that made a record (the period's start).
func lastRecorded(tx *bolt.Tx) (Collection, bool, error) {
	b := tx.Bucket(bCollections)
	if b == nil {
		return Collection{}, false, nil
	}
	c := b.Cursor()
	for k, v := c.Last(); k != nil; k, v = c.Prev() {
		var col Collection
		if err := json.Unmarshal(v, &col); err != nil {
			return col, false, fmt.Errorf("%w: collection %d: %v", ErrCorrupt, btoi(k), err)
		}
		if len(col.Payload) > 0 {
			return col, true, nil
		}
	}
	return Collection{}, false, nil
}

// StartCollection starts a cash collection. If one is in progress it is returned unchanged
// with started false: starting again after a crash resumes the same procedure.
func (j *Journal) StartCollection(operator, cassetteID string) (c Collection, started bool, err error) {
	if len(operator) > 64 || len(cassetteID) > 64 {
		return c, false, errors.New("journal: operator and cassette id are at most 64 characters")
	}
	if cassetteID == "" {
		cassetteID = "main"
	}
	err = j.update(func(w *writer) error {
		open, ok, err := openCollection(w.tx)
		if err != nil {
			return err
		}
		if ok {
			c, started = open, false
			return nil
		}
		b, err := w.tx.CreateBucketIfNotExists(bCollections)
		if err != nil {
			return err
		}
		no, err := b.NextSequence()
		if err != nil {
			return err
		}
		c = Collection{No: no, ID: wire.CollectionID(j.kioskID, j.epoch, no), Step: CollectStarted, Operator: operator,
			CassetteID: cassetteID, StartedAt: j.now().UTC(), FromSeq: 1}
		prev, ok, err := lastRecorded(w.tx)
		if err != nil {
			return err
		}
		if ok {
			c.PreviousID, c.FromSeq, c.PeriodFrom = prev.ID, prev.CassetteOutSeq+1, prev.CassetteOutAt
		}
		if _, err := w.append(CollectionStartedEvent{CollectionID: c.ID, No: c.No, Operator: c.Operator, CassetteID: c.CassetteID,
			PreviousID: c.PreviousID, FromSeq: c.FromSeq}); err != nil {
			return err
		}
		started = true
		if err := w.tx.Bucket(bMeta).Put(kCollOpen, u64(no)); err != nil {
			return err
		}
		return w.putCollection(c)
	})
	return c, started, err
}

// stepOpen runs fn on the open collection in one transaction and stores what fn left in it.
func (j *Journal) stepOpen(fn func(w *writer, c *Collection) error) (Collection, error) {
	var c Collection
	err := j.update(func(w *writer) error {
		open, ok, err := openCollection(w.tx)
		if err != nil {
			return err
		}
		if !ok {
			return ErrNoCollection
		}
		c = open
		before, _ := json.Marshal(c)
		if err := fn(w, &c); err != nil {
			return err
		}
		if after, _ := json.Marshal(c); string(after) == string(before) {
			return nil
		}
		return w.putCollection(c)
	})
	return c, err
}

// AbortCollection ends a collection whose cassette has not come out: nothing was frozen or
// counted, so nothing is recorded.
func (j *Journal) AbortCollection(reason string) (Collection, error) {
	return j.stepOpen(func(w *writer, c *Collection) error {
		if c.Step != CollectStarted {
			return fmt.Errorf("%w: the cassette is out (%s): the collection must be finished", ErrCollectionStep, c.Step)
		}
		if reason == "" {
			reason = "aborted"
		}
		if _, err := w.append(CollectionAbortedEvent{CollectionID: c.ID, Reason: reason}); err != nil {
			return err
		}
		c.Step, c.Reason, c.EndedAt = CollectAborted, reason, j.now().UTC()
		return w.tx.Bucket(bMeta).Delete(kCollOpen)
	})
}

// CollectionCassetteOut records the cassette out (by "device" or "collector") and freezes
// what it should hold: the cassette counters, the unit's stacked counter (its last baseline,
// which the caller refreshes first where the unit has a counter) and the unsettled uncertain
// items. At a later step it changes nothing.
func (j *Journal) CollectionCassetteOut(by string) (Collection, error) {
	if by != "device" && by != "collector" {
		return Collection{}, fmt.Errorf("journal: cassette out by %q: want device or collector", by)
	}
	return j.stepOpen(func(w *writer, c *Collection) error {
		if c.Step != CollectStarted {
			return nil
		}
		var cas Cassette
		if _, err := getJSON(w.tx, bCassette, kCassette, &cas); err != nil {
			return err
		}
		c.Expected = cassetteLines(cas)
		items, err := w.periodItems()
		if err != nil {
			return err
		}
		c.Uncertain = items
		var b DeviceBaseline
		found, err := getJSON(w.tx, bMeta, kDeviceCounter, &b)
		if err != nil {
			return err
		}
		if found {
			uc := &wire.UnitCounter{Unit: b.Unit, To: b.Device}
			prev, ok, err := lastRecorded(w.tx)
			if err != nil {
				return err
			}
			if ok && prev.UnitCounter != nil && prev.UnitCounter.Unit == b.Unit {
				uc.From = prev.UnitCounter.To
				// 32-bit counters wrap; read as a signed difference like the witness does.
				n := int64(int32(uint32(uc.To) - uint32(uc.From)))
				uc.Stacked = &n
			}
			c.UnitCounter = uc
		}
		seq, err := w.append(CollectionCassetteOutEvent{CollectionID: c.ID, By: by, Expected: c.Expected, UnitCounter: c.UnitCounter, Uncertain: c.Uncertain})
		if err != nil {
			return err
		}
		c.Step, c.CassetteOutBy, c.CassetteOutSeq, c.CassetteOutAt = CollectCassetteOut, by, seq, j.now().UTC()
		return nil
	})
}

// periodItems lists the unsettled uncertain items with the top-up each belongs to.
func (w *writer) periodItems() ([]wire.CollectionItem, error) {
	out := []wire.CollectionItem{}
	err := w.tx.Bucket(bUncertain).ForEach(func(k, v []byte) error {
		var u Uncertain
		if err := json.Unmarshal(v, &u); err != nil {
			return fmt.Errorf("%w: uncertain %d: %v", ErrCorrupt, btoi(k), err)
		}
		if u.Settled {
			return nil
		}
		it := wire.CollectionItem{ItemID: u.ID, ValueMinor: u.ValueMinor, Reason: u.Reason}
		if u.SessionID != 0 {
			var s Session
			if ok, err := getJSON(w.tx, bSessions, u64(u.SessionID), &s); err == nil && ok && s.TopupSeq != 0 {
				it.TopupID = wire.TopupID(w.j.kioskID, w.j.epoch, s.TopupSeq)
			}
		}
		out = append(out, it)
		return nil
	})
	return out, err
}

// CountCollection records the collector's count per denomination (values in minor units,
// each at most once, counts >= 0). It may be entered again until the record is made.
func (j *Journal) CountCollection(counted []NoteLine) (Collection, error) {
	seen := map[int64]bool{}
	var clean []NoteLine
	for _, n := range counted {
		if n.ValueMinor <= 0 || n.ValueMinor > 1e12 || n.Count < 0 || n.Count > 1e6 || seen[n.ValueMinor] {
			return Collection{}, fmt.Errorf("%w: %d x %d", ErrCollectionCount, n.ValueMinor, n.Count)
		}
		seen[n.ValueMinor] = true
		if n.Count > 0 {
			clean = append(clean, n)
		}
	}
	slices.SortFunc(clean, func(a, b NoteLine) int { return compareInt64(a.ValueMinor, b.ValueMinor) })
	if clean == nil {
		clean = []NoteLine{}
	}
	return j.stepOpen(func(w *writer, c *Collection) error {
		if c.Step != CollectCassetteOut && c.Step != CollectCounted {
			return fmt.Errorf("%w: count at step %s", ErrCollectionStep, c.Step)
		}
		if _, err := w.append(CollectionCountedEvent{CollectionID: c.ID, Counted: clean}); err != nil {
			return err
		}
		c.Step, c.Counted = CollectCounted, clean
		return nil
	})
}

// RecordCollection makes the record final in one transaction: the record and its outbox
// entry, the cassette counters reset (by what was expected), the period's uncertain items
// settled at this collection, and the unit-counter baseline rebased. At a later step it
// changes nothing (one record, one reset).
func (j *Journal) RecordCollection() (Collection, error) {
	return j.stepOpen(func(w *writer, c *Collection) error {
		switch c.Step {
		case CollectCounted:
		case CollectRecorded:
			return nil
		default:
			return fmt.Errorf("%w: record at step %s (count first)", ErrCollectionStep, c.Step)
		}
		rec := c.build(j.kioskID, j.currency, j.now().UTC())
		if err := rec.Validate(); err != nil {
			return fmt.Errorf("journal: collection record: %w", err)
		}
		payload, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		var settled []uint64
		for _, it := range c.Uncertain {
			var u Uncertain
			ok, err := getJSON(w.tx, bUncertain, u64(it.ItemID), &u)
			if err != nil {
				return err
			}
			if !ok || u.Settled {
				continue
			}
			u.Settled, u.Collection = true, c.ID
			if err := w.put(bUncertain, u64(u.ID), u); err != nil {
				return err
			}
			settled = append(settled, u.ID)
		}
		if _, err := w.append(CollectionRecordedEvent{CollectionID: c.ID, Expected: c.Expected, Settled: settled, Payload: payload}); err != nil {
			return err
		}
		var cas Cassette
		if _, err := getJSON(w.tx, bCassette, kCassette, &cas); err != nil {
			return err
		}
		removeFromCassette(&cas, c.Expected)
		if err := w.put(bCassette, kCassette, cas); err != nil {
			return err
		}
		if err := w.rebaseCounter(c.Expected); err != nil {
			return err
		}
		c.Step, c.Payload, c.State = CollectRecorded, payload, CollectionPending
		return nil
	})
}

// rebaseCounter keeps the unit-counter baseline paired with the cassette counters after they
// dropped by the collected notes: the difference the witness reads stays what it was, and the
// settled items no longer stand for notes the counter may yet see.
func (w *writer) rebaseCounter(removed []NoteLine) error {
	var b DeviceBaseline
	found, err := getJSON(w.tx, bMeta, kDeviceCounter, &b)
	if err != nil || !found {
		return err
	}
	for _, n := range removed {
		b.Cassette -= n.Count
	}
	b.UncertainThrough, b.Pending = lastUncertain(w.tx), 0
	//lint:ignore S1016 the event is the on-disk schema: a conversion would silently follow a change of the view type
	if _, err := w.append(DeviceCounterEvent{Device: b.Device, Cassette: b.Cassette, Unit: b.Unit, UncertainThrough: b.UncertainThrough, Pending: b.Pending}); err != nil {
		return err
	}
	return w.put(bMeta, kDeviceCounter, b)
}

// CollectionSlipStart is committed before a slip print starts; copy says the slip may have
// come out before (an earlier attempt started), so this print must say COPY.
func (j *Journal) CollectionSlipStart() (c Collection, copy bool, err error) {
	c, err = j.stepOpen(func(w *writer, c *Collection) error {
		if c.Step != CollectRecorded {
			return fmt.Errorf("%w: slip at step %s", ErrCollectionStep, c.Step)
		}
		copy = c.SlipPrints > 0
		if _, err := w.append(CollectionSlipEvent{CollectionID: c.ID, Attempt: c.SlipPrints + 1}); err != nil {
			return err
		}
		c.SlipPrints++
		return nil
	})
	return c, copy, err
}

// CollectionSlipDone records how the slip print ended (detail says why it failed).
func (j *Journal) CollectionSlipDone(printed bool, detail string) (Collection, error) {
	if !printed && detail == "" {
		detail = "not printed"
	}
	return j.stepOpen(func(w *writer, c *Collection) error {
		if c.Step != CollectRecorded {
			return fmt.Errorf("%w: slip at step %s", ErrCollectionStep, c.Step)
		}
		if _, err := w.append(CollectionSlipDoneEvent{CollectionID: c.ID, Printed: printed, Detail: detail}); err != nil {
			return err
		}
		c.SlipPrinted = c.SlipPrinted || printed
		if printed {
			c.SlipDetail = ""
		} else if !c.SlipPrinted {
			c.SlipDetail = detail
		}
		return nil
	})
}

// CollectionCassetteIn records the cassette back in (by "device" or "collector"), at any
// step after it came out; repeated, it changes nothing.
func (j *Journal) CollectionCassetteIn(by string) (Collection, error) {
	if by != "device" && by != "collector" {
		return Collection{}, fmt.Errorf("journal: cassette in by %q: want device or collector", by)
	}
	return j.stepOpen(func(w *writer, c *Collection) error {
		if c.Step == CollectStarted {
			return fmt.Errorf("%w: the cassette has not come out", ErrCollectionStep)
		}
		if c.CassetteIn {
			return nil
		}
		if _, err := w.append(CollectionCassetteInEvent{CollectionID: c.ID, By: by}); err != nil {
			return err
		}
		c.CassetteIn, c.CassetteInBy = true, by
		return nil
	})
}

// EndCollection ends a recorded collection whose cassette is back in and whose slip was
// printed or tried: service may resume.
func (j *Journal) EndCollection() (Collection, error) {
	return j.stepOpen(func(w *writer, c *Collection) error {
		if c.Step != CollectRecorded || !c.CassetteIn || !c.SlipDone() {
			return fmt.Errorf("%w: end at step %s (cassette in %v, slip done %v)", ErrCollectionStep, c.Step, c.CassetteIn, c.SlipDone())
		}
		if _, err := w.append(CollectionEndedEvent{CollectionID: c.ID}); err != nil {
			return err
		}
		c.Step, c.EndedAt = CollectEnded, j.now().UTC()
		return w.tx.Bucket(bMeta).Delete(kCollOpen)
	})
}

// CollectionOutbox returns the recorded collections the ledger has not stored yet (those
// stopped by a conflict included: State tells), oldest first.
func (j *Journal) CollectionOutbox() ([]Collection, error) {
	all, err := j.Collections()
	var out []Collection
	for _, c := range all {
		if len(c.Payload) > 0 && c.State != CollectionStored {
			out = append(out, c)
		}
	}
	return out, err
}

// ApplyCollectionAck applies a verified ledger ack of a collection record: stored and
// duplicate end its outbox entry, conflict stops the resending. changed is false when it
// repeated what was applied.
func (j *Journal) ApplyCollectionAck(a wire.CollectionAck) (c Collection, changed bool, err error) {
	kid, epoch, no, err := wire.ParseCollectionID(a.CollectionID)
	if err != nil {
		return c, false, err
	}
	if kid != j.kioskID || epoch != j.epoch {
		return c, false, fmt.Errorf("%w: collection %s is not from this journal", ErrNoCollection, a.CollectionID)
	}
	err = j.update(func(w *writer) error {
		var ok bool
		var err error
		c, ok, err = getCollection(w.tx, no)
		if err != nil {
			return err
		}
		if !ok || len(c.Payload) == 0 {
			return fmt.Errorf("%w: %s has no record", ErrNoCollection, a.CollectionID)
		}
		state := CollectionStored
		if a.Status == wire.CollectionConflict {
			state = CollectionConflict
		}
		if c.State == state || c.State == CollectionStored {
			return nil
		}
		if _, err := w.append(CollectionAckedEvent{CollectionID: c.ID, Status: a.Status, LedgerRef: a.LedgerRef}); err != nil {
			return err
		}
		c.State, c.LedgerRef, changed = state, a.LedgerRef, true
		return w.putCollection(c)
	})
	return c, changed, err
}
