package journal

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/kioskd/kioskd/sync/wire"
	bolt "go.etcd.io/bbolt"
)

// NoteLine counts notes of one value.
type NoteLine struct {
	ValueMinor int64 `json:"value_minor"`
	Count      int64 `json:"count"`
}

// Session is the view of one cash session.
type Session struct {
	ID            uint64 `json:"id"`
	Account       string `json:"account"`
	AccountMasked string `json:"account_masked"`
	Currency      string `json:"currency"`
	LimitMinor    int64  `json:"limit_minor"`
	Offline       bool   `json:"offline"`
	QRNonce       string `json:"qr_nonce,omitempty"`
	// QR is the wallet-signed code the session was opened with: every top-up carries it as
	// the ledger's proof of the account (sync/CONTRACT.md).
	QR           string      `json:"qr,omitempty"`
	OpenedAt     time.Time   `json:"opened_at"`
	Notes        []NoteLine  `json:"notes"`
	TotalMinor   int64       `json:"total_minor"`
	NoteCount    int64       `json:"note_count"`
	PendingMinor int64       `json:"pending_minor"`
	Uncertain    []Uncertain `json:"uncertain,omitempty"`
	Closed       bool        `json:"closed"`
	Outcome      string      `json:"outcome,omitempty"`
	ClosedAt     time.Time   `json:"closed_at,omitzero"`
	TopupSeq     uint64      `json:"topup_seq,omitempty"`
	ReceiptNo    uint64      `json:"receipt_no,omitempty"`
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

// OpenSessionParams describes a new session.
type OpenSessionParams struct {
	Account       string
	AccountMasked string
	LimitMinor    int64
	Offline       bool
	QRNonce       string
	// QR is the whole scanned code (IMW1....), sent unchanged in the top-up.
	QR string
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
			Offline: p.Offline, QRNonce: p.QRNonce, QR: p.QR, OpenedAt: j.now().UTC(), Notes: []NoteLine{}}
		id, err := w.append(SessionOpenedEvent{Account: s.Account, AccountMasked: s.AccountMasked, Currency: s.Currency,
			LimitMinor: s.LimitMinor, Offline: s.Offline, QRNonce: s.QRNonce, QR: s.QR, OpenedAt: s.OpenedAt, Notes: []NoteLine{}})
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
			if _, err := w.append(IntentResolvedEvent{IntentID: in.ID, SessionID: s.ID,
				Resolution: ResolvedUncertain, Evidence: reason, Note: in.Note}); err != nil {
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
			if _, err := w.append(SessionCancelledEvent{SessionID: s.ID, Outcome: p.Outcome}); err != nil {
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
			OpenedAt: s.OpenedAt, ClosedAt: now, ReceiptNo: rno, Outcome: p.Outcome, Uncertain: []wire.Uncertain{}, QR: s.QR}
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
		if _, err := w.append(SessionClosedEvent{SessionID: s.ID, TopupSeq: tseq, TopupID: wt.TopupID,
			ReceiptNo: rno, Outcome: p.Outcome, AmountMinor: s.TotalMinor, Payload: payload}); err != nil {
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
