package ledger

import (
	"bytes"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kioskd/kioskd/sync/wire"
)

// Handler returns the HTTP API and the fleet page (each Ledger has its own mux):
//
//	GET /                          fleet page (HTML, refreshes itself)
//	GET /api/accounts/{account}    balances and recent top-ups (AccountInfo)
//	GET /api/topups/{topup_id}     one top-up (TopupRecord)
//	GET /api/kiosks                fleet view ([]KioskView)
//	GET /api/suspense              uncertain items, open and decided ([]SuspenseRecord)
//	GET /api/held                  held top-ups ([]HeldRecord); ?status=held|released|rejected
//	GET /api/held/{topup_id}       one held top-up (HeldRecord)
//	GET /api/alarms                alarms the ledger raised for operations ([]OpsAlarm)
//	GET /api/collections           cash collection records ([]CollectionRecord); ?kiosk=ID
//	GET /api/collections/{id}      one record with its uncertain items' suspense records
//	                               (CollectionView)
//	POST /api/held/{topup_id}/release     credit a held top-up     } body {"operator": name,
//	POST /api/held/{topup_id}/reject      close it without credit  }   "note": text}, header
//	POST /api/suspense/{ref}/release      credit an uncertain item }   Authorization: Bearer
//	POST /api/suspense/{ref}/reject       close it without credit  }   <that operator's token>
//
// A decision on a suspense record may name the cash collection whose count is its evidence
// ("collection_id": the record must be one of its items) and, for a record that lacks them,
// the customer's "account" and the note's "value_minor" a release credits.
//
//	GET /api/stats                 counters (Stats)
//	GET /healthz                   200 when the store answers; says whether MQTT is up
//	GET /metrics                   Prometheus metrics (counters of Stats; no ids in labels)
//
// JSON uses snake_case; errors are {"error": "..."} with 400, 401 (no or wrong token for the
// operator), 404, 409 (decided before), 413 or 500. A decision answers the updated record.
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
	mux.HandleFunc("GET /api/held", func(w http.ResponseWriter, r *http.Request) {
		st := r.URL.Query().Get("status")
		if st != "" && st != HeldOpen && st != HeldReleased && st != HeldRejected {
			writeError(w, http.StatusBadRequest, "status must be held, released or rejected")
			return
		}
		hs, err := l.store.Held(st)
		l.writeResult(w, hs, err)
	})
	mux.HandleFunc("GET /api/held/{topup_id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("topup_id")
		if _, _, _, err := wire.ParseTopupID(id); err != nil {
			writeError(w, http.StatusBadRequest, "malformed topup_id")
			return
		}
		h, err := l.store.HeldTopup(id)
		l.writeResult(w, h, err)
	})
	mux.HandleFunc("GET /api/alarms", func(w http.ResponseWriter, _ *http.Request) {
		as, err := l.store.Alarms()
		l.writeResult(w, as, err)
	})
	l.collectionRoutes(mux)
	mux.HandleFunc("POST /api/held/{topup_id}/{action}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("topup_id")
		if _, _, _, err := wire.ParseTopupID(id); err != nil {
			writeError(w, http.StatusBadRequest, "malformed topup_id")
			return
		}
		d, ok := l.decision(w, r)
		if !ok {
			return
		}
		h, err := l.store.DecideHeld(id, d)
		if err == nil {
			l.log.Warn("ledger: ops decision on held top-up", "topup_id", id, "action", d.Action, "operator", d.Operator,
				"note", d.Note, "ledger_ref", h.LedgerRef)
		}
		l.writeResult(w, h, err)
	})
	mux.HandleFunc("POST /api/suspense/{ref}/{action}", func(w http.ResponseWriter, r *http.Request) {
		ref := r.PathValue("ref")
		d, ok := l.decision(w, r)
		if !ok {
			return
		}
		rec, err := l.store.DecideSuspense(ref, d)
		if err == nil {
			l.log.Warn("ledger: ops decision on suspense record", "ref", ref, "action", d.Action, "operator", d.Operator,
				"note", d.Note, "credit_ref", rec.CreditRef, "collection_id", d.CollectionID)
		}
		l.writeResult(w, rec, err)
	})
	mux.HandleFunc("GET /api/stats", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, l.Stats())
	})
	mux.Handle("GET /metrics", l.metricsHandler())
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

// decision reads and authenticates an operator's decision: the action from the path, the
// operator and note from a small JSON body, and the operator's bearer token. It has answered
// the request when ok is false.
func (l *Ledger) decision(w http.ResponseWriter, r *http.Request) (d Decision, ok bool) {
	d.Action = r.PathValue("action")
	if d.Action != ActionRelease && d.Action != ActionReject {
		writeError(w, http.StatusNotFound, "not found")
		return d, false
	}
	var body struct {
		Operator     string `json:"operator"`
		Note         string `json:"note"`
		CollectionID string `json:"collection_id"`
		Account      string `json:"account"`
		ValueMinor   int64  `json:"value_minor"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "body too large")
			return d, false
		}
		writeError(w, http.StatusBadRequest, "body must be {\"operator\": name, \"note\": text}")
		return d, false
	}
	if body.Operator == "" || len(body.Operator) > 64 || len(body.Note) > 1000 || !utf8.ValidString(body.Note) {
		writeError(w, http.StatusBadRequest, "operator (1-64 characters) required; note at most 1000 bytes")
		return d, false
	}
	tok, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	want, known := l.cfg.Operators[body.Operator]
	// Compare even for an unknown operator, so that timing does not tell names apart.
	if !known {
		want = "\x00unknown operator, never a token"
	}
	if subtle.ConstantTimeCompare([]byte(tok), []byte(want)) != 1 || !found || !known {
		l.stats.Unauthorized.Add(1)
		l.log.Warn("ledger: security: ops decision refused: bad or missing token", "operator", body.Operator, "path", r.URL.Path,
			"remote", r.RemoteAddr)
		w.Header().Set("WWW-Authenticate", `Bearer realm="ledger"`)
		writeError(w, http.StatusUnauthorized, "operator not authenticated")
		return d, false
	}
	if body.CollectionID != "" {
		if _, _, _, err := wire.ParseCollectionID(body.CollectionID); err != nil {
			writeError(w, http.StatusBadRequest, "malformed collection_id")
			return d, false
		}
	}
	if (body.Account != "" && !wire.ValidAccount(body.Account)) || body.ValueMinor < 0 {
		writeError(w, http.StatusBadRequest, "malformed account or value_minor")
		return d, false
	}
	d.Operator, d.Note, d.At = body.Operator, body.Note, l.now().UTC()
	d.CollectionID, d.Account, d.ValueMinor = body.CollectionID, body.Account, body.ValueMinor
	return d, true
}

func (l *Ledger) writeResult(w http.ResponseWriter, v any, err error) {
	switch {
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, "not found")
	case errors.Is(err, ErrDecided):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, ErrDecision):
		writeError(w, http.StatusBadRequest, err.Error())
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
