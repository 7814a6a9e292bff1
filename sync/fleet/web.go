package fleet

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kioskd/kioskd/sync/wire"
)

//go:embed templates/*.html
var templateFS embed.FS

var funcs = template.FuncMap{
	"ago": func(now, t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return roundDur(now.Sub(t)) + " ago"
	},
	"dur":  roundDur,
	"secs": func(s int64) string { return roundDur(time.Duration(s) * time.Second) },
	"pct":  func(r float64) string { return fmt.Sprintf("%.0f%%", r*100) },
	"days": func(d float64) string {
		if d < 0 {
			return "unknown"
		}
		return fmt.Sprintf("%.1f days", d)
	},
	"money": func(m int64) string { return fmt.Sprintf("%d.%02d", m/100, m%100) },
	"ts":    func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") },
	"join":  func(s []string) string { return strings.Join(s, ", ") },
}

func roundDur(d time.Duration) string {
	switch {
	case d < 0:
		return "-" + roundDur(-d)
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < 48*time.Hour:
		return d.Round(time.Minute).String()
	}
	return fmt.Sprintf("%.1fd", d.Hours()/24)
}

var pages = template.Must(template.New("").Funcs(funcs).ParseFS(templateFS, "templates/*.html"))

// Operators maps operator names to their secret (a bearer token or password, ≥ 16 bytes).
type Operators map[string]string

// Check validates the operator list.
func (o Operators) Check() error {
	if len(o) == 0 {
		return fmt.Errorf("%w: no operators: the console is never open", ErrConfig)
	}
	for n, s := range o {
		if n == "" || len(n) > 64 || strings.ContainsAny(n, ":\x00\n") || len(s) < 16 {
			return fmt.Errorf("%w: operator %q needs a name and a secret of at least 16 bytes", ErrConfig, n)
		}
	}
	return nil
}

// WebConfig configures the console's HTTP handler.
type WebConfig struct {
	Operators Operators
	// Ledger reads recent top-ups from ledgerd's HTTP API (nil: none shown).
	Ledger *LedgerClient
	// Refresh is the live update period of the pages (default 5 s).
	Refresh time.Duration
}

type web struct {
	f    *Fleet
	cfg  WebConfig
	csrf []byte
}

// Handler returns the console (every page needs an operator) and /metrics and /healthz
// (open: Prometheus scrapes them):
//
//	GET  /                                   fleet overview
//	GET  /kiosk/{id}                         one kiosk
//	POST /kiosk/{id}/ack                     acknowledge an alarm (form field alarm_id)
//	POST /kiosk/{id}/command                 confirm a command (confirm=yes sends it)
//	GET  /api/overview, /api/kiosk/{id}      the same as JSON
//
// Operators authenticate with "Authorization: Bearer <secret>" or HTTP Basic (user = operator
// name, password = secret), which a phone's browser prompts for. Forms carry a token bound
// to the operator, so another site cannot make a logged-in browser post.
func (f *Fleet) Handler(cfg WebConfig) (http.Handler, error) {
	if err := cfg.Operators.Check(); err != nil {
		return nil, err
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = 5 * time.Second
	}
	w := &web{f: f, cfg: cfg, csrf: make([]byte, 32)}
	rand.Read(w.csrf)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(f.m.reg, promhttp.HandlerOpts{Registry: f.m.reg}))
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, _ *http.Request) {
		if _, err := f.store.Kiosks(); err != nil {
			http.Error(rw, "store: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(rw, "ok\n")
	})
	mux.HandleFunc("GET /{$}", w.auth(w.overview))
	mux.HandleFunc("GET /api/overview", w.auth(w.apiOverview))
	mux.HandleFunc("GET /kiosk/{id}", w.auth(w.kiosk))
	mux.HandleFunc("GET /api/kiosk/{id}", w.auth(w.apiKiosk))
	mux.HandleFunc("POST /kiosk/{id}/ack", w.auth(w.ack))
	mux.HandleFunc("POST /kiosk/{id}/command", w.auth(w.command))
	return securityHeaders(mux), nil
}

func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("X-Frame-Options", "DENY")
		rw.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'unsafe-inline'; frame-ancestors 'none'")
		rw.Header().Set("Referrer-Policy", "no-referrer")
		rw.Header().Set("Cache-Control", "no-store")
		h.ServeHTTP(rw, r)
	})
}

type opKey struct{}

func (w *web) operator(r *http.Request) string {
	var secret string
	h := r.Header.Get("Authorization")
	if tok, ok := strings.CutPrefix(h, "Bearer "); ok {
		secret = tok
	} else if user, pass, ok := r.BasicAuth(); ok {
		if s, known := w.cfg.Operators[user]; known && subtle.ConstantTimeCompare([]byte(s), []byte(pass)) == 1 {
			return user
		}
		return ""
	}
	if secret == "" {
		return ""
	}
	// Compare against every operator so the time does not say which names exist.
	found := ""
	for name, s := range w.cfg.Operators {
		if subtle.ConstantTimeCompare([]byte(s), []byte(secret)) == 1 {
			found = name
		}
	}
	return found
}

func (w *web) auth(h func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
	return func(rw http.ResponseWriter, r *http.Request) {
		op := w.operator(r)
		if op == "" {
			rw.Header().Set("WWW-Authenticate", `Basic realm="fleetd", charset="UTF-8"`)
			http.Error(rw, "operator login required", http.StatusUnauthorized)
			return
		}
		h(rw, r.WithContext(context.WithValue(r.Context(), opKey{}, op)), op)
	}
}

func (w *web) csrfToken(op string) string {
	m := hmac.New(sha256.New, w.csrf)
	m.Write([]byte(op))
	return hex.EncodeToString(m.Sum(nil))
}

func (w *web) checkCSRF(r *http.Request, op string) bool {
	// A bearer token is never sent by a browser on its own, so a script using one needs no
	// form token; Basic credentials are, so a browser's post must carry it.
	if strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
		return true
	}
	return hmac.Equal([]byte(r.PostFormValue("csrf")), []byte(w.csrfToken(op)))
}

func (w *web) render(rw http.ResponseWriter, r *http.Request, name string, data any) {
	var buf bytes.Buffer
	// ?partial=1 renders only the live part, which the page fetches to update itself.
	if r.URL.Query().Get("partial") == "1" {
		name += "-live"
	}
	if err := pages.ExecuteTemplate(&buf, name, data); err != nil {
		w.f.log.Error("fleet: render", "page", name, "err", err)
		http.Error(rw, "render error", http.StatusInternalServerError)
		return
	}
	rw.Header().Set("Content-Type", "text/html; charset=utf-8")
	rw.Write(buf.Bytes())
}

func writeJSON(rw http.ResponseWriter, v any) {
	rw.Header().Set("Content-Type", "application/json")
	json.NewEncoder(rw).Encode(v)
}

func (w *web) fail(rw http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrNotFound):
		http.Error(rw, "not found", http.StatusNotFound)
	case errors.Is(err, ErrRequest):
		http.Error(rw, err.Error(), http.StatusBadRequest)
	default:
		w.f.log.Error("fleet: http", "err", err)
		http.Error(rw, "internal error", http.StatusInternalServerError)
	}
}

type pageBase struct {
	Operator string
	CSRF     string
	Now      time.Time
	Refresh  int64 // ms
	Flash    string
}

func (w *web) base(r *http.Request, op string) pageBase {
	return pageBase{Operator: op, CSRF: w.csrfToken(op), Now: w.f.now().UTC(), Refresh: w.cfg.Refresh.Milliseconds(), Flash: r.URL.Query().Get("flash")}
}

func (w *web) overview(rw http.ResponseWriter, r *http.Request, op string) {
	o, err := w.f.Overview()
	if err != nil {
		w.fail(rw, err)
		return
	}
	w.render(rw, r, "overview", struct {
		pageBase
		O      Overview
		States []string
	}{w.base(r, op), o, States})
}

func (w *web) apiOverview(rw http.ResponseWriter, _ *http.Request, _ string) {
	o, err := w.f.Overview()
	if err != nil {
		w.fail(rw, err)
		return
	}
	writeJSON(rw, o)
}

func (w *web) kioskID(rw http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if !wire.ValidKioskID(id) {
		http.Error(rw, "malformed kiosk id", http.StatusBadRequest)
		return "", false
	}
	return id, true
}

func (w *web) kiosk(rw http.ResponseWriter, r *http.Request, op string) {
	id, ok := w.kioskID(rw, r)
	if !ok {
		return
	}
	d, err := w.f.Kiosk(id)
	if err != nil {
		w.fail(rw, err)
		return
	}
	var topups []LedgerTopup
	var ledgerErr string
	if w.cfg.Ledger != nil && r.URL.Query().Get("partial") != "1" {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		topups, err = w.cfg.Ledger.RecentTopups(ctx, id, 10)
		cancel()
		if err != nil {
			ledgerErr = err.Error()
		}
	}
	w.render(rw, r, "kiosk", struct {
		pageBase
		D         KioskDetail
		Topups    []LedgerTopup
		LedgerErr string
		HasLedger bool
		Kinds     []string
	}{w.base(r, op), d, topups, ledgerErr, w.cfg.Ledger != nil, wire.CommandKinds})
}

func (w *web) apiKiosk(rw http.ResponseWriter, r *http.Request, _ string) {
	id, ok := w.kioskID(rw, r)
	if !ok {
		return
	}
	d, err := w.f.Kiosk(id)
	if err != nil {
		w.fail(rw, err)
		return
	}
	writeJSON(rw, d)
}

func (w *web) ack(rw http.ResponseWriter, r *http.Request, op string) {
	id, ok := w.kioskID(rw, r)
	if !ok {
		return
	}
	if !w.checkCSRF(r, op) {
		http.Error(rw, "stale or forged form: reload the page", http.StatusForbidden)
		return
	}
	// A form field, not a path segment: an alarm id is the kiosk's and may hold a '/'.
	aid := r.PostFormValue("alarm_id")
	if _, err := w.f.Acknowledge(id, aid, op); err != nil {
		w.fail(rw, err)
		return
	}
	http.Redirect(rw, r, "/kiosk/"+id+"?flash="+url.QueryEscape("acknowledged "+aid), http.StatusSeeOther)
}

// command shows the confirmation page for a command; the confirmation page posts again
// with confirm=yes, which signs and sends it.
func (w *web) command(rw http.ResponseWriter, r *http.Request, op string) {
	id, ok := w.kioskID(rw, r)
	if !ok {
		return
	}
	if !w.checkCSRF(r, op) {
		http.Error(rw, "stale or forged form: reload the page", http.StatusForbidden)
		return
	}
	kind := r.PostFormValue("kind")
	args := strings.TrimSpace(r.PostFormValue("args"))
	if kind == wire.CmdReprint && args == "" && r.PostFormValue("receipt_no") != "" {
		args = fmt.Sprintf(`{"receipt_no":%s}`, strings.TrimSpace(r.PostFormValue("receipt_no")))
	}
	var raw json.RawMessage
	if args != "" {
		raw = json.RawMessage(args)
	}
	if !slices.Contains(wire.CommandKinds, kind) {
		http.Error(rw, "unknown command kind", http.StatusBadRequest)
		return
	}
	// Check the command as the kiosk will before asking for confirmation.
	if _, err := w.f.BuildCommand(id, kind, raw); err != nil {
		w.fail(rw, err)
		return
	}
	if r.PostFormValue("confirm") != "yes" {
		w.render(rw, r, "confirm", struct {
			pageBase
			KioskID, Kind, Args string
			TTL                 time.Duration
		}{w.base(r, op), id, kind, args, w.f.cfg.CommandTTL})
		return
	}
	rec, err := w.f.SendCommand(r.Context(), id, kind, raw, op)
	flash := "sent " + kind + " (" + rec.Command.CmdID + ")"
	if err != nil {
		if rec.Command.CmdID == "" {
			w.fail(rw, err)
			return
		}
		flash = "NOT SENT " + kind + ": " + err.Error()
	}
	http.Redirect(rw, r, "/kiosk/"+id+"?flash="+url.QueryEscape(flash), http.StatusSeeOther)
}
