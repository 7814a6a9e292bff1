package daemon

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/devices/serialport"
	"github.com/kioskd/kioskd/hw-sim/escpossim"
	"github.com/kioskd/kioskd/hw-sim/id003sim"
	"github.com/kioskd/kioskd/hw-sim/ptypair"
	"github.com/kioskd/kioskd/hw-sim/scannersim"
	"github.com/kioskd/kioskd/kiosk/config"
	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/session"
)

// testWait bounds every wait of these tests for an event; none of them sleeps.
const testWait = 20 * time.Second

// device is an emulated unit behind a pseudo-terminal, reachable at a stable path (a symlink,
// like a udev name): unplug removes the path and hangs the line up, plug brings a new line
// back at the same path with the same unit behind it.
type device struct {
	t     *testing.T
	path  string
	serve func(ctx context.Context, p *ptypair.Pair) error

	mu     sync.Mutex
	pair   *ptypair.Pair
	cancel context.CancelFunc
	done   chan struct{}
}

func newDevice(t *testing.T, dir, name string, serve func(ctx context.Context, p *ptypair.Pair) error) *device {
	d := &device{t: t, path: filepath.Join(dir, name), serve: serve}
	t.Cleanup(d.unplug)
	return d
}

func (d *device) plug() {
	d.t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pair != nil {
		d.t.Fatal("device already plugged")
	}
	pair, err := ptypair.Open()
	if err != nil {
		d.t.Skipf("no pseudo-terminals here: %v", err)
	}
	tmp := d.path + ".new"
	os.Remove(tmp)
	if err := os.Symlink(pair.Path(), tmp); err != nil {
		d.t.Fatal(err)
	}
	if err := os.Rename(tmp, d.path); err != nil {
		d.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.pair, d.cancel, d.done = pair, cancel, make(chan struct{})
	go func(done chan struct{}) {
		defer close(done)
		d.serve(ctx, pair)
	}(d.done)
}

func (d *device) unplug() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pair == nil {
		return
	}
	os.Remove(d.path)
	d.cancel()
	d.pair.Close()
	<-d.done
	d.pair = nil
}

// kit is a kiosk's emulated hardware and config.
type kit struct {
	t       *testing.T
	dir     string
	cfg     config.Config
	wallet  ed25519.PrivateKey
	acc     *id003sim.Sim
	prn     *escpossim.Sim
	scn     *scannersim.Sim
	accDev  *device
	prnDev  *device
	scnDev  *device
	logs    *logBuf
	opens   atomic.Int64
	options Options
}

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newKit(t *testing.T) *kit {
	t.Helper()
	k := &kit{t: t, dir: t.TempDir(), logs: &logBuf{}}
	pub, priv, _ := ed25519.GenerateKey(nil)
	k.wallet = priv
	denoms := acceptor.Denominations{}
	for i, v := range []int64{100, 500, 1000, 2000, 5000, 10000} {
		denoms[0x61+i] = acceptor.Note{Code: 0x61 + i, ValueMinor: v, Currency: "CNY"}
	}
	k.acc = id003sim.New(id003sim.Config{Denominations: denoms})
	k.prn = escpossim.New(escpossim.Config{})
	k.accDev = newDevice(t, k.dir, "acceptor", func(ctx context.Context, p *ptypair.Pair) error { return k.acc.Serve(ctx, p) })
	k.prnDev = newDevice(t, k.dir, "printer", func(ctx context.Context, p *ptypair.Pair) error { return k.prn.Serve(ctx, p) })
	k.scn = scannersim.New(scannersim.Config{})
	k.scnDev = newDevice(t, k.dir, "scanner", func(ctx context.Context, p *ptypair.Pair) error { return k.scn.Serve(ctx, p) })

	c := config.Default()
	c.Kiosk = config.Kiosk{ID: "T-01", Timezone: "UTC", Currency: "CNY", Language: "en"}
	c.Journal.Path = filepath.Join(k.dir, "state", "journal.db")
	c.Journal.LockWait = config.Duration(300 * time.Millisecond)
	c.Acceptor.Driver = "id003"
	c.Acceptor.Port = k.accDev.path
	c.Acceptor.PollInterval = config.Duration(20 * time.Millisecond)
	c.Acceptor.RecoveryTimeout = config.Duration(5 * time.Second)
	for code, n := range denoms {
		c.Acceptor.Denominations = append(c.Acceptor.Denominations, config.Denomination{Code: code, ValueMinor: n.ValueMinor})
	}
	c.Printer = config.Printer{Enabled: true, Port: k.prnDev.path, Baud: 9600, Profile: "generic80"}
	c.Limits = config.Limits{SessionMaxMinor: 200000, OfflineSessionMaxMinor: 50000, OfflineTotalMaxMinor: 100000}
	c.Session.ShutdownGrace = config.Duration(3 * time.Second)
	c.Wallet.Keys = map[string]string{"w1": base64.StdEncoding.EncodeToString(pub)}
	c.HTTP.Listen = "127.0.0.1:0"
	c.Control.Socket = "" // the tests of the control socket give it a path of their own
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	k.cfg = c
	k.options = Options{Version: "test", Logger: slog.New(slog.NewTextHandler(k.logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
		RetryMin: 10 * time.Millisecond, RetryMax: 80 * time.Millisecond, PrinterCheck: 25 * time.Millisecond,
		OpenPort: func(path string, m serialport.Mode) (serialport.Port, error) {
			k.opens.Add(1)
			return serialport.Open(path, m)
		}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kioskd log:\n%s", tail(k.logs.String(), 60))
		}
	})
	return k
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// running is a System running in the test.
type running struct {
	s      *System
	cancel context.CancelFunc
	done   chan error
	conds  *condWatch
}

// start builds and runs the kiosk, and waits until it is ready.
func (k *kit) start() *running {
	k.t.Helper()
	s, err := New(context.Background(), k.cfg, k.options)
	if err != nil {
		k.t.Fatalf("New: %v", err)
	}
	r := &running{s: s, done: make(chan error, 1), conds: watchConds(s.Health())}
	ready := make(chan struct{})
	s.opts.Ready = func(string) { close(ready) }
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- s.Run(ctx) }()
	select {
	case <-ready:
	case err := <-r.done:
		k.t.Fatalf("Run ended at start: %v", err)
	case <-time.After(testWait):
		k.t.Fatal("kiosk not ready")
	}
	k.t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

// stop stops the kiosk and returns Run's result and how long the stop took.
func (r *running) stop(t *testing.T) (time.Duration, error) {
	t.Helper()
	start := time.Now()
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err
		return time.Since(start), err
	case <-time.After(r.s.StopBudget() + testWait):
		t.Fatal("Run did not return after the stop")
	}
	return 0, nil
}

// condWatch turns the registry's changes into wake-ups, for waits without sleeps.
type condWatch struct {
	reg  *health.Registry
	mu   sync.Mutex
	wake chan struct{}
}

func watchConds(reg *health.Registry) *condWatch {
	w := &condWatch{reg: reg, wake: make(chan struct{})}
	reg.Listen(func(health.Condition) {
		w.mu.Lock()
		close(w.wake)
		w.wake = make(chan struct{})
		w.mu.Unlock()
	})
	return w
}

// waitFor waits until cond holds, looking again at every condition change.
func (w *condWatch) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(testWait)
	defer deadline.Stop()
	for {
		w.mu.Lock()
		ch := w.wake
		w.mu.Unlock()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s; conditions: %+v", what, w.reg.Active())
		}
	}
}

func (w *condWatch) waitActive(t *testing.T, kind string) {
	t.Helper()
	w.waitFor(t, kind+" raised", func() bool { return w.reg.Has(kind) })
}

func (w *condWatch) waitCleared(t *testing.T, kind string) {
	t.Helper()
	w.waitFor(t, kind+" cleared", func() bool { return !w.reg.Has(kind) })
}

// waitView waits for a view of the engine that satisfies ok.
func waitView(t *testing.T, e *session.Engine, what string, ok func(session.View) bool) session.View {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	v := e.View()
	for !ok(v) {
		var more bool
		if v, more = e.WaitView(ctx, v.Seq); !more {
			t.Fatalf("timed out waiting for %s; view %+v", what, v)
		}
	}
	return v
}

// payload is a signed wallet code for account.
func (k *kit) payload(account string) string {
	return scannersim.DemoWallet{Key: k.wallet, KeyID: "w1", Account: account}.Payload()
}

// topUp runs one customer: scan, one note of code, finish; it waits for the result.
func (k *kit) topUp(t *testing.T, e *session.Engine, account string, code byte, value int64) {
	t.Helper()
	waitView(t, e, "idle", func(v session.View) bool { return v.State == session.Idle.String() })
	if err := e.Scan(k.payload(account)); err != nil {
		t.Fatalf("scan: %v", err)
	}
	waitView(t, e, "accepting", func(v session.View) bool { return v.State == session.Accepting.String() })
	insertWhenEnabled(t, k.acc, code)
	waitView(t, e, "note credited", func(v session.View) bool { return v.TotalMinor == value })
	if err := e.Finish(); err != nil {
		t.Fatalf("finish: %v", err)
	}
	waitView(t, e, "done", func(v session.View) bool { return v.State == session.Done.String() })
}

// insertWhenEnabled inserts a note once the unit accepts notes (the engine enables it
// through the driver's next exchange after the view said accepting).
func insertWhenEnabled(t *testing.T, sim *id003sim.Sim, code byte) {
	t.Helper()
	// The emulator has no notification of its enable state: poll it.
	deadline := time.NewTimer(testWait)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		err := sim.InsertNote(code)
		if err == nil {
			return
		}
		select {
		case <-deadline.C:
			t.Fatalf("insert: %v", err)
		case <-tick.C:
		}
	}
}

// kioskGoroutines lists the goroutines still running code of this module outside the tests
// and the emulators.
func kioskGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if !strings.Contains(g, "github.com/kioskd/kioskd/") || strings.Contains(g, "_test.go") ||
			strings.Contains(g, "kioskd/hw-sim/") {
			continue
		}
		out = append(out, g)
	}
	return out
}
