// Package e2e runs kioskd as a real process against the simulated hardware on
// pseudo-terminals (its real serial code path), a real MQTT broker (the in-process one, or
// mosquitto with TLS and the production ACL when installed) and the reference ledger, and
// checks money end to end: what the emulator stacked, what the ledger credited, what the
// printer printed and what the customer API says.
package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kioskd/kioskd/hw-sim/escpossim"
	"github.com/kioskd/kioskd/hw-sim/simrig"
	"github.com/kioskd/kioskd/kiosk/config"
	"github.com/kioskd/kioskd/kiosk/ctl"
	"github.com/kioskd/kioskd/kiosk/daemon"
	"github.com/kioskd/kioskd/kiosk/session"
	"github.com/kioskd/kioskd/kiosk/ui"
	"github.com/kioskd/kioskd/sync/broker"
	"github.com/kioskd/kioskd/sync/ledger"
	"github.com/kioskd/kioskd/sync/mosqtest"
	"github.com/kioskd/kioskd/sync/mqttc"
	"github.com/kioskd/kioskd/sync/wire"
)

var kioskdBin string

// A kioskd built elsewhere (another architecture, as the kiosk boards run it) and the program
// that runs it (qemu-user): .ci/qemu-tests runs the end-to-end top-up with the arm64 and armv7
// binaries this way.
var (
	kioskdFlag = flag.String("e2e.kioskd", "", "run this kioskd binary instead of building one (the tests that need its failpoints skip)")
	execFlag   = flag.String("e2e.exec", "", "run kioskd through this program, e.g. qemu-aarch64")
)

func TestMain(m *testing.M) {
	flag.Parse()
	if *kioskdFlag != "" {
		kioskdBin = *kioskdFlag
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "kioskd-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	kioskdBin = filepath.Join(dir, "kioskd")
	// The daemon under test is built once, as shipped plus its failpoints (the crash
	// campaign's KIOSKD_TEST_CRASH_AT and SIGUSR2 exist only with the kioskd_failpoints tag);
	// no race detector: the test process itself runs with it and exercises the same packages
	// in-process elsewhere.
	cmd := exec.Command("go", "build", "-tags", "kioskd_failpoints", "-o", kioskdBin, "github.com/kioskd/kioskd/cmd/kioskd")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building kioskd:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const kioskID = "E2E-01"

// brokerKind selects the MQTT broker of an environment.
type brokerKind int

const (
	embedded brokerKind = iota
	mosquitto
)

// env is one kiosk system under test.
type env struct {
	t      *testing.T
	ctx    context.Context
	dir    string
	rig    *simrig.Rig
	wallet ed25519.PrivateKey
	lkey   ed25519.PrivateKey

	kind     brokerKind
	emb      *broker.Broker
	embAddr  string
	mosq     *mosqtest.Broker
	store    *ledger.BoltStore
	led      *ledger.Ledger
	ledStop  context.CancelFunc
	ledDone  chan error
	cfg      config.Config
	cfgPath  string
	kiosk    *exec.Cmd
	kioskOut *lockedBuf
	simLog   *lockedBuf
	kioskURL string
	exited   chan error
	// inProc runs the daemon inside the test process (pulse units: their simulated pins
	// cannot cross a process boundary).
	inProc     bool
	procCancel context.CancelFunc
	procDone   chan error
}

type options struct {
	// protocol of the bill acceptor: "id003" (default), "ccnet".
	protocol      string
	broker        brokerKind
	sessionMax    int64
	resultDisplay time.Duration
	ackWait       time.Duration
	ledgerDaily   int64
	// deadline bounds the whole test (default 3 minutes).
	deadline time.Duration
	// pollInterval is acceptor.poll_interval (default 50ms); a longer one widens the moments
	// between two polls, such as a note being stacked, for a test to act in.
	pollInterval time.Duration
	// lineSpeed names the emulators that run at their serial lines' speed (simrig.ParseLineSpeed:
	// "printer", "all", ...); -e2e.linespeed overrides it for every test.
	lineSpeed string
}

var lineSpeedFlag = flag.String("e2e.linespeed", "", `run the emulators of every test (the crash campaign too) at their serial lines' speed: "all", "none" or a list of acceptor,printer,scanner (default: each test's own choice)`)

func newEnv(t *testing.T, o options) *env {
	t.Helper()
	if o.protocol == "" {
		o.protocol = "id003"
	}
	if o.deadline == 0 {
		o.deadline = 3 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.deadline)
	t.Cleanup(cancel)
	e := &env{t: t, ctx: ctx, dir: t.TempDir(), kind: o.broker}
	_, e.wallet, _ = ed25519.GenerateKey(nil)
	_, e.lkey, _ = ed25519.GenerateKey(nil)
	var err error
	// An ITL unit runs encrypted (eSSP) with a per-kiosk fixed key, as in the field.
	var fixedKey [8]byte
	rand.Read(fixedKey[:])
	keyFile := filepath.Join(e.dir, "ssp.key")
	if err := os.WriteFile(keyFile, []byte(fmt.Sprintf("%016x\n", binary.BigEndian.Uint64(fixedKey[:]))), 0o600); err != nil {
		t.Fatal(err)
	}
	e.simLog = &lockedBuf{}
	if *lineSpeedFlag != "" {
		o.lineSpeed = *lineSpeedFlag
	}
	lines, err := simrig.ParseLineSpeed(o.lineSpeed)
	if err != nil {
		t.Fatal(err)
	}
	e.rig, err = simrig.Start(ctx, simrig.Config{Acceptor: o.protocol, LineSpeed: lines, Denominations: simrig.DemoDenominations(o.protocol, "CNY"), WalletKey: e.wallet, WalletKID: "w1",
		SSPFixedKey: binary.BigEndian.Uint64(fixedKey[:]), Logger: slog.New(slog.NewTextHandler(e.simLog, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.rig.Close() })

	switch o.broker {
	case embedded:
		e.emb, err = broker.Start(ctx, broker.Config{Addr: "127.0.0.1:0"})
		if err != nil {
			t.Fatal(err)
		}
		e.embAddr = e.emb.Addr()
		t.Cleanup(func() { e.emb.Close() })
	case mosquitto:
		e.mosq = mosqtest.Start(t, mosqtest.Options{})
	}
	e.store, err = ledger.OpenBolt(filepath.Join(e.dir, "ledger.db"), ledger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.store.Close() })
	lim := ledger.Limits{Currency: "CNY", DailyMinor: o.ledgerDaily, PerTopupMaxMinor: 1_000_000}
	if lim.DailyMinor == 0 {
		lim.DailyMinor = 10_000_000
	}
	mc := mqttc.Config{Brokers: []string{e.brokerURL()}, ClientID: "ledger"}
	if e.mosq != nil {
		mc.TLS = e.mosq.ClientTLS(mosqtest.LedgerCN)
	}
	e.led, err = ledger.New(ledger.Config{MQTT: mc, Store: e.store, Signer: wire.Signer{KID: "l1", Key: e.lkey}, Limits: lim,
		WalletKeys: map[string]ed25519.PublicKey{"w1": e.wallet.Public().(ed25519.PublicKey)},
		// Crash campaigns push thousands of notes through one kiosk in minutes.
		Policy: ledger.Fleet{Policy: ledger.Policy{DailyNotes: -1}}})
	if err != nil {
		t.Fatal(err)
	}
	lctx, lcancel := context.WithCancel(ctx)
	e.ledStop, e.ledDone = lcancel, make(chan error, 1)
	go func() { e.ledDone <- e.led.Run(lctx) }()
	t.Cleanup(func() { e.ledStop(); <-e.ledDone })
	select {
	case <-e.led.Ready():
	case <-ctx.Done():
		t.Fatal("ledger not ready")
	}

	ports := e.rig.Ready()
	c := config.Default()
	c.Kiosk = config.Kiosk{ID: kioskID, Location: "Test hall", Timezone: "Asia/Shanghai", Currency: "CNY", Language: "en", Hotline: "400-1"}
	c.Journal.Path = filepath.Join(e.dir, "journal.db")
	c.Acceptor.Driver = o.protocol
	if o.protocol == "ssp" {
		c.Acceptor.SSP = config.SSP{Encrypt: true, FixedKeyFile: keyFile}
	}
	if o.protocol == "pulse" {
		e.inProc = true
		c.Acceptor.Pulse = config.Pulse{CreditPin: simrig.PinPulseCredit, InhibitPin: simrig.PinPulseInhibit, ActiveLevel: "low", InhibitLevel: "high"}
	}
	if e.inProc {
		// Simulated pins exist only in this process.
		c.Sensors = []config.Sensor{{Name: "cabinet_door", Pin: simrig.PinCabinetDoor, ActiveLevel: "high", Debounce: config.Duration(20 * time.Millisecond)},
			{Name: "vault_door", Pin: simrig.PinVaultDoor, ActiveLevel: "high", Debounce: config.Duration(20 * time.Millisecond)}}
	}
	c.Acceptor.Port = ports.AcceptorPort
	c.Acceptor.PollInterval = config.Duration(50 * time.Millisecond)
	if o.pollInterval > 0 {
		c.Acceptor.PollInterval = config.Duration(o.pollInterval)
	}
	c.Acceptor.RecoveryTimeout = config.Duration(8 * time.Second)
	for code, n := range simrig.DemoDenominations(o.protocol, "CNY") {
		c.Acceptor.Denominations = append(c.Acceptor.Denominations, config.Denomination{Code: code, ValueMinor: n.ValueMinor})
	}
	c.Printer = config.Printer{Enabled: true, Port: ports.PrinterPort, Baud: 9600, Profile: "generic80"}
	c.Scanner = config.Scanner{Port: ports.ScannerPort, Baud: 9600}
	c.Limits = config.Limits{SessionMaxMinor: o.sessionMax, OfflineSessionMaxMinor: 30000, OfflineTotalMaxMinor: 100000}
	if c.Limits.SessionMaxMinor == 0 {
		c.Limits.SessionMaxMinor = 200000
	}
	if c.Limits.OfflineSessionMaxMinor > c.Limits.SessionMaxMinor {
		c.Limits.OfflineSessionMaxMinor = c.Limits.SessionMaxMinor
	}
	c.Session.AckWait = config.Duration(2 * time.Second)
	if o.ackWait > 0 {
		c.Session.AckWait = config.Duration(o.ackWait)
	}
	c.Session.ResultDisplay = config.Duration(60 * time.Second)
	if o.resultDisplay > 0 {
		c.Session.ResultDisplay = config.Duration(o.resultDisplay)
	}
	c.Session.SettleTimeout = config.Duration(10 * time.Second)
	c.Wallet.Keys = map[string]string{"w1": b64(e.wallet.Public().(ed25519.PublicKey))}
	c.MQTT.Broker = e.brokerURL()
	c.MQTT.AllowInsecure = e.mosq == nil // the in-process broker has no TLS
	c.MQTT.LedgerKeys = map[string]string{"l1": b64(e.lkey.Public().(ed25519.PublicKey))}
	c.MQTT.RetryMin = config.Duration(300 * time.Millisecond)
	c.MQTT.RetryMax = config.Duration(2 * time.Second)
	c.MQTT.Heartbeat = config.Duration(time.Second)
	if e.mosq != nil {
		c.MQTT.CAFile = e.mosq.CAFile
		c.MQTT.CertFile, c.MQTT.KeyFile = e.mosq.ClientFiles(kioskID)
	}
	c.HTTP.Listen = freeAddr(t)
	// Diagnostics are on the technicians' socket, not the customer port.
	c.Control = config.Control{Socket: filepath.Join(e.dir, "kioskd.sock")}
	c.Log.Level = "info"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	e.cfg = c
	e.cfgPath = filepath.Join(e.dir, "kioskd.json")
	if err := config.WriteFile(e.cfgPath, c); err != nil {
		t.Fatal(err)
	}
	e.kioskURL = "http://" + c.HTTP.Listen
	t.Cleanup(func() {
		e.stopKiosk()
		if t.Failed() {
			t.Logf("kioskd output (tail):\n%s", tail(e.kioskOut.String(), 60))
		}
	})
	return e
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func (e *env) brokerURL() string {
	if e.mosq != nil {
		return e.mosq.URL()
	}
	return "tcp://" + e.embAddr
}

// stopBroker and startBroker simulate a broker outage.
func (e *env) stopBroker() {
	if e.mosq != nil {
		e.mosq.Stop()
		return
	}
	e.emb.Close()
}

func (e *env) startBroker() {
	if e.mosq != nil {
		e.mosq.Restart()
		return
	}
	var err error
	for range 50 {
		if e.emb, err = broker.Start(e.ctx, broker.Config{Addr: e.embAddr}); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond) // the port is being released; bounded retry, not timing
	}
	e.t.Fatalf("restart broker: %v", err)
}

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuf) String() string {
	if l == nil {
		return ""
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// startKiosk runs kioskd; crashAt arms the SIGKILL crash point ("" for none; see
// kiosk/daemon/crash_failpoints.go).
func (e *env) startKiosk(crashAt string) {
	e.t.Helper()
	if !e.startKioskMayCrash(crashAt) {
		e.t.Fatalf("kioskd died at start:\n%s", tail(e.kioskOut.String(), 40))
	}
}

// startKioskMayCrash runs kioskd and waits until it serves, or until it dies (a crash point
// reached during start-up); it reports whether it is up.
func (e *env) startKioskMayCrash(crashAt string) bool {
	e.t.Helper()
	if e.inProc {
		e.startInProcess()
		return true
	}
	if crashAt != "" && *kioskdFlag != "" {
		e.t.Skip("crash points need kioskd built with its failpoints; -e2e.kioskd gives another binary")
	}
	cmd := exec.Command(kioskdBin, "-config", e.cfgPath)
	if *execFlag != "" {
		cmd = exec.Command(*execFlag, kioskdBin, "-config", e.cfgPath)
	}
	if e.kioskOut == nil {
		e.kioskOut = &lockedBuf{}
	}
	fmt.Fprintf(e.kioskOut, "----- start (crash at %q)\n", crashAt)
	cmd.Stdout, cmd.Stderr = e.kioskOut, e.kioskOut
	cmd.Env = append(os.Environ(), "KIOSKD_TEST_CRASH_AT="+crashAt)
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.kiosk = cmd
	e.exited = make(chan error, 1)
	go func(c *exec.Cmd, ch chan error) { ch <- c.Wait() }(cmd, e.exited)
	up := false
	e.waitFor("kioskd up", func() bool {
		select {
		case err := <-e.exited:
			e.exited <- err // keep it for whoever waits for the exit
			return true
		default:
		}
		res, err := http.Get(e.kioskURL + "/healthz")
		if err != nil {
			return false
		}
		res.Body.Close()
		up = res.StatusCode == 200
		return up
	})
	return up
}

// waitOnline waits until kioskd's MQTT connection is up, so the next authorization goes to
// the ledger rather than to the offline limits.
func (e *env) waitOnline() {
	e.t.Helper()
	e.waitFor("kioskd connected to the broker", func() bool {
		var d struct {
			Connected bool `json:"mqtt_connected"`
		}
		if err := e.diag(&d); err != nil {
			return false
		}
		return d.Connected
	})
}

// startInProcess runs the daemon in the test process with the rig's simulated pins.
func (e *env) startInProcess() {
	e.t.Helper()
	if e.kioskOut == nil {
		e.kioskOut = &lockedBuf{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.procCancel, e.procDone = cancel, make(chan error, 1)
	log := slog.New(slog.NewJSONHandler(e.kioskOut, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg := e.cfg
	go func() {
		e.procDone <- daemon.Run(ctx, cfg, daemon.Options{Version: "e2e", Logger: log, OpenPin: e.rig.Pin})
	}()
	e.waitFor("kioskd up", func() bool {
		res, err := http.Get(e.kioskURL + "/healthz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == 200
	})
}

// stopKiosk sends SIGTERM and waits.
func (e *env) stopKiosk() {
	if e.procCancel != nil {
		e.procCancel()
		select {
		case err := <-e.procDone:
			if err != nil {
				e.t.Errorf("in-process kioskd: %v", err)
			}
		case <-time.After(30 * time.Second):
			e.t.Error("in-process kioskd did not stop within 30 s")
		}
		e.procCancel = nil
		return
	}
	if e.kiosk == nil {
		return
	}
	e.kiosk.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.exited:
	case <-time.After(20 * time.Second):
		e.kiosk.Process.Kill()
		<-e.exited
	}
	e.kiosk = nil
}

// waitCrash waits for the armed crash point to kill kioskd.
func (e *env) waitCrash() {
	e.t.Helper()
	select {
	case err := <-e.exited:
		var ee *exec.ExitError
		if !asExit(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			e.t.Fatalf("kioskd ended with %v, want SIGKILL at the crash point", err)
		}
		e.kiosk = nil
	case <-e.ctx.Done():
		e.t.Fatal("crash point never reached")
	}
}

func asExit(err error, ee **exec.ExitError) bool {
	x, ok := err.(*exec.ExitError)
	if ok {
		*ee = x
	}
	return ok
}

// waitFor polls cond until it holds or the test's deadline passes.
func (e *env) waitFor(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s; view %+v; acceptor %+v; stacked %+v", what, e.view(), e.rig.Acc.State(), e.rig.Acc.Stacked())
		}
		select {
		case <-e.ctx.Done():
			e.t.Fatalf("test deadline while waiting for %s", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (e *env) view() session.View {
	v, _ := e.viewOK()
	return v
}

// viewOK reads the customer API; ok is false when kioskd did not answer.
func (e *env) viewOK() (session.View, bool) {
	res, err := http.Get(e.kioskURL + "/api/state")
	if err != nil {
		return session.View{}, false
	}
	defer res.Body.Close()
	var v session.View
	if err := json.NewDecoder(res.Body).Decode(&v); err != nil || v.Seq == 0 {
		return session.View{}, false
	}
	return v, true
}

func (e *env) waitView(what string, cond func(session.View) bool) session.View {
	e.t.Helper()
	var v session.View
	e.waitFor(what, func() bool { v = e.view(); return cond(v) })
	return v
}

// post presses a button of the customer screen as its own page does: POST from the page's
// origin with the token the page carries (the local API refuses anything else).
func (e *env) post(path string) int {
	code, err := screenPost(e.kioskURL, path)
	if err != nil {
		e.t.Fatal(err)
	}
	return code
}

var tokenRe = regexp.MustCompile(`<meta name="kiosk-token" content="([0-9a-f]+)">`)

// screenPost fetches the page for its token, then POSTs path as the page would.
func screenPost(base, path string) (int, error) {
	res, err := http.Get(base + "/")
	if err != nil {
		return 0, err
	}
	page, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		return 0, err
	}
	m := tokenRe.FindSubmatch(page)
	if m == nil {
		return 0, fmt.Errorf("no kiosk token in the customer page")
	}
	req, err := http.NewRequest(http.MethodPost, base+path, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Origin", base)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set(ui.TokenHeader, string(m[1]))
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode, nil
}

// diag reads the kiosk's diagnostics from the technicians' control socket into v.
func (e *env) diag(v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return ctl.NewClient(e.cfg.Control.Socket).Get(ctx, "/v1/diag", v)
}

// scan shows a valid wallet code for account to the scanner.
func (e *env) scan(account string) {
	e.t.Helper()
	if _, err := e.rig.ScanWallet(account); err != nil {
		e.t.Fatal(err)
	}
}

// insert feeds a note of value v and waits until the acceptor took it in.
func (e *env) insert(v int64) {
	e.t.Helper()
	code, ok := e.rig.Acc.CodeFor(v)
	if !ok {
		e.t.Fatalf("no note of %d", v)
	}
	e.waitFor("acceptor ready for a note", func() bool { return e.rig.Acc.Insert(code) == nil })
}

// stackedTotal is the emulator's own count of money in the cassette.
func (e *env) stackedTotal() (n int, sum int64) {
	for _, s := range e.rig.Acc.Stacked() {
		n++
		sum += s.ValueMinor
	}
	return
}

func (e *env) receipts() []escpossim.Document {
	var out []escpossim.Document
	for _, d := range e.rig.Printer.Documents() {
		if d.Cut && strings.Contains(d.Text, "RECEIPT") {
			out = append(out, d)
		}
	}
	return out
}

// originals counts the original (not COPY) receipts carrying topupID.
func (e *env) originals(topupID string) (orig, copies int) {
	for _, d := range e.receipts() {
		// Exact match on the QR payload or a whole line: ...-1 is a prefix of ...-10.
		if !slices.Contains(d.QR, topupID) && !slices.Contains(strings.Split(d.Text, "\n"), topupID) {
			continue
		}
		if strings.Contains(d.Text, "COPY") {
			copies++
		} else {
			orig++
		}
	}
	return
}

func (e *env) account(acct string) ledger.AccountInfo {
	a, err := e.store.Account(acct)
	if err != nil {
		return ledger.AccountInfo{}
	}
	return a
}
