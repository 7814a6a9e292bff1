package journal

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/kioskd/kioskd/kiosk/journal/journaltest"
	"github.com/kioskd/kioskd/sync/wire"
	bolt "go.etcd.io/bbolt"
)

// cutRigOptions skip fsync: the power cuts here are simulated on the file's contents
// (journaltest.DropLastCommit), which fsync does not change, and hundreds of commits per
// history would otherwise make the test slow.
var cutRigOptions = Options{KioskID: "K1", Currency: "CNY", NoSync: true}

// cutRig is a journal with closed top-ups and a printer whose cut counter the test moves.
type cutRig struct {
	t       *testing.T
	j       *Journal
	path    string
	counter uint64
	seqs    []uint64
}

func newCutRig(t *testing.T, receipts int) *cutRig {
	t.Helper()
	path := filepath.Join(t.TempDir(), "journal.db")
	j, err := Open(path, cutRigOptions)
	if err != nil {
		t.Fatal(err)
	}
	r := &cutRig{t: t, j: j, path: path, counter: 10}
	t.Cleanup(func() { r.j.Close() })
	for range receipts {
		r.closeTopup()
	}
	return r
}

func (r *cutRig) closeTopup() uint64 {
	r.t.Helper()
	s := mustSession(r.t, r.j, 50000)
	credit(r.t, r.j, s.ID, 1000)
	res, err := r.j.CloseSession(CloseParams{SessionID: s.ID, Outcome: wire.OutcomeComplete})
	if err != nil {
		r.t.Fatal(err)
	}
	r.seqs = append(r.seqs, res.Topup.Seq)
	return res.Topup.Seq
}

// start begins printing receipt i with a reading of the counter; it returns whether the
// print is a COPY (an earlier attempt may have put it out).
func (r *cutRig) start(i int) bool {
	r.t.Helper()
	t, err := r.j.MarkPrintStart(r.seqs[i], r.counter, true)
	if err != nil {
		r.t.Fatal(err)
	}
	return t.Prints > 1
}

func (r *cutRig) startUnknown(i int) {
	r.t.Helper()
	if _, err := r.j.MarkPrintStart(r.seqs[i], 0, false); err != nil {
		r.t.Fatal(err)
	}
}

// announce makes only the first commit of a print start (a crash between the two).
func (r *cutRig) announce(i int) {
	r.t.Helper()
	if _, err := r.j.readCuts(r.counter, true, r.seqs[i]); err != nil {
		r.t.Fatal(err)
	}
}

func (r *cutRig) cut() { r.counter++ }

func (r *cutRig) mark(i int, state string) {
	r.t.Helper()
	if _, err := r.j.MarkPrint(r.seqs[i], state, "test"); err != nil {
		r.t.Fatal(err)
	}
}

func (r *cutRig) reopen() {
	r.t.Helper()
	j, err := Open(r.path, cutRigOptions)
	if err != nil {
		r.t.Fatal(err)
	}
	r.j = j
}

func (r *cutRig) restart() {
	r.j.Close()
	r.reopen()
}

// powerCut restarts on storage that lost the last commit.
func (r *cutRig) powerCut() {
	r.t.Helper()
	r.j.Close()
	if err := journaltest.DropLastCommit(r.path); err != nil {
		r.t.Fatal(err)
	}
	r.reopen()
}

// reconcile returns the verdicts by receipt index.
func (r *cutRig) reconcile(known bool) map[int]Verdict {
	r.t.Helper()
	vs, err := r.j.ReconcileCuts(r.counter, known)
	if err != nil {
		r.t.Fatal(err)
	}
	got := map[int]Verdict{}
	for _, v := range vs {
		got[slices.Index(r.seqs, v.Topup.Seq)] = v.Verdict
	}
	return got
}

func (r *cutRig) expect(known bool, want map[int]Verdict) {
	r.t.Helper()
	if got := r.reconcile(known); !maps.Equal(got, want) {
		r.t.Fatalf("verdicts %v, want %v", got, want)
	}
}

// attributedCuts lists the cut of every receipt_printed event that names one.
func (r *cutRig) attributedCuts() []uint64 {
	var cuts []uint64
	r.j.Events(1, func(rec Record) bool {
		if rec.Type == EvPrinted {
			ev, err := rec.Payload()
			if err != nil {
				r.t.Fatal(err)
			}
			if c := ev.(*PrintedEvent).Cut; c != 0 {
				cuts = append(cuts, c)
			}
		}
		return true
	})
	return cuts
}

const (
	printed    = VerdictPrinted
	notPrinted = VerdictNotPrinted
	unknown    = VerdictUnknown
)

// TestCutAccounting runs print histories of two receipts (0 and 1) through failures,
// restarts, reprints and lost commits, then reconciles with the printer's counter: every
// unfinished receipt gets the verdict the paper supports, and no cut is credited twice.
func TestCutAccounting(t *testing.T) {
	tests := []struct {
		name  string
		steps func(r *cutRig)
		known bool // the final reading
		want  map[int]Verdict
		// reset: the counter went back, so cut values may repeat.
		reset bool
	}{
		{
			name: "failed receipt found printed after a restart, next never started",
			steps: func(r *cutRig) {
				r.start(0)
				r.cut()
				r.mark(0, PrintFailed)
				r.restart()
			},
			known: true, want: map[int]Verdict{0: printed, 1: notPrinted},
		},
		{
			name: "failed receipt found printed by MarkPrint, next never started",
			steps: func(r *cutRig) {
				r.start(0)
				r.cut()
				r.mark(0, PrintFailed)
				r.restart()
				r.mark(0, PrintDone) // the engine's own conclusion from the counter
				if n, ok, _ := r.j.PrinterCuts(); !ok || n != r.counter {
					r.t.Fatalf("printer cuts %d %v after the failed receipt was found printed, counter %d", n, ok, r.counter)
				}
			},
			known: true, want: map[int]Verdict{1: notPrinted},
		},
		{
			name: "failed without a cut, later receipt cut: the cut is not the failed one's",
			steps: func(r *cutRig) {
				r.start(0)
				r.mark(0, PrintFailed)
				r.start(1)
				r.cut()
				r.mark(1, PrintDone)
				r.restart()
			},
			known: true, want: map[int]Verdict{0: notPrinted},
		},
		{
			name: "failed without a cut, later receipt cut and crashed before its mark",
			steps: func(r *cutRig) {
				r.start(0)
				r.mark(0, PrintFailed)
				r.start(1)
				r.cut()
				r.restart()
			},
			known: true, want: map[int]Verdict{0: notPrinted, 1: printed},
		},
		{
			name: "failed with a cut, later receipt cut too",
			steps: func(r *cutRig) {
				r.start(0)
				r.cut()
				r.mark(0, PrintFailed)
				r.start(1)
				r.cut()
				r.mark(1, PrintDone)
				r.restart()
			},
			known: true, want: map[int]Verdict{},
		},
		{
			name: "COPY reprint of a receipt of unknown fate cuts, crash before its mark",
			steps: func(r *cutRig) {
				r.startUnknown(0)
				r.mark(0, PrintFailed)
				r.restart()
				r.expect(true, map[int]Verdict{0: unknown, 1: notPrinted})
				if !r.start(0) {
					r.t.Fatal("reprint of a receipt of unknown fate is not a COPY")
				}
				r.cut()
				r.restart()
			},
			known: true, want: map[int]Verdict{0: printed, 1: notPrinted},
		},
		{
			name: "COPY of a printed receipt cuts, crash before its mark",
			steps: func(r *cutRig) {
				r.start(0)
				r.cut()
				r.mark(0, PrintDone)
				if !r.start(0) {
					r.t.Fatal("second print of a printed receipt is not a COPY")
				}
				r.cut()
				r.restart()
			},
			known: true, want: map[int]Verdict{0: printed, 1: notPrinted},
		},
		{
			name: "power cut loses the printed mark after the cut",
			steps: func(r *cutRig) {
				r.start(0)
				r.cut()
				r.mark(0, PrintDone)
				r.powerCut()
			},
			known: true, want: map[int]Verdict{0: printed, 1: notPrinted},
		},
		{
			name: "power cut loses the print start after the cut",
			steps: func(r *cutRig) {
				r.start(0)
				r.cut()
				r.powerCut()
			},
			known: true, want: map[int]Verdict{0: printed, 1: notPrinted},
		},
		{
			name: "power cut loses the print start, nothing cut",
			steps: func(r *cutRig) {
				r.start(0)
				r.powerCut()
			},
			known: true, want: map[int]Verdict{0: notPrinted, 1: notPrinted},
		},
		{
			name: "failed without a cut, next receipt's start lost after its cut",
			steps: func(r *cutRig) {
				r.start(0)
				r.mark(0, PrintFailed)
				r.start(1)
				r.cut()
				r.powerCut()
			},
			known: true, want: map[int]Verdict{0: notPrinted, 1: printed},
		},
		{
			name: "crash between the reading and the start",
			steps: func(r *cutRig) {
				r.announce(1)
				r.restart()
			},
			known: true, want: map[int]Verdict{0: notPrinted, 1: notPrinted},
		},
		{
			name: "start without a reading lost after its cut",
			steps: func(r *cutRig) {
				r.startUnknown(0)
				r.cut()
				r.powerCut()
			},
			known: true, want: map[int]Verdict{0: unknown, 1: notPrinted},
		},
		{
			name: "receipt printed without a reading: its cut is not the next one's",
			steps: func(r *cutRig) {
				r.startUnknown(0)
				r.cut()
				r.mark(0, PrintDone)
				r.restart()
			},
			known: true, want: map[int]Verdict{1: notPrinted},
		},
		{
			name: "a self-test cut is not the next receipt's",
			steps: func(r *cutRig) {
				r.start(0)
				r.cut()
				r.mark(0, PrintDone)
				r.cut()
				r.restart()
			},
			known: true, want: map[int]Verdict{1: notPrinted},
		},
		{
			name: "failed with a cut and a self-test cut after it",
			steps: func(r *cutRig) {
				r.start(0)
				r.cut()
				r.mark(0, PrintFailed)
				r.cut()
				r.restart()
			},
			known: true, want: map[int]Verdict{0: printed, 1: notPrinted},
		},
		{
			name: "refused print, then a self-test cut",
			steps: func(r *cutRig) {
				r.start(0)
				r.mark(0, PrintUnsent)
				r.cut()
				r.restart()
			},
			known: true, want: map[int]Verdict{0: notPrinted, 1: notPrinted},
		},
		{
			name: "counter went back (printer replaced)",
			steps: func(r *cutRig) {
				r.start(0)
				r.mark(0, PrintFailed)
				r.counter = 3
				r.restart()
			},
			known: true, want: map[int]Verdict{0: unknown, 1: notPrinted}, reset: true,
		},
		{
			name: "no reading at the restart",
			steps: func(r *cutRig) {
				r.start(0)
				r.cut()
				r.restart()
			},
			known: false, want: map[int]Verdict{0: unknown, 1: notPrinted},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newCutRig(t, 2)
			tc.steps(r)
			r.expect(tc.known, tc.want)
			// A second reconciliation with the same reading changes nothing: the receipts
			// found printed are no longer unfinished, the others keep their verdict.
			again := maps.Clone(tc.want)
			maps.DeleteFunc(again, func(_ int, v Verdict) bool { return v == printed })
			var before, after uint64
			r.j.Events(1, func(Record) bool { before++; return true })
			r.expect(tc.known, again)
			r.j.Events(1, func(Record) bool { after++; return true })
			if after != before {
				t.Fatalf("a repeated reconciliation wrote %d events", after-before)
			}
			if cuts := r.attributedCuts(); !tc.reset && len(cuts) != len(slicesCompact(cuts)) {
				t.Fatalf("a cut was credited twice: %v", cuts)
			}
			// What the verdicts say is what the next print is: an original unless unknown.
			for i, v := range tc.want {
				if v == printed {
					continue
				}
				if copy := r.start(i); copy != (v == unknown) {
					t.Fatalf("receipt %d (%s) printed with copy=%v", i, v, copy)
				}
				r.cut()
				r.mark(i, PrintDone)
			}
			if _, err := r.j.Verify(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func slicesCompact(s []uint64) []uint64 {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}

func TestReconcileCutsUnknownTopup(t *testing.T) {
	r := newCutRig(t, 1)
	if _, err := r.j.MarkPrintStart(99, 10, true); err == nil {
		t.Fatal("print start of an unknown top-up accepted")
	}
	if _, err := r.j.MarkPrint(r.seqs[0], "smudged", ""); err == nil {
		t.Fatal("unknown print state accepted")
	}
}

// TestCutAccountingRandom prints receipts through random failures, crashes, power cuts that
// lose the last commit, restarts and reprints, against a printer model that counts what
// physically came out. Whatever the order: no receipt ever has two originals, no cut is
// credited twice, and when every counter reading succeeds and nothing else cuts paper,
// every receipt ends up with exactly one original.
func TestCutAccountingRandom(t *testing.T) {
	seeds := 15
	if testing.Short() {
		seeds = 5
	}
	for _, noisy := range []bool{false, true} {
		for seed := range seeds {
			t.Run(fmt.Sprintf("noisy=%v/seed=%d", noisy, seed), func(t *testing.T) {
				runCutModel(t, uint64(seed), noisy)
			})
		}
	}
}

func runCutModel(t *testing.T, seed uint64, noisy bool) {
	rng := rand.New(rand.NewPCG(seed, 7))
	r := newCutRig(t, 0)
	originals := map[uint64]int{}
	chance := func(p float64) bool { return rng.Float64() < p }
	calm := false // at the end: no more failures, so every receipt gets printed

	// crashed is returned (true) by print when the process died: the caller restarts.
	print := func(i int, forceCopy bool) (crashed bool) {
		if !calm && chance(0.05) {
			r.announce(i)
			return true
		}
		var copy bool
		if noisy && !calm && chance(0.15) {
			copy = forceCopy
			t, err := r.j.MarkPrintStart(r.seqs[i], 0, false)
			if err != nil {
				r.t.Fatal(err)
			}
			copy = copy || t.Prints > 1
		} else {
			copy = r.start(i) || forceCopy
		}
		if !calm && chance(0.1) {
			return true // died before the first byte
		}
		outcome := 0 // printed and cut
		if !calm {
			outcome = rng.IntN(4) // 1: cut, then an error; 2: error, no cut; 3: refused
		}
		if outcome <= 1 {
			r.cut()
			if !copy {
				originals[r.seqs[i]]++
			}
		}
		if !calm && chance(0.2) {
			return true // died before the mark
		}
		switch outcome {
		case 0:
			r.mark(i, PrintDone)
		case 1, 2:
			r.mark(i, PrintFailed)
		case 3:
			r.mark(i, PrintUnsent)
		}
		return false
	}
	// restart until a start-up gets through its reprints without dying.
	//lint:ignore S1021 restart calls itself
	var restart func()
	restart = func() {
		for {
			r.j.Close()
			if !calm && chance(0.4) {
				_ = journaltest.DropLastCommit(r.path) // fails after a drop with no commit since: a plain restart
			}
			r.reopen()
			// A top-up whose close was the lost commit no longer exists.
			r.seqs = slices.DeleteFunc(r.seqs, func(seq uint64) bool {
				_, ok, err := r.j.Topup(seq)
				if err != nil {
					t.Fatal(err)
				}
				return !ok
			})
			known := !noisy || calm || chance(0.8)
			vs, err := r.j.ReconcileCuts(r.counter, known)
			if err != nil {
				t.Fatal(err)
			}
			died := false
			for _, v := range vs {
				if v.Verdict == VerdictPrinted {
					continue
				}
				if print(slices.Index(r.seqs, v.Topup.Seq), v.Verdict == VerdictUnknown) {
					died = true
					break
				}
			}
			if !died {
				return
			}
		}
	}
	for range 25 {
		switch {
		case noisy && chance(0.1):
			r.cut() // a self-test page
		case chance(0.2):
			restart()
		default:
			r.closeTopup()
			if print(len(r.seqs)-1, false) {
				restart()
			}
		}
	}
	calm = true
	restart()
	if u, err := r.j.Unprinted(); err != nil || len(u) != 0 {
		t.Fatalf("unprinted after a calm restart: %d %v", len(u), err)
	}
	for _, seq := range r.seqs {
		switch n := originals[seq]; {
		case n > 1:
			t.Fatalf("top-up %d has %d originals", seq, n)
		case n == 0 && !noisy:
			t.Fatalf("top-up %d has no original", seq)
		}
	}
	if cuts := r.attributedCuts(); len(cuts) != len(slicesCompact(cuts)) {
		t.Fatalf("a cut was credited twice: %v", cuts)
	}
	if _, err := r.j.Verify(); err != nil {
		t.Fatal(err)
	}
}

// TestCutAccountFromOldJournal: a journal written before the cut account kept only the last
// counter value; the print that read it is the unfinished one whose start read that value.
func TestCutAccountFromOldJournal(t *testing.T) {
	for _, tc := range []struct {
		name    string
		started []int // receipts left started at counter 10
		cut     bool
		want    map[int]Verdict
	}{
		{name: "one print in flight, cut", started: []int{0}, cut: true, want: map[int]Verdict{0: printed, 1: notPrinted}},
		{name: "one print in flight, not cut", started: []int{0}, want: map[int]Verdict{0: notPrinted, 1: notPrinted}},
		{name: "two prints read the same value: no attribution", started: []int{0, 1}, cut: true, want: map[int]Verdict{0: unknown, 1: unknown}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newCutRig(t, 2)
			for _, i := range tc.started {
				r.start(i)
			}
			// Back to the old layout: no account, only the last counter value, and every
			// started receipt left as the old code left it.
			err := r.j.db.Update(func(tx *bolt.Tx) error {
				if err := tx.Bucket(bMeta).Delete(kCutAccount); err != nil {
					return err
				}
				w := &writer{j: r.j, tx: tx}
				for _, i := range tc.started {
					tp, err := w.getTopup(r.seqs[i])
					if err != nil {
						return err
					}
					tp.PrintState, tp.Prints, tp.PrintCuts, tp.PrintCutsKnown = PrintStarted, 1, 10, true
					if err := w.put(bTopups, u64(tp.Seq), tp); err != nil {
						return err
					}
				}
				return tx.Bucket(bMeta).Put(kPrinterCuts, []byte("10"))
			})
			if err != nil {
				t.Fatal(err)
			}
			if tc.cut {
				r.cut()
			}
			r.restart()
			r.expect(true, tc.want)
		})
	}
}
