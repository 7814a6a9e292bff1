package pulse

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

const ms = time.Millisecond

// wave builds edges from alternating durations, starting with the line going active at t0:
// active for d[0], idle for d[1], active for d[2], ... and idle after the last one.
func wave(d ...time.Duration) []Edge {
	var es []Edge
	at := t0
	active := true
	for _, x := range d {
		es = append(es, Edge{Active: active, At: at})
		at = at.Add(x)
		active = !active
	}
	if !active {
		es = append(es, Edge{Active: false, At: at})
	}
	return es
}

// train returns the durations of n pulses of width w separated by gaps g.
func train(n int, w, g time.Duration) []time.Duration {
	var d []time.Duration
	for i := range n {
		if i > 0 {
			d = append(d, g)
		}
		d = append(d, w)
	}
	return d
}

func join(parts ...[]time.Duration) []time.Duration {
	var d []time.Duration
	for _, p := range parts {
		d = append(d, p...)
	}
	return d
}

func counts(trains []Train) []int {
	var c []int
	for _, tr := range trains {
		c = append(c, tr.Pulses)
	}
	return c
}

func decodeOK(t *testing.T, tm Timing, es []Edge) ([]Train, DecoderStats) {
	t.Helper()
	trains, st, err := Decode(tm, es)
	if err != nil {
		t.Fatal(err)
	}
	return trains, st
}

func TestDecodeTable(t *testing.T) {
	def := Timing{} // 5 ms debounce, 20-150 ms pulses, gaps up to 300 ms
	for _, tc := range []struct {
		name    string
		d       []time.Duration
		want    []int
		st      DecoderStats
		interr  []bool
		suspect bool
	}{
		{name: "one pulse", d: train(1, 50*ms, 0), want: []int{1},
			st: DecoderStats{Pulses: 1, Trains: 1}},
		{name: "five pulses", d: train(5, 50*ms, 100*ms), want: []int{5},
			st: DecoderStats{Pulses: 5, Trains: 1}},
		{name: "two trains apart", d: join(train(2, 50*ms, 100*ms), []time.Duration{time.Second}, train(5, 50*ms, 100*ms)),
			want: []int{2, 5}, st: DecoderStats{Pulses: 7, Trains: 2}},
		{name: "width exactly MinWidth", d: train(3, 20*ms, 100*ms), want: []int{3},
			st: DecoderStats{Pulses: 3, Trains: 1}},
		{name: "width just under MinWidth", d: train(3, 20*ms-time.Nanosecond, 100*ms), want: nil,
			st: DecoderStats{Glitches: 3}},
		{name: "width exactly MaxWidth", d: train(2, 150*ms, 100*ms), want: []int{2},
			st: DecoderStats{Pulses: 2, Trains: 1}},
		{name: "gap exactly MaxGap keeps the train", d: train(3, 50*ms, 300*ms), want: []int{3},
			st: DecoderStats{Pulses: 3, Trains: 1}},
		{name: "gap just over MaxGap splits it", d: join(train(1, 50*ms, 0), []time.Duration{300*ms + time.Nanosecond}, train(2, 50*ms, 100*ms)),
			want: []int{1, 2}, st: DecoderStats{Pulses: 3, Trains: 2}},
		{name: "glitches between pulses change nothing",
			d:    []time.Duration{50 * ms, 40 * ms, 3 * ms, 40 * ms, 50 * ms, 40 * ms, 10 * ms, 40 * ms, 50 * ms},
			want: []int{3}, st: DecoderStats{Pulses: 3, Trains: 1, Glitches: 2}},
		{name: "a glitch does not stretch the gap",
			// pulse, 250 ms idle, glitch 10 ms, 250 ms idle, pulse: 510 ms between the pulses.
			d:    []time.Duration{50 * ms, 250 * ms, 10 * ms, 250 * ms, 50 * ms},
			want: []int{1, 1}, st: DecoderStats{Pulses: 2, Trains: 2, Glitches: 1}},
		{name: "dropout inside a pulse is bridged",
			d:    []time.Duration{25 * ms, 2 * ms, 25 * ms},
			want: []int{1}, st: DecoderStats{Pulses: 1, Trains: 1, Dropouts: 1}},
		{name: "contact bounce at both ends",
			d:    []time.Duration{1 * ms, 1 * ms, 1 * ms, 1 * ms, 50 * ms, 1 * ms, 1 * ms, 100 * ms, 50 * ms},
			want: []int{2}, st: DecoderStats{Pulses: 2, Trains: 1, Glitches: 2, Dropouts: 1}},
		{name: "stuck line is a jam and interrupts the train",
			d:    []time.Duration{50 * ms, 100 * ms, 50 * ms, 100 * ms, 2 * time.Second},
			want: []int{2}, interr: []bool{true}, st: DecoderStats{Pulses: 2, Trains: 1, LongPulses: 1}},
		{name: "pulse just over MaxWidth is a jam",
			d:    []time.Duration{150*ms + time.Nanosecond},
			want: nil, st: DecoderStats{LongPulses: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			trains, st := decodeOK(t, def, wave(tc.d...))
			if fmt.Sprint(counts(trains)) != fmt.Sprint(tc.want) {
				t.Errorf("trains %v, want %v", counts(trains), tc.want)
			}
			if st != tc.st {
				t.Errorf("stats %+v, want %+v", st, tc.st)
			}
			for i, tr := range trains {
				want := i < len(tc.interr) && tc.interr[i]
				if tr.Interrupted != want {
					t.Errorf("train %d interrupted=%v, want %v", i, tr.Interrupted, want)
				}
				if tr.N != uint64(i+1) {
					t.Errorf("train %d numbered %d", i, tr.N)
				}
			}
		})
	}
}

func TestDecodeTrainBounds(t *testing.T) {
	trains, _ := decodeOK(t, Timing{}, wave(train(3, 50*ms, 100*ms)...))
	if len(trains) != 1 {
		t.Fatalf("trains %v", trains)
	}
	if !trains[0].Start.Equal(t0) || !trains[0].End.Equal(t0.Add(350*ms)) {
		t.Errorf("train spans %v..%v, want t0..t0+350ms", trains[0].Start, trains[0].End)
	}
}

// The decoder says when it must next be woken, and a train ends exactly one nanosecond after
// MaxGap has passed since the end of its last pulse.
func TestDecoderDeadlines(t *testing.T) {
	d, err := NewDecoder(Timing{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := d.Deadline(); ok {
		t.Fatal("an idle decoder has a deadline")
	}
	var out []Output
	out = d.Edge(true, t0, out)
	if dl, _ := d.Deadline(); !dl.Equal(t0.Add(DefaultDebounce)) {
		t.Fatalf("deadline %v, want debounce end", dl)
	}
	out = d.Advance(t0.Add(DefaultDebounce), out)
	if dl, _ := d.Deadline(); !dl.Equal(t0.Add(DefaultMaxWidth + 1)) {
		t.Fatalf("deadline while active %v, want jam limit + 1ns", dl)
	}
	end := t0.Add(50 * ms)
	out = d.Edge(false, end, out)
	out = d.Advance(end.Add(DefaultDebounce), out)
	if len(out) != 1 || out[0].Kind != OutPulse || out[0].Count != 1 || out[0].Train != 1 {
		t.Fatalf("outputs %+v, want one pulse", out)
	}
	if !d.Busy() {
		t.Fatal("decoder not busy with a train open")
	}
	dl, _ := d.Deadline()
	if want := end.Add(DefaultMaxGap + 1); !dl.Equal(want) {
		t.Fatalf("train-end deadline %v, want %v", dl, want)
	}
	out = d.Advance(dl.Add(-1), out[:0])
	if len(out) != 0 {
		t.Fatalf("train ended at exactly MaxGap: %+v", out)
	}
	out = d.Advance(dl, out)
	if len(out) != 1 || out[0].Kind != OutTrainEnd || out[0].Count != 1 {
		t.Fatalf("outputs %+v, want the train end", out)
	}
	if d.Busy() {
		t.Fatal("decoder busy after the train ended")
	}
}

// A reader that sees the same level twice missed two changes; inside a train that makes the
// train suspect.
func TestDecodeMissedMakesTrainSuspect(t *testing.T) {
	es := wave(train(2, 50*ms, 100*ms)...)
	es = append(es, Edge{Active: false, At: es[len(es)-1].At.Add(50 * ms)})
	trains, st := decodeOK(t, Timing{}, es)
	if len(trains) != 1 || !trains[0].Suspect || st.Missed != 1 {
		t.Fatalf("trains %+v stats %+v, want one suspect train and one missed", trains, st)
	}
	// During the first pulse, before its train is open, it taints the train that pulse opens.
	es = []Edge{{true, t0}, {true, t0.Add(30 * ms)}, {false, t0.Add(60 * ms)}}
	trains, st = decodeOK(t, Timing{}, es)
	if len(trains) != 1 || !trains[0].Suspect || st.Missed != 1 {
		t.Fatalf("trains %+v stats %+v, want one suspect train", trains, st)
	}
	// Outside a train it is only counted.
	trains, st = decodeOK(t, Timing{}, []Edge{{false, t0}})
	if len(trains) != 0 || st.Missed != 1 {
		t.Fatalf("trains %+v stats %+v", trains, st)
	}
}

func TestDecodeClampsTimeGoingBack(t *testing.T) {
	es := []Edge{{true, t0}, {false, t0.Add(50 * ms)}, {true, t0.Add(-time.Hour)}, {false, t0.Add(100 * ms)}}
	trains, st := decodeOK(t, Timing{}, es)
	// The third edge is taken as t0+50ms, before the idle level of t0+50ms was believed: a
	// dropout, so the line was active from t0 to t0+100ms, one pulse.
	if fmt.Sprint(counts(trains)) != "[1]" || st.Dropouts != 1 || st.Pulses != 1 {
		t.Fatalf("trains %v stats %+v, want one pulse bridging a dropout", counts(trains), st)
	}
}

func TestDebounceDisabled(t *testing.T) {
	trains, st := decodeOK(t, Timing{Debounce: -1}, wave(25*ms, 2*ms, 25*ms))
	if fmt.Sprint(counts(trains)) != "[2]" || st.Dropouts != 0 {
		t.Fatalf("without debounce a 2 ms dropout splits the pulse: trains %v stats %+v", counts(trains), st)
	}
}

func TestTimingChecks(t *testing.T) {
	for _, tm := range []Timing{
		{MinWidth: 5 * ms, Debounce: 5 * ms},
		{MinWidth: 50 * ms, MaxWidth: 40 * ms},
		{MaxGap: 3 * ms, Debounce: 5 * ms},
		{MinWidth: -1},
	} {
		if _, err := NewDecoder(tm); !errors.Is(err, ErrBadTiming) {
			t.Errorf("NewDecoder(%+v) = %v, want ErrBadTiming", tm, err)
		}
	}
	if _, _, err := Decode(Timing{MinWidth: 1}, nil); !errors.Is(err, ErrBadTiming) {
		t.Errorf("Decode with MinWidth below Debounce: %v", err)
	}
}
