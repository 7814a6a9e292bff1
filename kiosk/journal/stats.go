package journal

import (
	"encoding/hex"
	"encoding/json"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Stats summarises the journal for heartbeats and diagnostics.
type Stats struct {
	Events       uint64    `json:"events"`
	OutboxDepth  int       `json:"outbox_depth"`
	OutboxMinor  int64     `json:"outbox_minor"`
	OldestUnsent time.Time `json:"oldest_unacked,omitzero"`
	Uncertain    int       `json:"uncertain"`
	SizeBytes    int64     `json:"size_bytes"`
	LastTopupSeq uint64    `json:"last_topup_seq"`
	Head         string    `json:"head"`
	Watermark    uint64    `json:"ledger_watermark"`
}

// Stats reads the summary.
func (j *Journal) Stats() (Stats, error) {
	var st Stats
	err := j.db.View(func(tx *bolt.Tx) error {
		st.Events = tx.Bucket(bEvents).Sequence()
		st.SizeBytes = tx.Size()
		st.LastTopupSeq = tx.Bucket(bTopups).Sequence()
		st.Watermark = btoi(tx.Bucket(bMeta).Get(kWatermark))
		st.Head = hex.EncodeToString(tx.Bucket(bMeta).Get(kHead))
		if err := tx.Bucket(bOutbox).ForEach(func(k, v []byte) error {
			var t Topup
			if _, err := getJSON(tx, bTopups, k, &t); err != nil {
				return err
			}
			st.OutboxDepth++
			st.OutboxMinor += t.AmountMinor
			if st.OldestUnsent.IsZero() || t.ClosedAt.Before(st.OldestUnsent) {
				st.OldestUnsent = t.ClosedAt
			}
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bUncertain).ForEach(func(_, v []byte) error {
			var u Uncertain
			if json.Unmarshal(v, &u) == nil && !u.Settled {
				st.Uncertain++
			}
			return nil
		})
	})
	return st, err
}

// IOStats counts the journal's writes since Open.
type IOStats struct {
	// Commits is the number of committed write transactions of the money and event writers
	// (each one an fsync of the file).
	Commits uint64
	// PageWrites is bbolt's count of pages written by every commit (checkpoints and the
	// archive included).
	PageWrites int64
}

// IOStats returns the write counters: what untrusted input must not move (a refused code or
// line noise costs no write).
func (j *Journal) IOStats() IOStats {
	st := j.db.Stats()
	return IOStats{Commits: j.commits.Load(), PageWrites: st.TxStats.GetWrite()}
}
