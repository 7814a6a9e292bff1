package e2e

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
)

// chromium drives a headless Chromium over the DevTools protocol: enough to load the customer
// page, read the DOM and click its buttons the way the kiosk browser does.
type chromium struct {
	t    *testing.T
	cmd  *exec.Cmd
	ws   *websocket.Conn
	mu   sync.Mutex
	next int
	wait map[int]chan json.RawMessage
	done chan struct{}
}

func findChromium(t *testing.T) string {
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("KIOSKD_REQUIRE_SERVICES") != "" {
		t.Fatal("chromium is required (KIOSKD_REQUIRE_SERVICES is set) but not installed")
	}
	t.Skip("chromium not installed: skipping the customer page browser test (apt-get install chromium; .ci/run does)")
	return ""
}

var devtoolsRe = regexp.MustCompile(`DevTools listening on (ws://\S+)`)

func startChromium(t *testing.T) *chromium {
	bin := findChromium(t)
	// Chromium's profile directory is removed by hand after the whole process group is
	// gone: its helper processes may still write there for a moment after the browser exits.
	profile, err := os.MkdirTemp("", "kioskd-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
		"--user-data-dir="+profile, "--remote-debugging-port=0", "--window-size=1024,768", "about:blank")
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
			time.Sleep(20 * time.Millisecond) // helpers still exiting; bounded
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
	// The page target's own endpoint, from /json/list on the same host:port.
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
	c := &chromium{t: t, cmd: cmd, ws: ws, wait: map[int]chan json.RawMessage{}, done: make(chan struct{})}
	go c.read()
	t.Cleanup(func() { ws.Close(); <-c.done })
	return c
}

func (c *chromium) read() {
	defer close(c.done)
	for {
		var msg struct {
			ID     int             `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  json.RawMessage `json:"error"`
		}
		if err := c.ws.ReadJSON(&msg); err != nil {
			return
		}
		if msg.ID == 0 {
			continue // an event
		}
		c.mu.Lock()
		ch := c.wait[msg.ID]
		delete(c.wait, msg.ID)
		c.mu.Unlock()
		if ch != nil {
			if msg.Error != nil {
				ch <- msg.Error
			} else {
				ch <- msg.Result
			}
		}
	}
}

func (c *chromium) call(method string, params any) json.RawMessage {
	c.t.Helper()
	c.mu.Lock()
	c.next++
	id := c.next
	ch := make(chan json.RawMessage, 1)
	c.wait[id] = ch
	err := c.ws.WriteJSON(map[string]any{"id": id, "method": method, "params": params})
	c.mu.Unlock()
	if err != nil {
		c.t.Fatal(err)
	}
	select {
	case r := <-ch:
		return r
	case <-time.After(20 * time.Second):
		c.t.Fatalf("devtools %s: no answer", method)
	}
	return nil
}

// eval runs JavaScript in the page and returns its value as a string.
func (c *chromium) eval(js string) string {
	c.t.Helper()
	r := c.call("Runtime.evaluate", map[string]any{"expression": js, "returnByValue": true})
	var out struct {
		Result struct {
			Value any `json:"value"`
		} `json:"result"`
	}
	json.Unmarshal(r, &out)
	return fmt.Sprint(out.Result.Value)
}

func (c *chromium) waitEval(e *env, what, js string, cond func(string) bool) string {
	c.t.Helper()
	var v string
	e.waitFor(what, func() bool { v = c.eval(js); return cond(v) })
	return v
}

func (c *chromium) screenshot(path string) {
	r := c.call("Page.captureScreenshot", map[string]any{"format": "png"})
	var out struct {
		Data string `json:"data"`
	}
	json.Unmarshal(r, &out)
	b, _ := base64.StdEncoding.DecodeString(out.Data)
	os.WriteFile(path, b, 0o644)
}

// TestCustomerPageInChromium follows a whole top-up on the customer page in a real browser:
// the page follows the live view stream, and its Finish button ends the session.
func TestCustomerPageInChromium(t *testing.T) {
	e := newEnv(t, options{sessionMax: 15000})
	br := startChromium(t)
	e.startKiosk("")
	e.waitOnline()
	br.call("Page.navigate", map[string]any{"url": e.kioskURL + "/"})
	state := `document.getElementById("app").dataset.state`
	br.waitEval(e, "idle screen", state, func(s string) bool { return s == "idle" })
	if txt := br.eval(`document.querySelector("#screen-idle").innerText`); !strings.Contains(txt, "payment QR code") {
		t.Fatalf("idle screen text %q", txt)
	}
	e.scan("gina")
	br.waitEval(e, "accepting screen", state, func(s string) bool { return s == "accepting" })
	e.insert(10000)
	br.waitEval(e, "running total", `document.getElementById("total").textContent`, func(s string) bool { return s == "¥100.00" })
	if rem := br.eval(`document.getElementById("remaining").textContent`); rem != "¥50.00" {
		t.Fatalf("remaining shows %q", rem)
	}
	// Over the limit: the page shows the reason.
	e.insert(10000)
	br.waitEval(e, "over-limit reason", `document.getElementById("message").textContent`, func(s string) bool { return strings.Contains(s, "over your limit") })
	// KIOSKD_SCREENSHOTS=dir keeps screenshots for a human look.
	shots := os.Getenv("KIOSKD_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	br.screenshot(filepath.Join(shots, "customer-accepting.png"))
	// The customer presses Finish in the browser.
	br.eval(`document.getElementById("finish").click()`)
	br.waitEval(e, "credited screen", `document.getElementById("result-title").textContent`, func(s string) bool { return s == "Credited to your wallet" })
	if n := br.eval(`document.getElementById("result-receipt").textContent`); n != "00000001" {
		t.Fatalf("receipt number on the page %q", n)
	}
	if amt := br.eval(`document.getElementById("result-amount").textContent`); amt != "¥100.00" {
		t.Fatalf("amount on the page %q", amt)
	}
	v := e.view()
	if ref := br.eval(`document.getElementById("result-ref").textContent`); v.Result == nil || ref != v.Result.TopupID {
		t.Fatalf("reference on the page %q, API %+v", ref, v.Result)
	}
	br.screenshot(filepath.Join(shots, "customer-credited.png"))
	if a := e.account("gina"); a.Balances["CNY"] != 10000 {
		t.Fatalf("ledger %+v", a)
	}
}
