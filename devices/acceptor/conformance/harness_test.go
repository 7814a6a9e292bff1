package conformance

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/hw-sim/walletsim"
	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/kiosk/qrpay"
	"github.com/kioskd/kioskd/kiosk/session"
	"github.com/kioskd/kioskd/sync/wire"
)

// The harness: a "host" is one daemon process (journal + session engine + driver), a "rig"
// is one scenario run (an emulated unit, the journal file, and the hosts that ran on it one
// after the other), and a recorder logs what every host's engine was told by its driver.

var (
	walletPriv = ed25519.NewKeyFromSeed([]byte("conformance-wallet-key-32-bytes!"))
	walletKeys = qrpay.Keys{"w1": walletPriv.Public().(ed25519.PublicKey)}
)

// Crash points: the engine's Hook names.
const (
	atStackIntent  = "after-stack-intent"
	atBeforeCommit = "credit-before-commit"
	atAfterCommit  = "credit-after-commit"
)

var showTrace = flag.Bool("conformance.trace", false, "log each scenario's trace of handler calls")

// errHostDown is what a dead host "answers" a credit with: no acknowledgement goes out.
var errHostDown = errors.New("conformance: host process is down")

// entry is one call the driver made into the engine's handler.
type entry struct {
	gen      int    // which host (1 = the first process, 2 = after a restart)
	call     string // "escrow", "credited" or "event"
	kind     acceptor.Kind
	note     acceptor.Note
	reason   acceptor.RejectReason
	code     int
	decision acceptor.Decision
	err      error
}

func (e entry) String() string {
	switch e.call {
	case "escrow":
		return fmt.Sprintf("[%d] escrow %d -> %v", e.gen, e.note.ValueMinor, e.decision)
	case "credited":
		s := fmt.Sprintf("[%d] credited %d", e.gen, e.note.ValueMinor)
		if e.err != nil {
			s += " err=" + e.err.Error()
		}
		return s
	}
	s := fmt.Sprintf("[%d] %v", e.gen, e.kind)
	if e.kind == acceptor.Rejected {
		s += " reason=" + e.reason.String()
	}
	if e.code != 0 {
		s += fmt.Sprintf(" code=%#x", e.code)
	}
	return s
}

// interceptors let a scenario act on the unit at an exact point of a note's journey, from
// the driver's own goroutine (so no poll can slip in between).
type interceptors struct {
	escrow   func(n acceptor.Note)
	credited func(n acceptor.Note)
	event    func(e acceptor.Event)
}

// recorder is the trace of a scenario across its hosts.
type recorder struct {
	mu      sync.Mutex
	entries []entry
	hooks   interceptors
}

func (r *recorder) add(e entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.entries = append(r.entries, e)
}

func (r *recorder) snapshot() []entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.entries)
}

func (r *recorder) intercept() interceptors {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hooks
}

func (r *recorder) setHooks(h interceptors) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hooks = h
}

// count counts entries matching f.
func (r *recorder) count(f func(entry) bool) int {
	n := 0
	for _, e := range r.snapshot() {
		if f(e) {
			n++
		}
	}
	return n
}

func isEvent(k acceptor.Kind) func(entry) bool {
	return func(e entry) bool { return e.call == "event" && e.kind == k }
}

func isCredit(e entry) bool { return e.call == "credited" && e.err == nil }

// recHandler is the recording wrapper around engine.Handler(). It also plays the dead host:
// once the host crashed, nothing reaches the engine and no credit is acknowledged.
type recHandler struct {
	h    *host
	next acceptor.Handler
}

var (
	_ acceptor.Handler         = recHandler{}
	_ acceptor.PulseRecorder   = recHandler{}
	_ acceptor.PowerUpRecorder = recHandler{}
)

func (w recHandler) Escrow(ctx context.Context, n acceptor.Note) acceptor.Decision {
	if w.h.dead.Load() {
		return acceptor.Return
	}
	if f := w.h.r.rec.intercept().escrow; f != nil {
		f(n)
	}
	d := w.next.Escrow(ctx, n)
	w.h.r.rec.add(entry{gen: w.h.gen, call: "escrow", note: n, decision: d})
	return d
}

func (w recHandler) Credited(ctx context.Context, n acceptor.Note) error {
	if w.h.dead.Load() {
		return errHostDown
	}
	if f := w.h.r.rec.intercept().credited; f != nil {
		f(n)
	}
	err := w.next.Credited(ctx, n)
	if w.h.dead.Load() {
		// The crash hook fired inside the call: the process is gone before it could ACK.
		err = errHostDown
	}
	w.h.r.rec.add(entry{gen: w.h.gen, call: "credited", note: n, err: err})
	return err
}

func (w recHandler) Event(ctx context.Context, e acceptor.Event) {
	if w.h.dead.Load() {
		return
	}
	if f := w.h.r.rec.intercept().event; f != nil {
		f(e)
	}
	w.next.Event(ctx, e)
	w.h.r.rec.add(entry{gen: w.h.gen, call: "event", kind: e.Kind, note: e.Note, reason: e.Reason, code: e.Code})
}

// PowerUp passes a power-up report to the engine, which journals it before the driver may
// reset the unit; a recorded one is traced as its event, a refused one as "power_up_refused".
func (w recHandler) PowerUp(ctx context.Context, e acceptor.Event) error {
	if w.h.dead.Load() {
		return errHostDown
	}
	if f := w.h.r.rec.intercept().event; f != nil {
		f(e)
	}
	err := w.next.(acceptor.PowerUpRecorder).PowerUp(ctx, e)
	if w.h.dead.Load() {
		// The process is gone before the driver could reset the unit.
		err = errHostDown
	}
	call := "event"
	if err != nil {
		call = "power_up_refused"
	}
	w.h.r.rec.add(entry{gen: w.h.gen, call: call, kind: e.Kind, note: e.Note, code: e.Code, err: err})
	return err
}

func (w recHandler) Pulse(ctx context.Context, train uint64, count int) error {
	if w.h.dead.Load() {
		return errHostDown
	}
	return w.next.(acceptor.PulseRecorder).Pulse(ctx, train, count)
}

// authz is the ledger's authorization with a configurable remaining limit.
type authz struct{ remaining atomic.Int64 }

func (a *authz) Authorize(ctx context.Context, account, nonce, qr string) (wire.AuthzResponse, error) {
	return wire.AuthzResponse{V: 1, ReqID: nonce, Status: wire.AuthzOK, RemainingMinor: a.remaining.Load(), NameMasked: qrpay.Mask(account)}, nil
}

// printer collects receipts.
type printer struct {
	mu       sync.Mutex
	receipts []session.Receipt
}

func (p *printer) PrintReceipt(ctx context.Context, r session.Receipt) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.receipts = append(p.receipts, r)
	return nil
}

func (p *printer) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.receipts)
}

// rig is one scenario run on one protocol.
type rig struct {
	t      testing.TB
	p      *protocol
	u      *unit
	path   string
	authz  *authz
	rec    *recorder
	prn    *printer
	alarms *alarmLog
	hosts  []*host
	nonce  int
	// sessionMax is the engines' session limit.
	sessionMax int64
}

// alarmLog keeps every condition the hosts raised.
type alarmLog struct {
	mu    sync.Mutex
	conds []health.Condition
}

func (a *alarmLog) add(c health.Condition) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.conds = append(a.conds, c)
}

func (a *alarmLog) raised(kind string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range a.conds {
		if c.Kind == kind && !c.Cleared {
			return true
		}
	}
	return false
}

func newRig(t testing.TB, p *protocol, o unitOpts) *rig {
	r := &rig{t: t, p: p, u: p.newUnit(o), path: filepath.Join(t.TempDir(), "journal.db"),
		authz: &authz{}, rec: &recorder{}, prn: &printer{}, alarms: &alarmLog{}, sessionMax: 1_000_000}
	r.authz.remaining.Store(1_000_000)
	if p.escrowless {
		// A pulse unit's jam holds its line until cleared, from a goroutine of its own.
		t.Cleanup(r.u.ClearJam)
	}
	return r
}

// host is one daemon process: journal, engine and driver on one link to the unit.
type host struct {
	r      *rig
	gen    int
	j      *journal.Journal
	e      *session.Engine
	l      link
	health *health.Registry

	engCancel, drvCancel context.CancelFunc
	engDone, drvDone     chan error
	simDone              chan error

	mu        sync.Mutex
	crashAt   string
	crashed   chan struct{}
	dead      atomic.Bool
	jrnClosed bool
	ended     bool // stop or awaitCrash collected the pieces
	// file is the journal's file, to break the storage under it (breakStorage).
	file atomic.Pointer[os.File]
}

// breakStorage closes the journal's file descriptor under bbolt: from now on every write
// and fsync of this host fails (EIO), as failing storage does, until a new host opens it.
func (h *host) breakStorage() {
	if f := h.file.Load(); f != nil {
		f.Close()
	}
}

// start runs a new host on the rig's journal file and unit.
func (r *rig) start() *host {
	r.t.Helper()
	h := &host{r: r, gen: len(r.hosts) + 1, crashed: make(chan struct{}),
		engDone: make(chan error, 1), drvDone: make(chan error, 1), simDone: make(chan error, 1)}
	var err error
	h.j, err = journal.Open(r.path, journal.Options{KioskID: "K-CONF", Currency: currency,
		OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, perm)
			if err == nil {
				h.file.Store(f)
			}
			return f, err
		}})
	if err != nil {
		r.t.Fatalf("host %d: open journal: %v", h.gen, err)
	}
	h.l, err = r.u.connect()
	if err != nil {
		r.t.Fatalf("host %d: driver: %v", h.gen, err)
	}
	h.health = health.New(fmt.Sprintf("boot%d", h.gen), nil)
	h.e, err = session.New(session.Config{Journal: h.j, Acceptor: h.l.drv, Denominations: r.p.denoms,
		Authorizer: r.authz, Printer: r.prn, Health: h.health, WalletKeys: walletKeys,
		Limits:     session.Limits{SessionMax: r.sessionMax, OfflineSessionMax: 100_000, OfflineTotalMax: 1_000_000},
		Timing:     session.Timing{AckWait: time.Millisecond, ResultDisplay: 2 * time.Second},
		Escrowless: r.p.escrowless, Logger: logger(fmt.Sprintf("engine%d", h.gen)),
		// The bubble's clock (year 2000) stands for a good clock here.
		ClockTrusted: func(time.Time) bool { return true }})
	if err != nil {
		r.t.Fatalf("host %d: engine: %v", h.gen, err)
	}
	installCrashHook(h.e, h.hook)
	// The registry holds the engine, and all this host reaches, until the hook is removed.
	r.t.Cleanup(func() { installCrashHook(h.e, nil) })
	h.health.Listen(func(c health.Condition) {
		r.alarms.add(c)
		h.e.HealthChanged()
	})
	if h.l.serve != nil {
		go func() { h.simDone <- h.l.serve(context.Background()) }()
	} else {
		h.simDone <- nil
	}
	var ectx, dctx context.Context
	ectx, h.engCancel = context.WithCancel(context.Background())
	dctx, h.drvCancel = context.WithCancel(context.Background())
	go func() { h.drvDone <- h.l.drv.Run(dctx, recHandler{h: h, next: h.e.Handler()}) }()
	go func() { h.engDone <- h.e.Run(ectx) }()
	r.hosts = append(r.hosts, h)
	// A failed scenario leaves the host running: take it down so the bubble can end.
	r.t.Cleanup(h.abort)
	return h
}

// abort takes a host down without checking anything.
func (h *host) abort() {
	h.mu.Lock()
	ended := h.ended
	h.ended = true
	h.mu.Unlock()
	if ended {
		return
	}
	h.engCancel()
	h.drvCancel()
	for _, ch := range []chan error{h.engDone, h.drvDone, h.simDone} {
		select {
		case <-ch:
		case <-time.After(time.Minute):
		}
	}
	h.mu.Lock()
	if !h.jrnClosed {
		h.j.Close()
		h.jrnClosed = true
	}
	h.mu.Unlock()
}

// cur is the host running now.
func (r *rig) cur() *host { return r.hosts[len(r.hosts)-1] }

// hook is the engine's crash hook: at the armed point the process "dies" at once. The line
// is cut (nothing more reaches the unit), the handler wrapper stops answering, and before a
// commit the journal is closed so the commit fails as a power cut would leave it undone.
func (h *host) hook(point string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.crashAt != point || h.dead.Load() {
		return
	}
	h.dead.Store(true)
	if h.l.cut != nil {
		h.l.cut()
	}
	if point == atBeforeCommit {
		h.j.Close()
		h.jrnClosed = true
	}
	h.drvCancel()
	h.engCancel()
	close(h.crashed)
}

// armCrash makes the host die the next time its engine reaches point.
func (h *host) armCrash(point string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.crashAt = point
}

// awaitCrash waits until the armed crash happened and the dead host's pieces ended.
func (h *host) awaitCrash() {
	t := h.r.t
	t.Helper()
	select {
	case <-h.crashed:
	case <-time.After(2 * time.Minute):
		t.Fatalf("host %d: crash at %q never happened; trace:\n%s", h.gen, h.crashAt, h.r.traceText())
	}
	h.wait("engine", h.engDone, false)
	h.wait("driver", h.drvDone, false)
	h.wait("emulator", h.simDone, false)
	h.mu.Lock()
	h.ended = true
	if !h.jrnClosed {
		h.j.Close()
		h.jrnClosed = true
	}
	h.mu.Unlock()
}

// stop shuts the host down as the daemon does: the engine first (it inhibits the unit
// through the running driver), then the driver, which closes its port.
func (h *host) stop() {
	h.r.t.Helper()
	h.engCancel()
	h.wait("engine", h.engDone, true)
	h.drvCancel()
	h.wait("driver", h.drvDone, true)
	h.wait("emulator", h.simDone, true)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ended = true
	if !h.jrnClosed {
		if err := h.j.Close(); err != nil {
			h.r.t.Errorf("host %d: close journal: %v", h.gen, err)
		}
		h.jrnClosed = true
	}
}

func (h *host) wait(what string, ch chan error, clean bool) {
	h.r.t.Helper()
	select {
	case err := <-ch:
		// A cut line may end the emulator's write with a closed pipe, and the driver's
		// reader with a read error: that is what a dying host leaves behind.
		if clean && err != nil {
			h.r.t.Errorf("host %d: %s: %v", h.gen, what, err)
		} else if err != nil && !errors.Is(err, io.ErrClosedPipe) && !strings.Contains(err.Error(), "closed pipe") && !errors.Is(err, io.EOF) {
			h.r.t.Logf("host %d: %s ended: %v", h.gen, what, err)
		}
	case <-time.After(time.Minute):
		h.r.t.Fatalf("host %d: %s did not stop", h.gen, what)
	}
}

// eventually waits for cond on the bubble's fake clock, failing after two (fake) minutes.
func (r *rig) eventually(what string, cond func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			r.t.Fatalf("%s: timed out waiting for %s; engine %q; trace:\n%s", r.p.name, what, r.cur().e.View().State, r.traceText())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *rig) traceText() string {
	var b strings.Builder
	for _, e := range r.rec.snapshot() {
		b.WriteString(e.String())
		b.WriteByte('\n')
	}
	return b.String()
}

func (r *rig) state() string { return r.cur().e.View().State }

func (r *rig) waitState(s session.State) {
	r.t.Helper()
	r.eventually("engine state "+s.String(), func() bool { return r.state() == s.String() })
}

// ready waits until the freshly started host recovered, its unit is at rest and the
// engine idle. The first host also waits for the unit's identification, so a scenario
// starts from a known unit (the SSP driver learns the serial number then).
func (r *rig) ready() {
	r.t.Helper()
	gen := r.cur().gen
	// Units differ in whether they report their resting state before or after the
	// identification (SSP: DISABLED first).
	r.eventually("the unit to be identified and at rest", func() bool {
		identified, rest := gen > 1, false
		for _, e := range r.rec.snapshot() {
			if e.gen == gen && e.call == "event" {
				identified = identified || e.kind == acceptor.Identified
				rest = rest || e.kind == acceptor.Idle || e.kind == acceptor.Disabled
			}
		}
		return identified && rest
	})
	r.waitState(session.Idle)
}

// open scans a wallet code and waits until the session accepts notes with limit as the
// ledger's remaining limit.
func (r *rig) open(limit int64) {
	r.t.Helper()
	r.authz.remaining.Store(limit)
	r.nonce++
	code := walletsim.Sign(walletPriv, "w1", fmt.Sprintf("acct_%d", r.nonce), time.Now().Add(5*time.Minute), fmt.Sprintf("nonce%05d", r.nonce))
	if err := r.cur().e.Scan(code); err != nil {
		r.t.Fatalf("scan: %v", err)
	}
	r.waitState(session.Accepting)
}

// codeFor is the protocol code of a note value.
func (r *rig) codeFor(v int64) int {
	for c, n := range r.p.denoms {
		if n.ValueMinor == v {
			return c
		}
	}
	r.t.Fatalf("%s: no note of %d", r.p.name, v)
	return 0
}

// insert feeds a note, waiting until the unit draws it in (a customer pushes the note again
// while the unit is still busy or being enabled).
func (r *rig) insert(v int64) {
	r.t.Helper()
	code := r.codeFor(v)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		err := r.u.Insert(code)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%s: the unit never took a note of %d: %v; engine %q; trace:\n%s", r.p.name, v, err, r.state(), r.traceText())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// feed inserts a note and waits for its credit (a unit's late re-report of another note
// does not count).
func (r *rig) feed(v int64) {
	r.t.Helper()
	of := func(e entry) bool { return isCredit(e) && e.note.ValueMinor == v }
	before := r.rec.count(of)
	r.insert(v)
	r.eventually(fmt.Sprintf("the credit of %d", v), func() bool { return r.rec.count(of) > before })
}

// finish presses Finish and waits for the result screen, then for idle.
func (r *rig) finish() {
	r.t.Helper()
	if err := r.cur().e.Finish(); err != nil {
		r.t.Fatalf("finish: %v", err)
	}
	r.eventually("the session to close", func() bool {
		s := r.state()
		return s == session.Done.String() || s == session.Idle.String()
	})
	r.waitState(session.Idle)
}

// topup is a top-up: the notes credited into it (its amount is their sum), its outcome and
// its number of uncertain items.
type topup struct {
	notes     []int64
	outcome   string
	uncertain int
}

func tp(outcome string, uncertain int, notes ...int64) topup {
	return topup{notes: notes, outcome: outcome, uncertain: uncertain}
}

func (t topup) String() string {
	return fmt.Sprintf("{%d %v %s uncertain:%d}", sum(t.notes...), t.notes, t.outcome, t.uncertain)
}

func (t topup) equal(o topup) bool {
	return t.outcome == o.outcome && t.uncertain == o.uncertain && mapsEqual(multiset(t.notes), multiset(o.notes))
}

// outcome is the expected end state of the money.
type outcome struct {
	credited  []int64 // note values credited (cassette counters)
	uncertain []int64 // uncertain items' values (0: unknown value)
	topups    []topup
	refused   int      // notes the host returned from escrow
	resolved  []string // how open stack intents were settled without a credit, in order
	// reReported counts credit reports the journal recognised as repeats of a journaled
	// credit (acknowledged, not counted).
	reReported int
}

// check stops the current host, reopens the journal (Open verifies it) and compares the
// money with want and with the emulator's cassette log.
func (r *rig) check(want outcome) {
	t := r.t
	t.Helper()
	if *showTrace {
		t.Logf("trace:\n%s", r.traceText())
	}
	h := r.cur()
	if !h.dead.Load() {
		h.stop()
	}
	j, err := journal.Open(r.path, journal.Options{KioskID: "K-CONF", Currency: currency})
	if err != nil {
		t.Fatalf("reopen journal: %v", err)
	}
	defer j.Close()
	if _, err := j.Verify(); err != nil {
		t.Errorf("journal.Verify: %v", err)
	}
	if in, err := j.OpenIntents(); err != nil || len(in) != 0 {
		t.Errorf("open intents at the end: %+v %v", in, err)
	}
	if s, ok, _ := j.CurrentSession(); ok {
		t.Errorf("session %d still open at the end", s.ID)
	}
	c, err := j.Cassette()
	if err != nil {
		t.Fatal(err)
	}
	gotCredited := map[int64]int64{}
	for v, n := range c.ByValue {
		if n != 0 {
			gotCredited[v] = n
		}
	}
	if w := multiset(want.credited); !mapsEqual(gotCredited, w) {
		t.Errorf("credited notes (journal cassette counters) %v, want %v", gotCredited, w)
	}
	if total := sum(want.credited...); c.Count != int64(len(want.credited)) || c.ValueMinor != total {
		t.Errorf("cassette counters %d notes / %d, want %d / %d", c.Count, c.ValueMinor, len(want.credited), total)
	}
	unc, err := j.UncertainItems()
	if err != nil {
		t.Fatal(err)
	}
	var gotUnc []int64
	for _, u := range unc {
		gotUnc = append(gotUnc, u.ValueMinor)
	}
	slices.Sort(gotUnc)
	wantUnc := slices.Sorted(slices.Values(want.uncertain))
	if !slices.Equal(gotUnc, wantUnc) {
		t.Errorf("uncertain items %v (%+v), want %v", gotUnc, unc, wantUnc)
	}
	// The top-ups, in seq order (no uplink runs, so all are still in the outbox).
	ob, err := j.Outbox()
	if err != nil {
		t.Fatal(err)
	}
	var got []topup
	for _, ot := range ob {
		w, err := ot.Wire()
		if err != nil {
			t.Fatal(err)
		}
		g := topup{outcome: w.Outcome, uncertain: len(w.Uncertain)}
		for _, n := range w.Notes {
			for range n.Count {
				g.notes = append(g.notes, n.ValueMinor)
			}
		}
		if w.AmountMinor != sum(g.notes...) || ot.AmountMinor != w.AmountMinor {
			t.Errorf("top-up %s: amount %d (journal %d) is not the sum of its notes %v", w.TopupID, w.AmountMinor, ot.AmountMinor, g.notes)
		}
		got = append(got, g)
	}
	if !slices.EqualFunc(got, want.topups, topup.equal) {
		t.Errorf("top-ups %v, want %v", got, want.topups)
	}
	if n := r.prn.count(); n != len(want.topups) {
		t.Errorf("%d receipts printed, want one per top-up (%d)", n, len(want.topups))
	}
	// Journal events that say how money moved.
	counts := map[string]int{}
	var resolved []string
	j.Events(0, func(rec journal.Record) bool {
		counts[rec.Type]++
		if rec.Type == journal.EvIntentResolved {
			var d struct {
				Resolution string `json:"resolution"`
			}
			json.Unmarshal(rec.Data, &d)
			resolved = append(resolved, d.Resolution)
		}
		return true
	})
	if counts[journal.EvUnexpectedCredit] != 0 {
		t.Errorf("%d unexpected credits journaled", counts[journal.EvUnexpectedCredit])
	}
	if !slices.Equal(resolved, want.resolved) {
		t.Errorf("stack intents resolved without a credit: %v, want %v", resolved, want.resolved)
	}
	if counts[journal.EvCreditReReported] != want.reReported {
		t.Errorf("%d credit re-reports recognised, want %d", counts[journal.EvCreditReReported], want.reReported)
	}
	if counts[journal.EvNoteRefused] != want.refused {
		t.Errorf("%d notes refused from escrow, want %d", counts[journal.EvNoteRefused], want.refused)
	}
	r.conserved(c, unc)
}

// conserved checks the ground truth: every note in the emulator's cassettes is credited
// exactly once in the journal or is one of its uncertain items, and nothing else is, except
// the item of a pulse unit left enabled at a crash, which may stand for no note.
func (r *rig) conserved(c journal.Cassette, unc []journal.Uncertain) {
	t := r.t
	t.Helper()
	inBox := map[int64]int64{}
	for _, s := range r.u.Stacked() {
		inBox[s.ValueMinor]++
	}
	accounted := map[int64]int64{}
	for v, n := range c.ByValue {
		if n != 0 {
			accounted[v] += n
		}
	}
	unknown, maybe := 0, 0
	for _, u := range unc {
		switch {
		case strings.HasPrefix(u.Reason, journal.PulseLineReason):
			maybe++ // a pulse unit left enabled: any one note, or none
			continue
		case u.ValueMinor == 0:
			unknown++ // a pulse train of unknown value stands for any one note
			continue
		}
		accounted[u.ValueMinor]++
	}
	missing := map[int64]int64{}
	for v, n := range inBox {
		if d := n - accounted[v]; d > 0 {
			missing[v] = d
		}
	}
	extra := map[int64]int64{}
	for v, n := range accounted {
		if d := n - inBox[v]; d > 0 {
			extra[v] = d
		}
	}
	var nMissing int64
	for _, n := range missing {
		nMissing += n
	}
	if len(extra) > 0 || nMissing < int64(unknown) || nMissing > int64(unknown+maybe) {
		t.Errorf("money ground truth: emulator cassette %v; journal credits+uncertain %v (+%d of unknown value, +%d for a line left enabled); missing %v, extra %v",
			r.u.Stacked(), accounted, unknown, maybe, missing, extra)
	}
}

func multiset(vs []int64) map[int64]int64 {
	m := map[int64]int64{}
	for _, v := range vs {
		m[v]++
	}
	return m
}

func mapsEqual(a, b map[int64]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// subsequence reports whether the trace holds the wanted entries in order (others may come
// between them); it returns the first one it could not find.
func subsequence(trace []entry, want []func(entry) bool, names []string) (bool, string) {
	i := 0
	for _, e := range trace {
		if i < len(want) && want[i](e) {
			i++
		}
	}
	if i == len(want) {
		return true, ""
	}
	return false, names[i]
}

// step is one expected entry of a trace, with a name for failure messages.
type step struct {
	name string
	f    func(entry) bool
}

func escrowOf(v int64, d acceptor.Decision) step {
	return step{fmt.Sprintf("escrow %d -> %v", v, d), func(e entry) bool {
		return e.call == "escrow" && e.note.ValueMinor == v && e.decision == d
	}}
}

func creditOf(v int64) step {
	return step{fmt.Sprintf("credited %d", v), func(e entry) bool { return isCredit(e) && (e.note.ValueMinor == v || v == 0) }}
}

func eventOf(k acceptor.Kind) step {
	return step{k.String(), isEvent(k)}
}

func eventAny(ks ...acceptor.Kind) step {
	var names []string
	for _, k := range ks {
		names = append(names, k.String())
	}
	return step{strings.Join(names, "|"), func(e entry) bool { return e.call == "event" && slices.Contains(ks, e.kind) }}
}

// expectTrace checks the trace of generation gen (0: all) holds steps in order. Steps
// about escrow are dropped for an escrowless unit, which by the model never calls Escrow.
func (r *rig) expectTrace(gen int, steps ...step) {
	r.t.Helper()
	var fs []func(entry) bool
	var names []string
	for _, s := range steps {
		if r.p.escrowless && strings.HasPrefix(s.name, "escrow") {
			continue
		}
		fs = append(fs, s.f)
		names = append(names, s.name)
	}
	var trace []entry
	for _, e := range r.rec.snapshot() {
		if gen == 0 || e.gen == gen {
			trace = append(trace, e)
		}
	}
	if ok, missing := subsequence(trace, fs, names); !ok {
		r.t.Errorf("%s: trace lacks %q (wanted in order: %v); trace:\n%s", r.p.name, missing, names, r.traceText())
	}
}

// expectNone checks no entry of the trace matches f.
func (r *rig) expectNone(what string, f func(entry) bool) {
	r.t.Helper()
	for _, e := range r.rec.snapshot() {
		if f(e) {
			r.t.Errorf("%s: unexpected %s: %v; trace:\n%s", r.p.name, what, e, r.traceText())
			return
		}
	}
}
