package fleet

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
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

	"github.com/kioskd/kioskd/sync/wire"
)

// browser drives a headless Chromium over the DevTools protocol (JSON over a WebSocket).
type browser struct {
	t    *testing.T
	ws   *websocket.Conn
	mu   sync.Mutex
	id   int
	wait map[int]chan json.RawMessage
	done chan struct{}
}

func chromiumPath(t *testing.T) string {
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("KIOSKD_REQUIRE_SERVICES") != "" {
		t.Fatal("chromium is required (KIOSKD_REQUIRE_SERVICES is set) but not installed")
	}
	t.Skip("chromium not installed: skipping the console browser test (apt-get install chromium; .ci/run does)")
	return ""
}

var devtoolsURL = regexp.MustCompile(`DevTools listening on (ws://\S+)`)

func launch(t *testing.T) *browser {
	bin := chromiumPath(t)
	profile, err := os.MkdirTemp("", "fleetd-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--user-data-dir="+profile,
		"--remote-debugging-port=0", "--window-size=1280,900", "about:blank")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		os.RemoveAll(profile)
	})
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := devtoolsURL.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
	}()
	var wsURL string
	select {
	case wsURL = <-found:
	case <-time.After(30 * time.Second):
		t.Fatal("chromium did not open its DevTools endpoint")
	}
	hostport := strings.TrimPrefix(wsURL, "ws://")
	hostport = hostport[:strings.IndexByte(hostport, '/')]
	var page string
	for deadline := time.Now().Add(10 * time.Second); page == "" && time.Now().Before(deadline); {
		var targets []struct {
			Type string `json:"type"`
			WS   string `json:"webSocketDebuggerUrl"`
		}
		if res, err := http.Get("http://" + hostport + "/json/list"); err == nil {
			json.NewDecoder(res.Body).Decode(&targets)
			res.Body.Close()
		}
		for _, tg := range targets {
			if tg.Type == "page" {
				page = tg.WS
			}
		}
		if page == "" {
			time.Sleep(50 * time.Millisecond) // bounded: the first page target is appearing
		}
	}
	if page == "" {
		t.Fatal("chromium has no page target")
	}
	ws, _, err := websocket.DefaultDialer.Dial(page, nil)
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
		if b.ws.ReadJSON(&msg) != nil {
			return
		}
		if msg.ID == 0 {
			continue // an event
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
	b.id++
	id := b.id
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
	case <-time.After(20 * time.Second):
		b.t.Fatalf("devtools %s: no answer", method)
	}
	return nil
}

func (b *browser) eval(js string) string {
	b.t.Helper()
	var out struct {
		Result struct {
			Value any `json:"value"`
		} `json:"result"`
	}
	json.Unmarshal(b.call("Runtime.evaluate", map[string]any{"expression": js, "returnByValue": true}), &out)
	return fmt.Sprint(out.Result.Value)
}

// until evaluates js until cond holds, with a deadline: the page loads and updates itself
// asynchronously.
func (b *browser) until(what, js string, cond func(string) bool) string {
	b.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		v := b.eval(js)
		if cond(v) {
			return v
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("%s: still %q", what, v)
		}
		time.Sleep(25 * time.Millisecond) // polling a page condition, bounded by the deadline
	}
}

func (b *browser) open(url string) {
	b.t.Helper()
	b.call("Page.navigate", map[string]any{"url": url})
	b.until("page load of "+url, `document.readyState + " " + location.href`, func(s string) bool {
		return strings.HasPrefix(s, "complete ") && strings.Contains(s, url[strings.Index(url, "//")+2:])
	})
}

func (b *browser) shot(dir, name string) {
	b.t.Helper()
	var out struct {
		Data string `json:"data"`
	}
	json.Unmarshal(b.call("Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true}), &out)
	png, err := base64.StdEncoding.DecodeString(out.Data)
	if err != nil || len(png) < 100 {
		b.t.Fatalf("screenshot %s: %v (%d bytes)", name, err, len(png))
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// TestConsoleInChromium: an operator's browser shows the overview and a kiosk page, follows
// live updates, acknowledges an alarm, and sends a command through the confirmation page;
// the same overview fits a phone's width. KIOSKD_SCREENSHOTS=dir keeps the screenshots.
func TestConsoleInChromium(t *testing.T) {
	br := launch(t)
	w := newWebRig(t)
	w.seed()
	shots := os.Getenv("KIOSKD_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	// The operator's login, as the browser sends it after the Basic prompt.
	br.call("Network.enable", map[string]any{})
	br.call("Network.setExtraHTTPHeaders", map[string]any{"headers": map[string]string{
		"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:"+secret))}})

	br.open(w.srv.URL + "/")
	br.until("overview counts", `document.getElementById("count-degraded").textContent`, func(s string) bool { return s == "1" })
	if s := br.eval(`document.getElementById("needs-staff").textContent`); s != "1" {
		t.Errorf("needs staff shows %q", s)
	}
	br.shot(shots, "fleet-overview.png")

	br.open(w.srv.URL + "/kiosk/K1")
	br.until("cassette fill", `document.getElementById("fill").textContent`, func(s string) bool { return s == "45%" })
	br.shot(shots, "fleet-kiosk.png")

	// Live update: a new heartbeat shows up without a reload.
	br.eval(`window.__marker = 1`)
	w.send("K1", wire.UpHeartbeat, wire.Heartbeat{V: 1, SessionState: "idle", Cassette: &wire.Cassette{Notes: 950, Capacity: 1000, FillRatio: 0.95}})
	br.until("live cassette fill", `document.getElementById("fill").textContent`, func(s string) bool { return s == "95%" })
	if br.eval(`String(window.__marker)`) != "1" {
		t.Error("the page reloaded instead of updating itself")
	}

	// Acknowledge.
	br.eval(`document.querySelector("tr[data-alarm='cond:printer_paper_out'] button.ack").click()`)
	br.until("acknowledged", `document.querySelector("tr[data-alarm='cond:printer_paper_out']").textContent`,
		func(s string) bool { return strings.Contains(s, "alice,") })
	if a := w.alarm("K1", "cond:printer_paper_out"); a.AckedBy != "alice" {
		t.Fatalf("store: acknowledged by %q", a.AckedBy)
	}
	br.shot(shots, "fleet-kiosk-acknowledged.png")

	// A command: choose, review, confirm.
	br.eval(`document.getElementById("kind").value = "reprint"; document.getElementById("receipt_no").value = "118"; document.getElementById("cmdsubmit").click()`)
	br.until("confirmation page", `document.getElementById("confirm") ? "yes" : "no"`, func(s string) bool { return s == "yes" })
	br.shot(shots, "fleet-command-confirm.png")
	if n := len(w.pub.msgs); n != 0 {
		t.Fatalf("%d commands sent before confirmation", n)
	}
	br.eval(`document.getElementById("confirm").click()`)
	br.until("sent flash", `(document.getElementById("flash")||{}).textContent || ""`, func(s string) bool { return strings.HasPrefix(s, "sent reprint") })
	w.pub.mu.Lock()
	msgs := w.pub.msgs
	w.pub.mu.Unlock()
	if len(msgs) != 1 {
		t.Fatalf("%d commands published", len(msgs))
	}
	var cmd wire.Command
	if _, err := (wire.Keyring{"ops-1": w.opsPK}).Open(msgs[0].payload, &cmd); err != nil || cmd.Kind != wire.CmdReprint || string(cmd.Args) != `{"receipt_no":118}` {
		t.Fatalf("command %+v: %v", cmd, err)
	}
	if !strings.Contains(br.eval(`document.getElementById("commands").textContent`), "reprint") {
		t.Error("the command history does not list the command")
	}
	br.shot(shots, "fleet-command-sent.png")

	// A phone: the overview fits the width (wide tables scroll inside their box).
	br.call("Emulation.setDeviceMetricsOverride", map[string]any{"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": true})
	br.open(w.srv.URL + "/")
	br.until("phone overview", `document.getElementById("total").textContent`, func(s string) bool { return s == "1" })
	if fits := br.eval(`String(document.documentElement.scrollWidth <= window.innerWidth)`); fits != "true" {
		t.Errorf("the overview is wider than a phone: %s > %s", br.eval(`String(document.documentElement.scrollWidth)`), br.eval(`String(window.innerWidth)`))
	}
	br.shot(shots, "fleet-overview-phone.png")
	br.open(w.srv.URL + "/kiosk/K1")
	br.until("phone kiosk page", `document.getElementById("fill").textContent`, func(s string) bool { return s == "95%" })
	if fits := br.eval(`String(document.documentElement.scrollWidth <= window.innerWidth)`); fits != "true" {
		t.Errorf("the kiosk page is wider than a phone: %s", br.eval(`String(document.documentElement.scrollWidth)`))
	}
	br.shot(shots, "fleet-kiosk-phone.png")
}
