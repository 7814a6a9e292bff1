package netfault

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/kioskd/kioskd/sync/mqttc"
	"github.com/kioskd/kioskd/sync/wire"
)

// benchBound bounds a benchmark's drain; a benchmark that hits it fails.
const benchBound = 5 * time.Minute

// BenchmarkDrain measures how fast top-ups leave the kiosk, with no fault, through the
// in-process broker and the fault proxy (doing nothing), in top-ups per second:
//
//   - uplink: b.N top-ups queued in the journal, then the uplink drains them to the reference
//     ledger (bbolt store with fsync), until every signed ack is applied in the journal.
//   - raw_qos1: the baseline, the same payloads published at QoS 1 in a loop by a bare
//     mqttc client over the same path to the same kind of broker, one at a time (each waits
//     for its PUBACK), with no ledger, journal or ack behind it.
//   - raw_qos1_inflight8: the same with as many publishers as the uplink has publishes in
//     flight (MaxInFlight), the ceiling the uplink could reach if acks cost nothing.
func BenchmarkDrain(b *testing.B) {
	b.Run("uplink", func(b *testing.B) {
		r := newRig(b, rigOpts{syncLedger: true})
		r.journalTopups(b.N)
		b.ResetTimer()
		t0 := time.Now()
		r.up.Kick()
		d := r.catchUp(t0, benchBound)
		b.StopTimer()
		us := r.up.Stats()
		b.ReportMetric(float64(b.N)/d.Seconds(), "topups/s")
		b.ReportMetric(float64(us.Published)/float64(b.N), "publishes/topup")
	})
	b.Run("raw_qos1", func(b *testing.B) { rawPublish(b, 1) })
	b.Run("raw_qos1_inflight8", func(b *testing.B) { rawPublish(b, maxInFlight) })
}

// rawPublish publishes b.N top-up payloads at QoS 1 from publishers goroutines over the
// rig's kiosk link, to a topic nobody subscribes to.
func rawPublish(b *testing.B, publishers int) {
	r := newRig(b, rigOpts{})
	r.journalTopups(1)
	jt, _, err := r.j.Topup(1)
	if err != nil {
		b.Fatal(err)
	}
	c, err := mqttc.Dial(mqttc.Config{Brokers: []string{"tcp://" + r.kp.Addr()}, ClientID: "raw-bench", KeepAlive: keepAlive})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close(0)
	ctx, cancel := context.WithTimeout(r.ctx, wait)
	defer cancel()
	if err := c.WaitConnected(ctx); err != nil {
		b.Fatal(err)
	}
	topic := wire.Topic("RAW", wire.UpTopup+"_bench")
	work := make(chan struct{}, b.N)
	for range b.N {
		work <- struct{}{}
	}
	close(work)
	b.ResetTimer()
	t0 := time.Now()
	var wg sync.WaitGroup
	for range publishers {
		wg.Go(func() {
			for range work {
				pctx, cancel := context.WithTimeout(r.ctx, wait)
				err := c.Publish(pctx, topic, 1, false, jt.Payload)
				cancel()
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	d := time.Since(t0)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/d.Seconds(), "topups/s")
}

// BenchmarkCatchUp1000 measures the catch-up of a kiosk that comes back online with 1000
// top-ups queued: from the moment its network accepts connections again until every ack is
// applied (this includes the client's reconnect backoff, at most 500 ms here).
func BenchmarkCatchUp1000(b *testing.B) {
	const n = 1000
	var total time.Duration
	for range b.N {
		b.StopTimer()
		r := newRig(b, rigOpts{syncLedger: true, offline: true})
		r.journalTopups(n)
		b.StartTimer()
		t0 := time.Now()
		if err := r.kp.Refuse(false); err != nil {
			b.Fatal(err)
		}
		total += r.catchUp(t0, benchBound)
		b.StopTimer()
		r.close()
	}
	b.ReportMetric(float64(n*b.N)/total.Seconds(), "topups/s")
}
