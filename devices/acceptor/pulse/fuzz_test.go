package pulse

import (
	"testing"
	"time"
)

// fuzzTimings are picked by the first byte of the input.
var fuzzTimings = []Timing{
	{},             // defaults: 5 ms debounce, 20-150 ms pulses, 300 ms gaps
	{Debounce: -1}, // no debounce
	{Debounce: time.Millisecond, MinWidth: 5 * ms, MaxWidth: 40 * ms, MaxGap: 60 * ms},
}

// fuzzEdges decodes the fuzz input: byte 0 picks the timing, then two bytes per edge: bit 7
// of the first is the level (1 = active), the other 15 bits the milliseconds since the
// previous edge.
func fuzzEdges(data []byte) (Timing, []Edge) {
	if len(data) == 0 {
		return fuzzTimings[0], nil
	}
	tm := fuzzTimings[int(data[0])%len(fuzzTimings)]
	var es []Edge
	at := t0
	for i := 1; i+1 < len(data); i += 2 {
		at = at.Add(time.Duration(int(data[i]&0x7f)<<8|int(data[i+1])) * ms)
		es = append(es, Edge{Active: data[i]&0x80 != 0, At: at})
	}
	return tm, es
}

// FuzzDecode feeds arbitrary edge sequences to the decoder and checks what must always hold:
// no panic, nothing negative, every edge accounted for, pulses within the width limits,
// trains numbered in order with their pulses no further apart than MaxGap, and the batch
// function Decode agreeing with the incremental decoder.
func FuzzDecode(f *testing.F) {
	enc := func(timing byte, steps ...int) []byte {
		b := []byte{timing}
		for i := 0; i+1 < len(steps); i += 2 {
			hi := byte(steps[i+1]>>8) & 0x7f
			if steps[i] != 0 {
				hi |= 0x80
			}
			b = append(b, hi, byte(steps[i+1]))
		}
		return b
	}
	f.Add(enc(0, 1, 0, 0, 50))                                            // one pulse
	f.Add(enc(0, 1, 0, 0, 50, 1, 100, 0, 50, 1, 100, 0, 50))              // three pulses
	f.Add(enc(0, 1, 0, 0, 2000))                                          // stuck line
	f.Add(enc(0, 1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 50))                    // bounce
	f.Add(enc(0, 1, 0, 0, 50, 0, 100, 1, 10))                             // missed edge
	f.Add(enc(1, 1, 0, 0, 25, 1, 2, 0, 25))                               // dropout, no debounce
	f.Add(enc(2, 1, 0, 0, 5, 1, 60, 0, 40, 1, 61, 0, 41))                 // boundaries, short timing
	f.Add(enc(0, 1, 0, 0, 20, 1, 300, 0, 150, 1, 301, 0, 19, 1, 0, 0, 0)) // exact limits
	f.Fuzz(func(t *testing.T, data []byte) {
		tm, es := fuzzEdges(data)
		d, err := NewDecoder(tm)
		if err != nil {
			t.Fatal(err)
		}
		tm = d.Timing()
		var out, all []Output
		for _, e := range es {
			out = d.Edge(e.Active, e.At, out[:0])
			all = append(all, out...)
		}
		for {
			dl, ok := d.Deadline()
			if !ok {
				break
			}
			before := len(all)
			out = d.Advance(dl, out[:0])
			all = append(all, out...)
			if len(all) == before && d.pending {
				t.Fatalf("Advance at its own deadline %v did nothing with a change pending", dl)
			}
		}
		st := d.Stats()

		// Every edge is a missed report or half of a pair (a believed change and its return, or
		// a change dismissed as noise); a line left active leaves one edge unpaired.
		paired := 2 * (st.Pulses + st.Glitches + st.LongPulses + st.Dropouts)
		if rest := uint64(len(es)) - st.Missed - paired; st.Missed+paired > uint64(len(es)) || rest > 1 {
			t.Fatalf("%d edges, stats %+v: %d unaccounted", len(es), st, rest)
		}

		var train uint64
		var count int
		var lastEnd time.Time
		var pulses, trains uint64
		for _, o := range all {
			switch o.Kind {
			case OutPulse:
				w := o.End.Sub(o.Start)
				if w < tm.MinWidth || w > tm.MaxWidth {
					t.Fatalf("pulse of %v outside %v..%v", w, tm.MinWidth, tm.MaxWidth)
				}
				if o.Count == 1 {
					if o.Train != train+1 {
						t.Fatalf("train %d follows train %d", o.Train, train)
					}
					train, count = o.Train, 0
				} else if gap := o.Start.Sub(lastEnd); o.Train != train || gap > tm.MaxGap || gap < 0 {
					t.Fatalf("pulse %d of train %d after a gap of %v (train %d open)", o.Count, o.Train, gap, train)
				}
				if o.Count != count+1 {
					t.Fatalf("pulse count %d after %d", o.Count, count)
				}
				count, lastEnd = o.Count, o.End
				pulses++
			case OutTrainEnd:
				if o.Train != train || o.Count != count || o.Count < 1 {
					t.Fatalf("train end %+v, open train %d with %d pulses", o, train, count)
				}
				trains++
			}
		}
		if pulses != st.Pulses || trains != st.Trains {
			t.Fatalf("outputs give %d pulses in %d trains, stats %+v", pulses, trains, st)
		}
		if d.Busy() && d.open {
			t.Fatalf("a train is still open after every deadline passed")
		}

		got, st2, err := Decode(tm, es)
		if err != nil || st2 != st || uint64(len(got)) != st.Trains {
			t.Fatalf("Decode disagrees: %d trains, %+v, %v; incremental %+v", len(got), st2, err, st)
		}
	})
}
