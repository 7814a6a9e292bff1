package svcmenu

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kioskd/kioskd/kiosk/ctl"
	"github.com/kioskd/kioskd/kiosk/ctl/ctltest"
	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/i18n"
	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/kiosk/session"
)

// testParams are cheap argon2id parameters: the tests hash many PINs, under -race too. The
// production parameters are exercised once (TestDefaultParams).
var testParams = Params{Memory: 64, Time: 1, Threads: 1}

func mustHash(t testing.TB, pin string) string {
	t.Helper()
	h, err := HashPIN(pin, testParams)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestPINHashes(t *testing.T) {
	h := mustHash(t, "2468")
	if !strings.HasPrefix(h, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Fatalf("hash %q", h)
	}
	if h2 := mustHash(t, "2468"); h2 == h {
		t.Fatal("two hashes of one PIN are equal: no salt")
	}
	for pin, want := range map[string]bool{"2468": true, "2469": false, "24680": false, "": false} {
		ok, err := VerifyPIN(h, pin)
		if err != nil || ok != want {
			t.Errorf("verify %q: %v %v", pin, ok, err)
		}
	}
	if _, err := HashPIN("12a4", testParams); !errors.Is(err, ErrBadPIN) {
		t.Errorf("letters in a PIN: %v", err)
	}
	if _, err := HashPIN("123", testParams); !errors.Is(err, ErrBadPIN) {
		t.Errorf("short PIN: %v", err)
	}
	// Malformed hashes and costs beyond the board's limits match nothing and say why.
	for _, bad := range []string{"", "1234", "$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=1048576,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", "$argon2id$v=19$m=64,t=1$c2FsdHNhbHQ$aGFzaA",
		"$argon2id$v=19$m=64,t=1,p=1$!!$aGFzaGhhc2hoYXNoaGFzaA"} {
		if ok, err := VerifyPIN(bad, "1234"); ok || err == nil {
			t.Errorf("hash %q: %v %v", bad, ok, err)
		}
	}
}

// TestDefaultParams: the production parameters make a hash that verifies, and say what they
// cost here.
func TestDefaultParams(t *testing.T) {
	start := time.Now()
	h, err := HashPIN("135790", DefaultParams)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if !strings.Contains(h, "$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q", h)
	}
	if ok, err := VerifyPIN(h, "135790"); !ok || err != nil {
		t.Fatalf("verify: %v %v", ok, err)
	}
	t.Logf("argon2id m=19456 KiB t=2 p=1: %v per hash on this machine", took)
}

func TestLockoutDoubles(t *testing.T) {
	want := map[int]time.Duration{1: 0, 2: 0, 3: 30 * time.Second, 4: time.Minute, 5: 2 * time.Minute, 9: 32 * time.Minute, 10: MaxLock, 20: MaxLock}
	for n, d := range want {
		if got := lockFor(n); got != d {
			t.Errorf("lockFor(%d) = %v, want %v", n, got, d)
		}
	}
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// memCreds is an in-memory Credentials.
type memCreds struct {
	mu sync.Mutex
	m  map[string]string
	by map[string]string
}

func (c *memCreds) PINHashes() (map[string]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]string{}
	for k, v := range c.m {
		out[k] = v
	}
	return out, nil
}

func (c *memCreds) SetPINHash(key, hash, who string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[key] = hash
	c.by[key] = who
	return nil
}

// auditLog records the audit events.
type auditLog struct {
	mu  sync.Mutex
	evs []journal.ServiceActionEvent
}

func (a *auditLog) AuditService(e journal.ServiceActionEvent) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.evs = append(a.evs, e)
	return nil
}

func (a *auditLog) lines() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, e := range a.evs {
		out = append(out, e.Who+" "+e.Action+" "+e.Result)
	}
	return out
}

// menu is a service menu under test over HTTP.
type menu struct {
	t     *testing.T
	srv   *httptest.Server
	clk   *clock
	creds *memCreds
	audit *auditLog
	fake  *ctltest.Fake
	door  *boolFlag
	token string
}

type boolFlag struct {
	mu sync.Mutex
	v  bool
}

func (b *boolFlag) get() bool  { b.mu.Lock(); defer b.mu.Unlock(); return b.v }
func (b *boolFlag) set(v bool) { b.mu.Lock(); b.v = v; b.mu.Unlock() }

// PINs of the test kiosk.
const (
	collectorPIN = "1111"
	techPIN      = "2222"
	tech2PIN     = "2323"
	adminPIN     = "3333"
)

func newMenu(t *testing.T) *menu {
	m := &menu{t: t, clk: &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}, audit: &auditLog{}, fake: ctltest.NewFake(), door: &boolFlag{v: true}, token: "tok"}
	m.creds = &memCreds{m: map[string]string{"collector": mustHash(t, collectorPIN), "technician": mustHash(t, techPIN),
		"technician_2": mustHash(t, tech2PIN), "admin": mustHash(t, adminPIN)}, by: map[string]string{}}
	m.fake.Cassette = ctl.Counters{Currency: "CNY", Notes: 3, ValueMinor: 12000, ByValue: []ctl.DenominationRow{{ValueMinor: 1000, Count: 2, TotalMinor: 2000}, {ValueMinor: 10000, Count: 1, TotalMinor: 10000}}}
	m.fake.Receipts[7] = ctl.Receipt{Text: "R7"}
	m.fake.Tests = map[string]ctl.SelfTest{"sensors": {Device: "sensors", OK: true, Items: []ctl.TestItem{{Name: "cabinet_door", Value: "open"}}}}
	m.fake.Conds = []health.Condition{{Kind: session.SignoffFraud, Detail: "cheat attempt"}, {Kind: "printer_paper_out"}}
	h, err := Handler(Config{Backend: m.fake, Credentials: m.creds, Audit: m.audit, Now: m.clk.now, Token: m.token, Params: testParams,
		DoorOpen: m.door.get})
	if err != nil {
		t.Fatal(err)
	}
	m.srv = httptest.NewServer(h)
	t.Cleanup(m.srv.Close)
	return m
}

// post sends a POST as the page does; it returns the status and the decoded body.
func (m *menu) post(path, login string, body any) (int, map[string]any) {
	m.t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", m.srv.URL+path, strings.NewReader(string(b)))
	req.Header.Set("Origin", m.srv.URL)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set(TokenHeader, m.token)
	if login != "" {
		req.Header.Set(LoginHeader, login)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		m.t.Fatal(err)
	}
	defer res.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(res.Body).Decode(&out)
	return res.StatusCode, out
}

func (m *menu) login(role, pin string) (int, string) {
	m.t.Helper()
	code, out := m.post("/api/login?lang=en", "", map[string]string{"role": role, "pin": pin})
	tok, _ := out["login"].(string)
	if code != 200 {
		tok, _ = out["message"].(string)
	}
	return code, tok
}

func (m *menu) state(login string) State {
	m.t.Helper()
	req, _ := http.NewRequest("GET", m.srv.URL+"/api/state", nil)
	req.Header.Set(LoginHeader, login)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		m.t.Fatal(err)
	}
	defer res.Body.Close()
	var st State
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
		m.t.Fatal(err)
	}
	return st
}

func TestLoginLockoutAndIdle(t *testing.T) {
	m := newMenu(t)
	// The door closed: no login at all, not even a right PIN.
	m.door.set(false)
	if code, msg := m.login("technician", techPIN); code != http.StatusForbidden || msg != i18n.T(i18n.EN, KeyEntry) {
		t.Fatalf("door closed: %d %q", code, msg)
	}
	m.door.set(true)
	// Wrong PINs: two are free, the third locks for 30 s, then each doubles.
	for i := 1; i <= 2; i++ {
		if code, msg := m.login("technician", "9999"); code != http.StatusUnauthorized || msg != "Wrong PIN." {
			t.Fatalf("wrong PIN %d: %d %q", i, code, msg)
		}
	}
	if code, msg := m.login("technician", "9999"); code != http.StatusTooManyRequests || !strings.Contains(msg, "30 s") {
		t.Fatalf("third wrong PIN: %d %q", code, msg)
	}
	// Locked: even the right PIN is refused, and not counted.
	if code, _ := m.login("technician", techPIN); code != http.StatusTooManyRequests {
		t.Fatalf("right PIN while locked: %d", code)
	}
	m.clk.add(31 * time.Second)
	if code, msg := m.login("technician", "8888"); code != http.StatusTooManyRequests || !strings.Contains(msg, "60 s") {
		t.Fatalf("fourth wrong PIN: %d %q", code, msg)
	}
	st := m.state("")
	if !st.Locked || st.FailsTotal != 4 || st.RetryIn != 60 {
		t.Fatalf("state %+v", st)
	}
	m.clk.add(61 * time.Second)
	code, tok := m.login("technician", techPIN)
	if code != 200 {
		t.Fatalf("right PIN after the lockout: %d %q", code, tok)
	}
	st = m.state(tok)
	if !st.LoggedIn || st.Who != "technician/1" || st.Locked {
		t.Fatalf("logged in state %+v", st)
	}
	// One journal line per lockout, not one per wrong PIN.
	locks := 0
	for _, l := range m.audit.lines() {
		if strings.Contains(l, "login_locked") {
			locks++
		}
	}
	if locks != 2 {
		t.Fatalf("lockout events %d: %v", locks, m.audit.lines())
	}
	// Idle logout after 3 minutes without a touch; an action is a touch, polling is not.
	m.clk.add(2 * time.Minute)
	if code, _ := m.post("/api/action", tok, ActionRequest{Action: "status"}); code != 200 {
		t.Fatalf("status: %d", code)
	}
	m.clk.add(2*time.Minute + 59*time.Second)
	if !m.state(tok).LoggedIn {
		t.Fatal("logged out before 3 minutes idle")
	}
	m.clk.add(time.Second)
	if m.state(tok).LoggedIn {
		t.Fatal("still logged in after 3 minutes idle")
	}
	if code, out := m.post("/api/action", tok, ActionRequest{Action: "status"}); code != http.StatusUnauthorized {
		t.Fatalf("action after idle logout: %d %v", code, out)
	}
	lines := strings.Join(m.audit.lines(), "\n")
	if !strings.Contains(lines, "technician/1 login ok") || !strings.Contains(lines, "technician/1 logout ok") {
		t.Fatalf("audit:\n%s", lines)
	}
}

func TestRolesAndAudit(t *testing.T) {
	m := newMenu(t)
	_, col := m.login("collector", collectorPIN)
	st := m.state(col)
	if strings.Join(st.Actions, ",") != "status,conditions,counters,collection" {
		t.Fatalf("collector's actions %v", st.Actions)
	}
	if code, out := m.post("/api/action?lang=en", col, ActionRequest{Action: "counters"}); code != 200 || !strings.Contains(fmt.Sprint(out["rows"]), "¥120.00") {
		t.Fatalf("counters: %d %v", code, out)
	}
	if code, out := m.post("/api/action?lang=zh-CN", col, ActionRequest{Action: "maintenance_on"}); code != http.StatusForbidden || out["message"] != "您的角色无权执行此操作。" {
		t.Fatalf("collector maintenance: %d %v", code, out)
	}
	if code, out := m.post("/api/action?lang=en", col, ActionRequest{Action: "collection"}); code != 200 || out["message"] != "No cash collection in progress." {
		t.Fatalf("collection status: %d %v", code, out)
	}

	// A second technician's slot: the journal says which one acted.
	_, tech := m.login("technician", tech2PIN)
	if st := m.state(tech); st.Who != "technician/2" || len(st.Actions) != 13 {
		t.Fatalf("technician state %+v", st)
	}
	if m.state(col).LoggedIn {
		t.Fatal("the collector's login survived another login")
	}
	if code, out := m.post("/api/action?lang=en", tech, ActionRequest{Action: "reprint", ReceiptNo: 7}); code != 200 || !strings.Contains(fmt.Sprint(out["message"]), "COPY of receipt 00000007") {
		t.Fatalf("reprint: %d %v", code, out)
	}
	if r := m.fake.Reprints(); len(r) != 1 || r[0] != 7 {
		t.Fatalf("reprints %v", r)
	}
	if code, out := m.post("/api/action?lang=en", tech, ActionRequest{Action: "selftest_sensors"}); code != 200 || out["ok"] != true {
		t.Fatalf("sensors: %d %v", code, out)
	}
	// Sign-off: the list, then one with a reason from the list.
	code, out := m.post("/api/action?lang=en", tech, ActionRequest{Action: "signoff"})
	if code != 200 || fmt.Sprint(out["choices"]) != "[acceptor_fraud]" {
		t.Fatalf("signoff list: %d %v", code, out)
	}
	if code, _ := m.post("/api/action?lang=en", tech, ActionRequest{Action: "signoff", Condition: "acceptor_fraud", Why: "made up"}); code != http.StatusConflict {
		t.Fatalf("signoff with a free reason: %d", code)
	}
	if code, out := m.post("/api/action?lang=zh-CN", tech, ActionRequest{Action: "signoff", Condition: "acceptor_fraud", Why: string(KeyWhyInspected)}); code != 200 || out["ok"] != true {
		t.Fatalf("signoff: %d %v", code, out)
	}
	if want := "acceptor_fraud|technician/2|Inspected, no tampering found"; len(m.fake.SignedOff) != 1 || m.fake.SignedOff[0] != want {
		t.Fatalf("signed off %v", m.fake.SignedOff)
	}
	if code, _ := m.post("/api/action", tech, ActionRequest{Action: "set_pin", Role: "technician", Slot: 3, PIN: "4444"}); code != http.StatusForbidden {
		t.Fatalf("technician set_pin: %d", code)
	}

	// The admin sets a PIN; it works at once, and the journal has who set it.
	_, adm := m.login("admin", adminPIN)
	if code, out := m.post("/api/action?lang=en", adm, ActionRequest{Action: "set_pin", Role: "technician", Slot: 3, PIN: "12"}); code != http.StatusConflict {
		t.Fatalf("short PIN: %d %v", code, out)
	}
	if code, out := m.post("/api/action?lang=en", adm, ActionRequest{Action: "set_pin", Role: "technician", Slot: 3, PIN: "4444"}); code != 200 || out["message"] != "The PIN of technician/3 is set." {
		t.Fatalf("set_pin: %d %v", code, out)
	}
	if m.creds.by["technician_3"] != "admin/1" || !strings.HasPrefix(m.creds.m["technician_3"], "$argon2id$") {
		t.Fatalf("stored %q by %q", m.creds.m["technician_3"], m.creds.by["technician_3"])
	}
	if code, _ := m.login("technician", "4444"); code != 200 {
		t.Fatalf("new PIN: %d", code)
	}
	lines := strings.Join(m.audit.lines(), "\n")
	for _, want := range []string{"collector/1 counters ok", "collector/1 maintenance_on refused: role", "technician/2 reprint ok",
		"technician/2 signoff ok", "technician/2 set_pin refused: role", "admin/1 set_pin ok", "technician/3 login ok"} {
		if !strings.Contains(lines, want) {
			t.Errorf("audit lacks %q:\n%s", want, lines)
		}
	}
	if strings.Contains(lines, "4444") {
		t.Fatal("a PIN in the audit trail")
	}
}

// TestRequestRules: the customer screen's rules hold here too.
func TestRequestRules(t *testing.T) {
	m := newMenu(t)
	do := func(mut func(r *http.Request)) int {
		req, _ := http.NewRequest("POST", m.srv.URL+"/api/login", strings.NewReader(`{"role":"admin","pin":"3333"}`))
		req.Header.Set("Origin", m.srv.URL)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		req.Header.Set(TokenHeader, m.token)
		mut(req)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	for name, mut := range map[string]func(*http.Request){
		"foreign host":   func(r *http.Request) { r.Host = "evil.example:80" },
		"foreign origin": func(r *http.Request) { r.Header.Set("Origin", "http://evil.example") },
		"cross-site":     func(r *http.Request) { r.Header.Set("Sec-Fetch-Site", "cross-site") },
		"no token":       func(r *http.Request) { r.Header.Del(TokenHeader) },
	} {
		if code := do(mut); code != http.StatusForbidden {
			t.Errorf("%s: %d", name, code)
		}
	}
	if code := do(func(*http.Request) {}); code != 200 {
		t.Fatalf("the page's own request: %d", code)
	}
	if len(m.audit.lines()) != 1 {
		t.Fatalf("refused requests reached the menu: %v", m.audit.lines())
	}
}

// TestJournalCredentials: a PIN set here is a credentials_set event with who, next to the
// remote command's; the remote's next version replaces the map, and the hashes meet in the
// Credentials interface.
func TestJournalCredentials(t *testing.T) {
	j, err := journal.Open(filepath.Join(t.TempDir(), "j.db"), journal.Options{KioskID: "K-1", Currency: "CNY"})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if err := j.SetCredentials(journal.Credentials{Version: 1, CmdID: "cmd-00000001", Roles: map[string]string{"admin": mustHash(t, adminPIN)}}); err != nil {
		t.Fatal(err)
	}
	h := mustHash(t, techPIN)
	if err := j.SetLocalCredential("technician", h, "admin/1"); err != nil {
		t.Fatal(err)
	}
	c, ok, err := j.Credentials()
	if !ok || err != nil || c.Roles["technician"] != h || c.Roles["admin"] == "" || c.Who != "admin/1" || c.Version != 1 {
		t.Fatalf("credentials %+v %v %v", c, ok, err)
	}
	if err := j.AuditService(journal.ServiceActionEvent{Who: "admin/1", Action: "set_pin", Detail: "technician/1", Result: "ok", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	var types []string
	if err := j.Events(0, func(r journal.Record) bool {
		p, err := r.Payload()
		if err != nil {
			t.Fatal(err)
		}
		if cs, ok := p.(*journal.CredentialsSetEvent); ok {
			types = append(types, r.Type+":"+cs.Who)
		} else if sa, ok := p.(*journal.ServiceActionEvent); ok {
			types = append(types, r.Type+":"+sa.Action)
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(types, ",") != "credentials_set:,credentials_set:admin/1,service_action:set_pin" {
		t.Fatalf("events %v", types)
	}
	if _, err := j.Verify(); err != nil {
		t.Fatalf("verify: %v", err)
	}
	// The remote's next version wins as a whole.
	if err := j.SetCredentials(journal.Credentials{Version: 2, CmdID: "cmd-00000002", Roles: map[string]string{"admin": h}}); err != nil {
		t.Fatal(err)
	}
	if c, _, _ := j.Credentials(); c.Roles["technician"] != "" || c.Who != "" {
		t.Fatalf("after remote v2: %+v", c)
	}
}
