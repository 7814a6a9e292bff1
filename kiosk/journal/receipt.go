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
	// PrintUnsent: the attempt was refused before any byte reached the printer, so it does
	// not count as a print (the next one is still the original).
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

// MarkPrint records a print state change of the receipt of top-up seq. PrintStarted is
// committed before the first byte goes to the printer: on a restart, a receipt found
// "started" may have been printed, so it is reprinted only as a COPY.
func (j *Journal) MarkPrint(seq uint64, state, detail string) (Topup, error) {
	var t Topup
	err := j.update(func(w *writer) error {
		found, err := getJSON(w.tx, bTopups, u64(seq), &t)
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("%w: top-up seq %d", ErrUnknownTopup, seq)
		}
		typ := map[string]string{PrintStarted: EvPrintStarted, PrintDone: EvPrinted, PrintFailed: EvPrintFailed, PrintUnsent: EvPrintFailed}[state]
		if typ == "" {
			return fmt.Errorf("journal: unknown print state %q", state)
		}
		if _, err := w.append(typ, map[string]any{"topup_seq": seq, "receipt_no": t.ReceiptNo, "detail": detail}); err != nil {
			return err
		}
		if state == PrintDone && t.PrintCutsKnown && t.PrintState == PrintStarted {
			// The receipt was cut: the printer's counter is one further.
			if err := w.put(bMeta, kPrinterCuts, t.PrintCuts+1); err != nil {
				return err
			}
		}
		switch state {
		case PrintStarted:
			t.Prints++
		case PrintUnsent:
			if t.PrintState == PrintStarted && t.Prints > 0 {
				t.Prints--
			}
		}
		t.PrintState = state
		return w.put(bTopups, u64(seq), t)
	})
	return t, err
}

// MarkPrintStart records that printing the receipt of top-up seq begins, with the printer's
// cut counter when known (see Topup.PrintCuts).
func (j *Journal) MarkPrintStart(seq uint64, cuts uint64, known bool) (Topup, error) {
	var t Topup
	err := j.update(func(w *writer) error {
		found, err := getJSON(w.tx, bTopups, u64(seq), &t)
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("%w: top-up seq %d", ErrUnknownTopup, seq)
		}
		if _, err := w.append(EvPrintStarted, map[string]any{"topup_seq": seq, "receipt_no": t.ReceiptNo, "cuts": cuts, "cuts_known": known}); err != nil {
			return err
		}
		t.Prints++
		t.PrintState, t.PrintCuts, t.PrintCutsKnown = PrintStarted, cuts, known
		if known {
			if err := w.put(bMeta, kPrinterCuts, cuts); err != nil {
				return err
			}
		}
		return w.put(bTopups, u64(seq), t)
	})
	return t, err
}

var kPrinterCuts = []byte("printer_cuts")

// PrinterCuts returns the printer's cut counter as the journal last knew it: read at the
// start of the last print, plus one once that print was cut.
func (j *Journal) PrinterCuts() (uint64, bool, error) {
	var n uint64
	var ok bool
	err := j.db.View(func(tx *bolt.Tx) error {
		var err error
		ok, err = getJSON(tx, bMeta, kPrinterCuts, &n)
		return err
	})
	return n, ok, err
}

// Unprinted returns the top-ups whose receipt never finished printing, oldest first.
func (j *Journal) Unprinted() ([]Topup, error) {
	var out []Topup
	err := j.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bTopups).ForEach(func(k, v []byte) error {
			var t Topup
			if err := json.Unmarshal(v, &t); err != nil {
				return fmt.Errorf("%w: top-up %d: %v", ErrCorrupt, btoi(k), err)
			}
			if t.PrintState != PrintDone {
				out = append(out, t)
			}
			return nil
		})
	})
	return out, err
}
