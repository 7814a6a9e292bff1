package loadtest

import (
	"os"
	"strings"
	"testing"
	"time"
)

// TestReadProcCPU: the reading finds this process (by its own name, not its command) and a
// later reading shows the CPU it burned in between.
func TestReadProcCPU(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc on this system")
	}
	before := readProcCPU()
	if _, ok := before["test process"]; !ok {
		t.Fatalf("this process is not in %v", before)
	}
	// Burn CPU until the kernel's 10 ms clock tick counts some, bounded (a loaded machine
	// may not run this process for a while).
	after := readProcCPU()
	x := uint64(1)
	for deadline := time.Now().Add(time.Minute); after["test process"].cpu <= before["test process"].cpu; after = readProcCPU() {
		if time.Now().After(deadline) {
			t.Fatalf("CPU time did not grow in a minute: %v then %v", before["test process"], after["test process"])
		}
		for range 1_000_000 {
			x = x*6364136223846793005 + 1442695040888963407
		}
	}
	_ = x
	if s := after.since(before); !strings.HasPrefix(s, "test process ") || !strings.Contains(s, "waiting for a core") {
		t.Fatalf("since: %q", s)
	}
	if s := before.since(before); s != "none measured" {
		t.Fatalf("since itself: %q", s)
	}
}

// TestProcCPUTotal: the total adds every process's CPU since the earlier reading, a process
// that appeared in between counted whole, and one that went away (a restarted broker's old
// pid) not below zero.
func TestProcCPUTotal(t *testing.T) {
	before := procCPU{"test process": {cpu: time.Second}, "mosquitto": {cpu: 3 * time.Second}}
	after := procCPU{"test process": {cpu: 4 * time.Second, wait: time.Hour}, "mosquitto": {cpu: time.Second}, "postgres": {cpu: 2 * time.Second}}
	if d := after.total(before); d != 5*time.Second {
		t.Fatalf("total %s, want 5s (3s of this process, 2s of postgres)", d)
	}
	if d := before.total(before); d != 0 {
		t.Fatalf("total since itself: %s", d)
	}
}
