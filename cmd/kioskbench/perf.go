package main

// The journal and sync measurements, as plain functions over *testing.B so that the same
// code runs under `go test -bench` (perf_test.go) and in the table main prints.

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/kiosk/qrpay"
	"github.com/kioskd/kioskd/sync/broker"
	"github.com/kioskd/kioskd/sync/ledger"
	"github.com/kioskd/kioskd/sync/mqttc"
	"github.com/kioskd/kioskd/sync/uplink"
	"github.com/kioskd/kioskd/sync/wire"
)

// The simulated wallet whose codes the Finish→ack benchmark's top-ups carry.
var benchWalletPub, benchWalletPriv, _ = ed25519.GenerateKey(nil)

// rawFsync is the baseline for journal commits: append 200 bytes to a file and fsync it.
func rawFsync(b *testing.B, dir string) {
	f, err := os.OpenFile(filepath.Join(dir, "raw-fsync.bin"), os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_TRUNC, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	rec := make([]byte, 200)
	b.ResetTimer()
	for b.Loop() {
		if _, err := f.Write(rec); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
}

func openJournal(b *testing.B, dir string) *journal.Journal {
	path := filepath.Join(dir, fmt.Sprintf("bench-%d.db", time.Now().UnixNano()))
	j, err := journal.Open(path, journal.Options{KioskID: "BENCH", Currency: "CNY"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = j.Close(); _ = os.Remove(path) })
	return j
}

// journalCredit measures the credit point of one note as the engine journals it: the
// NoteCredited commit (with the session total and cassette counters in one transaction) and
// the seal after it, both before the unit's ACK. The stack intent each credit needs, and its
// seal, are committed outside the timer.
func journalCredit(b *testing.B, dir string) { journalNotes(b, dir, true) }

// journalNote measures the whole per-note protocol: StackIntent and NoteCredited, each
// sealed, four durable commits.
func journalNote(b *testing.B, dir string) { journalNotes(b, dir, false) }

// journalNotes commits one note per iteration as the engine does; with creditOnly the timer
// runs only across the credit and its seal.
func journalNotes(b *testing.B, dir string, creditOnly bool) {
	j := openJournal(b, dir)
	s, err := j.OpenSession(journal.OpenSessionParams{Account: "bench", LimitMinor: 1 << 50})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if creditOnly {
			b.StopTimer()
		}
		in, err := j.StackIntent(s.ID, journal.Note{Code: 0x63, ValueMinor: 10000})
		if err != nil {
			b.Fatal(err)
		}
		// The engine seals the intent before the unit is told to stack.
		if err := j.Seal("stack intent recorded"); err != nil {
			b.Fatal(err)
		}
		if creditOnly {
			b.StartTimer()
		}
		if _, err := j.CreditNote(in.ID, journal.Note{}, ""); err != nil {
			b.Fatal(err)
		}
		// The engine seals every credit before the driver acknowledges it.
		if err := j.Seal("credit recorded"); err != nil {
			b.Fatal(err)
		}
	}
}

// latencies collects per-operation durations for percentiles.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) { l.mu.Lock(); l.d = append(l.d, d); l.mu.Unlock() }

// reset drops earlier samples: testing.Benchmark calls a benchmark several times with a
// growing b.N, and only the last, longest run should count.
func (l *latencies) reset() {
	if l != nil {
		l.mu.Lock()
		l.d = l.d[:0]
		l.mu.Unlock()
	}
}

// Percentile returns the p-th percentile (0..100).
func (l *latencies) Percentile(p float64) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return 0
	}
	s := slices.Clone(l.d)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}

// N is the number of samples.
func (l *latencies) N() int { l.mu.Lock(); defer l.mu.Unlock(); return len(l.d) }

// stack is an in-process broker, the reference ledger and a kiosk uplink, all real.
type stack struct {
	j      *journal.Journal
	up     *uplink.Uplink
	acked  chan journal.Topup
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closeF []func()
}

func startStack(b *testing.B, dir string) *stack {
	ctx, cancel := context.WithCancel(context.Background())
	st := &stack{cancel: cancel, acked: make(chan journal.Topup, 1024)}
	br, err := broker.Start(ctx, broker.Config{Addr: "127.0.0.1:0"})
	if err != nil {
		b.Fatal(err)
	}
	st.closeF = append(st.closeF, func() { _ = br.Close() })
	_, lpriv, _ := ed25519.GenerateKey(nil)
	store, err := ledger.OpenBolt(filepath.Join(dir, fmt.Sprintf("ledger-%d.db", time.Now().UnixNano())), ledger.Options{})
	if err != nil {
		b.Fatal(err)
	}
	st.closeF = append(st.closeF, func() { _ = store.Close() })
	led, err := ledger.New(ledger.Config{MQTT: mqttc.Config{Brokers: []string{br.URL()}, ClientID: "ledger-bench"}, Store: store,
		Signer: wire.Signer{KID: "l1", Key: lpriv}, WalletKeys: map[string]ed25519.PublicKey{"w1": benchWalletPub},
		Policy: ledger.Fleet{Policy: ledger.Policy{DailyNotes: -1}}})
	if err != nil {
		b.Fatal(err)
	}
	st.wg.Add(1)
	go func() { defer st.wg.Done(); _ = led.Run(ctx) }()
	<-led.Ready()
	st.j = openJournal(b, dir)
	client := &lazy{}
	st.up, err = uplink.New(uplink.Config{KioskID: "BENCH", Client: client, Journal: st.j,
		LedgerKeys: wire.Keyring{"l1": lpriv.Public().(ed25519.PublicKey)}, Health: health.New("bench", nil), MaxInFlight: 8,
		RetryMin: 5 * time.Second, RetryMax: time.Minute,
		OnAck: func(t journal.Topup) { st.acked <- t }})
	if err != nil {
		b.Fatal(err)
	}
	// The first connect can complete (and call OnConnect) before Dial returns: the client is
	// published to the uplink from OnConnect too, as kioskd does.
	mc, err := mqttc.Dial(mqttc.Config{Brokers: []string{br.URL()}, ClientID: "BENCH", OnConnect: func(c *mqttc.Client) {
		client.c.Store(c)
		st.up.OnConnect(ctx)
	}})
	if err != nil {
		b.Fatal(err)
	}
	client.c.Store(mc)
	st.closeF = append(st.closeF, func() { mc.Close(100 * time.Millisecond) })
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := mc.WaitConnected(wctx); err != nil {
		b.Fatal(err)
	}
	st.wg.Add(1)
	go func() { defer st.wg.Done(); _ = st.up.Run(ctx) }()
	return st
}

func (st *stack) close() {
	st.cancel()
	st.wg.Wait()
	for i := len(st.closeF) - 1; i >= 0; i-- {
		st.closeF[i]()
	}
}

type lazy struct{ c atomic.Pointer[mqttc.Client] }

func (l *lazy) Publish(ctx context.Context, topic string, qos byte, retain bool, payload []byte) error {
	c := l.c.Load()
	if c == nil {
		return uplink.ErrOffline
	}
	return c.Publish(ctx, topic, qos, retain, payload)
}
func (l *lazy) Subscribe(ctx context.Context, f string, qos byte, h func(string, []byte)) error {
	c := l.c.Load()
	if c == nil {
		return uplink.ErrOffline
	}
	return c.Subscribe(ctx, f, qos, h)
}
func (l *lazy) Connected() bool { c := l.c.Load(); return c != nil && c.Connected() }

// finishToAck measures, per top-up, the time from the customer's Finish (the session close
// transaction) to the signed ledger ack applied in the journal, through a real MQTT broker
// (in-process) and the reference ledger with its bbolt store. lat collects each sample.
func finishToAck(b *testing.B, dir string, lat *latencies) {
	lat.reset()
	st := startStack(b, dir)
	defer st.close()
	var nonce int
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		// A fresh wallet-signed code per top-up: the ledger verifies it and credits, as for a
		// real customer (an unproven top-up would be held, a cheaper path).
		nonce++
		qr := qrpay.Sign(benchWalletPriv, "w1", "bench", time.Now().Add(time.Hour), fmt.Sprintf("bench%08d", nonce))
		s, err := st.j.OpenSession(journal.OpenSessionParams{Account: "bench", LimitMinor: 1 << 40, QR: qr})
		if err != nil {
			b.Fatal(err)
		}
		in, _ := st.j.StackIntent(s.ID, journal.Note{Code: 0x63, ValueMinor: 10000})
		if _, err := st.j.CreditNote(in.ID, journal.Note{}, ""); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		t0 := time.Now()
		res, err := st.j.CloseSession(journal.CloseParams{SessionID: s.ID, Outcome: wire.OutcomeComplete})
		if err != nil {
			b.Fatal(err)
		}
		st.up.Kick()
		select {
		case t := <-st.acked:
			if t.TopupID != res.Topup.TopupID {
				b.Fatalf("ack for %s, want %s", t.TopupID, res.Topup.TopupID)
			}
			if t.State != journal.TopupCredited {
				b.Fatalf("top-up %s ended %s, not credited: the benchmark must measure the credit path", t.TopupID, t.State)
			}
		case <-time.After(30 * time.Second):
			b.Fatal("no ack within 30 s")
		}
		if lat != nil {
			lat.add(time.Since(t0))
		}
	}
}

// rawPublish is the baseline for finishToAck: a QoS 1 publish of a top-up sized payload and
// its PUBACK on the same broker, no ledger.
func rawPublish(b *testing.B, lat *latencies) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	br, err := broker.Start(ctx, broker.Config{Addr: "127.0.0.1:0"})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = br.Close() }()
	mc, err := mqttc.Dial(mqttc.Config{Brokers: []string{br.URL()}, ClientID: "raw"})
	if err != nil {
		b.Fatal(err)
	}
	defer mc.Close(50 * time.Millisecond)
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := mc.WaitConnected(wctx); err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 400)
	lat.reset()
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		if err := mc.Publish(ctx, "kiosk/raw/up/topup", 1, false, payload); err != nil {
			b.Fatal(err)
		}
		if lat != nil {
			lat.add(time.Since(t0))
		}
	}
}
