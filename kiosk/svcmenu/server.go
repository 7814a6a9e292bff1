// Package svcmenu serves the technicians' service menu on the kiosk's own screen: a page on
// its own loopback port (never the customer port's API), opened with the cabinet door open
// or, where configured, a gesture on the customer screen, and unlocked with a role PIN.
//
// Roles (collector < technician < admin) each see what kioskctl offers them: a collector the
// status, conditions, counters and collection; a technician also the self-tests, maintenance
// on and off, reprints and sign-offs; an admin also sets the roles' PINs. PINs are kept as
// argon2id PHC strings (pin.go) in the journal's credentials (a remote set_credentials
// command, or an admin here); wrong PINs lock logins out for a time that doubles with each
// one; a login not touched for IdleLogout ends. Every action, a read included, is journaled
// as a service_action event with who did it (role and PIN slot), and so is every login,
// logout and lockout.
//
// Every text the page shows comes from the catalogue (kiosk/i18n), zh-CN first, English on a
// tap. The request rules are the customer screen's (kiosk/ui): a loopback host with our
// port on every request, and on a POST our own origin, a same-origin fetch, and the page's
// token; a logged-in action also carries the login's own token.
//
//	GET  /                    the page
//	GET  /api/texts?lang=L    the page's labels in L
//	GET  /api/state           entry allowed, lockout, the login (X-Service-Login) and its actions
//	POST /api/login           {"role": R, "pin": "1234"}
//	POST /api/logout
//	POST /api/action?lang=L   {"action": A, ...}: the result in words and rows
//	                          {"action": "collection", "step": S, "counts": [...]}: one step
//	                          of a cash collection (collect.go), answered with its screen
package svcmenu

import (
	"bytes"
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kioskd/kioskd/kiosk/ctl"
	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/i18n"
	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/kiosk/session"
	"github.com/kioskd/kioskd/kiosk/ui"
)

//go:embed static
var static embed.FS

// Backend is what the menu acts on: kioskd's control backend (kiosk/daemon) serves both the
// menu and kioskctl, so the two offer the same things.
type Backend interface {
	Status(ctx context.Context) (ctl.Status, error)
	Conditions() []health.Condition
	Counters() (ctl.Counters, error)
	Maintenance(ctx context.Context, on, wait bool) (session.Reply, error)
	Reprint(ctx context.Context, no uint64) error
	PrinterSelfTest(ctx context.Context) (ctl.PrinterTest, error)
	SelfTest(ctx context.Context, device string) (ctl.SelfTest, error)
	SignOff(ctx context.Context, condition, who, why string) error
}

// Auditor journals a service action (*journal.Journal).
type Auditor interface {
	AuditService(journal.ServiceActionEvent) error
}

// Config wires the menu.
type Config struct {
	Backend     Backend
	Credentials Credentials
	Audit       Auditor
	Logger      *slog.Logger
	// DoorOpen reports whether the cabinet door is open now (nil: never).
	DoorOpen func() bool
	// Gesture, when set, opens the menu without the door: the customer screen's gesture
	// brought the technician here (the PIN still guards everything).
	Gesture bool
	// Port is the port the menu is served on (0: any; a loopback name is still required).
	Port int
	// Language is the default language (zh-CN when empty).
	Language string
	// CustomerURL is where the page goes back to when no one is logged in and the menu is
	// closed (the customer screen); empty stays.
	CustomerURL string
	// Now is the clock of logins, idle logout and lockouts (time.Now when nil).
	Now func() time.Time
	// Token is the page's secret for state-changing calls; random per process when empty.
	Token string
	// Denominations are the note values the kiosk takes (minor units): the collection
	// screen's count inputs.
	Denominations []int64
	// Params are the argon2id parameters of PINs set here (DefaultParams when zero).
	Params Params
}

// Headers of the page's calls.
const (
	TokenHeader = ui.TokenHeader
	LoginHeader = "X-Service-Login"
)

type server struct {
	cfg  Config
	def  i18n.Lang
	auth *auth
}

// Handler returns the menu's HTTP handler.
func Handler(cfg Config) (http.Handler, error) {
	if cfg.Backend == nil || cfg.Credentials == nil || cfg.Audit == nil {
		return nil, errors.New("svcmenu: backend, credentials and audit are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Logger = cfg.Logger.With("component", "service_menu")
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Language == "" {
		cfg.Language = string(i18n.ZH)
	}
	if cfg.Params == (Params{}) {
		cfg.Params = DefaultParams
	}
	if cfg.Token == "" {
		var b [32]byte
		_, _ = rand.Read(b[:])
		cfg.Token = hex.EncodeToString(b[:])
	}
	s := &server{cfg: cfg, def: i18n.ParseLang(cfg.Language)}
	s.auth = &auth{creds: cfg.Credentials, now: cfg.Now, log: cfg.Logger, audit: s.audit}
	mux := http.NewServeMux()
	sub, _ := fs.Sub(static, "static")
	files := http.FileServerFS(sub)
	mux.HandleFunc("GET /{$}", s.index)
	mux.Handle("GET /app.js", noStore(files))
	mux.Handle("GET /style.css", noStore(files))
	mux.HandleFunc("GET /api/texts", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, texts(s.lang(r))) })
	mux.HandleFunc("GET /api/state", s.state)
	mux.HandleFunc("POST /api/login", s.login)
	mux.HandleFunc("POST /api/logout", func(w http.ResponseWriter, r *http.Request) {
		s.auth.logout(r.Header.Get(LoginHeader))
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
	})
	mux.HandleFunc("POST /api/action", s.action)
	return s.guard(mux), nil
}

func noStore(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

func (s *server) lang(r *http.Request) i18n.Lang {
	if l := r.URL.Query().Get("lang"); l != "" {
		return i18n.ParseLang(l)
	}
	return s.def
}

// audit journals one action; a journal that cannot take it is logged (the action already
// happened, and the journal's own failure raises its condition).
func (s *server) audit(who, action, detail, result string) {
	err := s.cfg.Audit.AuditService(journal.ServiceActionEvent{Who: who, Action: action, Detail: detail, Result: result, At: s.cfg.Now().UTC()})
	if err != nil {
		s.cfg.Logger.Error("service action not journaled", "who", who, "action", action, "err", err)
	}
}

func (s *server) index(w http.ResponseWriter, r *http.Request) {
	b, err := static.ReadFile("static/index.html")
	if err != nil {
		http.Error(w, "missing page", http.StatusInternalServerError)
		return
	}
	b = bytes.ReplaceAll(b, []byte("{{TOKEN}}"), []byte(s.cfg.Token))
	b = bytes.ReplaceAll(b, []byte("{{LANG}}"), []byte(s.def))
	cu, _ := json.Marshal(s.cfg.CustomerURL)
	b = bytes.ReplaceAll(b, []byte("{{CUSTOMER}}"), bytes.Trim(cu, `"`))
	tx, _ := json.Marshal(texts(s.def))
	b = bytes.ReplaceAll(b, []byte("{{TEXTS}}"), tx)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b)
}

// entry reports whether the menu may be opened now.
func (s *server) entry() (allowed, door bool) {
	if s.cfg.DoorOpen != nil {
		door = s.cfg.DoorOpen()
	}
	return door || s.cfg.Gesture, door
}

// State is GET /api/state.
type State struct {
	Entry      bool   `json:"entry"`
	DoorOpen   bool   `json:"door_open"`
	Locked     bool   `json:"locked"`
	RetryIn    int    `json:"retry_in_s,omitempty"`
	FailsTotal uint64 `json:"wrong_pins_total"`
	LoggedIn   bool   `json:"logged_in"`
	Role       Role   `json:"role,omitempty"`
	Who        string `json:"who,omitempty"`
	// Actions are the actions the login's role may take, in the menu's order.
	Actions []string `json:"actions,omitempty"`
	// IdleLeft is how long the login lasts without a touch.
	IdleLeft int `json:"idle_left_s,omitempty"`
}

func (s *server) state(w http.ResponseWriter, r *http.Request) {
	s.auth.expireIdle()
	st := State{}
	st.Entry, st.DoorOpen = s.entry()
	ls := s.auth.lockState()
	st.Locked, st.RetryIn, st.FailsTotal = ls.Locked, ls.RetryInSecs, ls.FailsTotal
	// Reading the state is not a touch: the page polls it.
	if l, ok := s.auth.current(r.Header.Get(LoginHeader), false); ok {
		st.LoggedIn, st.Role, st.Who = true, l.Role, l.Who()
		st.IdleLeft = int((IdleLogout - s.cfg.Now().Sub(l.last)) / time.Second)
		for _, a := range actions {
			if l.Role.AtLeast(a.min) {
				st.Actions = append(st.Actions, a.name)
			}
		}
	}
	writeJSON(w, http.StatusOK, st)
}

type loginRequest struct {
	Role string `json:"role"`
	PIN  string `json:"pin"`
}

func (s *server) login(w http.ResponseWriter, r *http.Request) {
	lang := s.lang(r)
	var req loginRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, Result{Message: i18n.T(lang, KeyWrongPIN)})
		return
	}
	if ok, _ := s.entry(); !ok {
		writeJSON(w, http.StatusForbidden, Result{Message: i18n.T(lang, KeyEntry)})
		return
	}
	role, ok := ParseRole(req.Role)
	if !ok {
		writeJSON(w, http.StatusBadRequest, Result{Message: i18n.T(lang, KeyWrongPIN)})
		return
	}
	l, err := s.auth.tryLogin(role, req.PIN)
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, map[string]string{"login": l.Token, "who": l.Who(), "role": string(l.Role)})
	case errors.Is(err, ErrLockedOut):
		st := s.auth.lockState()
		writeJSON(w, http.StatusTooManyRequests, Result{Message: i18n.T(lang, KeyLocked, i18n.Int(i18n.PSeconds, int64(st.RetryInSecs)))})
	case errors.Is(err, ErrWrongPIN):
		writeJSON(w, http.StatusUnauthorized, Result{Message: i18n.T(lang, KeyWrongPIN)})
	default:
		s.cfg.Logger.Error("login", "err", err)
		writeJSON(w, http.StatusInternalServerError, Result{Message: i18n.T(lang, KeyFailed, i18n.String(PReason, err.Error()))})
	}
}

// action is one entry of the menu: its name, the lowest role that may take it.
type action struct {
	name string
	min  Role
}

// actions in the menu's order.
var actions = []action{
	{"status", Collector}, {"conditions", Collector}, {"counters", Collector}, {"collection", Collector},
	{"selftest_printer", Technician}, {"selftest_acceptor", Technician}, {"selftest_note", Technician}, {"selftest_scanner", Technician}, {"selftest_sensors", Technician},
	{"maintenance_on", Technician}, {"maintenance_off", Technician}, {"reprint", Technician}, {"signoff", Technician},
	{"set_pin", Admin},
}

func minRole(name string) (Role, bool) {
	for _, a := range actions {
		if a.name == name {
			return a.min, true
		}
	}
	return "", false
}

// ActionRequest is POST /api/action.
type ActionRequest struct {
	Action    string `json:"action"`
	ReceiptNo uint64 `json:"receipt_no,omitempty"`
	Condition string `json:"condition,omitempty"`
	// Why is a sign-off's reason: one of SignoffReasons (the screen has no keyboard).
	Why string `json:"why,omitempty"`
	// Step and Counts are a cash collection's: the step to take (collectSteps; "" reads
	// where the collection stands) and, for "count", the notes counted per denomination.
	Step   string             `json:"step,omitempty"`
	Counts []journal.NoteLine `json:"counts,omitempty"`
	// Role, Slot and PIN are set_pin's.
	Role string `json:"role,omitempty"`
	Slot int    `json:"slot,omitempty"`
	PIN  string `json:"pin,omitempty"`
}

// Result is an action's answer: a sentence and rows of label and value; Choices lists what
// the technician can pick next (the conditions to sign off).
type Result struct {
	OK      bool        `json:"ok"`
	Message string      `json:"message"`
	Rows    [][2]string `json:"rows,omitempty"`
	Choices []string    `json:"choices,omitempty"`
	// Collection is the cash collection screen's state (the collection action).
	Collection *CollectionView `json:"collection,omitempty"`
}

func (s *server) action(w http.ResponseWriter, r *http.Request) {
	lang := s.lang(r)
	l, ok := s.auth.current(r.Header.Get(LoginHeader), true)
	if !ok {
		writeJSON(w, http.StatusUnauthorized, Result{Message: i18n.T(lang, KeyLoggedOut)})
		return
	}
	var req ActionRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, Result{Message: i18n.T(lang, KeyFailed, i18n.String(PReason, "bad request"))})
		return
	}
	min, known := minRole(req.Action)
	if !known {
		writeJSON(w, http.StatusNotFound, Result{Message: i18n.T(lang, KeyFailed, i18n.String(PReason, "unknown action"))})
		return
	}
	who := l.Who()
	if !l.Role.AtLeast(min) {
		s.audit(who, req.Action, "", "refused: role")
		writeJSON(w, http.StatusForbidden, Result{Message: i18n.T(lang, KeyNotAllowed)})
		return
	}
	res, detail, err := s.run(r.Context(), lang, who, req)
	result := "ok"
	if err != nil {
		result = "failed: " + err.Error()
		res = Result{Message: i18n.T(lang, KeyFailed, i18n.String(PReason, err.Error()))}
	} else if !res.OK {
		result = "failed"
	}
	s.audit(who, req.Action, detail, result)
	code := http.StatusOK
	if err != nil {
		code = http.StatusConflict
	}
	writeJSON(w, code, res)
}

// SignoffReasons are the reasons a technician picks from for a sign-off: the journal keeps
// the key, which reads the same in every language.
var SignoffReasons = []i18n.Key{KeyWhyInspected, KeyWhyReplaced, KeyWhyCounted}

// run takes one action; detail is what the audit event records besides its name.
func (s *server) run(ctx context.Context, lang i18n.Lang, who string, req ActionRequest) (Result, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	b := s.cfg.Backend
	done := Result{OK: true, Message: i18n.T(lang, KeyDone)}
	switch req.Action {
	case "status":
		st, err := b.Status(ctx)
		if err != nil {
			return Result{}, "", err
		}
		done.Rows = [][2]string{{i18n.T(lang, KeyKiosk), st.KioskID}, {i18n.T(lang, KeyState), st.Engine.State}}
		if st.Engine.Maintenance {
			done.Rows = append(done.Rows, [2]string{i18n.T(lang, KeyMaintOn), "✓"})
		}
		if st.Engine.Reason != "" {
			done.Rows = append(done.Rows, [2]string{i18n.T(lang, KeyReason), st.Engine.Reason})
		}
		if st.SafeMode != "" {
			done.Rows = append(done.Rows, [2]string{i18n.T(lang, KeyReason), st.SafeMode})
		}
		if st.Journal != nil {
			done.Rows = append(done.Rows, [2]string{i18n.T(lang, KeyOutbox), strconv.Itoa(st.Journal.OutboxDepth)})
		}
		return done, "", nil
	case "conditions":
		cs := b.Conditions()
		for _, c := range cs {
			done.Rows = append(done.Rows, [2]string{c.Kind, c.Detail})
		}
		if len(cs) == 0 {
			done.Message = i18n.T(lang, KeyNone)
		}
		return done, "", nil
	case "counters":
		c, err := b.Counters()
		if err != nil {
			return Result{}, "", err
		}
		for _, d := range c.ByValue {
			done.Rows = append(done.Rows, [2]string{i18n.FormatAmount(lang, d.ValueMinor, c.Currency), "× " + strconv.FormatInt(d.Count, 10)})
		}
		done.Rows = append(done.Rows, [2]string{i18n.T(lang, KeyNotes), strconv.FormatInt(c.Notes, 10)},
			[2]string{i18n.T(lang, KeyValue), i18n.FormatAmount(lang, c.ValueMinor, c.Currency)})
		return done, "", nil
	case "collection":
		return s.collect(ctx, lang, who, req)
	case "selftest_printer":
		pt, err := b.PrinterSelfTest(ctx)
		if err != nil {
			return Result{}, "", err
		}
		done.OK = pt.Printed
		if !pt.Printed {
			done.Message = i18n.T(lang, KeyFailed, i18n.String(PReason, pt.Error))
		}
		done.Rows = [][2]string{{"before", pt.Before}, {"after", pt.After}}
		return done, "printed=" + strconv.FormatBool(pt.Printed), nil
	case "selftest_acceptor", "selftest_note", "selftest_scanner", "selftest_sensors":
		dev := strings.TrimPrefix(req.Action, "selftest_")
		if dev == "note" {
			dev = "acceptor_note"
		}
		st, err := b.SelfTest(ctx, dev)
		if err != nil {
			return Result{}, "", err
		}
		done.OK = st.OK
		if !st.OK {
			done.Message = i18n.T(lang, KeyFailed, i18n.String(PReason, st.Error))
		}
		for _, it := range st.Items {
			done.Rows = append(done.Rows, [2]string{it.Name, it.Value})
		}
		return done, "ok=" + strconv.FormatBool(st.OK), nil
	case "maintenance_on", "maintenance_off":
		on := req.Action == "maintenance_on"
		rep, err := b.Maintenance(ctx, on, false)
		if err != nil {
			return Result{}, "", err
		}
		if rep.Progress == session.ProgressWaitingIdle {
			done.Message = i18n.T(lang, KeyWaitingIdle)
		}
		done.Rows = [][2]string{{i18n.T(lang, KeyState), rep.Status.State}}
		return done, rep.Progress, nil
	case "reprint":
		if req.ReceiptNo == 0 {
			return Result{}, "", errors.New("receipt number")
		}
		if err := b.Reprint(ctx, req.ReceiptNo); err != nil {
			return Result{}, fmt.Sprintf("receipt %d", req.ReceiptNo), err
		}
		done.Message = i18n.T(lang, KeyCopyPrinting, i18n.ReceiptNo(i18n.PReceiptNo, req.ReceiptNo))
		return done, fmt.Sprintf("receipt %d (COPY)", req.ReceiptNo), nil
	case "signoff":
		if req.Condition == "" {
			// The first step lists what can be signed off now.
			for _, c := range b.Conditions() {
				if slices.Contains(session.SignoffConditions, c.Kind) || (strings.HasPrefix(c.Kind, "acceptor_") && strings.Contains(c.Detail, "unit swapped")) {
					kind := c.Kind
					if !slices.Contains(session.SignoffConditions, kind) {
						kind = session.SignoffUnitSwapped
					}
					if !slices.Contains(done.Choices, kind) {
						done.Choices = append(done.Choices, kind)
						done.Rows = append(done.Rows, [2]string{kind, c.Detail})
					}
				}
			}
			if len(done.Choices) == 0 {
				done.Message = i18n.T(lang, KeySignoffNone)
			} else {
				done.Message = i18n.T(lang, KeySignoffPick)
			}
			return done, "list", nil
		}
		if !slices.Contains(SignoffReasons, i18n.Key(req.Why)) {
			return Result{}, "", errors.New("reason")
		}
		// The journal keeps the reason in English: one record, whatever the screen's language.
		why := i18n.T(i18n.EN, i18n.Key(req.Why))
		if err := b.SignOff(ctx, req.Condition, who, why); err != nil {
			return Result{}, req.Condition, err
		}
		return done, req.Condition + ": " + why, nil
	case "set_pin":
		role, ok := ParseRole(req.Role)
		if !ok || req.Slot < 1 || req.Slot > MaxSlots {
			return Result{}, "", errors.New("role and slot")
		}
		if !ValidPIN(req.PIN) {
			return Result{}, "", ErrBadPIN
		}
		h, err := HashPIN(req.PIN, s.cfg.Params)
		if err != nil {
			return Result{}, "", err
		}
		key := SlotKey(role, req.Slot)
		if err := s.cfg.Credentials.SetPINHash(key, h, who); err != nil {
			return Result{}, key, err
		}
		target := fmt.Sprintf("%s/%d", role, req.Slot)
		done.Message = i18n.T(lang, KeyPINSet, i18n.String(PWho, target))
		return done, target, nil
	}
	return Result{}, "", errors.New("unknown action")
}

// guard applies the customer screen's rules (ui.Guard): a loopback host naming our port on
// every request, and on a POST our own origin, a same-origin fetch and the page's token.
func (s *server) guard(h http.Handler) http.Handler {
	return ui.Guard(s.cfg.Port, s.cfg.Token, s.cfg.Logger, "service menu request refused", h)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
