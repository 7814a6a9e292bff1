package journal

import (
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Printer cut accounting.
//
// The printer's autocutter counter is the only evidence of whether a receipt came out when
// the journal cannot say (a crash mid-print, a print that reported an error after the paper
// was cut, a commit the storage lost). Each cut is identified by the counter value it left,
// and the journal attributes cuts so that ONE PHYSICAL CUT IS NEVER COUNTED FOR TWO RECEIPTS:
//
//   - Prints happen one at a time, and each starts with a reading of the counter. Every cut
//     up to cutAccount.Counter is accounted for: attributed to a receipt, or known to be
//     none's.
//   - The attempt that started at reading Counter owns the window (Counter, next reading]:
//     the first cut in it is its receipt's (cutAccount.Open). A receipt is printed only if
//     such a cut exists: one after its start that no other receipt's window holds. More cuts
//     in the window belong to no receipt (a self-test page), never to the next receipt.
//   - The window closes at the next reading: the next print's start, or ReconcileCuts. A
//     print reported done takes the first cut at once (Counter+1).
//   - Every start is two commits. The first records the reading, closes the previous
//     window with it and names the receipt about to start (cutAccount.Next); the second is
//     the start itself, and only then may a byte go to the printer. Storage that loses its
//     last commit can therefore lose the start but not the reading before it: the receipt
//     it named owns the cut after that reading, and no earlier window stretches over it.
//   - A start without a reading (the counter could not be read) breaks the account: until
//     the next reading no cut is attributed, and a receipt whose attempt fell in that time
//     counts as possibly printed (a COPY is printed, never a second original).
//   - A reading below Counter (printer replaced or counter reset) starts a new account; the
//     open attempt is left possibly printed.
//
// A receipt's Prints counts its attempts that may have put it out; an attempt the counter
// shows did not is taken off again (PrintUnsent). So an unfinished receipt is printed again
// as the original when Prints is 0, and as a COPY otherwise.

// kCutAccount holds the cutAccount; kPrinterCuts is where journals written before it kept
// the last counter value (read at a print's start, plus one once that print was cut).
var (
	kCutAccount  = []byte("printer_cut_account")
	kPrinterCuts = []byte("printer_cuts")
)

// cutAccount is the journal's account of the printer's cut counter.
type cutAccount struct {
	// Counter: every cut up to this counter value is accounted for.
	Counter uint64 `json:"counter"`
	// Known is false until the first reading and after a print started without one.
	Known bool `json:"known"`
	// Open is the top-up whose print started at reading Counter and whose cut, if any, is the
	// first one after it; 0 when no window is open.
	Open uint64 `json:"open,omitempty"`
	// Next is the top-up whose print start was announced at reading Counter and not (yet)
	// committed.
	Next uint64 `json:"next,omitempty"`
}

func loadCutAccount(tx *bolt.Tx) (cutAccount, error) {
	var acc cutAccount
	found, err := getJSON(tx, bMeta, kCutAccount, &acc)
	if err != nil || found {
		return acc, err
	}
	// A journal from before the account: the last counter value, and the print that read it
	// is the one still unfinished whose start read exactly that value.
	if found, err := getJSON(tx, bMeta, kPrinterCuts, &acc.Counter); err != nil || !found {
		return cutAccount{}, err
	}
	acc.Known = true
	ts, err := unprinted(tx)
	if err != nil {
		return acc, err
	}
	n := 0
	for _, t := range ts {
		if (t.PrintState == PrintStarted || t.PrintState == PrintFailed) && t.PrintCutsKnown && t.PrintCuts == acc.Counter {
			acc.Open = t.Seq
			n++
		}
	}
	if n > 1 {
		// Which of them read it last is not recorded: no cut can be attributed.
		return cutAccount{}, nil
	}
	return acc, nil
}

func (w *writer) cutAccount() (cutAccount, error) { return loadCutAccount(w.tx) }

func (w *writer) putCutAccount(acc cutAccount) error { return w.put(bMeta, kCutAccount, acc) }

// settle closes the open window (and resolves an announced start that never committed) with
// a reading of the counter, and makes the reading the new Counter. It returns the top-ups
// whose state it changed and how many cuts since Counter belong to no receipt.
func (w *writer) settle(acc *cutAccount, reading uint64, known bool) (changed []Topup, unexplained uint64, err error) {
	// maybePrinted records that an announced start may have put its receipt out although the
	// record of the start was lost: without a reading to tell, it counts as a print.
	maybePrinted := func(seq uint64, why string) error {
		t, err := w.getTopup(seq)
		if err != nil {
			return err
		}
		if t.PrintState == PrintDone {
			return nil
		}
		if _, err := w.append(PrintFailedEvent{TopupSeq: seq, ReceiptNo: t.ReceiptNo, Detail: why}); err != nil {
			return err
		}
		t.Prints++
		t.PrintState = PrintFailed
		changed = append(changed, t)
		return w.put(bTopups, u64(seq), t)
	}
	defer func() {
		if err == nil {
			acc.Counter, acc.Known, acc.Open, acc.Next = reading, known, 0, 0
		}
	}()
	switch {
	case !known || !acc.Known || reading < acc.Counter:
		// No account to settle against: the open attempt keeps its Prints (possibly
		// printed), and so does an announced start whose record was lost.
		if acc.Next != 0 {
			err = maybePrinted(acc.Next, "its print was about to start when the record of the start was lost; the cut counter cannot tell whether it came out")
		}
		return changed, 0, err
	}
	cuts := reading - acc.Counter
	switch {
	case acc.Open != 0:
		t, err := w.getTopup(acc.Open)
		if err != nil {
			return nil, 0, err
		}
		if cuts > 0 {
			cuts--
			if t.PrintState != PrintDone {
				if err := w.markPrinted(&t, acc.Counter+1, fmt.Sprintf("the cut counter went from %d to %d after its print started", acc.Counter, reading)); err != nil {
					return nil, 0, err
				}
				changed = append(changed, t)
			}
		} else if t.PrintState == PrintStarted || t.PrintState == PrintFailed {
			if err := w.markNotPrinted(&t, fmt.Sprintf("the cut counter is still %d, as when its print started: nothing was cut", reading)); err != nil {
				return nil, 0, err
			}
			changed = append(changed, t)
		}
	case acc.Next != 0 && cuts > 0:
		// The start announced at Counter was lost with the storage's last commit, and its
		// receipt was cut: the first cut is its.
		cuts--
		t, err := w.getTopup(acc.Next)
		if err != nil {
			return nil, 0, err
		}
		if t.PrintState != PrintDone {
			t.Prints++
			t.PrintCuts, t.PrintCutsKnown = acc.Counter, true
			if err := w.markPrinted(&t, acc.Counter+1, fmt.Sprintf("the record of its print start was lost; the cut counter went from %d to %d after it was announced", acc.Counter, reading)); err != nil {
				return nil, 0, err
			}
			changed = append(changed, t)
		}
	}
	return changed, cuts, nil
}

// readCuts is the first commit of a print start (next != 0) or a reconciliation (next 0):
// it settles the account with a reading and, for a start, names the receipt about to start.
func (j *Journal) readCuts(reading uint64, known bool, next uint64) ([]Topup, error) {
	var changed []Topup
	err := j.update(func(w *writer) error {
		changed = nil
		acc, err := w.cutAccount()
		if err != nil {
			return err
		}
		before := acc
		ch, unexplained, err := w.settle(&acc, reading, known)
		if err != nil {
			return err
		}
		changed = ch
		acc.Next = next
		if acc == before && len(ch) == 0 {
			return nil // nothing new: no event
		}
		if unexplained > 0 {
			w.j.log.Warn("printer cut counter moved more than the receipts explain", "previous", before.Counter, "counter", reading, "unexplained", unexplained)
		}
		if known && before.Known && reading < before.Counter {
			w.j.log.Warn("printer cut counter went back (printer replaced or counter reset)", "previous", before.Counter, "counter", reading)
		}
		if _, err := w.append(CutsReadEvent{Counter: reading, Known: known, Previous: before.Counter, Unexplained: unexplained, Next: next}); err != nil {
			return err
		}
		return w.putCutAccount(acc)
	})
	return changed, err
}

// Verdict is what ReconcileCuts concluded about an unfinished receipt.
type Verdict string

const (
	// VerdictPrinted: a cut is attributed to it; the original is out and must not be
	// printed again.
	VerdictPrinted Verdict = "printed"
	// VerdictNotPrinted: no attempt can have put it out; print the original.
	VerdictNotPrinted Verdict = "not_printed"
	// VerdictUnknown: an attempt may have put it out; print it only as a COPY.
	VerdictUnknown Verdict = "unknown"
)

// PrintVerdict is the verdict on one receipt, with its top-up as committed.
type PrintVerdict struct {
	Topup   Topup
	Verdict Verdict
}

// ReconcileCuts settles the journal's account of the printer's cut counter with a reading
// taken while no print is in progress (at start-up, before printing what a crash left
// unprinted; known false when the counter could not be read or the printer has none), and
// returns a verdict for every receipt that was unfinished, oldest first. What it concludes
// (receipts found printed, attempts that put nothing out) is committed in one transaction,
// so a crash cannot make it count a cut twice. Calling it again with the same reading
// changes nothing.
func (j *Journal) ReconcileCuts(counter uint64, known bool) ([]PrintVerdict, error) {
	changed, err := j.readCuts(counter, known, 0)
	if err != nil {
		return nil, err
	}
	was := map[uint64]bool{}
	for _, t := range changed {
		was[t.Seq] = true
	}
	var out []PrintVerdict
	err = j.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bTopups).ForEach(func(k, v []byte) error {
			var t Topup
			if err := json.Unmarshal(v, &t); err != nil {
				return fmt.Errorf("%w: top-up %d: %v", ErrCorrupt, btoi(k), err)
			}
			switch {
			case t.PrintState == PrintDone && was[t.Seq]:
				out = append(out, PrintVerdict{Topup: t, Verdict: VerdictPrinted})
			case t.PrintState == PrintDone:
			case t.Prints > 0:
				out = append(out, PrintVerdict{Topup: t, Verdict: VerdictUnknown})
			default:
				out = append(out, PrintVerdict{Topup: t, Verdict: VerdictNotPrinted})
			}
			return nil
		})
	})
	return out, err
}
