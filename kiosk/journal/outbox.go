package journal

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/kioskd/kioskd/sync/wire"
	bolt "go.etcd.io/bbolt"
)

// Top-up states.
const (
	TopupPending  = "pending"
	TopupCredited = "credited"
	TopupConflict = "conflict"
	// TopupHeld: the ledger stored the top-up for ops review without crediting it (a failed
	// check). It is final for the kiosk: the entry leaves the outbox and the receipt says
	// "under review"; ops release or reject it at the ledger.
	TopupHeld = "held"
)

// Topup is the view of a closed session's top-up.
type Topup struct {
	Seq         uint64          `json:"seq"`
	TopupID     string          `json:"topup_id"`
	SessionID   uint64          `json:"session_id"`
	ReceiptNo   uint64          `json:"receipt_no"`
	Account     string          `json:"account"`
	AccountMask string          `json:"account_masked"`
	AmountMinor int64           `json:"amount_minor"`
	Currency    string          `json:"currency"`
	Outcome     string          `json:"outcome"`
	Payload     json.RawMessage `json:"payload"`
	State       string          `json:"state"`
	LedgerRef   string          `json:"ledger_ref,omitempty"`
	AckedAt     time.Time       `json:"acked_at,omitzero"`
	ClosedAt    time.Time       `json:"closed_at"`
	PrintState  string          `json:"print_state,omitempty"`
	// HeldReason is the ledger's reason when it held the top-up (State TopupHeld).
	HeldReason string `json:"held_reason,omitempty"`
	// Prints counts the print attempts that may have put this receipt out: an attempt the
	// journal knows put nothing out (unsent, or no cut since it started) is taken off again.
	// While the receipt is not printed, Prints > 0 means the next print must be a COPY.
	Prints int `json:"prints,omitempty"`
	// PrintCuts is the printer's cut counter read just before the last print started
	// (PrintCutsKnown when it could be read).
	PrintCuts      uint64 `json:"print_cuts,omitempty"`
	PrintCutsKnown bool   `json:"print_cuts_known,omitempty"`
	// PrintCut is the counter value of the last cut the journal attributed to this receipt
	// (0 when none was): see ReconcileCuts.
	PrintCut uint64 `json:"print_cut,omitempty"`
}

// Wire decodes the published payload.
func (t *Topup) Wire() (wire.Topup, error) {
	var w wire.Topup
	err := json.Unmarshal(t.Payload, &w)
	return w, err
}

// Topup returns a top-up by its seq.
func (j *Journal) Topup(seq uint64) (Topup, bool, error) {
	var t Topup
	var ok bool
	err := j.db.View(func(tx *bolt.Tx) error {
		var err error
		ok, err = getJSON(tx, bTopups, u64(seq), &t)
		return err
	})
	return t, ok, err
}

// Outbox returns the top-ups still waiting for a credited/duplicate ack, in seq order,
// including those stopped by a conflict (State tells).
func (j *Journal) Outbox() ([]Topup, error) {
	var out []Topup
	err := j.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bOutbox).ForEach(func(k, _ []byte) error {
			var t Topup
			found, err := getJSON(tx, bTopups, k, &t)
			if err != nil {
				return err
			}
			if !found {
				return fmt.Errorf("%w: outbox entry %d has no top-up", ErrCorrupt, btoi(k))
			}
			out = append(out, t)
			return nil
		})
	})
	return out, err
}

// AckResult is what ApplyAck did.
type AckResult struct {
	Topup Topup
	// Changed is false when the ack repeated one already applied.
	Changed bool
	// Gap is set when the ledger's watermark says it lacks a top-up this journal counts as
	// acknowledged, or holds one this journal never closed.
	Gap string
}

// ApplyAck applies a verified ledger ack. credited/duplicate remove the outbox entry;
// conflict stops retries and keeps the entry for a technician; retry_later changes nothing.
// An ack whose amount or currency differs from the top-up is ErrAckMismatch and changes
// nothing.
func (j *Journal) ApplyAck(a wire.Ack) (AckResult, error) {
	var res AckResult
	kid, epoch, seq, err := wire.ParseTopupID(a.TopupID)
	if err != nil {
		return res, err
	}
	if kid != j.kioskID || epoch != j.epoch {
		return res, fmt.Errorf("%w: %s is not from this journal", ErrUnknownTopup, a.TopupID)
	}
	// A repeated ack of a top-up already credited (retries, redeliveries) changes nothing:
	// answer it from a read transaction rather than an fsync.
	if a.Status == wire.AckCredited || a.Status == wire.AckDuplicate {
		var t Topup
		var found bool
		if err := j.db.View(func(tx *bolt.Tx) error {
			var err error
			found, err = getJSON(tx, bTopups, u64(seq), &t)
			return err
		}); err != nil {
			return res, err
		}
		if found && t.TopupID == a.TopupID && (t.State == TopupCredited || t.State == TopupHeld) {
			if a.AmountMinor != t.AmountMinor || a.Currency != t.Currency {
				return res, fmt.Errorf("%w: ack says %d %s, top-up %s is %d %s", ErrAckMismatch, a.AmountMinor, a.Currency, t.TopupID, t.AmountMinor, t.Currency)
			}
			return AckResult{Topup: t}, nil
		}
	}
	err = j.update(func(w *writer) error {
		var t Topup
		found, err := getJSON(w.tx, bTopups, u64(seq), &t)
		if err != nil {
			return err
		}
		if !found || t.TopupID != a.TopupID {
			return fmt.Errorf("%w: %s", ErrUnknownTopup, a.TopupID)
		}
		if a.Status != wire.AckRetryLater && (a.AmountMinor != t.AmountMinor || a.Currency != t.Currency) {
			return fmt.Errorf("%w: ack says %d %s, top-up %s is %d %s", ErrAckMismatch, a.AmountMinor, a.Currency, t.TopupID, t.AmountMinor, t.Currency)
		}
		if a.AckedThroughSeq > 0 {
			res.Gap = w.checkWatermark(a.AckedThroughSeq, seq)
		}
		res.Topup = t
		switch a.Status {
		case wire.AckCredited, wire.AckDuplicate:
			// A held top-up that ops released is answered "duplicate" on a later resend:
			// it is credited now.
			if t.State == TopupCredited {
				return nil
			}
			t.State, t.LedgerRef, t.AckedAt = TopupCredited, a.LedgerRef, j.now().UTC()
			if _, err := w.append(TopupAckedEvent{TopupSeq: seq, TopupID: a.TopupID, Status: a.Status,
				LedgerRef: a.LedgerRef, AckedThroughSeq: a.AckedThroughSeq}); err != nil {
				return err
			}
			if err := w.tx.Bucket(bOutbox).Delete(u64(seq)); err != nil {
				return err
			}
		case wire.AckHeld:
			if t.State == TopupCredited || t.State == TopupHeld {
				return nil
			}
			t.State, t.LedgerRef, t.AckedAt, t.HeldReason = TopupHeld, a.LedgerRef, j.now().UTC(), a.Reason
			if _, err := w.append(TopupAckedEvent{TopupSeq: seq, TopupID: a.TopupID, Status: a.Status,
				LedgerRef: a.LedgerRef, AckedThroughSeq: a.AckedThroughSeq, Reason: a.Reason}); err != nil {
				return err
			}
			if err := w.tx.Bucket(bOutbox).Delete(u64(seq)); err != nil {
				return err
			}
		case wire.AckConflict:
			if t.State == TopupConflict || t.State == TopupCredited {
				return nil
			}
			t.State = TopupConflict
			if _, err := w.append(TopupConflictEvent{TopupSeq: seq, TopupID: a.TopupID, LedgerRef: a.LedgerRef}); err != nil {
				return err
			}
			if err := w.tx.Bucket(bOutbox).Put(u64(seq), []byte(TopupConflict)); err != nil {
				return err
			}
		default:
			return nil
		}
		res.Changed = true
		res.Topup = t
		return w.put(bTopups, u64(seq), t)
	})
	return res, err
}

// checkWatermark compares the ledger's highest contiguous seq with the journal: the ledger
// cannot hold more top-ups than this journal ever closed (if it does, a local transaction
// that closed a session was lost). The return describes the gap, "" when consistent.
func (w *writer) checkWatermark(through, acked uint64) string {
	last := w.tx.Bucket(bTopups).Sequence()
	var prev uint64
	if b := w.tx.Bucket(bMeta).Get(kWatermark); b != nil {
		prev = btoi(b)
	}
	if through > prev {
		_ = w.tx.Bucket(bMeta).Put(kWatermark, u64(through))
	}
	if through > last {
		return fmt.Sprintf("ledger holds top-ups through seq %d, journal closed only %d (lost local transaction?)", through, last)
	}
	// A lower watermark than seen before is not a loss: acks are answered by several ledger
	// workers and arrive in any order (sync/CONTRACT.md §5.2), so an older one can come last.
	return ""
}

// Topups calls fn for every top-up in seq order until fn returns false.
func (j *Journal) Topups(fn func(Topup) bool) error {
	err := j.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bTopups).ForEach(func(k, v []byte) error {
			var t Topup
			if err := json.Unmarshal(v, &t); err != nil {
				return fmt.Errorf("%w: top-up %d: %v", ErrCorrupt, btoi(k), err)
			}
			if !fn(t) {
				return errStop
			}
			return nil
		})
	})
	if errors.Is(err, errStop) {
		return nil
	}
	return err
}

var errStop = errors.New("stop")
