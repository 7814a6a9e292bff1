package ledger

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"time"

	"github.com/kioskd/kioskd/sync/wire"
)

// Handler returns the HTTP API and the fleet page (each Ledger has its own mux):
//
//	GET /                          fleet page (HTML, refreshes itself)
//	GET /api/accounts/{account}    balances and recent top-ups (AccountInfo)
//	GET /api/topups/{topup_id}     one top-up (TopupRecord)
//	GET /api/kiosks                fleet view ([]KioskView)
//	GET /api/suspense              uncertain items to settle ([]SuspenseRecord)
//	GET /api/stats                 counters (Stats)
//	GET /healthz                   200 when the store answers; says whether MQTT is up
//
// JSON uses snake_case; errors are {"error": "..."} with 400, 404, or 500.
func (l *Ledger) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", l.serveFleetPage)
	mux.HandleFunc("GET /api/accounts/{account}", func(w http.ResponseWriter, r *http.Request) {
		acct := r.PathValue("account")
		if !wire.ValidAccount(acct) {
			writeError(w, http.StatusBadRequest, "malformed account id")
			return
		}
		info, err := l.store.Account(acct)
		l.writeResult(w, info, err)
	})
	mux.HandleFunc("GET /api/topups/{topup_id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("topup_id")
		if _, _, _, err := wire.ParseTopupID(id); err != nil {
			writeError(w, http.StatusBadRequest, "malformed topup_id")
			return
		}
		rec, err := l.store.Topup(id)
		l.writeResult(w, rec, err)
	})
	mux.HandleFunc("GET /api/kiosks", func(w http.ResponseWriter, _ *http.Request) {
		ks, err := l.Kiosks()
		l.writeResult(w, ks, err)
	})
	mux.HandleFunc("GET /api/suspense", func(w http.ResponseWriter, _ *http.Request) {
		s, err := l.store.Suspense()
		if s == nil && err == nil {
			s = []SuspenseRecord{}
		}
		l.writeResult(w, s, err)
	})
	mux.HandleFunc("GET /api/stats", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, l.Stats())
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		st := l.Stats()
		body := map[string]any{"status": "ok", "mqtt_connected": st.MQTTConnected}
		if _, err := l.store.Watermark("healthz", 0); err != nil {
			body["status"] = "store_unavailable"
			writeJSON(w, http.StatusServiceUnavailable, body)
			return
		}
		writeJSON(w, http.StatusOK, body)
	})
	return mux
}

func (l *Ledger) writeResult(w http.ResponseWriter, v any, err error) {
	switch {
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, "not found")
	case err != nil:
		l.log.Error("ledger: http", "err", err)
		writeError(w, http.StatusInternalServerError, "internal error")
	default:
		writeJSON(w, http.StatusOK, v)
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // a client gone away is not our error
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

//go:embed fleet.html.tmpl
var templates embed.FS

var fleetTmpl = template.Must(template.New("fleet.html.tmpl").Funcs(template.FuncMap{
	"ago": ago,
}).ParseFS(templates, "fleet.html.tmpl"))

// fleetPage is the data the fleet page renders.
type fleetPage struct {
	Now     time.Time
	Refresh int
	Kiosks  []KioskView
	Stats   Stats
	KID     string
}

func (l *Ledger) serveFleetPage(w http.ResponseWriter, _ *http.Request) {
	ks, err := l.Kiosks()
	if err != nil {
		l.log.Error("ledger: fleet page", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	if err := renderFleet(&buf, fleetPage{Now: l.now(), Refresh: 5, Kiosks: ks, Stats: l.Stats(), KID: l.cfg.Signer.KID}); err != nil {
		l.log.Error("ledger: fleet page", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(buf.Bytes())
}

func renderFleet(w io.Writer, p fleetPage) error {
	return fleetTmpl.Execute(w, p)
}

// ago renders the age of t at now ("12s", "3m", "2h", "4d"; "never" for the zero time).
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	default:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
}
