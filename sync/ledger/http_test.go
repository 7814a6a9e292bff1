package ledger

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kioskd/kioskd/sync/wire"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// waitFor polls cond until it holds or the generous deadline fails the test: the fleet
// subscriptions are independent of each other, so there is no single event to wait on.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(wait)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func httpGet(t *testing.T, h http.Handler, path string, wantCode int, v any) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	if rec.Code != wantCode {
		t.Fatalf("GET %s: %d, want %d: %s", path, rec.Code, wantCode, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("GET %s: content type %q", path, ct)
	}
	if v != nil {
		if err := json.Unmarshal(rec.Body.Bytes(), v); err != nil {
			t.Fatalf("GET %s: %v: %s", path, err, rec.Body)
		}
	}
}

func TestFleetViewAndHTTPAPI(t *testing.T) {
	b := startBroker(t)
	store := openStore(t, "", nil)
	l, _ := runLedger(t, b, store, "ledger-1", func(c *Config) { c.HTTPAddr = "127.0.0.1:0" })
	k := newKiosk(t, b, "K1")

	at := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	if err := k.c.Publish(ctxT(t), wire.Topic("K1", wire.UpStatus), 1, true, mustJSON(t, wire.Status{V: 1, State: wire.StateOnline, Version: "1.2.3", At: at})); err != nil {
		t.Fatal(err)
	}
	k.publish(wire.UpHeartbeat, wire.Heartbeat{V: 1, OutboxDepth: 3, OldestUnackedS: 120, At: at})
	k.publish(wire.UpAlarm, wire.Alarm{V: 1, AlarmID: "a1", Kind: "door_open", Severity: wire.SeverityWarning, Actor: wire.ActorStaff, At: at})
	k.publish(wire.UpAlarm, wire.Alarm{V: 1, AlarmID: "a2", Kind: "jam", Severity: wire.SeverityCritical, Actor: wire.ActorEngineer, At: at})
	k.publish(wire.UpAlarm, wire.Alarm{V: 1, AlarmID: "a1", Kind: "door_open", Cleared: true, At: at})
	k.publish(wire.UpCmdResult, wire.CmdResult{V: 1, CmdID: "c1", Status: "succeeded"})
	tp := topup("K1", 0xfeed, 1, "alice_01", 15000)
	tp.Uncertain = []wire.Uncertain{{ValueMinor: 5000, Reason: "power_cut_in_stacker"}}
	ack := k.topup(tp, wire.AckCredited)

	var view KioskView
	waitFor(t, "the fleet view", func() bool {
		ks, err := l.Kiosks()
		if err != nil || len(ks) != 1 {
			return false
		}
		view = ks[0]
		return view.Status != nil && view.Heartbeat != nil && len(view.CmdResults) == 1 &&
			len(view.Alarms) == 1 && view.Alarms[0].AlarmID == "a2"
	})
	if view.Status.State != wire.StateOnline || view.OutboxDepth != 3 || view.OldestUnackedS != 120 ||
		len(view.Epochs) != 1 || view.Epochs[0].Watermark != 1 || view.Epochs[0].Epoch != 0xfeed {
		t.Errorf("view %+v", view)
	}

	h := l.Handler()
	var acct AccountInfo
	httpGet(t, h, "/api/accounts/alice_01", 200, &acct)
	if acct.Balances["CNY"] != 15000 || len(acct.Topups) != 1 || acct.Topups[0].LedgerRef != ack.LedgerRef {
		t.Errorf("account %+v", acct)
	}
	var rec map[string]any
	httpGet(t, h, "/api/topups/"+tp.TopupID, 200, &rec)
	if rec["ledger_ref"] != ack.LedgerRef || rec["epoch"] != "000000000000feed" || rec["amount_minor"] != 15000.0 {
		t.Errorf("topup %v", rec)
	}
	var kiosks []map[string]any
	httpGet(t, h, "/api/kiosks", 200, &kiosks)
	if len(kiosks) != 1 || kiosks[0]["kiosk_id"] != "K1" || kiosks[0]["outbox_depth"] != 3.0 {
		t.Errorf("kiosks %v", kiosks)
	}
	var sus []SuspenseRecord
	httpGet(t, h, "/api/suspense", 200, &sus)
	if len(sus) != 1 || sus[0].ValueMinor != 5000 {
		t.Errorf("suspense %+v", sus)
	}
	var st map[string]any
	httpGet(t, h, "/api/stats", 200, &st)
	if st["credited"] != 1.0 || st["rejected_payloads"] != 0.0 || st["bad_topics"] != 0.0 {
		t.Errorf("stats %v", st)
	}
	var health map[string]any
	httpGet(t, h, "/healthz", 200, &health)
	if health["status"] != "ok" || health["mqtt_connected"] != true {
		t.Errorf("healthz %v", health)
	}
	httpGet(t, h, "/api/accounts/nobody", 404, nil)
	httpGet(t, h, "/api/accounts/bad%20id", 400, nil)
	httpGet(t, h, "/api/topups/K1-0000000000000001-99", 404, nil)
	httpGet(t, h, "/api/topups/garbage", 400, nil)

	// The real server Run started, and its fleet page.
	resp, err := http.Get("http://" + l.HTTPAddr() + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "K1") || !strings.Contains(string(body), "jam") ||
		!strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Errorf("fleet page %d: %s", resp.StatusCode, body)
	}
	resp, err = http.Post("http://"+l.HTTPAddr()+"/api/stats", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", resp.StatusCode)
	}
}

func TestStatusOrderingAndWill(t *testing.T) {
	f := newFleet()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.status("K1", wire.Status{V: 1, State: wire.StateDegraded, At: at.Add(time.Minute)}, at)
	f.status("K1", wire.Status{V: 1, State: wire.StateOnline, At: at}, at) // older, late
	if got := f.kiosks["K1"].status.State; got != wire.StateDegraded {
		t.Errorf("older status won: %s", got)
	}
	f.status("K1", wire.Status{V: 1, State: wire.StateOffline}, at) // the Last Will has no time
	if got := f.kiosks["K1"].status.State; got != wire.StateOffline {
		t.Errorf("will ignored: %s", got)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFleetPageGolden(t *testing.T) {
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	page := fleetPage{
		Now: now, Refresh: 5, KID: "ledger-2026",
		Stats: Stats{Credited: 12, Duplicates: 3, Conflicts: 1, Rejected: 2, BadTopics: 1, MQTTConnected: true},
		Kiosks: []KioskView{
			{
				KioskID: "K-0001", Status: &wire.Status{V: 1, State: wire.StateOnline, Version: "1.0.0"},
				LastHeartbeatAt: now.Add(-12 * time.Second), OutboxDepth: 2, OldestUnackedS: 40,
				Alarms: []wire.Alarm{{AlarmID: "a", Kind: "printer_paper_low", Severity: wire.SeverityWarning, Actor: wire.ActorStaff}},
				Epochs: []EpochInfo{{Epoch: 0xdeadbeef, Watermark: 41, Above: []uint64{43, 44}}},
			},
			{KioskID: "K-0002", Status: &wire.Status{V: 1, State: wire.StateOffline}, LastHeartbeatAt: now.Add(-3 * time.Hour), Alarms: []wire.Alarm{}},
			{KioskID: "K-<script>", Alarms: []wire.Alarm{}}, // escaped, never executed
		},
	}
	var buf bytes.Buffer
	if err := renderFleet(&buf, page); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "fleet.golden")
	if *update {
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("fleet page differs from %s (run with -update after checking):\n%s", golden, buf.String())
	}
	if strings.Contains(buf.String(), "<script>") {
		t.Error("kiosk id not escaped")
	}

	var empty bytes.Buffer
	if err := renderFleet(&empty, fleetPage{Now: now, Refresh: 5}); err != nil || !strings.Contains(empty.String(), "No kiosk has reported yet") {
		t.Errorf("empty page: %v", err)
	}
}

func TestAgo(t *testing.T) {
	now := time.Date(2026, 1, 3, 0, 0, 0, 0, time.UTC)
	for d, want := range map[time.Duration]string{-time.Second: "0s", 5 * time.Second: "5s", 3 * time.Minute: "3m", 5 * time.Hour: "5h", 72 * time.Hour: "3d"} {
		if got := ago(now, now.Add(-d)); got != want {
			t.Errorf("ago(%v) = %s, want %s", d, got, want)
		}
	}
	if ago(now, time.Time{}) != "never" {
		t.Error("zero time")
	}
}
