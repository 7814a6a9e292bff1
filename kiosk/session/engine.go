// Package session is the kiosk's cash session engine (DESIGN.md §5): it turns a scanned wallet
// code, the bill acceptor's reports and the customer's buttons into journaled sessions,
// top-ups and receipts.
//
// States: starting (recovery) → idle (acceptor inhibited) → authorizing → accepting →
// closing → done (result shown) → idle; out_of_service whenever a condition or the operator
// stops service; maintenance while a technician holds the kiosk, and for the whole of a cash
// collection (collect.go: the collect_* commands, resumed at start-up from the journal).
//
// One goroutine, the run loop, owns every fact of the kiosk's state; everything else talks to
// it with messages. The driver's callbacks (Escrow, Credited, Pulse, Event) send a message and
// wait for its answer, and the loop journals (fsync) before answering, which is what makes
// invariant 1 hold: no credit is acknowledged to the unit, shown, or counted before it is on
// disk. Commands (scan, buttons, technicians' and remote commands) are messages with a reply;
// timers, ledger acks, health changes and the completion of long operations are messages too.
// Long operations (printing, authorization, acceptor Enable/Inhibit, counter reads) never run
// on the loop: they are tasks that post their result back. The state shown is derived from
// the facts in one function (core.derive), never set piecemeal.
//
// An escrowless (pulse) unit takes notes by itself while its inhibit line is released, so the
// loop journals that (sealed) before it starts an Enable task, journals the line inhibited
// only once the unit reported Disabled after the inhibit, and a start-up that finds the line
// enabled records one uncertain item on the interrupted session, whatever stopped the
// previous run (pulseline.go; kiosk/journal, PulseLine).
package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	// Maintenance: a technician holds the kiosk; the acceptor is inhibited.
	Maintenance
)

var stateNames = [...]string{"starting", "idle", "authorizing", "accepting", "closing", "done", "out_of_service", "maintenance"}

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
	// FollowsReceiptNo is set on a follow-up top-up's receipt (a note credited after its
	// session closed): the number of the receipt of the session it follows.
	FollowsReceiptNo uint64
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
	AuthzTimeout  time.Duration
	IdleTimeout   time.Duration // accepting with money inserted and no activity → close
	AcceptTimeout time.Duration // accepting with no money and no activity → back to idle
	SettleTimeout time.Duration // closing: wait for a note in transit
	// InTransitTimeout: closing, past SettleTimeout, with a note in transit and a unit that
	// has not come to rest (link lost, a credit the journal could not take): keep the
	// session open this much longer for the unit's report, rather than make the note
	// uncertain and its late credit a second item. The customer gets a result meanwhile.
	InTransitTimeout time.Duration
	AckWait          time.Duration // closing: wait this long for the ledger ack before printing
	ResultDisplay    time.Duration
	RecoveryTimeout  time.Duration
	PrintTimeout     time.Duration
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
	def(&t.InTransitTimeout, 10*time.Minute)
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
	// ClockTrusted says whether the wall clock (Now) is known good for checking a wallet
	// code's expiry; when it is not, the expiry is checked against the ledger's signed time
	// or the code is refused. Default the journal's rule (journal.ClockTrusted).
	ClockTrusted func(now time.Time) bool
	Logger       *slog.Logger
	// NewReqID returns a fresh authz request id.
	NewReqID func() string
	// SignOffCheck, when set, is asked about a sign-off (CmdSignoff) of an active condition
	// the journal does not latch, such as the tamper switch's alarm that the daemon keeps:
	// nil allows it (the condition clears), an error refuses it (the switch is still
	// triggered). Without it only the conditions the journal latches can be signed off.
	SignOffCheck func(condition string) error
	// Escrowless is set for a unit without escrow (pulse acceptors, acceptor.Info): notes
	// are credited directly, and the unit is kept inhibited while the largest note would
	// not fit in the session's remaining limit.
	Escrowless bool
	// NoInhibitLine is set for an escrowless unit whose inhibit input is not wired: it takes
	// a note whenever it is powered, also while no process reads its pulses, so its line is
	// never journaled at rest and every start-up records one uncertain item for a note that
	// may have gone in meanwhile (pulseline.go). Wire the inhibit line to avoid that.
	NoInhibitLine bool
}

// Engine is the session engine.
type Engine struct {
	cfg Config
	j   *journal.Journal
	log *slog.Logger
	now func() time.Time

	// inbox carries every input to the run loop.
	inbox chan msg
	// healthWake is a mailbox of one: a health change only needs the loop to look again, and
	// the registry's listener must never block on the engine.
	healthWake chan struct{}
	running    chan struct{} // closed when Run starts serving
	loopDone   chan struct{} // closed when the run loop ended
	runOnce    sync.Once

	// core is the state; only the run loop touches it.
	core *core

	// pub is the last published snapshot, for readers on other goroutines.
	pubMu     sync.Mutex
	pub       View
	pubStat   Status
	pubSt     State
	pubParked bool
	changed   chan struct{} // closed and replaced on every publication

	tasks sync.WaitGroup
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
	if cfg.ClockTrusted == nil {
		cfg.ClockTrusted = cfg.Journal.ClockTrusted
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
	e := &Engine{cfg: cfg, j: cfg.Journal, log: cfg.Logger.With("component", "session"), now: cfg.Now,
		inbox: make(chan msg, 16), healthWake: make(chan struct{}, 1), running: make(chan struct{}), loopDone: make(chan struct{}),
		changed: make(chan struct{})}
	e.core = newCore(e)
	e.pub = View{State: Starting.String(), Currency: cfg.Journal.Currency(), Notes: []journal.NoteLine{}}
	e.pubSt = Starting
	return e, nil
}

// State returns the current state.
func (e *Engine) State() State {
	e.pubMu.Lock()
	defer e.pubMu.Unlock()
	return e.pubSt
}

// msg is one input to the run loop. apply runs on the loop; done, when set, runs after the
// resulting view is published (it answers the sender).
type msg struct {
	apply func(c *core)
	done  func()
}

// post hands m to the loop. It returns false when the loop is gone (or ctx ended first).
func (e *Engine) post(ctx context.Context, m msg) bool {
	select {
	case e.inbox <- m:
		return true
	case <-e.loopDone:
		return false
	case <-ctx.Done():
		return false
	}
}

// call runs f on the loop and waits for it: the caller sees the state after f, published.
func (e *Engine) call(ctx context.Context, f func(c *core)) bool {
	reply := make(chan struct{})
	if !e.post(ctx, msg{apply: f, done: func() { close(reply) }}) {
		return false
	}
	// Once posted, the loop answers every message it takes, even on its way out.
	select {
	case <-reply:
		return true
	case <-e.loopDone:
		select {
		case <-reply:
			return true
		default:
			return false
		}
	}
}

// spawn runs a long operation as a task owned by the engine; its result comes back as a
// message. The task's context ends when the run loop ends (a print ignores it: a receipt of
// a closed session is finished). Tasks are waited for at the end of Run.
func (e *Engine) spawn(name string, f func(ctx context.Context) msg) {
	e.tasks.Add(1)
	go func() {
		defer e.tasks.Done()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-e.loopDone:
				cancel()
			case <-ctx.Done():
			}
		}()
		m := f(ctx)
		if m.apply != nil {
			e.post(context.Background(), m)
		} else {
			e.log.Debug("task ended", "task", name)
		}
	}()
}

// Run recovers from whatever the previous process left, then serves until ctx ends. On the
// way out it finishes a receipt whose session is already closed, and inhibits the acceptor.
// It returns nil on cancellation.
func (e *Engine) Run(ctx context.Context) error {
	first := false
	e.runOnce.Do(func() { first = true })
	if !first {
		return errors.New("session: Run called twice")
	}
	c := e.core
	err := c.boot()
	close(e.running)
	if err == nil {
		e.loop(ctx, c)
	}
	close(e.loopDone)
	e.tasks.Wait()
	// Leave the unit inhibited: no note may be taken while nobody journals it.
	ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	if ierr := e.cfg.Acceptor.Inhibit(ictx); ierr != nil {
		e.log.Warn("acceptor not inhibited at stop", "err", ierr)
	}
	cancel()
	if err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

// loop is the run loop: it steps every message into the core, lets the core advance its
// time- and fact-driven work, starts the tasks that asked for, and publishes the view.
func (e *Engine) loop(ctx context.Context, c *core) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	done := ctx.Done()
	for {
		c.advance()
		e.publish(c)
		if c.exiting && !c.mustLinger() {
			return
		}
		wait := time.Hour
		if at, ok := c.nextDeadline(); ok {
			// A floor: a deadline that the core failed to act on must not spin the loop.
			wait = max(at.Sub(e.now()), time.Millisecond)
		}
		timer.Reset(wait)
		select {
		case <-done:
			done = nil
			c.exit()
		case m := <-e.inbox:
			m.apply(c)
			if m.done != nil {
				c.advance()
				e.publish(c)
				m.done()
			}
		case <-e.healthWake:
			c.healthChanged()
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// TopupAcked is called by the uplink after it applied a ledger ack to the journal.
// Once the engine runs it returns after the screen shows the ack; before, the ack waits in
// the inbox.
func (e *Engine) TopupAcked(t journal.Topup) {
	select {
	case <-e.running:
		e.call(context.Background(), func(c *core) { c.topupAcked(t) })
	default:
		e.post(context.Background(), msg{apply: func(c *core) { c.topupAcked(t) }})
	}
}

// HealthChanged tells the engine the health registry changed. It only wakes the run loop,
// so it is safe to call from a registry listener whatever locks the caller holds.
func (e *Engine) HealthChanged() {
	select {
	case e.healthWake <- struct{}{}:
	default:
	}
}
