package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kioskd/kioskd/hw-sim/escpossim"
	"github.com/kioskd/kioskd/kiosk/ctl"
	"github.com/kioskd/kioskd/kiosk/ctl/ctltest"
	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/kiosk/session"
)

// waitDocuments waits until the emulated printer has put out n documents.
func waitDocuments(t *testing.T, prn *escpossim.Sim, n int) []escpossim.Document {
	t.Helper()
	// The emulator has no notification of a finished document: poll it.
	deadline := time.NewTimer(testWait)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if docs := prn.Documents(); len(docs) >= n {
			return docs
		}
		select {
		case <-deadline.C:
			t.Fatalf("%d documents printed, want %d", len(prn.Documents()), n)
		case <-tick.C:
		}
	}
}

// TestControlSocket: kioskctl's API on a running kioskd with emulated devices.
func TestControlSocket(t *testing.T) {
	k := newKit(t)
	sock := filepath.Join(ctltest.ShortDir(t), "kioskd.sock")
	k.cfg.Control.Socket = sock
	// Secrets the config names: the diagnostics say where they are, never what they are.
	const password = "hunter2-pa55"
	k.cfg.MQTT.PasswordFile = filepath.Join(k.dir, "mqtt.password")
	os.WriteFile(k.cfg.MQTT.PasswordFile, []byte(password), 0o600)
	walletKey := k.cfg.Wallet.Keys["w1"]
	k.accDev.plug()
	k.prnDev.plug()
	r := k.start()
	r.conds.waitCleared(t, condPrinter)
	e := r.s.Engine()
	c := ctl.NewClient(sock)
	ctx := context.Background()
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket %v %v", fi, err)
	}

	waitView(t, e, "idle", func(v session.View) bool { return v.State == session.Idle.String() })
	var st ctl.Status
	if err := c.Get(ctx, "/v1/status", &st); err != nil {
		t.Fatal(err)
	}
	if st.KioskID != "T-01" || st.Engine.State != session.Idle.String() || st.Journal == nil || st.Journal.Events == 0 {
		t.Fatalf("status %+v", st)
	}

	// A customer tops up; the technician reprints the receipt: the copy says COPY.
	k.topUp(t, e, "alice", 0x63, 1000)
	waitDocuments(t, k.prn, 1)
	var ts []journal.Topup
	if err := r.s.j.Topups(func(tp journal.Topup) bool { ts = append(ts, tp); return true }); err != nil || len(ts) != 1 {
		t.Fatalf("top-ups %v %v", ts, err)
	}
	no := ts[0].ReceiptNo
	var rc ctl.Receipt
	if err := c.Get(ctx, "/v1/receipt/"+itoa(no), &rc); err != nil {
		t.Fatal(err)
	}
	if rc.Topup.AmountMinor != 1000 || !strings.Contains(rc.Text, "10.00") || strings.Contains(rc.Text, "COPY") {
		t.Fatalf("receipt %+v\n%s", rc.Topup, rc.Text)
	}
	if err := e.Cancel(); err != nil { // clear the result on screen: back to idle
		t.Fatal(err)
	}
	waitView(t, e, "idle", func(v session.View) bool { return v.State == session.Idle.String() })
	var rep ctl.Reply
	if err := c.Post(ctx, "/v1/reprint", ctl.ReprintRequest{ReceiptNo: no}, &rep); err != nil {
		t.Fatal(err)
	}
	docs := waitDocuments(t, k.prn, 2)
	if strings.Contains(docs[0].Text, "COPY") || !strings.Contains(docs[1].Text, "COPY") {
		t.Fatalf("original:\n%s\nreprint:\n%s", docs[0].Text, docs[1].Text)
	}

	// Counters and the live journal.
	var cnt ctl.Counters
	if err := c.Get(ctx, "/v1/counters", &cnt); err != nil || cnt.Notes != 1 || cnt.ValueMinor != 1000 {
		t.Fatalf("counters %+v %v", cnt, err)
	}
	var v ctl.Verify
	if err := c.Post(ctx, "/v1/journal/verify", nil, &v); err != nil || !v.OK || v.Report.Topups != 1 {
		t.Fatalf("verify %+v %v", v, err)
	}
	var exp bytes.Buffer
	if err := c.Export(ctx, &exp); err != nil {
		t.Fatal(err)
	}
	if n := uint64(strings.Count(exp.String(), "\n")); n < v.Report.Events {
		t.Fatalf("export has %d events, verify saw %d", n, v.Report.Events)
	}

	// Maintenance waits for the customer in session, then inhibits.
	if err := e.Scan(k.payload("bob")); err != nil {
		t.Fatal(err)
	}
	waitView(t, e, "accepting", func(v session.View) bool { return v.State == session.Accepting.String() })
	var lines []ctl.Progress
	t0 := time.Now()
	last, err := c.Maintenance(ctx, true, func(p ctl.Progress) {
		lines = append(lines, p)
		if len(lines) == 1 && p.Progress == session.ProgressWaitingIdle {
			if err := e.Finish(); err != nil {
				t.Errorf("finish: %v", err)
			}
		}
	})
	if err != nil || lines[0].Progress != session.ProgressWaitingIdle || !last.Done || !last.Status.Maintenance {
		t.Fatalf("maintenance on: %v, %+v", err, lines)
	}
	t.Logf("maintenance on took %v", time.Since(t0))
	if err := c.Get(ctx, "/v1/status", &st); err != nil || st.Engine.State != session.Maintenance.String() {
		t.Fatalf("status in maintenance %+v %v", st.Engine, err)
	}
	if last, err = c.Maintenance(ctx, false, nil); err != nil || last.Status.Maintenance {
		t.Fatalf("maintenance off %+v %v", last, err)
	}

	// Conditions and devices.
	k.prn.SetPaperOut(true)
	r.conds.waitFor(t, "a printer condition", func() bool {
		for _, c := range r.s.Health().Active() {
			if deviceOf(c.Kind) == "printer" {
				return true
			}
		}
		return false
	})
	var conds []health.Condition
	if err := c.Get(ctx, "/v1/conditions", &conds); err != nil || len(conds) == 0 {
		t.Fatalf("conditions %v %v", conds, err)
	}
	var devs []ctl.Device
	if err := c.Get(ctx, "/v1/devices", &devs); err != nil || len(devs) != 3 || devs[1].Name != "printer" || devs[1].State == "ok" {
		t.Fatalf("devices %+v %v", devs, err)
	}
	var pt ctl.PrinterTest
	if err := c.Post(ctx, "/v1/selftest/printer", nil, &pt); err != nil || pt.Printed || !strings.Contains(pt.Before, "paper") {
		t.Fatalf("self-test with paper out %+v %v", pt, err)
	}
	k.prn.SetPaperOut(false)
	if err := c.Post(ctx, "/v1/selftest/printer", nil, &pt); err != nil || !pt.Printed {
		t.Fatalf("self-test %+v %v", pt, err)
	}

	// The diagnostics carry the config without its secrets.
	var d ctl.Diag
	if err := c.Get(ctx, "/v1/diag", &d); err != nil || d.Status.KioskID != "T-01" {
		t.Fatalf("diag %+v %v", d, err)
	}
	dj, _ := json.Marshal(d)
	if strings.Contains(string(dj), password) || strings.Contains(string(dj), walletKey) || !strings.Contains(string(dj), k.cfg.MQTT.PasswordFile) {
		t.Fatalf("diag config not redacted right:\n%s", dj)
	}

	// The socket goes with kioskd: a client then says kioskd is not running.
	took, err := r.stop(t)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stopped in %v", took)
	if err := c.Get(ctx, "/v1/status", &st); !errors.Is(err, ctl.ErrNotRunning) {
		t.Fatalf("after stop: %v", err)
	}
	assertNoGoroutines(t)
}

func itoa(n uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

// TestControlSocketSafeMode: a kiosk whose journal fails its check still answers the
// technician, and says why it is out of service.
func TestControlSocketSafeMode(t *testing.T) {
	k := newKit(t)
	sock := filepath.Join(ctltest.ShortDir(t), "kioskd.sock")
	k.cfg.Control.Socket = sock
	os.MkdirAll(filepath.Dir(k.cfg.Journal.Path), 0o700)
	if err := os.WriteFile(k.cfg.Journal.Path, bytes.Repeat([]byte("not a journal "), 600), 0o600); err != nil {
		t.Fatal(err)
	}
	k.accDev.plug()
	r := k.start()
	if r.s.SafeMode() == nil {
		t.Fatal("not in safe mode")
	}
	c := ctl.NewClient(sock)
	ctx := context.Background()
	var st ctl.Status
	if err := c.Get(ctx, "/v1/status", &st); err != nil || st.SafeMode == "" || st.Engine.State != session.OutOfService.String() {
		t.Fatalf("status %+v %v", st, err)
	}
	var v ctl.Verify
	if err := c.Post(ctx, "/v1/journal/verify", nil, &v); err != nil || v.OK || !strings.Contains(v.Error, "safe mode") {
		t.Fatalf("verify %+v %v", v, err)
	}
	var conds []health.Condition
	if err := c.Get(ctx, "/v1/conditions", &conds); err != nil || len(conds) == 0 || conds[0].Kind != "journal_corrupt" {
		t.Fatalf("conditions %+v %v", conds, err)
	}
	if _, err := c.Maintenance(ctx, true, nil); err == nil {
		t.Fatal("maintenance in safe mode: no error")
	}
	if _, err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, "/v1/status", &st); !errors.Is(err, ctl.ErrNotRunning) {
		t.Fatalf("after stop: %v", err)
	}
}

// TestControlStopWhileWaiting: a technician waiting for maintenance does not hold up the
// stop, and the request ends with it.
func TestControlStopWhileWaiting(t *testing.T) {
	k := newKit(t)
	sock := filepath.Join(ctltest.ShortDir(t), "kioskd.sock")
	k.cfg.Control.Socket = sock
	k.accDev.plug()
	k.prnDev.plug()
	r := k.start()
	e := r.s.Engine()
	waitView(t, e, "idle", func(v session.View) bool { return v.State == session.Idle.String() })
	if err := e.Scan(k.payload("carol")); err != nil {
		t.Fatal(err)
	}
	waitView(t, e, "accepting", func(v session.View) bool { return v.State == session.Accepting.String() })
	c := ctl.NewClient(sock)
	waiting := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := c.Maintenance(context.Background(), true, func(p ctl.Progress) {
			if p.Progress == session.ProgressWaitingIdle && !p.Done {
				select {
				case <-waiting:
				default:
					close(waiting)
				}
			}
		})
		done <- err
	}()
	select {
	case <-waiting:
	case err := <-done:
		t.Fatalf("maintenance ended before it waited: %v", err)
	}
	took, err := r.stop(t)
	if err != nil {
		t.Fatalf("stop: %v", err)
	}
	if took > r.s.StopBudget() {
		t.Fatalf("stop took %v, budget %v", took, r.s.StopBudget())
	}
	// The park closes the customer's session, so the request may end in maintenance or
	// with the stop's error; it must end.
	select {
	case err := <-done:
		t.Logf("waiting request ended: %v", err)
	case <-time.After(testWait):
		t.Fatal("the waiting request did not end at the stop")
	}
	assertNoGoroutines(t)
}
