package ui

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kioskd/kioskd/kiosk/i18n"
	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/kiosk/session"
)

type fakeEngine struct {
	mu      sync.Mutex
	v       session.View
	changed chan struct{}
	presses []string
}

func newFake() *fakeEngine {
	return &fakeEngine{v: session.View{Seq: 1, State: "idle", Currency: "CNY"}, changed: make(chan struct{})}
}

func (f *fakeEngine) set(fn func(*session.View)) {
	f.mu.Lock()
	fn(&f.v)
	f.v.Seq++
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
}

func (f *fakeEngine) View() session.View { f.mu.Lock(); defer f.mu.Unlock(); return f.v }

func (f *fakeEngine) WaitView(ctx context.Context, after uint64) (session.View, bool) {
	for {
		f.mu.Lock()
		if f.v.Seq > after {
			v := f.v
			f.mu.Unlock()
			return v, true
		}
		ch := f.changed
		v := f.v
		f.mu.Unlock()
		select {
		case <-ctx.Done():
			return v, false
		case <-ch:
		}
	}
}

func (f *fakeEngine) Finish() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.presses = append(f.presses, "finish")
	if f.v.State != "accepting" {
		return session.ErrBusy
	}
	return nil
}

func (f *fakeEngine) MoreTime() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.presses = append(f.presses, "more_time")
	return nil
}

func (f *fakeEngine) pressed() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.presses...)
}

func (f *fakeEngine) Cancel() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.presses = append(f.presses, "cancel")
	return nil
}

const testToken = "test-token-0123456789"

func testHandler(f *fakeEngine) http.Handler {
	return Handler(Config{Engine: f, Port: 8080, Token: testToken, KioskID: "KSK-0042", Hotline: "400-800-1234"})
}

// post builds a POST the kiosk's own page sends, then lets edit spoil it.
func post(path string, edit func(r *http.Request)) *http.Request {
	r := httptest.NewRequest("POST", "http://localhost:8080"+path, nil)
	r.Host = "localhost:8080"
	r.Header.Set("Origin", "http://localhost:8080")
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	r.Header.Set(TokenHeader, testToken)
	if edit != nil {
		edit(r)
	}
	return r
}

func serve(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestOwnPagePostsAccepted(t *testing.T) {
	f := newFake()
	h := testHandler(f)
	if w := serve(h, post("/api/finish", nil)); w.Code != http.StatusConflict {
		t.Fatalf("finish while idle: %d %s", w.Code, w.Body)
	}
	f.set(func(v *session.View) { v.State = "accepting" })
	for _, p := range []string{"/api/finish", "/api/cancel", "/api/more-time"} {
		if w := serve(h, post(p, nil)); w.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", p, w.Code, w.Body)
		}
	}
	for _, host := range []string{"127.0.0.1:8080", "[::1]:8080", "LOCALHOST:8080"} {
		if w := serve(h, post("/api/cancel", func(r *http.Request) { r.Host = host; r.Header.Set("Origin", "http://"+host) })); w.Code != http.StatusOK {
			t.Fatalf("host %s: %d %s", host, w.Code, w.Body)
		}
	}
	if got := f.pressed(); strings.Join(got, ",") != "finish,finish,cancel,more_time,cancel,cancel,cancel" {
		t.Fatalf("presses %v", got)
	}
}

// TestForeignRequestsRefused: a DNS-rebinding page, another origin, a forged or missing token,
// a GET to a button: each is refused and no button is pressed.
func TestForeignRequestsRefused(t *testing.T) {
	f := newFake()
	f.set(func(v *session.View) { v.State = "accepting" })
	h := testHandler(f)
	cases := []struct {
		name string
		req  *http.Request
		code int
	}{
		{"rebinding host", post("/api/finish", func(r *http.Request) {
			r.Host = "evil.example:8080"
			r.Header.Set("Origin", "http://evil.example:8080")
		}), 403},
		{"loopback-looking host name", post("/api/finish", func(r *http.Request) { r.Host = "localhost.evil.example:8080" }), 403},
		{"other port", post("/api/finish", func(r *http.Request) { r.Host = "localhost:9999"; r.Header.Set("Origin", "http://localhost:9999") }), 403},
		{"no port", post("/api/finish", func(r *http.Request) { r.Host = "localhost"; r.Header.Set("Origin", "http://localhost") }), 403},
		{"foreign origin, no fetch metadata", post("/api/cancel", func(r *http.Request) {
			r.Header.Set("Origin", "http://evil.example")
			r.Header.Del("Sec-Fetch-Site")
		}), 403},
		{"no origin", post("/api/cancel", func(r *http.Request) { r.Header.Del("Origin") }), 403},
		{"null origin", post("/api/cancel", func(r *http.Request) { r.Header.Set("Origin", "null") }), 403},
		{"origin of another loopback port", post("/api/cancel", func(r *http.Request) { r.Header.Set("Origin", "http://localhost:3000") }), 403},
		{"cross-site", post("/api/cancel", func(r *http.Request) { r.Header.Set("Sec-Fetch-Site", "cross-site") }), 403},
		{"same-site", post("/api/cancel", func(r *http.Request) { r.Header.Set("Sec-Fetch-Site", "same-site") }), 403},
		{"no fetch metadata", post("/api/cancel", func(r *http.Request) { r.Header.Del("Sec-Fetch-Site") }), 403},
		{"no token", post("/api/cancel", func(r *http.Request) { r.Header.Del(TokenHeader) }), 403},
		{"wrong token", post("/api/cancel", func(r *http.Request) { r.Header.Set(TokenHeader, testToken+"x") }), 403},
		{"GET to a button", func() *http.Request {
			r := httptest.NewRequest("GET", "http://localhost:8080/api/finish", nil)
			r.Host = "localhost:8080"
			return r
		}(), 405},
		{"PUT to a button", post("/api/finish", func(r *http.Request) { r.Method = "PUT" }), 405},
	}
	for _, tc := range cases {
		if w := serve(h, tc.req); w.Code != tc.code {
			t.Errorf("%s: %d, want %d (%s)", tc.name, w.Code, tc.code, w.Body)
		}
	}
	// Reads are refused on a foreign host too: a rebinding page must not read the view.
	for _, p := range []string{"/", "/api/state", "/api/texts", "/app.js", "/api/events"} {
		r := httptest.NewRequest("GET", "http://evil.example:8080"+p, nil)
		if w := serve(h, r); w.Code != http.StatusForbidden {
			t.Errorf("GET %s on a foreign host: %d", p, w.Code)
		}
	}
	if got := f.pressed(); len(got) != 0 {
		t.Fatalf("refused requests pressed %v", got)
	}
}

func TestDiagnosticsNotOnCustomerPort(t *testing.T) {
	r := httptest.NewRequest("GET", "http://localhost:8080/api/diag", nil)
	if w := serve(testHandler(newFake()), r); w.Code != http.StatusNotFound {
		t.Fatalf("/api/diag: %d %s", w.Code, w.Body)
	}
}

func TestPageCarriesTokenLanguageAndNoHardCodedText(t *testing.T) {
	h := Handler(Config{Engine: newFake(), Port: 8080, Token: testToken, Language: "zh"})
	r := httptest.NewRequest("GET", "http://localhost:8080/", nil)
	w := serve(h, r)
	body := w.Body.String()
	if w.Code != 200 || !strings.Contains(body, `<html lang="zh-CN">`) || !strings.Contains(body, `content="`+testToken+`"`) ||
		!strings.Contains(body, "请将钱包应用的付款码对准扫码器") {
		t.Fatalf("page: %d %s", w.Code, body)
	}
	if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Fatalf("CSP %q", csp)
	}
	// The page source itself has no customer sentence: strip tags, placeholders and the
	// embedded texts and nothing readable is left.
	raw, _ := static.ReadFile("static/index.html")
	text := regexp.MustCompile(`(?s)<script.*?</script>|<[^>]*>|\{\{[A-Z]+\}\}`).ReplaceAllString(string(raw), "")
	if strings.TrimSpace(text) != "" {
		t.Fatalf("index.html has hard-coded text: %q", strings.TrimSpace(text))
	}
	js, _ := static.ReadFile("static/app.js")
	for _, lit := range regexp.MustCompile(`"[^"\n]*"`).FindAllString(string(js), -1) {
		if regexp.MustCompile(`[A-Za-z]+ [A-Za-z]+ [A-Za-z]+`).MatchString(lit) {
			t.Errorf("app.js has an English sentence literal %s", lit)
		}
	}
	css, _ := static.ReadFile("static/style.css")
	if !strings.Contains(string(css), `"Noto Sans CJK SC", "WenQuanYi Micro Hei"`) {
		t.Fatal("style.css names no CJK font")
	}
}

func TestTextsInBothLanguages(t *testing.T) {
	h := testHandler(newFake())
	han := regexp.MustCompile(`\p{Han}`)
	for _, lang := range []string{"zh-CN", "en"} {
		r := httptest.NewRequest("GET", "http://localhost:8080/api/texts?lang="+lang, nil)
		w := serve(h, r)
		var tx Texts
		if err := json.Unmarshal(w.Body.Bytes(), &tx); err != nil || tx.Lang != lang {
			t.Fatalf("%s: %v %s", lang, err, w.Body)
		}
		for _, k := range uiKeys {
			v := tx.Texts[string(k)]
			if strings.TrimSpace(v) == "" {
				t.Errorf("%s %s: empty", lang, k)
			}
			if k != i18n.KeyUICountdown && strings.Contains(v, "{") {
				t.Errorf("%s %s: unfilled parameter in %q", lang, k, v)
			}
			if lang == "zh-CN" && !han.MatchString(v) {
				t.Errorf("%s %s: no Chinese in %q", lang, k, v)
			}
		}
		help := tx.Texts[string(i18n.KeyUIOOSHelp)]
		if !strings.Contains(help, "400-800-1234") || !strings.Contains(help, "KSK-0042") {
			t.Errorf("%s: out-of-service help %q lacks hotline or kiosk id", lang, help)
		}
	}
}

// TestScreenHasNoRawCodes renders conditions, refusals and results in both languages: every
// text is a sentence of the catalogue, never a kind, key or error code.
func TestScreenHasNoRawCodes(t *testing.T) {
	s := &server{cfg: Config{KioskID: "KSK-0042", Hotline: "400-800-1234", Now: time.Now}}
	kinds := []string{"acceptor_jam", "journal_corrupt", "a_kind_nobody_wrote_text_for", "operator", "sensor_front_door_open"}
	v := session.View{State: "out_of_service", Currency: "CNY", Reasons: kinds, Degraded: []string{"printer_paper_out"},
		MessageKey: i18n.QRKey(nil), MessageKind: "error", TotalMinor: 10000, RemainingMinor: 5000,
		Notes: []journal.NoteLine{{ValueMinor: 5000, Count: 2}}, AllowedMinor: []int64{1000, 5000}}
	for _, lang := range i18n.Langs {
		sc := s.render(v, lang)
		b, _ := json.Marshal(sc)
		if all := sc.Message + strings.Join(sc.Reasons, "") + strings.Join(sc.Warnings, "") + sc.CancelLabel + sc.CancelHint; strings.ContainsAny(all, "{}") {
			t.Errorf("%s: unfilled parameter in %q", lang, all)
		}
		for _, code := range append(kinds, "printer_paper_out", "qr.", "condition.", "ui.") {
			if strings.Contains(string(b), code) {
				t.Errorf("%s: screen shows %q: %s", lang, code, b)
			}
		}
		if len(sc.Reasons) == 0 || !sc.PrinterDown || len(sc.Warnings) != 0 || sc.Message == "" || !sc.MessageError {
			t.Errorf("%s: %+v", lang, sc)
		}
		if !strings.Contains(strings.Join(sc.Reasons, " "), "400-800-1234") || !sc.HotlineShown {
			t.Errorf("%s: reasons without hotline: %v", lang, sc.Reasons)
		}
	}
	zh, en := s.render(v, i18n.ZH), s.render(v, i18n.EN)
	if zh.Total != "100.00 元" || en.Total != "¥100.00" || zh.Notes[0].Amount != "100.00 元" || en.Allowed != "¥10.00, ¥50.00" {
		t.Errorf("amounts: zh %+v en %+v", zh, en)
	}
	if zh.CancelLabel != "结束并入账" || en.CancelLabel != "Finish and credit" {
		t.Errorf("cancel with money: %q %q", zh.CancelLabel, en.CancelLabel)
	}
	v.TotalMinor, v.Notes = 0, nil
	if en := s.render(v, i18n.EN); en.CancelLabel != "Cancel" {
		t.Errorf("cancel without money: %q", en.CancelLabel)
	}
	// A key the catalogue does not know still reads as a sentence.
	v.MessageKey = "made.up"
	if m := s.render(v, i18n.EN).Message; m != i18n.T(i18n.EN, i18n.KeyGeneric) {
		t.Errorf("unknown key shows %q", m)
	}
}

func TestResultsRendered(t *testing.T) {
	s := &server{cfg: Config{Now: time.Now}}
	for _, tc := range []struct {
		r      session.Result
		status string
		zhHas  string
	}{
		{session.Result{TopupID: "T-1", ReceiptNo: 42, AmountMinor: 10000, Currency: "CNY", Status: "credited"}, "credited", "已充值"},
		{session.Result{TopupID: "T-2", ReceiptNo: 43, AmountMinor: 10000, Currency: "CNY", Status: "pending"}, "pending", "稍后"},
		{session.Result{TopupID: "T-3", ReceiptNo: 44, AmountMinor: 10000, Currency: "CNY", Status: "pending", Uncertain: 1}, "under_review", "核实"},
		{session.Result{Reference: "S7", AmountMinor: 5000, Currency: "CNY", Status: "pending"}, "pending", "S7"},
	} {
		v := session.View{State: "done", Currency: "CNY", Result: &tc.r}
		zh := s.render(v, i18n.ZH).Result
		if zh.Status != tc.status || !strings.Contains(zh.Title+zh.Sentence, tc.zhHas) {
			t.Errorf("%+v: %+v", tc.r, zh)
		}
		if tc.r.ReceiptNo > 0 && zh.ReceiptNo != "000000"+strconv.FormatUint(tc.r.ReceiptNo, 10) {
			t.Errorf("receipt no %q", zh.ReceiptNo)
		}
		if tc.r.ReceiptNo == 0 && zh.ReceiptNo != "" {
			t.Errorf("receipt no without a receipt: %q", zh.ReceiptNo)
		}
	}
}

// TestEventStream: views in the asked language, and pings while nothing changes, so the page
// can tell a quiet kiosk from a dead one.
func TestEventStream(t *testing.T) {
	f := newFake()
	srv := httptest.NewServer(Handler(Config{Engine: f, KeepAlive: 20 * time.Millisecond}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/events?lang=en", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	next := func(want string) Payload {
		var ev string
		for sc.Scan() {
			line := sc.Text()
			if e, ok := strings.CutPrefix(line, "event: "); ok {
				ev = e
			}
			if d, ok := strings.CutPrefix(line, "data: "); ok && ev == want {
				var p Payload
				if err := json.Unmarshal([]byte(d), &p); err != nil {
					t.Fatal(err)
				}
				return p
			}
		}
		t.Fatalf("stream ended: %v", sc.Err())
		return Payload{}
	}
	if p := next("view"); p.State != "idle" || p.Screen.Lang != "en" {
		t.Fatalf("first event %+v", p)
	}
	next("ping")
	next("ping")
	f.set(func(v *session.View) { v.State = "accepting"; v.TotalMinor = 5000 })
	if p := next("view"); p.State != "accepting" || p.Screen.Total != "¥50.00" {
		t.Fatalf("second event %+v", p)
	}
}

func TestStateDefaultsToConfiguredLanguage(t *testing.T) {
	for cfgLang, want := range map[string]string{"": "zh-CN", "zh": "zh-CN", "zh-CN": "zh-CN", "en": "en"} {
		h := Handler(Config{Engine: newFake(), Language: cfgLang})
		r := httptest.NewRequest("GET", "http://127.0.0.1:1234/api/state", nil)
		var p Payload
		json.Unmarshal(serve(h, r).Body.Bytes(), &p)
		if p.Screen.Lang != want {
			t.Errorf("language %q: screen in %q", cfgLang, p.Screen.Lang)
		}
		// The view's own fields stay at the top level: a reader of session.View still works.
		var v session.View
		json.Unmarshal(serve(h, r).Body.Bytes(), &v)
		if v.State != "idle" || v.Currency != "CNY" || v.Seq != 1 {
			t.Errorf("state as a session.View: %+v", v)
		}
	}
}

// TestResultNotesUnderReview: a top-up with a note under review says, as its receipt does,
// the counted amount's own status and each note under review with its value.
func TestResultNotesUnderReview(t *testing.T) {
	s := &server{cfg: Config{Now: time.Now}}
	v := session.View{State: "done", Currency: "CNY", Result: &session.Result{TopupID: "T-9", ReceiptNo: 9, AmountMinor: 10000,
		Currency: "CNY", Status: "credited", Uncertain: 1, UncertainMinor: []int64{5000}}}
	en := s.render(v, i18n.EN).Result
	if en.Status != "under_review" || en.Counted != "credited" || !strings.Contains(en.Sentence, "has been credited") ||
		len(en.UnderReview) != 1 || !strings.Contains(en.UnderReview[0], "50.00") || !strings.Contains(en.UnderReview[0], "T-9") {
		t.Fatalf("%+v", en)
	}
	// Nothing counted: the sentence is the under-review one.
	v.Result = &session.Result{TopupID: "T-10", Currency: "CNY", Status: "pending", Uncertain: 1, UncertainMinor: []int64{5000}}
	en = s.render(v, i18n.EN).Result
	if en.Counted != "pending" || !strings.Contains(en.Sentence, "under review") || len(en.UnderReview) != 1 {
		t.Fatalf("%+v", en)
	}
}
