package config

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func pubB64() string {
	pub, _, _ := ed25519.GenerateKey(nil)
	return base64.StdEncoding.EncodeToString(pub)
}

// example returns the shipped example with real keys substituted.
func example(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../deploy/kioskd.example.json")
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), "REPLACE-WITH-WALLET-PUBLIC-KEY-BASE64-AAAAAAA=", pubB64(), 1)
	return strings.Replace(s, "REPLACE-WITH-LEDGER-PUBLIC-KEY-BASE64-AAAAAAA=", pubB64(), 1)
}

func TestExampleParses(t *testing.T) {
	c, err := Parse([]byte(example(t)))
	if err != nil {
		t.Fatal(err)
	}
	if c.Kiosk.ID != "KSK-0001" || len(c.Acceptor.Denominations) != 6 || c.Session.AckWait.D().Seconds() != 3 {
		t.Fatalf("parsed %+v", c)
	}
}

func TestExampleWithPlaceholdersIsRefused(t *testing.T) {
	b, _ := os.ReadFile("../../deploy/kioskd.example.json")
	_, err := Parse(b)
	if err == nil || !strings.Contains(err.Error(), `"wallet.keys.w1"`) {
		t.Fatalf("placeholder keys accepted or unclear error: %v", err)
	}
}

func TestErrorsNameTheKey(t *testing.T) {
	base := example(t)
	for name, tc := range map[string]struct{ old, new, want string }{
		"unknown key":   {`"hotline"`, `"hotlin"`, `"kiosk.hotlin"`},
		"wrong type":    {`"session_max_minor": 500000`, `"session_max_minor": "lots"`, "session_max_minor"},
		"bad duration":  {`"idle_timeout": "60s"`, `"idle_timeout": "soon"`, "soon"},
		"bad currency":  {`"currency": "CNY"`, `"currency": "yuan"`, `"kiosk.currency"`},
		"bad kiosk id":  {`"id": "KSK-0001"`, `"id": "KSK/1"`, `"kiosk.id"`},
		"driver":        {`"driver": "id003"`, `"driver": "magic"`, `"acceptor.driver"`},
		"offline limit": {`"offline_session_max_minor": 50000`, `"offline_session_max_minor": 900000`, "offline_session_max_minor"},
		"dup code":      {`"code": 98,`, `"code": 97,`, "listed twice"},
		"version":       {`"version": 1`, `"version": 2`, "version"},
	} {
		s := strings.Replace(base, tc.old, tc.new, 1)
		if s == base {
			t.Fatalf("%s: substitution did not apply", name)
		}
		_, err := Parse([]byte(s))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want mention of %s", name, err, tc.want)
		}
	}
}

func TestAbsentDiffersFromInvalid(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(filepath.Join(dir, "nope.json")); !errors.Is(err, ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	p := filepath.Join(dir, "bad.json")
	os.WriteFile(p, []byte("{"), 0o600)
	if _, err := Load(p); err == nil || errors.Is(err, ErrNotExist) {
		t.Fatalf("invalid file: %v", err)
	}
}

func TestWriteFileRoundTripAndRelativePaths(t *testing.T) {
	c, err := Parse([]byte(example(t)))
	if err != nil {
		t.Fatal(err)
	}
	c.Journal.Path = "state/journal.db"
	dir := t.TempDir()
	p := filepath.Join(dir, "kioskd.json")
	if err := WriteFile(p, c); err != nil {
		t.Fatal(err)
	}
	back, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if back.Journal.Path != filepath.Join(dir, "state/journal.db") || back.Session.IdleTimeout != c.Session.IdleTimeout {
		t.Fatalf("round trip: %+v", back)
	}
}

// TestScannerHID: a HID scanner is configured by device path or by-id name, with defaults for
// its suffix and timeout; every mistake names its key.
func TestScannerHID(t *testing.T) {
	serial := `"scanner": { "port": "/dev/ttyACM0", "baud": 9600 }`
	ok := map[string]func(c Config) bool{
		`"scanner": { "hid": { "device": "/dev/input/by-id/usb-Honeywell_1900-event-kbd" } }`: func(c Config) bool {
			return c.Scanner.HID.Device == "/dev/input/by-id/usb-Honeywell_1900-event-kbd" && c.Scanner.HID.Suffix == "enter" &&
				c.Scanner.HID.InterCharTimeout.D().Milliseconds() == 200 && c.Scanner.Configured()
		},
		`"scanner": { "hid": { "device": "usb-Honeywell_1900-event-kbd", "suffix": "tab", "inter_char_timeout": "50ms" } }`: func(c Config) bool {
			return c.Scanner.HID.Device == "usb-Honeywell_1900-event-kbd" && c.Scanner.HID.Suffix == "tab" && c.Scanner.HID.InterCharTimeout.D().Milliseconds() == 50
		},
		`"scanner": { "hid": { "device": "/dev/input/event3", "suffix": "none" } }`: func(c Config) bool { return c.Scanner.HID.Suffix == "none" },
		`"scanner": {}`: func(c Config) bool { return !c.Scanner.Configured() },
	}
	for doc, check := range ok {
		c, err := Parse([]byte(strings.Replace(example(t), serial, doc, 1)))
		if err != nil || !check(c) {
			t.Errorf("%s: %+v %v", doc, c.Scanner, err)
		}
	}
	bad := map[string]string{
		`"scanner": { "port": "/dev/ttyACM0", "hid": { "device": "/dev/input/event3" } }`:              `key "scanner.hid.device": a kiosk has one scanner`,
		`"scanner": { "hid": { "device": "input/event3" } }`:                                           `key "scanner.hid.device": must be an absolute path`,
		`"scanner": { "hid": { "device": "/dev/input/../event3" } }`:                                   `key "scanner.hid.device"`,
		`"scanner": { "hid": { "device": "/dev/input/event3", "suffix": "Enter" } }`:                   `key "scanner.hid.suffix": unknown suffix "Enter"`,
		`"scanner": { "hid": { "device": "/dev/input/event3", "inter_char_timeout": "5s" } }`:          `key "scanner.hid.inter_char_timeout"`,
		`"scanner": { "hid": { "device": "/dev/input/event3", "inter_char_timeout": 200 } }`:           `scanner.hid.inter_char_timeout`,
		`"scanner": { "hid": { "device": "/dev/input/event3", "sufix": "tab" } }`:                      `scanner.hid.sufix`,
		`"scanner": { "hid": { "device": "/dev/input/event3" }, "hid": { "device": "/dev/input/x" } }`: `scanner.hid`,
	}
	for doc, want := range bad {
		_, err := Parse([]byte(strings.Replace(example(t), serial, doc, 1)))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %s", doc, err, want)
		}
	}
}
