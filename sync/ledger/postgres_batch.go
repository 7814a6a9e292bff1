package ledger

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kioskd/kioskd/sync/wire"
)

// BatchItem is one top-up handed to ApplyBatch, with the checks the Ledger made.
type BatchItem struct {
	Topup  wire.Topup
	Checks Checks
}

// BatchResult is what ApplyBatch did with one top-up: what Apply would have returned.
type BatchResult struct {
	Result Result
	Err    error
}

// BatchStore is a Store that applies several top-ups in one transaction (group commit). Each
// top-up keeps its own outcome, as if Apply had been called for each in turn: a duplicate, a
// conflict or a held top-up in a batch changes nothing for the others. The results are
// durable when ApplyBatch returns (an ack may go out for each), and an error in a result
// means that top-up was not credited.
type BatchStore interface {
	Store
	ApplyBatch(items []BatchItem) []BatchResult
}

var _ BatchStore = (*PGStore)(nil)

// ApplyBatch implements BatchStore: the top-ups share one READ COMMITTED transaction, so a
// backlog costs one commit (one WAL flush) and two round trips per batch (applyBatch)
// instead of a transaction of some twenty statements, each a round trip, per top-up.
//
// The batch keeps every rule of apply (read it first): the kiosk epochs' rows are locked
// before anything is read, in one order (kiosk id, epoch, byte-wise) that every batch uses,
// so two batches, or a batch and a single apply, wait for each other instead of
// deadlocking; what apply decides from the database (duplicate, held again or conflict, the
// QR nonce's owner, the kiosk's day totals, the watermark) the batch decides from the same
// rows read under those locks, carried forward in memory from one top-up of the batch to the
// next exactly as the next apply would have read them; and the writes go in apply's table
// order, each table's rows in key order.
//
// Not batched, applied one by one after the batch, as if they had arrived after it: a
// follow-up top-up (its suspense records are matched row by row, under their own locks), and
// a second copy of a topup_id already in the batch (a redelivery of the first). When the
// database refuses the batch (a data or constraint error, a race lost more often than the
// retries allow), every top-up of it is applied again on its own, so one top-up the store
// refuses (a balance overflow) costs the others nothing; when the connection or the server
// fails, each gets the error (nothing of the batch committed, or its COMMIT was answered).
func (s *PGStore) ApplyBatch(items []BatchItem) []BatchResult {
	out := make([]BatchResult, len(items))
	var batch []batchEntry
	var single []int
	ids := make(map[string]bool, len(items))
	for i, it := range items {
		t := it.Topup
		if err := t.Validate(); err != nil {
			out[i].Err = fmt.Errorf("ledger: apply %s: %w: %w", t.TopupID, ErrInvalid, err)
			continue
		}
		_, epoch, _, err := wire.ParseTopupID(t.TopupID)
		if err != nil {
			out[i].Err = fmt.Errorf("ledger: apply %s: %w: %w", t.TopupID, ErrInvalid, err)
			continue
		}
		if t.Seq > math.MaxInt64 || t.ReceiptNo > math.MaxInt64 {
			out[i].Err = fmt.Errorf("ledger: apply %s: %w: seq or receipt_no beyond 2^63-1", t.TopupID, ErrInvalid)
			continue
		}
		if t.FollowsTopupID != "" || ids[t.TopupID] {
			single = append(single, i)
			continue
		}
		ids[t.TopupID] = true
		batch = append(batch, batchEntry{idx: i, t: t, c: it.Checks, epoch: Epoch(epoch), hash: t.ContentHash()})
	}
	if len(batch) > 0 {
		// The first rounds skip the top-ups whose kiosk epoch another transaction has
		// locked (another batch, of this ledger or another, holds a top-up of the same
		// kiosk) and apply them in a later round, instead of waiting for that transaction
		// while holding the locks of the rest: batches that wait for each other in a chain
		// would commit one at a time. The last round waits, so every top-up is applied.
		// A batch of one takes this path too: two round trips instead of apply's twenty.
		for round := 0; len(batch) > 0; round++ {
			var res []Result
			var deferred []bool
			skip := round < batchSkipRounds
			err := s.runPipelined(func(ctx context.Context, c *pgxpool.Conn) error {
				var err error
				res, deferred, err = s.applyBatch(ctx, c, batch, skip)
				return err
			})
			if err != nil && !batchFallback(err) {
				for _, e := range batch {
					out[e.idx].Err = fmt.Errorf("ledger: apply %s (in a batch of %d): %w", e.t.TopupID, len(batch), err)
				}
				break
			}
			if err != nil {
				s.log.Warn("ledger: batch failed; applying its top-ups one by one", "topups", len(batch), "err", err)
				fallback := make([]int, 0, len(batch)+len(single))
				for _, e := range batch {
					fallback = append(fallback, e.idx)
				}
				single = append(fallback, single...)
				break
			}
			var later []batchEntry
			for k, e := range batch {
				if deferred[k] {
					later = append(later, e)
				} else {
					out[e.idx].Result = res[k]
				}
			}
			batch = later
		}
	}
	for _, i := range single {
		out[i].Result, out[i].Err = s.Apply(items[i].Topup, items[i].Checks)
	}
	return out
}

// batchSkipRounds is how many rounds of a batch skip the kiosk epochs locked elsewhere.
const batchSkipRounds = 2

type batchEntry struct {
	idx   int
	t     wire.Topup
	c     Checks
	epoch Epoch
	hash  string
}

type epochKey struct{ kiosk, epoch string }

// batchEpoch is a locked kiosk_epochs row as the batch carries it forward.
type batchEpoch struct {
	pgEpoch
	created bool // this transaction inserted the row: the epoch is new
	alarmed bool // the new-epoch alarm is raised (by the epoch's first top-up stored)
	dirty   bool
}

// stored is a topup_id the database already holds (credited or held).
type stored struct {
	held                      bool
	ledgerRef, hash           string
	account, currency, reason string
	amount, balance           int64
}

type balanceKey struct{ account, currency string }

// applyBatch is apply for several top-ups in one transaction; see ApplyBatch. It returns
// one Result per entry, in order.
//
// With skipLocked, the kiosk epochs another transaction has locked are skipped (FOR UPDATE
// SKIP LOCKED): their top-ups are left out, marked in deferred, and nothing is read or
// written for them.
//
// The transaction is two round trips on one connection, each a pipeline: BEGIN, the locks,
// the reads and the sequence values; then the writes and COMMIT. The locks are held from the
// first reply to the COMMIT, across one pass of this code and one round trip: a batch that
// waits for another waits that long, not for a chain of statements.
func (s *PGStore) applyBatch(ctx context.Context, tx *pgxpool.Conn, entries []batchEntry, skipLocked bool) (results []Result, deferred []bool, err error) {
	now := s.now().UTC().Truncate(time.Microsecond)
	n := len(entries)

	// Round trip 1: lock the epochs, then read what the decisions need.
	var eks []epochKey
	strictOf := map[epochKey]bool{}
	for _, e := range entries {
		k := epochKey{e.t.KioskID, e.epoch.String()}
		if _, ok := strictOf[k]; !ok {
			eks = append(eks, k)
			strictOf[k] = e.c.StrictEpochs
		}
	}
	slices.SortFunc(eks, func(a, b epochKey) int {
		return cmp.Or(strings.Compare(a.kiosk, b.kiosk), strings.Compare(a.epoch, b.epoch))
	})
	ekK, ekE, ekS := make([]string, len(eks)), make([]string, len(eks)), make([]bool, len(eks))
	for i, k := range eks {
		ekK[i], ekE[i], ekS[i] = k.kiosk, k.epoch, strictOf[k]
	}
	idList := make([]string, n)
	var nonces []string
	var dayK, dayD, dayC []string
	for i, e := range entries {
		idList[i] = e.t.TopupID
		if e.c.QRNonce != "" {
			nonces = append(nonces, e.c.QRNonce)
		}
		if e.c.Day != "" {
			dayK, dayD, dayC = append(dayK, e.t.KioskID), append(dayD, e.c.Day), append(dayC, e.t.Currency)
		}
	}
	uncertain := 0
	for _, e := range entries {
		uncertain += len(e.t.Uncertain)
	}
	b := &pgx.Batch{}
	b.Queue(`BEGIN ISOLATION LEVEL READ COMMITTED`)
	// The same lock order as every other batch ("C": byte-wise, as the Go sort above).
	b.Queue(`INSERT INTO kiosk_epochs (kiosk_id, epoch, unapproved)
		SELECT k, e, u FROM unnest($1::text[], $2::text[], $3::bool[]) AS v(k, e, u) ORDER BY k COLLATE "C", e COLLATE "C"
		ON CONFLICT (kiosk_id, epoch) DO NOTHING RETURNING kiosk_id, epoch`, ekK, ekE, ekS)
	b.Queue(`SELECT kiosk_id, epoch, unapproved, watermark, above, topups, last_credit_at FROM kiosk_epochs
		WHERE (kiosk_id, epoch) IN (SELECT * FROM unnest($1::text[], $2::text[]))
		ORDER BY kiosk_id COLLATE "C", epoch COLLATE "C" FOR UPDATE`+map[bool]string{true: " SKIP LOCKED"}[skipLocked], ekK, ekE)
	b.Queue(`SELECT t.topup_id, t.ledger_ref, t.content_hash, t.account, t.currency, t.amount_minor,
		COALESCE(b.balance_minor, 0) FROM topups t LEFT JOIN balances b ON b.account = t.account AND b.currency = t.currency
		WHERE t.topup_id = ANY($1)`, idList)
	b.Queue(`SELECT topup_id, content_hash, account, currency, amount_minor, reason FROM held WHERE topup_id = ANY($1)`, idList)
	b.Queue(`SELECT nonce, topup_id FROM qr_nonces WHERE nonce = ANY($1)`, nonces)
	b.Queue(`SELECT kiosk_id, day, notes FROM kiosk_daily WHERE (kiosk_id, day) IN (SELECT * FROM unnest($1::text[], $2::text[]))`,
		dayK, dayD)
	b.Queue(`SELECT kiosk_id, day, currency, amount_minor FROM kiosk_daily_amounts
		WHERE (kiosk_id, day, currency) IN (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))`, dayK, dayD, dayC)
	// Sequence values for every top-up that may be credited, every epoch that may be new and
	// every uncertain item: those a duplicate or a held top-up does not use are gaps, as
	// after a rollback (the sequences are unique, not contiguous).
	b.Queue(`SELECT ARRAY(SELECT nextval('ledger_ref_seq') FROM generate_series(1, $1)),
		ARRAY(SELECT nextval('alarm_seq') FROM generate_series(1, $2)),
		ARRAY(SELECT nextval('suspense_seq') FROM generate_series(1, $3))`, n, len(eks), uncertain)
	var refs, alarmNs, suspNs []int64

	created := map[epochKey]bool{}
	epochs := map[epochKey]*batchEpoch{}
	seen := map[string]stored{}
	owners := map[string]string{}
	dayNotes := map[[2]string]int64{}
	dayAmount := map[[3]string]int64{}
	br := tx.SendBatch(ctx, b)
	err = func() error {
		if _, err := br.Exec(); err != nil { // BEGIN
			return err
		}
		var k, e string
		if err := eachRow(br, []any{&k, &e}, func() error {
			created[epochKey{k, e}] = true
			return nil
		}); err != nil {
			return err
		}
		var p pgEpoch
		var above []int64
		var last *time.Time
		if err := eachRow(br, []any{&k, &e, &p.Unapproved, &p.Watermark, &above, &p.Topups, &last}, func() error {
			be := &batchEpoch{pgEpoch: p}
			be.Above = nil
			for _, a := range above {
				be.Above = append(be.Above, uint64(a))
			}
			if last != nil {
				be.LastCreditAt = last.UTC()
			}
			key := epochKey{k, e}
			be.created = created[key]
			be.known = !be.created
			epochs[key] = be
			return nil
		}); err != nil {
			return err
		}
		var st stored
		var id string
		if err := eachRow(br, []any{&id, &st.ledgerRef, &st.hash, &st.account, &st.currency, &st.amount, &st.balance}, func() error {
			seen[id] = st
			return nil
		}); err != nil {
			return err
		}
		st = stored{held: true}
		if err := eachRow(br, []any{&id, &st.hash, &st.account, &st.currency, &st.amount, &st.reason}, func() error {
			if _, ok := seen[id]; !ok { // a released held top-up is in topups too: that row answers
				seen[id] = st
			}
			return nil
		}); err != nil {
			return err
		}
		var nonce string
		if err := eachRow(br, []any{&nonce, &id}, func() error {
			owners[nonce] = id
			return nil
		}); err != nil {
			return err
		}
		var day, cur string
		var v int64
		if err := eachRow(br, []any{&k, &day, &v}, func() error {
			dayNotes[[2]string{k, day}] = v
			return nil
		}); err != nil {
			return err
		}
		if err := eachRow(br, []any{&k, &day, &cur, &v}, func() error {
			dayAmount[[3]string{k, day, cur}] = v
			return nil
		}); err != nil {
			return err
		}
		return br.QueryRow().Scan(&refs, &alarmNs, &suspNs)
	}()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, nil, err
	}
	for _, k := range eks {
		if epochs[k] == nil && !skipLocked {
			return nil, nil, fmt.Errorf("kiosk epoch %s/%s not locked", k.kiosk, k.epoch)
		}
	}
	deferred = make([]bool, n)

	// Decide each top-up in turn, as apply would in a transaction of its own.
	type credit struct {
		k       int
		payload string
	}
	type heldRow struct {
		k       int
		reason  string
		payload string
	}
	type conflictRow struct {
		k       int
		stored  stored
		payload string
	}
	type alarmRow struct{ a OpsAlarm }
	results = make([]Result, n)
	var credits []credit
	var helds []heldRow
	var conflicts []conflictRow
	var alarms []alarmRow
	var newNonces, newNonceIDs []string
	suspenseItems := 0
	credited := map[balanceKey]int64{} // what the batch credited so far, per balance
	for k, e := range entries {
		t, c := e.t, e.c
		ek := epochKey{t.KioskID, e.epoch.String()}
		ep := epochs[ek]
		if ep == nil {
			deferred[k] = true // locked by another transaction: a later round
			continue
		}
		if st, ok := seen[t.TopupID]; ok {
			// The balance and the watermark as the next apply would read them: with what the
			// batch credited before this one.
			r := Result{Status: wire.AckDuplicate, TopupID: t.TopupID, LedgerRef: st.ledgerRef, Account: st.account,
				Currency: st.currency, AmountMinor: st.amount, Watermark: ep.Watermark}
			if !st.held {
				r.Balance = st.balance + credited[balanceKey{st.account, st.currency}]
			}
			if st.held {
				r.Status, r.Reason = wire.AckHeld, st.reason
			}
			if st.hash != e.hash {
				r.Status, r.Reason = wire.AckConflict, ""
				raw, err := json.Marshal(t)
				if err != nil {
					return nil, nil, err
				}
				conflicts = append(conflicts, conflictRow{k: k, stored: st, payload: string(raw)})
			}
			results[k] = r
			continue
		}
		hold := c.Hold
		owner := ""
		if c.QRNonce != "" {
			owner = owners[c.QRNonce]
			if hold == "" && owner != "" && owner != t.TopupID && owner != c.QRSharedWith {
				hold = HoldQRReused
			}
		}
		if hold == "" && c.StrictEpochs && (!ep.known || ep.Unapproved) {
			hold = HoldUnknownEpoch
		}
		var notes int64
		for _, nl := range t.Notes {
			notes += nl.Count
		}
		dk, dak := [2]string{t.KioskID, c.Day}, [3]string{t.KioskID, c.Day, t.Currency}
		if c.Day != "" {
			if hold == "" && c.KioskDailyNotes > 0 && dayNotes[dk]+notes > c.KioskDailyNotes {
				hold = HoldKioskDailyNotes
			}
			if hold == "" && c.KioskDailyMinor > 0 && dayAmount[dak]+t.AmountMinor > c.KioskDailyMinor {
				hold = HoldKioskDailyAmount
			}
		}
		var res Result
		if ep.created && !ep.alarmed {
			ep.alarmed = true
			res.NewEpoch = true
			alarms = append(alarms, alarmRow{OpsAlarm{Kind: AlarmNewEpoch, KioskID: t.KioskID, TopupID: t.TopupID, At: now,
				Details: fmt.Sprintf("journal epoch %s first seen (strict: %v)", e.epoch, c.StrictEpochs)}})
			ep.Unapproved = c.StrictEpochs
		}
		// The next top-up of this epoch in the batch finds it known, as the next apply would.
		ep.known = true
		if c.QRNonce != "" && owner == "" {
			owners[c.QRNonce] = t.TopupID
			newNonces, newNonceIDs = append(newNonces, c.QRNonce), append(newNonceIDs, t.TopupID)
		}
		ep.advance(t.Seq)
		ep.Topups++
		ep.dirty = true
		raw, err := json.Marshal(t)
		if err != nil {
			return nil, nil, err
		}
		if hold != "" {
			helds = append(helds, heldRow{k: k, reason: hold, payload: string(raw)})
			res.Status, res.TopupID, res.Account, res.Currency, res.AmountMinor = wire.AckHeld, t.TopupID, t.Account, t.Currency, t.AmountMinor
			res.Reason, res.Watermark = hold, ep.Watermark
			results[k] = res
			continue
		}
		ep.Unapproved = false
		ep.LastCreditAt = now
		if c.Day != "" {
			dayNotes[dk] += notes
			dayAmount[dak] += t.AmountMinor
		}
		credits = append(credits, credit{k: k, payload: string(raw)})
		credited[balanceKey{t.Account, t.Currency}] += t.AmountMinor
		suspenseItems += len(t.Uncertain)
		results[k] = Result{Status: wire.AckCredited, TopupID: t.TopupID, Account: t.Account, Currency: t.Currency,
			AmountMinor: t.AmountMinor, Suspense: len(t.Uncertain), NewEpoch: res.NewEpoch, Watermark: ep.Watermark}
	}

	if len(refs) < len(credits) || len(alarmNs) < len(alarms) || len(suspNs) < suspenseItems {
		return nil, nil, fmt.Errorf("sequence values: got %d/%d/%d, want %d/%d/%d", len(refs), len(alarmNs), len(suspNs),
			len(credits), len(alarms), suspenseItems)
	}
	slices.Sort(refs)
	slices.Sort(alarmNs)
	slices.Sort(suspNs)

	// Round trip 2: the writes, in apply's table order, each table's rows in key order, and
	// the COMMIT. A statement that fails makes the server skip the rest, COMMIT included.
	b = &pgx.Batch{}
	for _, cf := range conflicts {
		t := entries[cf.k].t
		if !cf.stored.held {
			b.Queue(`UPDATE topups SET conflicts = conflicts + 1 WHERE topup_id = $1`, t.TopupID)
		}
		b.Queue(`INSERT INTO conflicts (topup_id, stored_hash, received_hash, received, at) VALUES ($1, $2, $3, $4, $5)`,
			t.TopupID, cf.stored.hash, entries[cf.k].hash, cf.payload, now)
	}
	for i, a := range alarms {
		a.a.Ref = fmt.Sprintf("OA%012d", alarmNs[i])
		b.Queue(`INSERT INTO ops_alarms (n, ref, kind, kiosk_id, topup_id, details, at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			alarmNs[i], a.a.Ref, a.a.Kind, a.a.KioskID, a.a.TopupID, a.a.Details, a.a.At)
	}
	if len(newNonces) > 0 {
		// A nonce another transaction took meanwhile fails with a unique violation: the batch
		// is retried and then holds the later top-up qr_reused, as apply does.
		b.Queue(`INSERT INTO qr_nonces (nonce, topup_id) SELECT n, id FROM unnest($1::text[], $2::text[]) AS v(n, id)
			ORDER BY n COLLATE "C"`, newNonces, newNonceIDs)
	}
	for _, h := range helds {
		e := entries[h.k]
		t := e.t
		b.Queue(`INSERT INTO held (topup_id, kiosk_id, epoch, seq, account, currency, amount_minor, reason,
			status, content_hash, qr_nonce, held_at, payload) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
			t.TopupID, t.KioskID, e.epoch.String(), int64(t.Seq), t.Account, t.Currency, t.AmountMinor, h.reason,
			HeldOpen, e.hash, e.c.QRNonce, now, h.payload)
	}
	preEpoch := b.Len() // statements before the epochs' update
	var upK, upE, upAbove []string
	var upU []bool
	var upW, upT []int64
	var upL []*time.Time
	for _, k := range eks {
		ep := epochs[k]
		if ep == nil || !ep.dirty {
			continue
		}
		upK, upE, upU = append(upK, k.kiosk), append(upE, k.epoch), append(upU, ep.Unapproved)
		upW, upT = append(upW, int64(ep.Watermark)), append(upT, int64(ep.Topups))
		upAbove = append(upAbove, pgBigintArray(ep.Above))
		var last *time.Time
		if !ep.LastCreditAt.IsZero() {
			l := ep.LastCreditAt
			last = &l
		}
		upL = append(upL, last)
	}
	if len(upK) > 0 {
		b.Queue(`UPDATE kiosk_epochs AS k SET unapproved = v.u, watermark = v.w, above = v.a::bigint[], topups = v.t, last_credit_at = v.l
			FROM unnest($1::text[], $2::text[], $3::bool[], $4::bigint[], $5::text[], $6::bigint[], $7::timestamptz[]) AS v(k, e, u, w, a, t, l)
			WHERE k.kiosk_id = v.k AND k.epoch = v.e`, upK, upE, upU, upW, upAbove, upT, upL)
	}
	if len(credits) > 0 {
		cols := struct {
			id, ref, hash, kiosk, epoch, account, currency, outcome, payload []string
			lseq, seq, amount, receipt                                       []int64
		}{}
		balance := map[balanceKey]int64{}
		count := map[string]int64{}
		daily := map[balanceKey]int64{}
		kdNotes := map[[2]string]int64{}
		kdAmount := map[[3]string]int64{}
		for i, cr := range credits {
			e := entries[cr.k]
			t := e.t
			ref := fmt.Sprintf("LR%012d", refs[i])
			results[cr.k].LedgerRef = ref
			cols.id, cols.ref, cols.hash = append(cols.id, t.TopupID), append(cols.ref, ref), append(cols.hash, e.hash)
			cols.kiosk, cols.epoch, cols.account = append(cols.kiosk, t.KioskID), append(cols.epoch, e.epoch.String()), append(cols.account, t.Account)
			cols.currency, cols.outcome, cols.payload = append(cols.currency, t.Currency), append(cols.outcome, t.Outcome), append(cols.payload, cr.payload)
			cols.lseq, cols.seq = append(cols.lseq, refs[i]), append(cols.seq, int64(t.Seq))
			cols.amount, cols.receipt = append(cols.amount, t.AmountMinor), append(cols.receipt, int64(t.ReceiptNo))
			bk := balanceKey{t.Account, t.Currency}
			sum, ok := addInt64(balance[bk], t.AmountMinor)
			if !ok {
				return nil, nil, fmt.Errorf("%w: %s %s", ErrOverflow, t.Account, t.Currency)
			}
			balance[bk], daily[bk] = sum, sum
			count[t.Account]++
			if e.c.Day != "" {
				var notes int64
				for _, nl := range t.Notes {
					notes += nl.Count
				}
				kdNotes[[2]string{t.KioskID, e.c.Day}] += notes
				kdAmount[[3]string{t.KioskID, e.c.Day, t.Currency}] += t.AmountMinor
			}
		}
		b.Queue(`INSERT INTO topups (topup_id, ledger_seq, ledger_ref, content_hash, kiosk_id, epoch, seq, account,
			currency, amount_minor, outcome, receipt_no, credited_at, payload)
			SELECT id, lseq, ref, h, k, e, s, a, c, m, o, r, $13, p::jsonb
			FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::text[],
				$9::text[], $10::bigint[], $11::text[], $12::bigint[], $14::text[]) AS v(id, lseq, ref, h, k, e, s, a, c, m, o, r, p)
			RETURNING topup_id`,
			cols.id, cols.lseq, cols.ref, cols.hash, cols.kiosk, cols.epoch, cols.seq, cols.account, cols.currency,
			cols.amount, cols.outcome, cols.receipt, now, cols.payload)
		accts := make([]string, 0, len(count))
		for a := range count {
			accts = append(accts, a)
		}
		slices.Sort(accts)
		b.Queue(`INSERT INTO accounts (account, opened_at) SELECT a, $2 FROM unnest($1::text[]) AS v(a) ORDER BY a COLLATE "C"
			ON CONFLICT (account) DO NOTHING`, accts, now)
		bks := make([]balanceKey, 0, len(balance))
		for k := range balance {
			bks = append(bks, k)
		}
		slices.SortFunc(bks, func(a, b balanceKey) int {
			return cmp.Or(strings.Compare(a.account, b.account), strings.Compare(a.currency, b.currency))
		})
		bA, bC, bV := make([]string, len(bks)), make([]string, len(bks)), make([]int64, len(bks))
		for i, k := range bks {
			bA[i], bC[i], bV[i] = k.account, k.currency, balance[k]
		}
		// The increment overflowing a BIGINT is an error of the statement (SQLSTATE 22003):
		// the server skips the rest and the COMMIT, and the batch is applied again one by
		// one, where addBalancePG refuses the top-up that overflows.
		b.Queue(`INSERT INTO balances (account, currency, balance_minor)
			SELECT a, c, v FROM unnest($1::text[], $2::text[], $3::bigint[]) AS x(a, c, v) ORDER BY a COLLATE "C", c COLLATE "C"
			ON CONFLICT (account, currency) DO UPDATE SET balance_minor = balances.balance_minor + EXCLUDED.balance_minor
			RETURNING account, currency, balance_minor`, bA, bC, bV)
		cN := make([]int64, len(accts))
		for i, a := range accts {
			cN[i] = count[a]
		}
		b.Queue(`INSERT INTO accounts (account, opened_at, topup_count)
			SELECT a, $3, n FROM unnest($1::text[], $2::bigint[]) AS v(a, n) ORDER BY a COLLATE "C"
			ON CONFLICT (account) DO UPDATE SET topup_count = accounts.topup_count + EXCLUDED.topup_count`, accts, cN, now)
		dDay := now.Format(time.DateOnly)
		b.Queue(`INSERT INTO daily_credits (account, day, currency, amount_minor)
			SELECT a, $4, c, v FROM unnest($1::text[], $2::text[], $3::bigint[]) AS x(a, c, v) ORDER BY a COLLATE "C", c COLLATE "C"
			ON CONFLICT (account, day, currency) DO UPDATE SET amount_minor = daily_credits.amount_minor + EXCLUDED.amount_minor`,
			bA, bC, bV, dDay)
		sn := 0
		for _, cr := range credits {
			t := entries[cr.k].t
			for _, u := range t.Uncertain {
				b.Queue(`INSERT INTO suspense (n, ref, topup_id, kiosk_id, account, currency, value_minor, reason, at)
					VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
					suspNs[sn], fmt.Sprintf("SU%012d", suspNs[sn]), t.TopupID, t.KioskID, t.Account, t.Currency, u.ValueMinor, u.Reason, now)
				sn++
			}
		}
		if len(kdNotes) > 0 {
			keys := make([][2]string, 0, len(kdNotes))
			for k := range kdNotes {
				keys = append(keys, k)
			}
			slices.SortFunc(keys, func(a, b [2]string) int { return cmp.Or(strings.Compare(a[0], b[0]), strings.Compare(a[1], b[1])) })
			kK, kD, kN := make([]string, len(keys)), make([]string, len(keys)), make([]int64, len(keys))
			for i, k := range keys {
				kK[i], kD[i], kN[i] = k[0], k[1], kdNotes[k]
			}
			b.Queue(`INSERT INTO kiosk_daily (kiosk_id, day, notes)
				SELECT k, d, n FROM unnest($1::text[], $2::text[], $3::bigint[]) AS v(k, d, n) ORDER BY k COLLATE "C", d COLLATE "C"
				ON CONFLICT (kiosk_id, day) DO UPDATE SET notes = kiosk_daily.notes + EXCLUDED.notes`, kK, kD, kN)
			akeys := make([][3]string, 0, len(kdAmount))
			for k := range kdAmount {
				akeys = append(akeys, k)
			}
			slices.SortFunc(akeys, func(a, b [3]string) int {
				return cmp.Or(strings.Compare(a[0], b[0]), strings.Compare(a[1], b[1]), strings.Compare(a[2], b[2]))
			})
			aK, aD, aC, aN := make([]string, len(akeys)), make([]string, len(akeys)), make([]string, len(akeys)), make([]int64, len(akeys))
			for i, k := range akeys {
				aK[i], aD[i], aC[i], aN[i] = k[0], k[1], k[2], kdAmount[k]
			}
			b.Queue(`INSERT INTO kiosk_daily_amounts (kiosk_id, day, currency, amount_minor)
				SELECT k, d, c, n FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) AS v(k, d, c, n)
				ORDER BY k COLLATE "C", d COLLATE "C", c COLLATE "C"
				ON CONFLICT (kiosk_id, day, currency) DO UPDATE SET amount_minor = kiosk_daily_amounts.amount_minor + EXCLUDED.amount_minor`,
				aK, aD, aC, aN)
		}
		b.Queue(`COMMIT`)
		br := tx.SendBatch(ctx, b)
		final := map[balanceKey]int64{}
		err := func() error {
			for range preEpoch {
				if _, err := br.Exec(); err != nil {
					return err
				}
			}
			// Nothing read from here on can undo the transaction: its COMMIT is in the
			// pipeline. What must abort it is an error of a statement on the server: a
			// topup_id another writer credited first is a unique violation (23505: the
			// epoch lock makes it impossible, but the UNIQUE key is what decides; the retry
			// reads it), an overflowing balance 22003.
			if len(upK) > 0 {
				if _, err := br.Exec(); err != nil {
					return err
				}
			}
			var id string
			if err := eachRow(br, []any{&id}, func() error { return nil }); err != nil {
				return err
			}
			if _, err := br.Exec(); err != nil {
				return err
			}
			var a, c string
			var v int64
			if err := eachRow(br, []any{&a, &c, &v}, func() error {
				final[balanceKey{a, c}] = v
				return nil
			}); err != nil {
				return err
			}
			for range 2 + suspenseItems {
				if _, err := br.Exec(); err != nil {
					return err
				}
			}
			if len(kdNotes) > 0 {
				for range 2 {
					if _, err := br.Exec(); err != nil {
						return err
					}
				}
			}
			return commitResult(br.Exec())
		}()
		err = s.closeAfterCommit(br, err)
		if err != nil {
			return nil, nil, err
		}
		// Each credit's balance is the balance after it: the final one less what later
		// credits of the batch added.
		for i := len(credits) - 1; i >= 0; i-- {
			k := credits[i].k
			bk := balanceKey{entries[k].t.Account, entries[k].t.Currency}
			results[k].Balance = final[bk]
			final[bk] -= entries[k].t.AmountMinor
		}
		return results, deferred, nil
	}
	// No credit: conflicts, alarms, nonces, held records and epochs only (or nothing: a
	// batch of redeliveries), and the COMMIT that releases the locks.
	b.Queue(`COMMIT`)
	br = tx.SendBatch(ctx, b)
	err = func() error {
		for range b.Len() - 1 {
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		return commitResult(br.Exec())
	}()
	err = s.closeAfterCommit(br, err)
	if err != nil {
		return nil, nil, err
	}
	return results, deferred, nil
}

// commitResult checks the answer to a COMMIT: the server answers ROLLBACK, without an
// error, to the COMMIT of a transaction that failed.
func commitResult(tag pgconn.CommandTag, err error) error {
	if err != nil {
		return err
	}
	if tag.String() != "COMMIT" {
		return fmt.Errorf("commit answered %q", tag.String())
	}
	return nil
}

// closeAfterCommit closes the results of the pipeline that ended in COMMIT; err is what
// reading them returned (nil: the COMMIT was answered COMMIT). Once the server answered the
// COMMIT, the transaction is durable whatever comes after it on the connection (a server
// shutting down sends its FATAL right behind the answer): reporting that as a failure would
// answer retry_later for top-ups that are credited.
func (s *PGStore) closeAfterCommit(br pgx.BatchResults, err error) error {
	cerr := br.Close()
	if err != nil {
		return err
	}
	if cerr != nil {
		s.log.Warn("ledger: connection failed after a batch committed", "err", cerr)
	}
	return nil
}

// runPipelined runs fn on a connection of its own, again from the start when it lost a race
// (as run). fn runs its own transaction (BEGIN ... COMMIT in its pipelines); a connection
// that fn leaves inside a transaction, after an error, is closed, which rolls it back.
func (s *PGStore) runPipelined(fn func(context.Context, *pgxpool.Conn) error) error {
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), s.opTimeout)
		err := func() error {
			c, err := s.pool.Acquire(ctx)
			if err != nil {
				return err
			}
			defer c.Release()
			err = fn(ctx, c)
			if pc := c.Conn().PgConn(); !pc.IsClosed() && pc.TxStatus() != 'I' {
				cctx, ccancel := context.WithTimeout(context.Background(), time.Second)
				_ = c.Conn().Close(cctx)
				ccancel()
				if err == nil {
					err = errors.New("transaction left open")
				}
			}
			return err
		}()
		cancel()
		if err == nil || !retryable(err) || attempt >= s.retries {
			return err
		}
		time.Sleep(time.Duration(1+rand.IntN(1+min(attempt, 10)*2)) * time.Millisecond)
	}
}

// eachRow reads the next result of a batch row by row.
func eachRow(br pgx.BatchResults, scans []any, fn func() error) error {
	rows, err := br.Query()
	if err != nil {
		if rows != nil {
			rows.Close()
		}
		return err
	}
	_, err = pgx.ForEachRow(rows, scans, fn)
	return err
}

// batchFallback reports whether a batch that failed with err should be applied again one
// top-up at a time: when the database refused something in it (a data or constraint error,
// a balance overflow, a race lost more often than the retries allow: one top-up may be the
// cause), not when the connection or the server failed (a killed backend, a shutdown, a
// timeout: each top-up on its own would only fail, or wait, as long again).
func batchFallback(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return strings.HasPrefix(pe.Code, "22") || strings.HasPrefix(pe.Code, "23") || strings.HasPrefix(pe.Code, "40")
	}
	return errors.Is(err, ErrOverflow) || errors.Is(err, errRace)
}

// pgBigintArray writes seqs as a PostgreSQL array literal ("{3,5}").
func pgBigintArray(v []uint64) string {
	var sb strings.Builder
	sb.WriteByte('{')
	for i, x := range v {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(strconv.FormatUint(x, 10))
	}
	sb.WriteByte('}')
	return sb.String()
}

// addInt64 adds without wrapping; ok is false on overflow.
func addInt64(a, b int64) (int64, bool) {
	s := a + b
	if (b > 0 && s < a) || (b < 0 && s > a) {
		return 0, false
	}
	return s, true
}
