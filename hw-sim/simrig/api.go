package simrig

import (
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

//go:embed panel.html
var panelFS embed.FS

// Handler is the control API:
//
//	GET  /                              the control panel
//	GET  /api/state                     every device's state and the pty paths
//	GET  /api/denominations             the acceptor's codes and values
//	POST /api/acceptor/insert           {"code":99} or {"value_minor":10000}
//	POST /api/acceptor/reject_next      {"reason":114}
//	POST /api/acceptor/jam              {"stacker":false} | {"next_stack":true} (jam the next note
//	                                    past the point of no return: an uncertain item)
//	POST /api/acceptor/clear_jam
//	POST /api/acceptor/cassette         {"action":"pull"|"replace"|"full"|"not_full"}
//	POST /api/acceptor/cheat
//	POST /api/acceptor/fail             {"code":162}
//	POST /api/acceptor/power_cycle      {"where":"auto"|"none"|"acceptor"|"stacker"}
//	POST /api/acceptor/fault            {"kind":"bad_crc"|"no_reply"|"garbage"|"split"|"slow","delay_ms":0}
//	POST /api/acceptor/swap             {"serial":1000002} (SSP only: another unit on the port)
//	GET  /api/acceptor/stacked          the emulator's log of notes in the cassette
//	GET  /api/acceptor/cassette/count   a collector's count of a cassette (?number=N; default the
//	                                    newest that holds notes): notes per denomination
//	POST /api/printer/set               {"paper_out":true,"near_end":false,"cover_open":false,"cutter_error":false}
//	GET  /api/printer/receipts          documents the printer received
//	POST /api/scanner/scan              {"payload":"..."} | {"wallet_account":"alice"} | {"raw_hex":"00ff"}
//	POST /api/sensors/set               {"pin":"SIM_VAULT_DOOR","active":true}
//	POST /api/technician/signoff        {"condition":"acceptor_fraud","who":"Li Wei","why":"string removed"}
//	                                    (needs a kioskd in this process: Rig.SetSignOff)
//	POST /api/line_speed                {"acceptor":true,"printer":true,"scanner":false} | {"devices":"all"}
func (r *Rig) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, req *http.Request) {
		b, _ := panelFS.ReadFile("panel.html")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(b)
	})
	mux.HandleFunc("GET /api/state", func(w http.ResponseWriter, req *http.Request) {
		r.signOffMu.Lock()
		signOff := r.signOff != nil
		r.signOffMu.Unlock()
		reply(w, map[string]any{"ready": r.Ready(), "acceptor": r.Acc.State(), "printer": r.Printer.State(), "scanner": r.Scanner.State(),
			"line_speed": r.LineSpeed(), "sensors": r.Sensors(), "signoff": signOff})
	})
	mux.HandleFunc("GET /api/denominations", func(w http.ResponseWriter, req *http.Request) {
		type d struct {
			Code       int    `json:"code"`
			ValueMinor int64  `json:"value_minor"`
			Currency   string `json:"currency"`
		}
		var out []d
		for c, n := range r.cfg.Denominations {
			out = append(out, d{c, n.ValueMinor, n.Currency})
		}
		slices.SortFunc(out, func(a, b d) int { return int(a.ValueMinor - b.ValueMinor) })
		reply(w, out)
	})
	post := func(path string, fn func(body map[string]json.RawMessage) (any, error)) {
		mux.HandleFunc("POST "+path, func(w http.ResponseWriter, req *http.Request) {
			body := map[string]json.RawMessage{}
			b, err := io.ReadAll(io.LimitReader(req.Body, 64<<10))
			if err == nil && len(strings.TrimSpace(string(b))) > 0 {
				err = json.Unmarshal(b, &body)
			}
			if err != nil {
				fail(w, http.StatusBadRequest, err)
				return
			}
			out, err := fn(body)
			if err != nil {
				fail(w, http.StatusConflict, err)
				return
			}
			if out == nil {
				out = map[string]bool{"ok": true}
			}
			reply(w, out)
		})
	}
	post("/api/acceptor/insert", func(b map[string]json.RawMessage) (any, error) {
		code, ok := intField(b, "code")
		if !ok {
			v, vok := intField(b, "value_minor")
			if !vok {
				return nil, errors.New("need code or value_minor")
			}
			if code, ok = r.Acc.CodeFor(int64(v)); !ok {
				return nil, errors.New("no denomination with that value")
			}
		}
		return nil, r.Acc.Insert(code)
	})
	post("/api/acceptor/reject_next", func(b map[string]json.RawMessage) (any, error) {
		reason, ok := intField(b, "reason")
		if !ok {
			return nil, errors.New("need reason")
		}
		r.Acc.RejectNext(reason)
		return nil, nil
	})
	post("/api/acceptor/jam", func(b map[string]json.RawMessage) (any, error) {
		if boolField(b, "next_stack") {
			return nil, r.JamNextStack()
		}
		r.Acc.Jam(boolField(b, "stacker"))
		return nil, nil
	})
	post("/api/acceptor/clear_jam", func(map[string]json.RawMessage) (any, error) { r.Acc.ClearJam(); return nil, nil })
	post("/api/acceptor/cassette", func(b map[string]json.RawMessage) (any, error) {
		switch strField(b, "action") {
		case "pull":
			return nil, r.Acc.PullCassette()
		case "replace":
			return nil, r.Acc.ReplaceCassette()
		case "full":
			r.Acc.SetCassetteFull(true)
		case "not_full":
			r.Acc.SetCassetteFull(false)
		default:
			return nil, errors.New("action must be pull, replace, full or not_full")
		}
		return nil, nil
	})
	post("/api/acceptor/cheat", func(map[string]json.RawMessage) (any, error) { r.Acc.Cheat(); return nil, nil })
	post("/api/acceptor/fail", func(b map[string]json.RawMessage) (any, error) {
		code, _ := intField(b, "code")
		r.Acc.Fail(code)
		return nil, nil
	})
	post("/api/acceptor/power_cycle", func(b map[string]json.RawMessage) (any, error) {
		return nil, r.Acc.PowerCycle(strField(b, "where"))
	})
	post("/api/acceptor/fault", func(b map[string]json.RawMessage) (any, error) {
		ms, _ := intField(b, "delay_ms")
		return nil, r.Acc.Fault(strField(b, "kind"), time.Duration(ms)*time.Millisecond)
	})
	post("/api/acceptor/swap", func(b map[string]json.RawMessage) (any, error) {
		sw, ok := r.Acc.(UnitSwapper)
		if !ok {
			return nil, fmt.Errorf("the %s emulator cannot swap its unit: its driver checks no serial number", r.cfg.Acceptor)
		}
		serial, ok := intField(b, "serial")
		if !ok || serial <= 0 || int64(serial) > math.MaxUint32 {
			return nil, errors.New("need serial, a positive 32-bit number")
		}
		return nil, sw.SwapUnit(uint32(serial))
	})
	mux.HandleFunc("GET /api/acceptor/stacked", func(w http.ResponseWriter, req *http.Request) { reply(w, nonNil(r.Acc.Stacked())) })
	mux.HandleFunc("GET /api/acceptor/cassette/count", func(w http.ResponseWriter, req *http.Request) {
		n := 0
		if v := req.URL.Query().Get("number"); v != "" {
			var err error
			if n, err = strconv.Atoi(v); err != nil || n < 0 {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusBadRequest)
				w.Write([]byte(`{"error":"number must be a cassette number"}` + "\n"))
				return
			}
		}
		reply(w, r.CountCassette(n))
	})
	post("/api/printer/set", func(b map[string]json.RawMessage) (any, error) {
		if _, ok := b["paper_out"]; ok {
			r.Printer.SetPaperOut(boolField(b, "paper_out"))
		}
		if _, ok := b["near_end"]; ok {
			r.Printer.SetNearEnd(boolField(b, "near_end"))
		}
		if _, ok := b["cover_open"]; ok {
			r.Printer.SetCoverOpen(boolField(b, "cover_open"))
		}
		if _, ok := b["cutter_error"]; ok {
			r.Printer.SetCutterError(boolField(b, "cutter_error"))
		}
		return r.Printer.State(), nil
	})
	post("/api/line_speed", r.lineSpeedAPI)
	post("/api/sensors/set", func(b map[string]json.RawMessage) (any, error) {
		return nil, r.SetSensor(strField(b, "pin"), boolField(b, "active"))
	})
	mux.HandleFunc("POST /api/technician/signoff", func(w http.ResponseWriter, req *http.Request) {
		var b struct{ Condition, Who, Why string }
		if err := json.NewDecoder(io.LimitReader(req.Body, 8<<10)).Decode(&b); err != nil {
			fail(w, http.StatusBadRequest, err)
			return
		}
		r.signOffMu.Lock()
		f := r.signOff
		r.signOffMu.Unlock()
		if f == nil {
			fail(w, http.StatusNotImplemented, errors.New("no kiosk in this process to sign off on: run make demo, or use the kiosk's service menu"))
			return
		}
		if err := f(req.Context(), b.Condition, b.Who, b.Why); err != nil {
			fail(w, http.StatusConflict, err)
			return
		}
		reply(w, map[string]bool{"ok": true})
	})
	mux.HandleFunc("GET /api/printer/receipts", func(w http.ResponseWriter, req *http.Request) { reply(w, nonNil(r.Printer.Documents())) })
	post("/api/scanner/scan", func(b map[string]json.RawMessage) (any, error) {
		switch {
		case b["payload"] != nil:
			return nil, r.Scan(strField(b, "payload"))
		case b["wallet_account"] != nil:
			code, err := r.ScanWallet(strField(b, "wallet_account"))
			return map[string]string{"payload": code}, err
		case b["raw_hex"] != nil:
			raw, err := hex.DecodeString(strField(b, "raw_hex"))
			if err != nil {
				return nil, err
			}
			return nil, r.Scanner.ScanRaw(raw)
		}
		return nil, errors.New("need payload, wallet_account or raw_hex")
	})
	return mux
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}

func intField(b map[string]json.RawMessage, k string) (int, bool) {
	raw, ok := b[k]
	if !ok {
		return 0, false
	}
	var v int
	if json.Unmarshal(raw, &v) != nil {
		return 0, false
	}
	return v, true
}

func boolField(b map[string]json.RawMessage, k string) bool {
	var v bool
	_ = json.Unmarshal(b[k], &v)
	return v
}

func strField(b map[string]json.RawMessage, k string) string {
	var v string
	_ = json.Unmarshal(b[k], &v)
	return v
}
