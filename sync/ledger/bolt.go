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
//	held:           topup_id → HeldRecord (stored, not credited: DESIGN.md §11)
//	qr_nonces:      kid.nonce → topup_id that used the wallet code
//	kiosk_daily:    kiosk_id \x00 YYYY-MM-DD → {notes, amounts per currency} credited
//	ops_alarms:     uint64be(seq) → OpsAlarm
//	collections:    collection_id → CollectionRecord (bucket sequence numbers the CO refs)
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
	bHeld          = []byte("held")
	bNonces        = []byte("qr_nonces")
	bKioskDaily    = []byte("kiosk_daily")
	bOpsAlarms     = []byte("ops_alarms")
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
		for _, b := range [][]byte{bMeta, bTopups, bAccounts, bAccountTopups, bKiosks, bDaily, bSuspense, bConflicts, bHeld, bNonces, bKioskDaily, bOpsAlarms, bCollections} {
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
		_ = db.Close() // the init error is the one to report
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
	// Unapproved: the epoch was first seen in strict mode and no top-up of it was credited
	// yet (zero for every epoch recorded before strict mode existed: they are known).
	Unapproved   bool      `json:"unapproved,omitempty"`
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

// ApplyTopup implements Store: Apply without policy checks (tests, tools, and a store used
// without a Ledger). The Ledger always calls Apply.
func (s *BoltStore) ApplyTopup(t wire.Topup) (Result, error) { return s.Apply(t, Checks{}) }

// Apply implements Store. A duplicate is answered from a read-only transaction, so a kiosk
// re-sending costs no write; anything else runs in one read-write transaction that checks
// again, since another writer may have credited the id in between.
func (s *BoltStore) Apply(t wire.Topup, c Checks) (Result, error) {
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
		var err error
		res, done, err = seen(tx, t.TopupID, hash)
		if done && res.Status == wire.AckConflict {
			done = false // the conflict is recorded in a write transaction
		}
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
		res, err = s.apply(tx, t, c, epoch, hash)
		return err
	})
	if err != nil {
		return Result{}, fmt.Errorf("ledger: apply %s: %w", t.TopupID, err)
	}
	return res, nil
}

// seen answers a topup_id the store already has, credited or held: duplicate (or held
// again) for the same content, conflict for other content.
func seen(tx *bolt.Tx, id, hash string) (Result, bool, error) {
	rec, ok, err := getTopup(tx, id)
	if err != nil {
		return Result{}, false, err
	}
	if ok {
		st := wire.AckDuplicate
		if rec.ContentHash != hash {
			st = wire.AckConflict
		}
		res, err := resultFor(tx, rec, st)
		return res, err == nil, err
	}
	var h HeldRecord
	if ok, err := getJSON(tx.Bucket(bHeld), []byte(id), &h); err != nil || !ok {
		return Result{}, false, err
	}
	var ep epochRec
	if _, err := getJSON(tx.Bucket(bKiosks), join([]byte(h.KioskID), u64(uint64(h.Epoch))), &ep); err != nil {
		return Result{}, false, err
	}
	res := Result{Status: wire.AckHeld, TopupID: id, Account: h.Account, Currency: h.Currency, AmountMinor: h.AmountMinor,
		Reason: h.Reason, Watermark: ep.Watermark}
	if h.ContentHash != hash {
		res.Status, res.Reason = wire.AckConflict, ""
	}
	return res, true, nil
}

func (s *BoltStore) apply(tx *bolt.Tx, t wire.Topup, c Checks, epoch uint64, hash string) (Result, error) {
	now := s.now().UTC()
	if res, ok, err := seen(tx, t.TopupID, hash); err != nil {
		return Result{}, err
	} else if ok {
		if res.Status == wire.AckConflict {
			if err := s.recordConflict(tx, t, hash, now); err != nil {
				return Result{}, err
			}
		}
		return res, nil
	}

	// The checks that need stored state, in the order an operator would want to read them.
	kiosks := tx.Bucket(bKiosks)
	kk := join([]byte(t.KioskID), u64(epoch))
	var ep epochRec
	known, err := getJSON(kiosks, kk, &ep)
	if err != nil {
		return Result{}, err
	}
	hold := c.Hold
	var owner []byte
	if c.QRNonce != "" {
		owner = tx.Bucket(bNonces).Get([]byte(c.QRNonce))
		if hold == "" && owner != nil && string(owner) != t.TopupID && string(owner) != c.QRSharedWith {
			hold = HoldQRReused
		}
	}
	if hold == "" && t.FollowsTopupID != "" {
		// A follow-up credits notes of uncertain items the ledger holds as suspense for the
		// earlier top-up: only as many as are still open, of those values, for the same
		// account. Anything else would let a kiosk key credit what no suspense record backs.
		ok, err := followUpMatches(tx, t)
		if err != nil {
			return Result{}, err
		}
		if !ok {
			hold = HoldFollowUpUnmatched
		}
	}
	if hold == "" && c.StrictEpochs && (!known || ep.Unapproved) {
		hold = HoldUnknownEpoch
	}
	kd := kioskDay{Amounts: map[string]int64{}}
	kdk := join([]byte(t.KioskID), []byte(c.Day))
	if c.Day != "" {
		if _, err := getJSON(tx.Bucket(bKioskDaily), kdk, &kd); err != nil {
			return Result{}, err
		}
	}
	var notes int64
	for _, n := range t.Notes {
		notes += n.Count
	}
	if hold == "" && c.KioskDailyNotes > 0 && kd.Notes+notes > c.KioskDailyNotes {
		hold = HoldKioskDailyNotes
	}
	if hold == "" && c.KioskDailyMinor > 0 && kd.Amounts[t.Currency]+t.AmountMinor > c.KioskDailyMinor {
		hold = HoldKioskDailyAmount
	}

	var res Result
	if !known {
		res.NewEpoch = true
		if err := addAlarm(tx, OpsAlarm{Kind: AlarmNewEpoch, KioskID: t.KioskID, TopupID: t.TopupID, At: now,
			Details: fmt.Sprintf("journal epoch %s first seen (strict: %v)", Epoch(epoch), c.StrictEpochs)}); err != nil {
			return Result{}, err
		}
		ep.Unapproved = c.StrictEpochs
	}
	// A code is used once, whatever becomes of the top-up it opened.
	if c.QRNonce != "" && owner == nil {
		if err := tx.Bucket(bNonces).Put([]byte(c.QRNonce), []byte(t.TopupID)); err != nil {
			return Result{}, err
		}
	}
	// A held top-up is held durably: the kiosk may forget it, so it counts for the
	// watermark like a credited one.
	ep.advance(t.Seq)
	ep.Topups++

	if hold != "" {
		h := HeldRecord{TopupID: t.TopupID, KioskID: t.KioskID, Epoch: Epoch(epoch), Seq: t.Seq, Account: t.Account,
			Currency: t.Currency, AmountMinor: t.AmountMinor, Reason: hold, Status: HeldOpen, ContentHash: hash,
			QRNonce: c.QRNonce, HeldAt: now, Topup: t}
		if err := putJSON(tx.Bucket(bHeld), []byte(t.TopupID), h); err != nil {
			return Result{}, err
		}
		if err := putJSON(kiosks, kk, ep); err != nil {
			return Result{}, err
		}
		res.Status, res.TopupID, res.Account, res.Currency, res.AmountMinor = wire.AckHeld, t.TopupID, t.Account, t.Currency, t.AmountMinor
		res.Reason, res.Watermark = hold, ep.Watermark
		return res, nil
	}

	ep.Unapproved = false
	ep.LastCreditAt = now
	if err := putJSON(kiosks, kk, ep); err != nil {
		return Result{}, err
	}
	cr, err := credit(tx, t, epoch, hash, now)
	if err != nil {
		return Result{}, err
	}
	if c.Day != "" {
		kd.Notes += notes
		kd.Amounts[t.Currency] += t.AmountMinor
		if err := putJSON(tx.Bucket(bKioskDaily), kdk, kd); err != nil {
			return Result{}, err
		}
	}
	cr.NewEpoch, cr.Watermark = res.NewEpoch, ep.Watermark
	return cr, nil
}

// kioskDay is what one kiosk took in on one day.
type kioskDay struct {
	Notes   int64            `json:"notes"`
	Amounts map[string]int64 `json:"amounts"`
}

func (s *BoltStore) recordConflict(tx *bolt.Tx, t wire.Topup, hash string, now time.Time) error {
	var stored string
	if rec, ok, err := getTopup(tx, t.TopupID); err != nil {
		return err
	} else if ok {
		stored = rec.ContentHash
		rec.Conflicts++
		if err := putJSON(tx.Bucket(bTopups), []byte(rec.TopupID), rec); err != nil {
			return err
		}
	} else {
		var h HeldRecord
		if _, err := getJSON(tx.Bucket(bHeld), []byte(t.TopupID), &h); err != nil {
			return err
		}
		stored = h.ContentHash
	}
	cb := tx.Bucket(bConflicts)
	n, err := cb.NextSequence()
	if err != nil {
		return err
	}
	return putJSON(cb, u64(n), conflictRec{TopupID: t.TopupID, StoredHash: stored, ReceivedHash: hash, Received: t, At: now})
}

func addAlarm(tx *bolt.Tx, a OpsAlarm) error {
	b := tx.Bucket(bOpsAlarms)
	n, err := b.NextSequence()
	if err != nil {
		return err
	}
	a.Ref = fmt.Sprintf("OA%012d", n)
	return putJSON(b, u64(n), a)
}

// credit moves the money of a top-up that passed (or was released): the top-up record,
// balance, account index, day total and suspense records. The caller updates the kiosk's
// epoch record.
func credit(tx *bolt.Tx, t wire.Topup, epoch uint64, hash string, now time.Time) (Result, error) {
	topups := tx.Bucket(bTopups)
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
	bal, err := addBalance(tx, t.Account, t.Currency, t.AmountMinor, now, true)
	if err != nil {
		return Result{}, err
	}
	if err := tx.Bucket(bAccountTopups).Put(join([]byte(t.Account), u64(n)), []byte(t.TopupID)); err != nil {
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
	return Result{Status: wire.AckCredited, TopupID: rec.TopupID, LedgerRef: rec.LedgerRef, Account: rec.Account,
		Currency: rec.Currency, AmountMinor: rec.AmountMinor, Balance: bal, Suspense: len(t.Uncertain)}, nil
}

// addBalance adds amount to the account's balance and day total, refusing an overflow;
// topup counts it as one more top-up of the account.
func addBalance(tx *bolt.Tx, account, currency string, amount int64, now time.Time, topup bool) (int64, error) {
	accounts := tx.Bucket(bAccounts)
	var acct accountRec
	if ok, err := getJSON(accounts, []byte(account), &acct); err != nil {
		return 0, err
	} else if !ok {
		acct = accountRec{OpenedAt: now} // reference ledger: accounts open on first credit
	}
	if acct.Balances == nil {
		acct.Balances = map[string]int64{}
	}
	bal := acct.Balances[currency]
	if bal > math.MaxInt64-amount {
		return 0, fmt.Errorf("%w: %s %s", ErrOverflow, account, currency)
	}
	acct.Balances[currency] = bal + amount
	if topup {
		acct.Count++
	}
	if err := putJSON(accounts, []byte(account), acct); err != nil {
		return 0, err
	}
	daily := tx.Bucket(bDaily)
	dk := join([]byte(account), []byte(now.Format(time.DateOnly)))
	day := map[string]int64{}
	if _, err := getJSON(daily, dk, &day); err != nil {
		return 0, err
	}
	day[currency] += amount // bounded by the balance check above
	if err := putJSON(daily, dk, day); err != nil {
		return 0, err
	}
	return acct.Balances[currency], nil
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
		k, _ := c.Seek(join([]byte(account), []byte{0xff}))
		var v []byte
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
// note with no record left to close is still credited (an operator released the follow-up
// from held); the records are then settled at cash collection as before.
func resolveSuspense(sb *bolt.Bucket, t wire.Topup, now time.Time) error {
	keys, recs, err := openSuspenseOf(sb, t.FollowsTopupID)
	if err != nil {
		return err
	}
	values := make([]int64, len(recs))
	for i, r := range recs {
		values[i] = r.ValueMinor
	}
	picked, _ := matchFollowUp(values, t)
	for _, i := range picked {
		recs[i].ResolvedBy, recs[i].ResolvedAt = t.TopupID, now
		if err := putJSON(sb, keys[i], recs[i]); err != nil {
			return err
		}
	}
	return nil
}

// openSuspenseOf returns the open suspense records of a top-up, in record order, with their keys.
func openSuspenseOf(sb *bolt.Bucket, topupID string) (keys [][]byte, recs []SuspenseRecord, err error) {
	err = sb.ForEach(func(k, v []byte) error {
		var r SuspenseRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return err
		}
		if r.TopupID == topupID && suspenseOpen(r) {
			keys, recs = append(keys, bytes.Clone(k)), append(recs, r)
		}
		return nil
	})
	return keys, recs, err
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

// Held implements Store.
func (s *BoltStore) Held(status string) ([]HeldRecord, error) {
	out := []HeldRecord{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bHeld).ForEach(func(_, v []byte) error {
			var h HeldRecord
			if err := json.Unmarshal(v, &h); err != nil {
				return err
			}
			if status == "" || h.Status == status {
				out = append(out, h)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("ledger: held: %w", err)
	}
	return out, nil
}

// HeldTopup implements Store.
func (s *BoltStore) HeldTopup(id string) (HeldRecord, error) {
	var h HeldRecord
	var ok bool
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		ok, err = getJSON(tx.Bucket(bHeld), []byte(id), &h)
		return err
	})
	if err != nil {
		return HeldRecord{}, fmt.Errorf("ledger: held %s: %w", id, err)
	}
	if !ok {
		return HeldRecord{}, fmt.Errorf("ledger: held %s: %w", id, ErrNotFound)
	}
	return h, nil
}

// DecideHeld implements Store. A release credits the top-up as it was received, makes its
// journal epoch known, and counts it in the kiosk's day; the checks that held it are
// overridden by the operator's decision, which is recorded with the record.
func (s *BoltStore) DecideHeld(id string, d Decision) (HeldRecord, error) {
	if err := d.check(); err != nil {
		return HeldRecord{}, err
	}
	var h HeldRecord
	err := s.db.Update(func(tx *bolt.Tx) error {
		ok, err := getJSON(tx.Bucket(bHeld), []byte(id), &h)
		if err != nil {
			return err
		}
		if !ok {
			return ErrNotFound
		}
		if h.Status != HeldOpen {
			return fmt.Errorf("%w: %s by %s", ErrDecided, h.Status, h.Decision.Operator)
		}
		now := s.now().UTC()
		if d.At.IsZero() {
			d.At = now
		}
		h.Decision = &d
		h.Status = HeldRejected
		if d.Action == ActionRelease {
			if _, ok, err := getTopup(tx, id); err != nil {
				return err
			} else if ok {
				return fmt.Errorf("%w: %s is credited already", ErrDecided, id)
			}
			if h.Topup.FollowsTopupID != "" {
				ok, err := followUpMatches(tx, h.Topup)
				if err != nil {
					return err
				}
				if !ok {
					return followUpSettled(h.Topup)
				}
			}
			cr, err := credit(tx, h.Topup, uint64(h.Epoch), h.ContentHash, now)
			if err != nil {
				return err
			}
			kk := join([]byte(h.KioskID), u64(uint64(h.Epoch)))
			var ep epochRec
			if _, err := getJSON(tx.Bucket(bKiosks), kk, &ep); err != nil {
				return err
			}
			ep.Unapproved = false
			ep.advance(h.Seq) // already held; harmless, and right for a record from before holds advanced it
			ep.LastCreditAt = now
			if err := putJSON(tx.Bucket(bKiosks), kk, ep); err != nil {
				return err
			}
			h.Status, h.LedgerRef = HeldReleased, cr.LedgerRef
		}
		return putJSON(tx.Bucket(bHeld), []byte(id), h)
	})
	if err != nil {
		return HeldRecord{}, fmt.Errorf("ledger: decide held %s: %w", id, err)
	}
	return h, nil
}

// DecideSuspense implements Store. A release credits the item's value to the account of the
// top-up it belongs to, as its own credit (CreditRef "SC" + the suspense number).
func (s *BoltStore) DecideSuspense(ref string, d Decision) (SuspenseRecord, error) {
	if err := d.check(); err != nil {
		return SuspenseRecord{}, err
	}
	var n uint64
	if _, err := fmt.Sscanf(ref, "SU%d", &n); err != nil || fmt.Sprintf("SU%012d", n) != ref {
		return SuspenseRecord{}, fmt.Errorf("ledger: suspense %q: %w", ref, ErrNotFound)
	}
	var r SuspenseRecord
	err := s.db.Update(func(tx *bolt.Tx) error {
		ok, err := getJSON(tx.Bucket(bSuspense), u64(n), &r)
		if err != nil {
			return err
		}
		if !ok {
			return ErrNotFound
		}
		if r.Status != "" {
			return fmt.Errorf("%w: %s", ErrDecided, r.Status)
		}
		if r.ResolvedBy != "" {
			// The kiosk's follow-up top-up already credited this note.
			return fmt.Errorf("%w: resolved by follow-up %s", ErrDecided, r.ResolvedBy)
		}
		now := s.now().UTC()
		if d.At.IsZero() {
			d.At = now
		}
		acct, value, err := checkSuspenseDecision(r, d)
		if err != nil {
			return err
		}
		r.Decision = &d
		r.Status = HeldRejected
		if d.Action == ActionRelease {
			if _, err := addBalance(tx, acct, r.Currency, value, now, false); err != nil {
				return err
			}
			r.Account, r.ValueMinor = acct, value
			r.Status, r.CreditRef = HeldReleased, fmt.Sprintf("SC%012d", n)
		}
		return putJSON(tx.Bucket(bSuspense), u64(n), r)
	})
	if err != nil {
		return SuspenseRecord{}, fmt.Errorf("ledger: decide suspense %s: %w", ref, err)
	}
	return r, nil
}

// QRNonceOwner implements Store.
func (s *BoltStore) QRNonceOwner(nonce string) (string, error) {
	var owner string
	err := s.db.View(func(tx *bolt.Tx) error {
		owner = string(tx.Bucket(bNonces).Get([]byte(nonce)))
		return nil
	})
	return owner, err
}

// Alarms implements Store.
func (s *BoltStore) Alarms() ([]OpsAlarm, error) {
	out := []OpsAlarm{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bOpsAlarms).ForEach(func(_, v []byte) error {
			var a OpsAlarm
			if err := json.Unmarshal(v, &a); err != nil {
				return err
			}
			out = append(out, a)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("ledger: alarms: %w", err)
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

// followUpMatches reports whether every note of follow-up t settles an open suspense record
// (not resolved, not decided by an operator) of the top-up it follows, by value or one of
// unknown value, and whether that top-up is the same account's.
func followUpMatches(tx *bolt.Tx, t wire.Topup) (bool, error) {
	orig, ok, err := getTopup(tx, t.FollowsTopupID)
	if err != nil || !ok {
		return false, err
	}
	if orig.Account != t.Account || orig.Currency != t.Currency {
		return false, nil
	}
	_, recs, err := openSuspenseOf(tx.Bucket(bSuspense), t.FollowsTopupID)
	if err != nil {
		return false, err
	}
	values := make([]int64, len(recs))
	for i, r := range recs {
		values[i] = r.ValueMinor
	}
	_, all := matchFollowUp(values, t)
	return all, nil
}
