package conformance

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/sync/wire"
)

// BenchmarkNote measures one full note per protocol: insert → escrow decision (stack intent
// journaled) → stack → credit committed in the journal → acknowledgement to the unit → unit
// at rest again, through the real driver, emulator (net.Pipe; pins for pulse), session
// engine and bbolt journal (with fsync, in b.TempDir) on the real clock.
//
// The drivers poll every benchPoll (100 µs) instead of their production 200 ms and CCNET
// keeps no bus gap, so the figure is the host's own cost per note, not the protocol's
// waits (at production settings a note costs about five polls, ≈1 s). The pulse figure is
// dominated by its waveform: one 5 ms pulse (the smallest note) and the 15 ms
// gap that ends the train.
func BenchmarkNote(b *testing.B) {
	for _, p := range protocols() {
		b.Run(p.name, func(b *testing.B) { benchNote(b, p) })
	}
}

func benchNote(b *testing.B, p *protocol) {
	r := newRig(b, p, unitOpts{fast: true})
	r.sessionMax = 1 << 50
	r.start()
	r.ready()
	r.open(1 << 50)
	v := r.values()[0] // for a pulse unit the shortest train: one pulse
	code := r.codeFor(v)
	// The note's journey ends when the unit reports itself at rest after the credit: by
	// then the credit is committed and acknowledged.
	var credited atomic.Bool
	done := make(chan struct{}, 1)
	r.rec.setHooks(interceptors{
		credited: func(acceptor.Note) { credited.Store(true) },
		event: func(e acceptor.Event) {
			if (e.Kind == acceptor.Idle || e.Kind == acceptor.Disabled) && credited.Swap(false) {
				done <- struct{}{}
			}
		},
	})
	notes := 0
	b.ResetTimer()
	for b.Loop() {
		for r.u.Insert(code) != nil {
			time.Sleep(benchPoll) // the unit is still finishing the previous note's report
		}
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			b.Fatalf("%s: note %d never completed; trace:\n%s", p.name, notes+1, r.traceText())
		}
		notes++
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(notes), "ns/note")
	r.rec.setHooks(interceptors{})
	r.finish()
	want := make([]int64, notes)
	for i := range want {
		want[i] = v
	}
	r.check(outcome{credited: want, topups: []topup{tp(wire.OutcomeComplete, 0, want...)}})
}
