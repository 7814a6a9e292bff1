package pulse

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/hw-sim/pulsesim"
)

var testNotes = acceptor.Denominations{
	1:  {ValueMinor: 1000, Currency: "CNY"},
	2:  {ValueMinor: 2000, Currency: "CNY"},
	5:  {ValueMinor: 5000, Currency: "CNY"},
	10: {ValueMinor: 10000, Currency: "CNY"},
}

const testGrace = 2 * time.Second

func cny(count int) acceptor.Note {
	n := testNotes[count]
	n.Code = count
	return n
}

// recorder is a Handler (and PulseRecorder) that records every call with its time.
type recorder struct {
	mu        sync.Mutex
	calls     []string // "pulse 1 2", "credited ...", "event accepting train 1"
	at        []time.Time
	pulses    [][2]int
	credited  []acceptor.Note
	creditCtx []error
	events    []acceptor.Event
	attempts  int
	changed   chan struct{}

	pulseErr  func(train uint64, count int) error
	creditErr func(attempt int) error // attempt counts every Credited call from 0
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{})} }

func (r *recorder) note(s string) {
	r.calls = append(r.calls, s)
	r.at = append(r.at, time.Now())
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *recorder) Escrow(context.Context, acceptor.Note) acceptor.Decision {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.note("escrow")
	return acceptor.Return
}

func (r *recorder) Credited(ctx context.Context, n acceptor.Note) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	attempt := r.attempts
	r.attempts++
	var err error
	if r.creditErr != nil {
		err = r.creditErr(attempt)
	}
	if err == nil {
		r.credited = append(r.credited, n)
		r.creditCtx = append(r.creditCtx, ctx.Err())
	}
	r.note(fmt.Sprintf("credited %v err=%v", n, err))
	return err
}

func (r *recorder) Event(_ context.Context, e acceptor.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	r.note("event " + e.String())
}

func (r *recorder) Pulse(_ context.Context, train uint64, count int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var err error
	if r.pulseErr != nil {
		err = r.pulseErr(train, count)
	}
	r.pulses = append(r.pulses, [2]int{int(train), count})
	r.note(fmt.Sprintf("pulse %d %d", train, count))
	return err
}

// waitFor waits, in the bubble's time, until cond holds; it fails after a minute.
func (r *recorder) waitFor(t *testing.T, what string, cond func(r *recorder) bool) {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		r.mu.Lock()
		ok := cond(r)
		ch := r.changed
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("timed out waiting for %s; calls:\n%s", what, strings.Join(r.snapshot(), "\n"))
		}
	}
}

func (r *recorder) snapshot() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

func (r *recorder) kinds() []acceptor.Kind {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ks []acceptor.Kind
	for _, e := range r.events {
		ks = append(ks, e.Kind)
	}
	return ks
}

func (r *recorder) eventsOf(k acceptor.Kind) []acceptor.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var es []acceptor.Event
	for _, e := range r.events {
		if e.Kind == k {
			es = append(es, e)
		}
	}
	return es
}

func (r *recorder) creditedNotes() []acceptor.Note {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]acceptor.Note(nil), r.credited...)
}

func nCredited(n int) func(*recorder) bool {
	return func(r *recorder) bool { return len(r.credited) >= n }
}

func lastEvent(k acceptor.Kind) func(*recorder) bool {
	return func(r *recorder) bool { return len(r.events) > 0 && r.events[len(r.events)-1].Kind == k }
}

func hasEvent(k acceptor.Kind) func(*recorder) bool {
	return func(r *recorder) bool {
		for _, e := range r.events {
			if e.Kind == k {
				return true
			}
		}
		return false
	}
}

// plainHandler hides the recorder's Pulse method: a handler that does not journal pulses.
type plainHandler struct{ r *recorder }

func (p plainHandler) Escrow(ctx context.Context, n acceptor.Note) acceptor.Decision {
	return p.r.Escrow(ctx, n)
}
func (p plainHandler) Credited(ctx context.Context, n acceptor.Note) error {
	return p.r.Credited(ctx, n)
}
func (p plainHandler) Event(ctx context.Context, e acceptor.Event) { p.r.Event(ctx, e) }

// rig is a driver running against the emulator inside a synctest bubble.
type rig struct {
	t      *testing.T
	sim    *pulsesim.Sim
	d      *Driver
	rec    *recorder
	ctx    context.Context
	cancel context.CancelFunc
	done   chan error
	start  time.Time
}

type rigOpt func(*Config, *pulsesim.Config)

func startRig(t *testing.T, opts ...rigOpt) *rig {
	t.Helper()
	scfg := pulsesim.Config{Notes: testNotes, InhibitLevel: gpio.High}
	cfg := Config{InhibitLevel: gpio.High, Notes: testNotes, InhibitGrace: testGrace}
	for _, o := range opts {
		o(&cfg, &scfg)
	}
	sim := pulsesim.New(scfg)
	cfg.Credit = sim.CreditPin()
	if cfg.Inhibit == nil {
		cfg.Inhibit = sim.InhibitPin()
	}
	if _, ok := cfg.Inhibit.(noPin); ok {
		cfg.Inhibit = nil
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, sim: sim, d: d, rec: newRecorder(), done: make(chan error, 1), start: time.Now()}
	r.ctx, r.cancel = context.WithCancel(t.Context())
	return r
}

// noPin in Config.Inhibit asks startRig for no inhibit line.
type noPin struct{ gpio.PinOut }

func (r *rig) run(h acceptor.Handler) *rig {
	if h == nil {
		h = r.rec
	}
	go func() { r.done <- r.d.Run(r.ctx, h) }()
	synctest.Wait()
	return r
}

func (r *rig) enable() {
	r.t.Helper()
	if err := r.d.Enable(r.ctx, []int{1, 2, 5, 10}); err != nil {
		r.t.Fatal(err)
	}
	r.rec.waitFor(r.t, "idle", lastEvent(acceptor.Idle))
}

func (r *rig) stop() {
	r.t.Helper()
	r.cancel()
	if err := <-r.done; err != nil {
		r.t.Fatalf("Run: %v", err)
	}
	if !r.sim.Inhibited() && r.d.cfg.Inhibit != nil {
		r.t.Error("unit left enabled after Run returned")
	}
}

// background runs f (an emulator action that takes bubble time) in its own goroutine; the
// channel gives its result.
func (r *rig) background(f func() error) <-chan error {
	c := make(chan error, 1)
	go func() { c <- f() }()
	return c
}

func (r *rig) insert(pulses int) {
	r.t.Helper()
	if err := r.sim.InsertNote(pulses); err != nil {
		r.t.Fatalf("InsertNote(%d): %v", pulses, err)
	}
}

func TestEveryDenomination(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := startRig(t).run(nil)
		r.enable()
		for i, c := range []int{1, 2, 5, 10} {
			r.insert(c)
			r.rec.waitFor(t, fmt.Sprintf("credit %d", i+1), nCredited(i+1))
			r.rec.waitFor(t, "idle again", lastEvent(acceptor.Idle))
		}
		r.stop()

		want := []acceptor.Note{cny(1), cny(2), cny(5), cny(10)}
		if got := r.rec.creditedNotes(); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("credited %v, want %v", got, want)
		}
		// Pulse is called for every pulse, in order, numbered per train.
		var wantPulses [][2]int
		for i, c := range []int{1, 2, 5, 10} {
			for k := 1; k <= c; k++ {
				wantPulses = append(wantPulses, [2]int{i + 1, k})
			}
		}
		if fmt.Sprint(r.rec.pulses) != fmt.Sprint(wantPulses) {
			t.Errorf("pulses %v, want %v", r.rec.pulses, wantPulses)
		}
		for _, k := range []acceptor.Kind{acceptor.ProtocolError, acceptor.Failure, acceptor.AcceptorJam} {
			if es := r.rec.eventsOf(k); len(es) != 0 {
				t.Errorf("unexpected %v events: %v", k, es)
			}
		}
		if n := len(r.rec.eventsOf(acceptor.Accepting)); n != 4 {
			t.Errorf("%d Accepting events, want one per train", n)
		}
		st := r.d.Stats()
		if st.Pulses != 18 || st.Trains != 4 || st.Glitches != 0 || st.Uncertain != 0 || st.Lost != 0 {
			t.Errorf("stats %+v", st)
		}
		// The emulator's cassette is the ground truth.
		var sum int64
		for _, n := range r.sim.Cassette() {
			if !n.Complete {
				t.Errorf("incomplete train in the cassette: %+v", n)
			}
			sum += n.ValueMinor
		}
		if sum != 18000 {
			t.Errorf("cassette holds %d, credited 18000", sum)
		}
	})
}

// The exact sequence of handler calls for one note, with the instant of each: pulses are
// journaled before anything is done with them, the credit comes MaxGap (+1ns) after the last
// pulse ended.
func TestCallOrderAndTiming(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := startRig(t).run(nil)
		r.rec.waitFor(t, "disabled", lastEvent(acceptor.Disabled))
		r.enable()
		from := len(r.rec.snapshot())
		t1 := time.Now()
		r.insert(2)
		r.rec.waitFor(t, "idle after the note", lastEvent(acceptor.Idle))
		r.stop()

		r.rec.mu.Lock()
		defer r.rec.mu.Unlock()
		var got []string
		for i := from; i < len(r.rec.calls); i++ {
			got = append(got, fmt.Sprintf("%v %s", r.rec.at[i].Sub(t1), r.rec.calls[i]))
		}
		// Transit 1 s; pulses 50 ms with 100 ms between; debounce 5 ms; MaxGap 300 ms.
		want := []string{
			"1.055s pulse 1 1",
			"1.055s event accepting train 1",
			"1.205s pulse 1 2",
			"1.500000001s credited 2000 CNY (code 0x2) err=<nil>",
			"1.500000001s event stacked 2000 CNY (code 0x2) code=0x2 train 1: 2 pulses",
			"1.500000001s event idle",
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		// Start-up: Identified at once, Disabled only after the inhibit grace.
		if r.rec.calls[0] != "event identified pulse acceptor: credit PULSE_CREDIT(0) (active Low), inhibit PULSE_INHIBIT(0) (inhibits at High)" {
			t.Errorf("first call %q", r.rec.calls[0])
		}
		if !strings.HasPrefix(r.rec.calls[1], "event disabled") || r.rec.at[1].Sub(r.start) != testGrace {
			t.Errorf("second call %q at %v, want disabled after %v", r.rec.calls[1], r.rec.at[1].Sub(r.start), testGrace)
		}
	})
}

func TestNoiseAndBounceRejected(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := startRig(t).run(nil)
		r.enable()
		if err := r.sim.Noise(time.Millisecond, 5*ms, 19*ms, 20*ms-time.Nanosecond); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if st := r.d.Stats(); st.Glitches != 4 || st.Pulses != 0 {
			t.Fatalf("after noise: stats %+v, want 4 glitches and no pulse", st)
		}
		if len(r.rec.pulses) != 0 || len(r.rec.eventsOf(acceptor.Accepting)) != 0 {
			t.Fatalf("noise reached the handler: %v", r.rec.snapshot())
		}
		// A relay that bounces 3 times at each end of each pulse still gives its 5 pulses.
		err := r.sim.InsertNoteWith(r.ctx, 5, pulsesim.Shape{Width: 50 * ms, Gap: 100 * ms, Bounce: 3, BounceWidth: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		r.rec.waitFor(t, "credit", nCredited(1))
		r.stop()
		if got := r.rec.creditedNotes(); len(got) != 1 || got[0] != cny(5) {
			t.Fatalf("credited %v, want one 50 CNY", got)
		}
		if st := r.d.Stats(); st.Glitches != 4+15 || st.Dropouts != 15 || st.Pulses != 5 {
			t.Errorf("stats %+v, want 19 glitches, 15 dropouts, 5 pulses", st)
		}
	})
}

// Tolerance edges through the whole driver: the timer and the edges meet exactly at the limits.
func TestToleranceEdges(t *testing.T) {
	for _, tc := range []struct {
		name  string
		shape pulsesim.Shape
		count int
		want  []acceptor.Note
	}{
		{"width exactly MinWidth", pulsesim.Shape{Width: DefaultMinWidth, Gap: 100 * ms}, 2, []acceptor.Note{cny(2)}},
		{"width exactly MaxWidth", pulsesim.Shape{Width: DefaultMaxWidth, Gap: 100 * ms}, 2, []acceptor.Note{cny(2)}},
		{"gap exactly MaxGap", pulsesim.Shape{Width: 50 * ms, Gap: DefaultMaxGap}, 2, []acceptor.Note{cny(2)}},
		{"gap just over MaxGap", pulsesim.Shape{Width: 50 * ms, Gap: DefaultMaxGap + time.Nanosecond}, 2, []acceptor.Note{cny(1), cny(1)}},
		{"width just under MinWidth", pulsesim.Shape{Width: DefaultMinWidth - time.Nanosecond, Gap: 100 * ms}, 2, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := startRig(t).run(nil)
				r.enable()
				if err := r.sim.InsertNoteWith(r.ctx, tc.count, tc.shape); err != nil {
					t.Fatal(err)
				}
				time.Sleep(time.Second) // bubble time: every train has ended by then
				synctest.Wait()
				r.stop()
				if got := r.rec.creditedNotes(); fmt.Sprint(got) != fmt.Sprint(tc.want) {
					t.Fatalf("credited %v, want %v", got, tc.want)
				}
				if len(r.rec.eventsOf(acceptor.AcceptorJam)) != 0 {
					t.Errorf("jam reported")
				}
			})
		})
	}
}

func TestStuckLineIsAJam(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := startRig(t).run(nil)
		r.enable()
		t1 := time.Now()
		simDone := r.background(func() error { return r.sim.StuckLine(3 * time.Second) })
		r.rec.waitFor(t, "jam", lastEvent(acceptor.AcceptorJam))
		if at := time.Since(t1); at != DefaultMaxWidth+time.Nanosecond {
			t.Errorf("jam reported after %v, want MaxWidth+1ns", at)
		}
		r.rec.waitFor(t, "jam cleared", lastEvent(acceptor.Idle))
		if at := time.Since(t1); at != 3*time.Second+DefaultDebounce {
			t.Errorf("jam cleared after %v, want 3s + debounce", at)
		}
		if err := <-simDone; err != nil {
			t.Fatal(err)
		}
		r.stop()
		if st := r.d.Stats(); st.LongPulses != 1 || st.Pulses != 0 {
			t.Errorf("stats %+v", st)
		}
		if len(r.rec.creditedNotes()) != 0 || len(r.rec.pulses) != 0 {
			t.Errorf("a stuck line was credited: %v", r.rec.snapshot())
		}
	})
}

// A stuck line carries no money: Run does not wait for it to clear on the way out.
func TestCancelDuringJamReturnsPromptly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := startRig(t).run(nil)
		r.enable()
		simDone := r.background(func() error { return r.sim.StuckLine(time.Minute) })
		r.rec.waitFor(t, "jam", lastEvent(acceptor.AcceptorJam))
		t1 := time.Now()
		r.stop()
		if took := time.Since(t1); took > DefaultEdgePoll {
			t.Errorf("Run took %v to return during a jam", took)
		}
		<-simDone
	})
}

// A stuck line in the middle of a train ends it; what was counted is credited as uncertain.
func TestJamInterruptsTrain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := startRig(t).run(nil)
		r.enable()
		r.background(func() error {
			return r.sim.Waveform(r.ctx, pulsesim.Step{Active: true, For: 50 * ms}, pulsesim.Step{For: 100 * ms},
				pulsesim.Step{Active: true, For: 50 * ms}, pulsesim.Step{For: 100 * ms},
				pulsesim.Step{Active: true, For: 2 * time.Second})
		})
		r.rec.waitFor(t, "released", func(r *recorder) bool { return len(r.credited) == 1 && lastEvent(acceptor.Idle)(r) })
		r.stop()
		if got := r.rec.creditedNotes(); len(got) != 1 || got[0] != (acceptor.Note{Code: 2}) {
			t.Fatalf("credited %v, want one uncertain note of 2 pulses", got)
		}
		pe := r.rec.eventsOf(acceptor.ProtocolError)
		if len(pe) != 1 || pe[0].Code != 2 || !strings.Contains(pe[0].Detail, "interrupted by a stuck credit line") {
			t.Errorf("protocol errors %v", pe)
		}
		ks := fmt.Sprint(r.rec.kinds()[1:])
		if ks != "[idle accepting acceptor_jam protocol_error stacked idle]" {
			t.Errorf("events %s", ks)
		}
	})
}

func TestPulseJournalFailureInhibitsAndKeepsCounting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := startRig(t)
		r.rec.pulseErr = func(_ uint64, count int) error {
			if count == 2 {
				return errors.New("disk full")
			}
			return nil
		}
		r.run(nil)
		r.enable()
		r.insert(5)
		r.rec.waitFor(t, "credit", nCredited(1))
		if !r.sim.Inhibited() {
			t.Error("unit not inhibited after the pulse journal failed")
		}
		if err := r.sim.InsertNote(1); !errors.Is(err, pulsesim.ErrInhibited) {
			t.Errorf("a second note was taken: %v", err)
		}
		r.stop()
		if got := r.rec.creditedNotes(); len(got) != 1 || got[0] != cny(5) {
			t.Fatalf("credited %v, want the 50 CNY whose pulses all arrived", got)
		}
		if len(r.rec.pulses) != 5 {
			t.Errorf("Pulse called %d times, want 5 (counting goes on)", len(r.rec.pulses))
		}
		f := r.rec.eventsOf(acceptor.Failure)
		if len(f) != 1 || !strings.Contains(f[0].Detail, "journal pulse 2 of train 1: disk full") {
			t.Errorf("failure events %v", f)
		}
		if st := r.d.Stats(); st.PulseErrors != 1 {
			t.Errorf("stats %+v", st)
		}
		// Pulse 1 was journaled, so Accepting came first; the failure follows pulse 2, and no
		// Disabled is reported (it would read as the fault having cleared).
		ks := fmt.Sprint(r.rec.kinds()[1:])
		if !strings.HasPrefix(ks, "[idle accepting failure stacked") {
			t.Errorf("events %s", ks)
		}
	})
}

func TestCreditedErrorIsRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := startRig(t)
		r.rec.creditErr = func(attempt int) error {
			if attempt < 3 {
				return errors.New("journal busy")
			}
			return nil
		}
		r.run(nil)
		r.enable()
		r.insert(2)
		r.rec.waitFor(t, "first failure", hasEvent(acceptor.Failure))
		t1 := time.Now()
		if !r.sim.Inhibited() {
			t.Error("unit not inhibited while a credit is owed")
		}
		if err := r.d.Enable(r.ctx, []int{1}); !errors.Is(err, ErrCreditOwed) {
			t.Errorf("Enable while a credit is owed: %v", err)
		}
		// A note that was already on its way arrives while the driver retries: its edges wait
		// in the buffer with their timestamps and are decoded once the credit is taken.
		r.sim.SetIgnoreInhibit(true)
		r.background(func() error { return r.sim.InsertNoteWith(r.ctx, 5, pulsesim.Shape{Width: 50 * ms, Gap: 100 * ms}) })
		r.rec.waitFor(t, "both credits", nCredited(2))
		r.stop()
		if at := r.rec.at[len(r.rec.at)-1].Sub(t1); at < 3*time.Second {
			t.Errorf("second credit after %v, want after the 3 retries", at)
		}
		if got := r.rec.creditedNotes(); fmt.Sprint(got) != fmt.Sprint([]acceptor.Note{cny(2), cny(5)}) {
			t.Fatalf("credited %v", got)
		}
		if r.rec.attempts != 5 {
			t.Errorf("%d Credited calls, want 3 failures + 2 successes", r.rec.attempts)
		}
		if f := r.rec.eventsOf(acceptor.Failure); len(f) != 1 {
			t.Errorf("failure events %v, want one per owed credit", f)
		}
		// Order: all of train 1 is settled before train 2's pulses reach the handler.
		calls := strings.Join(r.rec.snapshot(), "\n")
		if i, j := strings.Index(calls, "credited 2000 CNY (code 0x2) err=<nil>"), strings.Index(calls, "pulse 2 1"); i < 0 || j < i {
			t.Errorf("train 2 journaled before train 1 was credited:\n%s", calls)
		}
		if st := r.d.Stats(); st.CreditRetries != 3 {
			t.Errorf("stats %+v", st)
		}
	})
}

func TestUnknownPulseCountIsCreditedUncertain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := startRig(t).run(nil)
		r.enable()
		r.insert(3)
		r.rec.waitFor(t, "idle", func(r *recorder) bool { return len(r.credited) == 1 && lastEvent(acceptor.Idle)(r) })
		r.stop()
		if got := r.rec.creditedNotes(); len(got) != 1 || got[0] != (acceptor.Note{Code: 3}) {
			t.Fatalf("credited %v, want Note{Code: 3} with no value", got)
		}
		pe := r.rec.eventsOf(acceptor.ProtocolError)
		if len(pe) != 1 || pe[0].Detail != "train of 3 pulses matches no denomination" || pe[0].Code != 3 {
			t.Fatalf("protocol errors %v", pe)
		}
		ks := fmt.Sprint(r.rec.kinds()[1:])
		if ks != "[idle accepting protocol_error stacked idle]" {
			t.Errorf("events %s", ks)
		}
		if st := r.d.Stats(); st.Unknown != 1 || st.Uncertain != 1 {
			t.Errorf("stats %+v", st)
		}
		if c := r.sim.Cassette(); len(c) != 1 || c[0].ValueMinor != 0 || c[0].Pulses != 3 {
			t.Errorf("cassette %+v", c)
		}
	})
}

func TestPulsesWhileInhibited(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := startRig(t, func(_ *Config, s *pulsesim.Config) { s.IgnoreInhibit = true }).run(nil)
		r.rec.waitFor(t, "disabled", lastEvent(acceptor.Disabled))
		r.insert(1) // a faulty unit takes a note although inhibited since start
		r.rec.waitFor(t, "credit", nCredited(1))
		r.rec.waitFor(t, "disabled again", lastEvent(acceptor.Disabled))

		// A note drawn in just before the inhibit is not a violation.
		r.enable()
		if err := r.d.Inhibit(r.ctx); err != nil {
			t.Fatal(err)
		}
		t1 := time.Now()
		r.insert(2)
		r.rec.waitFor(t, "credit", nCredited(2))
		r.rec.waitFor(t, "disabled after the grace", lastEvent(acceptor.Disabled))
		if at := time.Since(t1); at != testGrace {
			t.Errorf("Disabled %v after Inhibit, want the grace %v", at, testGrace)
		}
		r.stop()
		if got := r.rec.creditedNotes(); fmt.Sprint(got) != fmt.Sprint([]acceptor.Note{cny(1), cny(2)}) {
			t.Fatalf("credited %v: money that arrived must be credited", got)
		}
		pe := r.rec.eventsOf(acceptor.ProtocolError)
		if len(pe) != 1 || pe[0].Detail != "pulses while inhibited (train 1)" {
			t.Fatalf("protocol errors %v", pe)
		}
		if st := r.d.Stats(); st.WhileInhibited != 1 {
			t.Errorf("stats %+v", st)
		}
	})
}

func TestInhibitLineLevels(t *testing.T) {
	for _, inh := range []gpio.Level{gpio.Low, gpio.High} {
		t.Run(inh.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := startRig(t, func(c *Config, s *pulsesim.Config) { c.InhibitLevel, s.InhibitLevel = inh, inh })
				pin := r.sim.InhibitPin()
				pin.Out(!inh) // whatever the line was, Run must inhibit
				r.run(nil)
				if pin.Read() != inh {
					t.Fatalf("after start the inhibit line is %v", pin.Read())
				}
				r.enable()
				if pin.Read() != !inh {
					t.Fatalf("after Enable the inhibit line is %v", pin.Read())
				}
				if err := r.d.Inhibit(r.ctx); err != nil || pin.Read() != inh {
					t.Fatalf("Inhibit: %v, line %v", err, pin.Read())
				}
				r.enable()
				if err := r.d.Reset(r.ctx); err != nil || pin.Read() != inh {
					t.Fatalf("Reset: %v, line %v", err, pin.Read())
				}
				r.enable()
				r.stop()
				if pin.Read() != inh {
					t.Fatalf("after Run the inhibit line is %v", pin.Read())
				}
			})
		})
	}
}

func TestNoInhibitLine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := startRig(t, func(c *Config, s *pulsesim.Config) { c.Inhibit = noPin{}; s.IgnoreInhibit = true }).run(nil)
		r.enable()
		r.insert(5)
		r.rec.waitFor(t, "credit", nCredited(1))
		if err := r.d.Inhibit(r.ctx); err != nil {
			t.Fatal(err)
		}
		r.rec.waitFor(t, "disabled", lastEvent(acceptor.Disabled))
		r.insert(1)
		r.rec.waitFor(t, "credit", nCredited(2))
		r.stop()
		pe := r.rec.eventsOf(acceptor.ProtocolError)
		if len(pe) != 1 || pe[0].Detail != "pulses while inhibited (no inhibit line wired) (train 2)" {
			t.Fatalf("protocol errors %v", pe)
		}
	})
}

func TestActiveHighLine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := startRig(t, func(c *Config, s *pulsesim.Config) { c.ActiveLevel, s.ActiveLevel = gpio.High, gpio.High }).run(nil)
		r.enable()
		r.insert(10)
		r.rec.waitFor(t, "credit", nCredited(1))
		r.stop()
		if got := r.rec.creditedNotes(); got[0] != cny(10) {
			t.Fatalf("credited %v", got)
		}
	})
}

func TestWithoutPulseRecorder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := startRig(t)
		r.run(plainHandler{r: r.rec})
		r.enable()
		r.insert(2)
		r.rec.waitFor(t, "credit", nCredited(1))
		r.stop()
		if got := r.rec.creditedNotes(); got[0] != cny(2) || len(r.rec.pulses) != 0 {
			t.Fatalf("credited %v, pulses %v", got, r.rec.pulses)
		}
	})
}

// A train that begins as the driver starts may be the tail of one the previous process saw
// begin: it is credited with no value.
func TestLineActiveAtStartMakesTheFirstTrainUncertain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := startRig(t)
		r.background(func() error {
			return r.sim.Waveform(context.Background(), pulsesim.Step{Active: true, For: 60 * ms}, pulsesim.Step{For: 100 * ms},
				pulsesim.Step{Active: true, For: 50 * ms})
		})
		synctest.Wait() // the line is active now
		r.run(nil)
		r.rec.waitFor(t, "credit", nCredited(1))
		r.stop()
		if got := r.rec.creditedNotes(); got[0] != (acceptor.Note{Code: 2}) {
			t.Fatalf("credited %v, want an uncertain 2-pulse note", got)
		}
		pe := r.rec.eventsOf(acceptor.ProtocolError)
		if len(pe) != 1 || !strings.Contains(pe[0].Detail, "may be the tail of an earlier one") {
			t.Fatalf("protocol errors %v", pe)
		}
	})
}

// A reader that sees the line at the level it already had missed two changes: a pulse may be
// lost, so the train is credited as uncertain.
func TestMissedEdgesMakeTheTrainUncertain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pin := &gpiotest.Pin{N: "RAW", L: gpio.High, EdgesChan: make(chan gpio.Level, 16)}
		d, err := New(Config{Credit: pin, Notes: testNotes, InhibitGrace: testGrace})
		if err != nil {
			t.Fatal(err)
		}
		rec := newRecorder()
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx, rec) }()
		time.Sleep(time.Second) // bubble time: past the start-up window
		for _, step := range []struct {
			lv    gpio.Level
			after time.Duration
		}{{gpio.Low, 50 * ms}, {gpio.High, 100 * ms}, {gpio.High, 50 * ms}, {gpio.Low, 50 * ms}, {gpio.High, 0}} {
			pin.EdgesChan <- step.lv
			time.Sleep(step.after)
		}
		rec.waitFor(t, "credit", nCredited(1))
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if got := rec.creditedNotes(); got[0] != (acceptor.Note{Code: 2}) {
			t.Fatalf("credited %v, want an uncertain 2-pulse note", got)
		}
		pe := rec.eventsOf(acceptor.ProtocolError)
		if len(pe) != 2 || !strings.Contains(pe[0].Detail, "a pulse may have been missed") ||
			!strings.Contains(pe[1].Detail, "went unseen during the train of 2 pulses") {
			t.Fatalf("protocol errors %v", pe)
		}
		if st := d.Stats(); st.Missed != 1 {
			t.Errorf("stats %+v", st)
		}
	})
}

func TestCancelWhileIdleReturnsPromptly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := startRig(t).run(nil)
		r.enable()
		t1 := time.Now()
		r.stop()
		if took := time.Since(t1); took > DefaultEdgePoll {
			t.Errorf("Run took %v to return, want at most one edge poll", took)
		}
		// synctest.Test itself fails if any goroutine Run started is still alive.
		if err := r.d.Enable(context.Background(), []int{1}); !errors.Is(err, acceptor.ErrNotRunning) {
			t.Errorf("Enable after Run: %v", err)
		}
	})
}

// Cancelled in the middle of a train, Run inhibits the unit, lets the train end and credits
// it with a context that is not cancelled, then returns.
func TestCancelMidTrainStillCredits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := startRig(t).run(nil)
		r.enable()
		simDone := r.background(func() error { return r.sim.InsertNote(5) })
		r.rec.waitFor(t, "pulse 2", func(r *recorder) bool { return len(r.pulses) >= 2 })
		r.stop()
		if err := <-simDone; err != nil {
			t.Fatal(err)
		}
		if got := r.rec.creditedNotes(); len(got) != 1 || got[0] != cny(5) {
			t.Fatalf("credited %v, want the 50 CNY that was arriving", got)
		}
		if r.rec.creditCtx[0] != nil {
			t.Errorf("Credited got a cancelled context: %v", r.rec.creditCtx[0])
		}
	})
}

func TestCancelMidTrainGivesUpAfterShutdownTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := startRig(t, func(c *Config, _ *pulsesim.Config) { c.ShutdownTimeout = 200 * ms }).run(nil)
		r.enable()
		simDone := r.background(func() error { return r.sim.InsertNote(10) })
		r.rec.waitFor(t, "pulse 2", func(r *recorder) bool { return len(r.pulses) >= 2 })
		t1 := time.Now()
		r.stop()
		if took := time.Since(t1); took > 200*ms+DefaultEdgePoll {
			t.Errorf("Run took %v to return", took)
		}
		<-simDone // the unit goes on pulsing into a line nobody reads
		if got := r.rec.creditedNotes(); len(got) != 0 {
			t.Fatalf("credited %v", got)
		}
		if st := r.d.Stats(); st.Lost != 1 {
			t.Errorf("stats %+v, want the cut train counted as lost", st)
		}
	})
}

func TestCommandErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := startRig(t)
		if err := r.d.Inhibit(r.ctx); !errors.Is(err, acceptor.ErrNotRunning) {
			t.Errorf("Inhibit before Run: %v", err)
		}
		r.run(nil)
		if err := r.d.Run(r.ctx, r.rec); !errors.Is(err, ErrAlreadyRunning) {
			t.Errorf("second Run: %v", err)
		}
		if err := r.d.Enable(r.ctx, []int{1, 3}); !errors.Is(err, ErrUnknownCode) {
			t.Errorf("Enable with an unknown count: %v", err)
		}
		if err := r.d.Enable(r.ctx, nil); err != nil || !r.sim.Inhibited() {
			t.Errorf("Enable(nil) = %v, inhibited %v; want the same as Inhibit", err, r.sim.Inhibited())
		}
		// Enabling "only 10 and 20" enables the whole unit: the codes cannot restrict it.
		if err := r.d.Enable(r.ctx, []int{1, 2}); err != nil || r.sim.Inhibited() {
			t.Errorf("Enable(1,2) = %v, inhibited %v", err, r.sim.Inhibited())
		}
		r.stop()
		if err := r.d.Run(context.Background(), nil); err == nil {
			t.Error("Run with a nil handler")
		}
	})
}

func TestNewChecksConfig(t *testing.T) {
	pin := &gpiotest.Pin{N: "X", EdgesChan: make(chan gpio.Level)}
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no credit pin", Config{Notes: testNotes}},
		{"no notes", Config{Credit: pin}},
		{"zero pulses", Config{Credit: pin, Notes: acceptor.Denominations{0: {ValueMinor: 100, Currency: "CNY"}}}},
		{"no value", Config{Credit: pin, Notes: acceptor.Denominations{1: {Currency: "CNY"}}}},
		{"no currency", Config{Credit: pin, Notes: acceptor.Denominations{1: {ValueMinor: 100}}}},
		{"bad timing", Config{Credit: pin, Notes: testNotes, Timing: Timing{MinWidth: 200 * ms, MaxWidth: 100 * ms}}},
	} {
		if _, err := New(tc.cfg); !errors.Is(err, ErrBadConfig) {
			t.Errorf("%s: %v, want ErrBadConfig", tc.name, err)
		}
	}
	d, err := New(Config{Credit: pin, Notes: testNotes, Model: "NV9 pulse"})
	if err != nil {
		t.Fatal(err)
	}
	info := d.Info()
	if !info.Escrowless || info.Protocol != "pulse" || info.Model != "NV9 pulse" || info.Denominations[5] != cny(5) {
		t.Errorf("Info = %+v", info)
	}
	info.Denominations[5] = acceptor.Note{}
	if d.Info().Denominations[5] != cny(5) {
		t.Error("Info shares its table with the driver")
	}
}

// A pin whose edge detection does not work: the reader notices the level at its polls.
func TestChangeWithoutEdgeIsNoticed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pin := &gpiotest.Pin{N: "DEAF", L: gpio.High, EdgesChan: make(chan gpio.Level)}
		d, err := New(Config{Credit: pin, Notes: testNotes, InhibitGrace: testGrace})
		if err != nil {
			t.Fatal(err)
		}
		rec := newRecorder()
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx, rec) }()
		time.Sleep(time.Second) // bubble time
		pin.Out(gpio.Low)       // stuck active, and no edge event
		rec.waitFor(t, "jam", lastEvent(acceptor.AcceptorJam))
		pin.Out(gpio.High)
		rec.waitFor(t, "released", lastEvent(acceptor.Disabled))
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if st := d.Stats(); st.Unseen != 2 || st.LongPulses != 1 {
			t.Errorf("stats %+v", st)
		}
	})
}
