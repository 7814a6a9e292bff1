// Package uitest drives a headless Chromium over the DevTools protocol for the browser tests
// of the kiosk's screens (the customer screen, the service menu). Test support only: the
// products never link it.
package uitest

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
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

// Browser drives a headless Chromium over the DevTools protocol: load a page, read its DOM,
// click its buttons, take screenshots.
type Browser struct {
	t    *testing.T
	ws   *websocket.Conn
	mu   sync.Mutex
	next int
	wait map[int]chan json.RawMessage
	done chan struct{}
}

// RequireServices reports whether a missing Chromium fails the test (KIOSKD_REQUIRE_SERVICES).
func RequireServices() bool { return os.Getenv("KIOSKD_REQUIRE_SERVICES") != "" }

// FindChromium returns the browser's path, or skips the test (fails it when services are
// required).
func FindChromium(t *testing.T) string {
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if RequireServices() {
		t.Fatal("chromium is required (KIOSKD_REQUIRE_SERVICES is set) but not installed")
	}
	t.Skip("chromium not installed: skipping the browser tests")
	return ""
}

var devtoolsRe = regexp.MustCompile(`DevTools listening on (ws://\S+)`)

// Start starts a headless Chromium for the test; it ends with the test.
func Start(t *testing.T) *Browser {
	bin := FindChromium(t)
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
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
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
			_ = json.NewDecoder(res.Body).Decode(&targets)
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
	b := &Browser{t: t, ws: ws, wait: map[int]chan json.RawMessage{}, done: make(chan struct{})}
	go b.read()
	t.Cleanup(func() { _ = ws.Close(); <-b.done })
	return b
}

func (b *Browser) read() {
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

// Call sends one DevTools command and returns its result.
func (b *Browser) Call(method string, params any) json.RawMessage {
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

// Eval runs JavaScript in the page (awaiting a promise) and returns its value as a string.
func (b *Browser) Eval(js string) string {
	b.t.Helper()
	r := b.Call("Runtime.evaluate", map[string]any{"expression": js, "returnByValue": true, "awaitPromise": true})
	var out struct {
		Result struct {
			Value any `json:"value"`
		} `json:"result"`
	}
	_ = json.Unmarshal(r, &out)
	if out.Result.Value == nil {
		return ""
	}
	return fmt.Sprint(out.Result.Value)
}

// WaitEval polls js until cond holds (the page reacts to a stream, so there is nothing to
// wait on but its DOM); bounded.
func (b *Browser) WaitEval(what, js string, cond func(string) bool) string {
	b.t.Helper()
	var v string
	deadline := time.Now().Add(20 * time.Second)
	for {
		v = b.Eval(js)
		if cond(v) {
			return v
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("%s: never happened; last %q", what, v)
		}
		time.Sleep(50 * time.Millisecond) // polling the page's DOM; bounded by deadline
	}
}

// Screenshot saves a PNG of the page as dir/name.png.
func (b *Browser) Screenshot(dir, name string) {
	r := b.Call("Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true})
	var out struct {
		Data string `json:"data"`
	}
	_ = json.Unmarshal(r, &out)
	png, _ := base64.StdEncoding.DecodeString(out.Data)
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		b.t.Error(err)
	}
}

// VisibleText is the text of what the page shows now.
const VisibleText = `document.body.innerText`

// SmallTargets lists visible buttons smaller than 64 px either way.
const SmallTargets = `[...document.querySelectorAll("button")].filter(b => b.offsetParent !== null)
	.map(b => [b.id, b.getBoundingClientRect()]).filter(([id, r]) => r.width < 64 || r.height < 64)
	.map(([id, r]) => id + ":" + Math.round(r.width) + "x" + Math.round(r.height)).join(",")`

// AxeSource fetches axe-core with npm, or says why it cannot.
func AxeSource(t *testing.T) (string, string) {
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
