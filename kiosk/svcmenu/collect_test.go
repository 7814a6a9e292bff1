package svcmenu

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/kiosk/ctl"
	"github.com/kioskd/kioskd/kiosk/ctl/ctltest"
	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/kiosk/session"
	"github.com/kioskd/kioskd/sync/wire"
)

// engineKiosk is the menu's backend over a real engine and journal for the collection (the
// daemon's backend does the same: Collect is session.Do, the counters the journal's
// cassette); the rest is the fake's.
type engineKiosk struct {
	*ctltest.Fake
	e     *session.Engine
	j     *journal.Journal
	slips *slipPrinter
}

func (k *engineKiosk) Collect(ctx context.Context, cmd session.Command) (session.Reply, error) {
	return k.e.Do(ctx, cmd)
}

func (k *engineKiosk) Counters() (ctl.Counters, error) {
	c, err := k.j.Cassette()
	if err != nil {
		return ctl.Counters{}, err
	}
	out := ctl.Counters{Currency: k.j.Currency(), Notes: c.Count, ValueMinor: c.ValueMinor}
	for v, n := range c.ByValue {
		out.ByValue = append(out.ByValue, ctl.DenominationRow{ValueMinor: v, Count: n, TotalMinor: v * n})
	}
	slices.SortFunc(out.ByValue, func(a, b ctl.DenominationRow) int { return int(a.ValueMinor - b.ValueMinor) })
	return out, nil
}

type idleUnit struct{}

func (idleUnit) Enable(context.Context, []int) error { return nil }
func (idleUnit) Inhibit(context.Context) error       { return nil }

// slipPrinter prints receipts and collection slips into memory.
type slipPrinter struct {
	mu    sync.Mutex
	slips []session.Slip
}

func (p *slipPrinter) PrintReceipt(context.Context, session.Receipt) error { return nil }
func (p *slipPrinter) PrintCollectionSlip(_ context.Context, s session.Slip) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.slips = append(p.slips, s)
	return nil
}
func (p *slipPrinter) get() []session.Slip {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.slips)
}

// kioskDenoms are the test kiosk's notes.
var kioskDenoms = acceptor.Denominations{0x61: {Code: 0x61, ValueMinor: 1000, Currency: "CNY"},
	0x62: {Code: 0x62, ValueMinor: 5000, Currency: "CNY"}, 0x63: {Code: 0x63, ValueMinor: 10000, Currency: "CNY"}}

// newEngineKiosk starts an engine on a journal whose cassette holds three 100.00 notes and
// one 50.00 note (a customer's session, closed), running until the test ends.
func newEngineKiosk(t *testing.T) *engineKiosk {
	t.Helper()
	j, err := journal.Open(filepath.Join(t.TempDir(), "j.db"), journal.Options{KioskID: "K1", Currency: "CNY"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	ss, err := j.OpenSession(journal.OpenSessionParams{Account: "acct-7", AccountMasked: "a***7", LimitMinor: 100000})
	if err != nil {
		t.Fatal(err)
	}
	for _, code := range []int{0x63, 0x63, 0x63, 0x62} {
		n := journal.Note{Code: code, ValueMinor: kioskDenoms[code].ValueMinor}
		in, err := j.StackIntent(ss.ID, n)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := j.CreditNote(in.ID, n, ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := j.CloseSession(journal.CloseParams{SessionID: ss.ID, Outcome: wire.OutcomeComplete}); err != nil {
		t.Fatal(err)
	}
	h := health.New("b", nil)
	k := &engineKiosk{Fake: ctltest.NewFake(), j: j, slips: &slipPrinter{}}
	k.e, err = session.New(session.Config{Journal: j, Acceptor: idleUnit{}, Health: h, Denominations: kioskDenoms, Printer: k.slips,
		Limits: session.Limits{SessionMax: 50000, OfflineSessionMax: 20000, OfflineTotalMax: 30000}, Timing: session.Timing{RecoveryTimeout: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	h.Listen(func(health.Condition) { k.e.HealthChanged() })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- k.e.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	k.e.Handler().Event(ctx, acceptor.Event{Kind: acceptor.Disabled})
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	for v := k.e.View(); v.State != session.Idle.String(); {
		var ok bool
		if v, ok = k.e.WaitView(wctx, v.Seq); !ok {
			t.Fatalf("engine not idle (%s)", v.State)
		}
	}
	return k
}

// collectResult is the collection action's answer.
type collectResult struct {
	OK         bool            `json:"ok"`
	Message    string          `json:"message"`
	Rows       [][2]string     `json:"rows"`
	Collection *CollectionView `json:"collection"`
}

// TestCollectionOnTheMenu: a collector runs a whole cash collection on the menu against the
// real engine: start, cassette out, a count with the kiosk's denominations (a wrong value
// refused), the shortage before finishing, the slip at finish, the cassette back in and
// service resumed; every step is a service_action in the audit with what it did.
func TestCollectionOnTheMenu(t *testing.T) {
	k := newEngineKiosk(t)
	m := newMenu(t)
	m.srv.Close()
	h, err := Handler(Config{Backend: k, Credentials: m.creds, Audit: m.audit, Now: m.clk.now, Token: m.token, Params: testParams,
		DoorOpen: m.door.get, Denominations: []int64{1000, 5000, 10000}})
	if err != nil {
		t.Fatal(err)
	}
	m.srv = httptest.NewServer(h)
	t.Cleanup(m.srv.Close)
	_, col := m.login("collector", collectorPIN)
	step := func(lang string, req ActionRequest, wantCode int) collectResult {
		t.Helper()
		req.Action = "collection"
		code, out := m.post("/api/action?lang="+lang, col, req)
		b, _ := json.Marshal(out)
		var r collectResult
		_ = json.Unmarshal(b, &r)
		if code != wantCode {
			t.Fatalf("%s: %d %s", req.Step, code, b)
		}
		return r
	}

	r := step("en", ActionRequest{}, http.StatusOK)
	if r.Collection == nil || r.Collection.Step != "" || !slices.Equal(r.Collection.Next, []string{"start"}) || r.Message != "No cash collection in progress." {
		t.Fatalf("before: %+v %+v", r, r.Collection)
	}
	r = step("zh-CN", ActionRequest{Step: "start"}, http.StatusOK)
	if c := r.Collection; c.Step != journal.CollectStarted || c.Expected != "350.00 元" || r.Message != "第 1 步：请取出钱箱。" ||
		!slices.Equal(c.Next, []string{"cassette_out", "abort"}) {
		t.Fatalf("started: %+v %+v", r, c)
	}
	if st, _ := k.e.Status(context.Background()); st.State != session.Maintenance.String() {
		t.Fatalf("state during the collection %q", st.State)
	}
	r = step("en", ActionRequest{Step: "cassette_out"}, http.StatusOK)
	c := r.Collection
	if c.Step != journal.CollectCassetteOut || !c.CanCount || len(c.Lines) != 3 || c.Lines[2].Expected != 3 || c.Lines[1].Expected != 1 ||
		c.Lines[0].Label != "¥10.00" || c.Expected != "¥350.00" || c.Difference != "" {
		t.Fatalf("cassette out: %+v", c)
	}
	// A value the kiosk does not take, a negative count: refused, nothing counted.
	step("en", ActionRequest{Step: "count", Counts: []journal.NoteLine{{ValueMinor: 777, Count: 1}}}, http.StatusConflict)
	step("en", ActionRequest{Step: "count", Counts: []journal.NoteLine{{ValueMinor: 1000, Count: -1}}}, http.StatusConflict)
	step("en", ActionRequest{Step: "finish"}, http.StatusConflict) // not counted yet
	r = step("en", ActionRequest{Step: "count", Counts: []journal.NoteLine{{ValueMinor: 1000, Count: 0}, {ValueMinor: 5000, Count: 1}, {ValueMinor: 10000, Count: 2}}}, http.StatusOK)
	if c := r.Collection; c.Step != journal.CollectCounted || c.Difference != "Shortage ¥100.00" || c.DifferenceMinor != -10000 ||
		c.Counted != "¥250.00" || !slices.Equal(c.Next, []string{"count", "finish"}) {
		t.Fatalf("counted: %+v", c)
	}
	// A recount corrects it.
	r = step("zh-CN", ActionRequest{Step: "count", Counts: []journal.NoteLine{{ValueMinor: 5000, Count: 1}, {ValueMinor: 10000, Count: 3}, {ValueMinor: 1000, Count: 1}}}, http.StatusOK)
	if c := r.Collection; c.Difference != "长款 10.00 元" || c.DifferenceMinor != 1000 {
		t.Fatalf("recount: %+v", c)
	}
	r = step("en", ActionRequest{Step: "finish"}, http.StatusOK)
	if c := r.Collection; c.Step != journal.CollectRecorded || c.Slip != "Slip printed" || !slices.Equal(c.Next, []string{"cassette_in"}) ||
		!strings.Contains(r.Message, "Put the cassette back") {
		t.Fatalf("finish: %+v %+v", r, c)
	}
	if s := k.slips.get(); len(s) != 1 || s[0].Record.DifferenceMinor != 1000 || s[0].Record.Operator != "collector/1" || s[0].Record.ExpectedMinor != 35000 {
		t.Fatalf("slips %+v", s)
	}
	if cas, _ := k.j.Cassette(); cas.Count != 0 {
		t.Fatalf("cassette counters not reset: %+v", cas)
	}
	r = step("en", ActionRequest{Step: "cassette_in"}, http.StatusOK)
	if c := r.Collection; c.Step != journal.CollectEnded || r.Message != "Collection complete; the kiosk is back in service." {
		t.Fatalf("cassette in: %+v %+v", r, c)
	}
	if st, _ := k.e.Status(context.Background()); st.State != session.Idle.String() || st.Collection != nil {
		t.Fatalf("after the collection: %+v", st)
	}

	var got []string
	m.audit.mu.Lock()
	for _, e := range m.audit.evs {
		if e.Action == "collection" {
			got = append(got, e.Detail+" | "+e.Result)
		}
	}
	m.audit.mu.Unlock()
	want := []string{"step=status -> ", "step=start -> started", "step=cassette_out -> cassette_out",
		"step=count 777x1", "step=count", "step=finish", "step=count 1000x0,5000x1,10000x2 -> counted", "step=count 5000x1,10000x3,1000x1 -> counted",
		"step=finish -> recorded", "step=cassette_in -> ended"}
	if len(got) != len(want) {
		t.Fatalf("audit:\n%s", strings.Join(got, "\n"))
	}
	for i, w := range want {
		if !strings.HasPrefix(got[i], w) {
			t.Errorf("audit %d: %q, want %q…", i, got[i], w)
		}
	}
	if !strings.Contains(got[7], "difference 1000 | ok") || !strings.Contains(got[3], "failed: ") {
		t.Errorf("audit:\n%s", strings.Join(got, "\n"))
	}
}
