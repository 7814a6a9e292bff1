package ledger

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/kioskd/kioskd/sync/wire"
)

// BenchmarkApplyTopup measures credits per second on bbolt: "fsync" is the real setting
// (one fsync per credit dominates), "nosync" the cost of the transaction itself;
// "duplicate" a redelivery answered from a read-only transaction.
func BenchmarkApplyTopup(b *testing.B) {
	for _, mode := range []string{"fsync", "nosync", "duplicate"} {
		b.Run(mode, func(b *testing.B) {
			s, err := OpenBolt(filepath.Join(b.TempDir(), "bench.db"), Options{Timeout: time.Second, NoSync: mode != "fsync"})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			dup := topup("K1", 1, 1, "acct_0", 100)
			if _, err := s.ApplyTopup(dup); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				tp := dup
				if mode != "duplicate" {
					tp = topup("K1", 2, uint64(i+1), fmt.Sprintf("acct_%d", i%1000), 100)
				}
				if _, err := s.ApplyTopup(tp); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
		})
	}
}

// BenchmarkTopupToAck measures one kiosk's top-up → signed ack round trip through the
// in-process broker and the ledger (store without fsync, to measure the MQTT path).
func BenchmarkTopupToAck(b *testing.B) {
	br := startBroker(b)
	s := openStore(b, "", nil)
	runLedger(b, br, s, "ledger-bench", nil)
	k := newKiosk(b, br, "KB")
	b.ResetTimer()
	for i := range b.N {
		tp := topup("KB", 1, uint64(i+1), "acct", 100)
		k.publish(wire.UpTopup, tp)
		if a := k.ack(); a.Status != wire.AckCredited {
			b.Fatalf("ack %+v", a)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "acks/s")
}
