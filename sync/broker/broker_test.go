package broker

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

const wait = 10 * time.Second

func start(t *testing.T, cfg Config) *Broker {
	t.Helper()
	b, err := Start(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// client connects a raw paho client speaking MQTT 3.1.1 (protocol version 4), the version the
// kiosk contract uses, so the broker is checked against exactly what kioskd sends.
func client(t *testing.T, url, id, user, pass string) (paho.Client, error) {
	t.Helper()
	o := paho.NewClientOptions().AddBroker(url).SetClientID(id).SetUsername(user).SetPassword(pass).
		SetProtocolVersion(4).SetCleanSession(true).SetAutoReconnect(false).SetConnectTimeout(wait)
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(wait) {
		return nil, fmt.Errorf("connect %s: timeout", id)
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c, nil
}

func mustClient(t *testing.T, url, id, user, pass string) paho.Client {
	t.Helper()
	c, err := client(t, url, id, user, pass)
	if err != nil {
		t.Fatalf("%s: %v", id, err)
	}
	return c
}

func done(t *testing.T, tok paho.Token) {
	t.Helper()
	if !tok.WaitTimeout(wait) {
		t.Fatal("token timeout")
	}
	if err := tok.Error(); err != nil {
		t.Fatal(err)
	}
}

// subscribe returns the SUBACK code (0x80 = refused).
func subscribe(t *testing.T, c paho.Client, filter string, h paho.MessageHandler) byte {
	t.Helper()
	tok := c.Subscribe(filter, 1, h).(*paho.SubscribeToken)
	done(t, tok)
	// Paho keys the result by the filter without its $share/<group>/ prefix.
	for _, code := range tok.Result() {
		return code
	}
	t.Fatal("no SUBACK code")
	return 0
}

func TestSharedSubscription311(t *testing.T) {
	b := start(t, Config{})
	const n = 200
	var mu sync.Mutex
	counts := map[string]map[string]int{} // client -> payload -> deliveries
	all := make(chan struct{}, 2*n)
	for _, id := range []string{"ledger-a", "ledger-b"} {
		counts[id] = map[string]int{}
		c := mustClient(t, b.URL(), id, "", "")
		if code := subscribe(t, c, "$share/ledger/kiosk/+/up/topup", func(_ paho.Client, m paho.Message) {
			mu.Lock()
			counts[id][string(m.Payload())]++
			mu.Unlock()
			all <- struct{}{}
		}); code != 1 {
			t.Fatalf("suback %#x", code)
		}
	}
	pub := mustClient(t, b.URL(), "K1", "", "")
	for i := range n {
		done(t, pub.Publish(fmt.Sprintf("kiosk/K%d/up/topup", i%7), 1, false, fmt.Sprint(i)))
	}
	for range n {
		select {
		case <-all:
		case <-time.After(wait):
			t.Fatal("missing deliveries")
		}
	}
	// A marker, delivered after everything published before it, shows that no late
	// duplicate of the first n is still on its way.
	mark := make(chan struct{})
	c := mustClient(t, b.URL(), "marker", "", "")
	subscribe(t, c, "kiosk/M/up/topup", func(paho.Client, paho.Message) { close(mark) })
	done(t, pub.Publish("kiosk/M/up/topup", 1, false, "m"))
	<-mark
	select { // the marker also reached exactly one member of the share group
	case <-all:
	case <-time.After(wait):
		t.Fatal("marker not delivered to the share group")
	}
	mu.Lock()
	defer mu.Unlock()
	for i := range n {
		p := fmt.Sprint(i)
		if got := counts["ledger-a"][p] + counts["ledger-b"][p]; got != 1 {
			t.Errorf("message %s delivered %d times", p, got)
		}
	}
	if len(counts["ledger-a"]) == 0 || len(counts["ledger-b"]) == 0 {
		t.Errorf("one member got everything: a=%d b=%d", len(counts["ledger-a"]), len(counts["ledger-b"]))
	}
	select {
	case <-all:
		t.Error("extra delivery")
	default:
	}
}

func TestACL(t *testing.T) {
	b := start(t, Config{
		Users:       map[string]string{"K1": "pw1", "K2": "pw2", "ledger": "lpw"},
		ACL:         true,
		LedgerUsers: []string{"ledger"},
	})
	url := b.URL()
	if _, err := client(t, url, "K1", "K1", "wrong"); err == nil {
		t.Error("wrong password accepted")
	}
	if _, err := client(t, url, "K1", "nobody", "pw1"); err == nil {
		t.Error("unknown user accepted")
	}
	if _, err := client(t, url, "K2", "K1", "pw1"); err == nil {
		t.Error("kiosk K1 connected with client id K2")
	}

	got := make(chan string, 10)
	led := mustClient(t, url, "ledger-1", "ledger", "lpw")
	for filter, want := range map[string]byte{
		"$share/ledger/kiosk/+/up/topup": 1,
		"kiosk/+/up/#":                   1,
		"kiosk/+/down/#":                 0x80,
		"#":                              0x80,
		"$SYS/#":                         0x80,
	} {
		h := func(_ paho.Client, m paho.Message) { got <- m.Topic() }
		if strings.HasPrefix(filter, "$share/") {
			// Paho routes by the filter without the share prefix, so this handler would
			// see the same messages as kiosk/+/up/#'s.
			h = func(paho.Client, paho.Message) {}
		}
		if code := subscribe(t, led, filter, h); code != want {
			t.Errorf("ledger subscribe %q: code %#x, want %#x", filter, code, want)
		}
	}
	k1 := mustClient(t, url, "K1", "K1", "pw1")
	for filter, want := range map[string]byte{
		"kiosk/K1/down/#":   1,
		"kiosk/K1/down/ack": 1,
		"kiosk/K2/down/#":   0x80,
		"kiosk/+/down/#":    0x80,
		"kiosk/K1/up/#":     0x80,
		"kiosk/#":           0x80,
	} {
		h := func(paho.Client, paho.Message) {} // paho calls every matching route's handler
		if filter == "kiosk/K1/down/#" {
			h = func(_ paho.Client, m paho.Message) { got <- "K1 got " + m.Topic() }
		}
		if code := subscribe(t, k1, filter, h); code != want {
			t.Errorf("K1 subscribe %q: code %#x, want %#x", filter, code, want)
		}
	}
	// K1 impersonating K2, or forging its own ack, is dropped (QoS 0); its own topic goes
	// through, and anything earlier from K1 would have arrived before it: one client's
	// messages are delivered in order.
	done(t, k1.Publish("kiosk/K2/up/topup", 0, false, "forged"))
	done(t, k1.Publish("kiosk/K1/down/ack", 0, false, "self-ack"))
	done(t, k1.Publish("kiosk/K1/up/topup", 1, false, "mine"))
	// The ledger may publish downstream to K1.
	done(t, led.Publish("kiosk/K1/down/ack", 1, false, "ack"))
	var seen []string
	for len(seen) < 3 {
		select {
		case s := <-got:
			seen = append(seen, s)
		case <-time.After(wait):
			t.Fatalf("saw only %v", seen)
		}
	}
	want := map[string]bool{"kiosk/K1/up/topup": true, "K1 got kiosk/K1/down/ack": true}
	for _, s := range seen {
		if !want[s] {
			t.Errorf("unexpected delivery %q (all: %v)", s, seen)
		}
	}

	// At QoS 1, MQTT 3.1.1 has no negative PUBACK: mochi disconnects the client (mosquitto
	// would acknowledge and drop). Either way nothing is delivered.
	k2 := mustClient(t, url, "K2", "K2", "pw2")
	tok := k2.Publish("kiosk/K1/up/topup", 1, false, "forged")
	if !tok.WaitTimeout(wait) || tok.Error() == nil {
		t.Error("QoS 1 publish to another kiosk's topic completed")
	}
	select {
	case s := <-got:
		t.Errorf("forged QoS 1 message delivered: %q", s)
	default:
	}
}

func TestCovers(t *testing.T) {
	for _, tc := range []struct {
		allowed, filter string
		want            bool
	}{
		{"kiosk/+/up/#", "kiosk/K1/up/topup", true},
		{"kiosk/+/up/#", "kiosk/+/up/topup", true},
		{"kiosk/+/up/#", "kiosk/+/up/#", true},
		{"kiosk/+/up/#", "kiosk/K1/up", true},
		{"kiosk/+/up/#", "$share/ledger/kiosk/+/up/topup", true},
		{"kiosk/+/up/#", "$share//kiosk/+/up/topup", false},
		{"kiosk/+/up/#", "$share/ledger", false},
		{"kiosk/+/up/#", "kiosk/#", false},
		{"kiosk/+/up/#", "kiosk/K1/down/ack", false},
		{"kiosk/K1/up/#", "kiosk/+/up/topup", false},
		{"kiosk/K1/up/#", "kiosk/K1/up/topup", true},
		{"kiosk/K1/up/#", "kiosk/K10/up/topup", false},
		{"kiosk/K1/up/#", "$SYS/x", false},
		{"kiosk/K1/down/#", "kiosk", false},
	} {
		if got := covers(tc.allowed, tc.filter); got != tc.want {
			t.Errorf("covers(%q, %q) = %v", tc.allowed, tc.filter, got)
		}
	}
}

func TestRestartOnSamePort(t *testing.T) {
	b := start(t, Config{Addr: "127.0.0.1:0"})
	addr := b.Addr()
	mustClient(t, b.URL(), "c", "", "")
	for i := range 3 {
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		if err := b.Close(); err != nil { // idempotent
			t.Fatal(err)
		}
		b = start(t, Config{Addr: addr})
		if b.Addr() != addr {
			t.Fatalf("restart %d: addr %s, want %s", i, b.Addr(), addr)
		}
		mustClient(t, b.URL(), fmt.Sprint("c", i), "", "")
	}
}

func TestContextEndsBroker(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	b, err := Start(ctx, Config{})
	if err != nil {
		t.Fatal(err)
	}
	mustClient(t, b.URL(), "c", "", "")
	cancel()
	// Close after the ctx watcher must still return (and wait for it).
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := client(t, b.URL(), "late", "", ""); err == nil {
		t.Error("connected to a stopped broker")
	}
	if _, err := Start(ctx, Config{}); err == nil {
		t.Error("started with a cancelled context")
	}
}
