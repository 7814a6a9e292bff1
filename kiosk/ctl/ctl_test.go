package ctl_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kioskd/kioskd/kiosk/ctl"
	"github.com/kioskd/kioskd/kiosk/ctl/ctltest"
	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/kiosk/session"
	"golang.org/x/sys/unix"
)

func TestPolicy(t *testing.T) {
	p := ctl.Policy{SelfUID: 998, Group: "kioskd", GID: 997, Groups: func(uid uint32) ([]string, error) {
		if uid == 1001 {
			return []string{"1001", "997"}, nil // a technician with kioskd as a supplementary group
		}
		return []string{"1002"}, nil
	}}
	for _, c := range []struct {
		name string
		cred unix.Ucred
		ok   bool
	}{
		{"root", unix.Ucred{Uid: 0, Gid: 0}, true},
		{"kioskd itself", unix.Ucred{Uid: 998, Gid: 998}, true},
		{"primary group", unix.Ucred{Uid: 1003, Gid: 997}, true},
		{"supplementary group", unix.Ucred{Uid: 1001, Gid: 1001}, true},
		{"outsider", unix.Ucred{Uid: 1002, Gid: 1002}, false},
	} {
		err := p.Check(c.cred)
		if (err == nil) != c.ok {
			t.Errorf("%s: %v", c.name, err)
		}
		if err != nil && (!errors.Is(err, ctl.ErrRefused) || !strings.Contains(err.Error(), `group "kioskd"`)) {
			t.Errorf("%s: unclear refusal %v", c.name, err)
		}
	}
	// Without the group on this machine, only root and kioskd are served.
	p.GID = -1
	if err := p.Check(unix.Ucred{Uid: 1001, Gid: 997}); err == nil {
		t.Error("group member served while the group does not exist")
	}
}

func TestStatusConditionsAndErrors(t *testing.T) {
	f := ctltest.NewFake()
	f.Conds = []health.Condition{{Kind: "printer_paper_out", Severity: health.Warning, Effect: health.Degrades}}
	path := ctltest.Serve(t, f, ctltest.Self())
	c := ctl.NewClient(path)
	ctx := context.Background()
	var st ctl.Status
	if err := c.Get(ctx, "/v1/status", &st); err != nil {
		t.Fatal(err)
	}
	if st.KioskID != "K-FAKE" || st.Engine.State != "idle" {
		t.Fatalf("status %+v", st)
	}
	var conds []health.Condition
	if err := c.Get(ctx, "/v1/conditions", &conds); err != nil || len(conds) != 1 || conds[0].Kind != "printer_paper_out" {
		t.Fatalf("conditions %+v, %v", conds, err)
	}
	var r ctl.Receipt
	err := c.Get(ctx, "/v1/receipt/7", &r)
	var se *ctl.ServerError
	if !errors.As(err, &se) || se.Code != 404 || !strings.Contains(err.Error(), "receipt 7") {
		t.Fatalf("missing receipt: %v", err)
	}
	if err := c.Get(ctx, "/v1/receipt/x", &r); err == nil || !strings.Contains(err.Error(), "positive integer") {
		t.Fatalf("bad receipt number: %v", err)
	}
	if err := c.Post(ctx, "/v1/selftest/printer", nil, &ctl.PrinterTest{}); !errors.As(err, &se) || se.Code != 501 {
		t.Fatalf("unsupported self-test: %v", err)
	}
}

func TestExportAndVerify(t *testing.T) {
	f := ctltest.NewFake()
	f.Events = []journal.Record{{Seq: 1, Type: journal.EvJournalCreated}, {Seq: 2, Type: journal.EvBoot}}
	c := ctl.NewClient(ctltest.Serve(t, f, ctltest.Self()))
	var b bytes.Buffer
	if err := c.Export(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(b.String(), "\n"); n != 2 {
		t.Fatalf("export: %d lines: %s", n, b.String())
	}
	var v ctl.Verify
	if err := c.Post(context.Background(), "/v1/journal/verify", nil, &v); err != nil || !v.OK || v.Report.Events != 2 {
		t.Fatalf("verify %+v, %v", v, err)
	}
	f.SetVerifyErr(errors.New("hash chain broken at event 2"))
	if err := c.Post(context.Background(), "/v1/journal/verify", nil, &v); err != nil || v.OK || !strings.Contains(v.Error, "hash chain") {
		t.Fatalf("verify of a bad journal %+v, %v", v, err)
	}
}

// Maintenance on with a customer in session reports that it waits, and finishes once the
// customer did.
func TestMaintenanceWaits(t *testing.T) {
	f := ctltest.NewFake()
	f.Busy = true
	c := ctl.NewClient(ctltest.Serve(t, f, ctltest.Self()))
	var lines []ctl.Progress
	last, err := c.Maintenance(context.Background(), true, func(p ctl.Progress) {
		lines = append(lines, p)
		if len(lines) == 1 {
			f.Release()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) < 2 || lines[0].Progress != "waiting_idle" || lines[0].Done || !last.Done || !last.Status.Maintenance {
		t.Fatalf("progress %+v", lines)
	}
	if last, err = c.Maintenance(context.Background(), false, nil); err != nil || last.Status.Maintenance {
		t.Fatalf("maintenance off: %+v, %v", last, err)
	}
}

func TestNotRunning(t *testing.T) {
	dir := ctltest.ShortDir(t)
	c := ctl.NewClient(filepath.Join(dir, "kioskd.sock"))
	err := c.Get(context.Background(), "/v1/status", &ctl.Status{})
	if !errors.Is(err, ctl.ErrNotRunning) || !strings.Contains(err.Error(), "kioskd is not running (no socket at "+dir) {
		t.Fatalf("no socket: %v", err)
	}
	// A socket file left by a kioskd that died.
	ln, err := net.Listen("unix", filepath.Join(dir, "kioskd.sock"))
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if err := c.Get(context.Background(), "/v1/status", &ctl.Status{}); !errors.Is(err, ctl.ErrNotRunning) {
		t.Fatalf("stale socket: %v", err)
	}
	// Listen replaces the stale file, and refuses to take over a live one.
	p := ctltest.Self()
	ln, err = ctl.Listen(c.Socket, p)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	defer ln.Close()
	if fi, err := os.Stat(c.Socket); err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode: %v %v", fi.Mode(), err)
	}
	if _, err := ctl.Listen(c.Socket, p); err == nil || !strings.Contains(err.Error(), "another kioskd") {
		t.Fatalf("second listener: %v", err)
	}
}

// The peer check, end to end: a process of another user, outside the group, is refused by
// kioskd even when the file's mode would let it connect, and by the file's mode otherwise.
func TestPermissionRefusedForOutsider(t *testing.T) {
	if os.Getenv("KIOSKCTL_HELPER_SOCKET") != "" {
		helperClient()
		return
	}
	if os.Getuid() != 0 {
		t.Skip("not root: cannot run a client as another user; the decision is tested by TestPolicy")
	}
	const nobody = 65534
	path := ctltest.Serve(t, ctltest.NewFake(), ctl.Policy{SelfUID: 0, Group: "kioskd-test", GID: -1})
	// The test binary, where the other user can run it.
	dir := filepath.Dir(path)
	exe := filepath.Join(dir, "client")
	b, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	run := func() string {
		cmd := exec.Command(exe, "-test.run=^TestPermissionRefusedForOutsider$")
		cmd.Env = append(os.Environ(), "KIOSKCTL_HELPER_SOCKET="+path)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		out, _ := cmd.CombinedOutput()
		return string(out)
	}
	// Mode 0660: the kernel refuses the connection.
	if out := run(); !strings.Contains(out, "HELPER: ") || !strings.Contains(out, "permission refused") || !strings.Contains(out, "RUNNING") {
		t.Fatalf("file mode: helper said %q", out)
	}
	// Mode 0666: the connection gets through, kioskd refuses the peer.
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	if out := run(); !strings.Contains(out, "HELPER: kioskd: permission refused: uid 65534 is not root") || !strings.Contains(out, "SIGNOFF: kioskd: permission refused") {
		t.Fatalf("peer check: helper said %q", out)
	}
}

// helperClient runs in the child process as the other user.
func helperClient() {
	c := ctl.NewClient(os.Getenv("KIOSKCTL_HELPER_SOCKET"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := c.Get(ctx, "/v1/status", &ctl.Status{})
	os.Stdout.WriteString("HELPER: " + errString(err) + "\n")
	// An action is refused the same way: a sign-off needs the group too.
	err = c.Post(ctx, "/v1/signoff", ctl.SignOffRequest{Condition: "acceptor_fraud", Why: "outsider"}, &ctl.Reply{})
	os.Stdout.WriteString("SIGNOFF: " + errString(err) + "\n")
	if c.Running() {
		os.Stdout.WriteString("RUNNING\n")
	}
}

func errString(err error) string {
	if err == nil {
		return "served"
	}
	return err.Error()
}

func TestRedactConfig(t *testing.T) {
	cfg := map[string]any{
		"mqtt":     map[string]any{"broker": "ssl://user:hunter2@mqtt.example:8883", "key_file": "/etc/kioskd/kiosk.key", "password_file": "/etc/kioskd/pw", "ledger_keys": map[string]any{"l1": "AAAAsecretkey"}},
		"acceptor": map[string]any{"ssp": map[string]any{"fixed_key_file": "/etc/kioskd/ssp.key", "fixed_key": "0123456789abcdef"}},
		"wallet":   map[string]any{"keys": map[string]any{"w1": "BBBBwallet"}},
	}
	v, err := ctl.RedactConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := jsonString(v)
	for _, secret := range []string{"hunter2", "AAAAsecretkey", "0123456789abcdef", "BBBBwallet"} {
		if strings.Contains(b, secret) {
			t.Errorf("%q left in %s", secret, b)
		}
	}
	for _, kept := range []string{"/etc/kioskd/kiosk.key", "/etc/kioskd/pw", "/etc/kioskd/ssp.key", `"w1"`, "mqtt.example"} {
		if !strings.Contains(b, kept) {
			t.Errorf("%q removed from %s", kept, b)
		}
	}
}

func jsonString(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

// The collect actions reach the engine as collect_* commands; an unknown action is refused.
func TestCollectActions(t *testing.T) {
	f := ctltest.NewFake()
	c := ctl.NewClient(ctltest.Serve(t, f, ctltest.Self()))
	ctx := context.Background()
	if _, err := c.Collect(ctx, ctl.CollectRequest{Action: "start", Operator: "alice", CassetteID: "CAS-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Collect(ctx, ctl.CollectRequest{Action: "count", Counts: []journal.NoteLine{{ValueMinor: 10000, Count: 3}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Collect(ctx, ctl.CollectRequest{Action: "empty_the_box"}); err == nil {
		t.Fatal("unknown action accepted")
	}
	got := f.CollectCommands()
	if len(got) != 2 || got[0].Kind != session.CmdCollectStart || got[0].Operator != "alice" || got[0].CassetteID != "CAS-1" ||
		got[1].Kind != session.CmdCollectCount || len(got[1].Counts) != 1 || got[1].Counts[0].Count != 3 {
		t.Fatalf("commands %+v", got)
	}
}
