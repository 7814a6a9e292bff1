package session

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/i18n"
	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/sync/wire"
)

// CommandKind names a command of the engine's command API: the customer's buttons, the
// scanner, the technicians' tools and signed remote commands all use it.
type CommandKind string

// Commands.
const (
	// CmdScan starts a session from a wallet code (Command.Code).
	CmdScan CommandKind = "scan"
	// CmdFinish closes the session (the customer's Finish button).
	CmdFinish CommandKind = "finish"
	// CmdCancel ends an authorization, closes a session, or clears a result on screen.
	CmdCancel CommandKind = "cancel"
	// CmdMoreTime restarts the session's inactivity countdown.
	CmdMoreTime CommandKind = "more_time"
	// CmdStatus returns a snapshot (Reply.Status) and changes nothing.
	CmdStatus CommandKind = "status"
	// CmdOutOfService takes the kiosk out of service with Command.Reason (On) or puts it
	// back in service (!On). A customer in session finishes first.
	CmdOutOfService CommandKind = "out_of_service"
	// CmdMaintenance enters (On) or leaves maintenance. Entering waits for a customer in
	// session to finish: Reply.Progress is "waiting_idle" until then (Command.Wait blocks).
	// While on, the acceptor is inhibited and the state is maintenance.
	CmdMaintenance CommandKind = "maintenance"
	// CmdReprint prints a COPY of receipt Command.ReceiptNo.
	CmdReprint CommandKind = "reprint"
	// CmdPrepareUpdate finishes the session in progress, inhibits the acceptor and reports
	// ready (Reply.Progress "ready", Status.UpdateReady) once nothing is in flight; the
	// kiosk stays in maintenance until CmdMaintenance Off. Command.Wait blocks until ready.
	CmdPrepareUpdate CommandKind = "prepare_update"
	// CmdSignoff clears a condition that only a technician may clear (Command.Condition:
	// a fraud attempt, a swapped unit, a cassette pulled mid-stack), journaling who
	// (Command.Who) and why (Command.Why) first. See signoff.go.
	CmdSignoff CommandKind = "signoff"
)

// Progress values of a Reply.
const (
	ProgressDone        = "done"
	ProgressWaitingIdle = "waiting_idle"
	ProgressReady       = "ready"
)

// Command is one request to the engine.
type Command struct {
	Kind      CommandKind `json:"kind"`
	Code      string      `json:"code,omitempty"`
	On        bool        `json:"on,omitempty"`
	Reason    string      `json:"reason,omitempty"`
	ReceiptNo uint64      `json:"receipt_no,omitempty"`
	// Wait makes Do block until a command that waits for the kiosk to be idle
	// (maintenance, prepare_update) took effect, or ctx ended.
	Wait bool `json:"wait,omitempty"`
	// Condition, Who and Why are a sign-off's (CmdSignoff).
	Condition string `json:"condition,omitempty"`
	Who       string `json:"who,omitempty"`
	Why       string `json:"why,omitempty"`
}

// Reply is the result of a command.
type Reply struct {
	Progress string `json:"progress"`
	Status   Status `json:"status"`
}

// Status is a snapshot of the kiosk for technicians and remote commands; it does not depend
// on the outbox or the uplink.
type Status struct {
	State string `json:"state"`
	// Reason says why the kiosk is not serving: the operator's reason, or the stopping
	// conditions' kinds.
	Reason string `json:"reason,omitempty"`
	// Conditions are the active conditions that stop service; Degraded those that degrade it.
	Conditions   []string        `json:"conditions,omitempty"`
	Degraded     []string        `json:"degraded,omitempty"`
	OutOfService string          `json:"out_of_service,omitempty"` // operator's reason
	Maintenance  bool            `json:"maintenance,omitempty"`
	Waiting      bool            `json:"waiting_idle,omitempty"` // maintenance asked, customer in session
	UpdateReady  bool            `json:"update_ready,omitempty"`
	Stopping     bool            `json:"stopping,omitempty"`
	Session      *SessionSummary `json:"session,omitempty"`
	Result       *Result         `json:"result,omitempty"`
}

// SessionSummary describes the session in progress.
type SessionSummary struct {
	ID            uint64             `json:"id"`
	AccountMasked string             `json:"account_masked"`
	LimitMinor    int64              `json:"limit_minor"`
	TotalMinor    int64              `json:"total_minor"`
	PendingMinor  int64              `json:"pending_minor"`
	Notes         []journal.NoteLine `json:"notes"`
	Uncertain     int                `json:"uncertain,omitempty"`
	Offline       bool               `json:"offline,omitempty"`
	Closing       bool               `json:"closing,omitempty"`
}

// ErrUnknownCommand is returned for a command kind the engine does not know.
var ErrUnknownCommand = errors.New("session: unknown command")

var allStates = []State{Starting, Idle, Authorizing, Accepting, Closing, Done, OutOfService, Maintenance}

// commandStates is the table of the states in which each command is legal.
var commandStates = map[CommandKind][]State{
	CmdScan:          {Idle, Done},
	CmdFinish:        {Accepting},
	CmdCancel:        {Authorizing, Accepting, Done},
	CmdMoreTime:      {Accepting},
	CmdStatus:        allStates,
	CmdOutOfService:  allStates,
	CmdMaintenance:   allStates,
	CmdReprint:       {Idle, Done, OutOfService, Maintenance},
	CmdPrepareUpdate: {Idle, Authorizing, Accepting, Closing, Done, OutOfService, Maintenance},
	CmdSignoff:       allStates,
}

// Legal reports whether command k is accepted in state s.
func Legal(k CommandKind, s State) bool { return slices.Contains(commandStates[k], s) }

// Do runs a command on the run loop and returns its reply.
func (e *Engine) Do(ctx context.Context, cmd Command) (Reply, error) {
	if _, ok := commandStates[cmd.Kind]; !ok {
		return Reply{}, fmt.Errorf("%w: %q", ErrUnknownCommand, cmd.Kind)
	}
	select {
	case <-e.running:
	default:
		return Reply{}, ErrNotRunning
	}
	var rep Reply
	var err error
	if !e.call(ctx, func(c *core) { rep, err = c.command(cmd) }) {
		if ctx.Err() != nil {
			return Reply{}, ctx.Err()
		}
		return Reply{}, ErrNotRunning
	}
	if err != nil || !cmd.Wait || rep.Progress != ProgressWaitingIdle {
		return rep, err
	}
	target := func(s Status, _ bool) bool { return s.Maintenance && !s.Waiting }
	if cmd.Kind == CmdPrepareUpdate {
		target = func(s Status, _ bool) bool { return s.UpdateReady }
	}
	st, werr := e.waitPub(ctx, target)
	rep.Status = st
	if werr != nil {
		return rep, werr
	}
	rep.Progress = ProgressDone
	if cmd.Kind == CmdPrepareUpdate {
		rep.Progress = ProgressReady
	}
	return rep, nil
}

// command applies cmd on the loop.
func (c *core) command(cmd Command) (Reply, error) {
	st := c.derive()
	if !Legal(cmd.Kind, st) {
		return Reply{Status: c.status()}, fmt.Errorf("%w: %s in %s", ErrBusy, cmd.Kind, st)
	}
	var err error
	progress := ProgressDone
	switch cmd.Kind {
	case CmdScan:
		err = c.scan(cmd.Code)
	case CmdFinish:
		c.lastActivity = c.now()
		c.startClose(wire.OutcomeComplete, "customer finished")
	case CmdCancel:
		switch st {
		case Authorizing:
			c.authz = nil
			c.say("info", i18n.KeyCancelled, "Cancelled.")
		case Accepting:
			// Stacked notes cannot be given back: with money inserted it is Finish.
			c.startClose(wire.OutcomeComplete, "customer cancelled")
		case Done:
			c.result = nil
			c.message, c.messageKind = "", ""
		}
	case CmdMoreTime:
		c.lastActivity = c.now()
	case CmdStatus:
	case CmdOutOfService:
		if cmd.On {
			reason := cmd.Reason
			if reason == "" {
				reason = "operator"
			}
			c.oosReason = reason
			c.e.log.Info("out of service by the operator", "reason", reason)
			c.e.cfg.Health.Event("operator_out_of_service", health.Info, health.None, reason)
		} else {
			c.oosReason = ""
			c.e.log.Info("back in service by the operator")
		}
	case CmdMaintenance:
		if cmd.On {
			c.maintWanted = true
			if c.inSession() || c.rec != nil {
				progress = ProgressWaitingIdle
			} else {
				c.maintenance = true
			}
			c.e.log.Info("maintenance requested", "waiting_idle", progress == ProgressWaitingIdle)
		} else {
			c.maintWanted, c.maintenance, c.updateReady = false, false, false
			c.e.log.Info("maintenance mode off")
		}
	case CmdReprint:
		err = c.reprintReceipt(cmd.ReceiptNo)
	case CmdSignoff:
		err = c.signoff(cmd)
	case CmdPrepareUpdate:
		c.maintWanted, c.updateReady = true, true
		if c.sess != nil && c.closing == nil {
			c.startClose(wire.OutcomeComplete, "kiosk preparing an update")
		}
		c.authz = nil
		c.advance()
		if !c.readyForUpdate() {
			progress = ProgressWaitingIdle
		} else {
			progress = ProgressReady
		}
	}
	c.advance()
	return Reply{Progress: progress, Status: c.status()}, err
}

// readyForUpdate reports whether nothing is in flight: no session, no receipt printing, the
// unit inhibited.
func (c *core) readyForUpdate() bool {
	return c.maintenance && !c.inSession() && c.rec == nil && c.printing == 0 && c.applied() && c.wantCodes == nil
}

// status is the snapshot the command API returns.
func (c *core) status() Status {
	st := c.derive()
	s := Status{State: st.String(), OutOfService: c.oosReason, Maintenance: c.maintenance,
		Waiting: c.maintWanted && !c.maintenance, Stopping: c.stopping}
	s.UpdateReady = c.updateReady && c.readyForUpdate()
	eff, kinds := c.e.cfg.Health.Worst()
	if eff >= health.StopsService {
		s.Conditions = kinds
	} else if eff == health.Degrades {
		s.Degraded = kinds
	}
	switch {
	case c.oosReason != "":
		s.Reason = c.oosReason
	case len(s.Conditions) > 0:
		s.Reason = fmt.Sprint(s.Conditions)
	}
	if ss := c.sess; ss != nil {
		s.Session = &SessionSummary{ID: ss.ID, AccountMasked: ss.AccountMasked, LimitMinor: ss.LimitMinor, TotalMinor: ss.TotalMinor,
			PendingMinor: ss.PendingMinor, Notes: slices.Clone(ss.Notes), Uncertain: len(ss.Uncertain), Offline: ss.Offline, Closing: c.closing != nil}
	}
	if c.result != nil {
		r := *c.result
		s.Result = &r
	}
	return s
}

func (e *Engine) do(cmd Command) error {
	_, err := e.Do(context.Background(), cmd)
	return err
}

// Scan handles a code read by the QR scanner. It returns the refusal (nil when a session
// starts authorizing); the refusal is also shown on the customer screen.
func (e *Engine) Scan(code string) error { return e.do(Command{Kind: CmdScan, Code: code}) }

// Finish is the customer's Finish button.
func (e *Engine) Finish() error { return e.do(Command{Kind: CmdFinish}) }

// Cancel is the customer's Cancel button: before any money it ends the session; with money
// inserted it is the same as Finish (stacked notes cannot be given back).
func (e *Engine) Cancel() error { return e.do(Command{Kind: CmdCancel}) }

// MoreTime restarts the session's inactivity countdown.
func (e *Engine) MoreTime() error { return e.do(Command{Kind: CmdMoreTime}) }

// Status returns a snapshot of the kiosk from the run loop.
func (e *Engine) Status(ctx context.Context) (Status, error) {
	rep, err := e.Do(ctx, Command{Kind: CmdStatus})
	return rep.Status, err
}

// SetOutOfService takes the kiosk out of service (on, with reason) or back in service.
func (e *Engine) SetOutOfService(on bool, reason string) error {
	return e.do(Command{Kind: CmdOutOfService, On: on, Reason: reason})
}

// SetMaintenance enters or leaves maintenance; with wait it blocks until a customer in
// session has finished (or ctx ends).
func (e *Engine) SetMaintenance(ctx context.Context, on, wait bool) (Reply, error) {
	return e.Do(ctx, Command{Kind: CmdMaintenance, On: on, Wait: wait})
}

// Reprint prints a COPY of receipt no.
func (e *Engine) Reprint(no uint64) error { return e.do(Command{Kind: CmdReprint, ReceiptNo: no}) }

// PrepareUpdate finishes the session in progress, inhibits the acceptor and reports ready;
// with wait it blocks until ready (or ctx ends).
func (e *Engine) PrepareUpdate(ctx context.Context, wait bool) (Reply, error) {
	return e.Do(ctx, Command{Kind: CmdPrepareUpdate, Wait: wait})
}

// WaitIdle is PrepareUpdate with wait: it returns once the kiosk is parked in maintenance.
func (e *Engine) WaitIdle(ctx context.Context) (Reply, error) { return e.PrepareUpdate(ctx, true) }

// Shutdown parks the kiosk for a stop: no new session starts, an authorization in progress
// is dropped, an open session is closed (as interrupted) and its receipt printed, the
// acceptor is inhibited, and Shutdown waits until the note in transit has ended at the credit
// point or back at the front. It returns ctx's error if that did not happen in time; the
// next start's recovery finishes the job then.
func (e *Engine) Shutdown(ctx context.Context) error {
	select {
	case <-e.running:
	default:
		return ErrNotRunning
	}
	if !e.call(ctx, func(c *core) { c.shutdown() }) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return nil
	}
	_, err := e.waitPub(ctx, func(_ Status, parked bool) bool { return parked })
	if errors.Is(err, ErrNotRunning) {
		return nil
	}
	return err
}

func (c *core) shutdown() {
	c.stopping = true
	c.authz = nil
	if c.closing == nil {
		c.result = nil
	}
	if c.sess != nil && c.closing == nil && c.rec == nil {
		c.startClose(wire.OutcomeInterrupted, "kiosk stopping")
	}
	c.say("info", i18n.KeyClosing, "This kiosk is closing. Please wait.")
}
