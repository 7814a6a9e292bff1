package journal

import (
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Print states of a receipt.
const (
	PrintNone    = ""
	PrintStarted = "started"
	PrintDone    = "printed"
	PrintFailed  = "failed"
	// PrintUnsent: the last attempt put no receipt out, so it does not count as a print (the
	// next one is still the original): it was refused before any byte reached the printer,
	// or the printer's cut counter shows that nothing was cut since it started.
	PrintUnsent = "unsent"
)

type receiptRec struct {
	No       uint64 `json:"no"`
	TopupSeq uint64 `json:"topup_seq"`
}

// Receipt returns the top-up a receipt number belongs to.
func (j *Journal) Receipt(no uint64) (Topup, bool, error) {
	var t Topup
	var ok bool
	err := j.db.View(func(tx *bolt.Tx) error {
		var r receiptRec
		found, err := getJSON(tx, bReceipts, u64(no), &r)
		if err != nil || !found {
			return err
		}
		ok, err = getJSON(tx, bTopups, u64(r.TopupSeq), &t)
		return err
	})
	return t, ok, err
}

// getTopup reads the top-up of seq inside a write transaction.
func (w *writer) getTopup(seq uint64) (Topup, error) {
	var t Topup
	found, err := getJSON(w.tx, bTopups, u64(seq), &t)
	if err != nil {
		return t, err
	}
	if !found {
		return t, fmt.Errorf("%w: top-up seq %d", ErrUnknownTopup, seq)
	}
	return t, nil
}

// MarkPrint records a print state change of the receipt of top-up seq.
//
// PrintStarted is the form without a cut counter reading (MarkPrintStart is the one a print
// uses); PrintDone says the receipt came out and was cut; PrintFailed that the attempt
// failed (the receipt may still have been cut: the cut counter decides later); PrintUnsent
// that it put nothing out (refused before any byte reached the printer).
func (j *Journal) MarkPrint(seq uint64, state, detail string) (Topup, error) {
	switch state {
	case PrintStarted:
		return j.startPrint(seq, 0, false, detail)
	case PrintDone, PrintFailed, PrintUnsent:
	default:
		return Topup{}, fmt.Errorf("journal: unknown print state %q", state)
	}
	var t Topup
	err := j.update(func(w *writer) error {
		var err error
		if t, err = w.getTopup(seq); err != nil {
			return err
		}
		acc, err := w.cutAccount()
		if err != nil {
			return err
		}
		switch state {
		case PrintDone:
			var cut uint64
			if acc.Open == seq {
				// The attempt whose window is open reports its receipt cut: that is the
				// first cut after the reading it started at.
				acc.Counter++
				acc.Open = 0
				cut = acc.Counter
				if err := w.putCutAccount(acc); err != nil {
					return err
				}
			}
			return w.markPrinted(&t, cut, detail)
		case PrintFailed:
			// The attempt's window stays open: a receipt cut after the error (a timeout of a
			// print that went through) is still found by the next reading.
			if _, err := w.append(PrintFailedEvent{TopupSeq: seq, ReceiptNo: t.ReceiptNo, Detail: detail}); err != nil {
				return err
			}
			t.PrintState = PrintFailed
			return w.put(bTopups, u64(seq), t)
		default: // PrintUnsent
			if acc.Open == seq {
				// Nothing of it reached the printer: a cut after its reading is not its.
				acc.Open = 0
				if err := w.putCutAccount(acc); err != nil {
					return err
				}
			}
			return w.markNotPrinted(&t, detail)
		}
	})
	return t, err
}

// MarkPrintStart records that printing the receipt of top-up seq begins, with the printer's
// cut counter read just before when known. It is two commits: the reading first (which
// settles the previous print's cut and names seq as the print about to start), then the
// start itself; the first byte may go to the printer once it returned nil. Prints are one at
// a time: MarkPrintStart must not run while another print is between its start and its
// MarkPrint.
func (j *Journal) MarkPrintStart(seq uint64, cuts uint64, known bool) (Topup, error) {
	return j.startPrint(seq, cuts, known, "")
}

func (j *Journal) startPrint(seq uint64, cuts uint64, known bool, detail string) (Topup, error) {
	// First commit: settle the cut counter with this reading and announce seq.
	if _, err := j.readCuts(cuts, known, seq); err != nil {
		return Topup{}, err
	}
	var t Topup
	err := j.update(func(w *writer) error {
		var err error
		if t, err = w.getTopup(seq); err != nil {
			return err
		}
		acc, err := w.cutAccount()
		if err != nil {
			return err
		}
		if _, err := w.append(PrintStartedEvent{TopupSeq: seq, ReceiptNo: t.ReceiptNo, Cuts: cuts, CutsKnown: known, Detail: detail}); err != nil {
			return err
		}
		t.Prints++
		t.PrintState, t.PrintCuts, t.PrintCutsKnown = PrintStarted, cuts, known
		acc.Next = 0
		acc.Open = 0
		if known && acc.Known && acc.Counter == cuts {
			acc.Open = seq
		}
		if err := w.putCutAccount(acc); err != nil {
			return err
		}
		return w.put(bTopups, u64(seq), t)
	})
	return t, err
}

// markPrinted records the receipt of t as out, cut at counter value cut (0: not known).
func (w *writer) markPrinted(t *Topup, cut uint64, detail string) error {
	if _, err := w.append(PrintedEvent{TopupSeq: t.Seq, ReceiptNo: t.ReceiptNo, Detail: detail, Cut: cut}); err != nil {
		return err
	}
	t.PrintState = PrintDone
	if cut != 0 {
		t.PrintCut = cut
	}
	return w.put(bTopups, u64(t.Seq), *t)
}

// markNotPrinted records that the last attempt of t put no receipt out.
func (w *writer) markNotPrinted(t *Topup, detail string) error {
	if _, err := w.append(PrintFailedEvent{TopupSeq: t.Seq, ReceiptNo: t.ReceiptNo, Detail: detail, Unsent: true}); err != nil {
		return err
	}
	if (t.PrintState == PrintStarted || t.PrintState == PrintFailed) && t.Prints > 0 {
		t.Prints--
	}
	t.PrintState = PrintUnsent
	return w.put(bTopups, u64(t.Seq), *t)
}

// PrinterCuts returns the printer's cut counter as the journal last accounted for it: every
// cut up to that value is attributed to a receipt or known to be none's. ok is false when
// the journal has no such value (no reading yet, or a print started without one since).
func (j *Journal) PrinterCuts() (uint64, bool, error) {
	var acc cutAccount
	err := j.db.View(func(tx *bolt.Tx) error {
		var err error
		acc, err = loadCutAccount(tx)
		return err
	})
	return acc.Counter, acc.Known, err
}

// Unprinted returns the top-ups whose receipt never finished printing, oldest first.
func (j *Journal) Unprinted() ([]Topup, error) {
	var out []Topup
	err := j.db.View(func(tx *bolt.Tx) error {
		var err error
		out, err = unprinted(tx)
		return err
	})
	return out, err
}

func unprinted(tx *bolt.Tx) ([]Topup, error) {
	var out []Topup
	err := tx.Bucket(bTopups).ForEach(func(k, v []byte) error {
		var t Topup
		if err := json.Unmarshal(v, &t); err != nil {
			return fmt.Errorf("%w: top-up %d: %v", ErrCorrupt, btoi(k), err)
		}
		if t.PrintState != PrintDone {
			out = append(out, t)
		}
		return nil
	})
	return out, err
}
