package ctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/kiosk/session"
)

// Backend is what the control API serves from: kioskd's engine, journal, health registry
// and printer (kiosk/daemon adapts them).
type Backend interface {
	Status(ctx context.Context) (Status, error)
	Devices(ctx context.Context) ([]Device, error)
	Conditions() []health.Condition
	Counters() (Counters, error)
	Outbox() ([]journal.Topup, error)
	Uncertain() ([]journal.Uncertain, error)
	// Receipt returns the stored record of receipt no and its text; ok is false when there
	// is no such receipt.
	Receipt(no uint64) (r Receipt, ok bool, err error)
	// Verify checks the live journal within one read transaction.
	Verify() (journal.VerifyReport, error)
	// Export writes every event as a JSON line, from one read transaction.
	Export(w io.Writer) error
	// Maintenance enters or leaves maintenance (see session.CmdMaintenance).
	Maintenance(ctx context.Context, on, wait bool) (session.Reply, error)
	// Reprint prints a COPY of receipt no.
	Reprint(ctx context.Context, no uint64) error
	Diag(ctx context.Context) (Diag, error)
	// PrinterSelfTest prints a test page; ErrUnsupported when there is no printer.
	PrinterSelfTest(ctx context.Context) (PrinterTest, error)
	// SelfTest runs the self-test of device ("acceptor", "acceptor_note", "scanner",
	// "sensors");
	// ErrUnsupported for a device this kiosk does not have.
	SelfTest(ctx context.Context, device string) (SelfTest, error)
	// SignOff clears a condition only a technician may clear, journaling who and why
	// first (session.CmdSignoff).
	SignOff(ctx context.Context, condition, who, why string) error
}

// ErrUnsupported is returned by a Backend for what this kiosk does not have.
var ErrUnsupported = errors.New("not available on this kiosk")

// ErrBadRequest is returned for a request whose arguments are wrong.
var ErrBadRequest = errors.New("bad request")

// ErrNotFound is returned for something that does not exist (a receipt number).
var ErrNotFound = errors.New("not found")

// Server serves the control API.
type Server struct {
	b      Backend
	policy Policy
	log    *slog.Logger
	// ProgressEvery is how often a waiting maintenance request reports the kiosk's status
	// (default 2 s).
	ProgressEvery time.Duration
	// now is the clock for ages.
	now func() time.Time

	srv    *http.Server
	ln     net.Listener
	stop   context.CancelFunc
	closed chan struct{}
}

// NewServer builds a server for b; it serves nothing until Serve.
func NewServer(b Backend, p Policy, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{b: b, policy: p, log: log.With("component", "control"), ProgressEvery: 2 * time.Second, now: time.Now, closed: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", s.status)
	mux.HandleFunc("GET /v1/devices", s.devices)
	mux.HandleFunc("GET /v1/conditions", s.conditions)
	mux.HandleFunc("GET /v1/counters", s.counters)
	mux.HandleFunc("GET /v1/outbox", s.outbox)
	mux.HandleFunc("GET /v1/uncertain", s.uncertain)
	mux.HandleFunc("GET /v1/receipt/{no}", s.receipt)
	mux.HandleFunc("POST /v1/journal/verify", s.verify)
	mux.HandleFunc("GET /v1/journal/export", s.export)
	mux.HandleFunc("POST /v1/maintenance", s.maintenance)
	mux.HandleFunc("POST /v1/reprint", s.reprint)
	mux.HandleFunc("POST /v1/collect", s.collect) // collect.go
	mux.HandleFunc("GET /v1/diag", s.diag)
	mux.HandleFunc("POST /v1/selftest/printer", s.selftestPrinter)
	mux.HandleFunc("POST /v1/selftest/{device}", s.selftest)
	mux.HandleFunc("POST /v1/signoff", s.signoff)
	mux.HandleFunc("POST /v1/update-gate", s.updateGate) // updategate.go
	base, stop := context.WithCancel(context.Background())
	s.stop = stop
	s.srv = &http.Server{Handler: s.guard(mux), ReadHeaderTimeout: 5 * time.Second,
		BaseContext: func(net.Listener) context.Context { return base },
		ConnContext: func(ctx context.Context, c net.Conn) context.Context { return withVerdict(ctx, s.policy, c) }}
	return s
}

// PolicyFor builds the policy of a group name for the current process; a group that does
// not exist serves root and kioskd's user only.
func PolicyFor(group string) Policy {
	p := Policy{SelfUID: uint32(os.Getuid()), Group: group, GID: -1}
	if group == "" {
		return p
	}
	if g, err := user.LookupGroup(group); err == nil {
		if id, err := strconv.ParseInt(g.Gid, 10, 64); err == nil {
			p.GID = id
		}
	}
	return p
}

// Listen opens the socket at path for the server: a stale socket file left by a crashed
// kioskd is replaced, a live one (another kioskd answers on it) is an error. The file gets
// mode 0660 and the policy's group.
func Listen(path string, p Policy) (net.Listener, error) {
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s: another kioskd is listening on it", path)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("control socket %s: exists and is not a socket", path)
		}
		os.Remove(path)
	}
	if _, err := os.Stat(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if p.GID >= 0 {
		// Only root or a member of the group may give the file to the group; kioskd runs
		// with it as its own group, so this normally works; if not, the file keeps
		// kioskd's group and the peer check still applies.
		if err := os.Chown(path, -1, int(p.GID)); err != nil {
			return ln, fmt.Errorf("control socket %s: group %s not set: %w", path, p.Group, err)
		}
	}
	return ln, nil
}

// Serve serves on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.ln = ln
	defer close(s.closed)
	err := s.srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown ends the requests in progress (a waiting maintenance request ends with its
// context) and closes the socket, within ctx.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stop()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	return err
}

// guard refuses peers the policy does not allow.
func (s *Server) guard(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, _ := r.Context().Value(verdictKey{}).(connVerdict)
		if v.err != nil || r.Context().Value(verdictKey{}) == nil {
			err := v.err
			if err == nil {
				err = fmt.Errorf("%w: no peer credentials", ErrRefused)
			}
			s.log.Warn("control request refused", "uid", v.cred.Uid, "pid", v.cred.Pid, "err", err)
			writeErr(w, http.StatusForbidden, err)
			return
		}
		s.log.Info("control request", "method", r.Method, "path", r.URL.Path, "uid", v.cred.Uid, "pid", v.cred.Pid)
		a, ok := s.b.(Auditor)
		if !ok || !audited(r) {
			h.ServeHTTP(w, r)
			return
		}
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(sw, r)
		result := "ok"
		if sw.code >= 300 {
			result = "failed: " + http.StatusText(sw.code)
		}
		a.Audit(fmt.Sprintf("kioskctl uid %d", v.cred.Uid), r.URL.Path, "", result)
	})
}

// Auditor is implemented by a Backend that journals what technicians do: every action on the
// socket (maintenance, reprint, self-tests, sign-offs; not the reads, nor the checks an update
// client polls) is recorded with the peer's uid and its outcome.
type Auditor interface {
	Audit(who, action, detail, result string)
}

// audited reports whether r is an action the journal records.
func audited(r *http.Request) bool {
	if r.Method != http.MethodPost {
		return false
	}
	p := r.URL.Path
	return p == "/v1/maintenance" || p == "/v1/reprint" || p == "/v1/signoff" || strings.HasPrefix(p, "/v1/selftest/")
}

// statusWriter remembers a reply's status code.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

// Flush passes a streaming reply's flushes through (maintenance on).
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeErr(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(errorBody{Error: err.Error()})
}

// fail maps an error to its status code.
func fail(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, ErrUnsupported):
		code = http.StatusNotImplemented
	case errors.Is(err, session.ErrBusy):
		code = http.StatusConflict
	case errors.Is(err, session.ErrNotRunning):
		code = http.StatusServiceUnavailable
	case errors.Is(err, session.ErrNothingToSignOff):
		code = http.StatusNotFound
	case errors.Is(err, ErrBadRequest):
		code = http.StatusBadRequest
	}
	writeErr(w, code, err)
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	st, err := s.b.Status(r.Context())
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, st)
}

func (s *Server) devices(w http.ResponseWriter, r *http.Request) {
	d, err := s.b.Devices(r.Context())
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, d)
}

func (s *Server) conditions(w http.ResponseWriter, r *http.Request) {
	c := s.b.Conditions()
	if c == nil {
		c = []health.Condition{}
	}
	writeJSON(w, c)
}

func (s *Server) counters(w http.ResponseWriter, r *http.Request) {
	c, err := s.b.Counters()
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, c)
}

func (s *Server) outbox(w http.ResponseWriter, r *http.Request) {
	ts, err := s.b.Outbox()
	if err != nil {
		fail(w, err)
		return
	}
	now := s.now()
	out := make([]OutboxItem, 0, len(ts))
	for _, t := range ts {
		t.Payload = nil // the signed payload is the ledger's business, not the screen's
		out = append(out, OutboxItem{Topup: t, AgeSeconds: int64(now.Sub(t.ClosedAt).Seconds())})
	}
	writeJSON(w, out)
}

func (s *Server) uncertain(w http.ResponseWriter, r *http.Request) {
	u, err := s.b.Uncertain()
	if err != nil {
		fail(w, err)
		return
	}
	if u == nil {
		u = []journal.Uncertain{}
	}
	writeJSON(w, u)
}

func (s *Server) receipt(w http.ResponseWriter, r *http.Request) {
	no, err := strconv.ParseUint(r.PathValue("no"), 10, 64)
	if err != nil || no == 0 {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("receipt number must be a positive integer, got %q", r.PathValue("no")))
		return
	}
	rc, ok, err := s.b.Receipt(no)
	if err != nil {
		fail(w, err)
		return
	}
	if !ok {
		fail(w, fmt.Errorf("receipt %d: %w", no, ErrNotFound))
		return
	}
	writeJSON(w, rc)
}

func (s *Server) verify(w http.ResponseWriter, r *http.Request) {
	rep, err := s.b.Verify()
	v := Verify{OK: err == nil, Report: rep}
	if err != nil {
		v.Error = err.Error()
	}
	writeJSON(w, v)
}

func (s *Server) export(w http.ResponseWriter, r *http.Request) {
	// The export is taken into a temporary file first: a client reading slowly must not
	// hold the journal's read transaction open (a long reader can hold up bbolt's writer,
	// which is the credit path).
	f, err := os.CreateTemp("", "kioskd-export-*.jsonl")
	if err != nil {
		fail(w, err)
		return
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if err := s.b.Export(f); err != nil {
		fail(w, err)
		return
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		fail(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	if _, err := io.Copy(w, f); err != nil {
		s.log.Warn("journal export not delivered", "err", err)
	}
}

func (s *Server) reprint(w http.ResponseWriter, r *http.Request) {
	var req ReprintRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil || req.ReceiptNo == 0 {
		writeErr(w, http.StatusBadRequest, errors.New(`body must be {"receipt_no": N} with N > 0`))
		return
	}
	if _, ok, err := s.b.Receipt(req.ReceiptNo); err != nil {
		fail(w, err)
		return
	} else if !ok {
		fail(w, fmt.Errorf("receipt %d: %w", req.ReceiptNo, ErrNotFound))
		return
	}
	if err := s.b.Reprint(r.Context(), req.ReceiptNo); err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, Reply{OK: true, Message: fmt.Sprintf("a COPY of receipt %d is printing", req.ReceiptNo)})
}

func (s *Server) diag(w http.ResponseWriter, r *http.Request) {
	d, err := s.b.Diag(r.Context())
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, d)
}

func (s *Server) selftestPrinter(w http.ResponseWriter, r *http.Request) {
	res, err := s.b.PrinterSelfTest(r.Context())
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, res)
}

// maintenance streams Progress lines: the first says whether the kiosk waits for a customer
// to finish; while it waits, one line every ProgressEvery; the last one has Done.
func (s *Server) maintenance(w http.ResponseWriter, r *http.Request) {
	var req MaintenanceRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, errors.New(`body must be {"on": true|false}`))
		return
	}
	ctx := r.Context()
	rep, err := s.b.Maintenance(ctx, req.On, false)
	if err != nil {
		fail(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	flush := func(p Progress) {
		_ = enc.Encode(p)
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}
	if !req.On || rep.Progress != session.ProgressWaitingIdle {
		flush(Progress{Progress: rep.Progress, Status: rep.Status, Done: true})
		return
	}
	flush(Progress{Progress: rep.Progress, Status: rep.Status})
	done := make(chan struct{})
	var final session.Reply
	var ferr error
	go func() {
		defer close(done)
		final, ferr = s.b.Maintenance(ctx, true, true)
	}()
	t := time.NewTicker(s.ProgressEvery)
	defer t.Stop()
	for {
		select {
		case <-done:
			p := Progress{Progress: final.Progress, Status: final.Status, Done: true}
			if ferr != nil {
				p.Error = ferr.Error()
			}
			flush(p)
			return
		case <-t.C:
			if st, err := s.b.Status(ctx); err == nil {
				flush(Progress{Progress: session.ProgressWaitingIdle, Status: st.Engine})
			}
		}
	}
}

// SelfTestDevices are the devices of POST /v1/selftest/{device} besides the printer.
// acceptor_note is the acceptor's test with one note, returned to the tester.
var SelfTestDevices = []string{"acceptor", "acceptor_note", "scanner", "sensors"}

func (s *Server) selftest(w http.ResponseWriter, r *http.Request) {
	dev := r.PathValue("device")
	if !slices.Contains(SelfTestDevices, dev) {
		writeErr(w, http.StatusNotFound, fmt.Errorf("no self-test %q (printer, %s)", dev, strings.Join(SelfTestDevices, ", ")))
		return
	}
	res, err := s.b.SelfTest(r.Context(), dev)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, res)
}

// signoff records a technician's sign-off. Who is the peer's uid as the kernel reports it
// (SO_PEERCRED) and the name the client gives: the uid cannot be forged, the name is what
// the technician says.
func (s *Server) signoff(w http.ResponseWriter, r *http.Request) {
	var req SignOffRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil || strings.TrimSpace(req.Condition) == "" {
		writeErr(w, http.StatusBadRequest, errors.New(`body must be {"condition": "...", "why": "...", "who": "..."}`))
		return
	}
	why := strings.TrimSpace(req.Why)
	if why == "" || len(why) > 500 {
		writeErr(w, http.StatusBadRequest, errors.New("a sign-off needs why: 1 to 500 characters"))
		return
	}
	v, _ := r.Context().Value(verdictKey{}).(connVerdict)
	who := fmt.Sprintf("kioskctl uid %d", v.cred.Uid)
	if n := strings.TrimSpace(req.Who); n != "" {
		if len(n) > 64 {
			n = n[:64]
		}
		who += " (" + n + ")"
	}
	if err := s.b.SignOff(r.Context(), req.Condition, who, why); err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, Reply{OK: true, Message: fmt.Sprintf("%s signed off by %s", req.Condition, who)})
}
