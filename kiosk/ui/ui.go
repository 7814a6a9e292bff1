// Package ui serves the customer screen and its local JSON API on loopback. A browser in
// kiosk mode shows the page; the page follows the session engine's view through a
// server-sent event stream and sends the customer's Finish and Cancel.
//
// API:
//
//	GET  /api/state   the current view (session.View as JSON)
//	GET  /api/events  text/event-stream: one "view" event per change
//	POST /api/finish  the Finish button
//	POST /api/cancel  the Cancel button
//	GET  /api/diag    technician diagnostics (conditions, journal and uplink figures)
//	GET  /healthz     liveness
package ui

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"github.com/kioskd/kioskd/kiosk/session"
)

//go:embed static
var static embed.FS

// Engine is what the UI needs from the session engine.
type Engine interface {
	View() session.View
	WaitView(ctx context.Context, after uint64) (session.View, bool)
	Finish() error
	Cancel() error
}

// Config wires the handler.
type Config struct {
	Engine Engine
	// Diag returns the diagnostics document (may be nil).
	Diag   func() any
	Logger *slog.Logger
	// KeepAlive is the interval of SSE comments that keep proxies and the browser from
	// dropping an idle stream. Default 15 s.
	KeepAlive time.Duration
}

// Handler returns the HTTP handler.
func Handler(cfg Config) http.Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = 15 * time.Second
	}
	mux := http.NewServeMux()
	sub, _ := fs.Sub(static, "static")
	files := http.FileServerFS(sub)
	mux.Handle("GET /", noCache(files))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /api/state", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, cfg.Engine.View()) })
	mux.HandleFunc("POST /api/finish", func(w http.ResponseWriter, r *http.Request) { button(w, cfg.Engine.Finish) })
	mux.HandleFunc("POST /api/cancel", func(w http.ResponseWriter, r *http.Request) { button(w, cfg.Engine.Cancel) })
	mux.HandleFunc("GET /api/diag", func(w http.ResponseWriter, r *http.Request) {
		if cfg.Diag == nil {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no diagnostics"})
			return
		}
		writeJSON(w, http.StatusOK, cfg.Diag())
	})
	mux.HandleFunc("GET /api/events", func(w http.ResponseWriter, r *http.Request) { events(w, r, cfg) })
	return localOnly(mux)
}

func noCache(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

// localOnly refuses cross-site requests: the buttons change money state, and any page the
// kiosk browser might load must not be able to post to them.
func localOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
				writeJSON(w, http.StatusForbidden, map[string]string{"error": "cross-site request refused"})
				return
			}
		}
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("X-Frame-Options", "DENY")
		h.ServeHTTP(w, r)
	})
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

func events(w http.ResponseWriter, r *http.Request, cfg Config) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	ctx := r.Context()
	v := cfg.Engine.View()
	var last uint64
	for {
		b, err := json.Marshal(v)
		if err != nil {
			return
		}
		if v.Seq != last || last == 0 {
			if _, err := w.Write(append(append([]byte("event: view\ndata: "), b...), '\n', '\n')); err != nil {
				return
			}
			last = v.Seq
		} else if _, err := w.Write([]byte(": keep-alive\n\n")); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
		wctx, cancel := context.WithTimeout(ctx, cfg.KeepAlive)
		v, _ = cfg.Engine.WaitView(wctx, last)
		cancel()
		if ctx.Err() != nil {
			return
		}
	}
}
