package session

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/kiosk/failpoint"
	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/i18n"
	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/kiosk/qrpay"
	"github.com/kioskd/kioskd/sync/wire"
)

// core holds every fact of the kiosk's state. Only the run loop touches it: no lock.
type core struct {
	e *Engine

	// rec is set while recovering from the previous run.
	rec *recovery
	// sess is the open session (also while it closes).
	sess *journal.Session
	// sessCodes are the denominations the unit was enabled for at the session's start (an
	// escrow unit keeps them; an escrowless one is narrowed note by note).
	sessCodes []int
	// authz is set while the ledger is asked about a scanned code.
	authz    *authzPending
	authzGen uint64
	// refusedN counts refused codes since refusedLogAt, the last log line about one.
	refusedN     uint64
	refusedLogAt time.Time
	// closing is set from the decision to close the session until its receipt is done.
	closing *closing
	// result is the last session's outcome, on the screen until resultUntil.
	result      *Result
	resultUntil time.Time
	message     string
	messageKind string
	// messageKey and messageParams are the message as catalogue key and parameters (see say).
	messageKey    i18n.Key
	messageParams []i18n.Param
	// lastActivity is when the customer last did something (scan, note, button).
	lastActivity time.Time
	// unit is what the acceptor last said about its note path.
	unit        acceptor.Kind
	unitSettled bool
	// creditUnfinished is set while the journal may hold a credited note the unit has not
	// been seen to finish (journal.NoteCompleted not yet recorded for it). It starts set: the
	// previous run may have died between a credit and its completion.
	creditUnfinished bool
	// pulsed is set once this run journaled a pulse: until then an open pulse train in the
	// journal is the previous run's (see pulse).
	pulsed bool
	// line is the journaled state of an escrowless unit's inhibit line (journal.PulseLine,
	// pulseline.go); lineOwed is set while the previous run's enabled stretch still needs
	// its uncertain item (for lineOwedSID, the session it left open); lineEnabling while an
	// Enable task is in flight; disabledSeen once the unit reported Disabled with no Enable
	// started since.
	line         journal.PulseLine
	lineOwed     bool
	lineOwedSID  uint64
	lineEnabling bool
	disabledSeen bool
	// creditRefused is set while the last credit report could not be journaled (and so was
	// not acknowledged): the unit will report it again.
	creditRefused bool
	// sentBack is the stack intent of a note the host sent back because the intent could
	// not be sealed (escrow): the unit's Returned report settles it as returned.
	sentBack *journal.Intent
	// explained is set when the host returned a note with a reason on screen, so the unit's
	// "returned" report does not overwrite it.
	explained bool
	// faults are the acceptor conditions active now.
	faults map[string]bool
	// witness is an open intent waiting for the unit's stacked counter after the unit
	// restarted under a running kiosk.
	witness *pendingWitness

	// limits are the session limits in force: the configuration's, or the newest overlay
	// set_limits journaled (limitsVersion, 0 for the configuration's).
	limits        Limits
	limitsVersion int64
	limitsCmd     string

	// Operator facts.
	oosReason   string // operator out of service ("" = in service)
	maintWanted bool   // maintenance asked for; effective once no customer is in session
	maintenance bool
	updateReady bool // PrepareUpdate asked for
	stopping    bool // Shutdown: no new session
	exiting     bool // Run's context ended

	// Journal health: a failed write stops service until one succeeds again.
	journalFailed bool
	probeAt       time.Time
	probeBackoff  time.Duration
	// unlatched are conditions raised while the journal could not latch them (kind ->
	// detail): they are latched as soon as writes succeed again (ops.go).
	unlatched map[string]string

	// acked remembers top-ups acknowledged while their result is shown or printed.
	acked map[string]journal.Topup

	// Acceptor control: the loop wants wantCodes (nil = inhibited); one task at a time
	// applies the latest wish.
	wantCodes []int
	// noteTest is an armed acceptor note test (maintenance only; notetest.go).
	noteTest   *noteTest
	wantGen    uint64
	doneGen    uint64
	ctlBusy    bool
	ctlRetryAt time.Time

	// coll is the cash collection in progress (collect.go); collOutSeen is set when the unit
	// reported the cassette removed before the kiosk was in maintenance; slipPrinting while
	// the collection slip prints.
	coll         *journal.Collection
	collOutSeen  bool
	slipPrinting bool

	// printing counts print tasks in flight (the closing receipt, reprints, copies).
	printing int
	// followUps are follow-up top-ups (credits reported after their session closed) whose
	// receipt waits to be printed.
	followUps []journal.Topup
	// reprintOwed is set when a print, or the start-up's reprint of what a crash left
	// unprinted, failed on a journal write: once the journal works again the receipts it
	// left unfinished are settled and printed as a start-up would (printOwed), with no
	// restart needed.
	reprintOwed bool

	state   State
	viewSeq uint64
	lastPub published
}

type authzPending struct {
	gen uint64
	p   qrpay.Payload
	// needTime: the kiosk's clock was not known good at the scan; the expiry is checked
	// against the ledger's signed time and the nonce spent when the answer comes.
	needTime bool
}

type pendingWitness struct {
	in      journal.Intent
	until   time.Time
	reading bool
}

func newCore(e *Engine) *core {
	return &core{e: e, faults: map[string]bool{}, acked: map[string]journal.Topup{}, creditUnfinished: true,
		rec: &recovery{}, state: Starting, limits: e.cfg.Limits}
}

func (c *core) now() time.Time { return c.e.now() }

// hit marks a named crash point.
func (c *core) hit(point string) {
	failpoint.Hit(point)
	c.e.crashHook(point)
}

// derive computes the kiosk's state from the facts. It is the only place a state is decided.
func (c *core) derive() State {
	switch {
	case c.rec != nil:
		return Starting
	case c.closing != nil && !c.closing.shown:
		return Closing
	case c.authz != nil:
		return Authorizing
	case c.sess != nil && c.closing == nil:
		return Accepting
	case c.result != nil:
		return Done
	case c.closing != nil:
		// The customer has their result; the session's close still waits (for the journal,
		// or for the unit to report a note in transit): nobody else may start.
		return OutOfService
	case c.maintenance:
		return Maintenance
	case c.serviceStopped() || c.oosReason != "":
		return OutOfService
	}
	return Idle
}

// serviceStopped reports whether an active condition stops service.
func (c *core) serviceStopped() bool {
	eff, _ := c.e.cfg.Health.Worst()
	return eff >= health.StopsService
}

// inSession reports whether a customer is being served (or their session is finishing).
func (c *core) inSession() bool {
	return c.authz != nil || c.sess != nil || c.closing != nil
}

// say sets the message for the customer: its catalogue key and parameters, which the screen
// renders in the customer's language, and text, the English wording kept for logs and tests.
func (c *core) say(kind string, key i18n.Key, text string, args ...i18n.Arg) {
	c.message, c.messageKind = text, kind
	c.messageKey, c.messageParams = key, i18n.Params(args)
}

// advance does the work the facts call for: time-outs, the phases of recovery and closing,
// the operator's wishes, the acceptor's wanted state. It loops until nothing more changes.
func (c *core) advance() {
	for range 16 {
		if !c.advanceOnce() {
			break
		}
	}
	c.wantAcceptor()
	c.controlAcceptor()
	if st := c.derive(); st != c.state {
		c.e.log.Info("state", "from", c.state.String(), "to", st.String())
		c.state = st
	}
}

func (c *core) advanceOnce() bool {
	now := c.now()
	if c.rec != nil {
		return c.advanceRecovery(now)
	}
	progressed := false
	if c.closing != nil && c.advanceClose(now) {
		progressed = true
	}
	if c.witness != nil && c.advanceWitness(now) {
		progressed = true
	}
	// A condition that stops service ends what a customer was doing.
	if c.serviceStopped() || c.stopping {
		why := "device fault"
		if c.stopping {
			why = "kiosk stopping"
		}
		if c.authz != nil {
			c.authz = nil
			c.say("info", i18n.KeyCannotTakeMoney, "Sorry, the kiosk cannot take money now.")
			progressed = true
		}
		if c.sess != nil && c.closing == nil && !c.exiting {
			c.startClose(wire.OutcomeInterrupted, why)
			progressed = true
		}
	}
	// The customer went quiet.
	if c.sess != nil && c.closing == nil && c.authz == nil && c.unitSettled {
		if now.Sub(c.lastActivity) >= c.acceptLimit() {
			c.e.log.Info("customer idle, closing session")
			c.startClose(wire.OutcomeComplete, "idle timeout")
			progressed = true
		}
	}
	if c.result != nil && (c.closing == nil || c.closing.shown) && !now.Before(c.resultUntil) {
		c.result = nil
		c.message, c.messageKind = "", ""
		progressed = true
	}
	if c.maintWanted && !c.maintenance && !c.inSession() {
		c.maintenance = true
		c.e.log.Info("maintenance mode on")
		progressed = true
	}
	if c.printFollowUp() {
		progressed = true
	}
	if c.printOwed() {
		progressed = true
	}
	if c.advanceCollection() {
		progressed = true
	}
	if c.journalFailed && !c.inSession() && !now.Before(c.probeAt) {
		c.probeJournal()
		progressed = !c.journalFailed
	}
	return progressed
}

func (c *core) acceptLimit() time.Duration {
	if c.sess != nil && (c.sess.TotalMinor > 0 || c.sess.PendingMinor > 0) {
		return c.e.cfg.Timing.IdleTimeout
	}
	return c.e.cfg.Timing.AcceptTimeout
}

// nextDeadline is when the loop must look again without a message.
func (c *core) nextDeadline() (time.Time, bool) {
	var at time.Time
	add := func(t time.Time) {
		if !t.IsZero() && (at.IsZero() || t.Before(at)) {
			at = t
		}
	}
	if r := c.rec; r != nil && r.phase == recWaitUnit {
		add(r.deadline)
	}
	if c.sess != nil && c.closing == nil && c.authz == nil && c.unitSettled {
		add(c.lastActivity.Add(c.acceptLimit()))
	}
	if c.result != nil && (c.closing == nil || c.closing.shown) {
		add(c.resultUntil)
	}
	if cl := c.closing; cl != nil {
		switch cl.phase {
		case closeSettle:
			add(cl.settleBy)
			if cl.inhibited && !c.now().Before(cl.settleBy) {
				add(cl.inTransitBy)
			}
		case closeRetry:
			add(cl.retryAt)
			if !cl.shown {
				add(cl.showBy)
			}
		case closeAck:
			add(cl.ackBy)
		}
	}
	if w := c.witness; w != nil && !w.reading && !c.unitSettled {
		add(w.until)
	}
	if c.journalFailed && !c.inSession() {
		add(c.probeAt)
	}
	if !c.ctlRetryAt.IsZero() && !c.ctlBusy && c.doneGen < c.wantGen {
		add(c.ctlRetryAt)
	}
	return at, !at.IsZero()
}

// exit is Run's context ending: nothing new starts; a session not yet closed in the journal
// stays open for the next start's recovery (which hears from the unit what happened to a
// note in transit, rather than guessing now); a closed session's receipt is finished.
func (c *core) exit() {
	c.exiting = true
	c.authz = nil
	if c.rec != nil {
		c.rec = nil
	}
	if cl := c.closing; cl != nil && cl.topup == nil && cl.phase != closeDone {
		c.e.log.Warn("stopping before the session was closed; it stays open for recovery", "session", cl.sid)
		c.closing = nil
	}
	c.witness = nil
}

// mustLinger reports whether the loop has to keep serving after Run's context ended: a
// receipt of a closed session is still being printed.
func (c *core) mustLinger() bool {
	return (c.closing != nil && c.closing.topup != nil) || c.printing > 0
}

// healthChanged re-evaluates after a health change; advance does the work.
func (c *core) healthChanged() {}

// journalFailedOp records a failed journal write: service stops until a write succeeds.
func (c *core) journalFailedOp(op string, err error) {
	c.e.log.Error("journal write failed", "op", op, "err", err)
	c.e.cfg.Health.Set("journal_failure", health.Critical, health.Engineer, health.StopsService, fmt.Sprintf("%s: %v", op, err))
	if !c.journalFailed {
		c.probeBackoff = time.Second
	}
	c.journalFailed = true
	c.probeAt = c.now().Add(c.probeBackoff)
}

// journalOK records that a journal write succeeded: the storage works again.
func (c *core) journalOK() {
	if !c.journalFailed {
		return
	}
	c.journalFailed = false
	c.probeBackoff = 0
	c.e.log.Info("journal writes succeed again")
	c.e.cfg.Health.Clear("journal_failure")
	c.relatch()
}

// probeJournal tries one small write while the journal is failing and nothing else writes,
// so that the kiosk returns to service once the storage works again (space freed).
func (c *core) probeJournal() {
	err := c.e.j.Record(journal.EvAlarm, map[string]any{"alarm": "journal_write_probe", "detail": "retrying after a failed journal write"})
	if err != nil {
		c.probeBackoff = min(c.probeBackoff*2, 30*time.Second)
		c.probeAt = c.now().Add(c.probeBackoff)
		c.e.log.Warn("journal still failing", "err", err, "retry_in", c.probeBackoff)
		return
	}
	c.journalOK()
}

// wantAcceptor derives the acceptor state the kiosk needs: enabled only while a customer's
// session accepts notes, inhibited otherwise.
func (c *core) wantAcceptor() {
	var codes []int
	if c.derive() == Accepting && !c.stopping && !c.exiting {
		codes = c.allowedCodes()
	} else if c.noteTest != nil && c.derive() == Maintenance && !c.stopping && !c.exiting {
		codes = c.testCodes() // a technician's note test (notetest.go)
	}
	if len(codes) == 0 {
		codes = nil
	}
	if slices.Equal(codes, c.wantCodes) && (codes != nil) == (c.wantCodes != nil) {
		return
	}
	c.wantCodes = slices.Clone(codes)
	c.wantGen++
}

// reapplyAcceptor makes the controller send the wanted state again (a unit that powered up
// forgot its settings).
func (c *core) reapplyAcceptor() { c.wantGen++ }

// applied reports whether the unit is in the wanted state.
func (c *core) applied() bool { return c.doneGen >= c.wantGen && !c.ctlBusy }

// controlAcceptor starts the task that brings the unit to the wanted state, latest wins.
func (c *core) controlAcceptor() {
	if c.ctlBusy || c.doneGen >= c.wantGen || c.exiting {
		return
	}
	if !c.ctlRetryAt.IsZero() && c.now().Before(c.ctlRetryAt) {
		return
	}
	gen, codes := c.wantGen, slices.Clone(c.wantCodes)
	if codes != nil && !c.pulseLineEnabling(codes) {
		// The journal does not hold that the unit may take notes: the line stays inhibited.
		c.ctlRetryAt = c.now().Add(500 * time.Millisecond)
		return
	}
	c.ctlRetryAt = time.Time{}
	c.ctlBusy = true
	if codes != nil {
		c.lineEnabling, c.disabledSeen = true, false
	}
	acc := c.e.cfg.Acceptor
	c.e.spawn("acceptor", func(ctx context.Context) msg {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var err error
		if codes == nil {
			err = acc.Inhibit(cctx)
		} else {
			err = acc.Enable(cctx, codes)
		}
		cancel()
		return msg{apply: func(c *core) { c.acceptorApplied(gen, codes, err) }}
	})
}

func (c *core) acceptorApplied(gen uint64, codes []int, err error) {
	c.ctlBusy = false
	c.lineEnabling = false
	defer c.pulseLineAtRest()
	if err != nil {
		c.e.log.Warn("acceptor command failed", "enable", codes, "err", err)
		c.ctlRetryAt = c.now().Add(500 * time.Millisecond)
		return
	}
	if gen > c.doneGen {
		c.doneGen = gen
	}
}

// allowedCodes lists the denominations the unit takes now. An escrow unit keeps the set it
// was enabled with at the session's start: a note that no longer fits reaches escrow and is
// returned by the host with a reason the customer can read ("over your limit"), where a unit
// refusing a disabled denomination gives no reason at all. An escrowless unit cannot refuse
// one note and take another: it is enabled only while the largest note fits (invariant 4).
func (c *core) allowedCodes() []int {
	if c.sess == nil {
		return nil
	}
	if !c.e.cfg.Escrowless && c.sessCodes != nil {
		return c.sessCodes
	}
	return c.fittingCodes()
}

func (c *core) fittingCodes() []int {
	rem := c.sess.RemainingMinor()
	var codes []int
	var largest int64
	for code, n := range c.e.cfg.Denominations {
		largest = max(largest, n.ValueMinor)
		if n.ValueMinor > 0 && n.ValueMinor <= rem {
			codes = append(codes, code)
		}
	}
	if c.e.cfg.Escrowless && largest > rem {
		return nil
	}
	slices.Sort(codes)
	return codes
}

func (c *core) topupAcked(t journal.Topup) {
	c.acked[t.TopupID] = t
	if r := c.result; r != nil && r.TopupID == t.TopupID {
		switch t.State {
		case journal.TopupCredited:
			r.Status = ReceiptCredited
		case journal.TopupHeld:
			// The ledger stored it for review without crediting it: the screen must not
			// say the money is in the wallet.
			r.Status = ReceiptUnderReview
		}
	}
}

// refreshSession re-reads the open session after a journal change made elsewhere.
func (c *core) refreshSession() {
	if c.sess == nil {
		return
	}
	if s, ok, err := c.e.j.Session(c.sess.ID); err == nil && ok && !s.Closed {
		c.sess = &s
	}
}

// parked reports whether a stopping kiosk is at rest: no note in transit, nothing closing,
// the unit inhibited.
func (c *core) parked() bool {
	if !c.stopping || c.rec != nil || c.closing != nil || !c.applied() || c.wantCodes != nil {
		return false
	}
	if !c.unitSettled && c.unit != 0 {
		return false
	}
	// A pulse unit is at rest once its line is journaled so (Disabled after the inhibit, the
	// driver's grace for a note drawn in just before it): stopping earlier would leave the
	// line enabled in the journal and make the next start record an uncertain item.
	if c.e.cfg.Escrowless && c.line.Enabled && !c.e.cfg.NoInhibitLine {
		return false
	}
	in, err := c.e.j.OpenIntents()
	return err == nil && len(in) == 0
}
