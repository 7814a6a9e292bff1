package main

import (
	"crypto/ed25519"
	"encoding/base64"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kioskd/kioskd/kiosk/config"
)

// TestSystemdNotifications: kioskd under a (fake) systemd with a watchdog: READY=1 once it
// runs, a STATUS= line, WATCHDOG=1 at a third of WATCHDOG_USEC, and STOPPING=1 on SIGTERM,
// after which it exits cleanly.
func TestSystemdNotifications(t *testing.T) {
	dir, err := os.MkdirTemp("", "kdn") // short: a UNIX socket path has at most 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sockPath := filepath.Join(dir, "notify")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()

	pub, _, _ := ed25519.GenerateKey(nil)
	c := config.Default()
	c.Kiosk = config.Kiosk{ID: "T-01", Timezone: "UTC", Currency: "CNY", Language: "en"}
	c.Journal = config.Journal{Path: filepath.Join(dir, "journal.db"), LockWait: config.Duration(time.Second)}
	c.Acceptor.Port = filepath.Join(dir, "no-such-port") // out of service, but running
	c.Acceptor.Denominations = []config.Denomination{{Code: 0x63, ValueMinor: 1000}}
	c.Printer.Enabled = false
	c.Limits = config.Limits{SessionMaxMinor: 100000, OfflineTotalMaxMinor: 0}
	c.Wallet.Keys = map[string]string{"w1": base64.StdEncoding.EncodeToString(pub)}
	c.HTTP.Listen = "127.0.0.1:0"
	c.Control.Socket = ""
	c.Session.ShutdownGrace = config.Duration(time.Second) // no acceptor to park
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "kioskd.json")
	if err := config.WriteFile(cfgPath, c); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-config", cfgPath)
	cmd.Env = append(os.Environ(), "KIOSKD_TEST_AS_MAIN=1", "NOTIFY_SOCKET="+sockPath, "WATCHDOG_USEC=600000")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("kioskd output:\n%s", out.String())
		}
	}()

	// next reads the next line within 20 s (a bound, not a pace).
	buf := make([]byte, 4096)
	next := func() string {
		t.Helper()
		sock.SetReadDeadline(time.Now().Add(20 * time.Second))
		n, err := sock.Read(buf)
		if err != nil {
			t.Fatalf("no notification: %v", err)
		}
		return string(buf[:n])
	}
	waitFor := func(want func(string) bool, what string) []string {
		t.Helper()
		var seen []string
		for {
			l := next()
			seen = append(seen, l)
			if want(l) {
				return seen
			}
			if len(seen) > 200 {
				t.Fatalf("no %s in %q", what, seen)
			}
		}
	}
	// Before READY=1 only start-up progress may come: a STATUS=starting line per slow stage
	// and the EXTEND_TIMEOUT_USEC= that keep systemd's start timeout from killing it.
	for _, l := range waitFor(func(l string) bool { return l == "READY=1" }, "READY=1") {
		if l != "READY=1" && !strings.HasPrefix(l, "STATUS=starting: ") && !strings.HasPrefix(l, "EXTEND_TIMEOUT_USEC=") {
			t.Fatalf("notification %q before READY=1", l)
		}
	}
	seen := waitFor(func(l string) bool { return l == "WATCHDOG=1" }, "WATCHDOG=1")
	if !strings.HasPrefix(seen[0], "STATUS=") {
		t.Fatalf("no status before the first feed: %q", seen)
	}
	waitFor(func(l string) bool { return l == "WATCHDOG=1" }, "a second WATCHDOG=1")

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(func(l string) bool { return l == "STOPPING=1" }, "STOPPING=1")
	// Like systemd, keep reading: the feeding goes on during the stop, and a full socket
	// queue would block the sender.
	go func() {
		b := make([]byte, 4096)
		for {
			sock.SetReadDeadline(time.Now().Add(time.Minute))
			if _, err := sock.Read(b); err != nil {
				return
			}
		}
	}()
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Fatalf("kioskd exit: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("kioskd did not exit after SIGTERM")
	}
}

// TestWatchdogPlan: a third of WatchdogSec when systemd set one, for this process only.
func TestWatchdogPlan(t *testing.T) {
	t.Setenv("WATCHDOG_USEC", "30000000")
	t.Setenv("WATCHDOG_PID", "")
	if every, feed, err := watchdogPlan(); err != nil || !feed || every != 10*time.Second {
		t.Fatalf("WatchdogSec=30: %v %v %v", every, feed, err)
	}
	t.Setenv("WATCHDOG_PID", "1") // another process's watchdog
	if _, feed, err := watchdogPlan(); err != nil || feed {
		t.Fatalf("another pid's watchdog: %v %v", feed, err)
	}
	os.Unsetenv("WATCHDOG_USEC")
	os.Unsetenv("WATCHDOG_PID")
	if every, feed, err := watchdogPlan(); err != nil || feed || every != 10*time.Second {
		t.Fatalf("no watchdog: %v %v %v", every, feed, err)
	}
	t.Setenv("WATCHDOG_USEC", "soon")
	if _, feed, err := watchdogPlan(); err == nil || feed {
		t.Fatalf("garbage WATCHDOG_USEC: %v %v", feed, err)
	}
}
