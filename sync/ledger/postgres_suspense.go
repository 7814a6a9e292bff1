package ledger

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kioskd/kioskd/sync/wire"
)

// Suspense resolution by a follow-up top-up in PostgreSQL (migration 0003), the same rules
// as BoltStore (suspense.go). The writers that touch a suspense record (a follow-up's credit,
// an operator's decision) run at SERIALIZABLE and lock the rows they read (FOR UPDATE), and
// every UPDATE is guarded by the record still being open: whichever commits first wins, the
// other one's retry sees the record settled.

// openSuspensePG returns the open suspense records of a top-up (n and value), in record
// order, locked for the rest of the transaction.
func openSuspensePG(ctx context.Context, tx pgx.Tx, topupID string) (ns, values []int64, err error) {
	rows, err := tx.Query(ctx, `SELECT n, value_minor FROM suspense WHERE topup_id = $1 AND status = '' AND resolved_by = ''
		ORDER BY n FOR UPDATE`, topupID)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var n, v int64
		if err := rows.Scan(&n, &v); err != nil {
			return nil, nil, err
		}
		ns, values = append(ns, n), append(values, v)
	}
	return ns, values, rows.Err()
}

// followUpMatchesPG is followUpMatches: every note of follow-up t settles an open suspense
// record of the top-up it follows, which is the same account's, in the same currency.
func followUpMatchesPG(ctx context.Context, tx pgx.Tx, t wire.Topup) (bool, error) {
	var account, currency string
	err := tx.QueryRow(ctx, `SELECT account, currency FROM topups WHERE topup_id = $1`, t.FollowsTopupID).Scan(&account, &currency)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if account != t.Account || currency != t.Currency {
		return false, nil
	}
	_, values, err := openSuspensePG(ctx, tx, t.FollowsTopupID)
	if err != nil {
		return false, err
	}
	_, all := matchFollowUp(values, t)
	return all, nil
}

// resolveSuspensePG is resolveSuspense: the follow-up's credit closes the records its notes
// settle, in the credit's transaction.
func resolveSuspensePG(ctx context.Context, tx pgx.Tx, t wire.Topup, now time.Time) error {
	ns, values, err := openSuspensePG(ctx, tx, t.FollowsTopupID)
	if err != nil {
		return err
	}
	picked, _ := matchFollowUp(values, t)
	if len(picked) == 0 {
		return nil
	}
	ids := make([]int64, len(picked))
	for i, p := range picked {
		ids[i] = ns[p]
	}
	tag, err := tx.Exec(ctx, `UPDATE suspense SET resolved_by = $2, resolved_at = $3
		WHERE n = ANY($1) AND status = '' AND resolved_by = ''`, ids, t.TopupID, now)
	if err != nil {
		return err
	}
	if tag.RowsAffected() != int64(len(ids)) {
		// Settled by a writer that committed after the rows were read: start again.
		return errRace
	}
	return nil
}
