package mqttc

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/kioskd/kioskd/sync/broker"
)

// wait is the generous deadline for conditions that normally hold within milliseconds.
const wait = 10 * time.Second

func startBroker(t *testing.T, addr string) *broker.Broker {
	t.Helper()
	b, err := broker.Start(t.Context(), broker.Config{Addr: addr})
	if err != nil {
		t.Fatalf("broker: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func dial(t *testing.T, cfg Config) *Client {
	t.Helper()
	if cfg.MaxReconnectInterval == 0 {
		cfg.MaxReconnectInterval = 500 * time.Millisecond
	}
	c, err := Dial(cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close(0) })
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatalf("%s: %v", cfg.ClientID, err)
	}
	return c
}

type got struct{ topic, payload string }

func recv(t *testing.T, ch <-chan got) got {
	t.Helper()
	select {
	case g := <-ch:
		return g
	case <-time.After(wait):
		t.Fatal("no message within the deadline")
		return got{}
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	t.Cleanup(cancel)
	return ctx
}

// subscriber dials a client whose OnConnect (re)subscribes to filter and reports each
// completed subscription on subscribed.
func subscriber(t *testing.T, url, id, filter string) (c *Client, msgs chan got, subscribed chan int) {
	msgs, subscribed = make(chan got, 100), make(chan int, 10)
	var n int
	var mu sync.Mutex
	c = dial(t, Config{Brokers: []string{url}, ClientID: id, OnConnect: func(c *Client) {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := c.Subscribe(ctx, filter, 1, func(topic string, p []byte) { msgs <- got{topic, string(p)} }); err != nil {
			t.Errorf("subscribe: %v", err)
			return
		}
		mu.Lock()
		n++
		subscribed <- n
		mu.Unlock()
	}})
	select {
	case <-subscribed:
	case <-time.After(wait):
		t.Fatal("not subscribed")
	}
	return c, msgs, subscribed
}

func TestPublishSubscribe(t *testing.T) {
	b := startBroker(t, "")
	_, msgs, _ := subscriber(t, b.URL(), "sub", "kiosk/+/up/#")
	pub := dial(t, Config{Brokers: []string{b.URL()}, ClientID: "pub"})
	if err := pub.Publish(ctxT(t), "kiosk/K1/up/topup", 1, false, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if g := recv(t, msgs); g != (got{"kiosk/K1/up/topup", "hello"}) {
		t.Errorf("got %+v", g)
	}
	if err := pub.Publish(ctxT(t), "x", 3, false, nil); err == nil {
		t.Error("QoS 3 accepted")
	}
}

func TestHandlerOrderAndPublishFromHandler(t *testing.T) {
	// A handler that publishes at QoS 1 and waits for the PUBACK is what the ledger does; with
	// paho's router blocked this would deadlock.
	b := startBroker(t, "")
	echo := dial(t, Config{Brokers: []string{b.URL()}, ClientID: "echo"})
	if err := echo.Subscribe(ctxT(t), "in", 1, func(_ string, p []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		// The last PUBACK may still be on its way when the test ends and closes the client.
		if err := echo.Publish(ctx, "out", 1, false, p); err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("publish from handler: %v", err)
		}
	}); err != nil {
		t.Fatal(err)
	}
	_, msgs, _ := subscriber(t, b.URL(), "watch", "out")
	pub := dial(t, Config{Brokers: []string{b.URL()}, ClientID: "pub"})
	const n = 50
	for i := range n {
		if err := pub.Publish(ctxT(t), "in", 1, false, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		if g := recv(t, msgs); g.payload != string([]byte{byte(i)}) {
			t.Fatalf("message %d out of order: %q", i, g.payload)
		}
	}
}

func TestReconnectAfterBrokerRestart(t *testing.T) {
	b := startBroker(t, "127.0.0.1:0")
	addr, url := b.Addr(), b.URL()
	sub, msgs, subscribed := subscriber(t, url, "sub", "a/b")

	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b2 := startBroker(t, addr) // same port, right after Close
	if n := <-waitInt(t, subscribed); n != 2 {
		t.Fatalf("subscription made %d times, want 2", n)
	}
	if sub.Connections() != 2 {
		t.Errorf("connections = %d, want 2", sub.Connections())
	}
	pub := dial(t, Config{Brokers: []string{b2.URL()}, ClientID: "pub2"})
	if err := pub.Publish(ctxT(t), "a/b", 1, false, []byte("after restart")); err != nil {
		t.Fatal(err)
	}
	if g := recv(t, msgs); g.payload != "after restart" {
		t.Errorf("got %+v", g)
	}
}

func waitInt(t *testing.T, ch <-chan int) <-chan int {
	t.Helper()
	out := make(chan int, 1)
	select {
	case v := <-ch:
		out <- v
	case <-time.After(wait):
		t.Fatal("timed out")
	}
	return out
}

func TestLastWillOnAbruptDisconnect(t *testing.T) {
	b := startBroker(t, "")
	_, msgs, _ := subscriber(t, b.URL(), "ops", "kiosk/+/up/status")

	var mu sync.Mutex
	var conn net.Conn
	victim := dial(t, Config{
		Brokers: []string{b.URL()}, ClientID: "K1",
		Will: &Will{Topic: "kiosk/K1/up/status", Payload: []byte(`{"v":1,"state":"offline"}`), QoS: 1, Retain: true},
		dial: func(u *url.URL, _ *tls.Config, timeout time.Duration) (net.Conn, error) {
			c, err := net.DialTimeout("tcp", u.Host, timeout)
			mu.Lock()
			conn = c
			mu.Unlock()
			return c, err
		},
	})
	if err := victim.Publish(ctxT(t), "kiosk/K1/up/status", 1, true, []byte(`{"v":1,"state":"online"}`)); err != nil {
		t.Fatal(err)
	}
	if g := recv(t, msgs); g.payload != `{"v":1,"state":"online"}` {
		t.Fatalf("got %+v", g)
	}
	// The process "dies": the TCP connection ends without DISCONNECT.
	mu.Lock()
	conn.Close()
	mu.Unlock()
	if g := recv(t, msgs); g != (got{"kiosk/K1/up/status", `{"v":1,"state":"offline"}`}) {
		t.Errorf("will: got %+v", g)
	}
}

func TestCloseSendsNoWill(t *testing.T) {
	b := startBroker(t, "")
	_, msgs, _ := subscriber(t, b.URL(), "ops", "will/#")
	c := dial(t, Config{Brokers: []string{b.URL()}, ClientID: "K2", Will: &Will{Topic: "will/K2", Payload: []byte("x"), QoS: 1}})
	c.Close(100 * time.Millisecond)
	c.Close(0) // idempotent
	// A marker published after the Close: if a will had been sent it would arrive first.
	pub := dial(t, Config{Brokers: []string{b.URL()}, ClientID: "pub"})
	if err := pub.Publish(ctxT(t), "will/marker", 1, false, []byte("m")); err != nil {
		t.Fatal(err)
	}
	if g := recv(t, msgs); g.topic != "will/marker" {
		t.Errorf("got %+v before the marker", g)
	}
	if err := c.Publish(ctxT(t), "x", 0, false, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("publish after close: %v", err)
	}
}

func TestOfflineFailsFast(t *testing.T) {
	// Reserve a port with nothing behind it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c, err := Dial(Config{Brokers: []string{"tcp://" + addr}, ClientID: "off", ConnectTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(0)
	if c.Connected() {
		t.Fatal("connected to nothing")
	}
	if err := c.Publish(ctxT(t), "a", 1, false, nil); !errors.Is(err, ErrNotConnected) {
		t.Errorf("publish offline: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := c.WaitConnected(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("WaitConnected: %v", err)
	}
}

func TestQueueFullDropsInsteadOfBlocking(t *testing.T) {
	b := startBroker(t, "")
	started, release := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	var seen []string
	sub := dial(t, Config{Brokers: []string{b.URL()}, ClientID: "slow", QueueDepth: 1})
	if err := sub.Subscribe(ctxT(t), "q", 1, func(_ string, p []byte) {
		mu.Lock()
		seen = append(seen, string(p))
		mu.Unlock()
		if string(p) == "1" {
			close(started)
			<-release
		}
	}); err != nil {
		t.Fatal(err)
	}
	pub := dial(t, Config{Brokers: []string{b.URL()}, ClientID: "pub"})
	if err := pub.Publish(ctxT(t), "q", 1, false, []byte("1")); err != nil {
		t.Fatal(err)
	}
	<-started
	for _, p := range []string{"2", "3", "4", "5"} {
		if err := pub.Publish(ctxT(t), "q", 1, false, []byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	// "2" waits in the queue; "3".."5" find it full. The router is never blocked: the client
	// still completes a SUBACK round trip while the handler is stuck.
	deadline := time.Now().Add(wait)
	for sub.Dropped() < 3 && time.Now().Before(deadline) {
		if err := sub.Subscribe(ctxT(t), "noop", 0, func(string, []byte) {}); err != nil {
			t.Fatal(err)
		}
	}
	if d := sub.Dropped(); d != 3 {
		t.Fatalf("dropped %d, want 3", d)
	}
	close(release)
	sub.Close(0)
	mu.Lock()
	defer mu.Unlock()
	if len(seen) > 2 || seen[0] != "1" {
		t.Errorf("handled %v, want [1] or [1 2]", seen)
	}
}

func TestHandlerPanicIsContained(t *testing.T) {
	b := startBroker(t, "")
	msgs := make(chan string, 2)
	c := dial(t, Config{Brokers: []string{b.URL()}, ClientID: "p"})
	if err := c.Subscribe(ctxT(t), "p/#", 1, func(topic string, _ []byte) {
		if topic == "p/boom" {
			panic("bad message")
		}
		msgs <- topic
	}); err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{"p/boom", "p/ok"} {
		if err := c.Publish(ctxT(t), topic, 1, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case got := <-msgs:
		if got != "p/ok" {
			t.Errorf("got %q", got)
		}
	case <-time.After(wait):
		t.Fatal("worker died with the panic")
	}
}

func TestDialConfigErrors(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no broker": {ClientID: "x"},
		"no id":     {Brokers: []string{"tcp://127.0.0.1:1"}},
		"scheme":    {Brokers: []string{"http://127.0.0.1:1"}, ClientID: "x"},
		"no host":   {Brokers: []string{"tcp://"}, ClientID: "x"},
		"will":      {Brokers: []string{"tcp://127.0.0.1:1"}, ClientID: "x", Will: &Will{QoS: 1}},
	} {
		if _, err := Dial(cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestBackoffFullJitter: the wait before reconnect attempt n is uniform in
// [0, min(MaxReconnectInterval, 0.5 s·2^n)): spread from the first attempt, capped.
func TestBackoffFullJitter(t *testing.T) {
	c := &Client{cfg: Config{MaxReconnectInterval: 4 * time.Second}}
	for n, window := range []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second} {
		var lo, hi time.Duration = window, 0
		for range 2000 {
			d := c.backoff(n)
			if d < 0 || d > window {
				t.Fatalf("backoff(%d) = %v, outside [0, %v]", n, d, window)
			}
			lo, hi = min(lo, d), max(hi, d)
		}
		// Spread over the window, not bunched at its end as "half plus jitter" was.
		if lo > window/10 || hi < window*9/10 {
			t.Errorf("backoff(%d) spans [%v, %v] of [0, %v]", n, lo, hi, window)
		}
	}
	if d := c.backoff(1000); d > 4*time.Second {
		t.Errorf("backoff(1000) = %v beyond the cap", d)
	}
}
