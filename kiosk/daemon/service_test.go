package daemon

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"

	"github.com/kioskd/kioskd/hw-sim/id003sim"
	"github.com/kioskd/kioskd/kiosk/config"
	"github.com/kioskd/kioskd/kiosk/ctl/ctltest"
	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/kiosk/session"
	"github.com/kioskd/kioskd/kiosk/svcmenu"
)

// buildKioskctl builds the kioskctl binary for the test.
func buildKioskctl(t *testing.T) string {
	t.Helper()
	exe := filepath.Join(t.TempDir(), "kioskctl")
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("the go command is needed to build kioskctl: %v", err)
	}
	cmd := exec.Command(gobin, "build", "-o", exe, "../../cmd/kioskctl")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build kioskctl: %v\n%s", err, out)
	}
	return exe
}

// TestKioskctlAgainstKioskd: the kioskctl binary against a running kioskd with emulated
// devices: status, conditions, the self-tests, a reprint that says COPY, maintenance on and
// off, and a sign-off journaled with who and why. The service menu answers on its own port
// beside it, and its login is journaled.
func TestKioskctlAgainstKioskd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds kioskctl")
	}
	exe := buildKioskctl(t)
	k := newKit(t)
	sock := filepath.Join(ctltest.ShortDir(t), "kioskd.sock")
	k.cfg.Control.Socket = sock
	k.cfg.Scanner.Port = k.scnDev.path
	door := &gpiotest.Pin{N: "DOOR", L: gpio.Low, EdgesChan: make(chan gpio.Level, 4)}
	k.cfg.Sensors = []config.Sensor{{Name: "cabinet_door", Pin: "DOOR"}}
	k.options.OpenPin = func(name string) (gpio.PinIO, error) { return door, nil }
	techHash, err := svcmenu.HashPIN("2222", svcmenu.Params{Memory: 64, Time: 1, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	k.cfg.ServiceMenu = config.ServiceMenu{Listen: "127.0.0.1:0", PINHashes: map[string]string{"technician": techHash}}
	k.accDev.plug()
	k.prnDev.plug()
	k.scnDev.plug()
	r := k.start()
	r.conds.waitCleared(t, condPrinter)
	e := r.s.Engine()
	waitView(t, e, "idle", func(v session.View) bool { return v.State == session.Idle.String() })

	ctl := func(args ...string) (string, error) {
		t.Helper()
		cmd := exec.Command(exe, append(args, "-socket", sock)...)
		cmd.Env = append(cmd.Environ(), "SUDO_USER=alice")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	must := func(want string, args ...string) string {
		t.Helper()
		out, err := ctl(args...)
		if err != nil || !strings.Contains(out, want) {
			t.Fatalf("kioskctl %s: %v\n%s(want %q)", strings.Join(args, " "), err, out, want)
		}
		return out
	}
	must("state: idle", "status")
	must("", "conditions")
	must("test page printed", "selftest", "printer")
	must("firmware", "selftest", "acceptor")
	must("cabinet_door:  closed", "selftest", "sensors")

	// A customer; the technician reprints the receipt: a COPY.
	k.topUp(t, e, "alice", 0x63, 1000)
	var no uint64
	if err := r.s.j.Topups(func(tp journal.Topup) bool { no = tp.ReceiptNo; return true }); err != nil || no == 0 {
		t.Fatalf("receipt %d %v", no, err)
	}
	if err := e.Cancel(); err != nil {
		t.Fatal(err)
	}
	waitView(t, e, "idle", func(v session.View) bool { return v.State == session.Idle.String() })
	must("COPY of receipt "+itoa(no), "reprint", itoa(no))
	// The test page is not cut (the cut counter is the receipts' evidence): it comes out
	// with the original.
	docs := waitDocuments(t, k.prn, 2)
	if !strings.Contains(docs[1].Text, "COPY") || strings.Contains(docs[0].Text, "COPY") || !strings.Contains(docs[0].Text, "SELF-TEST") {
		t.Fatalf("original:\n%s\ncopy:\n%s", docs[0].Text, docs[1].Text)
	}

	// The scanner test runs in maintenance only, and the code it reads starts no session.
	if out, err := ctl("selftest", "scanner"); err == nil || !strings.Contains(out, "maintenance only") {
		t.Fatalf("scanner test outside maintenance: %v %s", err, out)
	}
	must("maintenance", "maintenance", "on")
	test := exec.Command(exe, "selftest", "scanner", "-socket", sock)
	var testOut bytes.Buffer
	test.Stdout, test.Stderr = &testOut, &testOut
	if err := test.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(testWait)
	for {
		r.s.scan.mu.Lock()
		armed := r.s.scan.want != nil
		r.s.scan.mu.Unlock()
		if armed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("scanner test never waited for a code: %s", testOut.String())
		}
		time.Sleep(5 * time.Millisecond) // the kioskctl process is connecting; bounded
	}
	if err := k.scn.Scan("SCANNER-TEST-0042"); err != nil {
		t.Fatal(err)
	}
	if err := test.Wait(); err != nil || !strings.Contains(testOut.String(), "SCANNER-TEST-0042") || !strings.Contains(testOut.String(), "used for a session:  no") {
		t.Fatalf("scanner test: %v\n%s", err, testOut.String())
	}
	if st, _ := e.Status(t.Context()); st.State != session.Maintenance.String() {
		t.Fatalf("state after the scanner test: %s", st.State)
	}
	// The acceptor's note test: the unit takes one note to escrow and gives it back.
	cnt, _ := r.s.j.Cassette()
	note := exec.Command(exe, "selftest", "acceptor", "-note", "-socket", sock)
	var noteOut bytes.Buffer
	note.Stdout, note.Stderr = &noteOut, &noteOut
	if err := note.Start(); err != nil {
		t.Fatal(err)
	}
	insertWhenEnabled(t, k.acc, 0x64)
	if err := note.Wait(); err != nil || !strings.Contains(noteOut.String(), "test note read:") || !strings.Contains(noteOut.String(), "code 100 = 2000 CNY") {
		t.Fatalf("note test: %v\n%s", err, noteOut.String())
	}
	if after, _ := r.s.j.Cassette(); after.Count != cnt.Count || after.ValueMinor != cnt.ValueMinor {
		t.Fatalf("cassette counted the test note: %+v -> %+v", cnt, after)
	}
	must("maintenance off (state idle)", "maintenance", "off")

	// A cheat attempt stops the acceptor until a technician signs it off, with a reason.
	if out, err := ctl("signoff", session.SignoffFraud); err == nil || !strings.Contains(out, "-why") {
		t.Fatalf("signoff without why: %v %s", err, out)
	}
	if out, err := ctl("signoff", session.SignoffFraud, "-why", "nothing there"); err == nil || !strings.Contains(out, "not active") {
		t.Fatalf("signoff of an inactive condition: %v %s", err, out)
	}
	k.acc.Cheat()
	r.conds.waitActive(t, session.SignoffFraud)
	// The unit keeps reporting its cheat attempt until it is reset: no sign-off before that.
	if out, err := ctl("signoff", session.SignoffFraud, "-why", "too early"); err == nil || !strings.Contains(out, "reset it first") {
		t.Fatalf("signoff while the unit reports the cheat attempt: %v %s", err, out)
	}
	if err := k.acc.PowerCycle(id003sim.NoNote); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		out, err := ctl("signoff", session.SignoffFraud, "-why", "front panel inspected, no device found")
		if err == nil && strings.Contains(out, "signed off by kioskctl uid") {
			break
		}
		if !strings.Contains(out, "reset it first") || time.Now().After(deadline) {
			t.Fatalf("signoff after the unit's reset: %v %s", err, out)
		}
		time.Sleep(50 * time.Millisecond) // polling the unit's recovery, not timing it
	}
	var so []journal.SignoffEvent
	if err := r.s.j.Events(0, func(rec journal.Record) bool {
		if p, _ := rec.Payload(); p != nil {
			if s, ok := p.(*journal.SignoffEvent); ok {
				so = append(so, *s)
			}
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if len(so) != 1 || so[0].Condition != session.SignoffFraud || !strings.Contains(so[0].Who, "(alice)") || so[0].Why != "front panel inspected, no device found" {
		t.Fatalf("sign-off events %+v", so)
	}

	// The service menu: its own port, the door closed keeps it shut, the door open lets a
	// technician in, and the login is journaled.
	menu := r.s.svcAddr()
	if menu == "" {
		t.Fatal("service menu not listening")
	}
	login := func() int {
		req, _ := http.NewRequest("POST", "http://"+menu+"/api/login", strings.NewReader(`{"role":"technician","pin":"2222"}`))
		req.Header.Set("Origin", "http://"+menu)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		req.Header.Set(svcmenu.TokenHeader, r.s.svcToken())
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if code := login(); code != http.StatusForbidden {
		t.Fatalf("login with the door closed: %d", code)
	}
	door.Lock()
	door.L = gpio.High
	door.Unlock()
	door.EdgesChan <- gpio.High
	r.conds.waitActive(t, "cabinet_door_open")
	if code := login(); code != http.StatusOK {
		t.Fatalf("login with the door open: %d", code)
	}
	found := false
	_ = r.s.j.Events(0, func(rec journal.Record) bool {
		if rec.Type == journal.EvServiceAction {
			var a journal.ServiceActionEvent
			_ = json.Unmarshal(rec.Data, &a)
			found = found || (a.Who == "technician/1" && a.Action == "login")
		}
		return true
	})
	if !found {
		t.Fatal("the service menu's login is not in the journal")
	}
	// kioskctl's actions are journaled too, with the peer's uid.
	var ctlActions []string
	_ = r.s.j.Events(0, func(rec journal.Record) bool {
		if rec.Type == journal.EvServiceAction {
			var a journal.ServiceActionEvent
			_ = json.Unmarshal(rec.Data, &a)
			if strings.HasPrefix(a.Who, "kioskctl uid ") {
				ctlActions = append(ctlActions, a.Action+" "+a.Result)
			}
		}
		return true
	})
	got := strings.Join(ctlActions, ",")
	for _, want := range []string{"/v1/selftest/printer ok", "/v1/reprint ok", "/v1/maintenance ok", "/v1/signoff ok", "/v1/signoff failed: Not Found"} {
		if !strings.Contains(got, want) {
			t.Errorf("kioskctl's actions in the journal lack %q: %s", want, got)
		}
	}
	if _, err := r.stop(t); err != nil {
		t.Fatal(err)
	}
}
