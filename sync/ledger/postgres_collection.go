package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kioskd/kioskd/sync/wire"
)

// PutCollection implements CollectionStore, as BoltStore.PutCollection: the collection_id is
// the primary key, and the record and its items' suspense links commit together.
func (s *PGStore) PutCollection(c wire.Collection) (status, ref string, err error) {
	if err := c.Validate(); err != nil {
		return "", "", fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	hash := c.ContentHash()
	raw, err := json.Marshal(c)
	if err != nil {
		return "", "", err
	}
	err = s.write(func(ctx context.Context, tx pgx.Tx) error {
		var stored string
		err := tx.QueryRow(ctx, `SELECT content_hash, ledger_ref FROM collections WHERE collection_id = $1`, c.CollectionID).Scan(&stored, &ref)
		switch {
		case err == nil:
			status = wire.CollectionDuplicate
			if stored != hash {
				status = wire.CollectionConflict
				_, err = tx.Exec(ctx, `UPDATE collections SET conflicts = conflicts + 1 WHERE collection_id = $1`, c.CollectionID)
			}
			return err
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		var n int64
		if err := tx.QueryRow(ctx, `SELECT nextval('collection_seq')`).Scan(&n); err != nil {
			return err
		}
		now := s.now().UTC().Truncate(time.Microsecond)
		ref = fmt.Sprintf("CO%012d", n)
		if _, err := tx.Exec(ctx, `INSERT INTO collections (collection_id, ledger_ref, kiosk_id, content_hash, stored_at, record)
			VALUES ($1, $2, $3, $4, $5, $6)`, c.CollectionID, ref, c.KioskID, hash, now, string(raw)); err != nil {
			return err
		}
		for _, it := range c.Uncertain {
			var sn int64
			if it.TopupID != "" {
				err := tx.QueryRow(ctx, `SELECT n FROM suspense WHERE collection_id = '' AND kiosk_id = $1 AND topup_id = $2
					AND value_minor = $3 AND reason = $4 ORDER BY n LIMIT 1`, c.KioskID, it.TopupID, it.ValueMinor, it.Reason).Scan(&sn)
				if err != nil && !errors.Is(err, pgx.ErrNoRows) {
					return err
				}
			}
			if sn != 0 {
				if _, err := tx.Exec(ctx, `UPDATE suspense SET collection_id = $2 WHERE n = $1`, sn, c.CollectionID); err != nil {
					return err
				}
				continue
			}
			account := ""
			if it.TopupID != "" {
				err := tx.QueryRow(ctx, `SELECT account FROM topups WHERE topup_id = $1`, it.TopupID).Scan(&account)
				if err != nil && !errors.Is(err, pgx.ErrNoRows) {
					return err
				}
			}
			if err := tx.QueryRow(ctx, `SELECT nextval('suspense_seq')`).Scan(&sn); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO suspense (n, ref, topup_id, kiosk_id, account, currency, value_minor, reason, at, collection_id)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
				sn, fmt.Sprintf("SU%012d", sn), it.TopupID, c.KioskID, account, c.Currency, it.ValueMinor, it.Reason, now, c.CollectionID); err != nil {
				return err
			}
		}
		status = wire.CollectionStored
		return nil
	})
	if err != nil {
		return "", "", fmt.Errorf("ledger: collection %s: %w", c.CollectionID, err)
	}
	return status, ref, nil
}

const collectionCols = `collection_id, ledger_ref, kiosk_id, content_hash, stored_at, conflicts, record`

func scanCollection(row pgx.Row) (CollectionRecord, error) {
	var r CollectionRecord
	var raw []byte
	if err := row.Scan(&r.CollectionID, &r.LedgerRef, &r.KioskID, &r.ContentHash, &r.StoredAt, &r.Conflicts, &raw); err != nil {
		return r, err
	}
	r.StoredAt = r.StoredAt.UTC()
	if err := json.Unmarshal(raw, &r.Collection); err != nil {
		return r, fmt.Errorf("collection %s record: %w", r.CollectionID, err)
	}
	return r, nil
}

// Collection implements CollectionStore.
func (s *PGStore) Collection(id string) (CollectionView, error) {
	var v CollectionView
	err := s.read(func(ctx context.Context, tx pgx.Tx) error {
		var err error
		v.CollectionRecord, err = scanCollection(tx.QueryRow(ctx, `SELECT `+collectionCols+` FROM collections WHERE collection_id = $1`, id))
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT `+suspenseCols+` FROM suspense WHERE collection_id = $1 ORDER BY n`, id)
		if err != nil {
			return err
		}
		v.Items, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (SuspenseRecord, error) { return scanSuspense(r) })
		return err
	})
	if err != nil {
		return CollectionView{}, fmt.Errorf("ledger: collection %s: %w", id, err)
	}
	if v.Items == nil {
		v.Items = []SuspenseRecord{}
	}
	return v, nil
}

// Collections implements CollectionStore.
func (s *PGStore) Collections(kioskID string) ([]CollectionRecord, error) {
	var out []CollectionRecord
	err := s.read(func(ctx context.Context, tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+collectionCols+` FROM collections WHERE $1 = '' OR kiosk_id = $1 ORDER BY ledger_ref`, kioskID)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (CollectionRecord, error) { return scanCollection(r) })
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ledger: collections: %w", err)
	}
	if out == nil {
		out = []CollectionRecord{}
	}
	return out, nil
}

var _ CollectionStore = (*PGStore)(nil)
