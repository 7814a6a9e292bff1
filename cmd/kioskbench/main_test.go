package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/kioskd/kioskd/hw-sim/simrig"
)

// TestTable runs the whole table at tiny settings and checks that it has a row for every
// measurement and every driver configuration of the protocol table.
func TestTable(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every measurement (about 20 s)")
	}
	var out bytes.Buffer
	if err := benchCmd([]string{"-dir", t.TempDir(), "-benchtime", "5ms", "-events", "300", "-poll", "50ms"}, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	s := out.String()
	want := []string{"raw 200 B write+fsync (baseline)", "journal: credit commit", "journal: intent+credit", "raw QoS1 publish+PUBACK",
		"Finish -> signed ack applied", "recovery (open + full chain and views check)"}
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

func TestBadFlag(t *testing.T) {
	if err := benchCmd([]string{"-benchtime", "often"}, &bytes.Buffer{}); err == nil {
		t.Fatal("no error for a bad -benchtime")
	}
}
