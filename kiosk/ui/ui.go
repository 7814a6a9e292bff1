// Package ui serves the customer screen and its local JSON API on loopback. A browser in
// kiosk mode shows the page; the page follows the session engine's view through a
// server-sent event stream and sends the customer's buttons.
//
// Every text the customer reads comes from the one catalogue (kiosk/i18n), rendered here in
// the language the page asks for (zh-CN by default, English on a tap): the page holds no
// sentence of its own and never shows a condition kind or an error code.
//
// API (every request must name a loopback host with the configured port; see guard):
//
//	GET  /api/state?lang=L    the current view and its texts in L
//	GET  /api/events?lang=L   text/event-stream: a "view" event per change, a "ping" every 2 s
//	GET  /api/texts?lang=L    the page's fixed labels in L
//	POST /api/finish          the Finish button
//	POST /api/cancel          Cancel (with money inserted: Finish and credit) and Done
//	POST /api/more-time       restart the inactivity countdown
//	GET  /healthz             liveness
//
// Diagnostics are not served here: the customer port is reachable by anything the kiosk's
// browser loads, so technicians use their own local socket, or the service menu on its own
// port (kiosk/svcmenu), which the page opens when the cabinet door is open and no customer
// is being served (Config.ServiceURL).
package ui

import (
	"bytes"
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"html"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"github.com/kioskd/kioskd/kiosk/i18n"
	"github.com/kioskd/kioskd/kiosk/session"
)

//go:embed static
var static embed.FS

// Engine is what the UI needs from the session engine. An engine that also has
// MoreTime() error gets the "more time" button.
type Engine interface {
	View() session.View
	WaitView(ctx context.Context, after uint64) (session.View, bool)
	Finish() error
	Cancel() error
}

type moreTimer interface{ MoreTime() error }

// Config wires the handler.
type Config struct {
	Engine Engine
	Logger *slog.Logger
	// KeepAlive is the interval of "ping" events: the page declares the kiosk out of service
	// when it hears nothing for a few of them (a dead daemon). Default 2 s.
	KeepAlive time.Duration
	// Language is the customer default (config kiosk.language: "zh-CN", "zh" or "en");
	// empty means zh-CN.
	Language string
	// KioskID and Hotline are shown on the out-of-service screen.
	KioskID string
	Hotline string
	// Port is the port the screen is served on: a request whose Host names another port is
	// refused. 0 accepts any port (a loopback name is still required).
	Port int
	// Now is the engine's clock, used to turn the view's idle deadline into a countdown.
	// Default time.Now.
	Now func() time.Time
	// Token is the page's secret for state-changing calls; default a random one per process.
	Token string
	// ServiceURL is the technicians' service menu (kiosk/svcmenu, its own port); empty:
	// this screen never leads there. The page goes there while no customer is being served
	// and ServiceOpen reports true (the cabinet door is open), or, with ServiceGesture, on
	// a three-second press on the title.
	ServiceURL     string
	ServiceOpen    func() bool
	ServiceGesture bool
}

// TokenHeader carries the page's token on state-changing calls.
const TokenHeader = "X-Kiosk-Token"

// Handler returns the HTTP handler.
func Handler(cfg Config) http.Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = 2 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Language == "" {
		cfg.Language = string(i18n.ZH)
	}
	if cfg.Token == "" {
		var b [32]byte
		rand.Read(b[:])
		cfg.Token = hex.EncodeToString(b[:])
	}
	s := &server{cfg: cfg, def: i18n.ParseLang(cfg.Language)}
	mux := http.NewServeMux()
	sub, _ := fs.Sub(static, "static")
	files := http.FileServerFS(sub)
	mux.HandleFunc("GET /{$}", s.index)
	// no-store: after an update the kiosk's browser must not run the old script.
	mux.Handle("GET /app.js", noStore(files))
	mux.Handle("GET /style.css", noStore(files))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /api/state", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.payload(cfg.Engine.View(), s.lang(r)))
	})
	mux.HandleFunc("GET /api/texts", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, s.texts(s.lang(r))) })
	mux.HandleFunc("POST /api/finish", func(w http.ResponseWriter, r *http.Request) { button(w, cfg.Engine.Finish) })
	mux.HandleFunc("POST /api/cancel", func(w http.ResponseWriter, r *http.Request) { button(w, cfg.Engine.Cancel) })
	mux.HandleFunc("POST /api/more-time", func(w http.ResponseWriter, r *http.Request) {
		m, ok := cfg.Engine.(moreTimer)
		if !ok {
			writeJSON(w, http.StatusNotImplemented, map[string]string{"error": "not available"})
			return
		}
		button(w, m.MoreTime)
	})
	mux.HandleFunc("GET /api/events", s.events)
	return s.guard(mux)
}

func noStore(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

type server struct {
	cfg Config
	def i18n.Lang
}

// lang is the language the page asked for, else the configured default.
func (s *server) lang(r *http.Request) i18n.Lang {
	if l := r.URL.Query().Get("lang"); l != "" {
		return i18n.ParseLang(l)
	}
	return s.def
}

// index serves the page with the per-process token and the default language filled in.
func (s *server) index(w http.ResponseWriter, r *http.Request) {
	b, err := static.ReadFile("static/index.html")
	if err != nil {
		http.Error(w, "missing page", http.StatusInternalServerError)
		return
	}
	b = bytes.ReplaceAll(b, []byte("{{TOKEN}}"), []byte(s.cfg.Token))
	b = bytes.ReplaceAll(b, []byte("{{LANG}}"), []byte(s.def))
	b = bytes.ReplaceAll(b, []byte("{{SERVICE}}"), []byte(html.EscapeString(s.cfg.ServiceURL)))
	gesture := ""
	if s.cfg.ServiceGesture && s.cfg.ServiceURL != "" {
		gesture = "1"
	}
	b = bytes.ReplaceAll(b, []byte("{{GESTURE}}"), []byte(gesture))
	// The default language's labels ride in the page, so it never shows empty while the
	// first texts request is on its way. json.Marshal escapes <, > and &: safe in a script.
	tx, _ := json.Marshal(s.texts(s.def))
	b = bytes.ReplaceAll(b, []byte("{{TEXTS}}"), tx)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(b)
}

// guard admits only the kiosk's own screen (Guard).
func (s *server) guard(h http.Handler) http.Handler {
	return Guard(s.cfg.Port, s.cfg.Token, s.cfg.Logger, "local API request refused", h)
}

func button(w http.ResponseWriter, fn func() error) {
	if err := fn(); err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, session.ErrBusy) {
			code = http.StatusConflict
		}
		writeJSON(w, code, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"ok": "true"})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.Encode(v)
}

func (s *server) events(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	ctx := r.Context()
	lang := s.lang(r)
	v := s.cfg.Engine.View()
	var last uint64
	first := true
	for {
		if v.Seq != last || first {
			b, err := json.Marshal(s.payload(v, lang))
			if err != nil {
				return
			}
			if _, err := w.Write(append(append([]byte("event: view\ndata: "), b...), '\n', '\n')); err != nil {
				return
			}
			last, first = v.Seq, false
		} else if _, err := w.Write([]byte("event: ping\ndata: " + s.pingData() + "\n\n")); err != nil {
			// A named event, not a comment: the page's EventSource sees it, and a page that
			// hears nothing for a few intervals knows the daemon is gone.
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
		wctx, cancel := context.WithTimeout(ctx, s.cfg.KeepAlive)
		v, _ = s.cfg.Engine.WaitView(wctx, last)
		cancel()
		if ctx.Err() != nil {
			return
		}
	}
}

// serviceOpen reports whether the page should go to the service menu now.
func (s *server) serviceOpen() bool {
	return s.cfg.ServiceURL != "" && s.cfg.ServiceOpen != nil && s.cfg.ServiceOpen()
}

// pingData is the ping event's payload: whether the service menu is open.
func (s *server) pingData() string {
	if s.serviceOpen() {
		return `{"service":true}`
	}
	return "{}"
}
