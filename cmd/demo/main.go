// Command demo runs a whole kiosk system on one machine with no external service: simulated
// hardware on pseudo-terminals (hw-sim), kioskd using its real serial code on them, an
// in-process MQTT broker and the reference ledger. It prints the URLs of the customer screen,
// the simulator control panel and the ledger's fleet view. Ctrl-C stops everything.
//
// State (journal, ledger store, keys) lives in -state (default .demo), so a second run shows
// the journal surviving a restart.
package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kioskd/kioskd/hw-sim/simrig"
	"github.com/kioskd/kioskd/kiosk/config"
	"github.com/kioskd/kioskd/kiosk/daemon"
	"github.com/kioskd/kioskd/kiosk/session"
	"github.com/kioskd/kioskd/kiosk/svcmenu"
	"github.com/kioskd/kioskd/sync/broker"
	"github.com/kioskd/kioskd/sync/ledger"
	"github.com/kioskd/kioskd/sync/mqttc"
	"github.com/kioskd/kioskd/sync/wire"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run() error {
	var o options
	flag.StringVar(&o.state, "state", ".demo", "directory for the journal, the ledger store and the demo keys")
	flag.StringVar(&o.kioskHTTP, "kiosk", "127.0.0.1:8080", "customer screen address")
	flag.StringVar(&o.simHTTP, "sim", "127.0.0.1:8070", "simulator control panel address")
	flag.StringVar(&o.ledgerHTTP, "ledger", "127.0.0.1:8090", "ledger fleet view address")
	flag.StringVar(&o.fleetHTTP, "fleet", "127.0.0.1:8060", "operations console (fleetd) address")
	flag.StringVar(&o.menuHTTP, "menu", "127.0.0.1:8095", "technicians' service menu address (\"\" turns it off)")
	flag.StringVar(&o.mqttAddr, "mqtt", "127.0.0.1:0", "embedded MQTT broker address")
	flag.StringVar(&o.proto, "acceptor", "id003", "bill acceptor protocol to simulate: "+strings.Join(simrig.ProtocolNames(), ", "))
	verbose := flag.Bool("v", false, "log at debug level")
	flag.Parse()

	lvl := slog.LevelInfo
	if *verbose {
		lvl = slog.LevelDebug
	}
	o.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return serve(ctx, o, func(r ready) {
		fmt.Printf(`
kioskd demo is running (state in %s). Open:

  customer screen      http://%s/
  hardware simulator   %s
  ledger fleet view    http://%s/
  operations console   %s  (operator %q, secret %s)

In the simulator: "Scan valid wallet code", insert notes, then press Finish on the customer
screen. The receipt appears in the simulator's printer panel; the balance in the ledger view
(http://%s/api/accounts/demo_alice). The simulator also opens the doors, triggers the tamper
switch and signs off a cheat attempt as a technician. Ctrl-C stops everything.

Technician's view of the running kiosk:  go run ./cmd/kioskctl status -socket %s
(also devices, conditions, counters, outbox, uncertain, receipt N, reprint N, maintenance on|off,
selftest, signoff, collect)
%s
`, o.state, r.kioskAddr, r.simURL, r.ledgerAddr, r.fleetURL, r.operator, r.secret, r.ledgerAddr, r.socket, menuLine(o.menuHTTP))
	})
}

// options are the demo's flags.
type options struct {
	state, kioskHTTP, simHTTP, ledgerHTTP, fleetHTTP, menuHTTP, mqttAddr, proto string
	log                                                                         *slog.Logger
}

// ready is what the demo tells its user once everything runs.
type ready struct {
	kioskAddr, simURL, ledgerAddr, fleetURL, operator, secret, socket, kioskID string
}

// demoPINs are the demo's service menu PINs by role (a real kiosk gets hashes only, from
// kioskctl pin-hash or set_credentials).
var demoPINs = map[string]string{"collector": "1111", "technician": "2222", "admin": "3333"}

// demoKioskID is the demo kiosk's id.
const demoKioskID = "DEMO-0001"

// serve runs the demo until ctx ends; onReady is called once the kiosk and the ledger serve.
func serve(ctx context.Context, o options, onReady func(ready)) error {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	log := o.log
	if err := os.MkdirAll(o.state, 0o700); err != nil {
		return err
	}
	wallet, err := demoKey(filepath.Join(o.state, "wallet.seed"))
	if err != nil {
		return err
	}
	ledgerKey, err := demoKey(filepath.Join(o.state, "ledger.seed"))
	if err != nil {
		return err
	}

	if strings.HasSuffix(o.ledgerHTTP, ":0") {
		// The console links to the ledger before the ledger listens: pick its port now.
		l, err := net.Listen("tcp", o.ledgerHTTP)
		if err != nil {
			return err
		}
		o.ledgerHTTP = l.Addr().String()
		_ = l.Close()
	}
	br, err := broker.Start(ctx, broker.Config{Addr: o.mqttAddr, Logger: log.With("component", "broker")})
	if err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	defer func() { _ = br.Close() }()

	store, err := ledger.OpenBolt(filepath.Join(o.state, "ledger.db"), ledger.Options{})
	if err != nil {
		return err
	}
	defer func() { _ = store.Close() }()
	led, err := ledger.New(ledger.Config{MQTT: mqttc.Config{Brokers: []string{br.URL()}, ClientID: "ledger-1", Logger: log},
		Store: store, Signer: wire.Signer{KID: "demo-ledger", Key: ledgerKey}, HTTPAddr: o.ledgerHTTP,
		WalletKeys: map[string]ed25519.PublicKey{"demo-wallet": wallet.Public().(ed25519.PublicKey)},
		Names:      map[string]string{"demo_alice": "Alice Zhang", "demo_bob": "Bob Li"}, Logger: log.With("component", "ledger")})
	if err != nil {
		return err
	}

	rig, err := simrig.Start(ctx, simrig.Config{Acceptor: o.proto, Denominations: simrig.DemoDenominations(o.proto, "CNY"), Listen: o.simHTTP,
		WalletKey: wallet, WalletKID: "demo-wallet", Logger: log.With("component", "hw-sim")})
	if err != nil {
		return err
	}
	defer func() { _ = rig.Close() }()
	ports := rig.Ready()

	fl, err := startFleet(o.state, o.fleetHTTP, br.URL(), "http://"+o.ledgerHTTP, log.With("component", "fleetd"))
	if err != nil {
		return err
	}
	cfg := config.Default()
	cfg.Kiosk = config.Kiosk{ID: demoKioskID, Location: "Demo hall", Timezone: "Asia/Shanghai", Currency: "CNY", Language: "en", Hotline: "400-000-0000"}
	cfg.Journal.Path, _ = filepath.Abs(filepath.Join(o.state, "journal.db"))
	cfg.Acceptor.Driver = o.proto
	cfg.Acceptor.Port = ports.AcceptorPort
	if ports.AcceptorPort == "" {
		// A unit on pins (pulse): the daemon opens the rig's simulated pins.
		cfg.Acceptor.Pulse = config.Pulse{CreditPin: simrig.PinPulseCredit, InhibitPin: simrig.PinPulseInhibit, ActiveLevel: "low", InhibitLevel: "high"}
	}
	// The door, vault and tamper switches are the rig's simulated pins, which the daemon in
	// this process opens (the simulator's panel opens the doors).
	cfg.Sensors = []config.Sensor{
		{Name: "cabinet_door", Pin: simrig.PinCabinetDoor, ActiveLevel: "high"},
		{Name: "vault_door", Pin: simrig.PinVaultDoor, ActiveLevel: "high"},
		{Name: "tamper", Pin: simrig.PinTamper, ActiveLevel: "high"},
	}
	for code, n := range simrig.DemoDenominations(o.proto, "CNY") {
		cfg.Acceptor.Denominations = append(cfg.Acceptor.Denominations, config.Denomination{Code: code, ValueMinor: n.ValueMinor})
	}
	cfg.Printer = config.Printer{Enabled: true, Port: ports.PrinterPort, Baud: 9600, Profile: "generic80"}
	cfg.Scanner = config.Scanner{Port: ports.ScannerPort, Baud: 9600}
	cfg.Limits = config.Limits{SessionMaxMinor: 200000, OfflineSessionMaxMinor: 50000, OfflineTotalMaxMinor: 200000}
	cfg.Wallet.Keys = map[string]string{"demo-wallet": base64.StdEncoding.EncodeToString(wallet.Public().(ed25519.PublicKey))}
	cfg.MQTT.Broker = br.URL()
	cfg.MQTT.AllowInsecure = true // the demo's in-process broker on loopback has no TLS
	cfg.MQTT.LedgerKeys = map[string]string{"demo-ledger": base64.StdEncoding.EncodeToString(ledgerKey.Public().(ed25519.PublicKey))}
	cfg.MQTT.Heartbeat = config.Duration(10 * time.Second)
	// Commands signed by the demo's operations console (never by the ledger's key).
	cfg.MQTT.OpsKeys = map[string]string{fl.kid: base64.StdEncoding.EncodeToString(fl.opsKey.Public().(ed25519.PublicKey))}
	cfg.HTTP.Listen = o.kioskHTTP
	// The technicians' socket lives in the demo's state directory (not /run/kioskd), so
	// kioskctl works against the demo without root.
	sock, _ := filepath.Abs(filepath.Join(o.state, "kioskd.sock"))
	cfg.Control = config.Control{Socket: sock, Group: ""}
	if o.menuHTTP != "" {
		// The service menu with the demo's PINs (printed at start); the gesture (a long press
		// on the customer screen's title) opens it without the simulator's cabinet door.
		hashes := map[string]string{}
		for role, pin := range demoPINs {
			h, err := svcmenu.HashPIN(pin, svcmenu.DefaultParams)
			if err != nil {
				return err
			}
			hashes[role] = h
		}
		cfg.ServiceMenu = config.ServiceMenu{Listen: o.menuHTTP, Gesture: true, PINHashes: hashes}
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("demo config: %w", err)
	}

	var wg sync.WaitGroup
	errc := make(chan error, 3)
	wg.Add(3)
	go func() {
		defer wg.Done()
		if err := fl.run(ctx); err != nil {
			errc <- fmt.Errorf("fleetd: %w", err)
		}
	}()
	go func() {
		defer wg.Done()
		if err := led.Run(ctx); err != nil {
			errc <- fmt.Errorf("ledger: %w", err)
		}
	}()
	kioskReady := make(chan string, 1)
	go func() {
		defer wg.Done()
		k, err := daemon.New(ctx, cfg, daemon.Options{Version: "demo", Logger: log.With("component", "kioskd"), OpenPin: rig.Pin, Ready: func(a string) { kioskReady <- a }})
		if err == nil {
			if e := k.Engine(); e != nil {
				// The simulator's technician signs off through the engine's command API, as
				// the service menu does.
				rig.SetSignOff(func(ctx context.Context, condition, who, why string) error {
					_, err := e.Do(ctx, session.Command{Kind: session.CmdSignoff, Condition: condition, Who: who, Why: why})
					return err
				})
			}
			err = k.Run(ctx)
		}
		if err != nil && !errors.Is(err, context.Canceled) {
			errc <- fmt.Errorf("kioskd: %w", err)
		}
	}()
	select {
	case addr := <-kioskReady:
		<-led.Ready()
		onReady(ready{kioskAddr: addr, simURL: ports.ControlURL, ledgerAddr: led.HTTPAddr(), fleetURL: fl.url, operator: fl.operator,
			secret: fl.secret, socket: sock, kioskID: demoKioskID})
	case err := <-errc:
		stop()
		wg.Wait()
		return err
	case <-ctx.Done():
	}
	select {
	case err := <-errc:
		stop()
		wg.Wait()
		return err
	case <-ctx.Done():
	}
	wg.Wait()
	return nil
}

// demoKey loads or creates an Ed25519 seed file for the demo (never for production keys).
func demoKey(path string) (ed25519.PrivateKey, error) {
	if b, err := os.ReadFile(path); err == nil {
		seed, err := base64.StdEncoding.DecodeString(string(b))
		if err != nil || len(seed) != ed25519.SeedSize {
			return nil, fmt.Errorf("%s: not a demo key; delete it to make a new one", path)
		}
		return ed25519.NewKeyFromSeed(seed), nil
	}
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(priv.Seed())), 0o600); err != nil {
		return nil, err
	}
	return priv, nil
}

// menuLine tells where the service menu is and the demo's PINs.
func menuLine(addr string) string {
	if addr == "" {
		return ""
	}
	return fmt.Sprintf("Service menu (open the cabinet door in the simulator, or long-press the title of the\ncustomer screen): http://%s/  PINs: collector %s, technician %s, admin %s\n",
		addr, demoPINs["collector"], demoPINs["technician"], demoPINs["admin"])
}
