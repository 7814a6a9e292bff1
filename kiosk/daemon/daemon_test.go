package daemon

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kioskd/kioskd/devices/serialport"
	"github.com/kioskd/kioskd/kiosk/config"
	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/kiosk/session"
	"github.com/kioskd/kioskd/sync/broker"
	"github.com/kioskd/kioskd/sync/mqttc"
	"github.com/kioskd/kioskd/sync/wire"
)

// TestStopBudgetMatchesService: systemd must give kioskd its whole stop budget before it
// escalates to SIGKILL, and no more than a second beyond it.
func TestStopBudgetMatchesService(t *testing.T) {
	f, err := os.Open("../../deploy/kioskd.service")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var timeout float64 = -1
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "TimeoutStopSec="); ok {
			if timeout, err = strconv.ParseFloat(v, 64); err != nil {
				t.Fatalf("TimeoutStopSec=%q: %v", v, err)
			}
		}
	}
	if timeout < 0 {
		t.Fatal("deploy/kioskd.service has no TimeoutStopSec")
	}
	budget := StopBudget(config.Default())
	if want := math.Ceil(budget.Seconds()); timeout != want {
		t.Fatalf("TimeoutStopSec=%v, but the stop budget with the default config is %v: set it to %v", timeout, budget, want)
	}
	// The budget follows the configured grace.
	c := config.Default()
	c.Session.ShutdownGrace = config.Duration(30 * time.Second)
	if d := StopBudget(c) - budget; d != 20*time.Second {
		t.Fatalf("a 20 s longer grace lengthens the budget by %v", d)
	}
}

// TestStartStop: a kiosk starts, serves a customer (note journaled and credited, receipt
// printed), and stops within its budget leaving no goroutine and no port behind.
func TestStartStop(t *testing.T) {
	k := newKit(t)
	k.accDev.plug()
	k.prnDev.plug()
	r := k.start()
	r.conds.waitCleared(t, condPrinter)
	k.topUp(t, r.s.Engine(), "alice", 0x63, 1000)
	if n := len(k.prn.Documents()); n != 1 {
		t.Fatalf("%d receipts printed, want 1", n)
	}
	took, err := r.stop(t)
	if err != nil {
		t.Fatalf("Run after stop: %v", err)
	}
	if took > r.s.StopBudget() {
		t.Fatalf("stop took %v, budget %v", took, r.s.StopBudget())
	}
	t.Logf("stopped in %v (budget %v)", took, r.s.StopBudget())
	assertNoGoroutines(t)
	// The ports and the journal are free again.
	for _, p := range []string{k.cfg.Acceptor.Port, k.cfg.Printer.Port} {
		port, err := serialport.Open(p, serialport.CCNET)
		if err != nil {
			t.Fatalf("%s still held after the stop: %v", p, err)
		}
		port.Close()
	}
	j, err := journal.Open(k.cfg.Journal.Path, journal.Options{KioskID: k.cfg.Kiosk.ID, Currency: "CNY", LockTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("journal after the stop: %v", err)
	}
	j.Close()
}

// assertNoGoroutines checks that no goroutine of the kiosk outlived Run. A goroutine that
// has signalled its owner may still be on its way out: let the scheduler run it.
func assertNoGoroutines(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := kioskGoroutines()
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines left after Run returned:\n%s", len(left), strings.Join(left, "\n\n"))
		}
		runtime.Gosched()
	}
}

// TestAcceptorLostAndBack: the acceptor's line hangs up and its device goes away; the kiosk
// says so, looks for it, and takes money again once it is back, without a restart.
func TestAcceptorLostAndBack(t *testing.T) {
	k := newKit(t)
	k.accDev.plug()
	k.prnDev.plug()
	r := k.start()
	k.topUp(t, r.s.Engine(), "alice", 0x63, 1000)
	opens := k.opens.Load()

	k.accDev.unplug()
	r.conds.waitActive(t, condAcceptor)
	if r.s.acc.get() != nil {
		t.Fatal("a driver is still in the slot with its port gone")
	}
	k.accDev.plug()
	r.conds.waitCleared(t, condAcceptor)
	if k.opens.Load() == opens {
		t.Fatal("the port was not reopened")
	}
	k.topUp(t, r.s.Engine(), "bob", 0x64, 2000)
}

// TestPrinterLostAndBack: the printer goes away while idle; the supervisor notices, the
// kiosk keeps serving (no receipt), and the printer prints again once it is back.
func TestPrinterLostAndBack(t *testing.T) {
	k := newKit(t)
	k.accDev.plug()
	k.prnDev.plug()
	r := k.start()
	r.conds.waitCleared(t, condPrinter)
	k.prnDev.unplug()
	r.conds.waitActive(t, condPrinter)
	r.conds.waitFor(t, "printer slot emptied", func() bool { return !r.s.printer.connected() })
	k.prnDev.plug()
	r.conds.waitCleared(t, condPrinter)
	if !r.s.printer.connected() {
		t.Fatal("printer back but not in its slot")
	}
	k.topUp(t, r.s.Engine(), "carol", 0x63, 1000)
	if n := len(k.prn.Documents()); n != 1 {
		t.Fatalf("%d receipts printed after the printer came back, want 1", n)
	}
	if r.s.reg.Has(condPrintFailed) {
		t.Fatal("print failure condition still active after a good print")
	}
}

// TestPrinterAbsentAtStart: a kiosk started without its printer picks it up when it is
// attached, and its condition clears.
func TestPrinterAbsentAtStart(t *testing.T) {
	k := newKit(t)
	k.accDev.plug()
	r := k.start()
	r.conds.waitActive(t, condPrinter)
	k.prnDev.plug()
	r.conds.waitCleared(t, condPrinter)
	k.topUp(t, r.s.Engine(), "dave", 0x65, 5000)
	if n := len(k.prn.Documents()); n != 1 {
		t.Fatalf("%d receipts printed, want 1", n)
	}
}

// TestScannerLostAndBack: codes are read again from a scanner that came back.
func TestScannerLostAndBack(t *testing.T) {
	k := newKit(t)
	k.cfg.Scanner.Port = k.scnDev.path
	k.accDev.plug()
	k.prnDev.plug()
	r := k.start()
	r.conds.waitActive(t, condScanner) // absent at start
	k.scnDev.plug()
	r.conds.waitCleared(t, condScanner)
	k.scnDev.unplug()
	r.conds.waitActive(t, condScanner)
	k.scnDev.plug()
	r.conds.waitCleared(t, condScanner)
	e := r.s.Engine()
	waitView(t, e, "idle", func(v session.View) bool { return v.State == session.Idle.String() })
	if err := k.scn.Scan(k.payload("erin")); err != nil {
		t.Fatal(err)
	}
	waitView(t, e, "accepting after a scan", func(v session.View) bool { return v.State == session.Accepting.String() })
}

// TestJournalLocked: a second kioskd on a journal another process holds fails with a clear
// error within journal.lock_wait, and opens no device port.
func TestJournalLocked(t *testing.T) {
	k := newKit(t)
	k.accDev.plug()
	k.prnDev.plug()
	if err := os.MkdirAll(dirOf(k.cfg.Journal.Path), 0o700); err != nil {
		t.Fatal(err)
	}
	held, err := journal.Open(k.cfg.Journal.Path, journal.Options{KioskID: k.cfg.Kiosk.ID, Currency: "CNY"})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	checks := 0
	k.options.CheckJournal = func(ctx context.Context, path string, lockWait time.Duration) error {
		checks++
		return nil
	}
	wait := k.cfg.Journal.LockWait.D()
	start := time.Now()
	err = Run(context.Background(), k.cfg, k.options)
	took := time.Since(start)
	if !errors.Is(err, journal.ErrLocked) || !strings.Contains(err.Error(), "another kioskd") {
		t.Fatalf("Run on a held journal: %v", err)
	}
	if took < wait || took > wait+2*time.Second {
		t.Fatalf("gave up after %v, lock wait %v", took, wait)
	}
	if n := k.opens.Load(); n != 0 {
		t.Fatalf("%d device ports opened by a kiosk that could not have its journal", n)
	}
	if checks != 0 {
		t.Fatal("the check child ran on a journal that is held")
	}
	t.Logf("error after %v: %v", took, err)

	// The check child gives up within its share of the wait too.
	start = time.Now()
	_, err = CheckJournalFile(context.Background(), k.cfg.Journal.Path, 200*time.Millisecond)
	if !errors.Is(err, journal.ErrLocked) || time.Since(start) > 2*time.Second {
		t.Fatalf("check of a held journal: %v after %v", err, time.Since(start))
	}

	// Once the holder is gone, the kiosk starts.
	held.Close()
	r := k.start()
	if _, err := r.stop(t); err != nil {
		t.Fatal(err)
	}
}

// TestStatusFollowsEngine: the retained status the kiosk publishes ends up saying what the
// kiosk is, whichever of the broker connection and the engine's start comes first, and a
// stop leaves "offline".
func TestStatusFollowsEngine(t *testing.T) {
	k := newKit(t)
	k.accDev.plug()
	k.prnDev.plug()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b, err := broker.Start(ctx, broker.Config{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	lpub, _, _ := ed25519.GenerateKey(nil)
	k.cfg.MQTT.Broker = "tcp://" + b.Addr()
	k.cfg.MQTT.AllowInsecure = true // the in-process test broker has no TLS
	k.cfg.MQTT.LedgerKeys = map[string]string{"l1": base64.StdEncoding.EncodeToString(lpub)}
	if err := k.cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	statuses := make(chan wire.Status, 64)
	obs, err := mqttc.Dial(mqttc.Config{Brokers: []string{"tcp://" + b.Addr()}, ClientID: "observer"})
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Close(0)
	wctx, wcancel := context.WithTimeout(ctx, testWait)
	defer wcancel()
	if err := obs.WaitConnected(wctx); err != nil {
		t.Fatal(err)
	}
	if err := obs.Subscribe(wctx, wire.Topic(k.cfg.Kiosk.ID, wire.UpStatus), 1, func(_ string, p []byte) {
		var s wire.Status
		if json.Unmarshal(p, &s) == nil {
			statuses <- s
		}
	}); err != nil {
		t.Fatal(err)
	}
	r := k.start()
	waitStatus := func(want string) {
		t.Helper()
		for {
			select {
			case s := <-statuses:
				if s.State == want {
					return
				}
			case <-wctx.Done():
				t.Fatalf("no %q status published", want)
			}
		}
	}
	waitStatus(wire.StateOnline)
	// A condition that stops service is published, and so is its end.
	k.accDev.unplug()
	waitStatus(wire.StateOutOfService)
	k.accDev.plug()
	waitStatus(wire.StateOnline)
	if _, err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	waitStatus(wire.StateOffline)
	obs.Close(0)
	b.Close()
	cancel()
	assertNoGoroutines(t)
}
