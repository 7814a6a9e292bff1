package ui

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

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

func (f *fakeEngine) Cancel() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.presses = append(f.presses, "cancel")
	return nil
}

func TestStateAndButtons(t *testing.T) {
	f := newFake()
	srv := httptest.NewServer(Handler(Config{Engine: f}))
	defer srv.Close()
	res, err := http.Get(srv.URL + "/api/state")
	if err != nil {
		t.Fatal(err)
	}
	var v session.View
	json.NewDecoder(res.Body).Decode(&v)
	res.Body.Close()
	if v.State != "idle" || v.Currency != "CNY" {
		t.Fatalf("state %+v", v)
	}
	res, _ = http.Post(srv.URL+"/api/finish", "", nil)
	if res.StatusCode != http.StatusConflict {
		t.Fatalf("finish while idle: %d", res.StatusCode)
	}
	f.set(func(v *session.View) { v.State = "accepting" })
	res, _ = http.Post(srv.URL+"/api/finish", "", nil)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("finish while accepting: %d", res.StatusCode)
	}
	req, _ := http.NewRequest("POST", srv.URL+"/api/cancel", nil)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	res, _ = http.DefaultClient.Do(req)
	if res.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site cancel: %d", res.StatusCode)
	}
	if len(f.presses) != 2 {
		t.Fatalf("presses %v", f.presses)
	}
	res, _ = http.Get(srv.URL + "/")
	body := make([]byte, 4096)
	n, _ := res.Body.Read(body)
	if !strings.Contains(string(body[:n]), "Show the payment QR code") {
		t.Fatalf("page: %s", body[:n])
	}
}

func TestEventStream(t *testing.T) {
	f := newFake()
	srv := httptest.NewServer(Handler(Config{Engine: f, KeepAlive: time.Hour}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/events", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	next := func() session.View {
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var v session.View
				if err := json.Unmarshal([]byte(d), &v); err != nil {
					t.Fatal(err)
				}
				return v
			}
		}
		t.Fatalf("stream ended: %v", sc.Err())
		return session.View{}
	}
	if v := next(); v.State != "idle" {
		t.Fatalf("first event %+v", v)
	}
	f.set(func(v *session.View) { v.State = "accepting"; v.TotalMinor = 5000 })
	if v := next(); v.State != "accepting" || v.TotalMinor != 5000 {
		t.Fatalf("second event %+v", v)
	}
}
