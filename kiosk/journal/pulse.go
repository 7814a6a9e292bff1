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

// The inhibit line's journaled state (see the package documentation, "The journal protocol
// per note"): "enabled" committed and sealed before the line is released, "inhibited" once the
// unit is at rest behind it, and at start-up one uncertain item for a line the previous
// process left enabled, whatever stopped it.

// Pulse line states (PulseLineEvent.State).
const (
	PulseLineEnabled   = "enabled"
	PulseLineInhibited = "inhibited"
)

var kPulseLine = []byte("pulse_line")

// PulseLineReason begins the reason of every uncertain item PulseLineUncertain records: an
// item that may stand for a note or for nothing (the count at cash collection tells), unlike
// a cut pulse train's, which stands for a note of unknown value.
const PulseLineReason = "the pulse unit was enabled when the kiosk stopped: a note may have gone in unrecorded"

// PulseLine is the journaled state of an escrowless unit's inhibit line (package doc). The zero
// value is a line never enabled, or inhibited and at rest since.
type PulseLine struct {
	// Enabled: the line was (or was about to be) released since the unit was last at rest
	// behind an inhibit; a note may go in.
	Enabled bool `json:"enabled"`
	// Since is the seq of the event that enabled it; SessionID the session open then.
	Since     uint64 `json:"since,omitempty"`
	SessionID uint64 `json:"session_id,omitempty"`
	// Uncertain is the uncertain item a start-up recorded for this enabled stretch (0: none
	// yet), so that a second restart before the unit came to rest does not record another.
	Uncertain uint64 `json:"uncertain,omitempty"`
}

// PulseLineState returns the journaled state of the inhibit line.
func (j *Journal) PulseLineState() (PulseLine, error) {
	var pl PulseLine
	err := j.db.View(func(tx *bolt.Tx) error {
		_, err := getJSON(tx, bMeta, kPulseLine, &pl)
		return err
	})
	return pl, err
}

// PulseEnabling records, before the caller releases the inhibit line, that the unit may take
// notes (with session sid, 0 for none), and seals it with a second commit: when it returns nil
// the state is durable even on storage that loses its last commit at a power cut. The caller
// releases the line only after nil. A stretch already enabled and not yet counted by a
// start-up needs no new record (nil at once).
func (j *Journal) PulseEnabling(sid uint64, detail string) error {
	wrote := false
	err := j.update(func(w *writer) error {
		var pl PulseLine
		if _, err := getJSON(w.tx, bMeta, kPulseLine, &pl); err != nil {
			return err
		}
		if pl.Enabled && pl.Uncertain == 0 {
			return nil
		}
		seq, err := w.append(PulseLineEvent{State: PulseLineEnabled, SessionID: sid, Detail: detail})
		if err != nil {
			return err
		}
		wrote = true
		return w.put(bMeta, kPulseLine, PulseLine{Enabled: true, Since: seq, SessionID: sid})
	})
	if err == nil && wrote {
		err = j.seal("pulse unit enabled")
	}
	return err
}

// PulseInhibited records that the unit is at rest behind its inhibit line: the caller saw
// the line inhibited and then the unit's report that no note is in transit (the pulse
// driver's Disabled, InhibitGrace after the inhibit). It reports whether the state changed
// (false: it was not enabled).
func (j *Journal) PulseInhibited(detail string) (bool, error) {
	changed := false
	err := j.update(func(w *writer) error {
		var pl PulseLine
		if _, err := getJSON(w.tx, bMeta, kPulseLine, &pl); err != nil || !pl.Enabled {
			return err
		}
		if _, err := w.append(PulseLineEvent{State: PulseLineInhibited, Detail: detail}); err != nil {
			return err
		}
		changed = true
		return w.tx.Bucket(bMeta).Delete(kPulseLine)
	})
	return changed, err
}

// PulseLineUncertain is the start-up's reading of the line: when the previous process left
// it enabled, a note may be in the cassette with no record, and one uncertain item of
// unknown value is recorded for it (attached to session sid when open; its reason is
// PulseLineReason, then detail), unless a start-up
// already recorded one for the same stretch. atRest says the new process already holds the
// unit at rest behind its inhibit (see PulseInhibited): the stretch then ends in the same
// transaction; otherwise it stays enabled (with its item) until PulseInhibited. It returns
// the item recorded (0: none). No seal is needed: losing this commit brings back the
// enabled state, and the next start-up records the item again.
func (j *Journal) PulseLineUncertain(sid uint64, detail string, atRest bool) (uint64, error) {
	var item uint64
	err := j.update(func(w *writer) error {
		var pl PulseLine
		if _, err := getJSON(w.tx, bMeta, kPulseLine, &pl); err != nil || !pl.Enabled {
			return err
		}
		if pl.Uncertain == 0 {
			if sid != 0 {
				if _, err := w.openSession(sid); err != nil {
					sid = 0
				}
			}
			if err := w.addUncertain(sid, 0, fmt.Sprintf("%s (%s; enabled at event %d)", PulseLineReason, detail, pl.Since)); err != nil {
				return err
			}
			// The item's id is the seq of the event addUncertain just appended.
			item = w.tx.Bucket(bEvents).Sequence()
			pl.Uncertain = item
		}
		switch {
		case atRest:
			if _, err := w.append(PulseLineEvent{State: PulseLineInhibited, Detail: "at rest behind the inhibit after a restart"}); err != nil {
				return err
			}
			return w.tx.Bucket(bMeta).Delete(kPulseLine)
		case item != 0:
			return w.put(bMeta, kPulseLine, pl)
		}
		return nil
	})
	return item, err
}
