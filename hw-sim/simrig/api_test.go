package simrig

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func startRig(t *testing.T, protocol string) *httptest.Server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	r, err := Start(ctx, Config{Acceptor: protocol, Denominations: DemoDenominations(protocol, "EUR")})
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	srv := httptest.NewServer(r.Handler())
	t.Cleanup(srv.Close)
	return srv
}

func postJSON(t *testing.T, srv *httptest.Server, path, body string) (int, string) {
	t.Helper()
	res, err := http.Post(srv.URL+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// The unit swap reaches the SSP emulator (its serial changes, which the driver's GET SERIAL
// check then sees) and is refused, with the reason, for a protocol whose driver checks none.
func TestAPISwapUnit(t *testing.T) {
	srv := startRig(t, "ssp")
	if code, body := postJSON(t, srv, "/api/acceptor/swap", `{"serial":4242}`); code != http.StatusOK {
		t.Fatalf("swap: %d %s", code, body)
	}
	res, err := http.Get(srv.URL + "/api/state")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var st struct {
		Acceptor struct {
			Serial uint32 `json:"serial"`
		} `json:"acceptor"`
	}
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	if st.Acceptor.Serial != 4242 {
		t.Errorf("serial after the swap %d, want 4242", st.Acceptor.Serial)
	}
	for _, bad := range []string{`{}`, `{"serial":0}`, `{"serial":"x"}`, `{"serial":-5}`} {
		if code, _ := postJSON(t, srv, "/api/acceptor/swap", bad); code == http.StatusOK {
			t.Errorf("swap %s accepted", bad)
		}
	}

	srv = startRig(t, "id003")
	code, body := postJSON(t, srv, "/api/acceptor/swap", `{"serial":4242}`)
	if code != http.StatusConflict || !strings.Contains(body, "cannot swap") {
		t.Errorf("swap on id003: %d %s, want a conflict saying why", code, body)
	}
}

// Malformed control requests get a 400 with the reason, never a panic.
func TestAPIBadRequests(t *testing.T) {
	srv := startRig(t, "id003")
	for path, body := range map[string]string{
		"/api/acceptor/insert":   `{"code":`,
		"/api/acceptor/cassette": `[1,2]`,
	} {
		if code, _ := postJSON(t, srv, path, body); code != http.StatusBadRequest {
			t.Errorf("%s %s: %d, want 400", path, body, code)
		}
	}
	if code, body := postJSON(t, srv, "/api/acceptor/cassette", `{"action":"shake"}`); code != http.StatusConflict || !strings.Contains(body, "action must be") {
		t.Errorf("unknown cassette action: %d %s", code, body)
	}
}

// The panel's doors and tamper switch drive the simulated pins and show in the state; the
// sign-off reaches the kiosk wired in (and says so when there is none).
func TestAPISensorsAndSignOff(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	r, err := Start(ctx, Config{Acceptor: "id003", Denominations: DemoDenominations("id003", "EUR")})
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	srv := httptest.NewServer(r.Handler())
	t.Cleanup(srv.Close)

	if code, body := postJSON(t, srv, "/api/sensors/set", `{"pin":"SIM_TAMPER","active":true}`); code != http.StatusOK {
		t.Fatalf("tamper: %d %s", code, body)
	}
	if code, _ := postJSON(t, srv, "/api/sensors/set", `{"pin":"SIM_NO_SUCH","active":true}`); code == http.StatusOK {
		t.Fatal("unknown pin accepted")
	}
	state := func() (sensors map[string]bool, signoff bool) {
		res, err := http.Get(srv.URL + "/api/state")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var st struct {
			Sensors map[string]bool `json:"sensors"`
			SignOff bool            `json:"signoff"`
		}
		if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
			t.Fatal(err)
		}
		return st.Sensors, st.SignOff
	}
	if s, so := state(); !s[PinTamper] || s[PinCabinetDoor] || so {
		t.Fatalf("state: sensors %v, signoff %v", s, so)
	}

	body := `{"condition":"acceptor_fraud","who":"Li Wei","why":"string removed"}`
	if code, out := postJSON(t, srv, "/api/technician/signoff", body); code != http.StatusNotImplemented || !strings.Contains(out, "make demo") {
		t.Fatalf("sign-off without a kiosk: %d %s", code, out)
	}
	var got []string
	r.SetSignOff(func(_ context.Context, cond, who, why string) error {
		got = append(got, cond, who, why)
		if cond != "acceptor_fraud" {
			return errors.New("nothing to sign off")
		}
		return nil
	})
	if _, so := state(); !so {
		t.Fatal("sign-off not shown as available")
	}
	if code, out := postJSON(t, srv, "/api/technician/signoff", body); code != http.StatusOK {
		t.Fatalf("sign-off: %d %s", code, out)
	}
	if strings.Join(got, "|") != "acceptor_fraud|Li Wei|string removed" {
		t.Fatalf("the kiosk got %q", got)
	}
	if code, out := postJSON(t, srv, "/api/technician/signoff", `{"condition":"tamper","who":"x","why":"y"}`); code != http.StatusConflict || !strings.Contains(out, "nothing to sign off") {
		t.Fatalf("refused sign-off: %d %s", code, out)
	}
}
