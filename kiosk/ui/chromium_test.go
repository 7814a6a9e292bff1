package ui

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kioskd/kioskd/kiosk/i18n"
	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/kiosk/session"
	"github.com/kioskd/kioskd/kiosk/ui/uitest"
)

// The browser harness is shared with the service menu's tests (kiosk/ui/uitest).
type browser = uitest.Browser

func startBrowser(t *testing.T) *browser { return uitest.Start(t) }
func requireServices() bool              { return uitest.RequireServices() }
func axeSource(t *testing.T) (string, string) {
	return uitest.AxeSource(t)
}

const (
	visibleText  = uitest.VisibleText
	smallTargets = uitest.SmallTargets
)

type scenario struct {
	name string
	view func(v *session.View)
	// want is a substring of the visible text, per language.
	want map[i18n.Lang]string
	// js, when set, must evaluate to "true" on the screen.
	js string
}

func scenarios() []scenario {
	notes := []journal.NoteLine{{ValueMinor: 5000, Count: 1}, {ValueMinor: 10000, Count: 2}}
	accepting := func(v *session.View) {
		v.State, v.AccountMasked, v.LimitMinor, v.TotalMinor, v.RemainingMinor = "accepting", "ab***yz", 100000, 25000, 75000
		v.Notes, v.AllowedMinor = notes, []int64{1000, 2000, 5000, 10000}
	}
	return []scenario{
		{name: "idle", view: func(v *session.View) {},
			want: map[i18n.Lang]string{i18n.ZH: "付款码", i18n.EN: "payment QR code"}},
		{name: "accepting", view: func(v *session.View) {
			accepting(v)
			v.MessageKey, v.MessageParams, v.MessageKind = i18n.KeyNoteReceived, []i18n.Param{{Name: "amount", Minor: 10000, Currency: "CNY"}}, "info"
		}, want: map[i18n.Lang]string{i18n.ZH: "结束并入账", i18n.EN: "Finish and credit"},
			js: `document.getElementById("total").textContent === (document.documentElement.lang === "en" ? "¥250.00" : "250.00 元") && document.querySelectorAll("#notes tbody tr").length === 2`},
		{name: "refusal", view: func(v *session.View) {
			v.MessageKey, v.MessageKind = i18n.KeyQRExpired, "error"
		}, want: map[i18n.Lang]string{i18n.ZH: "此付款码已过期", i18n.EN: "This payment code has expired"}},
		{name: "countdown", view: func(v *session.View) {
			accepting(v)
			v.IdleDeadlineUnixMs, v.IdleTimeoutMs = time.Now().Add(20*time.Second).UnixMilli(), 60000
		}, want: map[i18n.Lang]string{i18n.ZH: "秒后将自动结束", i18n.EN: "ends by itself in"},
			js: `!document.getElementById("countdown").hidden && !document.getElementById("more-time").disabled`},
		{name: "printer-unavailable", view: func(v *session.View) {
			v.Degraded = []string{"printer_paper_out"}
		}, want: map[i18n.Lang]string{i18n.ZH: "本次无法打印凭条", i18n.EN: "No receipt can be printed"}},
		{name: "credited", view: func(v *session.View) {
			v.State = "done"
			v.Result = &session.Result{TopupID: "T-0001", Reference: "T-0001", ReceiptNo: 42, AmountMinor: 25000, Currency: "CNY", Status: "credited", Printed: true}
		}, want: map[i18n.Lang]string{i18n.ZH: "已充值到您的钱包", i18n.EN: "Credited to your wallet"},
			js: `document.getElementById("result-receipt").textContent === "00000042"`},
		{name: "pending", view: func(v *session.View) {
			v.State = "done"
			v.Result = &session.Result{TopupID: "T-0002", Reference: "T-0002", ReceiptNo: 43, AmountMinor: 25000, Currency: "CNY", Status: "pending"}
		}, want: map[i18n.Lang]string{i18n.ZH: "稍后到账", i18n.EN: "will be credited shortly"}},
		{name: "under-review", view: func(v *session.View) {
			v.State = "done"
			v.Result = &session.Result{TopupID: "T-0003", Reference: "T-0003", ReceiptNo: 44, AmountMinor: 15000, Currency: "CNY", Status: "pending", Uncertain: 1}
		}, want: map[i18n.Lang]string{i18n.ZH: "待核实", i18n.EN: "under review"}},
		{name: "out-of-service", view: func(v *session.View) {
			v.State, v.Reasons = "out_of_service", []string{"acceptor_jam"}
		}, want: map[i18n.Lang]string{i18n.ZH: "KSK-0042", i18n.EN: "400-800-1234"},
			js: `!document.body.innerText.includes("acceptor_jam")`},
	}
}

// TestCustomerScreensInChromium shows every customer screen in both languages in a real
// browser, checks its words, its touch targets and (when axe-core can be had) its
// accessibility, and keeps a screenshot of each.
func TestCustomerScreensInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test")
	}
	b := startBrowser(t)
	dir := t.ArtifactDir()
	if d := os.Getenv("KIOSKD_SCREENSHOTS"); d != "" {
		dir = d
	}
	t.Logf("screenshots in %s", dir)
	axe, why := axeSource(t)
	if axe == "" {
		if requireServices() {
			t.Fatalf("axe-core required: %s", why)
		}
		t.Logf("accessibility check skipped: %s", why)
	}
	for _, lang := range i18n.Langs {
		f := newFake()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewUnstartedServer(Handler(Config{Engine: f, Language: string(lang), KioskID: "KSK-0042",
			Hotline: "400-800-1234", Port: ln.Addr().(*net.TCPAddr).Port, KeepAlive: 500 * time.Millisecond}))
		srv.Listener = ln
		srv.Start()
		b.Call("Page.navigate", map[string]any{"url": srv.URL + "/"})
		b.WaitEval("page language", `document.documentElement.lang`, func(s string) bool { return s == string(lang) })
		for _, sc := range scenarios() {
			f.set(func(v *session.View) {
				*v = session.View{Seq: v.Seq, State: "idle", Currency: "CNY"}
				sc.view(v)
			})
			seq := fmt.Sprint(f.View().Seq)
			b.WaitEval(sc.name+" view", `document.getElementById("app").dataset.seq`, func(s string) bool { return s == seq })
			want := sc.want[lang]
			b.WaitEval(fmt.Sprintf("%s (%s) shows %q", sc.name, lang, want), visibleText, func(s string) bool { return strings.Contains(s, want) })
			if sc.js != "" {
				b.WaitEval(sc.name+" check", sc.js, func(s string) bool { return s == "true" })
			}
			if small := b.Eval(smallTargets); small != "" {
				t.Errorf("%s (%s): touch targets under 64 px: %s", sc.name, lang, small)
			}
			if lang == i18n.ZH {
				// Nothing of the English catalogue leaks into the Chinese screen.
				if txt := b.Eval(visibleText); regexp.MustCompile(`[A-Za-z]{4,} [A-Za-z]{3,} [A-Za-z]{3,}`).MatchString(txt) {
					t.Errorf("%s (zh): English text on screen: %q", sc.name, txt)
				}
			}
			if axe != "" {
				if b.Eval(`typeof axe`) != "object" {
					b.Eval(axe)
				}
				res := b.Eval(`axe.run(document, {resultTypes: ["violations"]}).then(r => "checked:" + r.violations
					.filter(v => v.impact === "serious" || v.impact === "critical")
					.map(v => v.id + " " + v.nodes.map(n => n.target.join(" ")).join("; ")).join(" | "))`)
				if res != "checked:" {
					t.Errorf("%s (%s): accessibility: %q", sc.name, lang, res)
				}
			}
			b.Screenshot(dir, fmt.Sprintf("%s-%s", lang, sc.name))
		}
		// The customer's button presses reach the engine with the page's token.
		f.set(func(v *session.View) {
			*v = session.View{Seq: v.Seq, State: "accepting", Currency: "CNY", IdleDeadlineUnixMs: time.Now().Add(10 * time.Second).UnixMilli(), IdleTimeoutMs: 60000}
		})
		b.WaitEval("accepting", `document.getElementById("app").dataset.state`, func(s string) bool { return s == "accepting" })
		b.WaitEval("countdown shown", `String(!document.getElementById("countdown").hidden)`, func(s string) bool { return s == "true" })
		b.Eval(`document.getElementById("more-time").click()`)
		b.Eval(`document.getElementById("finish").click()`)
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(strings.Join(f.pressed(), ","), "more_time") || !strings.Contains(strings.Join(f.pressed(), ","), "finish") {
			if time.Now().After(deadline) {
				t.Fatalf("presses from the page: %v", f.pressed())
			}
			time.Sleep(20 * time.Millisecond) // the page's fetch is on its way; bounded
		}
		// A kill of the daemon: the stream stops; the page must say so and disable its buttons.
		uitest.CloseServer(srv)
		b.WaitEval("daemon down", `document.getElementById("app").dataset.down`, func(s string) bool { return s == "1" })
		if d := b.Eval(`String(document.getElementById("finish").disabled)`); d != "true" {
			t.Errorf("%s: finish still enabled with the daemon down", lang)
		}
		want := map[i18n.Lang]string{i18n.ZH: "本机暂时无法使用", i18n.EN: "cannot be used right now"}[lang]
		b.WaitEval("down screen", visibleText, func(s string) bool { return strings.Contains(s, want) })
		b.Screenshot(dir, fmt.Sprintf("%s-daemon-down", lang))
	}
}

// TestLanguageToggleAndFirstLoad: the toggle switches the whole page to English, the next
// customer gets Chinese back, and a page that never gets a view shows out of service.
func TestLanguageToggleAndFirstLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test")
	}
	b := startBrowser(t)
	f := newFake()
	srv := httptest.NewServer(Handler(Config{Engine: f, KioskID: "KSK-0042", Hotline: "400-800-1234", KeepAlive: 500 * time.Millisecond}))
	defer uitest.CloseServer(srv)
	b.Call("Page.navigate", map[string]any{"url": srv.URL + "/"})
	b.WaitEval("chinese first", visibleText, func(s string) bool { return strings.Contains(s, "付款码") })
	b.Eval(`document.getElementById("lang").click()`)
	b.WaitEval("english on a tap", `document.documentElement.lang + "|" + document.body.innerText`, func(s string) bool {
		return strings.HasPrefix(s, "en|") && strings.Contains(s, "payment QR code")
	})
	f.set(func(v *session.View) { v.State = "accepting"; v.TotalMinor = 5000 })
	b.WaitEval("english session", `document.getElementById("total").textContent`, func(s string) bool { return s == "¥50.00" })
	f.set(func(v *session.View) {
		v.State, v.TotalMinor, v.MessageKey, v.MessageKind = "idle", 0, i18n.KeyCancelled, "info"
	})
	b.WaitEval("next customer in chinese", `document.documentElement.lang`, func(s string) bool { return s == "zh-CN" })
	// A message said in a session does not stay on the idle screen for the next customer.
	b.WaitEval("no leftover message", `document.getElementById("message").textContent`, func(s string) bool { return s == "" })

	// A daemon that serves the page but never a view: out of service within seconds.
	srv.CloseClientConnections()
	h := Handler(Config{Engine: newFake()})
	mute := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/events" {
			<-r.Context().Done() // a stuck daemon: the stream never answers
			return
		}
		h.ServeHTTP(w, r)
	}))
	defer uitest.CloseServer(mute) // the page keeps reconnecting to the stuck stream
	b.Call("Page.navigate", map[string]any{"url": mute.URL + "/"})
	b.WaitEval("not starting forever", `document.getElementById("app").dataset.down`, func(s string) bool { return s == "1" })
}

// TestServiceMenuEntry: the customer screen leads to the technicians' service menu when the
// kiosk says it is open (the cabinet door), but not while a customer is being served; and,
// where configured, on a three-second press on the title.
func TestServiceMenuEntry(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test")
	}
	b := startBrowser(t)
	menu := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(`<!doctype html><html lang="en"><title>menu</title><p id="menu">SERVICE MENU</p></html>`))
	}))
	defer menu.Close()
	var mu sync.Mutex
	door := false
	open := func() bool { mu.Lock(); defer mu.Unlock(); return door }
	f := newFake()
	f.set(func(v *session.View) { v.State = "accepting" })
	srv := httptest.NewServer(Handler(Config{Engine: f, KeepAlive: 200 * time.Millisecond, ServiceURL: menu.URL + "/", ServiceOpen: open, ServiceGesture: true}))
	defer uitest.CloseServer(srv)
	b.Call("Page.navigate", map[string]any{"url": srv.URL + "/"})
	b.WaitEval("accepting", `document.getElementById("app").dataset.state`, func(s string) bool { return s == "accepting" })
	mu.Lock()
	door = true
	mu.Unlock()
	// A view that says the menu is open, while a customer is served: the page stays (it
	// acts on each view right after showing it).
	f.set(func(v *session.View) { v.TotalMinor = 5000 })
	seq := fmt.Sprint(f.View().Seq)
	b.WaitEval("view with the door open", `document.getElementById("app").dataset.seq`, func(s string) bool { return s == seq })
	if href := b.Eval(`location.href`); !strings.HasPrefix(href, srv.URL) {
		t.Fatalf("left the customer in session for %s", href)
	}
	f.set(func(v *session.View) { v.State = "idle" })
	b.WaitEval("service menu on the door", `location.href`, func(s string) bool { return strings.HasPrefix(s, menu.URL) })

	// The gesture, with the door closed.
	mu.Lock()
	door = false
	mu.Unlock()
	b.Call("Page.navigate", map[string]any{"url": srv.URL + "/"})
	b.WaitEval("idle", `document.getElementById("app").dataset.state`, func(s string) bool { return s == "idle" })
	b.Eval(`document.querySelector("header h1").dispatchEvent(new PointerEvent("pointerdown", {bubbles: true}))`)
	b.WaitEval("service menu on the gesture", `location.href`, func(s string) bool { return strings.HasPrefix(s, menu.URL) })
}
