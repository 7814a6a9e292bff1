package sensors

import (
	"testing"
	"time"
)

// BenchmarkDebounceEdge measures the debouncer per edge on a bouncing contact (five 1 ms
// bounces, then a level held for a second), the work a watcher does per wake.
func BenchmarkDebounceEdge(b *testing.B) {
	type reading struct {
		level bool
		after time.Duration
	}
	var rs []reading
	level := false
	for range 10 {
		level = !level
		for range 5 {
			rs = append(rs, reading{level, ms}, reading{!level, ms})
		}
		rs = append(rs, reading{level, time.Second})
	}
	d := debouncer{hold: DefaultDebounce}
	now := time.Unix(0, 0)
	n := 0
	reported := 0
	b.ReportAllocs()
	for b.Loop() {
		r := rs[n]
		d.sample(r.level, now)
		_, _ = d.deadline() // the watcher asks how long it may wait
		now = now.Add(r.after)
		if _, _, ok := d.due(now); ok {
			reported++
		}
		if n++; n == len(rs) {
			n = 0
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/edge")
	if b.N > len(rs) && reported == 0 {
		b.Fatal("no change was ever believed")
	}
}
