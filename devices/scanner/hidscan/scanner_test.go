package hidscan_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kioskd/kioskd/devices/scanner/hidscan"
	"github.com/kioskd/kioskd/hw-sim/hidsim"
)

// fakeDevice is an event source for Run: the test pushes batches of events (one batch is
// what one read returns), or an error such as an unplug. Its deadline is a timer, so inside
// a synctest bubble the inter-character timeout runs on the fake clock.
type fakeDevice struct {
	mu       sync.Mutex
	batches  [][]hidscan.Event
	err      error
	deadline time.Time
	wake     chan struct{}
}

func newFake() *fakeDevice { return &fakeDevice{wake: make(chan struct{}, 1)} }

func (f *fakeDevice) kick() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

func (f *fakeDevice) push(evs ...hidscan.Event) {
	f.mu.Lock()
	f.batches = append(f.batches, evs)
	f.mu.Unlock()
	f.kick()
}

func (f *fakeDevice) fail(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
	f.kick()
}

func (f *fakeDevice) SetReadDeadline(t time.Time) error {
	f.mu.Lock()
	f.deadline = t
	f.mu.Unlock()
	f.kick()
	return nil
}

func (f *fakeDevice) ReadEvents(buf []hidscan.Event) (int, error) {
	for {
		f.mu.Lock()
		if len(f.batches) > 0 {
			n := copy(buf, f.batches[0])
			f.batches[0] = f.batches[0][n:]
			if len(f.batches[0]) == 0 {
				f.batches = f.batches[1:]
			}
			f.mu.Unlock()
			return n, nil
		}
		if f.err != nil {
			err := f.err
			f.mu.Unlock()
			return 0, err
		}
		dl := f.deadline
		f.mu.Unlock()
		var timeout <-chan time.Time
		if !dl.IsZero() {
			d := time.Until(dl)
			if d <= 0 {
				return 0, os.ErrDeadlineExceeded
			}
			t := time.NewTimer(d)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-f.wake:
		case <-timeout:
			return 0, os.ErrDeadlineExceeded
		}
	}
}

// typed is the events a scanner sends for code and suffix, as hidsim types them: each key
// event followed by a SYN_REPORT.
func typed(t *testing.T, code, suffix string) []hidscan.Event {
	t.Helper()
	strokes, err := hidsim.Strokes(code, suffix)
	if err != nil {
		t.Fatal(err)
	}
	return toEvents(strokes)
}

func toEvents(strokes []hidsim.Stroke) []hidscan.Event {
	var out []hidscan.Event
	for _, s := range strokes {
		out = append(out, key(s.Code, s.Value), hidscan.Event{Type: hidscan.EvSyn, Code: hidscan.SynReport})
	}
	return out
}

func key(code uint16, value int32) hidscan.Event {
	return hidscan.Event{Type: hidscan.EvKey, Code: code, Value: value}
}

func tap(code uint16) []hidscan.Event { return []hidscan.Event{key(code, 1), key(code, 0)} }

// bench runs a Scanner on a fake device and collects what it reports.
type bench struct {
	dev   *fakeDevice
	mu    sync.Mutex
	codes []string
	errs  []error
	done  chan error
}

func newBench(t *testing.T, cfg hidscan.Config) (*bench, context.CancelFunc) {
	b := &bench{dev: newFake(), done: make(chan error, 1)}
	cfg.OnError = func(err error) { b.mu.Lock(); b.errs = append(b.errs, err); b.mu.Unlock() }
	sc := hidscan.New(b.dev, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		b.done <- sc.Run(ctx, func(c string) { b.mu.Lock(); b.codes = append(b.codes, c); b.mu.Unlock() })
	}()
	t.Cleanup(func() {
		cancel()
		<-b.done
	})
	return b, cancel
}

func (b *bench) got() ([]string, []error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.codes...), append([]error(nil), b.errs...)
}

const walletCode = "IMW1.acct-42.1767225600.Zx9_Qk-w.k1.SGVsbG8sIFdvcmxkIQ"

// allPrintable is every character a wallet payload may hold.
func allPrintable() string {
	var sb strings.Builder
	for c := byte(0x20); c <= 0x7e; c++ {
		sb.WriteByte(c)
	}
	return sb.String()
}

// TestCodes: every printable ASCII character survives the trip through key codes, with each
// suffix; with "none" the inter-character timeout ends the code.
func TestCodes(t *testing.T) {
	for _, suffix := range []string{"enter", "tab", "none"} {
		t.Run(suffix, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b, _ := newBench(t, hidscan.Config{Suffix: hidscan.Suffix(suffix)})
				b.dev.push(typed(t, walletCode, suffix)...)
				synctest.Wait()
				if suffix == "none" {
					time.Sleep(300 * time.Millisecond) // the code ends by the timeout
					synctest.Wait()
				}
				b.dev.push(typed(t, allPrintable(), suffix)...)
				synctest.Wait()
				time.Sleep(300 * time.Millisecond)
				synctest.Wait()
				codes, errs := b.got()
				if len(codes) != 2 || codes[0] != walletCode || codes[1] != allPrintable() || len(errs) != 0 {
					t.Fatalf("codes %q errs %v", codes, errs)
				}
			})
		})
	}
}

// TestKeysOneAtATime: a code whose events arrive one read at a time, as a slow scanner types.
func TestKeysOneAtATime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newBench(t, hidscan.Config{})
		for _, e := range typed(t, walletCode, "enter") {
			b.dev.push(e)
			time.Sleep(5 * time.Millisecond)
		}
		synctest.Wait()
		if codes, errs := b.got(); len(codes) != 1 || codes[0] != walletCode || len(errs) != 0 {
			t.Fatalf("codes %q errs %v", codes, errs)
		}
	})
}

// TestCapsLockAndKeypad: Caps Lock swaps the case of letters only, Shift undoes it; the
// keypad types digits and its Enter ends a code.
func TestCapsLockAndKeypad(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newBench(t, hidscan.Config{})
		var evs []hidscan.Event
		evs = append(evs, tap(hidscan.KeyCapsLock)...)
		evs = append(evs, tap(30)...)                                                  // a -> A
		evs = append(evs, key(hidscan.KeyLeftShift, 1))                                // Shift with Caps Lock:
		evs = append(evs, tap(48)...)                                                  // b -> b
		evs = append(evs, tap(3)...)                                                   // 2 -> @ (Shift still applies)
		evs = append(evs, key(hidscan.KeyLeftShift, 0))                                //
		evs = append(evs, tap(4)...)                                                   // 3
		evs = append(evs, tap(hidscan.KeyCapsLock)...)                                 // Caps Lock off
		evs = append(evs, tap(46)...)                                                  // c
		evs = append(evs, tap(79)...)                                                  // KP1
		evs = append(evs, tap(83)...)                                                  // KP.
		evs = append(evs, key(hidscan.KeyRightShift, 1), key(82, 1))                   // Shift does not change
		evs = append(evs, key(82, 0), key(hidscan.KeyRightShift, 0))                   // KP0
		evs = append(evs, hidscan.Event{Type: hidscan.EvMsc, Code: 4, Value: 0x70028}) // scan code
		evs = append(evs, tap(hidscan.KeyKPEnter)...)
		b.dev.push(evs...)
		synctest.Wait()
		if codes, errs := b.got(); len(codes) != 1 || codes[0] != "Ab@3c1.0" || len(errs) != 0 {
			t.Fatalf("codes %q errs %v", codes, errs)
		}
	})
}

// TestRefusedLines: a line with an unmapped key, a Ctrl chord, lost events or too many
// characters is discarded up to its suffix and reported; the next code is read cleanly, and
// autorepeat and lone suffixes are ignored.
func TestRefusedLines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newBench(t, hidscan.Config{MaxLen: 20})
		good := typed(t, "GOOD-1", "enter")
		var evs []hidscan.Event
		evs = append(evs, typed(t, "ab", "none")...)
		evs = append(evs, tap(59)...) // F1
		evs = append(evs, typed(t, "cd", "enter")...)
		evs = append(evs, good...)
		evs = append(evs, key(hidscan.KeyLeftCtrl, 1))
		evs = append(evs, tap(46)...) // Ctrl+C
		evs = append(evs, key(hidscan.KeyLeftCtrl, 0))
		evs = append(evs, typed(t, "x", "enter")...)
		evs = append(evs, typed(t, "ab", "none")...)
		evs = append(evs, hidscan.Event{Type: hidscan.EvSyn, Code: hidscan.SynDropped})
		evs = append(evs, typed(t, "cd", "enter")...)
		evs = append(evs, typed(t, strings.Repeat("z", 21), "enter")...)
		evs = append(evs, tap(hidscan.KeyEnter)...)                       // a lone suffix
		evs = append(evs, key(30, 1), key(30, 2), key(30, 2), key(30, 0)) // held: one a
		evs = append(evs, typed(t, "", "enter")...)
		evs = append(evs, typed(t, strings.Repeat("y", 20), "enter")...) // exactly MaxLen
		b.dev.push(evs...)
		synctest.Wait()
		codes, errs := b.got()
		if strings.Join(codes, ",") != "GOOD-1,a,"+strings.Repeat("y", 20) {
			t.Errorf("codes %q", codes)
		}
		want := []error{hidscan.ErrBadKey, hidscan.ErrBadKey, hidscan.ErrDropped, hidscan.ErrTooLong}
		if len(errs) != len(want) {
			t.Fatalf("errors %v, want %v", errs, want)
		}
		for i := range want {
			if !errors.Is(errs[i], want[i]) {
				t.Errorf("error %d is %v, want %v", i, errs[i], want[i])
			}
		}
	})
}

// TestInterCharTimeout: a line cut short is reported when the timeout passes, with no further
// key needed, and is never glued to the next code.
func TestInterCharTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newBench(t, hidscan.Config{InterCharTimeout: 100 * time.Millisecond})
		b.dev.push(typed(t, "IMW1.par", "none")...)
		synctest.Wait()
		time.Sleep(99 * time.Millisecond)
		synctest.Wait()
		if _, errs := b.got(); len(errs) != 0 {
			t.Fatalf("reported before the timeout: %v", errs)
		}
		time.Sleep(50 * time.Millisecond)
		synctest.Wait()
		if _, errs := b.got(); len(errs) != 1 || !errors.Is(errs[0], hidscan.ErrIncomplete) {
			t.Fatalf("errs %v, want one ErrIncomplete", errs)
		}
		b.dev.push(typed(t, walletCode, "enter")...)
		synctest.Wait()
		if codes, _ := b.got(); len(codes) != 1 || codes[0] != walletCode {
			t.Fatalf("codes %q", codes)
		}
	})
}

// TestKernelTimestamps: the kernel's event times decide the gap, not when the events were
// read: keys typed 300 ms apart but read in one batch are two lines; keys typed 1 ms apart but
// read late (the reader was descheduled past the deadline) are one code.
func TestKernelTimestamps(t *testing.T) {
	stamp := func(evs []hidscan.Event, at time.Time, step time.Duration) []hidscan.Event {
		out := make([]hidscan.Event, len(evs))
		for i, e := range evs {
			e.Time = at.Add(time.Duration(i) * step)
			out[i] = e
		}
		return out
	}
	synctest.Test(t, func(t *testing.T) {
		b, _ := newBench(t, hidscan.Config{InterCharTimeout: 100 * time.Millisecond})
		t0 := time.Now()
		first := stamp(typed(t, "cut", "none"), t0, time.Millisecond)
		second := stamp(typed(t, "whole", "enter"), t0.Add(300*time.Millisecond), time.Millisecond)
		b.dev.push(append(first, second...)...)
		synctest.Wait()
		codes, errs := b.got()
		if len(codes) != 1 || codes[0] != "whole" || len(errs) != 1 || !errors.Is(errs[0], hidscan.ErrIncomplete) {
			t.Fatalf("codes %q errs %v", codes, errs)
		}
	})
	synctest.Test(t, func(t *testing.T) {
		b, _ := newBench(t, hidscan.Config{InterCharTimeout: 100 * time.Millisecond})
		t0 := time.Now()
		evs := stamp(typed(t, "late-but-whole", "enter"), t0, time.Millisecond)
		b.dev.push(evs[:4]...)
		synctest.Wait()
		time.Sleep(102 * time.Millisecond) // the deadline passed at 100 ms: Run probes once more
		b.dev.push(evs[4:]...)
		synctest.Wait()
		codes, errs := b.got()
		if len(codes) != 1 || codes[0] != "late-but-whole" || len(errs) != 0 {
			t.Fatalf("codes %q errs %v", codes, errs)
		}
	})
}

// TestUnplug: the device's error ends Run (the supervisor reopens it); the partial line is
// reported, not kept for the next device.
func TestUnplug(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newBench(t, hidscan.Config{})
		b.dev.push(typed(t, "half", "none")...)
		synctest.Wait()
		b.dev.fail(syscall.ENODEV)
		err := <-b.done
		b.done <- nil // for the cleanup
		if !errors.Is(err, syscall.ENODEV) {
			t.Fatalf("Run: %v, want ENODEV", err)
		}
		if _, errs := b.got(); len(errs) != 1 || !errors.Is(errs[0], hidscan.ErrIncomplete) {
			t.Fatalf("errs %v", errs)
		}
	})
}

// TestCancel: Run returns nil when its context ends, also while waiting.
func TestCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, cancel := newBench(t, hidscan.Config{})
		synctest.Wait()
		cancel()
		if err := <-b.done; err != nil {
			t.Fatalf("Run: %v", err)
		}
		b.done <- nil
	})
}

func TestParseSuffix(t *testing.T) {
	for in, want := range map[string]hidscan.Suffix{"": hidscan.SuffixEnter, "enter": hidscan.SuffixEnter, "tab": hidscan.SuffixTab, "none": hidscan.SuffixNone} {
		if got, err := hidscan.ParseSuffix(in); err != nil || got != want {
			t.Errorf("ParseSuffix(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := hidscan.ParseSuffix("Enter"); err == nil || !strings.Contains(err.Error(), "enter, tab, none") {
		t.Errorf("ParseSuffix(Enter): %v", err)
	}
}
