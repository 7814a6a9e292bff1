package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kioskd/kioskd/sync/ledger/pgtest"
	"github.com/kioskd/kioskd/sync/wire"
)

// batchCase is a mixed batch: credits, a duplicate, conflicts (with a credited and with a
// held top-up), a held top-up, a QR code used twice within the batch, a kiosk crossing its
// daily note bound within the batch, a new epoch in strict mode, uncertain items, gaps in
// the seqs, a follow-up and a second copy of a topup_id (both applied after the batch).
// before is applied first, one by one.
func batchCase() (before, batch []BatchItem) {
	day := "2026-12-01"
	ck := func(nonce string) Checks { return Checks{QRNonce: nonce, Day: day, KioskDailyNotes: 4} }
	orig := topup("K1", 1, 1, "alice", 10000)
	heldOne := topup("K1", 1, 2, "bob", 5000)
	other := topup("K5", 2, 1, "frank", 10000)
	otherHeld := topup("K5", 2, 2, "frank", 5000)
	before = []BatchItem{
		{orig, ck("w1.o1")},
		{heldOne, Checks{Hold: HoldQRInvalid, Day: day}},
		{other, Checks{}},
		{otherHeld, Checks{Hold: HoldQRMissing}},
	}
	conflict := other
	conflict.AmountMinor, conflict.Notes = 20000, []wire.NoteLine{{ValueMinor: 10000, Count: 2}}
	heldConflict := otherHeld
	heldConflict.AmountMinor, heldConflict.Notes = 1000, []wire.NoteLine{{ValueMinor: 1000, Count: 1}}
	uncertain := topup("K2", 7, 1, "carol", 5000)
	uncertain.Outcome = wire.OutcomeInterrupted
	uncertain.Uncertain = []wire.Uncertain{{ValueMinor: 10000, Reason: "power_cut_in_stacker"}}
	follow := topup("K2", 7, 2, "carol", 10000)
	follow.FollowsTopupID = uncertain.TopupID
	batch = []BatchItem{
		{topup("K1", 1, 4, "alice", 2000), ck("w1.a")},   // above a gap
		{orig, ck("w1.o1")},                              // duplicate
		{topup("K1", 1, 3, "alice", 10000), ck("w1.b")},  // fills the gap
		{heldOne, Checks{Hold: HoldQRInvalid, Day: day}}, // held again
		{conflict, Checks{}},                             // conflict with a credit
		{heldConflict, Checks{Day: day}},                 // conflict with a held record
		{topup("K1", 1, 5, "dave", 1000), ck("w1.a")},    // the code of seq 4 again: qr_reused
		{topup("K1", 1, 6, "dave", 3000), ck("w1.c")},    // the day: 1+1+1 notes, 2 more > 4: held
		{topup("K1", 1, 7, "bob", 4000), Checks{Hold: HoldOverMax, Day: day}},
		{uncertain, ck("w1.u")},
		{topup("K3", 9, 1, "erin", 2000), Checks{StrictEpochs: true, QRNonce: "w1.s", Day: day}}, // new epoch, strict: held
		{topup("K4", 3, 1, "alice", 500), Checks{}},                                              // no day, no code
		{follow, Checks{QRNonce: "w1.u", QRSharedWith: uncertain.TopupID, Day: day}},             // after the batch
		{topup("K1", 1, 3, "alice", 10000), ck("w1.b")},                                          // second copy: duplicate
	}
	return before, batch
}

// storeState is what the store API shows, for comparing two stores.
func storeState(t *testing.T, s Store) map[string]any {
	t.Helper()
	st := map[string]any{}
	for _, a := range []string{"alice", "bob", "carol", "dave", "erin", "frank"} {
		info, err := s.Account(a)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		st["account "+a] = info
	}
	var err error
	if st["kiosks"], err = s.Kiosks(); err != nil {
		t.Fatal(err)
	}
	if st["held"], err = s.Held(""); err != nil {
		t.Fatal(err)
	}
	if st["suspense"], err = s.Suspense(); err != nil {
		t.Fatal(err)
	}
	if st["alarms"], err = s.Alarms(); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"w1.o1", "w1.a", "w1.b", "w1.c", "w1.u", "w1.s"} {
		if st["nonce "+n], err = s.QRNonceOwner(n); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

// A batch gives each top-up the outcome Apply would have given it, one after the other: a
// duplicate, a conflict, a held top-up and a good one side by side each get their own, and
// the store ends up exactly as after the same top-ups applied one by one (the same refs,
// balances, watermarks, held and suspense records, alarms, nonces and day totals).
func TestPGApplyBatchEachItsOwnOutcome(t *testing.T) {
	clock := &fakeClock{t: t0.Add(2 * time.Hour)}
	one, batched := openPG(t, "", clock.Now), openPG(t, "", clock.Now)
	before, batch := batchCase()
	for _, s := range []*PGStore{one, batched} {
		for _, it := range before {
			if _, err := s.Apply(it.Topup, it.Checks); err != nil {
				t.Fatal(err)
			}
		}
	}
	// One by one in the order the batch applies them: the batch first, then the follow-up
	// and the second copy of a topup_id, as if they had arrived after it.
	want := make([]BatchResult, len(batch))
	last := len(batch) - 2
	for _, i := range append(seqInts(0, last), last, last+1) {
		r, err := one.Apply(batch[i].Topup, batch[i].Checks)
		want[i] = BatchResult{r, err}
	}
	got := batched.ApplyBatch(batch)
	// A batch draws sequence values for every top-up it may credit: its refs have gaps
	// where the one-by-one store's have none, in the same order.
	gotN, wantN := renumber(t, got), renumber(t, want)
	for i := range batch {
		if gotN[i] != wantN[i] {
			t.Errorf("item %d (%s): batch %s, one by one %s", i, batch[i].Topup.TopupID, gotN[i], wantN[i])
		}
	}
	// Spot checks of the outcomes themselves, so the test does not only compare the two
	// paths with each other.
	status := func(i int) string { return got[i].Result.Status + "/" + got[i].Result.Reason }
	for i, w := range map[int]string{0: "credited/", 1: "duplicate/", 2: "credited/", 3: "held/" + HoldQRInvalid,
		4: "conflict/", 5: "conflict/", 6: "held/" + HoldQRReused, 7: "held/" + HoldKioskDailyNotes,
		8: "held/" + HoldOverMax, 9: "credited/", 10: "held/" + HoldUnknownEpoch, 11: "credited/", 12: "credited/", 13: "duplicate/"} {
		if status(i) != w {
			t.Errorf("item %d: %s, want %s", i, status(i), w)
		}
	}
	if r := got[2].Result; r.Watermark != 4 {
		t.Errorf("seq 3 filled the gap to 4: watermark %d", r.Watermark)
	}
	if r := got[11].Result; r.Balance != 10000+2000+10000+500 || !r.NewEpoch {
		t.Errorf("alice's last credit: %+v", r)
	}
	a, b := renumber(t, storeState(t, one)), renumber(t, storeState(t, batched))
	if !reflect.DeepEqual(a, b) {
		t.Errorf("one by one:\n%s\nbatched:\n%s", a, b)
	}
	// Conflicts are recorded in both.
	for _, s := range []*PGStore{one, batched} {
		var n int
		err := s.read(func(ctx context.Context, tx pgx.Tx) error {
			return tx.QueryRow(ctx, `SELECT count(*) FROM conflicts`).Scan(&n)
		})
		if err != nil || n != 2 {
			t.Errorf("conflicts recorded: %d %v", n, err)
		}
	}
	// The same batch again: nothing moves, each is answered as it was stored.
	again := batched.ApplyBatch(batch)
	for i, r := range again {
		w := map[string]string{wire.AckCredited: wire.AckDuplicate}[got[i].Result.Status]
		if w == "" {
			w = got[i].Result.Status
		}
		if r.Err != nil || r.Result.Status != w {
			t.Errorf("again, item %d: %+v, want %s", i, r, w)
		}
	}
}

// A balance that would overflow refuses only the top-up that overflows it: the batch is
// applied again one by one, and the others are credited.
func TestPGApplyBatchOverflowRefusesOnlyItsTopup(t *testing.T) {
	s := openPG(t, "", nil)
	if _, err := s.Apply(topup("K1", 1, 1, "whale", 1000), Checks{}); err != nil {
		t.Fatal(err)
	}
	// Reaching MaxInt64 through real top-ups takes thousands of maximal ones; seed it.
	if _, err := s.pool.Exec(t.Context(), `UPDATE balances SET balance_minor = $1 WHERE account = 'whale'`, int64(math.MaxInt64-500)); err != nil {
		t.Fatal(err)
	}
	out := s.ApplyBatch([]BatchItem{{Topup: topup("K1", 1, 2, "alice", 1000)}, {Topup: topup("K1", 1, 3, "whale", 1000)},
		{Topup: topup("K1", 1, 4, "bob", 2000)}})
	if out[0].Err != nil || out[2].Err != nil || !errors.Is(out[1].Err, ErrOverflow) {
		t.Fatalf("%+v", out)
	}
	if out[0].Result.Status != wire.AckCredited || out[2].Result.Status != wire.AckCredited {
		t.Errorf("%+v", out)
	}
	if _, err := s.Topup(wire.TopupID("K1", 1, 3)); !errors.Is(err, ErrNotFound) {
		t.Errorf("the refused top-up is stored: %v", err)
	}
	if info, err := s.Account("whale"); err != nil || info.Balances["CNY"] != math.MaxInt64-500 || info.TopupCount != 1 {
		t.Errorf("whale moved: %+v %v", info, err)
	}
	if wm, _ := s.Watermark("K1", 1); wm != 2 {
		t.Errorf("watermark %d, want 2 (seq 3 not stored)", wm)
	}
}

// Batches from several writers at once (two ledgers' batch workers), over the same kiosks
// and accounts, in opposite orders: no deadlock, every top-up credited once, the balances
// exact.
func TestPGApplyBatchConcurrentExactlyOnce(t *testing.T) {
	s := openPG(t, "", nil)
	const kiosks, per = 12, 10
	var all []BatchItem
	for k := range kiosks {
		for q := range per {
			all = append(all, BatchItem{Topup: topup(fmt.Sprintf("K%d", k), 5, uint64(q+1), fmt.Sprintf("acct_%d", (k+q)%7), 100)})
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := range 6 {
		wg.Go(func() {
			items := make([]BatchItem, len(all))
			for i := range all {
				j := i
				if w%2 == 1 {
					j = len(all) - 1 - i
				}
				items[i] = all[j]
			}
			for off := 0; off < len(items); off += 16 {
				for _, r := range s.ApplyBatch(items[off:min(off+16, len(items))]) {
					if r.Err != nil {
						errs <- r.Err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	checkCreditedOnce(t, s, all)
}

// checkCreditedOnce: every top-up of items stored once, each account's balance and count
// exactly the sum of its top-ups, each kiosk's watermark at its last seq.
func checkCreditedOnce(t *testing.T, s *PGStore, items []BatchItem) {
	t.Helper()
	want := map[string]int64{}
	count := map[string]int{}
	last := map[string]uint64{}
	for _, it := range items {
		want[it.Topup.Account] += it.Topup.AmountMinor
		count[it.Topup.Account]++
		last[it.Topup.KioskID] = max(last[it.Topup.KioskID], it.Topup.Seq)
		if _, err := s.Topup(it.Topup.TopupID); err != nil {
			t.Errorf("%s: %v", it.Topup.TopupID, err)
		}
	}
	for a, v := range want {
		info, err := s.Account(a)
		if err != nil || info.Balances["CNY"] != v || info.TopupCount != count[a] {
			t.Errorf("%s: %+v %v, want %d in %d top-ups", a, info.Balances, err, v, count[a])
		}
	}
	var rows int
	if err := s.read(func(ctx context.Context, tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT count(*) FROM topups`).Scan(&rows)
	}); err != nil || rows != len(items) {
		t.Errorf("topups rows %d %v, want %d", rows, err, len(items))
	}
	ks, err := s.Kiosks()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range ks {
		if wm := k.Epochs[0].Watermark; wm != last[k.KioskID] {
			t.Errorf("%s watermark %d, want %d", k.KioskID, wm, last[k.KioskID])
		}
	}
}

// A connection killed in the middle of a batch (after its top-ups were inserted, while it
// waits for a balance row another transaction holds) loses and doubles nothing: every
// top-up of it is answered with an error (retry_later: nothing was credited), none of its
// rows survive, and applied again each is credited once.
func TestPGApplyBatchConnectionKilledMidBatch(t *testing.T) {
	srv := pgtest.Shared(t)
	dsn := srv.NewDSN(t)
	app := fmt.Sprintf("ledger_batch_kill_%d", time.Now().UnixNano())
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	s := openPG(t, dsn+sep+"application_name="+app, nil)
	admin := openPG(t, dsn, nil)
	// bob's balance row exists; a transaction of the test holds it.
	if _, err := admin.Apply(topup("K0", 1, 1, "bob", 100), Checks{}); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	lockTx := holdRows(t, admin, `SELECT 1 FROM balances WHERE account = 'bob' FOR UPDATE`)
	items := []BatchItem{
		{topup("K1", 1, 1, "alice", 1000), Checks{QRNonce: "w1.k1", Day: "2026-12-01"}},
		{topup("K1", 1, 2, "bob", 2000), Checks{QRNonce: "w1.k2", Day: "2026-12-01"}},
		{topup("K2", 1, 1, "carol", 5000), Checks{QRNonce: "w1.k3", Day: "2026-12-01"}},
	}
	done := make(chan []BatchResult, 1)
	go func() { done <- s.ApplyBatch(items) }()
	// Wait until the batch's backend waits for bob's row (its top-up rows are inserted by
	// then: the balances come after them), then kill it.
	var killed bool
	for deadline := time.Now().Add(30 * time.Second); !killed && time.Now().Before(deadline); {
		err := admin.pool.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) > 0 FROM pg_stat_activity
			WHERE application_name = $1 AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO balances%'`, app).Scan(&killed)
		if err != nil {
			t.Fatal(err)
		}
	}
	if !killed {
		t.Fatal("the batch never waited for the locked balance row")
	}
	out := <-done
	for i, r := range out {
		if r.Err == nil {
			t.Errorf("item %d answered %+v after its connection was killed", i, r.Result)
		}
	}
	if err := lockTx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		if _, err := admin.Topup(it.Topup.TopupID); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s survived the killed batch: %v", it.Topup.TopupID, err)
		}
		if owner, _ := admin.QRNonceOwner(it.Checks.QRNonce); owner != "" {
			t.Errorf("nonce %s survived the killed batch", it.Checks.QRNonce)
		}
	}
	// The kiosks send them again.
	for i, r := range s.ApplyBatch(items) {
		if r.Err != nil || r.Result.Status != wire.AckCredited {
			t.Errorf("item %d again: %+v", i, r)
		}
	}
	for i, r := range s.ApplyBatch(items) {
		if r.Err != nil || r.Result.Status != wire.AckDuplicate {
			t.Errorf("item %d a third time: %+v", i, r)
		}
	}
	checkCreditedOnce(t, s, append([]BatchItem{{Topup: topup("K0", 1, 1, "bob", 100)}}, items...))
}

func seqInts(from, to int) []int {
	var out []int
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

var refPattern = regexp.MustCompile(`(LR|OA|SU)[0-9]{12}`)

// renumber returns v as JSON with each kind of reference (LR, OA, SU) renumbered 1, 2, ...
// in the order of its values: two stores that numbered the same things in the same order,
// with or without gaps, give the same text. A slice gives one text per element.
func renumber(t *testing.T, v any) []string {
	t.Helper()
	var parts []any
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Slice {
		for i := range rv.Len() {
			parts = append(parts, rv.Index(i).Interface())
		}
	} else {
		parts = []any{v}
	}
	var texts []string
	all := map[string]bool{}
	for _, p := range parts {
		raw, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		texts = append(texts, string(raw))
		for _, m := range refPattern.FindAllString(string(raw), -1) {
			all[m] = true
		}
	}
	byKind := map[string][]string{}
	for r := range all {
		byKind[r[:2]] = append(byKind[r[:2]], r)
	}
	rank := map[string]string{}
	for kind, rs := range byKind {
		slices.Sort(rs)
		for i, r := range rs {
			rank[r] = fmt.Sprintf("%s#%d", kind, i+1)
		}
	}
	for i := range texts {
		texts[i] = refPattern.ReplaceAllStringFunc(texts[i], func(m string) string { return rank[m] })
	}
	return texts
}

// A batch does not wait for a kiosk epoch another transaction holds: it commits the other
// top-ups first and applies that kiosk's in a later round, once the lock is free.
func TestPGApplyBatchSkipsLockedEpochs(t *testing.T) {
	s := openPG(t, "", nil)
	admin := openPG(t, s.pool.Config().ConnString(), nil)
	if _, err := s.Apply(topup("K1", 1, 1, "alice", 100), Checks{}); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	lockTx := holdRows(t, admin, `SELECT 1 FROM kiosk_epochs WHERE kiosk_id = 'K1' FOR UPDATE`)
	items := []BatchItem{{Topup: topup("K1", 1, 2, "alice", 200)}, {Topup: topup("K2", 1, 1, "bob", 300)}}
	done := make(chan []BatchResult, 1)
	go func() { done <- s.ApplyBatch(items) }()
	// K2's top-up is committed while K1's epoch is still locked.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := admin.Topup(items[1].Topup.TopupID); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the batch waited for the locked epoch instead of committing the other kiosk's top-up")
		}
		time.Sleep(5 * time.Millisecond) // polling the database for an outcome, not timing the code
	}
	if _, err := admin.Topup(items[0].Topup.TopupID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("K1's top-up applied under another transaction's lock: %v", err)
	}
	if err := lockTx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	for i, r := range <-done {
		if r.Err != nil || r.Result.Status != wire.AckCredited {
			t.Errorf("item %d: %+v", i, r)
		}
	}
	if r := s.ApplyBatch(items[:1])[0]; r.Result.Watermark != 2 || r.Result.Status != wire.AckDuplicate {
		t.Errorf("K1 after the batch: %+v", r)
	}
}

// holdRows locks the rows query selects (FOR UPDATE) in a transaction of the test, open until
// the test rolls it back (or ends).
func holdRows(t *testing.T, s *PGStore, query string) pgx.Tx {
	t.Helper()
	tx, err := s.pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	if _, err := tx.Exec(t.Context(), query); err != nil {
		t.Fatal(err)
	}
	return tx
}
