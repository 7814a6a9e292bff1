package journal

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/kioskd/kioskd/sync/wire"
	bolt "go.etcd.io/bbolt"
)

// Event types. The names are part of the export format (kioskctl journal export).
const (
	EvJournalCreated    = "journal_created"
	EvBoot              = "boot"
	EvSessionOpened     = "session_opened"
	EvStackIntent       = "stack_intent"
	EvNoteCredited      = "note_credited"
	EvNoteRefused       = "note_refused"
	EvCreditReReported  = "credit_rereported"
	EvIntentResolved    = "intent_resolved"
	EvUncertain         = "uncertain_item"
	EvSessionClosed     = "session_closed"
	EvSessionCancelled  = "session_cancelled"
	EvPrintStarted      = "receipt_print_started"
	EvPrinted           = "receipt_printed"
	EvPrintFailed       = "receipt_print_failed"
	EvTopupAcked        = "topup_acked"
	EvTopupConflict     = "topup_conflict"
	EvAlarm             = "alarm"
	EvDevice            = "device_event"
	EvUnexpectedCredit  = "unexpected_credit"
	EvIntentUncertainty = "intent_uncertain"
)

// Note is one banknote in the journal.
type Note struct {
	Code       int   `json:"code"`
	ValueMinor int64 `json:"value_minor"`
}

// NoteLine counts notes of one value.
type NoteLine struct {
	ValueMinor int64 `json:"value_minor"`
	Count      int64 `json:"count"`
}

// Uncertain is a note whose fate is unknown.
type Uncertain struct {
	ID         uint64 `json:"id"`
	SessionID  uint64 `json:"session_id,omitempty"`
	ValueMinor int64  `json:"value_minor"`
	Reason     string `json:"reason"`
	Settled    bool   `json:"settled,omitempty"`
}

// Session is the view of one cash session.
type Session struct {
	ID            uint64      `json:"id"`
	Account       string      `json:"account"`
	AccountMasked string      `json:"account_masked"`
	Currency      string      `json:"currency"`
	LimitMinor    int64       `json:"limit_minor"`
	Offline       bool        `json:"offline"`
	QRNonce       string      `json:"qr_nonce,omitempty"`
	OpenedAt      time.Time   `json:"opened_at"`
	Notes         []NoteLine  `json:"notes"`
	TotalMinor    int64       `json:"total_minor"`
	NoteCount     int64       `json:"note_count"`
	PendingMinor  int64       `json:"pending_minor"`
	Uncertain     []Uncertain `json:"uncertain,omitempty"`
	Closed        bool        `json:"closed"`
	Outcome       string      `json:"outcome,omitempty"`
	ClosedAt      time.Time   `json:"closed_at,omitzero"`
	TopupSeq      uint64      `json:"topup_seq,omitempty"`
	ReceiptNo     uint64      `json:"receipt_no,omitempty"`
}

// RemainingMinor is what the session may still take, counting notes on their way to the
// cassette.
func (s *Session) RemainingMinor() int64 {
	r := s.LimitMinor - s.TotalMinor - s.PendingMinor
	if r < 0 {
		return 0
	}
	return r
}

func (s *Session) addNote(v int64) {
	s.TotalMinor += v
	s.NoteCount++
	for i := range s.Notes {
		if s.Notes[i].ValueMinor == v {
			s.Notes[i].Count++
			return
		}
	}
	s.Notes = append(s.Notes, NoteLine{ValueMinor: v, Count: 1})
	// Highest value first, as receipts list them.
	slices.SortFunc(s.Notes, func(a, b NoteLine) int {
		switch {
		case a.ValueMinor > b.ValueMinor:
			return -1
		case a.ValueMinor < b.ValueMinor:
			return 1
		}
		return 0
	})
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

// Top-up states.
const (
	TopupPending  = "pending"
	TopupCredited = "credited"
	TopupConflict = "conflict"
)

// Print states of a receipt.
const (
	PrintNone    = ""
	PrintStarted = "started"
	PrintDone    = "printed"
	PrintFailed  = "failed"
	// PrintUnsent: the attempt was refused before any byte reached the printer, so it does
	// not count as a print (the next one is still the original).
	PrintUnsent = "unsent"
)

// Topup is the view of a closed session's top-up.
type Topup struct {
	Seq         uint64          `json:"seq"`
	TopupID     string          `json:"topup_id"`
	SessionID   uint64          `json:"session_id"`
	ReceiptNo   uint64          `json:"receipt_no"`
	Account     string          `json:"account"`
	AccountMask string          `json:"account_masked"`
	AmountMinor int64           `json:"amount_minor"`
	Currency    string          `json:"currency"`
	Outcome     string          `json:"outcome"`
	Payload     json.RawMessage `json:"payload"`
	State       string          `json:"state"`
	LedgerRef   string          `json:"ledger_ref,omitempty"`
	AckedAt     time.Time       `json:"acked_at,omitzero"`
	ClosedAt    time.Time       `json:"closed_at"`
	PrintState  string          `json:"print_state,omitempty"`
	Prints      int             `json:"prints,omitempty"`
	// PrintCuts is the printer's autocutter counter read just before the last print started
	// (PrintCutsKnown when the printer has one): after a crash mid-print it tells whether
	// the receipt came out.
	PrintCuts      uint64 `json:"print_cuts,omitempty"`
	PrintCutsKnown bool   `json:"print_cuts_known,omitempty"`
}

// Wire decodes the published payload.
func (t *Topup) Wire() (wire.Topup, error) {
	var w wire.Topup
	err := json.Unmarshal(t.Payload, &w)
	return w, err
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

// OpenSessionParams describes a new session.
type OpenSessionParams struct {
	Account       string
	AccountMasked string
	LimitMinor    int64
	Offline       bool
	QRNonce       string
}

// OpenSession starts a session. Only one session may be open.
func (j *Journal) OpenSession(p OpenSessionParams) (Session, error) {
	var s Session
	err := j.update(func(w *writer) error {
		if cur := w.tx.Bucket(bMeta).Get(kCurrent); cur != nil {
			return ErrSessionOpen
		}
		if !wire.ValidAccount(p.Account) || p.LimitMinor < 0 {
			return fmt.Errorf("journal: open session: invalid account or limit")
		}
		s = Session{Account: p.Account, AccountMasked: p.AccountMasked, Currency: j.currency, LimitMinor: p.LimitMinor,
			Offline: p.Offline, QRNonce: p.QRNonce, OpenedAt: j.now().UTC(), Notes: []NoteLine{}}
		id, err := w.append(EvSessionOpened, s)
		if err != nil {
			return err
		}
		s.ID = id
		if err := w.tx.Bucket(bMeta).Put(kCurrent, u64(id)); err != nil {
			return err
		}
		return w.put(bSessions, u64(id), s)
	})
	return s, err
}

// CurrentSession returns the open session, if any.
func (j *Journal) CurrentSession() (Session, bool, error) {
	var s Session
	var ok bool
	err := j.db.View(func(tx *bolt.Tx) error {
		cur := tx.Bucket(bMeta).Get(kCurrent)
		if cur == nil {
			return nil
		}
		found, err := getJSON(tx, bSessions, cur, &s)
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("%w: current session %d missing", ErrCorrupt, btoi(cur))
		}
		ok = true
		return nil
	})
	return s, ok, err
}

// Session returns a session by id.
func (j *Journal) Session(id uint64) (Session, bool, error) {
	var s Session
	var ok bool
	err := j.db.View(func(tx *bolt.Tx) error {
		var err error
		ok, err = getJSON(tx, bSessions, u64(id), &s)
		return err
	})
	return s, ok, err
}

func (w *writer) openSession(id uint64) (Session, error) {
	var s Session
	cur := w.tx.Bucket(bMeta).Get(kCurrent)
	if cur == nil || btoi(cur) != id {
		return s, ErrNoSession
	}
	found, err := getJSON(w.tx, bSessions, cur, &s)
	if err != nil {
		return s, err
	}
	if !found || s.Closed {
		return s, fmt.Errorf("%w: current session %d missing or closed", ErrCorrupt, id)
	}
	return s, nil
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
		id, err := w.append(EvStackIntent, in)
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
		if _, err := w.append(EvNoteCredited, map[string]any{"intent_id": intentID, "session_id": s.ID, "note": credit,
			"intent_note": in.Note, "session_total": s.TotalMinor, "detail": detail}); err != nil {
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
func (j *Journal) CreditWithoutIntent(reported Note, detail string) (ReReport, error) {
	var out ReReport
	err := j.update(func(w *writer) error {
		var lc lastCredit
		found, err := getJSON(w.tx, bMeta, kLastCredit, &lc)
		if err != nil {
			return err
		}
		if found && !lc.Superseded && !lc.Completed && (reported.ValueMinor == 0 || reported.ValueMinor == lc.Note.ValueMinor) {
			out = Repeat
			_, err := w.append(EvCreditReReported, map[string]any{"last_intent_id": lc.IntentID, "note": reported, "detail": detail})
			return err
		}
		out = Unexpected
		var sid uint64
		if cur := w.tx.Bucket(bMeta).Get(kCurrent); cur != nil {
			sid = btoi(cur)
		}
		if _, err := w.append(EvUnexpectedCredit, map[string]any{"note": reported, "session_id": sid, "detail": detail}); err != nil {
			return err
		}
		if err := w.addCassette(reported.ValueMinor); err != nil {
			return err
		}
		return w.addUncertain(sid, reported.ValueMinor, "credit reported without a stack intent")
	})
	return out, err
}

// EvNoteStacked marks the last credited note as finished at the unit.
const EvNoteStacked = "note_stacked"

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
		if _, err := w.append(EvNoteStacked, map[string]any{"intent_id": lc.IntentID, "session_id": lc.SessionID}); err != nil {
			return err
		}
		return w.put(bMeta, kLastCredit, lc)
	})
}

// StackerWithoutIntent handles a unit that powered up with a note in its stacker while no
// stack intent is open. If the last credited note is not yet known to be finished, that is
// the note (its credit is journaled): nothing to do, and it returns true. Otherwise the note
// is one the journal never saw committed (its intent was lost with the storage's last
// transaction): it becomes an uncertain item, never silently dropped.
func (j *Journal) StackerWithoutIntent(reported Note, evidence string) (bool, error) {
	var last bool
	err := j.update(func(w *writer) error {
		var lc lastCredit
		found, err := getJSON(w.tx, bMeta, kLastCredit, &lc)
		if err != nil {
			return err
		}
		if found && !lc.Superseded && !lc.Completed {
			last = true
			return nil
		}
		var sid uint64
		if cur := w.tx.Bucket(bMeta).Get(kCurrent); cur != nil {
			sid = btoi(cur)
		}
		return w.addUncertain(sid, reported.ValueMinor, "note in the stacker at power-up with no stack intent: "+evidence)
	})
	return last, err
}

// addUncertain records an uncertain item, attached to session sid when it is open.
func (w *writer) addUncertain(sid uint64, value int64, reason string) error {
	u := Uncertain{SessionID: sid, ValueMinor: value, Reason: reason}
	id, err := w.append(EvUncertain, u)
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
		if _, err := w.append(EvIntentResolved, map[string]any{"intent_id": intentID, "session_id": in.SessionID,
			"resolution": resolution, "evidence": evidence, "note": in.Note}); err != nil {
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
		_, err := w.append(EvNoteRefused, map[string]any{"session_id": sid, "note": n, "reason": reason})
		return err
	})
}

// UseNonce records a QR nonce as used until expires; a nonce seen before is ErrNonceUsed.
// Expired nonces are pruned on the way (a QR code past its expiry is refused anyway).
func (j *Journal) UseNonce(nonce string, expires time.Time) error {
	if nonce == "" {
		return fmt.Errorf("journal: empty nonce")
	}
	return j.update(func(w *writer) error {
		b := w.tx.Bucket(bNonces)
		if b.Get([]byte(nonce)) != nil {
			return ErrNonceUsed
		}
		now := j.now().Unix()
		c := b.Cursor()
		pruned := 0
		for k, v := c.First(); k != nil && pruned < 64; k, v = c.Next() {
			if int64(btoi(v)) < now-86400 {
				if err := c.Delete(); err != nil {
					return err
				}
				pruned++
			}
		}
		return b.Put([]byte(nonce), u64(uint64(expires.Unix())))
	})
}

// CloseParams describes how a session ends.
type CloseParams struct {
	SessionID uint64
	Outcome   string // wire.OutcomeComplete or wire.OutcomeInterrupted
	// UnresolvedReason is recorded on each still-open intent, which becomes an uncertain item.
	UnresolvedReason string
}

// CloseResult is what CloseSession committed.
type CloseResult struct {
	Session Session
	// Topup is nil when the session took no money and has no uncertain item (cancelled).
	Topup *Topup
}

// CloseSession ends the session in one transaction: SessionClosed, the top-up with its
// contiguous seq, the outbox entry and the receipt record with its gapless number. Intents
// still open become uncertain items of this session.
func (j *Journal) CloseSession(p CloseParams) (CloseResult, error) {
	var res CloseResult
	err := j.update(func(w *writer) error {
		s, err := w.openSession(p.SessionID)
		if err != nil {
			return err
		}
		// Open intents of this session can no longer be credited to it by a live unit.
		var open []Intent
		if err := w.tx.Bucket(bIntents).ForEach(func(k, v []byte) error {
			var in Intent
			if err := json.Unmarshal(v, &in); err != nil {
				return err
			}
			if in.SessionID == s.ID {
				open = append(open, in)
			}
			return nil
		}); err != nil {
			return err
		}
		for _, in := range open {
			reason := p.UnresolvedReason
			if reason == "" {
				reason = "session closed with the note in transit"
			}
			if _, err := w.append(EvIntentResolved, map[string]any{"intent_id": in.ID, "session_id": s.ID,
				"resolution": ResolvedUncertain, "evidence": reason, "note": in.Note}); err != nil {
				return err
			}
			if err := w.tx.Bucket(bIntents).Delete(u64(in.ID)); err != nil {
				return err
			}
			s.PendingMinor -= in.Note.ValueMinor
			if err := w.put(bSessions, u64(s.ID), s); err != nil {
				return err
			}
			if err := w.addUncertain(s.ID, in.Note.ValueMinor, "stack commanded, no credit seen: "+reason); err != nil {
				return err
			}
			if s, err = w.openSession(s.ID); err != nil {
				return err
			}
		}
		now := j.now().UTC()
		s.Closed, s.Outcome, s.ClosedAt = true, p.Outcome, now
		if s.TotalMinor == 0 && len(s.Uncertain) == 0 {
			if _, err := w.append(EvSessionCancelled, map[string]any{"session_id": s.ID, "outcome": p.Outcome}); err != nil {
				return err
			}
			s.Outcome = "cancelled"
			res.Session = s
			if err := w.tx.Bucket(bMeta).Delete(kCurrent); err != nil {
				return err
			}
			return w.put(bSessions, u64(s.ID), s)
		}
		tseq, err := w.tx.Bucket(bTopups).NextSequence()
		if err != nil {
			return err
		}
		rno, err := w.tx.Bucket(bReceipts).NextSequence()
		if err != nil {
			return err
		}
		s.TopupSeq, s.ReceiptNo = tseq, rno
		wt := wire.Topup{V: wire.Version, TopupID: wire.TopupID(j.kioskID, j.epoch, tseq), KioskID: j.kioskID, Seq: tseq,
			Account: s.Account, Currency: s.Currency, AmountMinor: s.TotalMinor, Notes: []wire.NoteLine{},
			OpenedAt: s.OpenedAt, ClosedAt: now, ReceiptNo: rno, Outcome: p.Outcome, Uncertain: []wire.Uncertain{}}
		for _, n := range s.Notes {
			wt.Notes = append(wt.Notes, wire.NoteLine{ValueMinor: n.ValueMinor, Count: n.Count})
		}
		for _, u := range s.Uncertain {
			wt.Uncertain = append(wt.Uncertain, wire.Uncertain{ValueMinor: u.ValueMinor, Reason: u.Reason})
		}
		if err := wt.Validate(); err != nil {
			return fmt.Errorf("journal: close: built an invalid top-up: %w", err)
		}
		payload, err := json.Marshal(wt)
		if err != nil {
			return err
		}
		t := &Topup{Seq: tseq, TopupID: wt.TopupID, SessionID: s.ID, ReceiptNo: rno, Account: s.Account,
			AccountMask: s.AccountMasked, AmountMinor: s.TotalMinor, Currency: s.Currency, Outcome: p.Outcome,
			Payload: payload, State: TopupPending, ClosedAt: now}
		if _, err := w.append(EvSessionClosed, map[string]any{"session_id": s.ID, "topup_seq": tseq, "topup_id": wt.TopupID,
			"receipt_no": rno, "outcome": p.Outcome, "amount_minor": s.TotalMinor, "payload": json.RawMessage(payload)}); err != nil {
			return err
		}
		if err := w.put(bTopups, u64(tseq), t); err != nil {
			return err
		}
		if err := w.tx.Bucket(bOutbox).Put(u64(tseq), []byte(TopupPending)); err != nil {
			return err
		}
		if err := w.put(bReceipts, u64(rno), receiptRec{No: rno, TopupSeq: tseq}); err != nil {
			return err
		}
		if err := w.tx.Bucket(bMeta).Delete(kCurrent); err != nil {
			return err
		}
		res = CloseResult{Session: s, Topup: t}
		return w.put(bSessions, u64(s.ID), s)
	})
	return res, err
}

type receiptRec struct {
	No       uint64 `json:"no"`
	TopupSeq uint64 `json:"topup_seq"`
}

// Topup returns a top-up by its seq.
func (j *Journal) Topup(seq uint64) (Topup, bool, error) {
	var t Topup
	var ok bool
	err := j.db.View(func(tx *bolt.Tx) error {
		var err error
		ok, err = getJSON(tx, bTopups, u64(seq), &t)
		return err
	})
	return t, ok, err
}

// Outbox returns the top-ups still waiting for a credited/duplicate ack, in seq order,
// including those stopped by a conflict (State tells).
func (j *Journal) Outbox() ([]Topup, error) {
	var out []Topup
	err := j.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bOutbox).ForEach(func(k, _ []byte) error {
			var t Topup
			found, err := getJSON(tx, bTopups, k, &t)
			if err != nil {
				return err
			}
			if !found {
				return fmt.Errorf("%w: outbox entry %d has no top-up", ErrCorrupt, btoi(k))
			}
			out = append(out, t)
			return nil
		})
	})
	return out, err
}

// AckResult is what ApplyAck did.
type AckResult struct {
	Topup Topup
	// Changed is false when the ack repeated one already applied.
	Changed bool
	// Gap is set when the ledger's watermark says it lacks a top-up this journal counts as
	// acknowledged, or holds one this journal never closed.
	Gap string
}

// ApplyAck applies a verified ledger ack. credited/duplicate remove the outbox entry;
// conflict stops retries and keeps the entry for a technician; retry_later changes nothing.
// An ack whose amount or currency differs from the top-up is ErrAckMismatch and changes
// nothing.
func (j *Journal) ApplyAck(a wire.Ack) (AckResult, error) {
	var res AckResult
	kid, epoch, seq, err := wire.ParseTopupID(a.TopupID)
	if err != nil {
		return res, err
	}
	if kid != j.kioskID || epoch != j.epoch {
		return res, fmt.Errorf("%w: %s is not from this journal", ErrUnknownTopup, a.TopupID)
	}
	// A repeated ack of a top-up already credited (retries, redeliveries) changes nothing:
	// answer it from a read transaction rather than an fsync.
	if a.Status == wire.AckCredited || a.Status == wire.AckDuplicate {
		var t Topup
		var found bool
		if err := j.db.View(func(tx *bolt.Tx) error {
			var err error
			found, err = getJSON(tx, bTopups, u64(seq), &t)
			return err
		}); err != nil {
			return res, err
		}
		if found && t.TopupID == a.TopupID && t.State == TopupCredited {
			if a.AmountMinor != t.AmountMinor || a.Currency != t.Currency {
				return res, fmt.Errorf("%w: ack says %d %s, top-up %s is %d %s", ErrAckMismatch, a.AmountMinor, a.Currency, t.TopupID, t.AmountMinor, t.Currency)
			}
			return AckResult{Topup: t}, nil
		}
	}
	err = j.update(func(w *writer) error {
		var t Topup
		found, err := getJSON(w.tx, bTopups, u64(seq), &t)
		if err != nil {
			return err
		}
		if !found || t.TopupID != a.TopupID {
			return fmt.Errorf("%w: %s", ErrUnknownTopup, a.TopupID)
		}
		if a.Status != wire.AckRetryLater && (a.AmountMinor != t.AmountMinor || a.Currency != t.Currency) {
			return fmt.Errorf("%w: ack says %d %s, top-up %s is %d %s", ErrAckMismatch, a.AmountMinor, a.Currency, t.TopupID, t.AmountMinor, t.Currency)
		}
		if a.AckedThroughSeq > 0 {
			res.Gap = w.checkWatermark(a.AckedThroughSeq, seq)
		}
		res.Topup = t
		switch a.Status {
		case wire.AckCredited, wire.AckDuplicate:
			if t.State == TopupCredited {
				return nil
			}
			t.State, t.LedgerRef, t.AckedAt = TopupCredited, a.LedgerRef, j.now().UTC()
			if _, err := w.append(EvTopupAcked, map[string]any{"topup_seq": seq, "topup_id": a.TopupID, "status": a.Status,
				"ledger_ref": a.LedgerRef, "acked_through_seq": a.AckedThroughSeq}); err != nil {
				return err
			}
			if err := w.tx.Bucket(bOutbox).Delete(u64(seq)); err != nil {
				return err
			}
		case wire.AckConflict:
			if t.State == TopupConflict || t.State == TopupCredited {
				return nil
			}
			t.State = TopupConflict
			if _, err := w.append(EvTopupConflict, map[string]any{"topup_seq": seq, "topup_id": a.TopupID, "ledger_ref": a.LedgerRef}); err != nil {
				return err
			}
			if err := w.tx.Bucket(bOutbox).Put(u64(seq), []byte(TopupConflict)); err != nil {
				return err
			}
		default:
			return nil
		}
		res.Changed = true
		res.Topup = t
		return w.put(bTopups, u64(seq), t)
	})
	return res, err
}

// checkWatermark compares the ledger's highest contiguous seq with the journal: the ledger
// cannot hold more top-ups than this journal ever closed (if it does, a local transaction
// that closed a session was lost). The return describes the gap, "" when consistent.
func (w *writer) checkWatermark(through, acked uint64) string {
	last := w.tx.Bucket(bTopups).Sequence()
	var prev uint64
	if b := w.tx.Bucket(bMeta).Get(kWatermark); b != nil {
		prev = btoi(b)
	}
	if through > prev {
		_ = w.tx.Bucket(bMeta).Put(kWatermark, u64(through))
	}
	if through > last {
		return fmt.Sprintf("ledger holds top-ups through seq %d, journal closed only %d (lost local transaction?)", through, last)
	}
	// A lower watermark than seen before is not a loss: acks are answered by several ledger
	// workers and arrive in any order (sync/CONTRACT.md §5.2), so an older one can come last.
	return ""
}

// Receipt returns the top-up a receipt number belongs to.
func (j *Journal) Receipt(no uint64) (Topup, bool, error) {
	var t Topup
	var ok bool
	err := j.db.View(func(tx *bolt.Tx) error {
		var r receiptRec
		found, err := getJSON(tx, bReceipts, u64(no), &r)
		if err != nil || !found {
			return err
		}
		ok, err = getJSON(tx, bTopups, u64(r.TopupSeq), &t)
		return err
	})
	return t, ok, err
}

// MarkPrint records a print state change of the receipt of top-up seq. PrintStarted is
// committed before the first byte goes to the printer: on a restart, a receipt found
// "started" may have been printed, so it is reprinted only as a COPY.
func (j *Journal) MarkPrint(seq uint64, state, detail string) (Topup, error) {
	var t Topup
	err := j.update(func(w *writer) error {
		found, err := getJSON(w.tx, bTopups, u64(seq), &t)
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("%w: top-up seq %d", ErrUnknownTopup, seq)
		}
		typ := map[string]string{PrintStarted: EvPrintStarted, PrintDone: EvPrinted, PrintFailed: EvPrintFailed, PrintUnsent: EvPrintFailed}[state]
		if typ == "" {
			return fmt.Errorf("journal: unknown print state %q", state)
		}
		if _, err := w.append(typ, map[string]any{"topup_seq": seq, "receipt_no": t.ReceiptNo, "detail": detail}); err != nil {
			return err
		}
		if state == PrintDone && t.PrintCutsKnown && t.PrintState == PrintStarted {
			// The receipt was cut: the printer's counter is one further.
			if err := w.put(bMeta, kPrinterCuts, t.PrintCuts+1); err != nil {
				return err
			}
		}
		switch state {
		case PrintStarted:
			t.Prints++
		case PrintUnsent:
			if t.PrintState == PrintStarted && t.Prints > 0 {
				t.Prints--
			}
		}
		t.PrintState = state
		return w.put(bTopups, u64(seq), t)
	})
	return t, err
}

// MarkPrintStart records that printing the receipt of top-up seq begins, with the printer's
// cut counter when known (see Topup.PrintCuts).
func (j *Journal) MarkPrintStart(seq uint64, cuts uint64, known bool) (Topup, error) {
	var t Topup
	err := j.update(func(w *writer) error {
		found, err := getJSON(w.tx, bTopups, u64(seq), &t)
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("%w: top-up seq %d", ErrUnknownTopup, seq)
		}
		if _, err := w.append(EvPrintStarted, map[string]any{"topup_seq": seq, "receipt_no": t.ReceiptNo, "cuts": cuts, "cuts_known": known}); err != nil {
			return err
		}
		t.Prints++
		t.PrintState, t.PrintCuts, t.PrintCutsKnown = PrintStarted, cuts, known
		if known {
			if err := w.put(bMeta, kPrinterCuts, cuts); err != nil {
				return err
			}
		}
		return w.put(bTopups, u64(seq), t)
	})
	return t, err
}

var kPrinterCuts = []byte("printer_cuts")

// PrinterCuts returns the printer's cut counter as the journal last knew it: read at the
// start of the last print, plus one once that print was cut.
func (j *Journal) PrinterCuts() (uint64, bool, error) {
	var n uint64
	var ok bool
	err := j.db.View(func(tx *bolt.Tx) error {
		var err error
		ok, err = getJSON(tx, bMeta, kPrinterCuts, &n)
		return err
	})
	return n, ok, err
}

// Unprinted returns the top-ups whose receipt never finished printing, oldest first.
func (j *Journal) Unprinted() ([]Topup, error) {
	var out []Topup
	err := j.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bTopups).ForEach(func(k, v []byte) error {
			var t Topup
			if err := json.Unmarshal(v, &t); err != nil {
				return fmt.Errorf("%w: top-up %d: %v", ErrCorrupt, btoi(k), err)
			}
			if t.PrintState != PrintDone {
				out = append(out, t)
			}
			return nil
		})
	})
	return out, err
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

// Record appends an informative event (alarm, device event, boot) to the chain.
func (j *Journal) Record(typ string, data any) error {
	switch typ {
	case EvAlarm, EvDevice, EvBoot:
	default:
		return fmt.Errorf("journal: %s is not an informative event type", typ)
	}
	return j.update(func(w *writer) error {
		_, err := w.append(typ, data)
		return err
	})
}

// Stats summarises the journal for heartbeats and diagnostics.
type Stats struct {
	Events       uint64    `json:"events"`
	OutboxDepth  int       `json:"outbox_depth"`
	OutboxMinor  int64     `json:"outbox_minor"`
	OldestUnsent time.Time `json:"oldest_unacked,omitzero"`
	Uncertain    int       `json:"uncertain"`
	SizeBytes    int64     `json:"size_bytes"`
	LastTopupSeq uint64    `json:"last_topup_seq"`
	Head         string    `json:"head"`
	Watermark    uint64    `json:"ledger_watermark"`
}

// Stats reads the summary.
func (j *Journal) Stats() (Stats, error) {
	var st Stats
	err := j.db.View(func(tx *bolt.Tx) error {
		st.Events = tx.Bucket(bEvents).Sequence()
		st.SizeBytes = tx.Size()
		st.LastTopupSeq = tx.Bucket(bTopups).Sequence()
		st.Watermark = btoi(tx.Bucket(bMeta).Get(kWatermark))
		st.Head = hex.EncodeToString(tx.Bucket(bMeta).Get(kHead))
		if err := tx.Bucket(bOutbox).ForEach(func(k, v []byte) error {
			var t Topup
			if _, err := getJSON(tx, bTopups, k, &t); err != nil {
				return err
			}
			st.OutboxDepth++
			st.OutboxMinor += t.AmountMinor
			if st.OldestUnsent.IsZero() || t.ClosedAt.Before(st.OldestUnsent) {
				st.OldestUnsent = t.ClosedAt
			}
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bUncertain).ForEach(func(_, v []byte) error {
			var u Uncertain
			if json.Unmarshal(v, &u) == nil && !u.Settled {
				st.Uncertain++
			}
			return nil
		})
	})
	return st, err
}

// Topups calls fn for every top-up in seq order until fn returns false.
func (j *Journal) Topups(fn func(Topup) bool) error {
	err := j.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bTopups).ForEach(func(k, v []byte) error {
			var t Topup
			if err := json.Unmarshal(v, &t); err != nil {
				return fmt.Errorf("%w: top-up %d: %v", ErrCorrupt, btoi(k), err)
			}
			if !fn(t) {
				return errStop
			}
			return nil
		})
	})
	if errors.Is(err, errStop) {
		return nil
	}
	return err
}

var errStop = errors.New("stop")

// EvDeviceCounter records the acceptor's own stacked counter next to the journal's cassette
// count, as the baseline for recovery (StackedCountWitness).
const EvDeviceCounter = "device_counter"

var kDeviceCounter = []byte("device_counter")

// DeviceBaseline pairs a unit's stacked counter with the journal's cassette count at the
// same moment (no note in transit). Unit names the unit (its serial, when the driver read
// one): a counter is only comparable with a baseline taken from the same unit.
// Uncertain items may be notes the counter sees go in, then or later (a jammed note that
// goes in when the jam is cleared): UncertainThrough is the newest item the baseline has
// taken into account, and Pending how many of those the counter has not yet seen go in.
type DeviceBaseline struct {
	Device           uint64 `json:"device"`
	Cassette         int64  `json:"cassette"`
	Unit             string `json:"unit,omitempty"`
	UncertainThrough uint64 `json:"uncertain_through,omitempty"`
	Pending          int64  `json:"pending_uncertain,omitempty"`
}

// MaxLostNotes bounds the notes ReconcileDeviceCounter turns into uncertain items. Storage
// that drops its last commit loses at most the record of the one note in transit at each
// power cut; a unit counting more than a few notes beyond the journal has had its counter
// reset or changed, which is a device anomaly for an engineer, not notes to settle.
const MaxLostNotes = 3

// Witness compares the unit's stacked counter with the journal since the baseline.
type Witness struct {
	// Moved is how many notes the unit stacked beyond those the journal credited.
	Moved int64
	// Uncertain is how many unsettled uncertain items the counter has not seen go in yet:
	// notes that may or may not be among them.
	Uncertain int64
}

// InTransit tells the fate of the one note in transit whose intent is open: stacked when
// every note the counter could explain went in, including it; returned when none did; ok is
// false when the counts leave it open.
func (w Witness) InTransit() (stacked, ok bool) {
	switch w.Moved {
	case w.Uncertain + 1:
		return true, true
	case 0:
		return false, true
	}
	return false, false
}

// CounterCheck is what ReconcileDeviceCounter found.
type CounterCheck struct {
	// Compared is false when there was no baseline from this unit to compare with.
	Compared bool
	// Extra is how many notes the unit stacked beyond what the journal credited or holds as
	// uncertain since the baseline; negative when the journal credited notes the unit did
	// not count.
	Extra int64
	// Uncertain is the number of uncertain items recorded for it (0 < Extra <= MaxLostNotes).
	Uncertain int
}

func witness(tx *bolt.Tx, b DeviceBaseline, device uint64) (Witness, error) {
	var c Cassette
	if _, err := getJSON(tx, bCassette, kCassette, &c); err != nil {
		return Witness{}, err
	}
	// The unit's counter is 32 bits and wraps; read as a signed difference, a counter that
	// went back (reset) shows as negative rather than as four billion notes.
	moved := int64(int32(uint32(device) - uint32(b.Device)))
	w := Witness{Moved: moved - (c.Count - b.Cassette), Uncertain: b.Pending}
	cur := tx.Bucket(bUncertain).Cursor()
	for k, _ := cur.Seek(u64(b.UncertainThrough + 1)); k != nil; k, _ = cur.Next() {
		w.Uncertain++
	}
	// Items settled at a collection no longer stand for notes that may go in.
	var open int64
	err := tx.Bucket(bUncertain).ForEach(func(k, v []byte) error {
		var u Uncertain
		if err := json.Unmarshal(v, &u); err != nil {
			return fmt.Errorf("%w: uncertain %d: %v", ErrCorrupt, btoi(k), err)
		}
		if !u.Settled {
			open++
		}
		return nil
	})
	w.Uncertain = min(w.Uncertain, open)
	return w, err
}

func lastUncertain(tx *bolt.Tx) uint64 {
	if k, _ := tx.Bucket(bUncertain).Cursor().Last(); k != nil {
		return btoi(k)
	}
	return 0
}

// ReconcileDeviceCounter compares the unit's stacked counter, read while no note is in
// transit, with the baseline and takes it as the new baseline, in one transaction. Notes the
// unit stacked beyond what the journal credited or holds as uncertain since the baseline
// are notes whose record was lost (the storage dropped the commit of their stack intent,
// then the unit stacked and reported them to a process that died before journaling the
// credit): each becomes an uncertain item of unknown value, attached to session sid when it
// is open, settled by counting the cassette. Doing both in one commit means a crash cannot
// record them twice.
func (j *Journal) ReconcileDeviceCounter(unit string, device uint64, sid uint64) (CounterCheck, error) {
	var res CounterCheck
	err := j.update(func(w *writer) error {
		res = CounterCheck{}
		var prev DeviceBaseline
		found, err := getJSON(w.tx, bMeta, kDeviceCounter, &prev)
		if err != nil {
			return err
		}
		pending := int64(0)
		if found && prev.Unit == unit {
			wit, err := witness(w.tx, prev, device)
			if err != nil {
				return err
			}
			res.Compared = true
			switch {
			case wit.Moved < 0:
				res.Extra, pending = wit.Moved, wit.Uncertain
			case wit.Moved > wit.Uncertain:
				res.Extra = wit.Moved - wit.Uncertain
			default:
				// The counter saw some of the uncertain notes go in; the rest may yet.
				pending = wit.Uncertain - wit.Moved
			}
			if res.Extra > 0 && res.Extra <= MaxLostNotes {
				if sid != 0 {
					if _, err := w.openSession(sid); err != nil {
						sid = 0
					}
				}
				for range res.Extra {
					reason := fmt.Sprintf("the unit's stacked counter went from %d to %d, %d note(s) more than the journal credited or holds as uncertain: a note went into the cassette whose record was lost", prev.Device, device, res.Extra)
					if err := w.addUncertain(sid, 0, reason); err != nil {
						return err
					}
					res.Uncertain++
				}
			}
		}
		var c Cassette
		if _, err := getJSON(w.tx, bCassette, kCassette, &c); err != nil {
			return err
		}
		b := DeviceBaseline{Device: device, Cassette: c.Count, Unit: unit, UncertainThrough: lastUncertain(w.tx), Pending: pending}
		if found && prev == b {
			return nil
		}
		if _, err := w.append(EvDeviceCounter, b); err != nil {
			return err
		}
		return w.put(bMeta, kDeviceCounter, b)
	})
	return res, err
}

// StackedWitness compares the unit's stacked counter now with the baseline (see Witness);
// ok is false when there is no baseline from this unit.
func (j *Journal) StackedWitness(unit string, device uint64) (wit Witness, ok bool, err error) {
	err = j.db.View(func(tx *bolt.Tx) error {
		var b DeviceBaseline
		found, err := getJSON(tx, bMeta, kDeviceCounter, &b)
		if err != nil || !found || b.Unit != unit {
			return err
		}
		wit, err = witness(tx, b, device)
		ok = err == nil
		return err
	})
	return wit, ok, err
}
