package journal

import (
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Uncertain is a note whose fate is unknown.
type Uncertain struct {
	ID         uint64 `json:"id"`
	SessionID  uint64 `json:"session_id,omitempty"`
	ValueMinor int64  `json:"value_minor"`
	Reason     string `json:"reason"`
	Settled    bool   `json:"settled,omitempty"`
	// ResolvedBy is the topup_id of the follow-up top-up that credited the note when the
	// unit reported its credit after the session closed (CreditAfterClose); the item is
	// then Settled.
	ResolvedBy string `json:"resolved_by,omitempty"`
	// Collection is the cash collection that settled the item (its record carries it to the
	// ledger, where operations decide it); the item is then Settled.
	Collection string `json:"collection,omitempty"`
	// InCassette: the unit reported the note credited, so the journal's cassette count
	// already holds it (an unexpected credit): the unit's stacked counter must not be read
	// as possibly seeing it go in later (see witness).
	InCassette bool `json:"in_cassette,omitempty"`
}

// addUncertain records an uncertain item, attached to session sid when it is open.
func (w *writer) addUncertain(sid uint64, value int64, reason string) error {
	return w.addUncertainItem(Uncertain{SessionID: sid, ValueMinor: value, Reason: reason})
}

// addCreditedUncertain records an uncertain item for a note the caller just added to the
// cassette count (a credit nobody announced): whose it is is uncertain, not that it is in.
func (w *writer) addCreditedUncertain(sid uint64, value int64, reason string) error {
	return w.addUncertainItem(Uncertain{SessionID: sid, ValueMinor: value, Reason: reason, InCassette: true})
}

func (w *writer) addUncertainItem(u Uncertain) error {
	sid := u.SessionID
	id, err := w.append(UncertainEvent{SessionID: u.SessionID, ValueMinor: u.ValueMinor, Reason: u.Reason, InCassette: u.InCassette})
	if err != nil {
		return err
	}
	u.ID = id
	if sid != 0 {
		s, err := w.openSession(sid)
		if err == nil {
			s.Uncertain = append(s.Uncertain, u)
			if err := w.put(bSessions, u64(sid), s); err != nil {
				return err
			}
		} else {
			u.SessionID = 0
		}
	}
	return w.put(bUncertain, u64(id), u)
}

// UncertainItems returns the uncertain items not yet settled.
func (j *Journal) UncertainItems() ([]Uncertain, error) {
	var out []Uncertain
	err := j.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bUncertain).ForEach(func(k, v []byte) error {
			var u Uncertain
			if err := json.Unmarshal(v, &u); err != nil {
				return fmt.Errorf("%w: uncertain %d: %v", ErrCorrupt, btoi(k), err)
			}
			if !u.Settled {
				out = append(out, u)
			}
			return nil
		})
	})
	return out, err
}
