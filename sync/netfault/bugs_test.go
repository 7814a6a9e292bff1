package netfault

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestNoFalseLedgerGapAlarm drains 200 top-ups with no fault at all and asserts that the
// kiosk raises no alarm. The reference ledger answers top-ups on several handler goroutines,
// so acks reach the kiosk out of watermark order; acks are unordered by contract, and the
// journal must not take a lower acked_through_seq for data loss (it once did).
func TestNoFalseLedgerGapAlarm(t *testing.T) {
	t.Parallel()
	for range 3 {
		r := newRig(t, rigOpts{topups: 200})
		r.catchUp(time.Now(), catchUpBound)
		r.mu.Lock()
		for _, e := range r.events {
			t.Errorf("alarm with no fault: %s: %s", e.Kind, e.Detail)
		}
		r.mu.Unlock()
	}
}

// pahoRaceGuard once skipped, under the race detector, the scenarios that reconnect with
// publishes in flight (paho's reconnect data race, see TestPahoReconnectRace). mqttc now
// reconnects by itself, so they all run; the guard is kept as the single place to re-add
// such a skip should a dependency regress.
func pahoRaceGuard(t *testing.T) { t.Helper() }

// TestPahoReconnectRace publishes QoS 1 messages from several goroutines through mqttc while
// the connection is cut again and again. With paho's own auto-reconnect (v1.5.1) this was a
// data race between resume() setting Dup on a stored publish and the new connection's
// writer sending the same packet (eclipse-paho/paho.mqtt.golang issue 703), and the packet
// went out twice. mqttc turns paho's auto-reconnect off and reconnects with a fresh Connect,
// whose clean session starts from an empty store, so resume() never runs.
func TestPahoReconnectRace(t *testing.T) {
	r := newRig(t, rigOpts{})
	var wg sync.WaitGroup
	done := make(chan struct{})
	for g := range 8 {
		wg.Go(func() {
			payload := []byte(fmt.Sprintf(`{"g":%d}`, g))
			for {
				select {
				case <-done:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(r.ctx, time.Second)
				r.mc.Publish(ctx, "netfault/race", 1, false, payload)
				cancel()
			}
		})
	}
	for range 30 {
		conns := r.mc.Connections()
		r.kp.CutAll()
		waitUntil(t, wait, "a reconnect", func() bool { return r.mc.Connections() > conns && r.mc.Connected() })
	}
	close(done)
	wg.Wait()
}
