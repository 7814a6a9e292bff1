package journal

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Schema is the on-disk layout version.
const Schema = 1

// Errors.
var (
	// ErrCorrupt means the file fails its integrity check (hash chain, head, views). The kiosk
	// must go out of service and keep the file for forensics.
	ErrCorrupt = errors.New("journal: integrity check failed")
	// ErrLocked means another process holds the journal file (a kioskd still running, or a
	// check of it): not damage, but the kiosk cannot run until it is released.
	ErrLocked = errors.New("journal: file is locked by another process")
	// ErrWrongKiosk means the journal file belongs to another kiosk id.
	ErrWrongKiosk = errors.New("journal: file belongs to another kiosk")
	// ErrNoSession means the operation needs an open session and there is none (or another).
	ErrNoSession = errors.New("journal: no such open session")
	// ErrSessionOpen means a session is already open.
	ErrSessionOpen = errors.New("journal: a session is already open")
	// ErrNoIntent means there is no open stack intent with that id.
	ErrNoIntent = errors.New("journal: no such open stack intent")
	// ErrNonceUsed means a QR nonce was already used on this kiosk.
	ErrNonceUsed = errors.New("journal: QR nonce already used")
	// ErrAckMismatch means an ack does not match its outbox entry (amount, currency, epoch).
	ErrAckMismatch = errors.New("journal: ack does not match the top-up")
	// ErrUnknownTopup means an ack names a top-up this journal does not hold.
	ErrUnknownTopup = errors.New("journal: unknown topup_id")
)

var (
	bMeta      = []byte("meta")
	bEvents    = []byte("events")
	bSessions  = []byte("sessions")
	bIntents   = []byte("intents")
	bTopups    = []byte("topups")
	bOutbox    = []byte("outbox")
	bReceipts  = []byte("receipts")
	bCassette  = []byte("cassette")
	bNonces    = []byte("nonces")
	bUncertain = []byte("uncertain")
	allBuckets = [][]byte{bMeta, bEvents, bSessions, bIntents, bTopups, bOutbox, bReceipts, bCassette, bNonces, bUncertain}

	kEpoch      = []byte("epoch")
	kKiosk      = []byte("kiosk_id")
	kSchema     = []byte("schema")
	kHead       = []byte("head")
	kCurrent    = []byte("current_session")
	kLastCredit = []byte("last_credit")
	kCassette   = []byte("state")
	kWatermark  = []byte("ledger_watermark")
	kCurrency   = []byte("currency")
)

// Options configures Open.
type Options struct {
	// KioskID is checked against (or written into) the file.
	KioskID string
	// Currency is the kiosk's currency (ISO 4217).
	Currency string
	// LockTimeout bounds the wait for the file lock; bbolt waits forever on zero, we never do.
	// Default 2 s.
	LockTimeout time.Duration
	// Now gives the informative timestamps; default time.Now.
	Now func() time.Time
	// Mono is a monotonic clock: the time elapsed since some fixed point of this process,
	// unaffected by changes of the wall clock. It carries the journal's anchored time
	// (MonoNow) forward between anchors; default the process's monotonic clock.
	Mono func() time.Duration
	// OpenFile is passed to bbolt (power-cut simulation in tests).
	OpenFile func(string, int, os.FileMode) (*os.File, error)
	// SkipVerify skips the full chain check at Open (tools that want to read a damaged file).
	SkipVerify bool
	// ReadOnly opens the file read-only (kioskctl).
	ReadOnly bool
	// NoSync skips fsync: for building large test and benchmark journals only. A kiosk must
	// never set it: the whole money protocol rests on a commit being on disk.
	NoSync bool
	// CheckpointEvery is the tail length (events since the checkpoint) past which Open stores
	// a new checkpoint; default DefaultCheckpointEvery.
	CheckpointEvery int
	// CompactFreeFraction: when at least this fraction of the file is free pages (history
	// moved to archive segments), Open rewrites the file compactly; default 0.5, negative
	// disables. See compact.go.
	CompactFreeFraction float64
	// InitialMmapSize is bbolt's initial memory map size in bytes (0: bbolt's default, the
	// file's size rounded up). bbolt maps the file again, with a fresh mmap of the file
	// descriptor, whenever a commit grows the data past the mapping; a larger initial map
	// means fewer remaps. The simulation's disk-full fault needs none at all while the
	// descriptor is swapped away (kiosk/sim).
	InitialMmapSize int
	Logger          *slog.Logger
}

// Journal is an open journal file. Its methods are safe for concurrent use; bbolt serialises
// writers.
type Journal struct {
	db       *bolt.DB
	kioskID  string
	currency string
	epoch    uint64
	now      func() time.Time
	log      *slog.Logger
	path     string
	readOnly bool
	// archiveMu serialises Archive runs: each reads a batch, writes its segment outside any
	// transaction and then deletes the batch.
	archiveMu sync.Mutex

	// mono is the journal-anchored monotonic time (nonce.go).
	mono     func() time.Duration
	monoMu   sync.Mutex
	monoBase time.Time     // a trusted time, zero until one is known
	monoAt   time.Duration // mono() when monoBase was taken

	// commits counts committed write transactions of the journal's own writers (update):
	// each is one fsync on the card.
	commits atomic.Uint64
}

// Open opens or creates the journal at path and, unless opts.SkipVerify, verifies it.
// A verification failure returns an error wrapping ErrCorrupt together with the open
// journal closed: the caller must not run on it.
func Open(path string, opts Options) (*Journal, error) {
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = 2 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	bopts := &bolt.Options{Timeout: opts.LockTimeout, OpenFile: opts.OpenFile, ReadOnly: opts.ReadOnly,
		FreelistType: bolt.FreelistMapType, NoSync: opts.NoSync, InitialMmapSize: opts.InitialMmapSize}
	db, err := bolt.Open(path, 0o600, bopts)
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s", ErrLocked, path)
	}
	if err != nil {
		return nil, fmt.Errorf("journal: open %s: %w", path, err)
	}
	if opts.Mono == nil {
		start := time.Now()
		opts.Mono = func() time.Duration { return time.Since(start) }
	}
	j := &Journal{db: db, now: opts.Now, log: opts.Logger, path: path, readOnly: opts.ReadOnly, mono: opts.Mono}
	if err := j.init(opts); err != nil {
		_ = db.Close()
		return nil, err
	}
	j.loadMono()
	if !opts.SkipVerify {
		if err := j.startupVerify(opts); err != nil {
			_ = j.db.Close()
			return nil, err
		}
		// Only a verified file is rewritten.
		if err := j.maybeCompact(opts, bopts); err != nil {
			_ = j.db.Close()
			return nil, err
		}
	}
	return j, nil
}

func (j *Journal) init(opts Options) error {
	fresh := false
	err := j.db.View(func(tx *bolt.Tx) error {
		fresh = tx.Bucket(bMeta) == nil
		return nil
	})
	if err != nil {
		return err
	}
	if fresh {
		if opts.ReadOnly {
			return fmt.Errorf("journal: %s is empty", j.path)
		}
		if opts.KioskID == "" || opts.Currency == "" {
			return errors.New("journal: a new journal needs a kiosk id and a currency")
		}
		var eb [8]byte
		if _, err := io.ReadFull(rand.Reader, eb[:]); err != nil {
			return fmt.Errorf("journal: epoch: %w", err)
		}
		j.kioskID, j.currency, j.epoch = opts.KioskID, opts.Currency, binary.BigEndian.Uint64(eb[:])
		err = j.db.Update(func(tx *bolt.Tx) error {
			for _, b := range allBuckets {
				if _, err := tx.CreateBucketIfNotExists(b); err != nil {
					return err
				}
			}
			m := tx.Bucket(bMeta)
			if err := m.Put(kEpoch, eb[:]); err != nil {
				return err
			}
			if err := m.Put(kKiosk, []byte(opts.KioskID)); err != nil {
				return err
			}
			if err := m.Put(kSchema, u64(Schema)); err != nil {
				return err
			}
			if err := m.Put(kCurrency, []byte(opts.Currency)); err != nil {
				return err
			}
			w := &writer{j: j, tx: tx}
			if _, err := w.append(JournalCreatedEvent{KioskID: opts.KioskID, Epoch: fmt.Sprintf("%016x", j.epoch), Currency: opts.Currency, Schema: Schema}); err != nil {
				return err
			}
			// The first checkpoint: a new file is verified by construction.
			_, err := putCheckpoint(tx, 1, m.Get(kHead), newReplay(), 1, j.now())
			return err
		})
		if err != nil {
			return fmt.Errorf("journal: create: %w", err)
		}
		j.log.Info("journal created", "path", j.path, "epoch", fmt.Sprintf("%016x", j.epoch))
		return nil
	}
	return j.db.View(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if tx.Bucket(b) == nil {
				return fmt.Errorf("%w: bucket %s missing", ErrCorrupt, b)
			}
		}
		m := tx.Bucket(bMeta)
		if s := m.Get(kSchema); len(s) != 8 || binary.BigEndian.Uint64(s) != Schema {
			return fmt.Errorf("journal: unsupported schema %x", s)
		}
		e := m.Get(kEpoch)
		if len(e) != 8 {
			return fmt.Errorf("%w: epoch missing", ErrCorrupt)
		}
		j.epoch = binary.BigEndian.Uint64(e)
		j.kioskID = string(m.Get(kKiosk))
		if opts.KioskID != "" && opts.KioskID != j.kioskID {
			return fmt.Errorf("%w: file is for %q, config says %q", ErrWrongKiosk, j.kioskID, opts.KioskID)
		}
		if c := m.Get(kCurrency); c != nil {
			// Recorded since event 1 can be archived away.
			j.currency = string(c)
			if opts.Currency != "" && opts.Currency != j.currency {
				return fmt.Errorf("journal: file currency %s differs from config %s", j.currency, opts.Currency)
			}
			return nil
		}
		var created JournalCreatedEvent
		first := tx.Bucket(bEvents).Get(u64(1))
		rec, err := decodeRecord(1, first)
		if first == nil || err != nil || json.Unmarshal(rec.Data, &created) != nil {
			return fmt.Errorf("%w: first event unreadable", ErrCorrupt)
		}
		j.currency = created.Currency
		if opts.Currency != "" && opts.Currency != j.currency {
			return fmt.Errorf("journal: file currency %s differs from config %s", j.currency, opts.Currency)
		}
		return nil
	})
}

// Close closes the file.
func (j *Journal) Close() error { return j.db.Close() }

// Freeze waits for the commit in flight, if any, to finish and then holds the write lock
// forever, so that no further commit starts: the crash harness calls it just before the
// process kills itself, so that the file is left between two commits. Only then does
// journaltest.DropLastCommit model a power cut faithfully; a commit killed halfway may already have
// overwritten pages the previous transaction freed, which the commit before it still uses.
// It must not be called from inside a transaction.
func (j *Journal) Freeze() {
	if _, err := j.db.Begin(true); err != nil {
		return // closed: nothing can commit any more either
	}
}

// Epoch returns the journal epoch.
func (j *Journal) Epoch() uint64 { return j.epoch }

// KioskID returns the kiosk id recorded in the file.
func (j *Journal) KioskID() string { return j.kioskID }

// Currency returns the kiosk currency.
func (j *Journal) Currency() string { return j.currency }

// Path returns the file path.
func (j *Journal) Path() string { return j.path }

// Size returns the file size in bytes.
func (j *Journal) Size() int64 {
	var n int64
	_ = j.db.View(func(tx *bolt.Tx) error { n = tx.Size(); return nil })
	return n
}

// Record is one event of the chain.
type Record struct {
	Seq  uint64          `json:"seq"`
	Type string          `json:"type"`
	At   time.Time       `json:"at"`
	Data json.RawMessage `json:"data"`
	Hash string          `json:"h"`
	hash []byte
}

// On disk an event is a small binary header and the JSON data, so that walking the chain
// needs no JSON parsing:
//
//	format (1 byte, 1) | len(type) (1) | type | at (8, Unix nanoseconds, big-endian) | hash (32) | data (JSON)
const recordFormat = 1

func encodeRecord(typ string, at time.Time, hash, data []byte) []byte {
	b := make([]byte, 0, 2+len(typ)+8+32+len(data))
	b = append(b, recordFormat, byte(len(typ)))
	b = append(b, typ...)
	b = binary.BigEndian.AppendUint64(b, uint64(at.UnixNano()))
	b = append(b, hash...)
	return append(b, data...)
}

func decodeRecord(seq uint64, v []byte) (Record, error) {
	bad := func(what string) (Record, error) {
		return Record{}, fmt.Errorf("%w: event %d unreadable: %s", ErrCorrupt, seq, what)
	}
	if len(v) < 2 || v[0] != recordFormat {
		return bad("format")
	}
	tl := int(v[1])
	if len(v) < 2+tl+8+32 {
		return bad("short")
	}
	r := Record{Seq: seq, Type: string(v[2 : 2+tl])}
	p := 2 + tl
	r.At = time.Unix(0, int64(binary.BigEndian.Uint64(v[p:]))).UTC()
	r.hash = v[p+8 : p+40]
	r.Hash = hex.EncodeToString(r.hash)
	r.Data = v[p+40:]
	return r, nil
}

// chainHash computes the hash of an event from its predecessor's.
func chainHash(prev []byte, seq uint64, typ string, data []byte) []byte {
	h := sha256.New()
	h.Write(prev)
	h.Write(u64(seq))
	_, _ = io.WriteString(h, typ) // a hash.Hash never fails a write
	h.Write([]byte{0})
	h.Write(data)
	return h.Sum(nil)
}

// writer is the context of one read-write transaction.
type writer struct {
	j  *Journal
	tx *bolt.Tx
	// appended lists the events written in this transaction (for logging after commit).
	appended []string
}

// append adds one event to the chain.
func (w *writer) append(ev Event) (uint64, error) {
	return w.appendJSON(ev.EventType(), ev)
}

// appendJSON adds one event of type typ with data as its JSON payload. Only informative
// events whose payload belongs to their producer (Record) come here directly.
func (w *writer) appendJSON(typ string, data any) (uint64, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return 0, fmt.Errorf("journal: encode %s: %w", typ, err)
	}
	ev := w.tx.Bucket(bEvents)
	seq, err := ev.NextSequence()
	if err != nil {
		return 0, err
	}
	m := w.tx.Bucket(bMeta)
	prev := m.Get(kHead)
	h := chainHash(prev, seq, typ, raw)
	b := encodeRecord(typ, w.j.now(), h, raw)
	// Keys only ever grow: full pages halve the file against bbolt's default split.
	ev.FillPercent = 1.0
	if err := ev.Put(u64(seq), b); err != nil {
		return 0, err
	}
	if err := m.Put(kHead, h); err != nil {
		return 0, err
	}
	w.appended = append(w.appended, typ)
	return seq, nil
}

func (w *writer) put(bucket []byte, key []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	bk := w.tx.Bucket(bucket)
	if appendOnlyKeys(bucket) {
		// New keys always sort last, and a record changes only while it is among the newest
		// (an open session, a top-up being printed and acknowledged): full pages. With
		// bbolt's default half-full split these views took twice their size in the hot file
		// (the compaction at Open packs them, a running kiosk never got there).
		bk.FillPercent = 1.0
	}
	return bk.Put(key, b)
}

// appendOnlyKeys reports whether the bucket's keys are sequence numbers that only grow.
func appendOnlyKeys(bucket []byte) bool {
	return bytes.Equal(bucket, bSessions) || bytes.Equal(bucket, bTopups) || bytes.Equal(bucket, bReceipts)
}

func getJSON(tx *bolt.Tx, bucket, key []byte, v any) (bool, error) {
	b := tx.Bucket(bucket).Get(key)
	if b == nil {
		return false, nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return true, fmt.Errorf("%w: %s/%x: %v", ErrCorrupt, bucket, key, err)
	}
	return true, nil
}

// update runs fn in one read-write transaction; the events it appends are durable when update
// returns nil.
func (j *Journal) update(fn func(w *writer) error) error {
	err := j.db.Update(func(tx *bolt.Tx) error {
		return fn(&writer{j: j, tx: tx})
	})
	if err == nil {
		j.commits.Add(1)
	}
	return err
}

func u64(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

func btoi(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// Events calls fn for every event with seq >= from, in order, until fn returns false.
func (j *Journal) Events(from uint64, fn func(Record) bool) error {
	return j.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bEvents).Cursor()
		for k, v := c.Seek(u64(from)); k != nil; k, v = c.Next() {
			r, err := decodeRecord(btoi(k), v)
			if err != nil {
				return err
			}
			// v lives in bbolt's memory map only for this transaction.
			r.Data, r.hash = bytes.Clone(r.Data), bytes.Clone(r.hash)
			if !fn(r) {
				return nil
			}
		}
		return nil
	})
}

// ExportJSONL writes every event as one JSON line.
func (j *Journal) ExportJSONL(w io.Writer) error {
	enc := json.NewEncoder(w)
	var werr error
	err := j.Events(1, func(r Record) bool {
		werr = enc.Encode(r)
		return werr == nil
	})
	if err != nil {
		return err
	}
	return werr
}
