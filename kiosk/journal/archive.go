package journal

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Bounded journal: archive segments.
//
// Acknowledged history older than a configured age moves out of the hot bbolt file into
// sealed, gzip-compressed segment files next to it (<journal>.seg-<first>-<last>.gz). A
// segment holds the events exactly as the hot file stored them, so the chain is checked by
// the same code: the first event of a segment links to the last hash of the previous one (or
// to nothing for event 1), and the hot file's first event links to the last archived one.
// The meta bucket lists the segments (name, range, SHA-256 of the file) and the anchor (seq
// and hash of the last archived event), and both change in the same transaction that deletes
// the archived events: a crash leaves either the events in the hot file (and at most an
// unlisted segment file, which is overwritten by the next attempt) or the segment listed.
//
// What is archived: events only, up to a cut that is
//   - at or before the checkpoint (start-up never needs an archived event),
//   - older than the age by the event's own time against the journal's trusted time,
//   - before the opening event of the open session, of every session with an open intent, an
//     outbox entry (unacknowledged top-up), an unprinted receipt or an unsettled uncertain
//     item, and before any such intent or item itself.
//
// The views (sessions, top-ups, receipts) stay in the hot file: they are what the kiosk looks
// things up by, and they are small next to the events (about one view record per session
// against a dozen events). Seqs never repeat: the events bucket's counter is not reset.

var (
	kAnchor        = []byte("archive_anchor")
	kSegments      = []byte("archive_segments")
	kArchivedViews = []byte("archived_views")
)

// archivedViews says which views went with archived history: the sessions with id up to
// SessionsThrough and the top-ups (and their receipt records) with seq up to TopupsThrough.
// Both are prefixes: sessions open one at a time, so a session is archived once the next
// session's opening event is, and top-ups are numbered in the order sessions close. The
// views are derived data: a full verification rebuilds them from the archived events.
type archivedViews struct {
	SessionsThrough uint64 `json:"sessions_through"`
	TopupsThrough   uint64 `json:"topups_through"`
}

func loadArchivedViews(tx *bolt.Tx) archivedViews {
	var av archivedViews
	if raw := tx.Bucket(bMeta).Get(kArchivedViews); raw != nil {
		_ = json.Unmarshal(raw, &av) // damaged: zero, and the views compare says what is missing
	}
	return av
}

// archiveViews removes the views of the sessions wholly before event last (see
// archivedViews) in tx.
func archiveViews(tx *bolt.Tx, last uint64) error {
	av := loadArchivedViews(tx)
	sb := tx.Bucket(bSessions)
	var ids []uint64
	c := sb.Cursor()
	for k, _ := c.First(); k != nil && btoi(k) <= last; k, _ = c.Next() {
		ids = append(ids, btoi(k))
	}
	if len(ids) < 2 {
		return nil
	}
	// The last of them may have closed after last: it stays.
	ids = ids[:len(ids)-1]
	for _, id := range ids {
		var s Session
		if _, err := getJSON(tx, bSessions, u64(id), &s); err != nil {
			return err
		}
		if !s.Closed {
			return fmt.Errorf("journal: archive: session %d is not closed", id)
		}
		if s.TopupSeq > av.TopupsThrough {
			av.TopupsThrough = s.TopupSeq
		}
		if err := sb.Delete(u64(id)); err != nil {
			return err
		}
		av.SessionsThrough = id
	}
	tb, rb := tx.Bucket(bTopups), tx.Bucket(bReceipts)
	tc := tb.Cursor()
	for k, _ := tc.First(); k != nil && btoi(k) <= av.TopupsThrough; k, _ = tc.First() {
		if err := tb.Delete(k); err != nil {
			return err
		}
	}
	rc := rb.Cursor()
	for k, v := rc.First(); k != nil; k, v = rc.First() {
		var r receiptRec
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("%w: receipt %d: %v", ErrCorrupt, btoi(k), err)
		}
		if r.TopupSeq > av.TopupsThrough {
			break
		}
		if err := rb.Delete(k); err != nil {
			return err
		}
	}
	raw, err := json.Marshal(av)
	if err != nil {
		return err
	}
	return tx.Bucket(bMeta).Put(kArchivedViews, raw)
}

// Segment describes one sealed archive file.
type Segment struct {
	Name   string `json:"name"` // base name, in the journal's directory
	First  uint64 `json:"first"`
	Last   uint64 `json:"last"`
	SHA256 string `json:"sha256"` // of the file as written
	Bytes  int64  `json:"bytes"`
}

// anchor is the last archived event.
type anchor struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
	hash []byte
}

func loadAnchor(tx *bolt.Tx) (anchor, bool) {
	raw := tx.Bucket(bMeta).Get(kAnchor)
	if raw == nil {
		return anchor{}, false
	}
	var a anchor
	if json.Unmarshal(raw, &a) != nil {
		return anchor{}, false
	}
	h, err := hex.DecodeString(a.Hash)
	if err != nil || len(h) != sha256.Size {
		return anchor{}, false
	}
	a.hash = h
	return a, true
}

func loadSegments(tx *bolt.Tx) ([]Segment, error) {
	raw := tx.Bucket(bMeta).Get(kSegments)
	if raw == nil {
		return nil, nil
	}
	var segs []Segment
	if err := json.Unmarshal(raw, &segs); err != nil {
		return nil, fmt.Errorf("%w: archive segment list unreadable: %v", ErrCorrupt, err)
	}
	return segs, nil
}

// Segments lists the archive segments.
func (j *Journal) Segments() ([]Segment, error) {
	var segs []Segment
	err := j.db.View(func(tx *bolt.Tx) (err error) {
		segs, err = loadSegments(tx)
		return err
	})
	return segs, err
}

// segment file layout (inside gzip):
//
//	"KJSEG1\n" | epoch (8) | first (8) | then per event: seq (8) | len (4) | stored value |
//	trailer: seq 0 (8) | last (8) | last hash (32)
const segMagic = "KJSEG1\n"

// ArchiveOptions configures Archive.
type ArchiveOptions struct {
	// OlderThan: only events older than this (by their time, against TrustedNow) move.
	OlderThan time.Duration
	// MaxEvents bounds one segment (default 100,000): each segment is one transaction.
	MaxEvents int
}

// ArchiveReport says what Archive moved.
type ArchiveReport struct {
	Events   uint64    `json:"events"`
	Segments []Segment `json:"segments"`
}

// Archive moves acknowledged history older than opts.OlderThan into sealed segments (see the
// comment at the top of archive.go for what may move). It first advances the checkpoint to
// the head (Checkpoint). It may be called at any time; the daemon calls it once a day. Nothing moves while the trusted time is unknown
// (1970 clock, empty journal).
func (j *Journal) Archive(ctx context.Context, opts ArchiveOptions) (ArchiveReport, error) {
	if j.readOnly {
		return ArchiveReport{}, errors.New("journal: read-only")
	}
	if opts.MaxEvents <= 0 {
		opts.MaxEvents = 100_000
	}
	j.archiveMu.Lock()
	defer j.archiveMu.Unlock()
	// History can move only up to the checkpoint: bring it to the head first (a check of the
	// tail since the last one).
	if _, err := j.Checkpoint(); err != nil {
		return ArchiveReport{}, err
	}
	var rep ArchiveReport
	for {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		seg, n, err := j.archiveOne(opts)
		if err != nil {
			return rep, err
		}
		if n == 0 {
			return rep, nil
		}
		rep.Events += n
		rep.Segments = append(rep.Segments, seg)
	}
}

// archiveCut is the last seq that may be archived now (0: none).
func (j *Journal) archiveCut(tx *bolt.Tx, olderThan time.Duration) (uint64, error) {
	cp, _, ok, err := loadCheckpoint(tx)
	if err != nil || !ok {
		return 0, err
	}
	limit := cp.Seq
	below := func(seq uint64) {
		if seq > 0 && seq-1 < limit {
			limit = seq - 1
		}
	}
	below(btoi(tx.Bucket(bMeta).Get(kCurrent)))
	if err := tx.Bucket(bIntents).ForEach(func(k, v []byte) error {
		var in Intent
		if err := json.Unmarshal(v, &in); err != nil {
			return err
		}
		below(in.ID)
		below(in.SessionID)
		return nil
	}); err != nil {
		return 0, err
	}
	topupSession := func(seq []byte) error {
		var t Topup
		found, err := getJSON(tx, bTopups, seq, &t)
		if err != nil || !found {
			return err
		}
		below(t.SessionID)
		return nil
	}
	if err := tx.Bucket(bOutbox).ForEach(func(k, _ []byte) error { return topupSession(k) }); err != nil {
		return 0, err
	}
	un, err := unprinted(tx)
	if err != nil {
		return 0, err
	}
	for _, t := range un {
		below(t.SessionID)
	}
	if err := tx.Bucket(bUncertain).ForEach(func(_, v []byte) error {
		var u Uncertain
		if err := json.Unmarshal(v, &u); err != nil {
			return err
		}
		if !u.Settled {
			below(u.ID)
			below(u.SessionID)
		}
		return nil
	}); err != nil {
		return 0, err
	}
	// Age: walk back from the limit to the newest event old enough. Event times are
	// informative, so the trusted time (never behind the newest event) is the reference.
	trusted := trustedNow(tx, j.now())
	if trusted.IsZero() {
		return 0, nil
	}
	c := tx.Bucket(bEvents).Cursor()
	for k, v := c.Seek(u64(limit)); k != nil; k, v = c.Prev() {
		seq := btoi(k)
		if seq > limit {
			continue
		}
		rec, err := decodeRecord(seq, v)
		if err != nil {
			return 0, err
		}
		if trusted.Sub(rec.At) >= olderThan {
			return seq, nil
		}
	}
	return 0, nil
}

func (j *Journal) archiveOne(opts ArchiveOptions) (Segment, uint64, error) {
	// Read the batch in a read transaction, write the file outside any transaction, then
	// list it and delete the events in one write transaction.
	var (
		first, last uint64
		buf         bytes.Buffer
		lastHash    []byte
	)
	err := j.db.View(func(tx *bolt.Tx) error {
		cut, err := j.archiveCut(tx, opts.OlderThan)
		if err != nil || cut == 0 {
			return err
		}
		c := tx.Bucket(bEvents).Cursor()
		k, v := c.First()
		if k == nil || btoi(k) > cut {
			return nil
		}
		first = btoi(k)
		if a, ok := loadAnchor(tx); ok && a.Seq+1 != first {
			return fmt.Errorf("%w: first hot event %d does not follow the archive anchor %d", ErrCorrupt, first, a.Seq)
		}
		buf.WriteString(segMagic)
		buf.Write(u64(j.epoch))
		buf.Write(u64(first))
		n := 0
		for ; k != nil && btoi(k) <= cut && n < opts.MaxEvents; k, v = c.Next() {
			rec, err := decodeRecord(btoi(k), v)
			if err != nil {
				return err
			}
			buf.Write(k)
			buf.Write(binary.BigEndian.AppendUint32(nil, uint32(len(v))))
			buf.Write(v)
			last, lastHash = btoi(k), bytes.Clone(rec.hash)
			n++
		}
		buf.Write(u64(0))
		buf.Write(u64(last))
		buf.Write(lastHash)
		return nil
	})
	if err != nil || last == 0 {
		return Segment{}, 0, err
	}
	name := fmt.Sprintf("%s.seg-%020d-%020d.gz", filepath.Base(j.path), first, last)
	seg := Segment{Name: name, First: first, Last: last}
	if seg.SHA256, seg.Bytes, err = writeSegment(filepath.Join(filepath.Dir(j.path), name), buf.Bytes()); err != nil {
		return Segment{}, 0, err
	}
	err = j.db.Update(func(tx *bolt.Tx) error {
		m := tx.Bucket(bMeta)
		segs, err := loadSegments(tx)
		if err != nil {
			return err
		}
		if k, _ := tx.Bucket(bEvents).Cursor().First(); btoi(k) != first {
			return fmt.Errorf("journal: archive: the hot file no longer starts at %d", first)
		}
		if m.Get(kCurrency) == nil {
			if err := m.Put(kCurrency, []byte(j.currency)); err != nil {
				return err
			}
		}
		b := tx.Bucket(bEvents)
		for s := first; s <= last; s++ {
			if err := b.Delete(u64(s)); err != nil {
				return err
			}
		}
		raw, err := json.Marshal(append(segs, seg))
		if err != nil {
			return err
		}
		if err := m.Put(kSegments, raw); err != nil {
			return err
		}
		a, _ := json.Marshal(anchor{Seq: last, Hash: hex.EncodeToString(lastHash)})
		if err := m.Put(kAnchor, a); err != nil {
			return err
		}
		return archiveViews(tx, last)
	})
	if err != nil {
		return Segment{}, 0, err
	}
	j.log.Info("journal history archived", "segment", name, "first", first, "last", last, "bytes", seg.Bytes)
	return seg, last - first + 1, nil
}

// writeSegment writes the compressed segment durably (temporary file, fsync, rename, fsync of
// the directory) and returns its SHA-256 and size.
func writeSegment(path string, raw []byte) (string, int64, error) {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return "", 0, err
	}
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(f, h)}
	zw, _ := gzip.NewWriterLevel(cw, gzip.BestCompression)
	_, err = zw.Write(raw)
	if err == nil {
		err = zw.Close()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return "", 0, fmt.Errorf("journal: write segment: %w", err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return hex.EncodeToString(h.Sum(nil)), cw.n, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// readSegment calls fn with each stored event of the segment after checking the file's
// digest, its header and its trailer.
func (j *Journal) readSegment(s Segment, fn func(seq uint64, v []byte) error) error {
	path := filepath.Join(filepath.Dir(j.path), s.Name)
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%w: archive segment %s: %v", ErrCorrupt, s.Name, err)
	}
	sum := sha256.Sum256(raw)
	if hex.EncodeToString(sum[:]) != s.SHA256 {
		return fmt.Errorf("%w: archive segment %s was altered (digest)", ErrCorrupt, s.Name)
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return fmt.Errorf("%w: archive segment %s: %v", ErrCorrupt, s.Name, err)
	}
	r := bufio.NewReader(zr)
	bad := func(what string) error { return fmt.Errorf("%w: archive segment %s: %s", ErrCorrupt, s.Name, what) }
	hdr := make([]byte, len(segMagic)+16)
	if _, err := io.ReadFull(r, hdr); err != nil || string(hdr[:len(segMagic)]) != segMagic {
		return bad("header")
	}
	if btoi(hdr[len(segMagic):len(segMagic)+8]) != j.epoch || btoi(hdr[len(segMagic)+8:]) != s.First {
		return bad("belongs to another journal or range")
	}
	var lastHash []byte
	var last uint64
	for {
		var kh [8]byte
		if _, err := io.ReadFull(r, kh[:]); err != nil {
			return bad("truncated")
		}
		seq := btoi(kh[:])
		if seq == 0 {
			var tr [40]byte
			if _, err := io.ReadFull(r, tr[:]); err != nil {
				return bad("trailer")
			}
			if btoi(tr[:8]) != s.Last || last != s.Last || !bytes.Equal(tr[8:], lastHash) {
				return bad("trailer does not match its events")
			}
			return nil
		}
		var lb [4]byte
		if _, err := io.ReadFull(r, lb[:]); err != nil {
			return bad("truncated")
		}
		n := binary.BigEndian.Uint32(lb[:])
		if n > 1<<24 {
			return bad("oversized event")
		}
		v := make([]byte, n)
		if _, err := io.ReadFull(r, v); err != nil {
			return bad("truncated")
		}
		rec, err := decodeRecord(seq, v)
		if err != nil {
			return err
		}
		if err := fn(seq, v); err != nil {
			return err
		}
		last, lastHash = seq, rec.hash
	}
}

// verifyArchive walks the archive segments in order into w and checks that the last one ends
// at the anchor. It returns the number of archived events.
func (j *Journal) verifyArchive(ctx context.Context, w *chainWalk) (uint64, error) {
	var segs []Segment
	var a anchor
	var hasAnchor bool
	if err := j.db.View(func(tx *bolt.Tx) (err error) {
		segs, err = loadSegments(tx)
		a, hasAnchor = loadAnchor(tx)
		return err
	}); err != nil {
		return 0, err
	}
	if len(segs) == 0 {
		if hasAnchor {
			return 0, fmt.Errorf("%w: archive anchor without segments", ErrCorrupt)
		}
		return 0, nil
	}
	var n uint64
	for _, s := range segs {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		if s.First != w.next {
			return n, fmt.Errorf("%w: archive segment %s starts at %d, %d expected", ErrCorrupt, s.Name, s.First, w.next)
		}
		if err := j.readSegment(s, func(seq uint64, v []byte) error { n++; return w.step(seq, v) }); err != nil {
			return n, err
		}
	}
	if !hasAnchor || a.Seq != w.next-1 || !bytes.Equal(a.hash, w.prev) {
		return n, fmt.Errorf("%w: archive anchor does not match the last archived event %d", ErrCorrupt, w.next-1)
	}
	return n, nil
}

// ExportAll writes every event, archived and hot, as one JSON line each (ExportJSONL writes
// the hot file only).
func (j *Journal) ExportAll(out io.Writer) error {
	segs, err := j.Segments()
	if err != nil {
		return err
	}
	enc := json.NewEncoder(out)
	for _, s := range segs {
		if err := j.readSegment(s, func(seq uint64, v []byte) error {
			rec, err := decodeRecord(seq, v)
			if err != nil {
				return err
			}
			return enc.Encode(rec)
		}); err != nil {
			return err
		}
	}
	return j.ExportJSONL(out)
}
