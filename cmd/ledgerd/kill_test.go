package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kioskd/kioskd/kiosk/qrpay"
	"github.com/kioskd/kioskd/sync/broker"
	"github.com/kioskd/kioskd/sync/ledger"
	"github.com/kioskd/kioskd/sync/ledger/pgtest"
	"github.com/kioskd/kioskd/sync/mqttc"
	"github.com/kioskd/kioskd/sync/wire"
)

// TestMain lets the test binary stand in for ledgerd: with LEDGERD_TEST_CHILD set it runs
// main, so a test can start ledgerd as a process of its own and SIGKILL it.
func TestMain(m *testing.M) {
	if os.Getenv("LEDGERD_TEST_CHILD") != "" {
		main()
		os.Exit(0)
	}
	code := m.Run()
	pgtest.StopShared()
	os.Exit(code)
}

// child is a ledgerd process.
type child struct {
	cmd  *exec.Cmd
	logs *syncBuffer
	done chan error
}

func startChild(t *testing.T, args ...string) *child {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c := &child{logs: &syncBuffer{}, done: make(chan error, 1)}
	c.cmd = exec.Command(exe, args...)
	c.cmd.Env = append(os.Environ(), "LEDGERD_TEST_CHILD=1")
	c.cmd.Stdout, c.cmd.Stderr = c.logs, c.logs
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.done <- c.cmd.Wait() }()
	t.Cleanup(func() {
		c.cmd.Process.Kill()
		<-c.done
		if t.Failed() {
			t.Logf("ledgerd %v:\n%s", args, c.logs)
		}
	})
	waitLog(t, c, "ledger: subscribed")
	return c
}

func waitLog(t *testing.T, c *child, s string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(c.logs.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in ledgerd's log:\n%s", s, c.logs)
		}
		select {
		case err := <-c.done:
			t.Fatalf("ledgerd exited: %v\n%s", err, c.logs)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// TestKill9LedgerdOnPostgres: two ledgerd processes share one PostgreSQL database and one
// broker; one is killed with SIGKILL while a kiosk's top-ups stream in. The kiosk re-sends
// whatever is not acked (as the uplink does); at the end each top-up is credited exactly
// once and the balance is the sum.
func TestKill9LedgerdOnPostgres(t *testing.T) {
	dsn := pgtest.Shared(t).NewDSN(t)
	b, err := broker.Start(t.Context(), broker.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	dir := t.TempDir()
	key := filepath.Join(dir, "ledger.key")
	if err := run(t.Context(), []string{"-genkey", "-key", key, "-kid", "k1"}, &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	wpub, wpriv, _ := ed25519.GenerateKey(nil)
	wallets := filepath.Join(dir, "wallets.json")
	os.WriteFile(wallets, []byte(`{"w1":"`+base64.StdEncoding.EncodeToString(wpub)+`"}`), 0o644)
	args := func(id string) []string {
		return []string{"-broker", b.URL(), "-pg", dsn, "-key", key, "-kid", "k1", "-http", "", "-client-id", id,
			"-wallet-keys", wallets}
	}
	victim := startChild(t, args("ledgerd-a")...)
	survivor := startChild(t, args("ledgerd-b")...)

	pubLine, _ := os.ReadFile(key + ".pub")
	pub, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(string(pubLine)))
	ring := wire.Keyring{"k1": pub}
	c, err := mqttc.Dial(mqttc.Config{Brokers: []string{b.URL()}, ClientID: "K1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(0)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	done := map[string]bool{}
	statuses := map[string]int{}
	if err := c.Subscribe(ctx, "kiosk/K1/down/ack", 1, func(_ string, p []byte) {
		var a wire.Ack
		if _, err := ring.Open(p, &a); err != nil {
			t.Errorf("ack: %v", err)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		statuses[a.Status]++
		if a.Status == wire.AckCredited || a.Status == wire.AckDuplicate {
			done[a.TopupID] = true
		}
	}); err != nil {
		t.Fatal(err)
	}
	const n = 120
	const amount = 10000
	now := time.Now().UTC().Truncate(time.Second)
	topups := make([]wire.Topup, n)
	for i := range topups {
		seq := uint64(i + 1)
		topups[i] = wire.Topup{V: 1, TopupID: wire.TopupID("K1", 1, seq), KioskID: "K1", Seq: seq, Account: "alice_01",
			Currency: "CNY", AmountMinor: amount, Notes: []wire.NoteLine{{ValueMinor: amount, Count: 1}}, OpenedAt: now,
			ClosedAt: now, ReceiptNo: seq, Outcome: wire.OutcomeComplete,
			QR: qrpay.Sign(wpriv, "w1", "alice_01", now.Add(time.Hour), fmt.Sprintf("nonce%04d", seq))}
	}
	send := func(tp wire.Topup) {
		raw, _ := json.Marshal(tp)
		if err := c.Publish(ctx, "kiosk/K1/up/topup", 1, false, raw); err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("publish: %v", err)
		}
	}
	acked := func() int { mu.Lock(); defer mu.Unlock(); return len(done) }
	seen := func() string { mu.Lock(); defer mu.Unlock(); return fmt.Sprint(statuses) }
	// Half the stream, then SIGKILL as soon as the victim has credited some of it: the rest
	// of that half is in flight. No clean stop: whatever it was doing is lost.
	for _, tp := range topups[:n/2] {
		send(tp)
	}
	waitLog(t, victim, "ledger: credited")
	if err := victim.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	for _, tp := range topups[n/2:] {
		send(tp)
	}
	<-victim.done
	victim.done <- nil // for the cleanup
	// The kiosk re-sends what is not acked until everything is.
	deadline := time.Now().Add(60 * time.Second)
	for acked() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d acked; statuses %s", acked(), n, seen())
		}
		mu.Lock()
		var pending []wire.Topup
		for _, tp := range topups {
			if !done[tp.TopupID] {
				pending = append(pending, tp)
			}
		}
		mu.Unlock()
		for _, tp := range pending {
			send(tp)
		}
		time.Sleep(300 * time.Millisecond) // the kiosk's retry interval
	}

	store, err := ledger.OpenPostgres(t.Context(), dsn, ledger.PGOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	info, err := store.Account("alice_01")
	if err != nil || info.Balances["CNY"] != n*amount || info.TopupCount != n {
		t.Errorf("alice_01: balance %d from %d credits, want %d from %d (%v)", info.Balances["CNY"], info.TopupCount, n*amount, n, err)
	}
	if w, err := store.Watermark("K1", 1); err != nil || w != n {
		t.Errorf("watermark %d %v", w, err)
	}
	credits := strings.Count(victim.logs.String(), "ledger: credited") + strings.Count(survivor.logs.String(), "ledger: credited")
	if credits > n { // fewer is possible: SIGKILL between a commit and its log line
		t.Errorf("%d credit log lines for %d top-ups", credits, n)
	}
	t.Logf("acks %s; the victim credited %d before SIGKILL", seen(), strings.Count(victim.logs.String(), "ledger: credited"))

	survivor.cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-survivor.done:
		if err != nil {
			t.Errorf("survivor exit: %v", err)
		}
		survivor.done <- nil
	case <-time.After(30 * time.Second):
		t.Error("survivor did not stop on SIGINT")
	}
}
