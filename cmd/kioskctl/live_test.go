package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kioskd/kioskd/kiosk/ctl"
	"github.com/kioskd/kioskd/kiosk/ctl/ctltest"
	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/kiosk/session"
)

func kioskctl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := run(args, &out)
	return out.String(), err
}

func TestLiveStatusAndJSON(t *testing.T) {
	f := ctltest.NewFake()
	f.St.Currency = "CNY"
	f.St.Engine = session.Status{State: "accepting", Degraded: []string{"printer_paper_out"},
		Session: &session.SessionSummary{ID: 4, AccountMasked: "****5678", TotalMinor: 5000, LimitMinor: 200000}}
	f.St.Journal = &journal.Stats{Events: 42, OutboxDepth: 1, OutboxMinor: 5000, Head: "00112233445566778899"}
	sock := ctltest.Serve(t, f, ctltest.Self())
	out, err := kioskctl(t, "status", "-socket", sock)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"kiosk K-FAKE", "state: accepting", "degraded: printer_paper_out", "session: #4 account ****5678, 50.00 CNY inserted", "journal: 42 events", "outbox: 1 top-ups waiting (50.00 CNY)"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	out, err = kioskctl(t, "status", "-json", "-socket", sock)
	var st ctl.Status
	if err != nil || json.Unmarshal([]byte(out), &st) != nil || st.Engine.Session.TotalMinor != 5000 {
		t.Fatalf("status -json: %v %q", err, out)
	}
}

func TestLiveListings(t *testing.T) {
	f := ctltest.NewFake()
	f.Conds = []health.Condition{{Kind: "acceptor_jam", Severity: health.Critical, Effect: health.StopsService, Actor: health.Engineer, Detail: "note jammed"}}
	f.Cassette = ctl.Counters{Currency: "CNY", Notes: 3, ValueMinor: 12000, ByValue: []ctl.DenominationRow{{ValueMinor: 1000, Count: 2, TotalMinor: 2000}, {ValueMinor: 10000, Count: 1, TotalMinor: 10000}}}
	f.Pending = []journal.Topup{{TopupID: "T-1", ReceiptNo: 9, AccountMask: "****1", AmountMinor: 500, Currency: "CNY", State: "pending", ClosedAt: time.Now().Add(-time.Hour)}}
	f.Uncertains = []journal.Uncertain{{ID: 17, SessionID: 3, ValueMinor: 5000, Reason: "power lost with a note in transit"}}
	f.Receipts[9] = ctl.Receipt{Topup: f.Pending[0], Text: "RECEIPT TEXT 9\n"}
	sock := ctltest.Serve(t, f, ctltest.Self())
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"conditions"}, []string{"acceptor_jam", "stops service", "note jammed"}},
		{[]string{"devices"}, []string{"acceptor", "scanner", "not configured"}},
		{[]string{"counters"}, []string{"10.00 CNY", "100.00 CNY", "120.00 CNY"}},
		{[]string{"outbox"}, []string{"T-1", "5.00 CNY", "1h0m"}},
		{[]string{"uncertain"}, []string{"17", "power lost"}},
		{[]string{"receipt", "9"}, []string{"receipt 9", "RECEIPT TEXT 9"}},
		{[]string{"reprint", "9"}, []string{"COPY of receipt 9"}},
	} {
		out, err := kioskctl(t, append(c.args, "-socket", sock)...)
		if err != nil {
			t.Errorf("%v: %v", c.args, err)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("%v lacks %q:\n%s", c.args, w, out)
			}
		}
	}
	if r := f.Reprints(); len(r) != 1 || r[0] != 9 {
		t.Fatalf("reprinted %v", r)
	}
	if _, err := kioskctl(t, "receipt", "8", "-socket", sock); err == nil || !strings.Contains(err.Error(), "receipt 8") {
		t.Fatalf("missing receipt: %v", err)
	}
	f.SetReprintErr(fmt.Errorf("%w: reprint in accepting", session.ErrBusy))
	if _, err := kioskctl(t, "reprint", "9", "-socket", sock); err == nil || !strings.Contains(err.Error(), "no customer is in session") {
		t.Fatalf("reprint during a session: %v", err)
	}
	if _, err := kioskctl(t, "reprint", "abc", "-socket", sock); err == nil || !strings.Contains(err.Error(), "positive integer") {
		t.Fatalf("bad number: %v", err)
	}
}

func TestLiveMaintenanceShowsProgress(t *testing.T) {
	f := ctltest.NewFake()
	f.Busy = true
	sock := ctltest.Serve(t, f, ctltest.Self())
	// The customer finishes once kioskctl said it waits: the writer releases the fake.
	w := &releaseOnWrite{f: f}
	if err := run([]string{"maintenance", "on", "-socket", sock}, w); err != nil {
		t.Fatal(err)
	}
	out := w.b.String()
	if !strings.Contains(out, "waiting for the customer to finish") || !strings.Contains(out, "maintenance on") {
		t.Fatalf("output:\n%s", out)
	}
	out, err := kioskctl(t, "maintenance", "off", "-socket", sock)
	if err != nil || !strings.Contains(out, "maintenance off") {
		t.Fatalf("off: %v %s", err, out)
	}
	if _, err := kioskctl(t, "maintenance", "maybe", "-socket", sock); err == nil {
		t.Fatal("maintenance maybe: no error")
	}
}

type releaseOnWrite struct {
	f    *ctltest.Fake
	b    bytes.Buffer
	done bool
}

func (r *releaseOnWrite) Write(p []byte) (int, error) {
	if !r.done && strings.Contains(string(p), "waiting") {
		r.done = true
		r.f.Release()
	}
	return r.b.Write(p)
}

func TestNotRunningError(t *testing.T) {
	dir := ctltest.ShortDir(t)
	sock := filepath.Join(dir, "kioskd.sock")
	_, err := kioskctl(t, "status", "-socket", sock)
	if err == nil || err.Error() != "kioskd is not running (no socket at "+sock+")" {
		t.Fatalf("not running: %v", err)
	}
	// journal verify falls back to the file when kioskd does not answer.
	t.Setenv("KIOSKD_SOCKET", sock)
	if _, err := kioskctl(t, "journal", "verify"); err == nil || strings.Contains(err.Error(), "kioskd is not running") {
		t.Fatalf("offline verify of the default path: %v", err)
	}
}

func TestLiveJournal(t *testing.T) {
	f := ctltest.NewFake()
	f.Events = []journal.Record{{Seq: 1, Type: journal.EvJournalCreated}, {Seq: 2, Type: journal.EvBoot}, {Seq: 3, Type: journal.EvBoot}}
	sock := ctltest.Serve(t, f, ctltest.Self())
	out, err := kioskctl(t, "journal", "verify", "-socket", sock)
	if err != nil || !strings.HasPrefix(out, "OK live journal") || !strings.Contains(out, "3 events") {
		t.Fatalf("verify: %v %q", err, out)
	}
	out, err = kioskctl(t, "journal", "export", "-socket", sock)
	if err != nil || strings.Count(out, "\n") != 3 {
		t.Fatalf("export: %v %q", err, out)
	}
}

func TestDiagBundleHasNoSecrets(t *testing.T) {
	dir := t.TempDir()
	const password, fixedKey = "pa55-w0rd-SECRET", "0123456789abcdef"
	pwFile, keyFile := filepath.Join(dir, "mqtt.pw"), filepath.Join(dir, "ssp.key")
	os.WriteFile(pwFile, []byte(password), 0o600)
	os.WriteFile(keyFile, []byte(fixedKey), 0o600)
	f := ctltest.NewFake()
	f.Events = []journal.Record{{Seq: 1, Type: journal.EvJournalCreated}}
	f.Config = map[string]any{"mqtt": map[string]any{"password_file": pwFile, "broker": "ssl://kiosk:" + password + "@broker:8883"},
		"acceptor": map[string]any{"ssp": map[string]any{"fixed_key_file": keyFile}}, "wallet": map[string]any{"keys": map[string]any{"w1": fixedKey}}}
	sock := ctltest.Serve(t, f, ctltest.Self())
	old := logCommand
	logCommand = []string{"echo", "kioskd log line"}
	defer func() { logCommand = old }()
	bundle := filepath.Join(dir, "diag.tar.gz")
	out, err := kioskctl(t, "diag", "bundle", "-o", bundle, "-socket", sock)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "wrote "+bundle) {
		t.Fatalf("output %q", out)
	}
	files := readTarGz(t, bundle)
	for _, name := range []string{"status.json", "config.redacted.json", "journal.jsonl", "versions.json", "kioskd.log", "README.txt"} {
		if _, ok := files[name]; !ok {
			t.Errorf("bundle lacks %s (has %v)", name, keys(files))
		}
	}
	for name, data := range files {
		if strings.Contains(data, password) || strings.Contains(data, fixedKey) {
			t.Errorf("secret in %s:\n%s", name, data)
		}
	}
	if !strings.Contains(files["config.redacted.json"], pwFile) || !strings.Contains(files["config.redacted.json"], keyFile) {
		t.Errorf("key file paths missing from the config:\n%s", files["config.redacted.json"])
	}
	if !strings.Contains(files["kioskd.log"], "kioskd log line") {
		t.Errorf("log: %q", files["kioskd.log"])
	}
	// An existing file is not overwritten.
	if _, err := kioskctl(t, "diag", "bundle", "-o", bundle, "-socket", sock); err == nil {
		t.Fatal("bundle overwrote an existing file")
	}
}

func readTarGz(t *testing.T, path string) map[string]string {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	gz, err := gzip.NewReader(fh)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	files := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		files[h.Name] = string(b)
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestLiveSelfTestsAndSignoff(t *testing.T) {
	f := ctltest.NewFake()
	f.Tests = map[string]ctl.SelfTest{
		"acceptor": {Device: "acceptor", OK: true, Items: []ctl.TestItem{{Name: "firmware", Value: "UBA-10 1.23"}, {Name: "denominations (configured)", Value: "97=1.00 CNY"}}},
		"sensors":  {Device: "sensors", OK: false, Items: []ctl.TestItem{{Name: "cabinet_door", Value: "open"}, {Name: "tamper", Value: "not read (pin unavailable)"}}, Error: "a sensor could not be read"},
	}
	f.Conds = []health.Condition{{Kind: session.SignoffFraud, Detail: "cheat"}}
	sock := ctltest.Serve(t, f, ctltest.Self())
	out, err := kioskctl(t, "selftest", "acceptor", "-socket", sock)
	if err != nil || !strings.Contains(out, "firmware:") || !strings.Contains(out, "UBA-10 1.23") || !strings.Contains(out, "acceptor self-test: OK") {
		t.Fatalf("acceptor: %v\n%s", err, out)
	}
	out, err = kioskctl(t, "selftest", "sensors", "-socket", sock)
	if err == nil || !strings.Contains(out, "cabinet_door:") || !strings.Contains(out, "FAILED: a sensor could not be read") {
		t.Fatalf("sensors: %v\n%s", err, out)
	}
	if _, err := kioskctl(t, "selftest", "scanner", "-socket", sock); err == nil || !strings.Contains(err.Error(), "not available") {
		t.Fatalf("scanner on a kiosk without one: %v", err)
	}
	if _, err := kioskctl(t, "selftest", "coffee", "-socket", sock); err == nil || !strings.Contains(err.Error(), "no self-test") {
		t.Fatalf("unknown device: %v", err)
	}
	if _, err := kioskctl(t, "signoff", session.SignoffFraud, "-socket", sock); err == nil || !strings.Contains(err.Error(), "-why") {
		t.Fatalf("signoff without why: %v", err)
	}
	out, err = kioskctl(t, "signoff", session.SignoffFraud, "-why", "inspected the bezel", "-who", "alice", "-socket", sock)
	if err != nil || !strings.Contains(out, "acceptor_fraud signed off by kioskctl uid") || !strings.Contains(out, "(alice)") {
		t.Fatalf("signoff: %v\n%s", err, out)
	}
	if len(f.SignedOff) != 1 || !strings.HasSuffix(f.SignedOff[0], "(alice)|inspected the bezel") {
		t.Fatalf("signed off %v", f.SignedOff)
	}
	if _, err := kioskctl(t, "signoff", session.SignoffFraud, "-why", "again", "-socket", sock); err == nil || !strings.Contains(err.Error(), "no such condition") {
		t.Fatalf("second signoff: %v", err)
	}
}
