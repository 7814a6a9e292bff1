package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kioskd/kioskd/sync/mqttc"
	"github.com/kioskd/kioskd/sync/wire"
)

const wait = 10 * time.Second

// syncBuffer collects log output written by ledgerd's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestGenKeyAndLoad(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "ledger.key")
	var out bytes.Buffer
	if err := run(t.Context(), []string{"-genkey", "-key", key, "-kid", "k1"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(key)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v", fi.Mode(), err)
	}
	priv, err := loadKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pubLine, _ := os.ReadFile(key + ".pub")
	pub, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(pubLine)))
	if err != nil || !bytes.Equal(pub, priv.Public().(ed25519.PublicKey)) {
		t.Fatalf("public key file does not match: %v", err)
	}
	if !strings.Contains(out.String(), strings.TrimSpace(string(pubLine))) || !strings.Contains(out.String(), "k1") {
		t.Errorf("printed %q", out.String())
	}
	if err := run(t.Context(), []string{"-genkey", "-key", key}, &out, &out); err == nil {
		t.Error("genkey overwrote an existing key")
	}
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := loadKey(key); !errors.Is(err, errKeyPerm) {
		t.Errorf("world-readable key: %v", err)
	}
}

func TestParseKeyRejects(t *testing.T) {
	for name, raw := range map[string]string{
		"empty":     "",
		"not pem":   "hello",
		"wrong pem": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
		"bad der":   "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
	} {
		if _, err := parseKey([]byte(raw)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestConfigFile(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.json")
	os.WriteFile(cfg, []byte(`{"store":"/x/y.db","daily-limit":9007199254740993,"plain-topup-subscription":true,"kid":"from-file"}`), 0o600)
	var o options
	fs := newFlagSet(&o, &bytes.Buffer{})
	if err := fs.Parse([]string{"-kid", "from-flag", "-config", cfg}); err != nil {
		t.Fatal(err)
	}
	if err := applyConfigFile(fs, cfg); err != nil {
		t.Fatal(err)
	}
	if o.store != "/x/y.db" || o.dailyLimit != 9007199254740993 || !o.plainTopupSub || o.kid != "from-flag" {
		t.Errorf("options %+v", o)
	}
	for _, bad := range []string{`{"nope":1}`, `{"daily-limit":"x"}`, `{"store":[1]}`, `not json`, `{"genkey":true}`} {
		os.WriteFile(cfg, []byte(bad), 0o600)
		var o options
		fs := newFlagSet(&o, &bytes.Buffer{})
		if err := applyConfigFile(fs, cfg); err == nil {
			t.Errorf("config %s accepted", bad)
		}
	}
}

// TestRunEndToEnd runs ledgerd with its embedded broker, sends a top-up as a kiosk, checks the
// ack against the generated public key, and stops ledgerd by cancelling (a signal).
func TestRunEndToEnd(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "ledger.key")
	if err := run(t.Context(), []string{"-genkey", "-key", key, "-kid", "k1"}, &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	accounts := filepath.Join(dir, "accounts.json")
	os.WriteFile(accounts, []byte(`{"alice_01":"Alice Liddell"}`), 0o600)

	ctx, cancel := context.WithCancel(t.Context())
	logs := &syncBuffer{}
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, []string{"-embedded-broker", "127.0.0.1:0", "-http", "127.0.0.1:0", "-key", key, "-kid", "k1",
			"-store", filepath.Join(dir, "l.db"), "-accounts", accounts, "-client-id", "ledgerd-test"}, logs, logs)
	}()
	urlRe := regexp.MustCompile(`embedded broker" url=(tcp://[0-9.:]+)`)
	var url string
	deadline := time.Now().Add(wait)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for url == "" || !strings.Contains(logs.String(), "ledger: subscribed") {
		if m := urlRe.FindStringSubmatch(logs.String()); m != nil {
			url = m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("ledgerd did not start:\n%s", logs)
		}
		select {
		case err := <-errc:
			t.Fatalf("run: %v\n%s", err, logs)
		case <-tick.C:
		}
	}

	pubLine, _ := os.ReadFile(key + ".pub")
	pub, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(string(pubLine)))
	ring := wire.Keyring{"k1": pub}
	acks := make(chan wire.Ack, 1)
	c, err := mqttc.Dial(mqttc.Config{Brokers: []string{url}, ClientID: "K1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(0)
	wctx, wcancel := context.WithTimeout(t.Context(), wait)
	defer wcancel()
	if err := c.WaitConnected(wctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe(wctx, "kiosk/K1/down/ack", 1, func(_ string, p []byte) {
		var a wire.Ack
		if _, err := ring.Open(p, &a); err != nil {
			t.Errorf("ack: %v", err)
			return
		}
		acks <- a
	}); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	tp := wire.Topup{V: 1, TopupID: wire.TopupID("K1", 1, 1), KioskID: "K1", Seq: 1, Account: "alice_01", Currency: "CNY",
		AmountMinor: 10000, Notes: []wire.NoteLine{{ValueMinor: 10000, Count: 1}}, OpenedAt: now, ClosedAt: now,
		ReceiptNo: 1, Outcome: wire.OutcomeComplete}
	raw, _ := json.Marshal(tp)
	if err := c.Publish(wctx, "kiosk/K1/up/topup", 1, false, raw); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-acks:
		if a.Status != wire.AckCredited || a.AmountMinor != 10000 {
			t.Errorf("ack %+v", a)
		}
	case <-time.After(wait):
		t.Fatalf("no ack\n%s", logs)
	}

	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("run after cancel: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("run did not stop")
	}
	if strings.Contains(logs.String(), "Alice") {
		t.Error("display name logged")
	}
}

func TestRunRefusesBadSetup(t *testing.T) {
	dir := t.TempDir()
	for name, args := range map[string][]string{
		"no key":       {"-key", filepath.Join(dir, "missing.key")},
		"bad level":    {"-log-level", "loud"},
		"extra args":   {"what"},
		"unknown flag": {"-nope"},
	} {
		if err := run(t.Context(), args, &bytes.Buffer{}, &bytes.Buffer{}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
