package ui

import (
	"crypto/subtle"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Guard admits only the kiosk's own pages (the customer screen, the service menu). The port
// is on loopback, but any page the kiosk's browser (or anything else on the box) loads can
// reach it, so:
//   - every request must name a loopback host and port (a DNS-rebinding page's requests
//     carry its own host name and are refused, reads included); port 0 admits any port;
//   - a state-changing call must be a POST from our own origin (Origin, Sec-Fetch-Site)
//     and carry token (header TokenHeader), the one embedded in the page we served,
//     compared in constant time.
//
// A refused request is answered 403 and logged with refused as the message: the first one,
// then at most one line a minute with the count since the last line, since a hostile page can
// send requests without end and each must not cost a log line.
func Guard(port int, token string, log *slog.Logger, refused string, h http.Handler) http.Handler {
	var mu sync.Mutex
	var last time.Time
	var since int
	refuse := func(w http.ResponseWriter, r *http.Request, why string) {
		mu.Lock()
		since++
		n, now := since, time.Now()
		logIt := last.IsZero() || now.Sub(last) >= time.Minute
		if logIt {
			last, since = now, 0
		}
		mu.Unlock()
		if logIt {
			log.Warn(refused, "why", why, "method", r.Method, "path", r.URL.Path,
				"host", r.Host, "origin", r.Header.Get("Origin"), "refused_since_last_line", n)
		}
		writeJSON(w, http.StatusForbidden, map[string]string{"error": why})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !HostOK(r.Host, port) {
			refuse(w, r, "host not allowed")
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if r.Method != http.MethodPost {
				w.Header().Set("Allow", "GET, POST")
				writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method not allowed"})
				return
			}
			if o := r.Header.Get("Origin"); o != "http://"+r.Host {
				refuse(w, r, "origin not allowed")
				return
			}
			if site := r.Header.Get("Sec-Fetch-Site"); site != "same-origin" && site != "none" {
				refuse(w, r, "cross-site request refused")
				return
			}
			if subtle.ConstantTimeCompare([]byte(r.Header.Get(TokenHeader)), []byte(token)) != 1 {
				refuse(w, r, "missing or wrong token")
				return
			}
		}
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("Referrer-Policy", "no-referrer")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		h.ServeHTTP(w, r)
	})
}

// HostOK admits localhost, 127.0.0.1 and [::1] with port (any port when it is 0).
func HostOK(host string, port int) bool {
	name, p, err := net.SplitHostPort(host)
	if err != nil {
		return false
	}
	switch strings.ToLower(name) {
	case "localhost", "127.0.0.1", "::1":
	default:
		return false
	}
	if port == 0 {
		_, err := strconv.ParseUint(p, 10, 16)
		return err == nil
	}
	return p == strconv.Itoa(port)
}
