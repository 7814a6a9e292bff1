package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/kioskd/kioskd/sync/fleet"
	"github.com/kioskd/kioskd/sync/mqttc"
	"github.com/kioskd/kioskd/sync/wire"
)

// demoFleet is the operations console of the demo: fleetd's parts in this process, on the
// demo's broker, with its own ops key (kioskd accepts commands signed by it, never by the
// ledger's key) and one operator whose secret is made on first start.
type demoFleet struct {
	url, operator, secret string
	opsKey                ed25519.PrivateKey
	kid                   string
	run                   func(ctx context.Context) error
}

func startFleet(state, addr, brokerURL, ledgerURL string, log *slog.Logger) (*demoFleet, error) {
	key, err := demoKey(filepath.Join(state, "ops.seed"))
	if err != nil {
		return nil, err
	}
	secret, err := demoSecret(filepath.Join(state, "operator.secret"))
	if err != nil {
		return nil, err
	}
	store, err := fleet.OpenBolt(filepath.Join(state, "fleet.db"))
	if err != nil {
		return nil, err
	}
	f, err := fleet.New(fleet.Config{Store: store, Signer: wire.Signer{KID: "demo-ops", Key: key}, Logger: log})
	if err != nil {
		_ = store.Close()
		return nil, err
	}
	h, err := f.Handler(fleet.WebConfig{Operators: fleet.Operators{"demo": secret}, Ledger: &fleet.LedgerClient{Base: ledgerURL}})
	if err != nil {
		_ = store.Close()
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		_ = store.Close()
		return nil, fmt.Errorf("fleet console listen: %w", err)
	}
	d := &demoFleet{url: "http://" + ln.Addr().String() + "/", operator: "demo", secret: secret, opsKey: key, kid: "demo-ops"}
	d.run = func(ctx context.Context) error {
		defer func() { _ = store.Close() }()
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
		done := make(chan error, 1)
		go func() { done <- srv.Serve(ln) }()
		client, err := mqttc.Dial(mqttc.Config{Brokers: []string{brokerURL}, ClientID: "fleetd-1", OnConnect: f.OnConnect, Logger: log})
		if err != nil {
			_ = srv.Close()
			if serr := <-done; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
				log.Warn("fleet console http", "err", serr)
			}
			return fmt.Errorf("fleet console mqtt: %w", err)
		}
		<-ctx.Done()
		client.Close(250 * time.Millisecond)
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
	return d, nil
}

// demoSecret loads or makes the demo operator's secret (never for a real console).
func demoSecret(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil && len(b) >= 16 {
		return string(b), nil
	}
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	s := hex.EncodeToString(b[:])
	return s, os.WriteFile(path, []byte(s), 0o600)
}
