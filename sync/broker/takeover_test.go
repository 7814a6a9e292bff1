package broker

import (
	"fmt"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// TestTakeoverKeepsNewSession: a client that reconnects with the id of a connection the
// broker still holds (a ledger or kiosk restarted faster than its old TCP connection was torn
// down) takes the session over. The new connection must be the one that stays registered and
// subscribed: in the underlying broker the old connection's clean-up could run after the new
// one registered and delete it by id, and the new client then received nothing (no error, no
// disconnect) until it reconnected again. Many subscriptions on the old connection widen that
// window, so each round tries it.
func TestTakeoverKeepsNewSession(t *testing.T) {
	b := start(t, Config{})
	pub := mustClient(t, b.URL(), "publisher", "", "")
	rounds := 40
	if testing.Short() {
		rounds = 10
	}
	for i := range rounds {
		old := mustClient(t, b.URL(), "twin", "", "")
		for k := range 300 {
			done(t, old.Subscribe(fmt.Sprintf("noise/%d", k), 0, nil))
		}
		got := make(chan struct{}, 1)
		nc := mustClient(t, b.URL(), "twin", "", "")
		topic := fmt.Sprintf("round/%d", i)
		subscribe(t, nc, topic, func(paho.Client, paho.Message) {
			select {
			case got <- struct{}{}:
			default:
			}
		})
		done(t, pub.Publish(topic, 1, false, "hello"))
		select {
		case <-got:
		case <-time.After(wait):
			t.Fatalf("round %d: the client that took the session over receives nothing", i)
		}
		nc.Disconnect(0)
		old.Disconnect(0)
	}
}
