// Command hw-sim runs the simulated kiosk hardware on pseudo-terminals: a bill acceptor
// (-acceptor id003), an ESC/POS receipt printer and a QR scanner, with a control API and a
// web panel on loopback. Once ready it prints one JSON line on stdout naming each pty and the
// control URL, e.g.
//
//	{"acceptor":"id003","acceptor_port":"/dev/pts/5","printer_port":"/dev/pts/6","scanner_port":"/dev/pts/7","control_url":"http://127.0.0.1:8070/"}
//
// so any outside test or a kioskd config can attach to it. -wallet-key names a file holding a
// base64 Ed25519 seed (32 bytes) used to sign demo wallet codes ("Scan valid wallet code").
//
// -line-speed makes the emulators take and send bytes at their serial lines' speed instead
// of a pty's (ID-003 9600 8E1, CCNET 9600 8N1, SSP 9600 8N2, printer and scanner 9600 8N1):
// alone it means every device, or it names them (-line-speed=printer,acceptor).
// -printer-line sets the printer's line ("19200 8N1") to match kioskd's printer.baud.
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

	"github.com/kioskd/kioskd/hw-sim/linespeed"
	"github.com/kioskd/kioskd/hw-sim/simrig"
)

// lineSpeedFlag is -line-speed: a boolean flag ("-line-speed" alone turns every device on)
// that also takes a device list.
type lineSpeedFlag struct{ ls simrig.LineSpeed }

func (f *lineSpeedFlag) String() string { return f.ls.String() }

func (f *lineSpeedFlag) Set(s string) error {
	pl := f.ls.PrinterLine
	ls, err := simrig.ParseLineSpeed(s)
	if err != nil {
		return err
	}
	ls.PrinterLine = pl
	f.ls = ls
	return nil
}

func (f *lineSpeedFlag) IsBoolFlag() bool { return true }

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
	hid := flag.Bool("hid-scanner", false, "also emulate a USB HID (keyboard-wedge) scanner on a virtual keyboard through /dev/uinput; scans go to it (kioskd: scanner.hid.device = the printed hid_scanner)")
	var lines lineSpeedFlag
	flag.Var(&lines, "line-speed", "pace the emulators at their serial lines' baud rate: alone for all, or a list of acceptor,printer,scanner")
	printerLine := flag.String("printer-line", "", `the printer's line in line-speed mode, e.g. "19200 8N1" (default 9600 8N1)`)
	flag.Parse()
	if *printerLine != "" {
		l, err := linespeed.Parse(*printerLine)
		if err != nil {
			return fmt.Errorf("-printer-line: %w", err)
		}
		lines.ls.PrinterLine = l
	}
	lvl := slog.LevelWarn
	if *verbose {
		lvl = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	cfg := simrig.Config{Acceptor: *proto, Denominations: simrig.DemoDenominations(*proto, *currency), Listen: *listen, Logger: log, WalletKID: *kid,
		LineSpeed: lines.ls, HIDScanner: *hid}
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
	defer func() { _ = rig.Close() }()
	if err := json.NewEncoder(os.Stdout).Encode(rig.Ready()); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}
