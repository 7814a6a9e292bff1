package ledger

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/kioskd/kioskd/sync/wire"
)

// BoltStore is the embedded Store (go.etcd.io/bbolt), the default for the demo and for a
// single ledger host.
//
// Layout (bucket: key → value; values are JSON; "\x00" separates key parts, which never
// contain it since kiosk and account ids are [A-Za-z0-9_-]):
//
//	meta:           "schema" → "1"
//	topups:         topup_id → TopupRecord (bucket sequence numbers the ledger_refs)
//	accounts:       account → {opened_at, balances}
//	account_topups: account \x00 uint64be(ledger seq) → topup_id
//	kiosks:         kiosk_id \x00 uint64be(epoch) → {watermark, above, topups, last_credit_at}
//	daily:          account \x00 YYYY-MM-DD → {currency: minor}
//	suspense:       uint64be(seq) → SuspenseRecord
//	conflicts:      uint64be(seq) → conflict record (the refused payload and both hashes)
type BoltStore struct {
	db  *bolt.DB
	now func() time.Time
}

// Options configures OpenBolt.
type Options struct {
	// Timeout bounds the wait for the file lock held by another process (default 5 s;
	// bbolt's zero would wait forever).
	Timeout time.Duration
	// NoSync skips fsync on commit: for tests and benchmarks only, never for money.
	NoSync bool
	// Now is the clock for credit times and day totals (default time.Now).
	Now func() time.Time
}

var (
	bMeta          = []byte("meta")
	bTopups        = []byte("topups")
	bAccounts      = []byte("accounts")
	bAccountTopups = []byte("account_topups")
	bKiosks        = []byte("kiosks")
	bDaily         = []byte("daily")
	bSuspense      = []byte("suspense")
	bConflicts     = []byte("conflicts")
)

const schemaVersion = "1"

// OpenBolt opens (creating if needed) the store at path.
func OpenBolt(path string, opts Options) (*BoltStore, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.Timeout, NoSync: opts.NoSync})
	if err != nil {
		return nil, fmt.Errorf("ledger: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bMeta, bTopups, bAccounts, bAccountTopups, bKiosks, bDaily, bSuspense, bConflicts} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bMeta)
		switch v := meta.Get([]byte("schema")); {
		case v == nil:
			return meta.Put([]byte("schema"), []byte(schemaVersion))
		case string(v) != schemaVersion:
			return fmt.Errorf("schema %q, this build reads %q", v, schemaVersion)
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("ledger: init %s: %w", path, err)
	}
	return &BoltStore{db: db, now: opts.Now}, nil
}

// Close closes the database.
func (s *BoltStore) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("ledger: close: %w", err)
	}
	return nil
}

type accountRec struct {
	OpenedAt time.Time        `json:"opened_at"`
	Balances map[string]int64 `json:"balances"`
	Count    int              `json:"count"`
}

type epochRec struct {
	Watermark    uint64    `json:"watermark"`
	Above        []uint64  `json:"above,omitempty"`
	Topups       uint64    `json:"topups"`
	LastCreditAt time.Time `json:"last_credit_at"`
}

type conflictRec struct {
	TopupID      string     `json:"topup_id"`
	StoredHash   string     `json:"stored_hash"`
	ReceivedHash string     `json:"received_hash"`
	Received     wire.Topup `json:"received"`
	At           time.Time  `json:"at"`
}

// ApplyTopup implements Store. A duplicate is answered from a read-only transaction, so a
// kiosk re-sending costs no write; anything else runs in one read-write transaction that
// checks again, since another writer may have credited the id in between.
func (s *BoltStore) ApplyTopup(t wire.Topup) (Result, error) {
	if err := t.Validate(); err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	_, epoch, _, err := wire.ParseTopupID(t.TopupID)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	hash := t.ContentHash()
	var res Result
	var done bool
	err = s.db.View(func(tx *bolt.Tx) error {
		rec, ok, err := getTopup(tx, t.TopupID)
		if err != nil || !ok || rec.ContentHash != hash {
			return err
		}
		res, err = resultFor(tx, rec, wire.AckDuplicate)
		done = err == nil
		return err
	})
	if err != nil {
		return Result{}, fmt.Errorf("ledger: apply %s: %w", t.TopupID, err)
	}
	if done {
		return res, nil
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		var err error
		res, err = s.apply(tx, t, epoch, hash)
		return err
	})
	if err != nil {
		return Result{}, fmt.Errorf("ledger: apply %s: %w", t.TopupID, err)
	}
	return res, nil
}

func (s *BoltStore) apply(tx *bolt.Tx, t wire.Topup, epoch uint64, hash string) (Result, error) {
	now := s.now().UTC()
	topups := tx.Bucket(bTopups)
	if rec, ok, err := getTopup(tx, t.TopupID); err != nil {
		return Result{}, err
	} else if ok {
		if rec.ContentHash == hash {
			return resultFor(tx, rec, wire.AckDuplicate)
		}
		rec.Conflicts++
		if err := putJSON(topups, []byte(rec.TopupID), rec); err != nil {
			return Result{}, err
		}
		cb := tx.Bucket(bConflicts)
		n, err := cb.NextSequence()
		if err != nil {
			return Result{}, err
		}
		if err := putJSON(cb, u64(n), conflictRec{TopupID: t.TopupID, StoredHash: rec.ContentHash, ReceivedHash: hash, Received: t, At: now}); err != nil {
			return Result{}, err
		}
		return resultFor(tx, rec, wire.AckConflict)
	}

	// First delivery: credit.
	n, err := topups.NextSequence()
	if err != nil {
		return Result{}, err
	}
	rec := TopupRecord{
		TopupID: t.TopupID, LedgerRef: fmt.Sprintf("LR%012d", n), ContentHash: hash,
		KioskID: t.KioskID, Epoch: Epoch(epoch), Seq: t.Seq, Account: t.Account,
		Currency: t.Currency, AmountMinor: t.AmountMinor, Outcome: t.Outcome,
		ReceiptNo: t.ReceiptNo, CreditedAt: now, Topup: t,
	}
	if err := putJSON(topups, []byte(rec.TopupID), rec); err != nil {
		return Result{}, err
	}

	accounts := tx.Bucket(bAccounts)
	var acct accountRec
	if ok, err := getJSON(accounts, []byte(t.Account), &acct); err != nil {
		return Result{}, err
	} else if !ok {
		acct = accountRec{OpenedAt: now} // reference ledger: accounts open on first credit
	}
	if acct.Balances == nil {
		acct.Balances = map[string]int64{}
	}
	bal := acct.Balances[t.Currency]
	if bal > math.MaxInt64-t.AmountMinor {
		return Result{}, fmt.Errorf("%w: %s %s", ErrOverflow, t.Account, t.Currency)
	}
	acct.Balances[t.Currency] = bal + t.AmountMinor
	acct.Count++
	if err := putJSON(accounts, []byte(t.Account), acct); err != nil {
		return Result{}, err
	}
	if err := tx.Bucket(bAccountTopups).Put(join([]byte(t.Account), u64(n)), []byte(t.TopupID)); err != nil {
		return Result{}, err
	}

	daily := tx.Bucket(bDaily)
	dk := join([]byte(t.Account), []byte(now.Format(time.DateOnly)))
	day := map[string]int64{}
	if _, err := getJSON(daily, dk, &day); err != nil {
		return Result{}, err
	}
	day[t.Currency] += t.AmountMinor // bounded by the balance check above
	if err := putJSON(daily, dk, day); err != nil {
		return Result{}, err
	}

	sb := tx.Bucket(bSuspense)
	for _, u := range t.Uncertain {
		sn, err := sb.NextSequence()
		if err != nil {
			return Result{}, err
		}
		sr := SuspenseRecord{Ref: fmt.Sprintf("SU%012d", sn), TopupID: t.TopupID, KioskID: t.KioskID, Account: t.Account,
			Currency: t.Currency, ValueMinor: u.ValueMinor, Reason: u.Reason, At: now}
		if err := putJSON(sb, u64(sn), sr); err != nil {
			return Result{}, err
		}
	}
	if t.FollowsTopupID != "" {
		if err := resolveSuspense(sb, t, now); err != nil {
			return Result{}, err
		}
	}

	kiosks := tx.Bucket(bKiosks)
	kk := join([]byte(t.KioskID), u64(epoch))
	var ep epochRec
	if _, err := getJSON(kiosks, kk, &ep); err != nil {
		return Result{}, err
	}
	ep.advance(t.Seq)
	ep.Topups++
	ep.LastCreditAt = now
	if err := putJSON(kiosks, kk, ep); err != nil {
		return Result{}, err
	}

	return Result{Status: wire.AckCredited, TopupID: rec.TopupID, LedgerRef: rec.LedgerRef, Account: rec.Account,
		Currency: rec.Currency, AmountMinor: rec.AmountMinor, Balance: acct.Balances[t.Currency],
		Watermark: ep.Watermark, Suspense: len(t.Uncertain)}, nil
}

// advance records seq as held and moves the watermark over every contiguous seq.
func (e *epochRec) advance(seq uint64) {
	if seq <= e.Watermark {
		return // cannot happen for a new topup_id; harmless if it does
	}
	i, found := slices.BinarySearch(e.Above, seq)
	if !found {
		e.Above = slices.Insert(e.Above, i, seq)
	}
	for len(e.Above) > 0 && e.Above[0] == e.Watermark+1 {
		e.Watermark++
		e.Above = e.Above[1:]
	}
	if len(e.Above) == 0 {
		e.Above = nil
	}
}

// resultFor answers a duplicate or a conflict with the original's data.
func resultFor(tx *bolt.Tx, rec TopupRecord, status string) (Result, error) {
	var acct accountRec
	if _, err := getJSON(tx.Bucket(bAccounts), []byte(rec.Account), &acct); err != nil {
		return Result{}, err
	}
	var ep epochRec
	if _, err := getJSON(tx.Bucket(bKiosks), join([]byte(rec.KioskID), u64(uint64(rec.Epoch))), &ep); err != nil {
		return Result{}, err
	}
	return Result{Status: status, TopupID: rec.TopupID, LedgerRef: rec.LedgerRef, Account: rec.Account,
		Currency: rec.Currency, AmountMinor: rec.AmountMinor, Balance: acct.Balances[rec.Currency],
		Watermark: ep.Watermark}, nil
}

func getTopup(tx *bolt.Tx, id string) (TopupRecord, bool, error) {
	var rec TopupRecord
	ok, err := getJSON(tx.Bucket(bTopups), []byte(id), &rec)
	return rec, ok, err
}

// Topup implements Store.
func (s *BoltStore) Topup(id string) (TopupRecord, error) {
	var rec TopupRecord
	var ok bool
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		rec, ok, err = getTopup(tx, id)
		return err
	})
	if err != nil {
		return TopupRecord{}, fmt.Errorf("ledger: topup %s: %w", id, err)
	}
	if !ok {
		return TopupRecord{}, fmt.Errorf("ledger: topup %s: %w", id, ErrNotFound)
	}
	return rec, nil
}

// Account implements Store.
func (s *BoltStore) Account(account string) (AccountInfo, error) {
	var info AccountInfo
	var ok bool
	err := s.db.View(func(tx *bolt.Tx) error {
		var acct accountRec
		var err error
		if ok, err = getJSON(tx.Bucket(bAccounts), []byte(account), &acct); err != nil || !ok {
			return err
		}
		info = AccountInfo{Account: account, OpenedAt: acct.OpenedAt, Balances: acct.Balances, TopupCount: acct.Count}
		prefix := join([]byte(account), nil)
		c := tx.Bucket(bAccountTopups).Cursor()
		// Newest first: seek past the account's last key, then walk back.
		k, v := c.Seek(join([]byte(account), []byte{0xff}))
		if k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
		for ; k != nil && bytes.HasPrefix(k, prefix) && len(info.Topups) < MaxAccountTopups; k, v = c.Prev() {
			rec, found, err := getTopup(tx, string(v))
			if err != nil {
				return err
			}
			if !found {
				return fmt.Errorf("index names missing top-up %s", v)
			}
			info.Topups = append(info.Topups, rec)
		}
		return nil
	})
	if err != nil {
		return AccountInfo{}, fmt.Errorf("ledger: account %s: %w", account, err)
	}
	if !ok {
		return AccountInfo{}, fmt.Errorf("ledger: account %s: %w", account, ErrNotFound)
	}
	return info, nil
}

// DailyCredited implements Store.
func (s *BoltStore) DailyCredited(account, day string) (map[string]int64, error) {
	m := map[string]int64{}
	err := s.db.View(func(tx *bolt.Tx) error {
		_, err := getJSON(tx.Bucket(bDaily), join([]byte(account), []byte(day)), &m)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ledger: daily %s: %w", account, err)
	}
	return m, nil
}

// Watermark implements Store.
func (s *BoltStore) Watermark(kioskID string, epoch uint64) (uint64, error) {
	var ep epochRec
	err := s.db.View(func(tx *bolt.Tx) error {
		_, err := getJSON(tx.Bucket(bKiosks), join([]byte(kioskID), u64(epoch)), &ep)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("ledger: watermark %s: %w", kioskID, err)
	}
	return ep.Watermark, nil
}

// Kiosks implements Store.
func (s *BoltStore) Kiosks() ([]KioskInfo, error) {
	var out []KioskInfo
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bKiosks).ForEach(func(k, v []byte) error {
			i := bytes.IndexByte(k, 0)
			if i < 0 || len(k)-i-1 != 8 {
				return fmt.Errorf("bad kiosk key %q", k)
			}
			var ep epochRec
			if err := json.Unmarshal(v, &ep); err != nil {
				return fmt.Errorf("kiosk %q: %w", k[:i], err)
			}
			id := string(k[:i])
			if len(out) == 0 || out[len(out)-1].KioskID != id {
				out = append(out, KioskInfo{KioskID: id})
			}
			last := &out[len(out)-1]
			last.Epochs = append(last.Epochs, EpochInfo{Epoch: Epoch(binary.BigEndian.Uint64(k[i+1:])),
				Watermark: ep.Watermark, Above: ep.Above, Topups: ep.Topups, LastCreditAt: ep.LastCreditAt})
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("ledger: kiosks: %w", err)
	}
	return out, nil
}

// resolveSuspense closes, for each note of follow-up t, one open suspense record of the
// top-up it follows with that value (or of unknown value): the note was credited by t. A
// note with no record left to close is still credited (the kiosk journaled its credit); the
// records are then settled at cash collection as before.
func resolveSuspense(sb *bolt.Bucket, t wire.Topup, now time.Time) error {
	type open struct {
		key []byte
		rec SuspenseRecord
	}
	var recs []open
	if err := sb.ForEach(func(k, v []byte) error {
		var r SuspenseRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return err
		}
		if r.TopupID == t.FollowsTopupID && r.ResolvedBy == "" {
			recs = append(recs, open{key: bytes.Clone(k), rec: r})
		}
		return nil
	}); err != nil {
		return err
	}
	for _, n := range t.Notes {
		for range n.Count {
			// A record naming the value first, then one of unknown value.
			i := slices.IndexFunc(recs, func(o open) bool { return o.rec.ResolvedBy == "" && o.rec.ValueMinor == n.ValueMinor })
			if i < 0 {
				i = slices.IndexFunc(recs, func(o open) bool { return o.rec.ResolvedBy == "" && o.rec.ValueMinor == 0 })
			}
			if i < 0 {
				continue
			}
			recs[i].rec.ResolvedBy, recs[i].rec.ResolvedAt = t.TopupID, now
			if err := putJSON(sb, recs[i].key, recs[i].rec); err != nil {
				return err
			}
		}
	}
	return nil
}

// Suspense implements Store: the records still waiting to be settled.
func (s *BoltStore) Suspense() ([]SuspenseRecord, error) {
	var out []SuspenseRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bSuspense).ForEach(func(_, v []byte) error {
			var r SuspenseRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			if r.ResolvedBy == "" {
				out = append(out, r)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("ledger: suspense: %w", err)
	}
	return out, nil
}

func u64(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

func join(a, b []byte) []byte {
	k := make([]byte, 0, len(a)+1+len(b))
	return append(append(append(k, a...), 0), b...)
}

func getJSON(b *bolt.Bucket, k []byte, v any) (bool, error) {
	raw := b.Get(k)
	if raw == nil {
		return false, nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return true, fmt.Errorf("decode %q: %w", k, err)
	}
	return true, nil
}

func putJSON(b *bolt.Bucket, k []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(k, raw)
}

var _ Store = (*BoltStore)(nil)
