// Command hw-sim runs the simulated kiosk hardware on pseudo-terminals: a bill acceptor
// (-acceptor id003), an ESC/POS receipt printer and a QR scanner, with a control API and a
// web panel on loopback. Once ready it prints one JSON line on stdout naming each pty and the
// control URL, e.g.
//
//	{"acceptor":"id003","acceptor_port":"/dev/pts/5","printer_port":"/dev/pts/6","scanner_port":"/dev/pts/7","control_url":"http://127.0.0.1:8070/"}
//
// so any outside test or a kioskd config can attach to it. -wallet-key names a file holding a
// base64 Ed25519 seed (32 bytes) used to sign demo wallet codes ("Scan valid wallet code").
package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/kioskd/kioskd/hw-sim/simrig"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "hw-sim:", err)
		os.Exit(1)
	}
}

func run() error {
	proto := flag.String("acceptor", "id003", "acceptor protocol to emulate: "+strings.Join(simrig.ProtocolNames(), ", "))
	listen := flag.String("listen", "127.0.0.1:8070", "control API address")
	currency := flag.String("currency", "CNY", "currency of the demo denominations")
	keyFile := flag.String("wallet-key", "", "file with a base64 Ed25519 seed for demo wallet codes")
	kid := flag.String("wallet-kid", "demo", "key id of the demo wallet key")
	sspKey := flag.String("ssp-key", "", "eSSP fixed key of the simulated ITL unit, 16 hex digits (kioskd's acceptor.ssp.fixed_key_file must hold the same)")
	verbose := flag.Bool("v", false, "log emulator details")
	flag.Parse()
	lvl := slog.LevelWarn
	if *verbose {
		lvl = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	cfg := simrig.Config{Acceptor: *proto, Denominations: simrig.DemoDenominations(*proto, *currency), Listen: *listen, Logger: log, WalletKID: *kid}
	if *keyFile != "" {
		b, err := os.ReadFile(*keyFile)
		if err != nil {
			return err
		}
		seed, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
		if err != nil || len(seed) != ed25519.SeedSize {
			return fmt.Errorf("wallet key %s: want a base64 32-byte Ed25519 seed", *keyFile)
		}
		cfg.WalletKey = ed25519.NewKeyFromSeed(seed)
	}
	if *sspKey != "" {
		k, err := strconv.ParseUint(strings.TrimPrefix(*sspKey, "0x"), 16, 64)
		if err != nil || len(strings.TrimPrefix(*sspKey, "0x")) != 16 {
			return fmt.Errorf("-ssp-key: want 16 hex digits")
		}
		cfg.SSPFixedKey = k
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rig, err := simrig.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer rig.Close()
	if err := json.NewEncoder(os.Stdout).Encode(rig.Ready()); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}
