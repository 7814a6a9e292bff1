package session

import (
	"context"
	"fmt"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/journal"
)

// Handler returns the acceptor.Handler the driver reports to.
func (e *Engine) Handler() acceptor.Handler { return (*handler)(e) }

type handler Engine

func jnote(n acceptor.Note) journal.Note { return journal.Note{Code: n.Code, ValueMinor: n.ValueMinor} }

// Escrow decides the fate of a note in escrow: stack only within the session's remaining
// limit (invariant 4), and only after the stack intent is durable.
func (h *handler) Escrow(ctx context.Context, n acceptor.Note) acceptor.Decision {
	e := (*Engine)(h)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.unit, e.unitSettled = acceptor.Holding, false
	e.lastActivity = e.now()
	// Fill the value from our own table when the unit gave only a code.
	if !n.Known() {
		if t, ok := e.cfg.Denominations[n.Code]; ok {
			n.ValueMinor, n.Currency = t.ValueMinor, t.Currency
		}
	}
	if e.recovering {
		// A note held in escrow across a host restart: if it is the note we had committed to
		// stack, finish the job; anything else goes back.
		// A unit that cannot say which note it holds (SSP answers HOLD without the channel)
		// holds the only note it can: the one we committed to. Its credit report names the
		// real value, and a mismatch is journaled and alarmed.
		intents, err := e.j.OpenIntents()
		if err == nil && len(intents) == 1 && (intents[0].Note.ValueMinor == n.ValueMinor || !n.Known()) {
			e.log.Info("recovery: re-stacking the note of an open intent", "intent", intents[0].ID, "note", n.String())
			e.cfg.Hook("recovery-restack")
			return acceptor.Stack
		}
		e.refuseLocked(0, n, "kiosk starting")
		return acceptor.Return
	}
	sid := uint64(0)
	if e.sess != nil {
		sid = e.sess.ID
	}
	switch {
	case e.state != Accepting || e.sess == nil:
		e.refuseLocked(sid, n, "not accepting")
		return acceptor.Return
	case !n.Known() || n.Currency != e.j.Currency():
		e.refuseLocked(sid, n, "unknown denomination")
		e.messageLocked("error", "This note is not accepted. Please take it back.")
		e.explained = true
		e.changedLocked()
		return acceptor.Return
	case n.ValueMinor > e.sess.RemainingMinor():
		e.refuseLocked(sid, n, "over the session limit")
		e.messageLocked("error", fmt.Sprintf("This note would take you over your limit (%s left). Please take it back.", formatMinor(e.sess.RemainingMinor(), e.j.Currency())))
		e.explained = true
		e.changedLocked()
		return acceptor.Return
	}
	e.explained = false
	e.cfg.Hook("before-stack-intent")
	in, err := e.j.StackIntent(e.sess.ID, jnote(n))
	if err != nil {
		e.journalFailedLocked("stack intent", err)
		e.changedLocked()
		return acceptor.Return
	}
	e.cfg.Hook("after-stack-intent")
	e.sess.PendingMinor += n.ValueMinor
	e.log.Info("stacking", "note", n.String(), "intent", in.ID, "session", e.sess.ID)
	e.messageLocked("info", "Note accepted, counting…")
	e.changedLocked()
	return acceptor.Stack
}

func (e *Engine) refuseLocked(sid uint64, n acceptor.Note, reason string) {
	e.log.Info("returning note", "note", n.String(), "reason", reason)
	if err := e.j.RefuseNote(sid, jnote(n), reason); err != nil {
		e.journalFailedLocked("refuse note", err)
	}
}

// Credited journals the credit point; the driver ACKs the unit only after nil.
func (h *handler) Credited(ctx context.Context, n acceptor.Note) error {
	e := (*Engine)(h)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.unit, e.unitSettled = acceptor.Stacking, false
	e.lastActivity = e.now()
	if e.cfg.Escrowless {
		return e.creditEscrowlessLocked(n)
	}
	if !n.Known() && n.Code != 0 {
		if t, ok := e.cfg.Denominations[n.Code]; ok {
			n.ValueMinor, n.Currency = t.ValueMinor, t.Currency
		}
	}
	intents, err := e.j.OpenIntents()
	if err != nil {
		e.journalFailedLocked("read intents", err)
		return err
	}
	e.cfg.Hook("credit-before-commit")
	if len(intents) == 0 {
		kind, err := e.j.CreditWithoutIntent(jnote(n), "credit report with no open intent")
		if err != nil {
			e.journalFailedLocked("credit without intent", err)
			return err
		}
		if kind == journal.Unexpected {
			e.cfg.Health.Event("unexpected_credit", health.Critical, health.Engineer,
				fmt.Sprintf("acceptor credited %s without a stack command; recorded as an uncertain item", n))
			e.refreshSessionLocked()
		} else {
			e.log.Info("unit re-reported an already journaled credit; acknowledging without counting", "note", n.String())
		}
		e.cfg.Hook("credit-after-commit")
		e.changedLocked()
		return nil
	}
	// One note travels at a time; the oldest open intent is the one at the credit point.
	in := intents[0]
	res, err := e.j.CreditNote(in.ID, jnote(n), "")
	if err != nil {
		e.journalFailedLocked("credit", err)
		return err
	}
	e.cfg.Hook("credit-after-commit")
	e.creditOpen = true
	if res.Mismatch {
		e.cfg.Health.Event("credit_mismatch", health.Warning, health.Engineer,
			fmt.Sprintf("unit credited %d where %d was escrowed (intent %d); the credit report was journaled", res.Credit.ValueMinor, in.Note.ValueMinor, in.ID))
	}
	e.log.Info("credited", "value_minor", res.Credit.ValueMinor, "session", res.Session.ID, "total", res.Session.TotalMinor)
	if e.sess != nil && e.sess.ID == res.Session.ID {
		s := res.Session
		e.sess = &s
		e.messageLocked("info", fmt.Sprintf("%s received.", formatMinor(res.Credit.ValueMinor, e.j.Currency())))
	}
	e.changedLocked()
	return nil
}

// Pulse journals one pulse of an escrowless pulse acceptor (acceptor.PulseRecorder).
func (h *handler) Pulse(ctx context.Context, train uint64, count int) error {
	e := (*Engine)(h)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.unit, e.unitSettled = acceptor.Accepting, false
	e.lastActivity = e.now()
	if err := e.j.RecordPulse(train, count); err != nil {
		e.journalFailedLocked("pulse", err)
		return err
	}
	return nil
}

// creditEscrowlessLocked credits a note an escrowless unit already put in the cassette.
// The value is the unit's own: a pulse count that matches no note (ValueMinor 0) is an
// uncertain item, never guessed from the table.
func (e *Engine) creditEscrowlessLocked(n acceptor.Note) error {
	sid := uint64(0)
	if e.sess != nil {
		sid = e.sess.ID
	} else if s, ok, err := e.j.CurrentSession(); err == nil && ok {
		sid = s.ID // recovering: the interrupted session is still open
	}
	e.cfg.Hook("credit-before-commit")
	if !n.Known() {
		if err := e.j.PulseUncertain(sid, fmt.Sprintf("unit reported a note it could not value (code %d)", n.Code)); err != nil {
			e.journalFailedLocked("uncertain pulse train", err)
			return err
		}
		e.cfg.Health.Event("uncertain_item", health.Critical, health.Staff,
			fmt.Sprintf("pulse acceptor credited a train of %d pulse(s) that matches no note; settle at cash collection", n.Code))
		e.refreshSessionLocked()
		e.changedLocked()
		return nil
	}
	res, err := e.j.CreditDirect(sid, jnote(n), "")
	if err != nil {
		e.journalFailedLocked("credit", err)
		return err
	}
	e.cfg.Hook("credit-after-commit")
	e.creditOpen = true
	switch {
	case res.Unexpected:
		e.cfg.Health.Event("unexpected_credit", health.Critical, health.Engineer,
			fmt.Sprintf("pulse acceptor credited %s with no session open; recorded as an uncertain item", n))
	case res.OverLimit:
		e.cfg.Health.Event("limit_exceeded", health.Warning, health.Engineer,
			fmt.Sprintf("pulse acceptor took %s over the session limit; credited (the note is in the cassette)", n))
	}
	if e.sess != nil && e.sess.ID == res.Session.ID {
		s := res.Session
		e.sess = &s
		e.messageLocked("info", fmt.Sprintf("%s received.", formatMinor(res.Credit.ValueMinor, e.j.Currency())))
		if e.state == Accepting {
			e.wantLocked(e.allowedCodesLocked())
		}
	}
	e.changedLocked()
	return nil
}

// completeNoteLocked records, once per credited note, that the unit finished it.
func (e *Engine) completeNoteLocked() {
	if !e.creditOpen {
		return
	}
	if err := e.j.NoteCompleted(); err != nil {
		e.journalFailedLocked("note completed", err)
		return
	}
	e.creditOpen = false
}

// refreshSessionLocked re-reads the open session after a journal change made elsewhere.
func (e *Engine) refreshSessionLocked() {
	if e.sess == nil {
		return
	}
	if s, ok, err := e.j.Session(e.sess.ID); err == nil && ok && !s.Closed {
		e.sess = &s
	}
}

// Event handles everything else the unit reports.
func (h *handler) Event(ctx context.Context, ev acceptor.Event) {
	e := (*Engine)(h)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.unit = ev.Kind
	switch ev.Kind {
	case acceptor.Idle, acceptor.Disabled:
		e.unitSettled = true
		e.clearFaultsLocked()
		e.completeNoteLocked()
	case acceptor.Accepting, acceptor.Stacking, acceptor.Returning, acceptor.Holding, acceptor.Initializing:
		e.unitSettled = false
		if ev.Kind == acceptor.Accepting {
			e.lastActivity = e.now()
		}
	case acceptor.Stacked:
		e.unitSettled = false
		e.completeNoteLocked()
	case acceptor.Returned:
		e.lastActivity = e.now()
		// Keep the reason the host gave for returning it; the customer needs that more.
		if e.state == Accepting && !e.explained {
			e.messageLocked("info", "Note returned. Please take it.")
		}
		e.explained = false
	case acceptor.Rejected:
		e.lastActivity = e.now()
		if e.state == Accepting {
			e.messageLocked("error", "The note was not accepted ("+rejectText(ev.Reason)+"). Please take it and try again.")
		}
	case acceptor.PowerUp, acceptor.PowerUpNoteInAcceptor, acceptor.PowerUpNoteInStacker:
		e.unitSettled = false
		e.recordDeviceLocked(ev)
		e.resolveFromPowerUpLocked(ev)
		// A unit comes out of power-up inhibited with its settings forgotten: make the
		// controller apply the wanted state again.
		e.wantGen++
		e.poke()
	case acceptor.Fraud:
		e.recordDeviceLocked(ev)
		e.cfg.Health.Event("acceptor_fraud", health.Critical, health.Engineer, ev.String())
	case acceptor.CommRestored:
		e.recordDeviceLocked(ev)
		delete(e.faults, acceptor.CommLost.String())
		e.cfg.Health.Clear("acceptor_" + acceptor.CommLost.String())
	case acceptor.ProtocolError:
		e.log.Warn("acceptor protocol error", "event", ev.String())
	case acceptor.CassetteReplaced:
		e.recordDeviceLocked(ev)
		delete(e.faults, acceptor.CassetteRemoved.String())
		e.cfg.Health.Clear("acceptor_" + acceptor.CassetteRemoved.String())
	}
	// Every fault stops service until the unit reports a normal state again; for a unit that
	// latches a cheat attempt until RESET (ID-003, CCNET) that means until a technician resets
	// it, for one that reports it once (SSP) it clears at the next poll.
	if ev.Kind.Fault() {
		e.recordDeviceLocked(ev)
		key := ev.Kind.String()
		if !e.faults[key] {
			e.faults[key] = true
			actor := health.Engineer
			if ev.Kind == acceptor.CassetteFull || ev.Kind == acceptor.CassetteRemoved {
				actor = health.Staff
			}
			e.cfg.Health.Set("acceptor_"+key, health.Critical, actor, health.StopsService, ev.String())
		}
	}
	e.changedLocked()
}

// clearFaultsLocked clears acceptor faults once the unit reports a normal state.
func (e *Engine) clearFaultsLocked() {
	for k := range e.faults {
		delete(e.faults, k)
		e.cfg.Health.Clear("acceptor_" + k)
	}
}

func (e *Engine) recordDeviceLocked(ev acceptor.Event) {
	if err := e.j.Record(journal.EvDevice, map[string]any{"device": "acceptor", "event": ev.Kind.String(), "code": ev.Code, "detail": ev.String()}); err != nil {
		e.journalFailedLocked("device event", err)
	}
}

// resolveFromPowerUpLocked settles an open stack intent from the unit's own power-up report
// (invariant 3).
func (e *Engine) resolveFromPowerUpLocked(ev acceptor.Event) {
	intents, err := e.j.OpenIntents()
	if err != nil {
		e.journalFailedLocked("read intents", err)
		return
	}
	if len(intents) == 0 {
		// A note in the acceptor goes back to the customer at reset. A note in the stacker is
		// the last credited note if the unit had not finished it; otherwise nothing in the
		// journal accounts for it and it becomes an uncertain item.
		if ev.Kind == acceptor.PowerUpNoteInStacker {
			last, err := e.j.StackerWithoutIntent(jnote(ev.Note), ev.String())
			if err != nil {
				e.journalFailedLocked("stacker note", err)
				return
			}
			if !last {
				e.cfg.Health.Event("uncertain_item", health.Critical, health.Staff,
					"unit powered up with a note in the stacker that the journal has no stack intent for; settle at cash collection")
				e.refreshSessionLocked()
			}
		}
		return
	}
	in := intents[0]
	if _, counts := e.cfg.Acceptor.(acceptor.StackCounter); counts && ev.Kind == acceptor.PowerUp {
		// The unit says nothing about the note, but it counts what it stacked: ask its
		// counter once it is at rest (recovery does it at start-up; while running, a task).
		e.log.Warn("unit restarted with a note in transit; asking its stacked counter", "intent", in.ID)
		if !e.recovering && e.runCtx != nil {
			ctx := e.runCtx
			e.tasks.Add(1)
			go func() {
				defer e.tasks.Done()
				e.settleByWitness(ctx, in)
			}()
		}
		return
	}
	var resolution, evidence string
	switch ev.Kind {
	case acceptor.PowerUpNoteInStacker:
		resolution, evidence = journal.ResolvedStacked, fmt.Sprintf("unit powered up with the note in the stacker (%s)", ev)
	case acceptor.PowerUpNoteInAcceptor:
		resolution, evidence = journal.ResolvedReturned, fmt.Sprintf("unit powered up with the note in the acceptor, returned at reset (%s)", ev)
	default:
		resolution, evidence = journal.ResolvedUncertain, fmt.Sprintf("unit powered up with no note in the path (%s)", ev)
	}
	s, err := e.j.ResolveIntent(in.ID, resolution, evidence)
	if err != nil {
		e.journalFailedLocked("resolve intent", err)
		return
	}
	e.log.Warn("resolved a stack intent from the unit's power-up report", "intent", in.ID, "resolution", resolution, "evidence", evidence)
	if resolution == journal.ResolvedUncertain {
		e.cfg.Health.Event("uncertain_item", health.Critical, health.Staff,
			fmt.Sprintf("note of %d minor units in session %d: %s; settle at cash collection", in.Note.ValueMinor, in.SessionID, evidence))
	}
	if e.sess != nil && e.sess.ID == s.ID {
		e.sess = &s
	}
}

func rejectText(r acceptor.RejectReason) string {
	switch r {
	case acceptor.RejectInhibited:
		return "this note is not taken now"
	case acceptor.RejectMultiple:
		return "more than one note"
	case acceptor.RejectInsertion, acceptor.RejectLength, acceptor.RejectConveying:
		return "please insert it flat and straight"
	case acceptor.RejectCounterfeit, acceptor.RejectMagnetic, acceptor.RejectPhotoPattern, acceptor.RejectPhotoLevel:
		return "it could not be verified"
	}
	return "it could not be read"
}
