package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kioskd/kioskd/kiosk/qrpay"
	"github.com/kioskd/kioskd/sync/ledger/pgtest"
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
// It runs on the default bbolt store and on PostgreSQL (-pg).
func TestRunEndToEnd(t *testing.T) {
	t.Run("bolt", func(t *testing.T) {
		testRunEndToEnd(t, func(dir string) []string { return []string{"-store", filepath.Join(dir, "l.db")} })
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := pgtest.Shared(t).NewDSN(t)
		testRunEndToEnd(t, func(string) []string { return []string{"-pg", dsn} })
	})
}

func testRunEndToEnd(t *testing.T, storeArgs func(dir string) []string) {
	dir := t.TempDir()
	key := filepath.Join(dir, "ledger.key")
	if err := run(t.Context(), []string{"-genkey", "-key", key, "-kid", "k1"}, &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	accounts := filepath.Join(dir, "accounts.json")
	os.WriteFile(accounts, []byte(`{"alice_01":"Alice Liddell"}`), 0o600)
	wpub, wpriv, _ := ed25519.GenerateKey(nil)
	wallets := filepath.Join(dir, "wallets.json")
	os.WriteFile(wallets, []byte(`{"w1":"`+base64.StdEncoding.EncodeToString(wpub)+`"}`), 0o644)
	policy := filepath.Join(dir, "policy.json")
	os.WriteFile(policy, []byte(`{"max_topup_minor": 20000, "kiosks": {"K1": {"daily_notes": 10}}}`), 0o644)
	operators := filepath.Join(dir, "operators.json")
	os.WriteFile(operators, []byte(`{"olga": "olga-token-0123456789"}`), 0o600)

	ctx, cancel := context.WithCancel(t.Context())
	logs := &syncBuffer{}
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, append([]string{"-embedded-broker", "127.0.0.1:0", "-http", "127.0.0.1:0", "-key", key, "-kid", "k1",
			"-accounts", accounts, "-client-id", "ledgerd-test",
			"-wallet-keys", wallets, "-policy", policy, "-operators", operators}, storeArgs(dir)...), logs, logs)
	}()
	urlRe := regexp.MustCompile(`embedded broker" url=(tcp://[0-9.:]+)`)
	var url string
	deadline := time.Now().Add(wait)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for url == "" || !strings.Contains(logs.String(), "ledger: subscribed") || !strings.Contains(logs.String(), "ledgerd: fleet view") {
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
	send := func(seq uint64, amount int64, want string) {
		t.Helper()
		tp := wire.Topup{V: 1, TopupID: wire.TopupID("K1", 1, seq), KioskID: "K1", Seq: seq, Account: "alice_01", Currency: "CNY",
			AmountMinor: amount, Notes: []wire.NoteLine{{ValueMinor: 10000, Count: amount / 10000}}, OpenedAt: now, ClosedAt: now,
			ReceiptNo: seq, Outcome: wire.OutcomeComplete,
			QR: qrpay.Sign(wpriv, "w1", "alice_01", now.Add(time.Minute), fmt.Sprintf("nonce%04d", seq))}
		raw, _ := json.Marshal(tp)
		if err := c.Publish(wctx, "kiosk/K1/up/topup", 1, false, raw); err != nil {
			t.Fatal(err)
		}
		select {
		case a := <-acks:
			if a.Status != want || a.AmountMinor != amount {
				t.Errorf("ack %+v, want %s", a, want)
			}
		case <-time.After(wait):
			t.Fatalf("no ack\n%s", logs)
		}
	}
	send(1, 10000, wire.AckCredited)
	send(2, 30000, wire.AckHeld) // over the policy's maximum
	// An operator releases it over HTTP with the token from the operators file.
	httpAddr := regexp.MustCompile(`fleet view" url=http://([0-9.:]+)/`).FindStringSubmatch(logs.String())
	if httpAddr == nil {
		t.Fatalf("no HTTP address in the logs\n%s", logs)
	}
	body := strings.NewReader(`{"operator": "olga", "note": "checked the cassette"}`)
	req, _ := http.NewRequest(http.MethodPost, "http://"+httpAddr[1]+"/api/held/"+wire.TopupID("K1", 1, 2)+"/release", body)
	req.Header.Set("Authorization", "Bearer olga-token-0123456789")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("release: %s", resp.Status)
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
	key := filepath.Join(dir, "ledger.key")
	if err := run(t.Context(), []string{"-genkey", "-key", key}, &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	wallets := filepath.Join(dir, "w.json")
	open := filepath.Join(dir, "ops.json")
	os.WriteFile(open, []byte(`{"olga": "olga-token-0123456789"}`), 0o644)
	for name, setup := range map[string]struct {
		wallets string
		args    []string
	}{
		"no wallet keys":         {"", nil},
		"empty wallet keys":      {`{}`, nil},
		"short wallet key":       {`{"w1": "AAAA"}`, nil},
		"bad policy":             {`{"w1": "` + base64.StdEncoding.EncodeToString(make([]byte, 32)) + `"}`, []string{"-policy", wallets}},
		"readable operator file": {`{"w1": "` + base64.StdEncoding.EncodeToString(make([]byte, 32)) + `"}`, []string{"-operators", open}},
		"negative batch size":    {`{"w1": "` + base64.StdEncoding.EncodeToString(make([]byte, 32)) + `"}`, []string{"-batch-size", "-1"}},
		"negative batch workers": {`{"w1": "` + base64.StdEncoding.EncodeToString(make([]byte, 32)) + `"}`, []string{"-batch-workers", "-2"}},
	} {
		args := append([]string{"-key", key, "-store", filepath.Join(dir, "l.db"), "-http", ""}, setup.args...)
		if setup.wallets != "" {
			os.WriteFile(wallets, []byte(setup.wallets), 0o600)
			args = append(args, "-wallet-keys", wallets)
		}
		if err := run(t.Context(), args, &bytes.Buffer{}, &bytes.Buffer{}); err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.HasPrefix(name, "negative batch") && !strings.Contains(err.Error(), "batch") {
			t.Errorf("%s: %v, want an error about the batch settings", name, err)
		}
	}
}
