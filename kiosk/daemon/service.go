package daemon

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/devices/sensors"
	"github.com/kioskd/kioskd/kiosk/ctl"
	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/kiosk/session"
	"github.com/kioskd/kioskd/kiosk/svcmenu"
)

// The technicians' side of kioskd besides the control socket: the service menu on the
// kiosk's screen, the device self-tests and sign-offs that both offer, and the live state of
// the switches they read.

// sensorLive keeps the last state of each switch (the sensors self-test, the menu's door
// entry).
type sensorLive struct {
	mu    sync.Mutex
	state map[string]bool
	since map[string]time.Time
}

func (l *sensorLive) set(name string, active bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.state == nil {
		l.state, l.since = map[string]bool{}, map[string]time.Time{}
	}
	l.state[name], l.since[name] = active, time.Now()
}

func (l *sensorLive) get(name string) (active, known bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	active, known = l.state[name]
	return active, known
}

// scanTap hands the next code the scanner reads to a waiting self-test instead of the
// engine: a technician's test code never starts a session.
type scanTap struct {
	mu   sync.Mutex
	want chan string
}

// take gives code to a waiting test; false when none waits.
func (t *scanTap) take(code string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.want == nil {
		return false
	}
	t.want <- code
	t.want = nil
	return true
}

// next waits for the next code, or ctx.
func (t *scanTap) next(ctx context.Context) (string, error) {
	ch := make(chan string, 1)
	t.mu.Lock()
	if t.want != nil {
		t.mu.Unlock()
		return "", errors.New("another scanner test is waiting")
	}
	t.want = ch
	t.mu.Unlock()
	select {
	case c := <-ch:
		return c, nil
	case <-ctx.Done():
		t.mu.Lock()
		if t.want == ch {
			t.want = nil
		}
		t.mu.Unlock()
		select {
		case c := <-ch: // read just as the wait ended
			return c, nil
		default:
		}
		return "", fmt.Errorf("no code read: %w", ctx.Err())
	}
}

// scanTestWait is how long the scanner test waits for a code.
const scanTestWait = 30 * time.Second

func (b controlBackend) SelfTest(ctx context.Context, device string) (ctl.SelfTest, error) {
	switch device {
	case "acceptor":
		return b.acceptorTest(), nil
	case "acceptor_note":
		return b.noteTest(ctx)
	case "scanner":
		return b.scannerTest(ctx)
	case "sensors":
		return b.sensorsTest()
	}
	return ctl.SelfTest{}, fmt.Errorf("self-test %q: %w", device, ctl.ErrUnsupported)
}

// acceptorTest reports the unit's identity, firmware and denominations as its driver knows
// them, and the acceptor's conditions. It takes no note: a test note path that credits
// nobody is not built yet (see README).
func (b controlBackend) acceptorTest() ctl.SelfTest {
	s := b.s
	r := ctl.SelfTest{Device: "acceptor", OK: true}
	add := func(n, v string) { r.Items = append(r.Items, ctl.TestItem{Name: n, Value: v}) }
	add("driver", s.cfg.Acceptor.Driver+" on "+s.cfg.Acceptor.Port)
	info := s.acc.Info()
	running := s.acc.get() != nil
	add("running", strconv.FormatBool(running))
	add("protocol", info.Protocol)
	add("model", info.Model)
	add("serial", info.Serial)
	add("firmware", info.Firmware)
	add("denominations (configured)", denomList(s.denoms))
	if len(info.Denominations) > 0 {
		add("denominations (unit)", denomList(info.Denominations))
	}
	if info.Escrowless {
		add("escrow", "none (pulse unit)")
	}
	for _, c := range s.reg.Active() {
		if deviceOf(c.Kind) == "acceptor" {
			add("condition "+c.Kind, c.Detail)
			if c.Effect >= health.StopsService {
				r.OK = false
			}
		}
	}
	if !running {
		r.OK = false
		r.Error = "the acceptor's driver is not running (port closed or unit not answering)"
	} else if !r.OK {
		r.Error = "the acceptor has a condition that stops service"
	}
	return r
}

func denomList(d acceptor.Denominations) string {
	codes := slices.Sorted(maps.Keys(d))
	var parts []string
	for _, c := range codes {
		n := d[c]
		parts = append(parts, fmt.Sprintf("%d=%s", c, n.String()))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// noteTestWait is how long the note test waits for the technician's note.
const noteTestWait = 60 * time.Second

// noteTest is the acceptor test with one note: in maintenance, the unit takes one note to
// escrow, reports it, and gives it back (session.Engine.NoteTest).
func (b controlBackend) noteTest(ctx context.Context) (ctl.SelfTest, error) {
	if b.s.engine == nil {
		return ctl.SelfTest{}, errSafeMode
	}
	r := b.acceptorTest()
	r.Device = "acceptor_note"
	if !r.OK {
		return r, nil
	}
	wctx, cancel := context.WithTimeout(ctx, noteTestWait)
	defer cancel()
	nr, err := b.s.engine.NoteTest(wctx)
	if errors.Is(err, session.ErrNoteTest) {
		return ctl.SelfTest{}, fmt.Errorf("%w: %v", session.ErrBusy, err)
	}
	if err != nil {
		r.OK, r.Error = false, "no note read: "+err.Error()
		return r, nil
	}
	v := fmt.Sprintf("code %d, not in the configured table", nr.Code)
	if nr.Known {
		v = fmt.Sprintf("code %d = %s", nr.Code, acceptor.Note{Code: nr.Code, ValueMinor: nr.ValueMinor, Currency: nr.Currency}.String())
	}
	r.Items = append(r.Items, ctl.TestItem{Name: "test note read", Value: v}, ctl.TestItem{Name: "test note", Value: "returned to the tester; credited to nobody"})
	return r, nil
}

// scannerTest shows the next code the scanner reads. It runs only in maintenance, so a
// customer's code is never taken by it, and the code is never used for a session.
func (b controlBackend) scannerTest(ctx context.Context) (ctl.SelfTest, error) {
	s := b.s
	if s.cfg.Scanner.Port == "" {
		return ctl.SelfTest{}, fmt.Errorf("no QR scanner: %w", ctl.ErrUnsupported)
	}
	if s.engine == nil {
		return ctl.SelfTest{}, errSafeMode
	}
	st, err := s.engine.Status(ctx)
	if err != nil {
		return ctl.SelfTest{}, err
	}
	if !st.Maintenance {
		return ctl.SelfTest{}, fmt.Errorf("%w: the scanner test runs in maintenance only (kioskctl maintenance on)", session.ErrBusy)
	}
	r := ctl.SelfTest{Device: "scanner"}
	r.Items = append(r.Items, ctl.TestItem{Name: "port", Value: s.cfg.Scanner.Port})
	wctx, cancel := context.WithTimeout(ctx, scanTestWait)
	defer cancel()
	code, err := s.scan.next(wctx)
	if err != nil {
		r.Error = err.Error()
		return r, nil
	}
	shown := code
	if len(shown) > 48 {
		// A wallet code carries a one-time nonce and a signature: enough to recognise it.
		shown = shown[:48] + "…"
	}
	r.OK = true
	r.Items = append(r.Items, ctl.TestItem{Name: "code read", Value: shown}, ctl.TestItem{Name: "length", Value: strconv.Itoa(len(code))},
		ctl.TestItem{Name: "used for a session", Value: "no"})
	return r, nil
}

// sensorsTest is the live state of every configured switch.
func (b controlBackend) sensorsTest() (ctl.SelfTest, error) {
	s := b.s
	if len(s.cfg.Sensors) == 0 {
		return ctl.SelfTest{}, fmt.Errorf("no sensors configured: %w", ctl.ErrUnsupported)
	}
	r := ctl.SelfTest{Device: "sensors", OK: true}
	names := make([]string, 0, len(s.cfg.Sensors))
	for _, sn := range s.cfg.Sensors {
		names = append(names, sn.Name)
	}
	sort.Strings(names)
	for _, n := range names {
		active, known := s.sens.get(n)
		v := "not read (pin unavailable)"
		switch {
		case known && active:
			v = "active"
		case known:
			v = "inactive"
		default:
			r.OK = false
		}
		if n == sensors.CabinetDoor || n == sensors.VaultDoor {
			v = strings.NewReplacer("inactive", "closed", "active", "open").Replace(v)
		}
		r.Items = append(r.Items, ctl.TestItem{Name: n, Value: v})
	}
	if !r.OK {
		r.Error = "a sensor could not be read"
	}
	return r, nil
}

// SignOff runs the engine's sign-off; a swapped unit is then confirmed to its driver, so
// the unit is trusted again only with the sign-off on record.
func (b controlBackend) SignOff(ctx context.Context, condition, who, why string) error {
	if b.s.engine == nil {
		return errSafeMode
	}
	if _, err := b.s.engine.Do(ctx, session.Command{Kind: session.CmdSignoff, Condition: condition, Who: who, Why: why}); err != nil {
		return err
	}
	if condition == session.SignoffUnitSwapped {
		if sc, ok := b.s.acc.get().(interface{ ConfirmSwap(context.Context) error }); ok {
			if err := sc.ConfirmSwap(ctx); err != nil {
				return fmt.Errorf("signed off, but the unit did not take the confirmation: %w", err)
			}
		}
	}
	return nil
}

// Audit journals a technician's action on the control socket (ctl.Auditor). A journal that
// cannot take it is logged: the action already happened.
func (b controlBackend) Audit(who, action, detail, result string) {
	if b.s.j == nil {
		return
	}
	err := b.s.j.AuditService(journal.ServiceActionEvent{Who: who, Action: action, Detail: detail, Result: result, At: time.Now().UTC()})
	if err != nil {
		b.s.log.Error("technician action not journaled", "who", who, "action", action, "err", err)
	}
}

// credentials are the menu's PIN hashes: the config's first-install hashes, overridden slot
// by slot by the journal's (a remote set_credentials command, or an admin in the menu).
type credentials struct {
	j    *journal.Journal
	boot map[string]string
}

func (c credentials) PINHashes() (map[string]string, error) {
	out := maps.Clone(c.boot)
	if out == nil {
		out = map[string]string{}
	}
	jc, ok, err := c.j.Credentials()
	if err != nil {
		return nil, err
	}
	if ok {
		maps.Copy(out, jc.Roles)
	}
	return out, nil
}

func (c credentials) SetPINHash(key, hash, who string) error {
	return c.j.SetLocalCredential(key, hash, who)
}

// listenServiceMenu opens the service menu's port (not in safe mode: without a journal
// nothing a technician does could be recorded). A port that cannot be opened is logged.
func (s *System) listenServiceMenu() {
	addr := s.cfg.ServiceMenu.Listen
	if addr == "" || s.j == nil {
		return
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		s.log.Error("service menu not available", "listen", addr, "err", err)
		return
	}
	s.menuLn = ln
}

// doorOpen reports whether the cabinet door is open now.
func (s *System) doorOpen() bool {
	open, _ := s.sens.get(sensors.CabinetDoor)
	return open
}

// menuInfo is where the service menu listens and its page token.
type menuInfo struct {
	mu    sync.Mutex
	addr  string
	token string
}

// svcAddr is the service menu's address ("" when it does not listen).
func (s *System) svcAddr() string {
	s.menu.mu.Lock()
	defer s.menu.mu.Unlock()
	return s.menu.addr
}

// svcToken is the service menu page's token.
func (s *System) svcToken() string {
	s.menu.mu.Lock()
	defer s.menu.mu.Unlock()
	return s.menu.token
}

// startServiceMenu serves the service menu on its loopback port when configured. Like the
// control socket, it is not needed to serve customers: a failure is logged.
func (s *System) startServiceMenu(g *group) *http.Server {
	ln := s.menuLn
	if ln == nil {
		return nil
	}
	port := ln.Addr().(*net.TCPAddr).Port
	customer := ""
	if a, ok := s.ln.Addr().(*net.TCPAddr); ok {
		customer = fmt.Sprintf("http://127.0.0.1:%d/", a.Port)
	}
	token := randomHex(32)
	h, err := svcmenu.Handler(svcmenu.Config{Token: token, Backend: controlBackend{s}, Credentials: credentials{j: s.j, boot: s.cfg.ServiceMenu.PINHashes},
		Audit: s.j, Logger: s.log, Gesture: s.cfg.ServiceMenu.Gesture, Port: port, Language: s.cfg.Kiosk.Language, CustomerURL: customer,
		DoorOpen: s.doorOpen, Denominations: denomValues(s.denoms)})
	if err != nil {
		ln.Close()
		s.log.Error("service menu not available", "err", err)
		return nil
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	s.menu.mu.Lock()
	s.menu.addr, s.menu.token = ln.Addr().String(), token
	s.menu.mu.Unlock()
	g.Go("service-menu", func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("service menu", "err", err)
		}
	})
	s.log.Info("service menu listening", "url", fmt.Sprintf("http://127.0.0.1:%d/", port))
	return srv
}

// denomValues are the note values the kiosk takes, once each, in order (the menu's
// collection count inputs).
func denomValues(d acceptor.Denominations) []int64 {
	var out []int64
	for _, n := range d {
		if !slices.Contains(out, n.ValueMinor) {
			out = append(out, n.ValueMinor)
		}
	}
	slices.Sort(out)
	return out
}
