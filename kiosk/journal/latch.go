package journal

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	bolt "go.etcd.io/bbolt"
)

// Latched conditions and technicians' sign-offs. A latched condition (the acceptor reported
// a cheat attempt) stops service until a technician signs it off: the unit going back to
// normal, a restart of kioskd or a power cut do not clear it. The set of latched conditions
// is kept in the ops bucket next to the limits overlay, so the engine raises them again at
// start; the latch and the sign-off are events in the chain (the audit trail).

// Event types of latched conditions. Like every event type name, they never change.
const (
	// EvConditionLatched records a condition that only a sign-off clears.
	EvConditionLatched = "condition_latched"
	// EvSignoff records a technician's sign-off of a condition: who, why.
	EvSignoff = "signoff"
)

var kLatched = []byte("latched")

// ErrNotLatched: a sign-off of a condition that is not latched.
var ErrNotLatched = errors.New("journal: condition not latched")

// LatchedCondition is a condition waiting for a sign-off.
type LatchedCondition struct {
	Kind   string `json:"kind"`
	Detail string `json:"detail,omitempty"`
	// Seq is the condition_latched event.
	Seq uint64 `json:"seq"`
}

// ConditionLatchedEvent records a latched condition.
type ConditionLatchedEvent struct {
	Kind   string `json:"kind"`
	Detail string `json:"detail,omitempty"`
}

// SignoffEvent records a technician's sign-off of a condition. Who is the technician as the
// caller identified them (a name, a badge or a role); Why is their account of what they found.
type SignoffEvent struct {
	Condition string `json:"condition"`
	Who       string `json:"who"`
	Why       string `json:"why"`
	// Latched is the seq of the condition_latched event it clears (0 when the condition was
	// not latched in the journal, e.g. a tamper switch's alarm).
	Latched uint64 `json:"latched,omitempty"`
	// CmdID is the remote command that carried the sign-off, if any.
	CmdID string `json:"cmd_id,omitempty"`
}

func (ConditionLatchedEvent) EventType() string { return EvConditionLatched }
func (SignoffEvent) EventType() string          { return EvSignoff }

func newLatchEvent(typ string) Event {
	switch typ {
	case EvConditionLatched:
		return &ConditionLatchedEvent{}
	case EvSignoff:
		return &SignoffEvent{}
	}
	return nil
}

// Latch records condition kind as latched. It writes only the first time (a unit that keeps
// reporting its cheat attempt costs one write) and reports whether it wrote.
func (j *Journal) Latch(kind, detail string) (bool, error) {
	if kind == "" {
		return false, errors.New("journal: latch needs a condition kind")
	}
	wrote := false
	err := j.update(func(w *writer) error {
		b, err := w.tx.CreateBucketIfNotExists(bOps)
		if err != nil {
			return err
		}
		set, err := readLatched(b)
		if err != nil {
			return err
		}
		if _, ok := set[kind]; ok {
			return nil
		}
		seq, err := w.append(ConditionLatchedEvent{Kind: kind, Detail: detail})
		if err != nil {
			return err
		}
		set[kind] = LatchedCondition{Kind: kind, Detail: detail, Seq: seq}
		wrote = true
		return putLatched(b, set)
	})
	return wrote, err
}

// SignOff journals a sign-off and clears the condition's latch, in one transaction. A
// condition that is not latched in the journal is signed off all the same when allowUnlatched
// (a latch kept elsewhere, such as a tamper switch's alarm); otherwise it is ErrNotLatched
// and nothing is written.
func (j *Journal) SignOff(e SignoffEvent, allowUnlatched bool) error {
	if e.Condition == "" || e.Who == "" || e.Why == "" {
		return errors.New("journal: a sign-off needs the condition, who and why")
	}
	return j.update(func(w *writer) error {
		b, err := w.tx.CreateBucketIfNotExists(bOps)
		if err != nil {
			return err
		}
		set, err := readLatched(b)
		if err != nil {
			return err
		}
		l, ok := set[e.Condition]
		if !ok && !allowUnlatched {
			return fmt.Errorf("%w: %s", ErrNotLatched, e.Condition)
		}
		e.Latched = l.Seq
		if _, err := w.append(e); err != nil {
			return err
		}
		if !ok {
			return nil
		}
		delete(set, e.Condition)
		return putLatched(b, set)
	})
}

// Latched returns the conditions waiting for a sign-off, by kind.
func (j *Journal) Latched() ([]LatchedCondition, error) {
	var out []LatchedCondition
	err := j.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bOps)
		if b == nil {
			return nil
		}
		set, err := readLatched(b)
		for _, l := range set {
			out = append(out, l)
		}
		return err
	})
	sort.Slice(out, func(a, b int) bool { return out[a].Kind < out[b].Kind })
	return out, err
}

func readLatched(b *bolt.Bucket) (map[string]LatchedCondition, error) {
	set := map[string]LatchedCondition{}
	raw := b.Get(kLatched)
	if raw == nil {
		return set, nil
	}
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("%w: ops/latched: %v", ErrCorrupt, err)
	}
	return set, nil
}

func putLatched(b *bolt.Bucket, set map[string]LatchedCondition) error {
	raw, err := json.Marshal(set)
	if err != nil {
		return err
	}
	return b.Put(kLatched, raw)
}
