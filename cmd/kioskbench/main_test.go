package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kioskd/kioskd/hw-sim/simrig"
)

// TestTable runs the whole table at tiny settings and checks that it has a row for every
// measurement and every driver configuration of the protocol table.
func TestTable(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every measurement (about 20 s)")
	}
	var out bytes.Buffer
	if err := benchCmd([]string{"-dir", t.TempDir(), "-benchtime", "5ms", "-events", "300", "-poll", "50ms", "-days", "10", "-per-day", "5", "-archive-after", "72h", "-idle", "1s"}, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	s := out.String()
	want := []string{"raw 200 B write+fsync (baseline)", "journal: credit commit", "journal: intent+credit", "raw QoS1 publish+PUBACK",
		"Finish -> signed ack applied", "recovery (open + full chain and views check)",
		"start-up with checkpoint", "background full verification", "simulated traffic",
		"binary kioskd linux/amd64", "binary kioskctl linux/arm64", "binary kioskd linux/armv7",
		"kioskd RSS idle (VmRSS)", "kioskd RSS in a session", "kioskd peak RSS after a top-up", "kioskd idle CPU"}
	for _, p := range simrig.Protocols() {
		for _, c := range p.Conformance {
			want = append(want, c.Name+" ")
		}
	}
	for _, w := range want {
		if !containsRow(s, w) {
			t.Errorf("no row %q in\n%s", w, s)
		}
	}
}

// containsRow reports whether a line of s, right-aligned by the table, starts with name.
func containsRow(s, name string) bool {
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), name) {
			return true
		}
	}
	return false
}

// The /proc readers of the footprint rows, on this process.
func TestProcReaders(t *testing.T) {
	rss, hwm, err := memStatus(os.Getpid())
	if err != nil || rss <= 0 || hwm < rss {
		t.Fatalf("memStatus: rss %d hwm %d, %v", rss, hwm, err)
	}
	_, t0, err := cpuTicks(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for { // burn some CPU until a tick is counted
		if _, t1, err := cpuTicks(os.Getpid()); err != nil || t1 > t0 {
			if err != nil {
				t.Fatal(err)
			}
			return
		}
	}
}

func TestBadFlag(t *testing.T) {
	if err := benchCmd([]string{"-benchtime", "often"}, &bytes.Buffer{}); err == nil {
		t.Fatal("no error for a bad -benchtime")
	}
}

// A measurement that failed is printed as FAILED and makes the command fail, never a time
// of zero.
func TestFailedMeasurement(t *testing.T) {
	var f failures
	r := testing.Benchmark(func(b *testing.B) { b.Fatal("the unit never answered") })
	if got := f.per("full note", r, time.Microsecond); got != "FAILED" {
		t.Fatalf("per = %q", got)
	}
	if got := f.ns("encode", testing.BenchmarkResult{}); got != "FAILED" {
		t.Fatalf("ns = %q", got)
	}
	if len(f) != 2 || f[0] != "full note" {
		t.Fatalf("failures = %v", f)
	}
	ok := testing.BenchmarkResult{N: 4, T: 8 * time.Microsecond}
	if got := f.per("fsync", ok, time.Microsecond); got != "2µs" {
		t.Fatalf("per = %q", got)
	}
}
