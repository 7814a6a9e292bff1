package journal

import (
	"bytes"
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
	// nTopups counts every top-up closed so far, including those before a checkpoint that
	// a seeded replay does not hold in topups.
	nTopups uint64
	// A replay seeded from a checkpoint (fromState) holds only the sessions that were live at
	// the checkpoint plus those opened since; baseSessions counts the others, baseTopups the
	// top-ups closed before it, and from is the checkpoint's seq. A full replay has all zero.
	baseSessions int
	baseTopups   uint64
	from         uint64
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
	case EvAlarm, EvBoot, EvDevice:
		// Informative: no money view depends on them.
		return nil
	}
	ev, err := rec.Payload()
	if err != nil {
		return err
	}
	switch e := ev.(type) {
	case *SessionOpenedEvent:
		if r.current != 0 {
			return fmt.Errorf("session opened while %d is open", r.current)
		}
		r.sessions[rec.Seq] = &Session{ID: rec.Seq, Account: e.Account, AccountMasked: e.AccountMasked, Currency: e.Currency,
			LimitMinor: e.LimitMinor, Offline: e.Offline, QRNonce: e.QRNonce, OpenedAt: e.OpenedAt, Notes: []NoteLine{}}
		r.current = rec.Seq
	case *StackIntentEvent:
		s := r.sessions[e.SessionID]
		if s == nil || s.Closed {
			return fmt.Errorf("intent for session %d that is not open", e.SessionID)
		}
		r.intents[rec.Seq] = Intent{ID: rec.Seq, SessionID: e.SessionID, Note: e.Note, At: e.At}
		s.PendingMinor += e.Note.ValueMinor
	case *NoteCreditedEvent:
		in, ok := r.intents[e.IntentID]
		if !ok || in.SessionID != e.SessionID {
			return fmt.Errorf("credit for intent %d that is not open", e.IntentID)
		}
		delete(r.intents, e.IntentID)
		s := r.sessions[e.SessionID]
		if s == nil {
			return fmt.Errorf("credit for unknown session %d", e.SessionID)
		}
		s.PendingMinor -= in.Note.ValueMinor
		s.addNote(e.Note.ValueMinor)
		r.addCassette(e.Note.ValueMinor)
	case *CreditedDirectEvent:
		s := r.sessions[e.SessionID]
		if s == nil || s.Closed {
			return fmt.Errorf("direct credit for session %d that is not open", e.SessionID)
		}
		s.addNote(e.Note.ValueMinor)
		r.addCassette(e.Note.ValueMinor)
	case *UnexpectedCreditEvent:
		r.addCassette(e.Note.ValueMinor)
	case *IntentResolvedEvent:
		in, ok := r.intents[e.IntentID]
		if !ok {
			return fmt.Errorf("resolution of intent %d that is not open", e.IntentID)
		}
		delete(r.intents, e.IntentID)
		s := r.sessions[in.SessionID]
		if s == nil {
			return fmt.Errorf("intent %d of unknown session %d", e.IntentID, in.SessionID)
		}
		s.PendingMinor -= in.Note.ValueMinor
	case *UncertainEvent:
		u := Uncertain{ID: rec.Seq, SessionID: e.SessionID, ValueMinor: e.ValueMinor, Reason: e.Reason, InCassette: e.InCassette}
		if s := r.sessions[u.SessionID]; s != nil && !s.Closed {
			s.Uncertain = append(s.Uncertain, u)
		}
	case *SessionCancelledEvent:
		if _, err := r.closeSession(e.SessionID); err != nil {
			return err
		}
	case *SessionClosedEvent:
		s, err := r.closeSession(e.SessionID)
		if err != nil {
			return err
		}
		if e.AmountMinor != s.TotalMinor {
			return fmt.Errorf("session %d closed with %d, credits sum to %d", s.ID, e.AmountMinor, s.TotalMinor)
		}
		if _, dup := r.topups[e.TopupSeq]; dup || e.TopupSeq != r.nTopups+1 {
			return fmt.Errorf("top-up seq %d out of order", e.TopupSeq)
		}
		r.nTopups++
		r.topups[e.TopupSeq] = replayTopup{amount: e.AmountMinor, payload: e.Payload, session: s.ID}
		r.outbox[e.TopupSeq] = TopupPending
		s.TopupSeq = e.TopupSeq
	case *FollowUpCreditEvent:
		return r.followUp(e)
	case *CollectionRecordedEvent:
		// The only event that takes notes out of the cassette counters.
		removeFromCassette(&r.cassette, e.Expected)
	case *TopupAckedEvent:
		if e.TopupSeq == 0 || e.TopupSeq > r.nTopups {
			return fmt.Errorf("ack for unknown top-up %d", e.TopupSeq)
		}
		delete(r.outbox, e.TopupSeq)
	case *TopupConflictEvent:
		if _, ok := r.outbox[e.TopupSeq]; ok {
			r.outbox[e.TopupSeq] = TopupConflict
		}
	}
	return nil
}

func (r *replay) addCassette(v int64) {
	r.cassette.Count++
	r.cassette.ValueMinor += v
	r.cassette.ByValue[v]++
}

func (r *replay) closeSession(id uint64) (*Session, error) {
	s := r.sessions[id]
	if s == nil || s.Closed || r.current != id {
		return nil, fmt.Errorf("close of session %d that is not open", id)
	}
	s.Closed = true
	r.current = 0
	return s, nil
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
	av := loadArchivedViews(tx)
	archivedSessions, archivedTopups := 0, uint64(0)
	for id, want := range r.sessions {
		var got Session
		found, err := getJSON(tx, bSessions, u64(id), &got)
		if err != nil {
			return err
		}
		if !found && id <= av.SessionsThrough {
			archivedSessions++ // moved out with its history (archive.go)
			continue
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
	if err := r.compareSessionKeys(tx, archivedSessions); err != nil {
		return err
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
	for seq, want := range r.topups {
		var got Topup
		found, err := getJSON(tx, bTopups, u64(seq), &got)
		if err != nil {
			return err
		}
		if !found && seq <= av.TopupsThrough {
			archivedTopups++
			continue
		}
		if !found || got.AmountMinor != want.amount || !bytes.Equal(got.Payload, want.payload) {
			return fmt.Errorf("top-up %d view differs from its events", seq)
		}
	}
	if err := r.compareTopupKeys(tx, archivedTopups); err != nil {
		return err
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

// compareSessionKeys checks that the sessions view holds exactly the sessions of the events.
// A full replay counts the whole bucket; a seeded one checks only the keys after its
// checkpoint, so that start-up stays independent of the length of history (the sessions
// before it are covered by the background full verification).
func (r *replay) compareSessionKeys(tx *bolt.Tx, archived int) error {
	b := tx.Bucket(bSessions)
	if r.from == 0 {
		if n := b.Stats().KeyN; n != len(r.sessions)-archived {
			return fmt.Errorf("%d sessions in the view, %d in the events (%d archived)", n, len(r.sessions)-archived, archived)
		}
		return nil
	}
	want := 0
	for id := range r.sessions {
		if id > r.from {
			want++
		}
	}
	got := 0
	c := b.Cursor()
	for k, _ := c.Seek(u64(r.from + 1)); k != nil; k, _ = c.Next() {
		if _, ok := r.sessions[btoi(k)]; !ok {
			return fmt.Errorf("session %d in the view has no opening event", btoi(k))
		}
		got++
	}
	if got != want {
		return fmt.Errorf("%d sessions in the view since the checkpoint, %d in the events", got, want)
	}
	return nil
}

// compareTopupKeys checks that the top-ups view holds top-ups 1..nTopups (the bucket's
// counter allocates them contiguously); like compareSessionKeys, a seeded replay looks only
// at those closed since its checkpoint.
func (r *replay) compareTopupKeys(tx *bolt.Tx, archived uint64) error {
	b := tx.Bucket(bTopups)
	if seq := b.Sequence(); seq != r.nTopups {
		return fmt.Errorf("top-up counter %d, events closed %d", seq, r.nTopups)
	}
	if r.from == 0 {
		if n := b.Stats().KeyN; uint64(n) != r.nTopups-archived {
			return fmt.Errorf("%d top-ups in the view, %d in the events (%d archived)", n, r.nTopups-archived, archived)
		}
		return nil
	}
	var got uint64
	c := b.Cursor()
	for k, _ := c.Seek(u64(r.baseTopups + 1)); k != nil; k, _ = c.Next() {
		if s := btoi(k); s <= r.baseTopups || s > r.nTopups {
			return fmt.Errorf("top-up %d in the view, events closed %d", s, r.nTopups)
		}
		got++
	}
	if got != r.nTopups-r.baseTopups {
		return fmt.Errorf("%d top-ups in the view since the checkpoint, %d in the events", got, r.nTopups-r.baseTopups)
	}
	return nil
}
