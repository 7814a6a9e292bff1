package fleet

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kioskd/kioskd/sync/wire"
)

const secret = "correct-horse-battery-staple"

type webRig struct {
	*rig
	srv    *httptest.Server
	ledger *httptest.Server
}

// fakeLedger answers /api/kiosks and /api/topups/{id} the way sync/ledger/http.go does.
func fakeLedger(t *testing.T) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/kiosks", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, `[{"kiosk_id":"K1","alarms":[],"epochs":[{"epoch":"00000000000000aa","watermark":3,"topups":3,"last_credit_at":"2026-12-01T07:00:00Z"}]}]`)
	})
	mux.HandleFunc("GET /api/topups/{id}", func(w http.ResponseWriter, r *http.Request) {
		k, _, seq, err := wire.ParseTopupID(r.PathValue("id"))
		if err != nil || k != "K1" || seq == 2 {
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":"not found"}`)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"topup_id": r.PathValue("id"), "seq": seq, "account": "demo_alice", "currency": "CNY",
			"amount_minor": 15000 * seq, "outcome": "complete", "receipt_no": 100 + seq, "credited_at": "2026-12-01T07:00:00Z", "ledger_ref": "LR1"})
	})
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

func newWebRig(t *testing.T) *webRig {
	r := newRig(t)
	w := &webRig{rig: r, ledger: fakeLedger(t)}
	h, err := r.f.Handler(WebConfig{Operators: Operators{"alice": secret}, Ledger: &LedgerClient{Base: w.ledger.URL}, Refresh: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	w.srv = httptest.NewServer(h)
	t.Cleanup(w.srv.Close)
	return w
}

func (w *webRig) do(method, path string, form url.Values, auth bool) (int, string) {
	w.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, w.srv.URL+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if auth {
		req.SetBasicAuth("alice", secret)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusSeeOther {
		return resp.StatusCode, resp.Header.Get("Location")
	}
	return resp.StatusCode, string(b)
}

var csrfRe = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

func (w *webRig) seed() {
	now := w.clk.Now()
	w.send("K1", wire.UpStatus, wire.Status{V: 1, State: wire.StateDegraded, At: now, Reason: "printer_paper_out",
		Conditions: []wire.Condition{{Kind: "printer_paper_out", Severity: wire.SeverityWarning, Actor: wire.ActorStaff, Detail: "refill paper"}}})
	w.send("K1", wire.UpHeartbeat, wire.Heartbeat{V: 1, SessionState: "idle", OutboxDepth: 2, OldestUnackedS: 90, UncertainCount: 1,
		Cassette: &wire.Cassette{Notes: 450, Capacity: 1000, FillRatio: 0.45, ValueMinor: 2_250_000}, Clock: now,
		DeviceList: []wire.Device{{Name: "acceptor", State: "ok", Model: "iVIZION", Firmware: "1.2"}}, Counters: map[string]uint64{"qr_refused": 2},
		Limits: &wire.Limits{Version: 3, SessionMaxMinor: 150000, OfflineSessionMaxMinor: 50000, OfflineTotalMaxMinor: 100000}})
	w.send("K-<script>", wire.UpStatus, wire.Status{V: 1, State: wire.StateOnline}) // refused: not a kiosk id
}

func TestPagesRenderAndAuth(t *testing.T) {
	w := newWebRig(t)
	w.seed()
	if code, _ := w.do("GET", "/", nil, false); code != http.StatusUnauthorized {
		t.Errorf("no login: %d", code)
	}
	req, _ := http.NewRequest("GET", w.srv.URL+"/api/overview", nil)
	req.Header.Set("Authorization", "Bearer "+secret)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Errorf("bearer: %v %v", resp, err)
	} else {
		var o Overview
		json.NewDecoder(resp.Body).Decode(&o)
		resp.Body.Close()
		if o.Total != 1 || len(o.NeedsStaff) != 1 {
			t.Errorf("api overview %+v", o)
		}
	}
	req.Header.Set("Authorization", "Bearer wrong-secret-wrong-secret")
	if resp, _ := http.DefaultClient.Do(req); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong bearer: %d", resp.StatusCode)
	}

	code, page := w.do("GET", "/", nil, true)
	if code != 200 {
		t.Fatalf("overview %d %s", code, page)
	}
	for _, want := range []string{`id="count-degraded">1<`, `id="needs-staff">1<`, `href="/kiosk/K1"`, "printer_paper_out", `name="viewport"`} {
		if !strings.Contains(page, want) {
			t.Errorf("overview lacks %q", want)
		}
	}
	code, page = w.do("GET", "/kiosk/K1", nil, true)
	if code != 200 {
		t.Fatalf("kiosk %d %s", code, page)
	}
	for _, want := range []string{"refill paper", "<b>staff</b>", `id="fill">45%<`, "iVIZION", "qr_refused 2", `id="uncertain" class="critical">1<`,
		"de***ce", "450.00 CNY", "103", "Acknowledge", `option value="reprint"`, `id="limits">1500.00<`, "version 3"} {
		if !strings.Contains(page, want) {
			t.Errorf("kiosk page lacks %q", want)
		}
	}
	if strings.Contains(page, "demo_alice") {
		t.Error("the kiosk page shows an unmasked account")
	}
	if code, part := w.do("GET", "/kiosk/K1?partial=1", nil, true); code != 200 || strings.Contains(part, "<html") || !strings.Contains(part, "refill paper") {
		t.Errorf("live fragment %d", code)
	}
	if code, _ := w.do("GET", "/kiosk/NOPE", nil, true); code != http.StatusNotFound {
		t.Errorf("unknown kiosk %d", code)
	}
	if code, _ := w.do("GET", "/kiosk/K%2B1", nil, true); code != http.StatusBadRequest {
		t.Errorf("bad kiosk id %d", code)
	}
}

func TestAcknowledgeAndCommandThroughPages(t *testing.T) {
	w := newWebRig(t)
	w.seed()
	_, page := w.do("GET", "/kiosk/K1", nil, true)
	m := csrfRe.FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no csrf token on the page")
	}
	tok := m[1]
	if code, _ := w.do("POST", "/kiosk/K1/ack", url.Values{"csrf": {"forged"}, "alarm_id": {"cond:printer_paper_out"}}, true); code != http.StatusForbidden {
		t.Errorf("forged ack: %d", code)
	}
	code, loc := w.do("POST", "/kiosk/K1/ack", url.Values{"csrf": {tok}, "alarm_id": {"cond:printer_paper_out"}}, true)
	if code != http.StatusSeeOther || !strings.HasPrefix(loc, "/kiosk/K1?flash=") {
		t.Fatalf("ack: %d %s", code, loc)
	}
	if a := w.alarm("K1", "cond:printer_paper_out"); a.AckedBy != "alice" {
		t.Errorf("acknowledged by %q", a.AckedBy)
	}
	_, page = w.do("GET", "/kiosk/K1", nil, true)
	if !strings.Contains(page, "alice, 0s ago") {
		t.Error("the page does not show who acknowledged")
	}

	// Review, then confirm.
	code, page = w.do("POST", "/kiosk/K1/command", url.Values{"csrf": {tok}, "kind": {"reprint"}, "receipt_no": {"118"}}, true)
	if code != 200 || !strings.Contains(page, `id="confirm"`) || len(w.pub.msgs) != 0 {
		t.Fatalf("review: %d, %d published", code, len(w.pub.msgs))
	}
	if code, _ := w.do("POST", "/kiosk/K1/command", url.Values{"csrf": {tok}, "kind": {"reprint"}, "args": {`{"receipt_no":0}`}}, true); code != http.StatusBadRequest {
		t.Errorf("bad args: %d", code)
	}
	code, loc = w.do("POST", "/kiosk/K1/command", url.Values{"csrf": {tok}, "kind": {"reprint"}, "args": {`{"receipt_no":118}`}, "confirm": {"yes"}}, true)
	if code != http.StatusSeeOther || !strings.Contains(loc, "sent+reprint") || len(w.pub.msgs) != 1 {
		t.Fatalf("send: %d %s, %d published", code, loc, len(w.pub.msgs))
	}
	var cmd wire.Command
	if _, err := (wire.Keyring{"ops-1": w.opsPK}).Open(w.pub.msgs[0].payload, &cmd); err != nil || string(cmd.Args) != `{"receipt_no":118}` {
		t.Fatalf("sent command: %v %s", err, cmd.Args)
	}
	w.send("K1", wire.UpCmdResult, wire.CmdResult{V: 1, CmdID: cmd.CmdID, Status: wire.CmdFailed, Reason: "printer_paper_out"})
	_, page = w.do("GET", "/kiosk/K1", nil, true)
	if !strings.Contains(page, "failed: printer_paper_out") {
		t.Error("the page does not show the command result")
	}
}

func TestMetricsScrape(t *testing.T) {
	w := newWebRig(t)
	w.seed()
	w.clk.Add(30 * time.Second)
	code, body := w.do("GET", "/metrics", nil, false)
	if code != 200 {
		t.Fatalf("metrics %d", code)
	}
	for _, want := range []string{
		`fleetd_kiosk_up{kiosk="K1"} 1`,
		`fleetd_kiosk_state{kiosk="K1",state="degraded"} 1`,
		`fleetd_kiosk_heartbeat_age_seconds{kiosk="K1"} 30`,
		`fleetd_kiosk_cassette_fill_ratio{kiosk="K1"} 0.45`,
		`fleetd_kiosk_outbox_oldest_unacked_seconds{kiosk="K1"} 90`,
		`fleetd_kiosk_uncertain_items{kiosk="K1"} 1`,
		`fleetd_alarms_open{acknowledged="false",actor="staff",kiosk="K1",severity="warning"} 1`,
		`fleetd_messages_total{result="ok",topic="status"} 1`,
		`fleetd_messages_total{result="bad_topic",topic="unknown"} 1`,
		`fleetd_build_info{`,
		`# TYPE fleetd_messages_total counter`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if n, err := testutil.GatherAndCount(w.f.Registry(), "fleetd_kiosk_state"); err != nil || n != len(States) {
		t.Errorf("state series %d %v", n, err)
	}
	if probs, err := testutil.GatherAndLint(w.f.Registry()); err != nil || len(probs) > 0 {
		t.Errorf("metric lint: %v %+v", err, probs)
	}
}

// TestBearerAPIAcknowledge: a script with a bearer token acknowledges without a form token.
func TestBearerAPIAcknowledge(t *testing.T) {
	w := newWebRig(t)
	w.seed()
	req, _ := http.NewRequest("POST", w.srv.URL+"/kiosk/K1/ack", strings.NewReader("alarm_id=cond%3Aprinter_paper_out"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+secret)
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("%v %v", resp, err)
	}
	resp.Body.Close()
	if a := w.alarm("K1", "cond:printer_paper_out"); a.AckedBy != "alice" {
		t.Errorf("acknowledged by %q", a.AckedBy)
	}
	// An alarm id with a slash (the kiosk chooses its ids) is acknowledged from the page too.
	w.send("K1", wire.UpAlarm, wire.Alarm{V: 1, AlarmID: "door/1", Kind: "door_open", Severity: wire.SeverityWarning, Actor: wire.ActorStaff})
	_, page := w.do("GET", "/kiosk/K1", nil, true)
	if !strings.Contains(page, `name="alarm_id" value="door/1"`) {
		t.Fatal("no acknowledge form for door/1")
	}
	tok := csrfRe.FindStringSubmatch(page)[1]
	if code, _ := w.do("POST", "/kiosk/K1/ack", url.Values{"csrf": {tok}, "alarm_id": {"door/1"}}, true); code != http.StatusSeeOther {
		t.Errorf("ack door/1: %d", code)
	}
	if a := w.alarm("K1", "door/1"); a.AckedBy != "alice" {
		t.Errorf("door/1 acknowledged by %q", a.AckedBy)
	}
	if code, _ := w.do("POST", "/kiosk/K1/ack", url.Values{"csrf": {tok}, "alarm_id": {"nope"}}, true); code != http.StatusNotFound {
		t.Errorf("ack of an unknown alarm: %d", code)
	}
}
