package ledger

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
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

// PGStore is the Store on PostgreSQL, for a ledger scaled out: any number of Ledger
// instances (in one process or many) share one database.
//
// Transactions: every method is one transaction. Apply runs at READ COMMITTED with explicit
// row locks (why, and why the money invariants still hold: see apply); the other writes run
// at SERIALIZABLE. Writes are retried
// (a bounded number of times, with a short random backoff) on a serialization failure
// (SQLSTATE 40001), a deadlock (40P01), or a unique violation (23505) that a concurrent
// writer caused; a retry starts from scratch, so it sees the other writer's credit and
// answers duplicate or conflict. SERIALIZABLE was chosen over explicit row locks because an
// apply reads and writes many rows (top-up, balance, account, kiosk epoch, kiosk and account
// day totals, QR nonce, held record): PostgreSQL then proves for us that concurrent applies
// behave as if run one after the other, and no lock order has to be kept by hand. Reads run
// at REPEATABLE READ, READ ONLY: one consistent snapshot, never a serialization failure.
//
// Schema: migrations/*.sql, embedded in the binary and applied in order by OpenPostgres in
// one transaction under a transaction-level advisory lock, so several ledgerd starting at
// once apply each migration exactly once; schema_migrations records what was applied.
type PGStore struct {
	pool      *pgxpool.Pool
	now       func() time.Time
	opTimeout time.Duration
	retries   int
	log       *slog.Logger
}

// PGOptions configures OpenPostgres.
type PGOptions struct {
	// Now is the clock for credit times and day totals (default time.Now).
	Now func() time.Time
	// OpTimeout bounds one transaction, retries excluded (default 10 s): a database that
	// does not answer makes the Ledger answer retry_later instead of blocking a worker.
	OpTimeout time.Duration
	// Retries bounds the retries of a transaction that lost a serialization race (default 30).
	Retries int
	// MaxConns bounds the connection pool (0: pgx's default). A pool_max_conns in the DSN
	// wins: the operator wrote it for this database.
	MaxConns int32
	// Logger receives retry and migration messages (default slog.Default()).
	Logger *slog.Logger
}

//go:embed migrations/*.sql
var migrationFS embed.FS

// migrationLockKey is the pg_advisory_xact_lock key that serializes migrations ("kioskdLG").
const migrationLockKey int64 = 0x6b696f736b644c47

type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the embedded migrations in version order. A file is named
// NNNN_description.sql; versions must be unique.
func migrations() ([]migration, error) {
	ents, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range ents {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 || !strings.HasSuffix(e.Name(), ".sql") {
			return nil, fmt.Errorf("migration %q: want NNNN_name.sql", e.Name())
		}
		raw, err := migrationFS.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: e.Name(), sql: string(raw)})
	}
	slices.SortFunc(out, func(a, b migration) int { return a.version - b.version })
	for i := 1; i < len(out); i++ {
		if out[i].version == out[i-1].version {
			return nil, fmt.Errorf("migrations %q and %q share a version", out[i-1].name, out[i].name)
		}
	}
	return out, nil
}

// setsPoolMaxConns reports whether the DSN that cfg was parsed from names pool_max_conns.
// pgxpool takes the parameter out of the connection's runtime parameters and leaves no trace
// of it in cfg, so the string is parsed again the way pgx parses it: looking for the name in
// the string itself would also find it in a password or a database name.
func setsPoolMaxConns(cfg *pgxpool.Config) bool {
	cc, err := pgconn.ParseConfig(cfg.ConnString())
	if err != nil {
		return false // pgxpool parsed the same string without an error
	}
	_, ok := cc.RuntimeParams["pool_max_conns"]
	return ok
}

// OpenPostgres connects to the database at dsn (a postgres:// URL or key=value string) and
// brings its schema up to date.
func OpenPostgres(ctx context.Context, dsn string, opts PGOptions) (*PGStore, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.OpTimeout <= 0 {
		opts.OpTimeout = 10 * time.Second
	}
	if opts.Retries <= 0 {
		opts.Retries = 30
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("ledger: postgres dsn: %w", err)
	}
	if opts.MaxConns > 0 && !setsPoolMaxConns(cfg) {
		cfg.MaxConns = opts.MaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("ledger: postgres: %w", err)
	}
	s := &PGStore{pool: pool, now: opts.Now, opTimeout: opts.OpTimeout, retries: opts.Retries, log: opts.Logger}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("ledger: postgres migrate: %w", err)
	}
	return s, nil
}

func (s *PGStore) migrate(ctx context.Context) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Held to the end of the transaction: a second ledgerd starting now waits here, then
		// finds the migrations applied.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLockKey); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    INTEGER PRIMARY KEY,
			name       TEXT NOT NULL,
			applied_at TIMESTAMPTZ NOT NULL DEFAULT now())`); err != nil {
			return err
		}
		var current int
		if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
			return err
		}
		if n := len(ms); n > 0 && current > ms[n-1].version {
			return fmt.Errorf("database schema version %d is newer than this build's %d", current, ms[n-1].version)
		}
		for _, m := range ms {
			if m.version <= current {
				continue
			}
			// No arguments: pgx sends it as a simple query, which may hold many statements.
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return fmt.Errorf("%s: %w", m.name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.version, m.name); err != nil {
				return err
			}
			s.log.Info("ledger: schema migration applied", "version", m.version, "name", m.name)
		}
		return nil
	})
}

// SchemaVersion returns the highest migration applied to the database.
func (s *PGStore) SchemaVersion() (int, error) {
	var v int
	err := s.read(func(ctx context.Context, tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v)
	})
	return v, err
}

// Close closes the connection pool.
func (s *PGStore) Close() error {
	s.pool.Close()
	return nil
}

// errRace: an INSERT ... ON CONFLICT DO NOTHING found the key taken by a writer that
// committed after this transaction began; the retry reads it and compares.
var errRace = errors.New("ledger: concurrent writer")

func retryable(err error) bool {
	if errors.Is(err, errRace) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "40001", "40P01", "23505":
			return true
		}
	}
	return false
}

// write runs fn in a SERIALIZABLE transaction, again from the start when it lost a race.
func (s *PGStore) write(fn func(context.Context, pgx.Tx) error) error {
	return s.run(pgx.TxOptions{IsoLevel: pgx.Serializable}, fn)
}

// read runs fn in a read-only snapshot.
func (s *PGStore) read(fn func(context.Context, pgx.Tx) error) error {
	return s.run(pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, fn)
}

func (s *PGStore) run(o pgx.TxOptions, fn func(context.Context, pgx.Tx) error) error {
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), s.opTimeout)
		err := pgx.BeginTxFunc(ctx, s.pool, o, func(tx pgx.Tx) error { return fn(ctx, tx) })
		cancel()
		if err == nil || !retryable(err) || attempt >= s.retries {
			return err
		}
		// Random backoff so the writers that collided do not collide again in lockstep.
		time.Sleep(time.Duration(1+rand.IntN(1+min(attempt, 10)*2)) * time.Millisecond)
	}
}

// ApplyTopup implements Store: Apply without policy checks.
func (s *PGStore) ApplyTopup(t wire.Topup) (Result, error) { return s.Apply(t, Checks{}) }

// Apply implements Store.
func (s *PGStore) Apply(t wire.Topup, c Checks) (Result, error) {
	if err := t.Validate(); err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	_, epoch, _, err := wire.ParseTopupID(t.TopupID)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if t.Seq > math.MaxInt64 || t.ReceiptNo > math.MaxInt64 {
		return Result{}, fmt.Errorf("%w: seq or receipt_no beyond 2^63-1", ErrInvalid)
	}
	hash := t.ContentHash()
	var res Result
	// READ COMMITTED with explicit row locks, not SERIALIZABLE: see apply.
	err = s.run(pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(ctx context.Context, tx pgx.Tx) error {
		var err error
		res, err = s.apply(ctx, tx, t, c, Epoch(epoch), hash)
		return err
	})
	if err != nil {
		return Result{}, fmt.Errorf("ledger: apply %s: %w", t.TopupID, err)
	}
	return res, nil
}

// pgEpoch is a kiosk_epochs row.
type pgEpoch struct {
	known bool
	epochRec
}

func getEpoch(ctx context.Context, tx pgx.Tx, kiosk string, epoch Epoch) (pgEpoch, error) {
	var e pgEpoch
	var above []int64
	var last *time.Time
	err := tx.QueryRow(ctx, `SELECT unapproved, watermark, above, topups, last_credit_at FROM kiosk_epochs
		WHERE kiosk_id = $1 AND epoch = $2`, kiosk, epoch.String()).Scan(&e.Unapproved, &e.Watermark, &above, &e.Topups, &last)
	if errors.Is(err, pgx.ErrNoRows) {
		return pgEpoch{}, nil
	}
	if err != nil {
		return pgEpoch{}, err
	}
	e.known = true
	for _, a := range above {
		e.Above = append(e.Above, uint64(a))
	}
	if last != nil {
		e.LastCreditAt = last.UTC()
	}
	return e, nil
}

// lockEpoch makes sure the kiosk_epochs row of (kiosk, epoch) exists and locks it for the
// rest of the transaction: created reports that this transaction made it (the epoch is new).
// A concurrent first top-up of the same epoch waits on the row's unique key until this one
// commits, then finds the row: exactly one of them sees the epoch as new.
func lockEpoch(ctx context.Context, tx pgx.Tx, kiosk string, epoch Epoch, strict bool) (pgEpoch, bool, error) {
	tag, err := tx.Exec(ctx, `INSERT INTO kiosk_epochs (kiosk_id, epoch, unapproved) VALUES ($1, $2, $3)
		ON CONFLICT (kiosk_id, epoch) DO NOTHING`, kiosk, epoch.String(), strict)
	if err != nil {
		return pgEpoch{}, false, err
	}
	created := tag.RowsAffected() == 1
	var e pgEpoch
	var above []int64
	var last *time.Time
	err = tx.QueryRow(ctx, `SELECT unapproved, watermark, above, topups, last_credit_at FROM kiosk_epochs
		WHERE kiosk_id = $1 AND epoch = $2 FOR UPDATE`, kiosk, epoch.String()).Scan(&e.Unapproved, &e.Watermark, &above, &e.Topups, &last)
	if err != nil {
		return pgEpoch{}, false, err
	}
	e.known = !created
	for _, a := range above {
		e.Above = append(e.Above, uint64(a))
	}
	if last != nil {
		e.LastCreditAt = last.UTC()
	}
	return e, created, nil
}

func putEpoch(ctx context.Context, tx pgx.Tx, kiosk string, epoch Epoch, e epochRec) error {
	above := make([]int64, 0, len(e.Above))
	for _, a := range e.Above {
		above = append(above, int64(a))
	}
	_, err := tx.Exec(ctx, `INSERT INTO kiosk_epochs (kiosk_id, epoch, unapproved, watermark, above, topups, last_credit_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (kiosk_id, epoch) DO UPDATE SET unapproved = EXCLUDED.unapproved, watermark = EXCLUDED.watermark,
			above = EXCLUDED.above, topups = EXCLUDED.topups, last_credit_at = EXCLUDED.last_credit_at`,
		kiosk, epoch.String(), e.Unapproved, int64(e.Watermark), above, int64(e.Topups), nullTime(e.LastCreditAt))
	return err
}

func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// pgSeen answers a topup_id the store already has, credited or held: duplicate (or held
// again) for the same content, conflict for other content.
func pgSeen(ctx context.Context, tx pgx.Tx, id, hash string) (Result, bool, error) {
	var r Result
	var stored, kiosk, epoch string
	err := tx.QueryRow(ctx, `SELECT ledger_ref, content_hash, kiosk_id, epoch, account, currency, amount_minor
		FROM topups WHERE topup_id = $1`, id).Scan(&r.LedgerRef, &stored, &kiosk, &epoch, &r.Account, &r.Currency, &r.AmountMinor)
	switch {
	case err == nil:
		r.Status, r.TopupID = wire.AckDuplicate, id
		if stored != hash {
			r.Status = wire.AckConflict
		}
		err = tx.QueryRow(ctx, `SELECT COALESCE((SELECT balance_minor FROM balances WHERE account = $1 AND currency = $2), 0)`,
			r.Account, r.Currency).Scan(&r.Balance)
		if err != nil {
			return Result{}, false, err
		}
	case errors.Is(err, pgx.ErrNoRows):
		var reason string
		err = tx.QueryRow(ctx, `SELECT content_hash, kiosk_id, epoch, account, currency, amount_minor, reason
			FROM held WHERE topup_id = $1`, id).Scan(&stored, &kiosk, &epoch, &r.Account, &r.Currency, &r.AmountMinor, &reason)
		if errors.Is(err, pgx.ErrNoRows) {
			return Result{}, false, nil
		}
		if err != nil {
			return Result{}, false, err
		}
		r.Status, r.TopupID, r.Reason = wire.AckHeld, id, reason
		if stored != hash {
			r.Status, r.Reason = wire.AckConflict, ""
		}
	default:
		return Result{}, false, err
	}
	var wm int64
	err = tx.QueryRow(ctx, `SELECT COALESCE((SELECT watermark FROM kiosk_epochs WHERE kiosk_id = $1 AND epoch = $2), 0)`,
		kiosk, epoch).Scan(&wm)
	r.Watermark = uint64(wm)
	return r, err == nil, err
}

// apply runs at READ COMMITTED. SERIALIZABLE made a fleet's first top-ups fail: each apply
// looks up keys that do not exist yet (the topup_id in topups and held, the kiosk's epoch,
// its day totals, the QR nonce), and PostgreSQL's predicate lock on a missing key is the
// whole btree leaf page; while those indexes are small, every apply's lookups and every
// other apply's inserts hit the same few pages, so concurrent applies of different kiosks
// formed read/write cycles and were aborted with SQLSTATE 40001 again and again.
//
// The money invariants hold without SERIALIZABLE because:
//   - Every apply of a topup_id first locks its kiosk epoch's row (lockEpoch; the topup_id
//     names the kiosk and the epoch), so applies of one topup_id, and of one epoch, run one
//     after the other; each statement after the lock sees what the one before committed.
//     Hence pgSeen's answer (duplicate, held again, conflict) is exact, the epoch's
//     watermark is read and written under the lock, and the new-epoch alarm is raised once.
//   - topups.topup_id is UNIQUE (a credit that finds it taken is a race, retried), and a
//     QR nonce's first use is a unique insert (a concurrent use by another top-up waits for
//     it, fails with 23505, and the retry holds the later one qr_reused).
//   - Balances, account counts and day totals change by atomic increments (addBalancePG
//     refuses an overflow in the same statement), so concurrent credits to one account
//     never lose an update.
//   - The other writers (DecideHeld, DecideSuspense) stay SERIALIZABLE: one that read a row
//     an apply then changed fails with 40001 on its own write and is retried.
//
// What is not exact: the kiosk's day totals checked against the policy's plausibility
// bounds are read without a lock, so two journals of one kiosk id applying at the same
// instant (two epochs at once, which one kiosk never runs) could both pass a bound the
// second should have crossed. Those bounds are a fraud heuristic, not a money invariant:
// each credit is still counted once.
func (s *PGStore) apply(ctx context.Context, tx pgx.Tx, t wire.Topup, c Checks, epoch Epoch, hash string) (Result, error) {
	now := s.now().UTC().Truncate(time.Microsecond) // what TIMESTAMPTZ keeps
	ep, created, err := lockEpoch(ctx, tx, t.KioskID, epoch, c.StrictEpochs)
	if err != nil {
		return Result{}, err
	}
	if res, ok, err := pgSeen(ctx, tx, t.TopupID, hash); err != nil {
		return Result{}, err
	} else if ok {
		if res.Status == wire.AckConflict {
			if err := recordConflictPG(ctx, tx, t, hash, now); err != nil {
				return Result{}, err
			}
		}
		return res, nil
	}

	hold := c.Hold
	var owner string
	if c.QRNonce != "" {
		err := tx.QueryRow(ctx, `SELECT topup_id FROM qr_nonces WHERE nonce = $1`, c.QRNonce).Scan(&owner)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return Result{}, err
		}
		if hold == "" && owner != "" && owner != t.TopupID && owner != c.QRSharedWith {
			hold = HoldQRReused
		}
	}
	if hold == "" && t.FollowsTopupID != "" {
		// As BoltStore: a follow-up credits only notes that open suspense records of the
		// top-up it follows stand for.
		ok, err := followUpMatchesPG(ctx, tx, t)
		if err != nil {
			return Result{}, err
		}
		if !ok {
			hold = HoldFollowUpUnmatched
		}
	}
	if hold == "" && c.StrictEpochs && (!ep.known || ep.Unapproved) {
		hold = HoldUnknownEpoch
	}
	var dayNotes, dayAmount int64
	if c.Day != "" {
		err := tx.QueryRow(ctx, `SELECT COALESCE((SELECT notes FROM kiosk_daily WHERE kiosk_id = $1 AND day = $2), 0),
			COALESCE((SELECT amount_minor FROM kiosk_daily_amounts WHERE kiosk_id = $1 AND day = $2 AND currency = $3), 0)`,
			t.KioskID, c.Day, t.Currency).Scan(&dayNotes, &dayAmount)
		if err != nil {
			return Result{}, err
		}
	}
	var notes int64
	for _, n := range t.Notes {
		notes += n.Count
	}
	if hold == "" && c.KioskDailyNotes > 0 && dayNotes+notes > c.KioskDailyNotes {
		hold = HoldKioskDailyNotes
	}
	if hold == "" && c.KioskDailyMinor > 0 && dayAmount+t.AmountMinor > c.KioskDailyMinor {
		hold = HoldKioskDailyAmount
	}

	var res Result
	if created {
		res.NewEpoch = true
		if err := addAlarmPG(ctx, tx, OpsAlarm{Kind: AlarmNewEpoch, KioskID: t.KioskID, TopupID: t.TopupID, At: now,
			Details: fmt.Sprintf("journal epoch %s first seen (strict: %v)", epoch, c.StrictEpochs)}); err != nil {
			return Result{}, err
		}
		ep.Unapproved = c.StrictEpochs
	}
	// A code is used once, whatever becomes of the top-up it opened. A concurrent first use
	// surfaces as a serialization failure or unique violation, and the retry sees it.
	if c.QRNonce != "" && owner == "" {
		if _, err := tx.Exec(ctx, `INSERT INTO qr_nonces (nonce, topup_id) VALUES ($1, $2)`, c.QRNonce, t.TopupID); err != nil {
			return Result{}, err
		}
	}
	// A held top-up is held durably, so it counts for the watermark like a credited one.
	ep.advance(t.Seq)
	ep.Topups++

	if hold != "" {
		payload, err := json.Marshal(t)
		if err != nil {
			return Result{}, err
		}
		_, err = tx.Exec(ctx, `INSERT INTO held (topup_id, kiosk_id, epoch, seq, account, currency, amount_minor, reason,
			status, content_hash, qr_nonce, held_at, payload) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
			t.TopupID, t.KioskID, epoch.String(), int64(t.Seq), t.Account, t.Currency, t.AmountMinor, hold,
			HeldOpen, hash, c.QRNonce, now, string(payload))
		if err != nil {
			return Result{}, err
		}
		if err := putEpoch(ctx, tx, t.KioskID, epoch, ep.epochRec); err != nil {
			return Result{}, err
		}
		res.Status, res.TopupID, res.Account, res.Currency, res.AmountMinor = wire.AckHeld, t.TopupID, t.Account, t.Currency, t.AmountMinor
		res.Reason, res.Watermark = hold, ep.Watermark
		return res, nil
	}

	ep.Unapproved = false
	ep.LastCreditAt = now
	if err := putEpoch(ctx, tx, t.KioskID, epoch, ep.epochRec); err != nil {
		return Result{}, err
	}
	cr, err := creditPG(ctx, tx, t, epoch, hash, now)
	if err != nil {
		return Result{}, err
	}
	if c.Day != "" {
		_, err := tx.Exec(ctx, `INSERT INTO kiosk_daily (kiosk_id, day, notes) VALUES ($1, $2, $3)
			ON CONFLICT (kiosk_id, day) DO UPDATE SET notes = kiosk_daily.notes + EXCLUDED.notes`, t.KioskID, c.Day, notes)
		if err != nil {
			return Result{}, err
		}
		_, err = tx.Exec(ctx, `INSERT INTO kiosk_daily_amounts (kiosk_id, day, currency, amount_minor) VALUES ($1, $2, $3, $4)
			ON CONFLICT (kiosk_id, day, currency) DO UPDATE SET amount_minor = kiosk_daily_amounts.amount_minor + EXCLUDED.amount_minor`,
			t.KioskID, c.Day, t.Currency, t.AmountMinor)
		if err != nil {
			return Result{}, err
		}
	}
	cr.NewEpoch, cr.Watermark = res.NewEpoch, ep.Watermark
	return cr, nil
}

func recordConflictPG(ctx context.Context, tx pgx.Tx, t wire.Topup, hash string, now time.Time) error {
	var stored string
	err := tx.QueryRow(ctx, `UPDATE topups SET conflicts = conflicts + 1 WHERE topup_id = $1 RETURNING content_hash`,
		t.TopupID).Scan(&stored)
	if errors.Is(err, pgx.ErrNoRows) {
		err = tx.QueryRow(ctx, `SELECT content_hash FROM held WHERE topup_id = $1`, t.TopupID).Scan(&stored)
	}
	if err != nil {
		return err
	}
	raw, err := json.Marshal(t)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO conflicts (topup_id, stored_hash, received_hash, received, at) VALUES ($1, $2, $3, $4, $5)`,
		t.TopupID, stored, hash, string(raw), now)
	return err
}

func addAlarmPG(ctx context.Context, tx pgx.Tx, a OpsAlarm) error {
	var n int64
	if err := tx.QueryRow(ctx, `SELECT nextval('alarm_seq')`).Scan(&n); err != nil {
		return err
	}
	a.Ref = fmt.Sprintf("OA%012d", n)
	_, err := tx.Exec(ctx, `INSERT INTO ops_alarms (n, ref, kind, kiosk_id, topup_id, details, at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		n, a.Ref, a.Kind, a.KioskID, a.TopupID, a.Details, a.At)
	return err
}

// creditPG moves the money of a top-up that passed (or was released): the top-up row,
// balance, account, day total and suspense rows. The caller updates the kiosk's epoch row.
func creditPG(ctx context.Context, tx pgx.Tx, t wire.Topup, epoch Epoch, hash string, now time.Time) (Result, error) {
	var n int64
	if err := tx.QueryRow(ctx, `SELECT nextval('ledger_ref_seq')`).Scan(&n); err != nil {
		return Result{}, err
	}
	payload, err := json.Marshal(t)
	if err != nil {
		return Result{}, err
	}
	ref := fmt.Sprintf("LR%012d", n)
	// The UNIQUE key decides: no row back means another writer credited this id first.
	err = tx.QueryRow(ctx, `INSERT INTO topups (topup_id, ledger_seq, ledger_ref, content_hash, kiosk_id, epoch, seq, account,
		currency, amount_minor, outcome, receipt_no, credited_at, payload)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
		ON CONFLICT (topup_id) DO NOTHING RETURNING ledger_ref`,
		t.TopupID, n, ref, hash, t.KioskID, epoch.String(), int64(t.Seq), t.Account, t.Currency, t.AmountMinor, t.Outcome,
		int64(t.ReceiptNo), now, string(payload)).Scan(&ref)
	if errors.Is(err, pgx.ErrNoRows) {
		return Result{}, errRace
	}
	if err != nil {
		return Result{}, err
	}
	bal, err := addBalancePG(ctx, tx, t.Account, t.Currency, t.AmountMinor, now, true)
	if err != nil {
		return Result{}, err
	}
	for _, u := range t.Uncertain {
		var sn int64
		if err := tx.QueryRow(ctx, `SELECT nextval('suspense_seq')`).Scan(&sn); err != nil {
			return Result{}, err
		}
		_, err := tx.Exec(ctx, `INSERT INTO suspense (n, ref, topup_id, kiosk_id, account, currency, value_minor, reason, at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			sn, fmt.Sprintf("SU%012d", sn), t.TopupID, t.KioskID, t.Account, t.Currency, u.ValueMinor, u.Reason, now)
		if err != nil {
			return Result{}, err
		}
	}
	if t.FollowsTopupID != "" {
		if err := resolveSuspensePG(ctx, tx, t, now); err != nil {
			return Result{}, err
		}
	}
	return Result{Status: wire.AckCredited, TopupID: t.TopupID, LedgerRef: ref, Account: t.Account,
		Currency: t.Currency, AmountMinor: t.AmountMinor, Balance: bal, Suspense: len(t.Uncertain)}, nil
}

// addBalancePG adds amount to the account's balance and day total, refusing an overflow;
// topup counts it as one more top-up of the account.
func addBalancePG(ctx context.Context, tx pgx.Tx, account, currency string, amount int64, now time.Time, topup bool) (int64, error) {
	// Reference ledger: accounts open on first credit.
	if _, err := tx.Exec(ctx, `INSERT INTO accounts (account, opened_at) VALUES ($1, $2) ON CONFLICT (account) DO NOTHING`,
		account, now); err != nil {
		return 0, err
	}
	if amount < 0 {
		return 0, fmt.Errorf("ledger: negative credit %d to %s %s", amount, account, currency)
	}
	// One atomic statement: the increment and the overflow check see the same row version
	// (a concurrent credit at READ COMMITTED waits for the row and adds to its new value).
	// No row back: the WHERE refused the overflow.
	var bal int64
	err := tx.QueryRow(ctx, `INSERT INTO balances (account, currency, balance_minor) VALUES ($1, $2, $3)
		ON CONFLICT (account, currency) DO UPDATE SET balance_minor = balances.balance_minor + EXCLUDED.balance_minor
		WHERE balances.balance_minor <= $4 - EXCLUDED.balance_minor
		RETURNING balance_minor`, account, currency, amount, int64(math.MaxInt64)).Scan(&bal)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("%w: %s %s", ErrOverflow, account, currency)
	}
	if err != nil {
		return 0, err
	}
	if topup {
		if _, err := tx.Exec(ctx, `UPDATE accounts SET topup_count = topup_count + 1 WHERE account = $1`, account); err != nil {
			return 0, err
		}
	}
	// Bounded by the balance check above.
	_, err = tx.Exec(ctx, `INSERT INTO daily_credits (account, day, currency, amount_minor) VALUES ($1, $2, $3, $4)
		ON CONFLICT (account, day, currency) DO UPDATE SET amount_minor = daily_credits.amount_minor + EXCLUDED.amount_minor`,
		account, now.Format(time.DateOnly), currency, amount)
	if err != nil {
		return 0, err
	}
	return bal, nil
}

const topupCols = `topup_id, ledger_ref, content_hash, kiosk_id, epoch, seq, account, currency, amount_minor, outcome,
	receipt_no, credited_at, conflicts, payload`

func scanTopup(row pgx.Row) (TopupRecord, error) {
	var r TopupRecord
	var epoch string
	var seq, receipt int64
	var payload []byte
	err := row.Scan(&r.TopupID, &r.LedgerRef, &r.ContentHash, &r.KioskID, &epoch, &seq, &r.Account, &r.Currency,
		&r.AmountMinor, &r.Outcome, &receipt, &r.CreditedAt, &r.Conflicts, &payload)
	if err != nil {
		return TopupRecord{}, err
	}
	if err := r.Epoch.UnmarshalText([]byte(epoch)); err != nil {
		return TopupRecord{}, err
	}
	r.Seq, r.ReceiptNo, r.CreditedAt = uint64(seq), uint64(receipt), r.CreditedAt.UTC()
	if err := json.Unmarshal(payload, &r.Topup); err != nil {
		return TopupRecord{}, fmt.Errorf("top-up %s payload: %w", r.TopupID, err)
	}
	return r, nil
}

// Topup implements Store.
func (s *PGStore) Topup(id string) (TopupRecord, error) {
	var rec TopupRecord
	err := s.read(func(ctx context.Context, tx pgx.Tx) error {
		var err error
		rec, err = scanTopup(tx.QueryRow(ctx, `SELECT `+topupCols+` FROM topups WHERE topup_id = $1`, id))
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return TopupRecord{}, fmt.Errorf("ledger: topup %s: %w", id, err)
	}
	return rec, nil
}

// Account implements Store.
func (s *PGStore) Account(account string) (AccountInfo, error) {
	var info AccountInfo
	err := s.read(func(ctx context.Context, tx pgx.Tx) error {
		info = AccountInfo{Account: account, Balances: map[string]int64{}}
		var count int64
		if err := tx.QueryRow(ctx, `SELECT opened_at, topup_count FROM accounts WHERE account = $1`, account).
			Scan(&info.OpenedAt, &count); err != nil {
			return err
		}
		info.OpenedAt, info.TopupCount = info.OpenedAt.UTC(), int(count)
		rows, err := tx.Query(ctx, `SELECT currency, balance_minor FROM balances WHERE account = $1`, account)
		if err != nil {
			return err
		}
		var cur string
		var bal int64
		if _, err := pgx.ForEachRow(rows, []any{&cur, &bal}, func() error { info.Balances[cur] = bal; return nil }); err != nil {
			return err
		}
		rows, err = tx.Query(ctx, `SELECT `+topupCols+` FROM topups WHERE account = $1 ORDER BY ledger_seq DESC LIMIT $2`,
			account, MaxAccountTopups)
		if err != nil {
			return err
		}
		info.Topups, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (TopupRecord, error) { return scanTopup(r) })
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return AccountInfo{}, fmt.Errorf("ledger: account %s: %w", account, err)
	}
	return info, nil
}

// DailyCredited implements Store.
func (s *PGStore) DailyCredited(account, day string) (map[string]int64, error) {
	m := map[string]int64{}
	err := s.read(func(ctx context.Context, tx pgx.Tx) error {
		clear(m)
		rows, err := tx.Query(ctx, `SELECT currency, amount_minor FROM daily_credits WHERE account = $1 AND day = $2`, account, day)
		if err != nil {
			return err
		}
		var cur string
		var v int64
		_, err = pgx.ForEachRow(rows, []any{&cur, &v}, func() error { m[cur] = v; return nil })
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ledger: daily %s: %w", account, err)
	}
	return m, nil
}

// Watermark implements Store.
func (s *PGStore) Watermark(kioskID string, epoch uint64) (uint64, error) {
	var wm int64
	err := s.read(func(ctx context.Context, tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT COALESCE((SELECT watermark FROM kiosk_epochs WHERE kiosk_id = $1 AND epoch = $2), 0)`,
			kioskID, Epoch(epoch).String()).Scan(&wm)
	})
	if err != nil {
		return 0, fmt.Errorf("ledger: watermark %s: %w", kioskID, err)
	}
	return uint64(wm), nil
}

// Kiosks implements Store. Ordered by kiosk id and epoch, byte-wise, as BoltStore lists them.
func (s *PGStore) Kiosks() ([]KioskInfo, error) {
	var out []KioskInfo
	err := s.read(func(ctx context.Context, tx pgx.Tx) error {
		out = nil
		rows, err := tx.Query(ctx, `SELECT kiosk_id, epoch, watermark, above, topups, last_credit_at FROM kiosk_epochs
			ORDER BY kiosk_id COLLATE "C", epoch COLLATE "C"`)
		if err != nil {
			return err
		}
		var id, epoch string
		var wm, n int64
		var above []int64
		var last *time.Time
		_, err = pgx.ForEachRow(rows, []any{&id, &epoch, &wm, &above, &n, &last}, func() error {
			e := EpochInfo{Watermark: uint64(wm), Topups: uint64(n)}
			if err := e.Epoch.UnmarshalText([]byte(epoch)); err != nil {
				return err
			}
			for _, a := range above {
				e.Above = append(e.Above, uint64(a))
			}
			if last != nil {
				e.LastCreditAt = last.UTC()
			}
			if len(out) == 0 || out[len(out)-1].KioskID != id {
				out = append(out, KioskInfo{KioskID: id})
			}
			out[len(out)-1].Epochs = append(out[len(out)-1].Epochs, e)
			return nil
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ledger: kiosks: %w", err)
	}
	return out, nil
}

const suspenseCols = `ref, topup_id, kiosk_id, account, currency, value_minor, reason, at, status, decision, credit_ref, collection_id,
	resolved_by, resolved_at`

func scanSuspense(row pgx.Row) (SuspenseRecord, error) {
	var r SuspenseRecord
	var decision []byte
	var resolvedAt *time.Time
	if err := row.Scan(&r.Ref, &r.TopupID, &r.KioskID, &r.Account, &r.Currency, &r.ValueMinor, &r.Reason, &r.At,
		&r.Status, &decision, &r.CreditRef, &r.CollectionID, &r.ResolvedBy, &resolvedAt); err != nil {
		return SuspenseRecord{}, err
	}
	r.At = r.At.UTC()
	if resolvedAt != nil {
		r.ResolvedAt = resolvedAt.UTC()
	}
	if decision != nil {
		r.Decision = new(Decision)
		if err := json.Unmarshal(decision, r.Decision); err != nil {
			return SuspenseRecord{}, fmt.Errorf("suspense %s decision: %w", r.Ref, err)
		}
	}
	return r, nil
}

// Suspense implements Store: as BoltStore, the records a follow-up resolved are left out
// (nothing is left to settle for them).
func (s *PGStore) Suspense() ([]SuspenseRecord, error) {
	var out []SuspenseRecord
	err := s.read(func(ctx context.Context, tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+suspenseCols+` FROM suspense WHERE resolved_by = '' ORDER BY n`)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (SuspenseRecord, error) { return scanSuspense(r) })
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ledger: suspense: %w", err)
	}
	if len(out) == 0 {
		out = nil // as BoltStore: none is nil
	}
	return out, nil
}

const heldCols = `topup_id, kiosk_id, epoch, seq, account, currency, amount_minor, reason, status, content_hash, qr_nonce,
	held_at, decision, ledger_ref, payload`

func scanHeld(row pgx.Row) (HeldRecord, error) {
	var h HeldRecord
	var epoch string
	var seq int64
	var decision, payload []byte
	if err := row.Scan(&h.TopupID, &h.KioskID, &epoch, &seq, &h.Account, &h.Currency, &h.AmountMinor, &h.Reason, &h.Status,
		&h.ContentHash, &h.QRNonce, &h.HeldAt, &decision, &h.LedgerRef, &payload); err != nil {
		return HeldRecord{}, err
	}
	if err := h.Epoch.UnmarshalText([]byte(epoch)); err != nil {
		return HeldRecord{}, err
	}
	h.Seq, h.HeldAt = uint64(seq), h.HeldAt.UTC()
	if decision != nil {
		h.Decision = new(Decision)
		if err := json.Unmarshal(decision, h.Decision); err != nil {
			return HeldRecord{}, fmt.Errorf("held %s decision: %w", h.TopupID, err)
		}
	}
	if err := json.Unmarshal(payload, &h.Topup); err != nil {
		return HeldRecord{}, fmt.Errorf("held %s payload: %w", h.TopupID, err)
	}
	return h, nil
}

// Held implements Store.
func (s *PGStore) Held(status string) ([]HeldRecord, error) {
	out := []HeldRecord{}
	err := s.read(func(ctx context.Context, tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+heldCols+` FROM held WHERE $1 = '' OR status = $1 ORDER BY topup_id COLLATE "C"`, status)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (HeldRecord, error) { return scanHeld(r) })
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ledger: held: %w", err)
	}
	if out == nil {
		out = []HeldRecord{} // as BoltStore: an empty list, never null in JSON
	}
	return out, nil
}

// HeldTopup implements Store.
func (s *PGStore) HeldTopup(id string) (HeldRecord, error) {
	var h HeldRecord
	err := s.read(func(ctx context.Context, tx pgx.Tx) error {
		var err error
		h, err = scanHeld(tx.QueryRow(ctx, `SELECT `+heldCols+` FROM held WHERE topup_id = $1`, id))
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return HeldRecord{}, fmt.Errorf("ledger: held %s: %w", id, err)
	}
	return h, nil
}

// DecideHeld implements Store, as BoltStore.DecideHeld.
func (s *PGStore) DecideHeld(id string, d Decision) (HeldRecord, error) {
	if err := d.check(); err != nil {
		return HeldRecord{}, err
	}
	var h HeldRecord
	err := s.write(func(ctx context.Context, tx pgx.Tx) error {
		var err error
		h, err = scanHeld(tx.QueryRow(ctx, `SELECT `+heldCols+` FROM held WHERE topup_id = $1`, id))
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if h.Status != HeldOpen {
			return fmt.Errorf("%w: %s by %s", ErrDecided, h.Status, h.Decision.Operator)
		}
		now := s.now().UTC().Truncate(time.Microsecond)
		dd := d
		if dd.At.IsZero() {
			dd.At = now
		}
		h.Decision = &dd
		h.Status = HeldRejected
		if d.Action == ActionRelease {
			var exists bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM topups WHERE topup_id = $1)`, id).Scan(&exists); err != nil {
				return err
			}
			if exists {
				return fmt.Errorf("%w: %s is credited already", ErrDecided, id)
			}
			if h.Topup.FollowsTopupID != "" {
				ok, err := followUpMatchesPG(ctx, tx, h.Topup)
				if err != nil {
					return err
				}
				if !ok {
					return followUpSettled(h.Topup)
				}
			}
			cr, err := creditPG(ctx, tx, h.Topup, h.Epoch, h.ContentHash, now)
			if err != nil {
				return err
			}
			ep, err := getEpoch(ctx, tx, h.KioskID, h.Epoch)
			if err != nil {
				return err
			}
			ep.Unapproved = false
			ep.advance(h.Seq) // already held; harmless
			ep.LastCreditAt = now
			if err := putEpoch(ctx, tx, h.KioskID, h.Epoch, ep.epochRec); err != nil {
				return err
			}
			h.Status, h.LedgerRef = HeldReleased, cr.LedgerRef
		}
		raw, err := json.Marshal(h.Decision)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE held SET status = $2, decision = $3, ledger_ref = $4 WHERE topup_id = $1`,
			id, h.Status, string(raw), h.LedgerRef)
		return err
	})
	if err != nil {
		return HeldRecord{}, fmt.Errorf("ledger: decide held %s: %w", id, err)
	}
	return h, nil
}

// DecideSuspense implements Store, as BoltStore.DecideSuspense.
func (s *PGStore) DecideSuspense(ref string, d Decision) (SuspenseRecord, error) {
	if err := d.check(); err != nil {
		return SuspenseRecord{}, err
	}
	var n uint64
	if _, err := fmt.Sscanf(ref, "SU%d", &n); err != nil || fmt.Sprintf("SU%012d", n) != ref || n > math.MaxInt64 {
		return SuspenseRecord{}, fmt.Errorf("ledger: suspense %q: %w", ref, ErrNotFound)
	}
	var r SuspenseRecord
	err := s.write(func(ctx context.Context, tx pgx.Tx) error {
		var err error
		// FOR UPDATE: a follow-up resolving this record waits for this decision, or this one
		// for it, and the loser sees the record settled.
		r, err = scanSuspense(tx.QueryRow(ctx, `SELECT `+suspenseCols+` FROM suspense WHERE n = $1 FOR UPDATE`, int64(n)))
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if r.Status != "" {
			return fmt.Errorf("%w: %s", ErrDecided, r.Status)
		}
		if r.ResolvedBy != "" {
			// The kiosk's follow-up top-up already credited this note.
			return fmt.Errorf("%w: resolved by follow-up %s", ErrDecided, r.ResolvedBy)
		}
		now := s.now().UTC().Truncate(time.Microsecond)
		dd := d
		if dd.At.IsZero() {
			dd.At = now
		}
		acct, value, err := checkSuspenseDecision(r, d)
		if err != nil {
			return err
		}
		r.Decision = &dd
		r.Status = HeldRejected
		if d.Action == ActionRelease {
			if _, err := addBalancePG(ctx, tx, acct, r.Currency, value, now, false); err != nil {
				return err
			}
			r.Account, r.ValueMinor = acct, value
			r.Status, r.CreditRef = HeldReleased, fmt.Sprintf("SC%012d", n)
		}
		raw, err := json.Marshal(r.Decision)
		if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE suspense SET status = $2, decision = $3, credit_ref = $4, account = $5, value_minor = $6
			WHERE n = $1 AND status = '' AND resolved_by = ''`,
			int64(n), r.Status, string(raw), r.CreditRef, r.Account, r.ValueMinor)
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return errRace // settled meanwhile: the retry reads it and refuses
		}
		return nil
	})
	if err != nil {
		return SuspenseRecord{}, fmt.Errorf("ledger: decide suspense %s: %w", ref, err)
	}
	return r, nil
}

// QRNonceOwner implements Store.
func (s *PGStore) QRNonceOwner(nonce string) (string, error) {
	var owner string
	err := s.read(func(ctx context.Context, tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `SELECT topup_id FROM qr_nonces WHERE nonce = $1`, nonce).Scan(&owner)
		if errors.Is(err, pgx.ErrNoRows) {
			owner, err = "", nil
		}
		return err
	})
	if err != nil {
		return "", fmt.Errorf("ledger: qr nonce: %w", err)
	}
	return owner, nil
}

// Alarms implements Store.
func (s *PGStore) Alarms() ([]OpsAlarm, error) {
	out := []OpsAlarm{}
	err := s.read(func(ctx context.Context, tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT ref, kind, kiosk_id, topup_id, details, at FROM ops_alarms ORDER BY n`)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (OpsAlarm, error) {
			var a OpsAlarm
			err := r.Scan(&a.Ref, &a.Kind, &a.KioskID, &a.TopupID, &a.Details, &a.At)
			a.At = a.At.UTC()
			return a, err
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ledger: alarms: %w", err)
	}
	if out == nil {
		out = []OpsAlarm{}
	}
	return out, nil
}

var _ Store = (*PGStore)(nil)

// Seen answers a topup_id the store already holds with the same content, without a write
// transaction: a plain read (REPEATABLE READ, READ ONLY: no predicate locks, never a
// serialization failure) of the stored top-up or held record by its key. ok is false for
// anything else (not stored, or stored with other content: a conflict is recorded by Apply).
// It is what keeps a kiosk's retries cheap when the ledger is slow: a duplicate costs one
// index lookup, not a SERIALIZABLE transaction competing with the first credits.
func (s *PGStore) Seen(t wire.Topup) (Result, bool, error) {
	if t.TopupID == "" {
		return Result{}, false, nil
	}
	hash := t.ContentHash()
	var res Result
	var ok bool
	err := s.read(func(ctx context.Context, tx pgx.Tx) error {
		var err error
		res, ok, err = pgSeen(ctx, tx, t.TopupID, hash)
		return err
	})
	if err != nil {
		return Result{}, false, fmt.Errorf("ledger: seen %s: %w", t.TopupID, err)
	}
	if !ok || (res.Status != wire.AckDuplicate && res.Status != wire.AckHeld) {
		return Result{}, false, nil
	}
	return res, true, nil
}
