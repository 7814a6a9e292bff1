package pulse

import (
	"testing"
	"time"
)

// BenchmarkDecoderEdge measures the decoder per edge on a stream of 5-pulse trains with a
// little contact bounce, the work Run does for each edge the reader hands it.
func BenchmarkDecoderEdge(b *testing.B) {
	var d []time.Duration
	for range 20 {
		d = append(d, 1*ms, 1*ms) // bounce
		d = append(d, train(5, 50*ms, 100*ms)...)
		d = append(d, time.Second)
	}
	es := wave(d...)
	span := es[len(es)-1].At.Sub(es[0].At) + time.Second
	dec, err := NewDecoder(Timing{})
	if err != nil {
		b.Fatal(err)
	}
	out := make([]Output, 0, 8)
	b.ReportAllocs()
	n := 0
	var shift time.Duration
	for b.Loop() {
		e := es[n]
		out = dec.Edge(e.Active, e.At.Add(shift), out[:0])
		if dl, ok := dec.Deadline(); ok && n+1 < len(es) && es[n+1].At.Add(shift).After(dl) {
			out = dec.Advance(dl, out[:0])
		}
		if n++; n == len(es) {
			n, shift = 0, shift+span
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/edge")
}
