package journal

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
)

var kPulseTrain = []byte("pulse_train")

// PulseTrain is the pulse train in progress: the pulses journaled since the last credit.
type PulseTrain struct {
	Train     uint64 `json:"train"`
	Count     int    `json:"count"`
	SessionID uint64 `json:"session_id,omitempty"`
}

// RecordPulse journals one pulse of an escrowless pulse acceptor before the driver acts on
// it, so a crash in the middle of a train leaves the pulses already seen on disk.
func (j *Journal) RecordPulse(train uint64, count int) error {
	return j.update(func(w *writer) error {
		var sid uint64
		if cur := w.tx.Bucket(bMeta).Get(kCurrent); cur != nil {
			sid = btoi(cur)
		}
		pt := PulseTrain{Train: train, Count: count, SessionID: sid}
		//lint:ignore S1016 the event is the on-disk schema: a conversion would silently follow a change of the view type
		if _, err := w.append(PulseEvent{Train: pt.Train, Count: pt.Count, SessionID: pt.SessionID}); err != nil {
			return err
		}
		return w.put(bMeta, kPulseTrain, pt)
	})
}

// OpenPulseTrain returns the pulse train journaled without a credit after it.
func (j *Journal) OpenPulseTrain() (PulseTrain, bool, error) {
	var pt PulseTrain
	var ok bool
	err := j.db.View(func(tx *bolt.Tx) error {
		var err error
		ok, err = getJSON(tx, bMeta, kPulseTrain, &pt)
		return err
	})
	return pt, ok, err
}

// CreditDirect records the credit of a note from an escrowless unit (no stack intent can
// exist: the note is in the cassette when the unit reports it) into session sid, with the
// session total and cassette counters, in one transaction. The note is credited even over
// the session's limit: the money is in the box and the customer's (OverLimit tells, for an
// alarm). sid 0 or a session that is not open makes it an uncertain item instead.
func (j *Journal) CreditDirect(sid uint64, n Note, detail string) (CreditResult, error) {
	var res CreditResult
	err := j.update(func(w *writer) error {
		if err := w.tx.Bucket(bMeta).Delete(kPulseTrain); err != nil {
			return err
		}
		if n.ValueMinor <= 0 {
			return fmt.Errorf("journal: direct credit of a note of unknown value")
		}
		s, err := w.openSession(sid)
		if err != nil {
			// No open session to credit: keep it as an uncertain item for cash collection.
			if _, err := w.append(UnexpectedCreditEvent{Note: n, Detail: detail}); err != nil {
				return err
			}
			if err := w.addCassette(n.ValueMinor); err != nil {
				return err
			}
			res.Unexpected = true
			return w.addCreditedUncertain(0, n.ValueMinor, "escrowless credit with no open session")
		}
		res.OverLimit = n.ValueMinor > s.RemainingMinor()
		s.addNote(n.ValueMinor)
		if _, err := w.append(CreditedDirectEvent{SessionID: s.ID, Note: n, SessionTotal: s.TotalMinor,
			OverLimit: res.OverLimit, Detail: detail}); err != nil {
			return err
		}
		if err := w.put(bSessions, u64(s.ID), s); err != nil {
			return err
		}
		if err := w.addCassette(n.ValueMinor); err != nil {
			return err
		}
		res.Session, res.Credit = s, n
		return nil
	})
	return res, err
}

// PulseUncertain closes the open pulse train (if any) and records an uncertain item of
// unknown value for it, attached to session sid when open: a train cut short by a crash or
// matching no denomination.
func (j *Journal) PulseUncertain(sid uint64, reason string) error {
	return j.update(func(w *writer) error {
		var pt PulseTrain
		found, err := getJSON(w.tx, bMeta, kPulseTrain, &pt)
		if err != nil {
			return err
		}
		if found {
			if err := w.tx.Bucket(bMeta).Delete(kPulseTrain); err != nil {
				return err
			}
			reason = fmt.Sprintf("%s (%d pulse(s) journaled in train %d)", reason, pt.Count, pt.Train)
		}
		if sid != 0 {
			if _, err := w.openSession(sid); err != nil {
				sid = 0
			}
		}
		return w.addUncertain(sid, 0, reason)
	})
}
