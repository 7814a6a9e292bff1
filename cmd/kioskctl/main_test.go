package main

import (
	"bytes"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/kiosk/svcmenu"
	"github.com/kioskd/kioskd/sync/wire"
	bolt "go.etcd.io/bbolt"
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

// verify stores a checkpoint when it can write the file; -quick is the start-up check from
// it; a file edited before the checkpoint passes -quick and fails the full check.
func TestJournalVerifyFullAndQuick(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	j, err := journal.Open(path, journal.Options{KioskID: "K-CTL", Currency: "CNY"})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		s, _ := j.OpenSession(journal.OpenSessionParams{Account: "a", LimitMinor: 100000})
		in, _ := j.StackIntent(s.ID, journal.Note{Code: 1, ValueMinor: 1000})
		j.CreditNote(in.ID, journal.Note{}, "")
		j.CloseSession(journal.CloseParams{SessionID: s.ID, Outcome: "complete"})
	}
	st, _ := j.Stats()
	j.Close()
	var out bytes.Buffer
	if err := run([]string{"journal", "verify", "-journal", path}, &out); err != nil {
		t.Fatalf("verify: %v (%s)", err, out.String())
	}
	if !strings.Contains(out.String(), "full check") || !strings.Contains(out.String(), "checkpoint stored at event "+strconv.FormatUint(st.Events, 10)) {
		t.Fatalf("verify printed %q", out.String())
	}
	out.Reset()
	if err := run([]string{"journal", "verify", "-quick", "-journal", path}, &out); err != nil {
		t.Fatalf("quick verify: %v (%s)", err, out.String())
	}
	if !strings.Contains(out.String(), "start-up check") || !strings.Contains(out.String(), "checked from "+strconv.FormatUint(st.Events, 10)) {
		t.Fatalf("quick verify printed %q", out.String())
	}
	// Edit the first credit's amount (its stored hash unchanged: the chain breaks there).
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("events"))
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if i := bytes.Index(v, []byte(`"value_minor":1000`)); i > 0 {
				nv := bytes.Clone(v)
				nv[i+len(`"value_minor":`)] = '9'
				return b.Put(k, nv)
			}
		}
		return nil
	})
	db.Close()
	out.Reset()
	if err := run([]string{"journal", "verify", "-quick", "-journal", path}, &out); err != nil {
		t.Fatalf("quick verify reads history before the checkpoint: %v (%s)", err, out.String())
	}
	out.Reset()
	if err := run([]string{"journal", "verify", "-journal", path}, &out); err == nil || !strings.HasPrefix(out.String(), "FAIL") {
		t.Fatalf("full verify passed an edited history: %v %q", err, out.String())
	}
}

func TestJournalArchiveAndExport(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	clk := time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)
	now := func() time.Time { return clk }
	j, err := journal.Open(path, journal.Options{KioskID: "K-CTL", Currency: "CNY", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		s, _ := j.OpenSession(journal.OpenSessionParams{Account: "a", LimitMinor: 100000})
		in, _ := j.StackIntent(s.ID, journal.Note{Code: 1, ValueMinor: 1000})
		j.CreditNote(in.ID, journal.Note{}, "")
		res, _ := j.CloseSession(journal.CloseParams{SessionID: s.ID, Outcome: "complete"})
		j.MarkPrint(res.Topup.Seq, journal.PrintStarted, "")
		j.MarkPrint(res.Topup.Seq, journal.PrintDone, "")
		w, _ := res.Topup.Wire()
		j.ApplyAck(wire.Ack{V: 1, TopupID: w.TopupID, Status: wire.AckCredited, AmountMinor: w.AmountMinor, Currency: "CNY"})
	}
	j.Checkpoint()
	st, _ := j.Stats()
	j.Close()
	var out bytes.Buffer
	// The clock of the kiosk is 2026-01-01; the command's is now: everything is old.
	if err := run([]string{"journal", "archive", "-older-than", "1h", "-journal", path}, &out); err != nil {
		t.Fatalf("archive: %v (%s)", err, out.String())
	}
	if !strings.HasPrefix(out.String(), "archived ") || strings.HasPrefix(out.String(), "archived 0 ") {
		t.Fatalf("archive printed %q", out.String())
	}
	out.Reset()
	if err := run([]string{"journal", "export", "-journal", path}, &out); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "\n"); uint64(n) != st.Events {
		t.Fatalf("export has %d events, journal %d", n, st.Events)
	}
	out.Reset()
	if err := run([]string{"journal", "export", "-hot", "-journal", path}, &out); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "\n"); uint64(n) >= st.Events {
		t.Fatalf("hot export has %d events of %d: nothing archived", n, st.Events)
	}
	out.Reset()
	if err := run([]string{"journal", "verify", "-journal", path}, &out); err != nil || !strings.Contains(out.String(), "archived, ") {
		t.Fatalf("verify after archive: %v %q", err, out.String())
	}
}

func TestParseCounts(t *testing.T) {
	got, err := parseCounts([]string{"100=12", "50.00=3", "0.5=1"}, "CNY")
	if err != nil || len(got) != 3 || got[0].ValueMinor != 10000 || got[0].Count != 12 || got[1].ValueMinor != 5000 || got[2].ValueMinor != 50 {
		t.Fatalf("%+v %v", got, err)
	}
	for _, bad := range []string{"100", "100=-1", "x=1", "0.001=1", "-5=1"} {
		if _, err := parseCounts([]string{bad}, "CNY"); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestPinHash(t *testing.T) {
	var out bytes.Buffer
	if err := pinHash(strings.NewReader("482916\n"), &out); err != nil {
		t.Fatal(err)
	}
	h := strings.TrimSpace(out.String())
	if ok, err := svcmenu.VerifyPIN(h, "482916"); !ok || err != nil || !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q: %v %v", h, ok, err)
	}
	if err := pinHash(strings.NewReader("12ab\n"), &out); err == nil {
		t.Fatal("a PIN with letters was hashed")
	}
}
