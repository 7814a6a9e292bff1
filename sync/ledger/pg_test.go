package ledger

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kioskd/kioskd/sync/ledger/pgtest"
	"github.com/kioskd/kioskd/sync/wire"
)

type pgxTx = pgx.Tx

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.StopShared()
	os.Exit(code)
}

// openFunc opens a fresh, empty store of the implementation under test.
type openFunc func(now func() time.Time) Store

// forEachStore runs f against every Store implementation: the same properties hold for
// each. The PostgreSQL run skips (or fails, with KIOSKD_REQUIRE_SERVICES) without a server.
func forEachStore(t *testing.T, f func(t *testing.T, open openFunc)) {
	t.Run("bolt", func(t *testing.T) {
		f(t, func(now func() time.Time) Store { return openStore(t, "", now) })
	})
	t.Run("postgres", func(t *testing.T) {
		srv := pgtest.Shared(t)
		f(t, func(now func() time.Time) Store { return openPG(t, srv.NewDSN(t), now) })
	})
}

// openPG opens the store at dsn (a fresh schema of the shared server when dsn is ""),
// closed at cleanup.
func openPG(t testing.TB, dsn string, now func() time.Time) *PGStore {
	t.Helper()
	if dsn == "" {
		dsn = pgtest.Shared(t).NewDSN(t)
	}
	s, err := OpenPostgres(t.Context(), dsn, PGOptions{Now: now, OpTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Several ledgerd starting at once on an empty database: each migration is applied once,
// and every instance ends up on the newest schema.
func TestPGMigrationsConcurrentStart(t *testing.T) {
	dsn := pgtest.Shared(t).NewDSN(t)
	ms, err := migrations()
	if err != nil || len(ms) == 0 {
		t.Fatalf("embedded migrations: %v %v", ms, err)
	}
	var wg sync.WaitGroup
	stores := make([]*PGStore, 5)
	errs := make([]error, len(stores))
	for i := range stores {
		wg.Go(func() { stores[i], errs[i] = OpenPostgres(t.Context(), dsn, PGOptions{}) })
	}
	wg.Wait()
	for i, s := range stores {
		if errs[i] != nil {
			t.Fatalf("open %d: %v", i, errs[i])
		}
		defer s.Close()
		if v, err := s.SchemaVersion(); err != nil || v != ms[len(ms)-1].version {
			t.Errorf("store %d: schema %d %v", i, v, err)
		}
	}
	var rows int
	err = stores[0].read(func(ctx context.Context, tx pgxTx) error {
		return tx.QueryRow(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&rows)
	})
	if err != nil || rows != len(ms) {
		t.Errorf("schema_migrations has %d rows, want %d (%v)", rows, len(ms), err)
	}
	// All of them credit through one UNIQUE key.
	mustApply(t, stores[1], topup("K1", 1, 1, "alice", 100), wire.AckCredited)
	mustApply(t, stores[3], topup("K1", 1, 1, "alice", 100), wire.AckDuplicate)
}

func TestPGRefusesNewerSchema(t *testing.T) {
	dsn := pgtest.Shared(t).NewDSN(t)
	s := openPG(t, dsn, nil)
	err := s.write(func(ctx context.Context, tx pgxTx) error {
		_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES (9999, '9999_future.sql')`)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if s2, err := OpenPostgres(t.Context(), dsn, PGOptions{}); err == nil {
		s2.Close()
		t.Fatal("a build opened a schema newer than its own")
	}
}

func TestPGReopenKeepsIdempotency(t *testing.T) {
	dsn := pgtest.Shared(t).NewDSN(t)
	s := openPG(t, dsn, nil)
	r1 := mustApply(t, s, topup("K1", 1, 1, "alice", 100), wire.AckCredited)
	s.Close()
	s2 := openPG(t, dsn, nil)
	if r2 := mustApply(t, s2, topup("K1", 1, 1, "alice", 100), wire.AckDuplicate); r2.LedgerRef != r1.LedgerRef {
		t.Errorf("ledger_ref changed across reopen: %s → %s", r1.LedgerRef, r2.LedgerRef)
	}
	if r3 := mustApply(t, s2, topup("K1", 1, 2, "alice", 100), wire.AckCredited); r3.LedgerRef == r1.LedgerRef {
		t.Error("ledger_ref reused")
	}
}

func TestPGOverflowRefused(t *testing.T) {
	s := openPG(t, "", nil)
	mustApply(t, s, topup("K1", 1, 1, "whale", 50), wire.AckCredited)
	err := s.write(func(ctx context.Context, tx pgxTx) error {
		_, err := tx.Exec(ctx, `UPDATE balances SET balance_minor = $1 WHERE account = 'whale'`, int64(math.MaxInt64))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ApplyTopup(topup("K1", 1, 2, "whale", 1)); !errors.Is(err, ErrOverflow) {
		t.Fatalf("overflow: %v", err)
	}
	if w, _ := s.Watermark("K1", 1); w != 1 {
		t.Errorf("refused credit moved the watermark to %d", w)
	}
	if _, err := s.Topup(wire.TopupID("K1", 1, 2)); !errors.Is(err, ErrNotFound) {
		t.Errorf("refused credit stored: %v", err)
	}
}

// The same wallet code raced by many top-ups at once: exactly one owns it, the others are
// held (the UNIQUE nonce, and the serialization retry, decide).
func TestPGQRNonceRace(t *testing.T) {
	s := openPG(t, "", nil)
	var wg sync.WaitGroup
	results := make([]Result, 8)
	for i := range results {
		wg.Go(func() {
			r, err := s.Apply(topup("K1", 1, uint64(i+1), "alice", 1000), Checks{QRNonce: "w1.race"})
			if err != nil {
				t.Errorf("apply %d: %v", i, err)
			}
			results[i] = r
		})
	}
	wg.Wait()
	credited := 0
	for _, r := range results {
		switch r.Status {
		case wire.AckCredited:
			credited++
		case wire.AckHeld:
			if r.Reason != HoldQRReused {
				t.Errorf("held for %q", r.Reason)
			}
		default:
			t.Errorf("status %q", r.Status)
		}
	}
	if credited != 1 {
		t.Errorf("%d top-ups credited with one code", credited)
	}
	if info, _ := s.Account("alice"); info.Balances["CNY"] != 1000 {
		t.Errorf("alice %+v", info.Balances)
	}
	if w, _ := s.Watermark("K1", 1); w != 8 {
		t.Errorf("watermark %d, want 8 (held top-ups count)", w)
	}
}

// TestPGSeen: the duplicate pre-check answers a stored top-up with the same content
// (credited: duplicate with its ledger_ref; held: held again with its reason) from a read,
// and leaves everything else (unknown, other content) to Apply.
func TestPGSeen(t *testing.T) {
	s := openPG(t, "", nil)
	a := topup("K-SEEN", 7, 1, "acct", 15000)
	if _, ok, err := s.Seen(a); err != nil || ok {
		t.Fatalf("unknown top-up: ok=%v err=%v", ok, err)
	}
	first, err := s.Apply(a, Checks{})
	if err != nil || first.Status != wire.AckCredited {
		t.Fatalf("apply: %+v %v", first, err)
	}
	r, ok, err := s.Seen(a)
	if err != nil || !ok || r.Status != wire.AckDuplicate || r.LedgerRef != first.LedgerRef || r.Watermark != 1 {
		t.Fatalf("seen: %+v ok=%v err=%v; first %+v", r, ok, err, first)
	}
	other := a
	other.ReceiptNo++
	if _, ok, err := s.Seen(other); err != nil || ok {
		t.Fatalf("other content: ok=%v err=%v (a conflict is Apply's to record)", ok, err)
	}
	h := topup("K-SEEN", 7, 2, "acct", 500)
	if r, err := s.Apply(h, Checks{Hold: HoldQRMissing}); err != nil || r.Status != wire.AckHeld {
		t.Fatalf("hold: %+v %v", r, err)
	}
	r, ok, err = s.Seen(h)
	if err != nil || !ok || r.Status != wire.AckHeld || r.Reason != HoldQRMissing {
		t.Fatalf("seen held: %+v ok=%v err=%v", r, ok, err)
	}
}

// TestPGFirstTopupsAtOnce: a fleet's first top-ups (a new epoch each, empty tables) applied
// all at once, each delivered twice at the same instant, with few retries: none may fail,
// each is credited once, each epoch is alarmed once, and concurrent credits to one account
// all count (the balance increments are atomic at READ COMMITTED).
func TestPGFirstTopupsAtOnce(t *testing.T) {
	s := openPG(t, "", nil)
	s.retries = 3 // a storm of serialization failures would exhaust these
	const kiosks = 40
	var wg sync.WaitGroup
	errs := make(chan error, 2*kiosks)
	credited := make(chan string, 2*kiosks)
	for i := range kiosks {
		tp := topup(fmt.Sprintf("K-%03d", i), uint64(1000+i), 1, fmt.Sprintf("acct%d", i%5), 1000)
		for range 2 {
			wg.Go(func() {
				r, err := s.Apply(tp, Checks{})
				if err != nil {
					errs <- err
					return
				}
				if r.Status == wire.AckCredited {
					credited <- tp.TopupID
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	close(credited)
	for err := range errs {
		t.Error(err)
	}
	seen := map[string]bool{}
	for id := range credited {
		if seen[id] {
			t.Errorf("%s credited twice", id)
		}
		seen[id] = true
	}
	if len(seen) != kiosks {
		t.Errorf("credited %d, want %d", len(seen), kiosks)
	}
	alarms, err := s.Alarms()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, a := range alarms {
		if a.Kind == AlarmNewEpoch {
			n++
		}
	}
	if n != kiosks {
		t.Errorf("new-epoch alarms %d, want %d", n, kiosks)
	}
	for i := range 5 {
		info, err := s.Account(fmt.Sprintf("acct%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if got := info.Balances["CNY"]; got != 1000*kiosks/5 {
			t.Errorf("acct%d balance %d, want %d", i, got, 1000*kiosks/5)
		}
	}
}

// BenchmarkPGApply measures the PostgreSQL store: "credit" one new top-up per Apply (each
// kiosk's first top-up on a fresh epoch, as a fleet's backlog drain does, 8 at a time like
// two ledgers' pools), "batch" the same through ApplyBatch (group commit, with a QR nonce
// and a day per top-up as the Ledger's checks give them), "seen" the duplicate pre-check of
// a stored top-up. Compare credit's ops/s with batch's credits/s.
func BenchmarkPGApply(b *testing.B) {
	s := openPG(b, "", nil)
	var n atomic.Uint64
	b.Run("credit", func(b *testing.B) {
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				i := n.Add(1)
				tp := topup(fmt.Sprintf("KB-%d", i%1000), 77, i, fmt.Sprintf("acct_%d", i%2000), 1000)
				if _, err := s.Apply(tp, Checks{}); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	})
	// "batch": the same credits through ApplyBatch (the Ledger's group commit), 64 per
	// transaction, 4 transactions at a time (two ledgers' batch workers sharing the
	// database: each 4, rarely all busy at once).
	const batchSize = 64
	b.Run("batch", func(b *testing.B) {
		var items atomic.Uint64
		b.SetParallelism(4)
		b.RunParallel(func(pb *testing.PB) {
			batch := make([]BatchItem, 0, batchSize)
			flush := func() {
				for _, r := range s.ApplyBatch(batch) {
					if r.Err != nil || r.Result.Status != wire.AckCredited {
						b.Error(r.Result, r.Err)
					}
				}
				items.Add(uint64(len(batch)))
				batch = batch[:0]
			}
			for pb.Next() {
				i := n.Add(1)
				tp := topup(fmt.Sprintf("KB-%d", i%1000), 77, i, fmt.Sprintf("acct_%d", i%2000), 1000)
				batch = append(batch, BatchItem{Topup: tp, Checks: Checks{QRNonce: tp.TopupID, Day: "2026-12-01"}})
				if len(batch) == batchSize {
					flush()
				}
			}
			if len(batch) > 0 {
				flush()
			}
		})
		b.ReportMetric(float64(items.Load())/b.Elapsed().Seconds(), "credits/s")
	})
	dup := topup("KB-1", 77, 1, "acct_1", 1000)
	b.Run("seen", func(b *testing.B) {
		for range b.N {
			if _, ok, err := s.Seen(dup); err != nil || !ok {
				b.Fatal(ok, err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	})
}
