package journal

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"runtime"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// Start-up independent of history.
//
// Checking the whole chain and rebuilding every view from the first event costs time in
// proportion to history (seconds on a million events). So a full check leaves a verified
// checkpoint in the meta bucket: the seq of the last event it covered, that event's chain
// hash, and the replay state at that point (the live views: open session, open intents,
// outbox, cassette, and how many sessions and top-ups there were), with the state's SHA-256
// as the views digest. Open then checks only:
//
//   - that the event at the checkpoint still carries the checkpoint's hash,
//   - the chain from there to the head, replaying the tail onto the checkpoint's state,
//   - the live views and every view the tail created or touched against that replay, and the
//     keys of the sessions and top-ups views after the checkpoint.
//
// That is O(tail + live views). An edit of history before the checkpoint (an event, a closed
// session's view) is not seen at start-up: VerifyFull, which the daemon runs in the
// background and `kioskctl journal verify` runs on demand, walks the whole chain again and
// checks the checkpoint itself against the replay at its seq, so a forged or stale checkpoint
// is caught there. The checkpoint is advanced at Open when the tail has grown past
// Options.CheckpointEvery, by Checkpoint, and after each VerifyFull.

var (
	kCheckpoint      = []byte("checkpoint")
	kCheckpointState = []byte("checkpoint_state")
)

// DefaultCheckpointEvery is the tail length past which Open advances the checkpoint.
const DefaultCheckpointEvery = 4096

// Checkpoint is a verified point of the chain.
type Checkpoint struct {
	// Seq is the last event the checkpoint covers; Head its chain hash (hex).
	Seq  uint64 `json:"seq"`
	Head string `json:"head"`
	// ViewsDigest is the SHA-256 (hex) of the replay state stored next to the checkpoint.
	ViewsDigest string `json:"views_digest"`
	// FullSeq is the last event covered by a full verification from the first event; a
	// checkpoint advanced by a tail check keeps its predecessor's FullSeq.
	FullSeq uint64 `json:"full_seq"`
	// At is informative (the wall clock may be wrong).
	At time.Time `json:"at"`
}

// replayState is what a replay needs to continue from a checkpoint: only the views that can
// still change.
type replayState struct {
	Current uint64 `json:"current"`
	// Sessions are the open sessions and those an open intent belongs to.
	Sessions  []Session         `json:"sessions"`
	Intents   []Intent          `json:"intents"`
	Outbox    map[uint64]string `json:"outbox"`
	Cassette  Cassette          `json:"cassette"`
	NSessions int               `json:"n_sessions"`
	NTopups   uint64            `json:"n_topups"`
	// Pending are the top-ups of closed sessions that still hold an unsettled uncertain
	// item: a note the unit reports after the close is resolved against them (a follow-up
	// top-up, followup.go), so a replay from the checkpoint needs their payloads.
	Pending []checkpointTopup `json:"pending,omitempty"`
}

// checkpointTopup is a top-up a replay from a checkpoint still needs.
type checkpointTopup struct {
	Seq     uint64          `json:"seq"`
	Amount  int64           `json:"amount_minor"`
	Payload json.RawMessage `json:"payload"`
	Session uint64          `json:"session"`
}

// unsettled reports whether s holds an uncertain item a late credit may still resolve.
func unsettled(s *Session) bool {
	return slices.ContainsFunc(s.Uncertain, func(u Uncertain) bool { return !u.Settled })
}

func (r *replay) state() replayState {
	st := replayState{Current: r.current, Outbox: r.outbox, Cassette: r.cassette, NTopups: r.nTopups,
		NSessions: r.baseSessions + len(r.sessions), Sessions: []Session{}, Intents: []Intent{}}
	live := map[uint64]bool{}
	for _, in := range r.intents {
		st.Intents = append(st.Intents, in)
		live[in.SessionID] = true
	}
	for id, s := range r.sessions {
		follow := s.Closed && s.TopupSeq != 0 && unsettled(s)
		if !s.Closed || live[id] || follow {
			st.Sessions = append(st.Sessions, *s)
		}
		if t, ok := r.topups[s.TopupSeq]; follow && ok {
			st.Pending = append(st.Pending, checkpointTopup{Seq: s.TopupSeq, Amount: t.amount, Payload: t.payload, Session: t.session})
		}
	}
	slices.SortFunc(st.Pending, func(a, b checkpointTopup) int { return cmp.Compare(a.Seq, b.Seq) })
	slices.SortFunc(st.Intents, func(a, b Intent) int { return cmp.Compare(a.ID, b.ID) })
	slices.SortFunc(st.Sessions, func(a, b Session) int { return cmp.Compare(a.ID, b.ID) })
	return st
}

// encodeState is the canonical form the digest is taken over (encoding/json sorts map keys).
func encodeState(st replayState) ([]byte, error) { return json.Marshal(st) }

// fromState seeds a replay with the state of a checkpoint at seq.
func fromState(st replayState, seq uint64) *replay {
	r := newReplay()
	for i := range st.Sessions {
		s := st.Sessions[i]
		r.sessions[s.ID] = &s
	}
	for _, in := range st.Intents {
		r.intents[in.ID] = in
	}
	for _, t := range st.Pending {
		r.topups[t.Seq] = replayTopup{amount: t.Amount, payload: t.Payload, session: t.Session}
	}
	if st.Outbox != nil {
		r.outbox = st.Outbox
	}
	r.cassette = st.Cassette
	if r.cassette.ByValue == nil {
		r.cassette.ByValue = map[int64]int64{}
	}
	r.current, r.nTopups, r.baseTopups = st.Current, st.NTopups, st.NTopups
	r.baseSessions = st.NSessions - len(r.sessions)
	r.from = seq
	return r
}

// loadCheckpoint reads the checkpoint and its state; ok is false when the file has none (a
// journal written before checkpoints existed). Damage to either is ErrCorrupt.
func loadCheckpoint(tx *bolt.Tx) (cp Checkpoint, st replayState, ok bool, err error) {
	m := tx.Bucket(bMeta)
	raw := m.Get(kCheckpoint)
	if raw == nil {
		return cp, st, false, nil
	}
	if err := json.Unmarshal(raw, &cp); err != nil {
		return cp, st, false, fmt.Errorf("%w: checkpoint unreadable: %v", ErrCorrupt, err)
	}
	sraw := m.Get(kCheckpointState)
	sum := sha256.Sum256(sraw)
	if hex.EncodeToString(sum[:]) != cp.ViewsDigest {
		return cp, st, false, fmt.Errorf("%w: checkpoint state does not match its digest", ErrCorrupt)
	}
	if err := json.Unmarshal(sraw, &st); err != nil {
		return cp, st, false, fmt.Errorf("%w: checkpoint state unreadable: %v", ErrCorrupt, err)
	}
	return cp, st, true, nil
}

// putCheckpoint stores a checkpoint at seq (chain hash head) with r's state.
func putCheckpoint(tx *bolt.Tx, seq uint64, head []byte, r *replay, fullSeq uint64, at time.Time) (Checkpoint, error) {
	sraw, err := encodeState(r.state())
	if err != nil {
		return Checkpoint{}, err
	}
	sum := sha256.Sum256(sraw)
	cp := Checkpoint{Seq: seq, Head: hex.EncodeToString(head), ViewsDigest: hex.EncodeToString(sum[:]), FullSeq: fullSeq, At: at.UTC()}
	raw, err := json.Marshal(cp)
	if err != nil {
		return Checkpoint{}, err
	}
	m := tx.Bucket(bMeta)
	if err := m.Put(kCheckpointState, sraw); err != nil {
		return Checkpoint{}, err
	}
	return cp, m.Put(kCheckpoint, raw)
}

// LastCheckpoint returns the stored checkpoint; ok is false when there is none yet.
func (j *Journal) LastCheckpoint() (cp Checkpoint, ok bool, err error) {
	err = j.db.View(func(tx *bolt.Tx) error {
		cp, _, ok, err = loadCheckpoint(tx)
		return err
	})
	return cp, ok, err
}

// VerifyReport summarises a successful verification.
type VerifyReport struct {
	Events   uint64 `json:"events"`
	Sessions int    `json:"sessions"`
	Topups   int    `json:"topups"`
	Head     string `json:"head"`
	// From is the seq the check started after: 0 for a full verification, the checkpoint's
	// seq for a start-up check.
	From uint64 `json:"from,omitempty"`
	// Archived counts the events checked in archive segments.
	Archived uint64 `json:"archived,omitempty"`
}

// chainWalk is the state of a walk along the chain.
type chainWalk struct {
	r    *replay
	prev []byte // hash of event next-1 (nil before the first event)
	next uint64
	// at, if set, is called with each event's seq and hash after it was checked.
	at func(seq uint64, h []byte) error
}

// step checks and applies one event.
func (w *chainWalk) step(seq uint64, v []byte) error {
	if seq != w.next {
		return fmt.Errorf("%w: event seq %d where %d expected (deleted or inserted event)", ErrCorrupt, seq, w.next)
	}
	rec, err := decodeRecord(seq, v)
	if err != nil {
		return err
	}
	h := chainHash(w.prev, seq, rec.Type, rec.Data)
	if !bytes.Equal(h, rec.hash) {
		return fmt.Errorf("%w: hash chain broken at event %d (%s)", ErrCorrupt, seq, rec.Type)
	}
	if err := w.r.apply(rec); err != nil {
		return fmt.Errorf("%w: event %d (%s): %v", ErrCorrupt, seq, rec.Type, err)
	}
	if w.at != nil {
		if err := w.at(seq, h); err != nil {
			return err
		}
	}
	w.prev = h
	w.next++
	return nil
}

// walk checks up to max events (0: all) of the hot file from w.next on; end reports that
// the walk reached the last event of tx.
func (w *chainWalk) walk(tx *bolt.Tx, max int) (end bool, err error) {
	c := tx.Bucket(bEvents).Cursor()
	n := 0
	k, v := c.Seek(u64(w.next))
	if k == nil && w.next > 1 {
		// Nothing at or after next: the previous walk (or the archive) ended at the head.
		return true, nil
	}
	for ; k != nil; k, v = c.Next() {
		if max > 0 && n >= max {
			return false, nil
		}
		if err := w.step(btoi(k), v); err != nil {
			return false, err
		}
		n++
	}
	return true, nil
}

// finish checks the end of the chain and the views in the transaction the walk ended in.
func (w *chainWalk) finish(tx *bolt.Tx) error {
	if w.next == 1 {
		return fmt.Errorf("%w: no events", ErrCorrupt)
	}
	if !bytes.Equal(w.prev, tx.Bucket(bMeta).Get(kHead)) {
		return fmt.Errorf("%w: head does not match the last event (events after %d lost or head edited)", ErrCorrupt, w.next-1)
	}
	if ev := tx.Bucket(bEvents).Sequence(); ev != w.next-1 {
		return fmt.Errorf("%w: event sequence counter %d, last event %d", ErrCorrupt, ev, w.next-1)
	}
	if err := w.r.compare(tx); err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return nil
}

func (w *chainWalk) report() VerifyReport {
	return VerifyReport{Events: w.next - 1, Sessions: w.r.baseSessions + len(w.r.sessions), Topups: int(w.r.nTopups),
		Head: hex.EncodeToString(w.prev), From: w.r.from}
}

// checkAgainst returns the at-hook that checks cp when the walk passes its seq.
func checkAgainst(cp Checkpoint, w *chainWalk) func(uint64, []byte) error {
	return func(seq uint64, h []byte) error {
		if seq != cp.Seq {
			return nil
		}
		if hex.EncodeToString(h) != cp.Head {
			return fmt.Errorf("%w: checkpoint at %d names hash %s, the chain has %x", ErrCorrupt, seq, cp.Head, h)
		}
		sraw, err := encodeState(w.r.state())
		if err != nil {
			return err
		}
		sum := sha256.Sum256(sraw)
		if hex.EncodeToString(sum[:]) != cp.ViewsDigest {
			return fmt.Errorf("%w: checkpoint at %d holds a state that differs from the replay of its history", ErrCorrupt, seq)
		}
		return nil
	}
}

// Verify checks the hash chain from the first event to the head (archive segments first),
// that seqs are contiguous, that the stored checkpoint matches the history, and that the
// money views agree with what the events say, all in one read transaction of the hot file.
// Any mismatch is ErrCorrupt. VerifyFull is the same check in small transactions.
func (j *Journal) Verify() (VerifyReport, error) {
	return j.verifyFull(context.Background(), 0, false)
}

// VerifyFull is the full verification (Verify) run so that it can go on in the background of
// a working kiosk: on its own OS thread at the lowest CPU priority, in read transactions of
// at most VerifyChunk events each (a bbolt writer that must grow the file waits for open
// read transactions), stopping with ctx.Err() when ctx ends. On success, and unless the
// journal is read-only, it stores a new checkpoint at the point it verified, with FullSeq set.
func (j *Journal) VerifyFull(ctx context.Context) (VerifyReport, error) {
	type result struct {
		rep VerifyReport
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// The thread is never unlocked: it ends with this goroutine, so its lowered priority
		// never leaks to other goroutines.
		runtime.LockOSThread()
		_ = unix.Setpriority(unix.PRIO_PROCESS, 0, 19) // 0: this thread on Linux
		rep, err := j.verifyFull(ctx, VerifyChunk, !j.readOnly)
		ch <- result{rep, err}
	}()
	res := <-ch
	return res.rep, res.err
}

// VerifyChunk is the number of events VerifyFull checks per read transaction.
var VerifyChunk = 8192

func (j *Journal) verifyFull(ctx context.Context, chunk int, store bool) (VerifyReport, error) {
	var cp Checkpoint
	var hasCP bool
	if err := j.db.View(func(tx *bolt.Tx) (err error) {
		cp, _, hasCP, err = loadCheckpoint(tx)
		return err
	}); err != nil {
		return VerifyReport{}, err
	}
	w := &chainWalk{r: newReplay(), next: 1}
	if hasCP {
		w.at = checkAgainst(cp, w)
	}
	archived, err := j.verifyArchive(ctx, w)
	if err != nil {
		return VerifyReport{}, err
	}
	for {
		if err := ctx.Err(); err != nil {
			return VerifyReport{}, err
		}
		var end bool
		err := j.db.View(func(tx *bolt.Tx) error {
			var err error
			if end, err = w.walk(tx, chunk); err != nil || !end {
				return err
			}
			return w.finish(tx)
		})
		if err != nil {
			return VerifyReport{}, err
		}
		if end {
			break
		}
		runtime.Gosched()
	}
	if hasCP && cp.Seq >= w.next {
		return VerifyReport{}, fmt.Errorf("%w: checkpoint at %d is beyond the last event %d", ErrCorrupt, cp.Seq, w.next-1)
	}
	rep := w.report()
	rep.Archived = archived
	if store {
		seq, head := w.next-1, w.prev
		if err := j.db.Update(func(tx *bolt.Tx) error {
			_, err := putCheckpoint(tx, seq, head, w.r, seq, j.now())
			return err
		}); err != nil {
			return rep, fmt.Errorf("journal: store checkpoint: %w", err)
		}
	}
	return rep, nil
}

// VerifyStartup is Open's check (see the comment at the top of checkpoint.go): the chain
// from the stored checkpoint to the head and the live views, O(tail + live views). A journal
// without a checkpoint gets the full check instead. It stores nothing.
func (j *Journal) VerifyStartup() (VerifyReport, error) {
	rep, _, _, err := j.verifyFromCheckpoint()
	return rep, err
}

// verifyFromCheckpoint runs the start-up check; w is nil when there was no checkpoint and the
// full check ran instead.
func (j *Journal) verifyFromCheckpoint() (VerifyReport, *chainWalk, Checkpoint, error) {
	var (
		cp    Checkpoint
		hasCP bool
		w     *chainWalk
	)
	err := j.db.View(func(tx *bolt.Tx) error {
		var st replayState
		var err error
		cp, st, hasCP, err = loadCheckpoint(tx)
		if err != nil || !hasCP {
			return err
		}
		head, err := hex.DecodeString(cp.Head)
		if err != nil {
			return fmt.Errorf("%w: checkpoint head unreadable", ErrCorrupt)
		}
		if err := checkAnchor(tx, cp.Seq, head); err != nil {
			return err
		}
		w = &chainWalk{r: fromState(st, cp.Seq), prev: head, next: cp.Seq + 1}
		if _, err := w.walk(tx, 0); err != nil {
			return err
		}
		return w.finish(tx)
	})
	if err != nil {
		return VerifyReport{}, nil, cp, err
	}
	if !hasCP {
		// A file from before checkpoints: one full check, which stores the first one.
		j.log.Info("journal has no checkpoint: full verification", "path", j.path)
		rep, err := j.verifyFull(context.Background(), 0, !j.readOnly)
		return rep, nil, cp, err
	}
	return w.report(), w, cp, nil
}

// startupVerify is Open's check; it advances the checkpoint when the tail is long.
func (j *Journal) startupVerify(opts Options) error {
	every := opts.CheckpointEvery
	if every <= 0 {
		every = DefaultCheckpointEvery
	}
	_, w, cp, err := j.verifyFromCheckpoint()
	if err != nil || w == nil {
		return err
	}
	if tail := w.next - 1 - cp.Seq; !j.readOnly && tail >= uint64(every) {
		if err := j.db.Update(func(tx *bolt.Tx) error {
			_, err := putCheckpoint(tx, w.next-1, w.prev, w.r, cp.FullSeq, j.now())
			return err
		}); err != nil {
			return fmt.Errorf("journal: store checkpoint: %w", err)
		}
	}
	return nil
}

// checkAnchor checks that event seq of the chain has hash h: in the hot file, or as the
// anchor of the last archived event.
func checkAnchor(tx *bolt.Tx, seq uint64, h []byte) error {
	if v := tx.Bucket(bEvents).Get(u64(seq)); v != nil {
		rec, err := decodeRecord(seq, v)
		if err != nil {
			return err
		}
		if !bytes.Equal(rec.hash, h) {
			return fmt.Errorf("%w: event %d does not carry the checkpoint's hash (history edited)", ErrCorrupt, seq)
		}
		return nil
	}
	if a, ok := loadAnchor(tx); ok && a.Seq == seq {
		if !bytes.Equal(a.hash, h) {
			return fmt.Errorf("%w: archive anchor %d does not carry the checkpoint's hash", ErrCorrupt, seq)
		}
		return nil
	}
	return fmt.Errorf("%w: checkpoint event %d missing", ErrCorrupt, seq)
}

// Checkpoint checks the tail since the stored checkpoint (as Open does) and stores a new
// checkpoint at the head, so that the next start-up has less to check. The daemon may call
// it after a batch of sessions or before a planned shutdown; it costs O(tail).
func (j *Journal) Checkpoint() (Checkpoint, error) {
	if j.readOnly {
		return Checkpoint{}, fmt.Errorf("journal: read-only")
	}
	var out Checkpoint
	err := j.db.Update(func(tx *bolt.Tx) error {
		cp, st, ok, err := loadCheckpoint(tx)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("journal: no checkpoint yet (open with verification first)")
		}
		head, err := hex.DecodeString(cp.Head)
		if err != nil {
			return fmt.Errorf("%w: checkpoint head unreadable", ErrCorrupt)
		}
		if err := checkAnchor(tx, cp.Seq, head); err != nil {
			return err
		}
		w := &chainWalk{r: fromState(st, cp.Seq), prev: head, next: cp.Seq + 1}
		if _, err := w.walk(tx, 0); err != nil {
			return err
		}
		if err := w.finish(tx); err != nil {
			return err
		}
		out, err = putCheckpoint(tx, w.next-1, w.prev, w.r, cp.FullSeq, j.now())
		return err
	})
	return out, err
}
