package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kioskd/kioskd/kiosk/journal"
)

func TestJournalVerify(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	j, err := journal.Open(path, journal.Options{KioskID: "K-CTL", Currency: "CNY"})
	if err != nil {
		t.Fatal(err)
	}
	j.Close()
	var out bytes.Buffer
	if err := run([]string{"journal", "verify", "-journal", path}, &out); err != nil {
		t.Fatalf("verify: %v (%s)", err, out.String())
	}
	if !strings.HasPrefix(out.String(), "OK ") {
		t.Fatalf("verify printed %q", out.String())
	}
}

// The benchmarks are a command of their own; kioskctl says where they went.
func TestBenchMoved(t *testing.T) {
	err := run([]string{"bench"}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "kioskbench") {
		t.Fatalf("kioskctl bench: %v", err)
	}
}

func TestUsage(t *testing.T) {
	if err := run(nil, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "journal verify") {
		t.Fatalf("no arguments: %v", err)
	}
	if err := run([]string{"frobnicate"}, &bytes.Buffer{}); err == nil {
		t.Fatal("unknown command: no error")
	}
}
