package journal

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// replay rebuilds the money views from the events alone, so Verify can tell an edited view
// (a changed total, a removed outbox entry) from the truth in the chain.
type replay struct {
	sessions map[uint64]*Session
	intents  map[uint64]Intent
	topups   map[uint64]replayTopup
	outbox   map[uint64]string
	cassette Cassette
	current  uint64
}

type replayTopup struct {
	amount  int64
	payload []byte
	session uint64
}

func newReplay() *replay {
	return &replay{sessions: map[uint64]*Session{}, intents: map[uint64]Intent{}, topups: map[uint64]replayTopup{},
		outbox: map[uint64]string{}, cassette: Cassette{ByValue: map[int64]int64{}}}
}

func (r *replay) apply(rec Record) error {
	switch rec.Type {
	case EvSessionOpened:
		var s Session
		if err := json.Unmarshal(rec.Data, &s); err != nil {
			return err
		}
		if r.current != 0 {
			return fmt.Errorf("session opened while %d is open", r.current)
		}
		s.ID = rec.Seq
		r.sessions[rec.Seq] = &s
		r.current = rec.Seq
	case EvStackIntent:
		var in Intent
		if err := json.Unmarshal(rec.Data, &in); err != nil {
			return err
		}
		s := r.sessions[in.SessionID]
		if s == nil || s.Closed {
			return fmt.Errorf("intent for session %d that is not open", in.SessionID)
		}
		in.ID = rec.Seq
		r.intents[rec.Seq] = in
		s.PendingMinor += in.Note.ValueMinor
	case EvNoteCredited:
		var d struct {
			IntentID   uint64 `json:"intent_id"`
			SessionID  uint64 `json:"session_id"`
			Note       Note   `json:"note"`
			IntentNote Note   `json:"intent_note"`
		}
		if err := json.Unmarshal(rec.Data, &d); err != nil {
			return err
		}
		in, ok := r.intents[d.IntentID]
		if !ok || in.SessionID != d.SessionID {
			return fmt.Errorf("credit for intent %d that is not open", d.IntentID)
		}
		delete(r.intents, d.IntentID)
		s := r.sessions[d.SessionID]
		s.PendingMinor -= in.Note.ValueMinor
		s.addNote(d.Note.ValueMinor)
		r.cassette.Count++
		r.cassette.ValueMinor += d.Note.ValueMinor
		r.cassette.ByValue[d.Note.ValueMinor]++
	case EvCreditedDirect:
		var d struct {
			SessionID uint64 `json:"session_id"`
			Note      Note   `json:"note"`
		}
		if err := json.Unmarshal(rec.Data, &d); err != nil {
			return err
		}
		s := r.sessions[d.SessionID]
		if s == nil || s.Closed {
			return fmt.Errorf("direct credit for session %d that is not open", d.SessionID)
		}
		s.addNote(d.Note.ValueMinor)
		r.cassette.Count++
		r.cassette.ValueMinor += d.Note.ValueMinor
		r.cassette.ByValue[d.Note.ValueMinor]++
	case EvUnexpectedCredit:
		var d struct {
			Note Note `json:"note"`
		}
		if err := json.Unmarshal(rec.Data, &d); err != nil {
			return err
		}
		r.cassette.Count++
		r.cassette.ValueMinor += d.Note.ValueMinor
		r.cassette.ByValue[d.Note.ValueMinor]++
	case EvIntentResolved:
		var d struct {
			IntentID uint64 `json:"intent_id"`
		}
		if err := json.Unmarshal(rec.Data, &d); err != nil {
			return err
		}
		in, ok := r.intents[d.IntentID]
		if !ok {
			return fmt.Errorf("resolution of intent %d that is not open", d.IntentID)
		}
		delete(r.intents, d.IntentID)
		r.sessions[in.SessionID].PendingMinor -= in.Note.ValueMinor
	case EvUncertain:
		var u Uncertain
		if err := json.Unmarshal(rec.Data, &u); err != nil {
			return err
		}
		u.ID = rec.Seq
		if s := r.sessions[u.SessionID]; s != nil && !s.Closed {
			s.Uncertain = append(s.Uncertain, u)
		}
	case EvSessionCancelled, EvSessionClosed:
		var d struct {
			SessionID   uint64          `json:"session_id"`
			TopupSeq    uint64          `json:"topup_seq"`
			AmountMinor int64           `json:"amount_minor"`
			Payload     json.RawMessage `json:"payload"`
		}
		if err := json.Unmarshal(rec.Data, &d); err != nil {
			return err
		}
		s := r.sessions[d.SessionID]
		if s == nil || s.Closed || r.current != d.SessionID {
			return fmt.Errorf("close of session %d that is not open", d.SessionID)
		}
		s.Closed = true
		r.current = 0
		if rec.Type == EvSessionClosed {
			if d.AmountMinor != s.TotalMinor {
				return fmt.Errorf("session %d closed with %d, credits sum to %d", s.ID, d.AmountMinor, s.TotalMinor)
			}
			if _, dup := r.topups[d.TopupSeq]; dup || d.TopupSeq != uint64(len(r.topups))+1 {
				return fmt.Errorf("top-up seq %d out of order", d.TopupSeq)
			}
			r.topups[d.TopupSeq] = replayTopup{amount: d.AmountMinor, payload: d.Payload, session: s.ID}
			r.outbox[d.TopupSeq] = TopupPending
			s.TopupSeq = d.TopupSeq
		}
	case EvTopupAcked:
		var d struct {
			TopupSeq uint64 `json:"topup_seq"`
		}
		if err := json.Unmarshal(rec.Data, &d); err != nil {
			return err
		}
		if _, ok := r.topups[d.TopupSeq]; !ok {
			return fmt.Errorf("ack for unknown top-up %d", d.TopupSeq)
		}
		delete(r.outbox, d.TopupSeq)
	case EvTopupConflict:
		var d struct {
			TopupSeq uint64 `json:"topup_seq"`
		}
		if err := json.Unmarshal(rec.Data, &d); err != nil {
			return err
		}
		if _, ok := r.outbox[d.TopupSeq]; ok {
			r.outbox[d.TopupSeq] = TopupConflict
		}
	}
	return nil
}

func sameUncertain(a, b []Uncertain) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].ValueMinor != b[i].ValueMinor || a[i].Reason != b[i].Reason {
			return false
		}
	}
	return true
}

// compare checks the stored views against the replayed ones.
func (r *replay) compare(tx *bolt.Tx) error {
	for id, want := range r.sessions {
		var got Session
		found, err := getJSON(tx, bSessions, u64(id), &got)
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("session %d missing from the view", id)
		}
		if got.TotalMinor != want.TotalMinor || got.NoteCount != want.NoteCount || got.Closed != want.Closed ||
			got.PendingMinor != want.PendingMinor || got.TopupSeq != want.TopupSeq || len(got.Uncertain) != len(want.Uncertain) ||
			!slices.Equal(got.Notes, want.Notes) || got.Account != want.Account || got.LimitMinor != want.LimitMinor ||
			!sameUncertain(got.Uncertain, want.Uncertain) {
			return fmt.Errorf("session %d view (total %d, notes %d, closed %v, pending %d) differs from its events (total %d, notes %d, closed %v, pending %d)",
				id, got.TotalMinor, got.NoteCount, got.Closed, got.PendingMinor, want.TotalMinor, want.NoteCount, want.Closed, want.PendingMinor)
		}
	}
	if n := tx.Bucket(bSessions).Stats().KeyN; n != len(r.sessions) {
		return fmt.Errorf("%d sessions in the view, %d in the events", n, len(r.sessions))
	}
	cur := tx.Bucket(bMeta).Get(kCurrent)
	if btoi(cur) != r.current {
		return fmt.Errorf("current session %d, events say %d", btoi(cur), r.current)
	}
	if n := tx.Bucket(bIntents).Stats().KeyN; n != len(r.intents) {
		return fmt.Errorf("%d open intents in the view, %d in the events", n, len(r.intents))
	}
	for id := range r.intents {
		if tx.Bucket(bIntents).Get(u64(id)) == nil {
			return fmt.Errorf("open intent %d missing from the view", id)
		}
	}
	if n := tx.Bucket(bTopups).Stats().KeyN; n != len(r.topups) {
		return fmt.Errorf("%d top-ups in the view, %d in the events", n, len(r.topups))
	}
	for seq, want := range r.topups {
		var got Topup
		found, err := getJSON(tx, bTopups, u64(seq), &got)
		if err != nil {
			return err
		}
		if !found || got.AmountMinor != want.amount || !bytes.Equal(got.Payload, want.payload) {
			return fmt.Errorf("top-up %d view differs from its events", seq)
		}
	}
	if n := tx.Bucket(bOutbox).Stats().KeyN; n != len(r.outbox) {
		return fmt.Errorf("%d outbox entries, events say %d", n, len(r.outbox))
	}
	for seq, st := range r.outbox {
		if got := tx.Bucket(bOutbox).Get(u64(seq)); string(got) != st {
			return fmt.Errorf("outbox entry %d is %q, events say %q", seq, got, st)
		}
	}
	var c Cassette
	if _, err := getJSON(tx, bCassette, kCassette, &c); err != nil {
		return err
	}
	if c.Count != r.cassette.Count || c.ValueMinor != r.cassette.ValueMinor || !maps.Equal(c.ByValue, r.cassette.ByValue) {
		return fmt.Errorf("cassette view %d notes / %d, events say %d / %d", c.Count, c.ValueMinor, r.cassette.Count, r.cassette.ValueMinor)
	}
	return nil
}
