// Command ledgerd runs the reference central ledger (package sync/ledger): it consumes kiosk
// top-ups and authz requests over MQTT, answers them with signed acks, and serves the fleet
// view and a JSON API over HTTP (loopback by default).
//
// Usage:
//
//	ledgerd -genkey -key ledger.key -kid ledger-1      # once: make the signing key pair
//	ledgerd -broker tcp://127.0.0.1:1883 -key ledger.key -kid ledger-1 -store ledger.db
//	ledgerd ... -store postgres://ledger@db.example/ledger  # PostgreSQL, shared by many ledgerd
//	ledgerd -embedded-broker 127.0.0.1:1883 ...        # demo: run an in-process broker too
//	ledgerd -config ledgerd.json                        # the same settings as JSON
//
// # Signing key files
//
// The private key file holds one Ed25519 private key as PEM "PRIVATE KEY" (PKCS #8, RFC 8410),
// the format of `openssl genpkey -algorithm ed25519`, so a key made by either tool works
// with the other. ledgerd refuses a key file that group or others can read. -genkey writes
// it with mode 0600 (and never overwrites), and writes the public key next to it as
// <key>.pub: one line, the 32-byte raw Ed25519 public key in standard base64 (RFC 4648 §4,
// with padding), which is what a kiosk's configuration lists under the kid. It also prints
// the kid and the public key.
//
// # Config file
//
// -config names a JSON object whose fields are the flag names (e.g. {"broker":
// "ssl://mqtt.example:8883", "tls-ca": "/etc/ledgerd/ca.pem", "daily-limit": 1000000}); unknown
// fields are an error. Flags given on the command line override the file.
//
// The accounts file (-accounts) is a JSON object mapping account ids to display names; names
// are masked before they leave the ledger.
//
// # Trust (what a stolen kiosk key cannot do)
//
// -wallet-keys (required) names a JSON object mapping wallet key ids to Ed25519 public keys
// (standard base64 of the 32 raw bytes), the same keys the kiosks list under wallet.keys: the
// ledger credits a top-up only when it carries the wallet-signed QR code for that account,
// used once. -policy names a JSON ledger.Fleet: the per-top-up maximum, the banknotes per
// currency, a kiosk's daily notes and cash-in, strict journal epochs, with per-kiosk overrides:
//
//	{"max_topup_minor": 500000, "denominations": {"CNY": [100, 500, 1000, 2000, 5000, 10000]},
//	 "daily_notes": 2500, "strict_epochs": true, "qr_tolerance": "10m",
//	 "kiosks": {"K-0042": {"daily_notes": 5000}}}
//
// A top-up that fails a check is held (stored, acked "held", not credited). -operators names
// a JSON object mapping operator names to bearer tokens (at least 16 characters; the file must
// not be readable by group or others): only they can release or reject held top-ups and
// suspense records through the HTTP API (POST /api/held/{topup_id}/release with
// "Authorization: Bearer <token>" and {"operator": name, "note": text}).
//
// # Store
//
// -store is a bbolt file path (the default, for a single ledger host) or a postgres:// (or
// postgresql://) URL; -pg takes a PostgreSQL DSN in either form (URL or "host=... dbname=...")
// and wins over -store. On PostgreSQL any number of ledgerd share the database (and the
// broker's shared subscription): each top-up is credited in one transaction under its kiosk
// epoch's row lock, a topup_id once, whichever instance receives it. The schema is created and migrated at start.
// On PostgreSQL, top-ups are applied by group commit: -batch-workers batches (default 4) of
// up to -batch-size top-ups each (default 64) in the database at once, with a connection pool
// of -batch-workers+2 unless the DSN sets pool_max_conns (package ledger, "Group commit").
// Keep the password out of the DSN: PGPASSWORD or ~/.pgpass are read as libpq reads them.
//
// SIGINT and SIGTERM stop ledgerd cleanly (exit status 0).
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
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kioskd/kioskd/sync/broker"
	"github.com/kioskd/kioskd/sync/ledger"
	"github.com/kioskd/kioskd/sync/mqttc"
	"github.com/kioskd/kioskd/sync/wire"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ledgerd:", err)
		os.Exit(1)
	}
}

type options struct {
	genkey         bool
	configFile     string
	brokers        string
	embeddedBroker string
	clientID       string
	username       string
	passwordFile   string
	caFile         string
	certFile       string
	keyFile        string
	store          string
	pg             string
	httpAddr       string
	signKey        string
	kid            string
	accounts       string
	requireKnown   bool
	deny           string
	dailyLimit     int64
	maxTopup       int64
	currency       string
	shareGroup     string
	plainTopupSub  bool
	walletKeys     string
	policy         string
	operators      string
	logLevel       string
	batchSize      int
	batchWorkers   int
}

func newFlagSet(o *options, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("ledgerd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&o.genkey, "genkey", false, "write a new Ed25519 key pair to -key and <key>.pub, print the public key, and exit")
	fs.StringVar(&o.configFile, "config", "", "JSON config file (fields named like the flags)")
	fs.StringVar(&o.brokers, "broker", "tcp://127.0.0.1:1883", "broker URL(s), comma-separated: tcp://, ssl://, tls://, mqtts://")
	fs.StringVar(&o.embeddedBroker, "embedded-broker", "", "also run an in-process MQTT broker on this address (demo; no TLS, no ACL)")
	fs.StringVar(&o.clientID, "client-id", "", "MQTT client id, unique per instance (default ledgerd-<hostname>)")
	fs.StringVar(&o.username, "username", "", "MQTT username")
	fs.StringVar(&o.passwordFile, "password-file", "", "file holding the MQTT password (kept out of the process list)")
	fs.StringVar(&o.caFile, "tls-ca", "", "PEM CA bundle to verify the broker (TLS)")
	fs.StringVar(&o.certFile, "tls-cert", "", "PEM client certificate (TLS)")
	fs.StringVar(&o.keyFile, "tls-key", "", "PEM client certificate key (TLS)")
	fs.StringVar(&o.store, "store", "ledger.db", "bbolt store path, or a postgres:// URL")
	fs.StringVar(&o.pg, "pg", "", "PostgreSQL DSN (URL or key=value); overrides -store")
	fs.StringVar(&o.httpAddr, "http", "127.0.0.1:8081", "HTTP API and fleet page address (empty: none)")
	fs.StringVar(&o.signKey, "key", "ledger.key", "Ed25519 signing key file (PEM PKCS #8)")
	fs.StringVar(&o.kid, "kid", "ledger-1", "key id sent with every signature")
	fs.StringVar(&o.accounts, "accounts", "", "JSON file mapping account ids to display names")
	fs.BoolVar(&o.requireKnown, "require-known-accounts", false, "deny authz for accounts not in -accounts")
	fs.StringVar(&o.deny, "deny", "", "comma-separated accounts whose authz is denied")
	fs.Int64Var(&o.dailyLimit, "daily-limit", 1_000_000, "per-account daily top-up limit, minor units")
	fs.Int64Var(&o.maxTopup, "max-topup", 500_000, "per-top-up maximum, minor units")
	fs.StringVar(&o.currency, "currency", "CNY", "ISO 4217 currency of the limits")
	fs.StringVar(&o.shareGroup, "share-group", "ledger", "shared subscription group for top-ups")
	fs.BoolVar(&o.plainTopupSub, "plain-topup-subscription", false, "subscribe to kiosk/+/up/topup without $share: for brokers without shared subscriptions, and for mosquitto, whose ACL does not stop a kiosk joining a known share group (one instance only)")
	fs.StringVar(&o.walletKeys, "wallet-keys", "", "JSON file mapping wallet key ids to Ed25519 public keys (base64), to verify the QR proof in every top-up (required)")
	fs.StringVar(&o.policy, "policy", "", "JSON file with the top-up policy (ledger.Fleet: maximum, denominations, daily cash-in, strict epochs, per-kiosk overrides)")
	fs.StringVar(&o.operators, "operators", "", "JSON file mapping operator names to bearer tokens for held/suspense decisions (mode 0600)")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.IntVar(&o.batchSize, "batch-size", 64, "PostgreSQL: most top-ups applied in one transaction (group commit; 1: one transaction per top-up)")
	fs.IntVar(&o.batchWorkers, "batch-workers", 4, "PostgreSQL: batches in the database at once; the connection pool is sized to match")
	return fs
}

// run is ledgerd; it returns nil when ctx ends (a signal is a normal stop).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
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
	if o.walletKeys == "" {
		return errors.New("-wallet-keys is required: without the wallets' public keys no top-up can be proven, and every one would be held")
	}
	wallets, err := loadWalletKeys(o.walletKeys)
	if err != nil {
		return err
	}
	var fleet ledger.Fleet
	if o.policy != "" {
		raw, err := os.ReadFile(o.policy)
		if err != nil {
			return fmt.Errorf("policy: %w", err)
		}
		if fleet, err = ledger.ParseFleet(raw); err != nil {
			return fmt.Errorf("policy %s: %w", o.policy, err)
		}
	}
	var operators map[string]string
	if o.operators != "" {
		if operators, err = loadOperators(o.operators); err != nil {
			return err
		}
	}
	names := map[string]string{}
	if o.accounts != "" {
		if names, err = loadAccounts(o.accounts); err != nil {
			return err
		}
	}
	deny := map[string]string{}
	for a := range strings.SplitSeq(o.deny, ",") {
		if a = strings.TrimSpace(a); a != "" {
			deny[a] = ""
		}
	}
	mc := mqttc.Config{ClientID: o.clientID, Username: o.username, Logger: logger}
	for b := range strings.SplitSeq(o.brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			mc.Brokers = append(mc.Brokers, b)
		}
	}
	if mc.ClientID == "" {
		host, _ := os.Hostname()
		mc.ClientID = "ledgerd-" + strings.Map(func(r rune) rune {
			if r == '/' || r == '+' || r == '#' {
				return '_'
			}
			return r
		}, host)
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

	if o.embeddedBroker != "" {
		// Not tied to ctx: the broker must outlive the ledger's own shutdown (deferred Close).
		b, err := broker.Start(context.WithoutCancel(ctx), broker.Config{Addr: o.embeddedBroker, Logger: logger})
		if err != nil {
			return err
		}
		defer func() { _ = b.Close() }()
		logger.Info("ledgerd: embedded broker", "url", b.URL())
		if !flagSet(fs, "broker") {
			mc.Brokers = []string{b.URL()} // the embedded broker may have picked its port
		}
	}

	store, err := openStore(ctx, &o, logger)
	if err != nil {
		return err
	}
	defer func() { _ = store.Close() }()

	l, err := ledger.New(ledger.Config{
		MQTT:                   mc,
		Store:                  store,
		Signer:                 wire.Signer{KID: o.kid, Key: key},
		ShareGroup:             o.shareGroup,
		PlainTopupSubscription: o.plainTopupSub,
		HTTPAddr:               o.httpAddr,
		Limits:                 ledger.Limits{Currency: o.currency, DailyMinor: o.dailyLimit, PerTopupMaxMinor: o.maxTopup},
		Names:                  names,
		RequireKnownAccount:    o.requireKnown,
		Deny:                   deny,
		WalletKeys:             wallets,
		Policy:                 fleet,
		Operators:              operators,
		BatchSize:              o.batchSize,
		BatchWorkers:           o.batchWorkers,
		Logger:                 logger,
	})
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		select {
		case <-l.Ready():
			if a := l.HTTPAddr(); a != "" {
				logger.Info("ledgerd: fleet view", "url", "http://"+a+"/")
			}
		case <-ctx.Done():
		}
	})
	return l.Run(ctx)
}

// openStore opens the PostgreSQL store when -pg or a postgres URL in -store names one, the
// bbolt file otherwise.
func openStore(ctx context.Context, o *options, logger *slog.Logger) (ledger.Store, error) {
	dsn := o.pg
	if dsn == "" && (strings.HasPrefix(o.store, "postgres://") || strings.HasPrefix(o.store, "postgresql://")) {
		dsn = o.store
	}
	if dsn == "" {
		logger.Info("ledgerd: store", "kind", "bbolt", "path", o.store)
		return ledger.OpenBolt(o.store, ledger.Options{Timeout: 5 * time.Second})
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// Every batch worker holds a connection while its batch is in the database; two more
	// serve authz and the HTTP API meanwhile. A pool_max_conns in the DSN is kept.
	maxConns := int32(max(o.batchWorkers+2, 4))
	s, err := ledger.OpenPostgres(ctx, dsn, ledger.PGOptions{Logger: logger, MaxConns: maxConns})
	if err != nil {
		return nil, err // pgx's errors name the host, never the password
	}
	logger.Info("ledgerd: store", "kind", "postgres")
	return s, nil
}

// flagSet reports whether the flag was given on the command line or in the config file.
func flagSet(fs *flag.FlagSet, name string) bool {
	found := false
	fs.Visit(func(f *flag.Flag) { found = found || f.Name == name })
	return found
}

// applyConfigFile sets every flag named in the JSON file that was not given on the command
// line.
func applyConfigFile(fs *flag.FlagSet, path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	var m map[string]json.RawMessage
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	if err := dec.Decode(&m); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for name, v := range m {
		f := fs.Lookup(name)
		if f == nil || name == "config" || name == "genkey" {
			return fmt.Errorf("config %s: unknown field %q", path, name)
		}
		if set[name] {
			continue
		}
		var val any
		if err := json.Unmarshal(v, &val); err != nil {
			return fmt.Errorf("config %s: %s: %w", path, name, err)
		}
		var s string
		switch x := val.(type) {
		case string:
			s = x
		case bool:
			s = fmt.Sprint(x)
		case float64:
			s = string(v) // keep the literal: large integers must not go through float64
		default:
			return fmt.Errorf("config %s: %s: want a string, number or boolean", path, name)
		}
		if err := fs.Set(name, s); err != nil {
			return fmt.Errorf("config %s: %s: %w", path, name, err)
		}
	}
	return nil
}

// genKey writes a new key pair; it never overwrites an existing key.
func genKey(path, kid string, stdout io.Writer) error {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("genkey: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return fmt.Errorf("genkey: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("genkey: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		return fmt.Errorf("genkey: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("genkey: sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("genkey: close %s: %w", path, err)
	}
	pubB64 := base64.StdEncoding.EncodeToString(pub)
	if err := os.WriteFile(path+".pub", []byte(pubB64+"\n"), 0o644); err != nil {
		return fmt.Errorf("genkey: %w", err)
	}
	fmt.Fprintf(stdout, "kid %s\ned25519 public key (base64) %s\nprivate key %s (0600), public key %s.pub\n", kid, pubB64, path, path)
	return nil
}

// Key file errors.
var errKeyPerm = errors.New("key file is readable by group or others (chmod 600)")

func loadKey(path string) (ed25519.PrivateKey, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w (make one with -genkey)", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("signing key %s: %w", path, errKeyPerm)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	return parseKey(raw)
}

func parseKey(raw []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(raw)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("signing key: want a PEM \"PRIVATE KEY\" block (PKCS #8)")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("signing key: %T is not Ed25519", k)
	}
	return priv, nil
}

func loadAccounts(path string) (map[string]string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("accounts: %w", err)
	}
	var m map[string]string
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("accounts %s: %w", path, err)
	}
	for a := range m {
		if !wire.ValidAccount(a) {
			return nil, fmt.Errorf("accounts %s: %q is not an account id", path, a)
		}
	}
	return m, nil
}

func loadWalletKeys(path string) (map[string]ed25519.PublicKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("wallet keys: %w", err)
	}
	var m map[string]string
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("wallet keys %s: %w", path, err)
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("wallet keys %s: no key", path)
	}
	out := make(map[string]ed25519.PublicKey, len(m))
	for kid, b64 := range m {
		k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
		if err != nil || len(k) != ed25519.PublicKeySize || kid == "" {
			return nil, fmt.Errorf("wallet keys %s: %q: want a key id and the base64 of a 32-byte Ed25519 public key", path, kid)
		}
		out[kid] = ed25519.PublicKey(k)
	}
	return out, nil
}

// loadOperators reads the operator tokens; like the signing key, the file must be private.
func loadOperators(path string) (map[string]string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("operators: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("operators %s: %w", path, errKeyPerm)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("operators: %w", err)
	}
	var m map[string]string
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("operators %s: %w", path, err)
	}
	return m, nil
}
