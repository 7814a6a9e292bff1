package journal

import (
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Note is one banknote in the journal.
type Note struct {
	Code       int   `json:"code"`
	ValueMinor int64 `json:"value_minor"`
}

// Intent is an open stack intent: the host committed to stacking a note and has not yet seen
// the credit point (or a return).
type Intent struct {
	ID        uint64    `json:"id"`
	SessionID uint64    `json:"session_id"`
	Note      Note      `json:"note"`
	At        time.Time `json:"at"`
}

// Cassette is the running count of what went into the cassette since the last collection.
type Cassette struct {
	Count      int64           `json:"count"`
	ValueMinor int64           `json:"value_minor"`
	ByValue    map[int64]int64 `json:"by_value"`
}

// lastCredit remembers the last credited note, to recognise a unit re-reporting it after a
// host restart.
type lastCredit struct {
	IntentID  uint64 `json:"intent_id"`
	SessionID uint64 `json:"session_id"`
	Note      Note   `json:"note"`
	// Superseded is set once a newer stack intent exists: from then on a credit report cannot
	// be a repeat of this one.
	Superseded bool `json:"superseded"`
	// Completed is set once the unit reported the note stacked (or came back to rest) after
	// the credit: from then on the unit cannot re-report it, and a note it reports in the
	// stacker at power-up is another one.
	Completed bool `json:"completed"`
}

// StackIntent records, before the stack command goes to the unit, that the host is about to
// stack note for session sid. The note's value counts against the session limit from now on.
func (j *Journal) StackIntent(sid uint64, n Note) (Intent, error) {
	var in Intent
	err := j.update(func(w *writer) error {
		s, err := w.openSession(sid)
		if err != nil {
			return err
		}
		if n.ValueMinor <= 0 {
			return fmt.Errorf("journal: stack intent for a note of unknown value")
		}
		if n.ValueMinor > s.RemainingMinor() {
			return fmt.Errorf("journal: stack intent over the session limit (%d > %d)", n.ValueMinor, s.RemainingMinor())
		}
		in = Intent{SessionID: sid, Note: n, At: j.now().UTC()}
		id, err := w.append(StackIntentEvent{SessionID: in.SessionID, Note: in.Note, At: in.At})
		if err != nil {
			return err
		}
		in.ID = id
		s.PendingMinor += n.ValueMinor
		if err := w.put(bSessions, u64(sid), s); err != nil {
			return err
		}
		if err := w.markSuperseded(); err != nil {
			return err
		}
		return w.put(bIntents, u64(id), in)
	})
	return in, err
}

// repeatedBy reports whether a credit report with no open intent can be the unit repeating
// this credit: it is neither superseded by a newer intent nor completed, and of its value
// (or of none named).
func (lc lastCredit) repeatedBy(reported Note) bool {
	return !lc.Superseded && !lc.Completed && (reported.ValueMinor == 0 || reported.ValueMinor == lc.Note.ValueMinor)
}

func (w *writer) markSuperseded() error {
	var lc lastCredit
	found, err := getJSON(w.tx, bMeta, kLastCredit, &lc)
	if err != nil || !found || lc.Superseded {
		return err
	}
	lc.Superseded = true
	return w.put(bMeta, kLastCredit, lc)
}

// OpenIntents returns the stack intents that have seen neither a credit nor a resolution,
// oldest first.
func (j *Journal) OpenIntents() ([]Intent, error) {
	var out []Intent
	err := j.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bIntents).ForEach(func(k, v []byte) error {
			var in Intent
			if err := json.Unmarshal(v, &in); err != nil {
				return fmt.Errorf("%w: intent %d: %v", ErrCorrupt, btoi(k), err)
			}
			out = append(out, in)
			return nil
		})
	})
	return out, err
}

// CreditResult is what CreditNote committed.
type CreditResult struct {
	Session Session
	Credit  Note
	// Mismatch is set when the unit credited another value than the intent named; the unit's
	// credit report wins (it is what went into the cassette) and an alarm is due.
	Mismatch bool
	// OverLimit is set when an escrowless unit's note took the session over its limit.
	OverLimit bool
	// Unexpected is set when an escrowless credit found no open session and became an
	// uncertain item.
	Unexpected bool
}

// CreditNote records the credit point of the note of intent id: the session total, the
// cassette counters and the intent's removal in one transaction. reported is what the unit
// said at the credit point; a zero value means the unit did not name the note (ID-003 VEND
// VALID after a host restart) and the intent's note is used.
func (j *Journal) CreditNote(intentID uint64, reported Note, detail string) (CreditResult, error) {
	var res CreditResult
	err := j.update(func(w *writer) error {
		var in Intent
		found, err := getJSON(w.tx, bIntents, u64(intentID), &in)
		if err != nil {
			return err
		}
		if !found {
			return ErrNoIntent
		}
		credit := in.Note
		if reported.ValueMinor > 0 && reported.ValueMinor != in.Note.ValueMinor {
			credit = reported
			res.Mismatch = true
		}
		var s Session
		if found, err := getJSON(w.tx, bSessions, u64(in.SessionID), &s); err != nil || !found {
			return fmt.Errorf("%w: session %d of intent %d", ErrCorrupt, in.SessionID, intentID)
		}
		if s.Closed {
			return fmt.Errorf("%w: intent %d open on closed session %d", ErrCorrupt, intentID, s.ID)
		}
		s.PendingMinor -= in.Note.ValueMinor
		s.addNote(credit.ValueMinor)
		if _, err := w.append(NoteCreditedEvent{IntentID: intentID, SessionID: s.ID, Note: credit,
			IntentNote: in.Note, SessionTotal: s.TotalMinor, Detail: detail}); err != nil {
			return err
		}
		if err := w.tx.Bucket(bIntents).Delete(u64(intentID)); err != nil {
			return err
		}
		if err := w.put(bSessions, u64(s.ID), s); err != nil {
			return err
		}
		if err := w.addCassette(credit.ValueMinor); err != nil {
			return err
		}
		res = CreditResult{Session: s, Credit: credit}
		return w.put(bMeta, kLastCredit, lastCredit{IntentID: intentID, SessionID: s.ID, Note: credit})
	})
	return res, err
}

func (w *writer) addCassette(v int64) error {
	var c Cassette
	if _, err := getJSON(w.tx, bCassette, kCassette, &c); err != nil {
		return err
	}
	if c.ByValue == nil {
		c.ByValue = map[int64]int64{}
	}
	c.Count++
	c.ValueMinor += v
	c.ByValue[v]++
	return w.put(bCassette, kCassette, c)
}

// Cassette returns the cassette counters.
func (j *Journal) Cassette() (Cassette, error) {
	var c Cassette
	err := j.db.View(func(tx *bolt.Tx) error {
		_, err := getJSON(tx, bCassette, kCassette, &c)
		return err
	})
	if c.ByValue == nil {
		c.ByValue = map[int64]int64{}
	}
	return c, err
}

// ReReport is what the journal concluded about a credit report with no open intent.
type ReReport int

const (
	// Repeat: the unit repeated the last journaled credit (its ACK was lost in a restart):
	// acknowledge it, count nothing.
	Repeat ReReport = iota + 1
	// Unexpected: a credit the host never asked for. It is recorded as an uncertain item (the
	// note is in the cassette; whose it is gets settled at cash collection) and alarmed.
	Unexpected
)

// CreditWithoutIntent handles a credit report when no stack intent is open.
// An Unexpected credit is sealed (see seal) before it returns: the caller ACKs the unit next.
func (j *Journal) CreditWithoutIntent(reported Note, detail string) (ReReport, error) {
	var out ReReport
	err := j.update(func(w *writer) error {
		var err error
		out, err = w.creditWithoutIntent(reported, detail)
		return err
	})
	if err == nil && out == Unexpected {
		err = j.seal("unexpected credit recorded")
	}
	return out, err
}

// seal commits a small informative event after a transaction that holds the only evidence
// of a note the unit is about to forget (its RESET after a power-up with the note in the
// stacker, its ACK of a credit nothing announced): no stack intent was committed before it,
// so if storage that lied about fsync lost that transaction as its last at a power cut, the
// note would be in the cassette with no trace. With this commit after it, the evidence is no
// longer the last commit. If seal fails, the caller must not let the unit forget: its next
// report is recognised as the same note (the last credit) and sealed again.
func (j *Journal) seal(what string) error {
	return j.Seal(what)
}

// Seal commits the small evidence_sealed event (see seal) for a caller that just committed
// evidence the unit is about to forget, through a method that does not seal on its own.
func (j *Journal) Seal(what string) error {
	return j.update(func(w *writer) error {
		_, err := w.append(DeviceEvent{Device: "journal", Event: "evidence_sealed", Detail: what})
		return err
	})
}

func (w *writer) creditWithoutIntent(reported Note, detail string) (out ReReport, err error) {
	var lc lastCredit
	found, err := getJSON(w.tx, bMeta, kLastCredit, &lc)
	if err != nil {
		return out, err
	}
	if found && lc.repeatedBy(reported) {
		out = Repeat
		_, err := w.append(CreditReReportedEvent{LastIntentID: lc.IntentID, Note: reported, Detail: detail})
		return out, err
	}
	out = Unexpected
	var sid uint64
	if cur := w.tx.Bucket(bMeta).Get(kCurrent); cur != nil {
		sid = btoi(cur)
	}
	if _, err := w.append(UnexpectedCreditEvent{Note: reported, SessionID: sid, Detail: detail}); err != nil {
		return out, err
	}
	if err := w.addCassette(reported.ValueMinor); err != nil {
		return out, err
	}
	if err := w.addCreditedUncertain(sid, reported.ValueMinor, "credit reported without a stack intent"); err != nil {
		return out, err
	}
	// This note is now the last credit the unit reported, unfinished until it says stacked:
	// a crash before its ACK makes the unit report it again (CCNET credit recovery, an
	// unacknowledged ID-003 VEND VALID), and that repeat must be recognised, not recorded
	// as a second note. The same holds for a power-up with it in the stacker.
	return out, w.put(bMeta, kLastCredit, lastCredit{SessionID: sid, Note: reported})
}

// NoteCompleted records that the unit finished the last credited note (reported it stacked,
// or came back to rest after it). It is its own small transaction, after the credit and the
// unit's ACK, so that a later transaction lost by the storage (a power cut on an SD card that
// acknowledged a write it had not made) cannot take this evidence with it.
func (j *Journal) NoteCompleted() error {
	return j.update(func(w *writer) error {
		var lc lastCredit
		found, err := getJSON(w.tx, bMeta, kLastCredit, &lc)
		if err != nil || !found || lc.Completed {
			return err
		}
		lc.Completed = true
		if _, err := w.append(NoteStackedEvent{IntentID: lc.IntentID, SessionID: lc.SessionID}); err != nil {
			return err
		}
		return w.put(bMeta, kLastCredit, lc)
	})
}

// StackerWithoutIntent handles a unit that powered up with a note in its stacker while no
// stack intent is open: StackerAtPowerUp, true when the note is the last credited one.
func (j *Journal) StackerWithoutIntent(reported Note, evidence string) (bool, error) {
	res, err := j.StackerAtPowerUp(reported, evidence)
	return res.Kind == Repeat, err
}

// StackerAtPowerUp handles a unit that powered up with a note in its stacker (it stacks it
// at its reset) while no stack intent is open:
//
//   - Repeat: the last credited note is not yet known to be finished; that is the note (its
//     credit is journaled): nothing to record.
//   - FollowUp: the note is the one of the most recent stack intent, which became its closed
//     session's uncertain item (the unit did not come to rest in time, so the engine could
//     not tell), and no session was opened since (its note's intent may have been lost at
//     a power cut: then the report may be that note): the item is resolved and the note
//     credited by a follow-up top-up, as CreditAfterClose does for a late credit report. Recording another uncertain item would
//     make one physical note two, and the spare one would hide a note lost elsewhere.
//   - Unexpected: a note the journal never saw committed (its intent was lost with the
//     storage's last transaction): it becomes an uncertain item, never silently dropped.
//
// After FollowUp and Unexpected the note is the last credit (unfinished), so that a repeat
// of the report is recognised. Whatever the outcome, the evidence is sealed (see seal)
// before it returns: the caller resets the unit next.
func (j *Journal) StackerAtPowerUp(reported Note, evidence string) (LateCredit, error) {
	var res LateCredit
	err := j.update(func(w *writer) error {
		res = LateCredit{}
		var lc lastCredit
		found, err := getJSON(w.tx, bMeta, kLastCredit, &lc)
		if err != nil {
			return err
		}
		if found && !lc.Superseded && !lc.Completed {
			res.Kind = Repeat
			return nil
		}
		m, ok, err := w.lateItem(reported, true)
		if err != nil {
			return err
		}
		if ok {
			res, err = w.followUp(m, reported, "note in the stacker at power-up: "+evidence)
			return err
		}
		res.Kind = Unexpected
		var sid uint64
		if cur := w.tx.Bucket(bMeta).Get(kCurrent); cur != nil {
			sid = btoi(cur)
		}
		if err := w.addUncertain(sid, reported.ValueMinor, "note in the stacker at power-up with no stack intent: "+evidence); err != nil {
			return err
		}
		// This note is now the last the unit reported, unfinished until it comes to rest
		// after its reset: the same report again (the host died before the reset, or the
		// unit was power-cycled again) and the credit a unit reports for it after the reset
		// (CCNET credit recovery) are this note, not another uncertain one.
		return w.put(bMeta, kLastCredit, lastCredit{SessionID: sid, Note: reported})
	})
	if err != nil {
		return res, err
	}
	return res, j.seal("note in the stacker at power-up recorded")
}

// Resolutions of an open stack intent without a credit report.
const (
	// ResolvedReturned: the unit says the note went back to the customer (ID-003 0x41 then
	// return at reset, SSP NOTE CLEARED FROM FRONT, CCNET 0x11, an escrow timeout return).
	ResolvedReturned = "returned"
	// ResolvedStacked: the unit says the note went into the cassette without a credit report
	// (ID-003 0x42, SSP NOTE CLEARED INTO CASHBOX, CCNET 0x12, counters): it is credited.
	ResolvedStacked = "stacked"
	// ResolvedUncertain: nothing tells; it becomes an uncertain item.
	ResolvedUncertain = "uncertain"
)

// ResolveIntent settles an open intent from the unit's own evidence. Stacked credits the
// note to the intent's session (which may be the interrupted one); Returned frees the limit;
// Uncertain records an uncertain item.
func (j *Journal) ResolveIntent(intentID uint64, resolution, evidence string) (Session, error) {
	if resolution == ResolvedStacked {
		res, err := j.CreditNote(intentID, Note{}, "recovered: "+evidence)
		return res.Session, err
	}
	var s Session
	err := j.update(func(w *writer) error {
		var in Intent
		found, err := getJSON(w.tx, bIntents, u64(intentID), &in)
		if err != nil {
			return err
		}
		if !found {
			return ErrNoIntent
		}
		if _, err := getJSON(w.tx, bSessions, u64(in.SessionID), &s); err != nil {
			return err
		}
		s.PendingMinor -= in.Note.ValueMinor
		if err := w.put(bSessions, u64(s.ID), s); err != nil {
			return err
		}
		if _, err := w.append(IntentResolvedEvent{IntentID: intentID, SessionID: in.SessionID,
			Resolution: resolution, Evidence: evidence, Note: in.Note}); err != nil {
			return err
		}
		if err := w.tx.Bucket(bIntents).Delete(u64(intentID)); err != nil {
			return err
		}
		if resolution == ResolvedUncertain {
			sid := in.SessionID
			if s.Closed {
				sid = 0
			}
			if err := w.addUncertain(sid, in.Note.ValueMinor, "stack commanded, no credit seen: "+evidence); err != nil {
				return err
			}
			_, err = getJSON(w.tx, bSessions, u64(in.SessionID), &s)
			return err
		}
		if resolution != ResolvedReturned {
			return fmt.Errorf("journal: unknown resolution %q", resolution)
		}
		return nil
	})
	return s, err
}

// RefuseNote records a note the host returned from escrow without stacking it (over the
// limit, unknown denomination, no session). No money moves; it is kept for the audit trail.
func (j *Journal) RefuseNote(sid uint64, n Note, reason string) error {
	return j.update(func(w *writer) error {
		_, err := w.append(NoteRefusedEvent{SessionID: sid, Note: n, Reason: reason})
		return err
	})
}
