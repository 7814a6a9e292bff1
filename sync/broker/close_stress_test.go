package broker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kioskd/kioskd/sync/mqttc"
)

// TestCloseUnderLoad closes the broker while clients publish and subscribe, many times: Close
// must always return (a hang here once stalled the end-to-end tests).
func TestCloseUnderLoad(t *testing.T) {
	rounds := 30
	if testing.Short() {
		rounds = 5
	}
	for range rounds {
		ctx, cancel := context.WithCancel(context.Background())
		b, err := Start(ctx, Config{Addr: "127.0.0.1:0"})
		if err != nil {
			t.Fatal(err)
		}
		var cs []*mqttc.Client
		for k := 0; k < 4; k++ {
			c, _ := mqttc.Dial(mqttc.Config{Brokers: []string{b.URL()}, ClientID: fmt.Sprintf("c%d", k)})
			cs = append(cs, c)
			c.Subscribe(ctx, "kiosk/+/up/#", 1, func(string, []byte) {})
		}
		for _, c := range cs {
			wctx, wc := context.WithTimeout(ctx, 5*time.Second)
			c.WaitConnected(wctx)
			wc()
		}
		for k := 0; k < 20; k++ {
			for _, c := range cs {
				go c.Publish(ctx, "kiosk/x/up/topup", 1, false, []byte("x"))
			}
		}
		done := make(chan struct{})
		go func() { b.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("broker Close hung")
		}
		for _, c := range cs {
			c.Close(10 * time.Millisecond)
		}
		cancel()
	}
}
