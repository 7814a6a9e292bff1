package simrig

import (
	"encoding/json"
	"net/http"
	"testing"
)

func TestParseLineSpeed(t *testing.T) {
	for in, want := range map[string]LineSpeed{
		"":                 {},
		"none":             {},
		"all":              {Acceptor: true, Printer: true, Scanner: true},
		"printer":          {Printer: true},
		"acceptor,scanner": {Acceptor: true, Scanner: true},
	} {
		got, err := ParseLineSpeed(in)
		if err != nil || got != want {
			t.Errorf("ParseLineSpeed(%q) = %+v, %v; want %+v", in, got, err, want)
		}
		if back, _ := ParseLineSpeed(got.String()); back != got {
			t.Errorf("%+v does not survive String (%q)", got, got.String())
		}
	}
	if _, err := ParseLineSpeed("printer,modem"); err == nil {
		t.Error("unknown device accepted")
	}
}

// The control API switches line-speed mode per device and the state says what is on.
func TestAPILineSpeed(t *testing.T) {
	srv := startRig(t, "ccnet")
	if code, body := postJSON(t, srv, "/api/line_speed", `{"printer":true}`); code != http.StatusOK {
		t.Fatalf("line speed: %d %s", code, body)
	}
	if code, body := postJSON(t, srv, "/api/line_speed", `{"acceptor":true}`); code != http.StatusOK {
		t.Fatalf("line speed: %d %s", code, body)
	}
	state := func() LineSpeed {
		res, err := http.Get(srv.URL + "/api/state")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var st struct {
			LineSpeed LineSpeed `json:"line_speed"`
		}
		if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
			t.Fatal(err)
		}
		return st.LineSpeed
	}
	if got := state(); got != (LineSpeed{Acceptor: true, Printer: true}) {
		t.Fatalf("line speed %+v", got)
	}
	if code, body := postJSON(t, srv, "/api/line_speed", `{"devices":"none"}`); code != http.StatusOK {
		t.Fatalf("line speed off: %d %s", code, body)
	}
	if got := state(); got != (LineSpeed{}) {
		t.Fatalf("line speed after none: %+v", got)
	}
	if code, _ := postJSON(t, srv, "/api/line_speed", `{"devices":"modem"}`); code != http.StatusConflict {
		t.Fatalf("unknown device: %d", code)
	}
}
