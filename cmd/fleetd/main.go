// Command fleetd is the operations console for the kiosk fleet (package sync/fleet): it reads
// every kiosk's status, heartbeats, alarms and command results over MQTT, keeps them durably,
// serves the fleet and kiosk pages to operators, sends signed commands, calls webhooks when
// alarms rise and clear, and exports Prometheus metrics on /metrics.
//
// fleetd is separate from ledgerd on purpose: it holds the OPS signing key, the ledger holds
// the ack key, and a kiosk keeps the two key sets apart (sync/CONTRACT.md §7.4), so whoever
// can command a kiosk cannot credit money, and the reverse.
//
// Usage:
//
//	fleetd -genkey -key ops.key -kid ops-1       # once: the ops key pair (ops.key, ops.key.pub)
//	fleetd -broker ssl://mqtt.example:8883 -tls-ca ca.pem -tls-cert fleetd-1.pem -tls-key fleetd-1.key \
//	       -key ops.key -kid ops-1 -operators operators.json -store fleetd.db -ledger http://127.0.0.1:8081
//	fleetd -config fleetd.json                   # the same settings as JSON (fields named like the flags)
//
// With mosquitto (deploy/mosquitto), the client certificate's CN is fleetd-1: the ACL lets it
// read kiosk/+/up/# and write kiosk/+/down/cmd. A plain tcp:// broker is refused unless
// -allow-insecure is given (demo and tests).
//
// The key file holds an Ed25519 private key as PEM "PRIVATE KEY" (PKCS #8), mode 0600;
// <key>.pub holds the raw public key in standard base64, which kiosks list under
// mqtt.ops_keys with the kid. The operators file is a JSON object mapping operator names to
// secrets (at least 16 characters), mode 0600: an operator signs in with HTTP Basic (name,
// secret) or "Authorization: Bearer <secret>". There is no open console.
//
// The webhooks file is a JSON array of rules:
//
//	[{"name": "oncall", "url": "https://hooks.example/fleet", "min_severity": "warning",
//	  "actors": ["engineer", "ops"], "repeat": "30m"}]
//
// /metrics and /healthz need no login (Prometheus scrapes them); keep -http on a network only
// operators and the scraper reach. SIGINT and SIGTERM stop fleetd cleanly.
package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kioskd/kioskd/sync/fleet"
	"github.com/kioskd/kioskd/sync/mqttc"
	"github.com/kioskd/kioskd/sync/wire"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, nil)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleetd:", err)
		os.Exit(1)
	}
}

type options struct {
	genkey, allowInsecure                          bool
	configFile, brokers, clientID, username        string
	passwordFile, caFile, certFile, keyFile, store string
	httpAddr, signKey, kid, operators, ledgerURL   string
	webhooks, logLevel                             string
	cmdTTL, staleAfter, stuckAfter, idleAfter      time.Duration
	refresh                                        time.Duration
}

func newFlagSet(o *options, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("fleetd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&o.genkey, "genkey", false, "write a new Ed25519 ops key pair to -key and <key>.pub, print the public key, and exit")
	fs.StringVar(&o.configFile, "config", "", "JSON config file (fields named like the flags)")
	fs.StringVar(&o.brokers, "broker", "ssl://127.0.0.1:8883", "broker URL(s), comma-separated")
	fs.BoolVar(&o.allowInsecure, "allow-insecure", false, "allow a broker URL without TLS (demo and tests only)")
	fs.StringVar(&o.clientID, "client-id", "fleetd-1", "MQTT client id (the certificate CN the broker ACL knows)")
	fs.StringVar(&o.username, "username", "", "MQTT username")
	fs.StringVar(&o.passwordFile, "password-file", "", "file holding the MQTT password")
	fs.StringVar(&o.caFile, "tls-ca", "", "PEM CA bundle to verify the broker")
	fs.StringVar(&o.certFile, "tls-cert", "", "PEM client certificate")
	fs.StringVar(&o.keyFile, "tls-key", "", "PEM client certificate key")
	fs.StringVar(&o.store, "store", "fleetd.db", "bbolt store path")
	fs.StringVar(&o.httpAddr, "http", "127.0.0.1:8082", "console and /metrics address")
	fs.StringVar(&o.signKey, "key", "ops.key", "Ed25519 ops signing key (PEM PKCS #8, mode 0600)")
	fs.StringVar(&o.kid, "kid", "ops-1", "key id sent with every command signature")
	fs.StringVar(&o.operators, "operators", "", "JSON file mapping operator names to secrets (mode 0600; required)")
	fs.StringVar(&o.ledgerURL, "ledger", "", "ledgerd's HTTP base URL, for recent top-ups (empty: none)")
	fs.StringVar(&o.webhooks, "webhooks", "", "JSON file with webhook rules")
	fs.DurationVar(&o.cmdTTL, "cmd-ttl", 10*time.Minute, "command lifetime (expires_at - issued_at)")
	fs.DurationVar(&o.staleAfter, "stale-after", 3*time.Minute, "a heartbeat older than this is stale")
	fs.DurationVar(&o.stuckAfter, "stuck-after", 7*time.Minute, "a session outside idle longer than this is stuck")
	fs.DurationVar(&o.idleAfter, "idle-after", 72*time.Hour, "a kiosk without a top-up for longer is idle")
	fs.DurationVar(&o.refresh, "refresh", 5*time.Second, "live update period of the pages")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	return fs
}

// run is fleetd. started, if not nil, receives the console's address once it listens.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, started chan<- string) error {
	var o options
	fs := newFlagSet(&o, stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.configFile != "" {
		if err := applyConfigFile(fs, o.configFile); err != nil {
			return err
		}
	}
	if o.genkey {
		return genKey(o.signKey, o.kid, stdout)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	mqttc.SetPahoLogger(logger)

	key, err := loadKey(o.signKey)
	if err != nil {
		return err
	}
	if o.operators == "" {
		return errors.New("-operators is required: the console has no open mode")
	}
	var ops fleet.Operators
	if err := readPrivateJSON(o.operators, &ops); err != nil {
		return err
	}
	if err := ops.Check(); err != nil {
		return err
	}
	var rules []fleet.Rule
	if o.webhooks != "" {
		raw, err := os.ReadFile(o.webhooks)
		if err != nil {
			return fmt.Errorf("webhooks: %w", err)
		}
		if err := json.Unmarshal(raw, &rules); err != nil {
			return fmt.Errorf("webhooks %s: %w", o.webhooks, err)
		}
	}

	mc := mqttc.Config{ClientID: o.clientID, Username: o.username, Logger: logger, Workers: 1}
	for b := range strings.SplitSeq(o.brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			if !o.allowInsecure && (strings.HasPrefix(b, "tcp://") || strings.HasPrefix(b, "mqtt://") || strings.HasPrefix(b, "ws://")) {
				return fmt.Errorf("broker %s has no TLS: use ssl:// (or -allow-insecure for a demo)", b)
			}
			mc.Brokers = append(mc.Brokers, b)
		}
	}
	if o.passwordFile != "" {
		pw, err := os.ReadFile(o.passwordFile)
		if err != nil {
			return fmt.Errorf("password file: %w", err)
		}
		mc.Password = strings.TrimRight(string(pw), "\r\n")
	}
	if mc.TLS, err = mqttc.LoadTLS(o.caFile, o.certFile, o.keyFile); err != nil {
		return err
	}

	store, err := fleet.OpenBolt(o.store)
	if err != nil {
		return err
	}
	defer func() { _ = store.Close() }()
	notifier, err := fleet.NewNotifier(rules, nil, nil, logger)
	if err != nil {
		return err
	}
	defer notifier.Close()
	f, err := fleet.New(fleet.Config{Store: store, Signer: wire.Signer{KID: o.kid, Key: key}, CommandTTL: o.cmdTTL,
		StaleAfter: o.staleAfter, StuckAfter: o.stuckAfter, IdleAfter: o.idleAfter, Notifier: notifier, Logger: logger})
	if err != nil {
		return err
	}
	notifier.CountWith(f)
	var ledger *fleet.LedgerClient
	if o.ledgerURL != "" {
		ledger = &fleet.LedgerClient{Base: o.ledgerURL}
	}
	h, err := f.Handler(fleet.WebConfig{Operators: ops, Ledger: ledger, Refresh: o.refresh})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.httpAddr)
	if err != nil {
		return fmt.Errorf("http listen: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelDebug)}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("fleetd: http", "err", err)
		}
	})
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if srv.Shutdown(sctx) != nil {
			srv.Close()
		}
		cancel()
	}()
	logger.Info("fleetd: console", "url", "http://"+ln.Addr().String()+"/", "kid", o.kid)

	mc.OnConnect = f.OnConnect
	client, err := mqttc.Dial(mc)
	if err != nil {
		return fmt.Errorf("mqtt: %w", err)
	}
	defer client.Close(250 * time.Millisecond)
	if started != nil {
		started <- ln.Addr().String()
	}
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			logger.Info("fleetd: stopping")
			return nil
		case <-tick.C:
			notifier.Tick()
		}
	}
}

// applyConfigFile sets every flag named in the JSON file that was not given on the command
// line; an unknown field is an error.
func applyConfigFile(fs *flag.FlagSet, path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for name, v := range m {
		if fs.Lookup(name) == nil || name == "config" || name == "genkey" {
			return fmt.Errorf("config %s: unknown field %q", path, name)
		}
		if set[name] {
			continue
		}
		if err := fs.Set(name, fmt.Sprint(v)); err != nil {
			return fmt.Errorf("config %s: %s: %w", path, name, err)
		}
	}
	return nil
}

var errPerm = errors.New("readable by group or others (chmod 600)")

// readPrivateJSON reads a secrets file that only its owner may read.
func readPrivateJSON(path string, v any) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s: %w", path, errPerm)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func genKey(path, kid string, stdout io.Writer) error {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("genkey: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	b64 := base64.StdEncoding.EncodeToString(pub)
	if err := os.WriteFile(path+".pub", []byte(b64+"\n"), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "kid %s\npublic key %s\n(list it under mqtt.ops_keys in each kiosk's configuration)\n", kid, b64)
	return nil
}

func loadKey(path string) (ed25519.PrivateKey, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("ops key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("ops key %s: %w", path, errPerm)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(raw)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("ops key: want a PEM \"PRIVATE KEY\" block (PKCS #8)")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("ops key: %w", err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, errors.New("ops key: not an Ed25519 key")
	}
	return priv, nil
}
