package netfault

import (
	"context"
	"flag"
	"fmt"
	"sync"
	"testing"
	"time"
)

var (
	racy    = flag.Bool("netfault.racy", false, "run, under -race, the scenarios that paho's reconnect data race can fail")
	blocked = flag.Bool("netfault.blocked", false, "run the tests blocked on known bugs in other packages (they fail)")
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

// pahoRaceGuard skips, under the race detector, a scenario in which an MQTT client
// reconnects while QoS 1 publishes are being handed to paho: paho's own data race on that
// path (TestPahoReconnectRace) would fail it at random. Without -race the scenario runs;
// -netfault.racy runs it under -race too (to check a fix).
func pahoRaceGuard(t *testing.T) {
	t.Helper()
	if raceEnabled && !*racy {
		t.Skip("blocked under -race by paho's reconnect data race (see TestPahoReconnectRace); " +
			"runs without -race, or with -netfault.racy")
	}
}

// TestPahoReconnectRace publishes QoS 1 messages from several goroutines through mqttc while
// the connection is cut again and again. Under the race detector it fails (in most runs) in
// paho v1.5.1 itself: mqttc.Dial configures a memory store with auto-reconnect
// (sync/mqttc/mqttc.go:163,168); a Publish that was blocked sending on paho's client-wide
// obound channel when the connection died is picked up by the new connection's writer
// (paho net.go:293, packets.go:267 reads FixedHeader.Dup), while paho's resume() sets Dup on
// the very same stored packet (paho client.go:1114) to resend it: a data race, and the
// packet goes out twice. Upstream: eclipse-paho/paho.mqtt.golang issue 703 (open). Money is
// safe (a duplicate top-up is answered duplicate), but every -race test that reconnects
// under load can fail at random. A fix inside mqttc must not simply swap in a store that
// keeps nothing: resume() is also what re-claims the message ids of publishes lost with the
// connection, so they would leak (65535 of them). Turning paho's AutoReconnect off and
// reconnecting in mqttc (paho then completes every pending token on connection loss,
// client.go:574-575, and a new Connect resets the store, client.go:290-293, so resume()
// never runs) avoids both.
func TestPahoReconnectRace(t *testing.T) {
	if !*blocked {
		t.Skip("blocked: paho v1.5.1 data race between resume() (client.go:1114) and the writer " +
			"(net.go:293) on reconnect with QoS 1 publishes in flight, reached through sync/mqttc/mqttc.go:163-168; " +
			"repro: go test -race -run TestPahoReconnectRace ./sync/netfault -args -netfault.blocked")
	}
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
