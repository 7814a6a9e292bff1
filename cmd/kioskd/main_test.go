package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kioskd/kioskd/kiosk/config"
	"github.com/kioskd/kioskd/kiosk/journal"
)

// The test binary is kioskd itself when asked (it also serves as its own check child).
func TestMain(m *testing.M) {
	if os.Getenv("KIOSKD_TEST_AS_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func kioskd(t *testing.T, args ...string) (string, time.Duration, error) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), "KIOSKD_TEST_AS_MAIN=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	return out.String(), time.Since(start), err
}

// holdJournal creates a journal and keeps it open, as a running kioskd does.
func holdJournal(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	j, err := journal.Open(path, journal.Options{KioskID: "T-01", Currency: "CNY"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
}

// TestSecondInstanceExits: a kioskd started on a journal another kioskd holds exits with
// status 1 and a clear message within journal.lock_wait (not after minutes, and not into
// a safe mode that would open the acceptor's port).
func TestSecondInstanceExits(t *testing.T) {
	dir := t.TempDir()
	pub, _, _ := ed25519.GenerateKey(nil)
	c := config.Default()
	c.Kiosk = config.Kiosk{ID: "T-01", Timezone: "UTC", Currency: "CNY", Language: "en"}
	c.Journal = config.Journal{Path: filepath.Join(dir, "journal.db"), LockWait: config.Duration(500 * time.Millisecond)}
	c.Acceptor.Port = filepath.Join(dir, "no-such-port")
	c.Acceptor.Denominations = []config.Denomination{{Code: 0x63, ValueMinor: 1000}}
	c.Printer.Enabled = false
	c.Limits = config.Limits{SessionMaxMinor: 100000, OfflineTotalMaxMinor: 0}
	c.Wallet.Keys = map[string]string{"w1": base64.StdEncoding.EncodeToString(pub)}
	c.HTTP.Listen = "127.0.0.1:0"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "kioskd.json")
	if err := config.WriteFile(cfgPath, c); err != nil {
		t.Fatal(err)
	}
	holdJournal(t, c.Journal.Path)

	out, took, err := kioskd(t, "-config", cfgPath)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("second kioskd: %v\n%s", err, out)
	}
	if !strings.Contains(out, "locked") || !strings.Contains(out, "another kioskd") {
		t.Fatalf("unclear error:\n%s", out)
	}
	if took > 5*time.Second {
		t.Fatalf("took %v to give up with a lock wait of 500ms", took)
	}
	if strings.Contains(out, "acceptor") {
		t.Fatalf("the second kioskd went near the acceptor:\n%s", out)
	}
}

// TestCheckChildLockWait: the journal check child waits for a held journal only as long as
// it is told, and says the journal is locked (which its parent recognises).
func TestCheckChildLockWait(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	holdJournal(t, path)
	out, took, err := kioskd(t, "-lock-wait", "300ms", "-check-journal", path)
	if err == nil || !strings.Contains(out, journal.ErrLocked.Error()) {
		t.Fatalf("check of a held journal: %v\n%s", err, out)
	}
	if took > 5*time.Second {
		t.Fatalf("check child waited %v with -lock-wait 300ms", took)
	}
}
