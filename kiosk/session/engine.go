// Package session is the kiosk's cash session engine: it turns a scanned wallet
// code, the bill acceptor's reports and the customer's buttons into journaled sessions,
// top-ups and receipts.
//
// States: starting (recovery) → idle (acceptor inhibited) → authorizing → accepting →
// closing → done (result shown) → idle; out_of_service whenever a condition stops service.
//
// The engine is the acceptor.Handler: the driver calls Escrow and Credited synchronously from
// its poll goroutine, and the engine journals (fsync) before answering, which is what makes
// invariant 1 hold: no credit is acknowledged to the unit, shown, or counted before it is on
// disk. The engine never calls into the driver while holding its own lock (the driver may be
// blocked in a callback waiting for that lock): acceptor commands go through one controller
// goroutine that applies the latest wanted state.
package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/kiosk/qrpay"
	"github.com/kioskd/kioskd/sync/wire"
)

// State is the engine state.
type State int

const (
	Starting State = iota
	Idle
	Authorizing
	Accepting
	Closing
	Done
	OutOfService
)

var stateNames = [...]string{"starting", "idle", "authorizing", "accepting", "closing", "done", "out_of_service"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// AcceptorControl is the part of the acceptor driver the engine commands.
type AcceptorControl interface {
	Enable(ctx context.Context, codes []int) error
	Inhibit(ctx context.Context) error
}

// Authorizer asks the ledger whether an account may top up, and how much.
type Authorizer interface {
	// Authorize returns the ledger's answer, or an error when the ledger cannot be asked
	// (offline, timeout): the engine then falls back to the offline limits.
	Authorize(ctx context.Context, account, nonce, qr string) (wire.AuthzResponse, error)
}

// Printer prints receipts.
type Printer interface {
	PrintReceipt(ctx context.Context, r Receipt) error
}

// CutCounter is implemented by printers that can report their autocutter counter (ESC/POS
// GS g 2): it makes a receipt interrupted by a crash provably printed or not.
type CutCounter interface {
	CutCount(ctx context.Context) (uint64, error)
}

// Receipt is what a printer adapter needs to render one receipt.
type Receipt struct {
	Topup     journal.Topup
	Notes     []journal.NoteLine
	Uncertain []wire.Uncertain
	// Status is "credited", "pending" or "under_review".
	Status string
	// Copy is set when this may not be the first print of this receipt.
	Copy bool
	// LocalTime is the closing time.
	LocalTime time.Time
}

// Receipt statuses.
const (
	ReceiptCredited    = "credited"
	ReceiptPending     = "pending"
	ReceiptUnderReview = "under_review"
)

// Kicker wakes the uplink when a new top-up is in the outbox.
type Kicker interface{ Kick() }

// Limits bound sessions (minor units).
type Limits struct {
	SessionMax        int64
	OfflineSessionMax int64
	OfflineTotalMax   int64
}

// Timing tunes the flow.
type Timing struct {
	AuthzTimeout    time.Duration
	IdleTimeout     time.Duration // accepting with money inserted and no activity → close
	AcceptTimeout   time.Duration // accepting with no money and no activity → back to idle
	SettleTimeout   time.Duration // closing: wait for a note in transit
	AckWait         time.Duration // closing: wait this long for the ledger ack before printing
	ResultDisplay   time.Duration
	RecoveryTimeout time.Duration
	PrintTimeout    time.Duration
}

func (t *Timing) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.AuthzTimeout, 3*time.Second)
	def(&t.IdleTimeout, 60*time.Second)
	def(&t.AcceptTimeout, 120*time.Second)
	def(&t.SettleTimeout, 30*time.Second)
	def(&t.AckWait, 3*time.Second)
	def(&t.ResultDisplay, 15*time.Second)
	def(&t.RecoveryTimeout, 20*time.Second)
	def(&t.PrintTimeout, 30*time.Second)
}

// Config wires an engine.
type Config struct {
	Journal       *journal.Journal
	Acceptor      AcceptorControl
	Denominations acceptor.Denominations
	Authorizer    Authorizer // nil: always offline
	Printer       Printer    // nil: no printer (degraded)
	Uplink        Kicker     // nil: nothing to wake
	Health        *health.Registry
	WalletKeys    qrpay.Keys
	Limits        Limits
	Timing        Timing
	Now           func() time.Time
	Logger        *slog.Logger
	// NewReqID returns a fresh authz request id.
	NewReqID func() string
	// Hooks lets the crash harness stop the process at named points of the protocol.
	Hook func(point string)
	// Escrowless is set for a unit without escrow (pulse acceptors, acceptor.Info): notes
	// are credited directly, and the unit is kept inhibited while the largest note would
	// not fit in the session's remaining limit.
	Escrowless bool
}

// Engine is the session engine.
type Engine struct {
	cfg Config
	j   *journal.Journal
	log *slog.Logger
	now func() time.Time

	mu      sync.Mutex
	state   State
	sess    *journal.Session // open session
	view    View
	viewSeq uint64
	changed chan struct{} // closed and replaced on every change
	// lastActivity is when the customer last did something (scan, note, button).
	lastActivity time.Time
	doneAt       time.Time
	// unit is what the acceptor last said about its note path.
	unit        acceptor.Kind
	unitSettled bool
	// recovery is set while starting.
	recovering bool
	// closing task bookkeeping
	closeOutcome string
	// wanted acceptor state: nil = inhibited
	wantCodes  []int
	wantGen    uint64
	doneGen    uint64
	ctlWake    chan struct{}
	healthWake chan struct{}
	// acked remembers top-ups acknowledged while their receipt is pending.
	acked map[string]journal.Topup
	// stopping is set by Shutdown: no new session may start.
	stopping bool
	// creditOpen is set between a credit commit and the unit's report that it finished the
	// note (journal.NoteCompleted).
	creditOpen bool
	// explained is set when the host returned a note with a reason on screen, so the unit's
	// "returned" report does not overwrite it.
	explained bool
	// faults are the acceptor conditions active now.
	faults map[string]bool

	tasks  sync.WaitGroup
	runCtx context.Context
}

// New returns an engine; Run starts it.
func New(cfg Config) (*Engine, error) {
	if cfg.Journal == nil || cfg.Acceptor == nil || cfg.Health == nil {
		return nil, errors.New("session: journal, acceptor and health registry are required")
	}
	if cfg.Limits.SessionMax <= 0 {
		return nil, errors.New("session: a positive session limit is required")
	}
	cfg.Timing.defaults()
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.NewReqID == nil {
		var n uint64
		var mu sync.Mutex
		cfg.NewReqID = func() string {
			mu.Lock()
			defer mu.Unlock()
			n++
			return fmt.Sprintf("%016x-%d", cfg.Journal.Epoch(), n)
		}
	}
	if cfg.Hook == nil {
		cfg.Hook = func(string) {}
	}
	e := &Engine{cfg: cfg, j: cfg.Journal, log: cfg.Logger.With("component", "session"), now: cfg.Now,
		changed: make(chan struct{}), ctlWake: make(chan struct{}, 1), healthWake: make(chan struct{}, 1), acked: map[string]journal.Topup{},
		faults: map[string]bool{}, recovering: true}
	e.view = View{State: Starting.String(), Currency: cfg.Journal.Currency()}
	return e, nil
}

// State returns the current state.
func (e *Engine) State() State {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.state
}

// changedLocked publishes a new view and wakes waiters. Callers hold e.mu.
func (e *Engine) changedLocked() {
	e.viewSeq++
	e.view = e.buildViewLocked()
	close(e.changed)
	e.changed = make(chan struct{})
}

// waitLocked releases the lock until the next change, ctx end, or d. It returns with the lock
// held and false if ctx ended.
func (e *Engine) waitLocked(ctx context.Context, d time.Duration) bool {
	ch := e.changed
	e.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	defer e.mu.Lock()
	select {
	case <-ch:
		return true
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (e *Engine) setStateLocked(s State) {
	if e.state == s {
		return
	}
	e.log.Info("state", "from", e.state.String(), "to", s.String())
	e.state = s
}

// Run recovers from whatever the previous process left, then serves until ctx ends. On the
// way out it inhibits the acceptor. It returns nil on cancellation.
func (e *Engine) Run(ctx context.Context) error {
	e.mu.Lock()
	e.runCtx = ctx
	e.mu.Unlock()
	var ctl sync.WaitGroup
	ctlCtx, stopCtl := context.WithCancel(context.WithoutCancel(ctx))
	ctl.Add(1)
	go func() {
		defer ctl.Done()
		e.controlAcceptor(ctlCtx)
	}()
	defer func() {
		e.tasks.Wait()
		// Leave the unit inhibited: no note may be taken while nobody journals it.
		e.mu.Lock()
		e.wantCodes = nil
		e.wantGen++
		e.mu.Unlock()
		e.poke()
		e.waitApplied(ctlCtx, 3*time.Second)
		stopCtl()
		ctl.Wait()
	}()
	if err := e.recover(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	for {
		e.mu.Lock()
		next := e.tickLocked()
		ch := e.changed
		e.mu.Unlock()
		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-ch:
		case <-t.C:
		case <-e.healthWake:
			e.mu.Lock()
			e.serviceChangedLocked()
			e.mu.Unlock()
		}
		t.Stop()
	}
}

// tickLocked applies the time-driven transitions and returns how long to sleep.
func (e *Engine) tickLocked() time.Duration {
	now := e.now()
	next := time.Minute
	switch e.state {
	case Accepting:
		limit := e.cfg.Timing.AcceptTimeout
		if e.sess != nil && (e.sess.TotalMinor > 0 || e.sess.PendingMinor > 0) {
			limit = e.cfg.Timing.IdleTimeout
		}
		if e.unitBusyLocked() {
			// A note in the path is activity.
			return 200 * time.Millisecond
		}
		left := limit - now.Sub(e.lastActivity)
		if left <= 0 {
			e.log.Info("customer idle, closing session")
			e.startCloseLocked(wire.OutcomeComplete, "idle timeout")
			return time.Millisecond
		}
		next = left
	case Done:
		left := e.cfg.Timing.ResultDisplay - now.Sub(e.doneAt)
		if left <= 0 {
			e.toIdleLocked()
			return time.Minute
		}
		next = left
	}
	return next
}

func (e *Engine) toIdleLocked() {
	if e.serviceStoppedLocked() {
		e.setStateLocked(OutOfService)
	} else {
		e.setStateLocked(Idle)
	}
	e.view.Result = nil
	e.view.Message = ""
	e.changedLocked()
}

// serviceStoppedLocked reports whether an active condition stops service.
func (e *Engine) serviceStoppedLocked() bool {
	eff, _ := e.cfg.Health.Worst()
	return eff >= health.StopsService
}

// serviceChanged re-evaluates idle/out-of-service after a health change.
func (e *Engine) serviceChangedLocked() {
	stopped := e.serviceStoppedLocked()
	switch {
	case stopped && (e.state == Idle || e.state == Done):
		e.setStateLocked(OutOfService)
	case stopped && (e.state == Accepting || e.state == Authorizing):
		e.startCloseLocked(wire.OutcomeInterrupted, "device fault")
	case !stopped && e.state == OutOfService:
		e.setStateLocked(Idle)
	}
	e.changedLocked()
}

// poke wakes the acceptor controller.
func (e *Engine) poke() {
	select {
	case e.ctlWake <- struct{}{}:
	default:
	}
}

// wantLocked sets the acceptor state the controller must reach; nil inhibits.
func (e *Engine) wantLocked(codes []int) {
	if codes != nil && len(codes) == 0 {
		codes = nil
	}
	if slices.Equal(codes, e.wantCodes) && e.doneGen == e.wantGen {
		return
	}
	e.wantCodes = slices.Clone(codes)
	e.wantGen++
	e.poke()
}

// controlAcceptor applies the wanted acceptor state, latest wins, retrying on failure.
func (e *Engine) controlAcceptor(ctx context.Context) {
	for {
		e.mu.Lock()
		gen, codes, done := e.wantGen, slices.Clone(e.wantCodes), e.doneGen
		e.mu.Unlock()
		if gen != done {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			var err error
			if codes == nil {
				err = e.cfg.Acceptor.Inhibit(cctx)
			} else {
				err = e.cfg.Acceptor.Enable(cctx, codes)
			}
			cancel()
			e.mu.Lock()
			if err == nil {
				if e.doneGen < gen {
					e.doneGen = gen
				}
				e.changedLocked()
			} else {
				e.log.Warn("acceptor command failed", "enable", codes, "err", err)
			}
			e.mu.Unlock()
			if err != nil {
				select {
				case <-ctx.Done():
					return
				case <-time.After(500 * time.Millisecond):
				case <-e.ctlWake:
				}
			}
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-e.ctlWake:
		}
	}
}

// waitApplied waits until the controller applied the current wanted state.
func (e *Engine) waitApplied(ctx context.Context, d time.Duration) bool {
	deadline := e.now().Add(d)
	e.mu.Lock()
	defer e.mu.Unlock()
	for e.doneGen < e.wantGen {
		left := deadline.Sub(e.now())
		if left <= 0 {
			return false
		}
		if !e.waitLocked(ctx, left) {
			return false
		}
	}
	return true
}

// allowedCodesLocked lists the denominations that fit in the remaining limit. An escrowless
// unit cannot refuse one note and take another: it is enabled only while the largest note
// fits (invariant 4: no note takes the session over its limit).
func (e *Engine) allowedCodesLocked() []int {
	if e.sess == nil {
		return nil
	}
	rem := e.sess.RemainingMinor()
	var codes []int
	var largest int64
	for code, n := range e.cfg.Denominations {
		largest = max(largest, n.ValueMinor)
		if n.ValueMinor > 0 && n.ValueMinor <= rem {
			codes = append(codes, code)
		}
	}
	if e.cfg.Escrowless && largest > rem {
		return nil
	}
	slices.Sort(codes)
	return codes
}

// TopupAcked is called by the uplink after it applied a ledger ack to the journal.
func (e *Engine) TopupAcked(t journal.Topup) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.acked[t.TopupID] = t
	if r := e.view.Result; r != nil && r.TopupID == t.TopupID {
		switch t.State {
		case journal.TopupCredited:
			r.Status = ReceiptCredited
		case journal.TopupHeld:
			r.Status = ReceiptUnderReview
		}
	}
	e.changedLocked()
}

// HealthChanged tells the engine the health registry changed. It only wakes the run loop,
// so it is safe to call from a registry listener whatever locks the caller holds.
func (e *Engine) HealthChanged() {
	select {
	case e.healthWake <- struct{}{}:
	default:
	}
}

func (e *Engine) journalFailedLocked(op string, err error) {
	e.log.Error("journal write failed", "op", op, "err", err)
	e.cfg.Health.Set("journal_failure", health.Critical, health.Engineer, health.StopsService, fmt.Sprintf("%s: %v", op, err))
}
