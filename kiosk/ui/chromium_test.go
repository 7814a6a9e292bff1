package ui

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/kioskd/kioskd/kiosk/i18n"
	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/kiosk/session"
)

// browser drives a headless Chromium over the DevTools protocol: load the customer page,
// read its DOM, click its buttons, take screenshots.
type browser struct {
	t    *testing.T
	ws   *websocket.Conn
	mu   sync.Mutex
	next int
	wait map[int]chan json.RawMessage
	done chan struct{}
}

func requireServices() bool { return os.Getenv("KIOSKD_REQUIRE_SERVICES") != "" }

func findChromium(t *testing.T) string {
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if requireServices() {
		t.Fatal("chromium is required (KIOSKD_REQUIRE_SERVICES is set) but not installed")
	}
	t.Skip("chromium not installed: skipping the customer screen browser tests")
	return ""
}

var devtoolsRe = regexp.MustCompile(`DevTools listening on (ws://\S+)`)

func startBrowser(t *testing.T) *browser {
	bin := findChromium(t)
	profile, err := os.MkdirTemp("", "kioskd-ui-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic", "--hide-scrollbars",
		"--user-data-dir="+profile, "--remote-debugging-port=0", "--window-size=1280,800", "about:blank")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		for range 50 {
			if os.RemoveAll(profile) == nil {
				break
			}
			time.Sleep(20 * time.Millisecond) // helper processes still exiting; bounded
		}
	})
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := devtoolsRe.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
	}()
	var browserWS string
	select {
	case browserWS = <-found:
	case <-time.After(30 * time.Second):
		t.Fatal("chromium did not start its DevTools endpoint")
	}
	hostport := strings.TrimPrefix(browserWS, "ws://")
	hostport = hostport[:strings.IndexByte(hostport, '/')]
	var targets []struct {
		Type string `json:"type"`
		WS   string `json:"webSocketDebuggerUrl"`
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := http.Get("http://" + hostport + "/json/list")
		if err == nil {
			json.NewDecoder(res.Body).Decode(&targets)
			res.Body.Close()
		}
		if len(targets) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond) // bounded retry while the first page target appears
	}
	var pageWS string
	for _, tg := range targets {
		if tg.Type == "page" {
			pageWS = tg.WS
		}
	}
	if pageWS == "" {
		t.Fatalf("no page target: %+v", targets)
	}
	ws, _, err := websocket.DefaultDialer.Dial(pageWS, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := &browser{t: t, ws: ws, wait: map[int]chan json.RawMessage{}, done: make(chan struct{})}
	go b.read()
	t.Cleanup(func() { ws.Close(); <-b.done })
	return b
}

func (b *browser) read() {
	defer close(b.done)
	for {
		var msg struct {
			ID     int             `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  json.RawMessage `json:"error"`
		}
		if err := b.ws.ReadJSON(&msg); err != nil {
			return
		}
		if msg.ID == 0 {
			continue
		}
		b.mu.Lock()
		ch := b.wait[msg.ID]
		delete(b.wait, msg.ID)
		b.mu.Unlock()
		if ch != nil {
			if msg.Error != nil {
				ch <- msg.Error
			} else {
				ch <- msg.Result
			}
		}
	}
}

func (b *browser) call(method string, params any) json.RawMessage {
	b.t.Helper()
	b.mu.Lock()
	b.next++
	id := b.next
	ch := make(chan json.RawMessage, 1)
	b.wait[id] = ch
	err := b.ws.WriteJSON(map[string]any{"id": id, "method": method, "params": params})
	b.mu.Unlock()
	if err != nil {
		b.t.Fatal(err)
	}
	select {
	case r := <-ch:
		return r
	case <-time.After(30 * time.Second):
		b.t.Fatalf("devtools %s: no answer", method)
	}
	return nil
}

// eval runs JavaScript in the page (awaiting a promise) and returns its value as a string.
func (b *browser) eval(js string) string {
	b.t.Helper()
	r := b.call("Runtime.evaluate", map[string]any{"expression": js, "returnByValue": true, "awaitPromise": true})
	var out struct {
		Result struct {
			Value any `json:"value"`
		} `json:"result"`
	}
	json.Unmarshal(r, &out)
	if out.Result.Value == nil {
		return ""
	}
	return fmt.Sprint(out.Result.Value)
}

// waitEval polls js until cond holds (the page reacts to a stream, so there is nothing to
// wait on but its DOM); bounded.
func (b *browser) waitEval(what, js string, cond func(string) bool) string {
	b.t.Helper()
	var v string
	deadline := time.Now().Add(20 * time.Second)
	for {
		v = b.eval(js)
		if cond(v) {
			return v
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("%s: never happened; last %q", what, v)
		}
		time.Sleep(50 * time.Millisecond) // polling the page's DOM; bounded by deadline
	}
}

func (b *browser) screenshot(dir, name string) {
	r := b.call("Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true})
	var out struct {
		Data string `json:"data"`
	}
	json.Unmarshal(r, &out)
	png, _ := base64.StdEncoding.DecodeString(out.Data)
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		b.t.Error(err)
	}
}

// visibleText is the text of what the customer sees now.
const visibleText = `document.body.innerText`

// smallTargets lists visible buttons smaller than 64 px either way.
const smallTargets = `[...document.querySelectorAll("button")].filter(b => b.offsetParent !== null)
	.map(b => [b.id, b.getBoundingClientRect()]).filter(([id, r]) => r.width < 64 || r.height < 64)
	.map(([id, r]) => id + ":" + Math.round(r.width) + "x" + Math.round(r.height)).join(",")`

// axeSource fetches axe-core with npm, or says why it cannot.
func axeSource(t *testing.T) (string, string) {
	if _, err := exec.LookPath("npm"); err != nil {
		return "", "npm not installed"
	}
	dir := t.TempDir()
	cmd := exec.Command("npm", "pack", "axe-core", "--silent")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return "", "npm pack axe-core: " + err.Error()
	}
	f, err := os.Open(filepath.Join(dir, strings.TrimSpace(string(out))))
	if err != nil {
		return "", err.Error()
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return "", err.Error()
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err != nil {
			return "", "axe.min.js not in the package"
		}
		if h.Name == "package/axe.min.js" {
			b, err := io.ReadAll(tr)
			if err != nil {
				return "", err.Error()
			}
			return string(b), ""
		}
	}
}

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
		b.call("Page.navigate", map[string]any{"url": srv.URL + "/"})
		b.waitEval("page language", `document.documentElement.lang`, func(s string) bool { return s == string(lang) })
		for _, sc := range scenarios() {
			f.set(func(v *session.View) {
				*v = session.View{Seq: v.Seq, State: "idle", Currency: "CNY"}
				sc.view(v)
			})
			seq := fmt.Sprint(f.View().Seq)
			b.waitEval(sc.name+" view", `document.getElementById("app").dataset.seq`, func(s string) bool { return s == seq })
			want := sc.want[lang]
			b.waitEval(fmt.Sprintf("%s (%s) shows %q", sc.name, lang, want), visibleText, func(s string) bool { return strings.Contains(s, want) })
			if sc.js != "" {
				b.waitEval(sc.name+" check", sc.js, func(s string) bool { return s == "true" })
			}
			if small := b.eval(smallTargets); small != "" {
				t.Errorf("%s (%s): touch targets under 64 px: %s", sc.name, lang, small)
			}
			if lang == i18n.ZH {
				// Nothing of the English catalogue leaks into the Chinese screen.
				if txt := b.eval(visibleText); regexp.MustCompile(`[A-Za-z]{4,} [A-Za-z]{3,} [A-Za-z]{3,}`).MatchString(txt) {
					t.Errorf("%s (zh): English text on screen: %q", sc.name, txt)
				}
			}
			if axe != "" {
				if b.eval(`typeof axe`) != "object" {
					b.eval(axe)
				}
				res := b.eval(`axe.run(document, {resultTypes: ["violations"]}).then(r => "checked:" + r.violations
					.filter(v => v.impact === "serious" || v.impact === "critical")
					.map(v => v.id + " " + v.nodes.map(n => n.target.join(" ")).join("; ")).join(" | "))`)
				if res != "checked:" {
					t.Errorf("%s (%s): accessibility: %q", sc.name, lang, res)
				}
			}
			b.screenshot(dir, fmt.Sprintf("%s-%s", lang, sc.name))
		}
		// The customer's button presses reach the engine with the page's token.
		f.set(func(v *session.View) {
			*v = session.View{Seq: v.Seq, State: "accepting", Currency: "CNY", IdleDeadlineUnixMs: time.Now().Add(10 * time.Second).UnixMilli(), IdleTimeoutMs: 60000}
		})
		b.waitEval("accepting", `document.getElementById("app").dataset.state`, func(s string) bool { return s == "accepting" })
		b.waitEval("countdown shown", `String(!document.getElementById("countdown").hidden)`, func(s string) bool { return s == "true" })
		b.eval(`document.getElementById("more-time").click()`)
		b.eval(`document.getElementById("finish").click()`)
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(strings.Join(f.pressed(), ","), "more_time") || !strings.Contains(strings.Join(f.pressed(), ","), "finish") {
			if time.Now().After(deadline) {
				t.Fatalf("presses from the page: %v", f.pressed())
			}
			time.Sleep(20 * time.Millisecond) // the page's fetch is on its way; bounded
		}
		// A kill of the daemon: the stream stops; the page must say so and disable its buttons.
		srv.CloseClientConnections()
		srv.Close()
		b.waitEval("daemon down", `document.getElementById("app").dataset.down`, func(s string) bool { return s == "1" })
		if d := b.eval(`String(document.getElementById("finish").disabled)`); d != "true" {
			t.Errorf("%s: finish still enabled with the daemon down", lang)
		}
		want := map[i18n.Lang]string{i18n.ZH: "本机暂时无法使用", i18n.EN: "cannot be used right now"}[lang]
		b.waitEval("down screen", visibleText, func(s string) bool { return strings.Contains(s, want) })
		b.screenshot(dir, fmt.Sprintf("%s-daemon-down", lang))
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
	defer func() { srv.CloseClientConnections(); srv.Close() }()
	b.call("Page.navigate", map[string]any{"url": srv.URL + "/"})
	b.waitEval("chinese first", visibleText, func(s string) bool { return strings.Contains(s, "付款码") })
	b.eval(`document.getElementById("lang").click()`)
	b.waitEval("english on a tap", `document.documentElement.lang + "|" + document.body.innerText`, func(s string) bool {
		return strings.HasPrefix(s, "en|") && strings.Contains(s, "payment QR code")
	})
	f.set(func(v *session.View) { v.State = "accepting"; v.TotalMinor = 5000 })
	b.waitEval("english session", `document.getElementById("total").textContent`, func(s string) bool { return s == "¥50.00" })
	f.set(func(v *session.View) {
		v.State, v.TotalMinor, v.MessageKey, v.MessageKind = "idle", 0, i18n.KeyCancelled, "info"
	})
	b.waitEval("next customer in chinese", `document.documentElement.lang`, func(s string) bool { return s == "zh-CN" })
	// A message said in a session does not stay on the idle screen for the next customer.
	b.waitEval("no leftover message", `document.getElementById("message").textContent`, func(s string) bool { return s == "" })

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
	defer func() { mute.CloseClientConnections(); mute.Close() }()
	b.call("Page.navigate", map[string]any{"url": mute.URL + "/"})
	b.waitEval("not starting forever", `document.getElementById("app").dataset.down`, func(s string) bool { return s == "1" })
}
