package session

import (
	"context"
	"errors"
	"fmt"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/i18n"
	"github.com/kioskd/kioskd/kiosk/journal"
)

// Handler returns the acceptor.Handler the driver reports to. Each callback is a message to
// the run loop; it returns once the loop has journaled what the report needs.
func (e *Engine) Handler() acceptor.Handler { return (*handler)(e) }

type handler Engine

// errNotServing answers a credit when the engine's loop is gone: the driver does not
// acknowledge it, so the unit reports it again to the next run.
var errNotServing = errors.New("session: engine not running; credit not journaled")

func jnote(n acceptor.Note) journal.Note { return journal.Note{Code: n.Code, ValueMinor: n.ValueMinor} }

// Escrow decides the fate of a note in escrow: stack only within the session's remaining
// limit (invariant 4), and only after the stack intent is durable and sealed.
func (h *handler) Escrow(ctx context.Context, n acceptor.Note) acceptor.Decision {
	e := (*Engine)(h)
	d := acceptor.Return
	e.call(ctx, func(c *core) { d = c.escrow(n) })
	return d
}

// Credited journals the credit point; the driver ACKs the unit only after nil.
func (h *handler) Credited(ctx context.Context, n acceptor.Note) error {
	e := (*Engine)(h)
	err := errNotServing
	e.call(ctx, func(c *core) { err = c.credited(n) })
	return err
}

// Pulse journals one pulse of an escrowless pulse acceptor (acceptor.PulseRecorder).
func (h *handler) Pulse(ctx context.Context, train uint64, count int) error {
	e := (*Engine)(h)
	err := errNotServing
	e.call(ctx, func(c *core) { err = c.pulse(train, count) })
	return err
}

// PowerUp journals a power-up report (acceptor.PowerUpRecorder): a note the unit holds in
// its path is recorded (an open intent resolved, or an uncertain item) before the driver
// resets the unit, which then forgets it. An error makes the driver keep the unit as it is
// and report again.
func (h *handler) PowerUp(ctx context.Context, ev acceptor.Event) error {
	e := (*Engine)(h)
	err := errNotServing
	e.call(ctx, func(c *core) { err = c.powerUp(ev) })
	return err
}

// Event handles everything else the unit reports.
func (h *handler) Event(ctx context.Context, ev acceptor.Event) {
	e := (*Engine)(h)
	e.call(ctx, func(c *core) { c.event(ev) })
}

func (c *core) escrow(n acceptor.Note) acceptor.Decision {
	c.unit, c.unitSettled = acceptor.Holding, false
	// A Returned report from here on is about this note, not one sent back before.
	c.sentBack = nil
	c.lastActivity = c.now()
	// Fill the value from our own table when the unit gave only a code.
	if !n.Known() {
		if t, ok := c.e.cfg.Denominations[n.Code]; ok {
			n.ValueMinor, n.Currency = t.ValueMinor, t.Currency
		}
	}
	if c.rec != nil {
		// A note held in escrow across a host restart: if it is the note we had committed to
		// stack, finish the job; anything else goes back.
		// A unit that cannot say which note it holds (SSP answers HOLD without the channel)
		// holds the only note it can: the one we committed to. Its credit report names the
		// real value, and a mismatch is journaled and alarmed.
		intents, err := c.e.j.OpenIntents()
		if err == nil && len(intents) == 1 && (intents[0].Note.ValueMinor == n.ValueMinor || !n.Known()) {
			c.e.log.Info("recovery: re-stacking the note of an open intent", "intent", intents[0].ID, "note", n.String())
			c.hit("recovery-restack")
			return acceptor.Stack
		}
		c.refuse(0, n, "kiosk starting")
		return acceptor.Return
	}
	if c.noteTest != nil && c.derive() == Maintenance {
		return c.escrowTest(n)
	}
	sid := uint64(0)
	if c.sess != nil {
		sid = c.sess.ID
	}
	switch {
	case c.derive() != Accepting || c.stopping || c.exiting:
		c.refuse(sid, n, "not accepting")
		return acceptor.Return
	case !n.Known() || n.Currency != c.e.j.Currency():
		c.refuse(sid, n, "unknown denomination")
		c.say("error", i18n.KeyNoteNotAccepted, "This note is not accepted. Please take it back.")
		c.explained = true
		return acceptor.Return
	case n.ValueMinor > c.sess.RemainingMinor():
		c.refuse(sid, n, "over the session limit")
		c.say("error", i18n.KeyRefuseOverLimitNote, fmt.Sprintf("This note would take you over your limit (%s left). Please take it back.", formatMinor(c.sess.RemainingMinor(), c.e.j.Currency())), i18n.Amount(i18n.PRemaining, c.sess.RemainingMinor(), c.e.j.Currency()))
		c.explained = true
		return acceptor.Return
	}
	c.explained = false
	// The unit holds a new note: it has finished the one it credited before. Record that
	// in its own commit before the stack intent, so that a power cut that loses the intent's
	// commit cannot leave the old note looking unfinished (a note then found in the stacker
	// would be taken for it and this one lost).
	c.completeNote()
	c.hit("before-stack-intent")
	in, err := c.e.j.StackIntent(c.sess.ID, jnote(n))
	if err != nil {
		c.journalFailedOp("stack intent", err)
		return c.sendBackUnrecorded()
	}
	c.hit("after-stack-intent")
	c.sess.PendingMinor += n.ValueMinor // as the journal's session counts it now
	// Seal the intent before the unit is told to stack: were it the journal's last commit,
	// a power cut could take it while the unit finishes the note on its own (ID-003 stacks
	// a note whose VEND VALID went unacknowledged, and its power-up report names no note):
	// a note in the cassette with no trace (sim seed 897709695). If the seal fails, the
	// note goes back, and the unit's Returned report settles the intent as returned; if the
	// journal still fails then, the intent stays open and becomes an uncertain item when
	// the session closes, for the cash count to settle.
	if err := c.e.j.Seal("stack intent recorded"); err != nil {
		c.journalFailedOp("seal stack intent", err)
		c.sentBack = &in
		return c.sendBackUnrecorded()
	}
	c.journalOK()
	c.e.log.Info("stacking", "note", n.String(), "intent", in.ID, "session", c.sess.ID)
	c.say("info", i18n.KeyNoteCounting, "Note accepted, counting…")
	return acceptor.Stack
}

// sendBackUnrecorded returns a note the journal could not record, with the reason on the
// screen.
func (c *core) sendBackUnrecorded() acceptor.Decision {
	c.say("error", "note.reject.inhibited", "Sorry, this note cannot be taken now. Please take it back.")
	c.explained = true
	return acceptor.Return
}

func (c *core) refuse(sid uint64, n acceptor.Note, reason string) {
	c.e.log.Info("returning note", "note", n.String(), "reason", reason)
	if err := c.e.j.RefuseNote(sid, jnote(n), reason); err != nil {
		c.journalFailedOp("refuse note", err)
		return
	}
	c.journalOK()
}

func (c *core) credited(n acceptor.Note) error {
	err := c.credit(n)
	c.creditRefused = err != nil
	return err
}

func (c *core) credit(n acceptor.Note) error {
	c.unit, c.unitSettled = acceptor.Stacking, false
	c.lastActivity = c.now()
	if c.e.cfg.Escrowless {
		return c.creditEscrowless(n)
	}
	if !n.Known() && n.Code != 0 {
		if t, ok := c.e.cfg.Denominations[n.Code]; ok {
			n.ValueMinor, n.Currency = t.ValueMinor, t.Currency
		}
	}
	intents, err := c.e.j.OpenIntents()
	if err != nil {
		c.journalFailedOp("read intents", err)
		return err
	}
	c.hit("credit-before-commit")
	if len(intents) == 0 {
		// A repeat of the last credit, the late credit of a note whose session closed with
		// it in transit (a follow-up top-up), or a credit nothing explains.
		late, err := c.e.j.CreditAfterClose(jnote(n), "credit report with no open intent")
		if err != nil {
			c.journalFailedOp("credit without intent", err)
			return err
		}
		c.journalOK()
		switch late.Kind {
		case journal.Unexpected:
			c.e.cfg.Health.Event("unexpected_credit", health.Critical, health.Engineer,
				fmt.Sprintf("acceptor credited %s without a stack command; recorded as an uncertain item", n))
			c.refreshSession()
		case journal.FollowUp:
			c.creditUnfinished = true
			c.followUpCredited(late)
		default:
			// The repeated credit is the last one: the unit has still to finish it.
			c.creditUnfinished = true
			c.e.log.Info("unit re-reported an already journaled credit; acknowledging without counting", "note", n.String())
		}
		c.hit("credit-after-commit")
		return nil
	}
	// One note travels at a time; the oldest open intent is the one at the credit point.
	in := intents[0]
	res, err := c.e.j.CreditNote(in.ID, jnote(n), "")
	if err != nil {
		c.journalFailedOp("credit", err)
		return err
	}
	c.hit("credit-after-commit")
	c.journalOK()
	c.creditUnfinished = true
	if res.Mismatch {
		c.e.cfg.Health.Event("credit_mismatch", health.Warning, health.Engineer,
			fmt.Sprintf("unit credited %d where %d was escrowed (intent %d); the credit report was journaled", res.Credit.ValueMinor, in.Note.ValueMinor, in.ID))
	}
	c.e.log.Info("credited", "value_minor", res.Credit.ValueMinor, "session", res.Session.ID, "total", res.Session.TotalMinor)
	if c.sess != nil && c.sess.ID == res.Session.ID {
		s := res.Session
		c.sess = &s
		c.say("info", i18n.KeyNoteReceived, fmt.Sprintf("%s received.", formatMinor(res.Credit.ValueMinor, c.e.j.Currency())), i18n.Amount(i18n.PAmount, res.Credit.ValueMinor, c.e.j.Currency()))
	}
	// The driver acknowledges the credit when this returns nil, and the unit forgets it: a
	// CCNET unit can finish the note and draw in the next one before the driver polls again,
	// so nothing else may be committed before a power cut. If storage that lied about fsync
	// lost the credit as its last commit, the intent would be settled from the unit's
	// power-up report, which then speaks of the next note (in the acceptor: "returned").
	// A second small commit keeps the credit from being the last. If it fails, the credit
	// stays unacknowledged; the unit's repeat is recognised and journaled, which seals it.
	if err := c.e.j.Seal("credit recorded"); err != nil {
		c.journalFailedOp("seal credit", err)
		return err
	}
	return nil
}

func (c *core) pulse(train uint64, count int) error {
	c.unit, c.unitSettled = acceptor.Accepting, false
	c.lastActivity = c.now()
	if !c.pulsed {
		// A train the previous run journaled and never credited is still open: this run's
		// first pulse would overwrite it (the journal keeps one open train, and train numbers
		// start again with each driver run), and the note it stands for would vanish before
		// recovery looks for it. The previous run can no longer credit it, so it becomes an
		// uncertain item now, before the new pulse is recorded.
		pt, open, err := c.e.j.OpenPulseTrain()
		if err != nil {
			c.journalFailedOp("pulse", err)
			return err
		}
		if open {
			if err := c.e.j.PulseUncertain(pt.SessionID, "pulse train interrupted by a restart"); err != nil {
				c.journalFailedOp("uncertain pulse train", err)
				return err
			}
			c.e.cfg.Health.Event("uncertain_item", health.Critical, health.Staff, "a pulse train was cut short by a restart; settle at cash collection")
			c.refreshSession()
		}
	}
	if err := c.e.j.RecordPulse(train, count); err != nil {
		c.journalFailedOp("pulse", err)
		return err
	}
	c.pulsed = true
	c.journalOK()
	return nil
}

// creditEscrowless credits a note an escrowless unit already put in the cassette. The value
// is the unit's own: a pulse count that matches no note (ValueMinor 0) is an uncertain item,
// never guessed from the table.
func (c *core) creditEscrowless(n acceptor.Note) error {
	sid := uint64(0)
	if c.sess != nil {
		sid = c.sess.ID
	}
	c.hit("credit-before-commit")
	if !n.Known() {
		if err := c.e.j.PulseUncertain(sid, fmt.Sprintf("unit reported a note it could not value (code %d)", n.Code)); err != nil {
			c.journalFailedOp("uncertain pulse train", err)
			return err
		}
		c.journalOK()
		c.e.cfg.Health.Event("uncertain_item", health.Critical, health.Staff,
			fmt.Sprintf("pulse acceptor credited a train of %d pulse(s) that matches no note; settle at cash collection", n.Code))
		c.refreshSession()
		return nil
	}
	res, err := c.e.j.CreditDirect(sid, jnote(n), "")
	if err != nil {
		c.journalFailedOp("credit", err)
		return err
	}
	c.hit("credit-after-commit")
	c.journalOK()
	c.creditUnfinished = true
	switch {
	case res.Unexpected:
		c.e.cfg.Health.Event("unexpected_credit", health.Critical, health.Engineer,
			fmt.Sprintf("pulse acceptor credited %s with no session open; recorded as an uncertain item", n))
	case res.OverLimit:
		c.e.cfg.Health.Event("limit_exceeded", health.Warning, health.Engineer,
			fmt.Sprintf("pulse acceptor took %s over the session limit; credited (the note is in the cassette)", n))
	}
	if c.sess != nil && c.sess.ID == res.Session.ID {
		s := res.Session
		c.sess = &s
		c.say("info", i18n.KeyNoteReceived, fmt.Sprintf("%s received.", formatMinor(res.Credit.ValueMinor, c.e.j.Currency())), i18n.Amount(i18n.PAmount, res.Credit.ValueMinor, c.e.j.Currency()))
	}
	return nil
}

// completeNote records, once the unit is known to have finished the last credited note,
// that it did (journal.NoteCompleted).
func (c *core) completeNote() {
	if !c.creditUnfinished {
		return
	}
	if err := c.e.j.NoteCompleted(); err != nil {
		c.journalFailedOp("note completed", err)
		return
	}
	c.journalOK()
	c.creditUnfinished = false
}

func (c *core) event(ev acceptor.Event) {
	c.unit = ev.Kind
	switch ev.Kind {
	case acceptor.Idle, acceptor.Disabled:
		c.unitSettled = true
		c.clearFaults()
		c.completeNote()
		if ev.Kind == acceptor.Disabled && !c.lineEnabling {
			c.disabledSeen = true
			c.pulseLineAtRest()
		}
	case acceptor.Accepting, acceptor.Stacking, acceptor.Returning, acceptor.Holding, acceptor.Initializing:
		c.unitSettled = false
		if ev.Kind == acceptor.Accepting {
			c.lastActivity = c.now()
		}
	case acceptor.Stacked:
		c.unitSettled = false
		c.completeNote()
	case acceptor.Returned:
		c.lastActivity = c.now()
		if in := c.sentBack; in != nil {
			c.sentBack = nil
			_ = c.resolveIntent(*in, journal.ResolvedReturned, "the unit returned the note the host sent back: its stack intent could not be sealed")
		}
		// Keep the reason the host gave for returning it; the customer needs that more.
		if c.derive() == Accepting && !c.explained {
			c.say("info", i18n.KeyNoteReturned, "Note returned. Please take it.")
		}
		c.explained = false
	case acceptor.Rejected:
		c.lastActivity = c.now()
		if c.derive() == Accepting {
			c.say("error", i18n.RejectReasonKey(ev.Reason), "The note was not accepted ("+rejectText(ev.Reason)+"). Please take it and try again.")
		}
	case acceptor.PowerUp, acceptor.PowerUpNoteInAcceptor, acceptor.PowerUpNoteInStacker:
		// The power-up report settles open intents from what the unit holds.
		c.sentBack = nil
		// A driver that does not wait for the journal (no PowerUpRecorder) resets the unit
		// whatever happens here; the failure is on the health register.
		_ = c.powerUp(ev)
	case acceptor.Fraud:
		c.recordDevice(ev)
		c.e.cfg.Health.Event(CondAcceptorFraud, health.Critical, health.Engineer, ev.String())
		// Latched: only a technician's sign-off clears it (CmdSignoff), not the unit's
		// next normal report, nor a restart.
		c.latchFraud(ev.String())
		return
	case acceptor.CommRestored:
		c.recordDevice(ev)
		if cl := c.closing; cl != nil && cl.phase == closeSettle && cl.inhibited {
			// The unit can speak again: give it the settle time to report the note in
			// transit before the close decides the note is uncertain.
			if by := c.now().Add(c.e.cfg.Timing.SettleTimeout); by.After(cl.settleBy) {
				cl.settleBy = by
			}
		}
		delete(c.faults, acceptor.CommLost.String())
		c.e.cfg.Health.Clear("acceptor_" + acceptor.CommLost.String())
	case acceptor.ProtocolError:
		c.e.log.Warn("acceptor protocol error", "event", ev.String())
	case acceptor.CassetteReplaced:
		c.recordDevice(ev)
		c.collectionEvent(false)
		delete(c.faults, acceptor.CassetteRemoved.String())
		c.e.cfg.Health.Clear("acceptor_" + acceptor.CassetteRemoved.String())
	}
	// Every fault stops service until the unit reports a normal state again; for a unit that
	// latches a cheat attempt until RESET (ID-003, CCNET) that means until a technician resets
	// it, for one that reports it once (SSP) it clears at the next poll.
	if ev.Kind == acceptor.CassetteRemoved {
		c.cassettePulled(ev)
		c.collectionEvent(true)
	}
	if ev.Kind.Fault() {
		c.recordDevice(ev)
		key := ev.Kind.String()
		if !c.faults[key] {
			c.faults[key] = true
			sev, actor := health.Critical, health.Engineer
			if ev.Kind == acceptor.CassetteFull || ev.Kind == acceptor.CassetteRemoved {
				actor = health.Staff
			}
			if ev.Kind == acceptor.CassetteRemoved && c.coll != nil {
				// The collector took it out: a step of the collection, not an alarm.
				sev, actor = health.Info, health.None
			}
			c.e.cfg.Health.Set("acceptor_"+key, sev, actor, health.StopsService, ev.String())
		}
	}
}

// clearFaults clears acceptor faults once the unit reports a normal state; a cheat attempt
// stays until a technician signs it off.
func (c *core) clearFaults() {
	for k := range c.faults {
		if k == acceptor.Fraud.String() {
			continue
		}
		delete(c.faults, k)
		c.e.cfg.Health.Clear("acceptor_" + k)
	}
}

// powerUp handles a power-up report: the device event, the note the unit holds (an open
// intent resolved, or an uncertain item), the unit's settings applied again. An error means
// the note's evidence is not journaled: the driver must not reset the unit.
func (c *core) powerUp(ev acceptor.Event) error {
	c.unit = ev.Kind
	c.unitSettled = false
	if err := c.recordDeviceErr(ev); err != nil {
		return err
	}
	if err := c.resolveFromPowerUp(ev); err != nil {
		return err
	}
	// A unit comes out of power-up inhibited with its settings forgotten: apply the wanted
	// state again.
	c.reapplyAcceptor()
	return nil
}

func (c *core) recordDevice(ev acceptor.Event) { _ = c.recordDeviceErr(ev) }

func (c *core) recordDeviceErr(ev acceptor.Event) error {
	if err := c.e.j.Record(journal.EvDevice, map[string]any{"device": "acceptor", "event": ev.Kind.String(), "code": ev.Code, "detail": ev.String()}); err != nil {
		c.journalFailedOp("device event", err)
		return err
	}
	c.journalOK()
	return nil
}

// resolveFromPowerUp settles an open stack intent from the unit's own power-up report
// (invariant 3). An error means the journal does not hold what the report says.
func (c *core) resolveFromPowerUp(ev acceptor.Event) error {
	intents, err := c.e.j.OpenIntents()
	if err != nil {
		c.journalFailedOp("read intents", err)
		return err
	}
	if len(intents) == 0 {
		// A note in the acceptor goes back to the customer at reset. A note in the stacker is
		// the last credited note if the unit had not finished it; otherwise nothing in the
		// journal accounts for it and it becomes an uncertain item.
		if ev.Kind == acceptor.PowerUpNoteInStacker {
			n := ev.Note
			if !n.Known() && n.Code != 0 {
				if t, ok := c.e.cfg.Denominations[n.Code]; ok {
					n.ValueMinor, n.Currency = t.ValueMinor, t.Currency
				}
			}
			res, err := c.e.j.StackerAtPowerUp(jnote(n), ev.String())
			if err != nil {
				c.journalFailedOp("stacker note", err)
				return err
			}
			c.journalOK()
			// The unit finishes the note at its reset (whatever the outcome it is now the
			// journal's last credit, so a repeated report of it is recognised).
			c.creditUnfinished = true
			switch res.Kind {
			case journal.FollowUp:
				c.followUpCredited(res)
			case journal.Unexpected:
				c.e.cfg.Health.Event("uncertain_item", health.Critical, health.Staff,
					"unit powered up with a note in the stacker that the journal has no stack intent for; settle at cash collection")
				c.refreshSession()
			}
		}
		return nil
	}
	in := intents[0]
	if _, counts := c.e.cfg.Acceptor.(acceptor.StackCounter); counts && ev.Kind == acceptor.PowerUp {
		// The unit says nothing about the note, but it counts what it stacked: ask its
		// counter once it is at rest (recovery does it at start-up; while running, here).
		c.e.log.Warn("unit restarted with a note in transit; asking its stacked counter", "intent", in.ID)
		if c.rec == nil && c.witness == nil {
			c.witness = &pendingWitness{in: in, until: c.now().Add(c.e.cfg.Timing.RecoveryTimeout)}
		}
		return nil
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
	if err := c.resolveIntent(in, resolution, evidence); err != nil {
		return err
	}
	if resolution == journal.ResolvedStacked {
		c.creditUnfinished = true
		// The driver resets the unit next, and the unit stacks the note and forgets it: the
		// credit must not be the journal's last commit, which storage that lies about fsync
		// may lose at a power cut (sim seed 1500065: the intent then looked open with no note
		// anywhere, and a later report resolved it returned). If sealing fails, the report is
		// refused, the unit is not reset, and its next report is the credited note again.
		if err := c.e.j.Seal("power-up credit recorded"); err != nil {
			c.journalFailedOp("seal power-up credit", err)
			return err
		}
	}
	return nil
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

// followUpCredited takes a note credited after its session closed: the journal resolved
// the session's uncertain item and made a follow-up top-up of it. It goes to the ledger now;
// its receipt prints once no customer is at the kiosk (advanceOnce), as the original.
func (c *core) followUpCredited(late journal.LateCredit) {
	t := *late.Topup
	c.e.log.Warn("credit reported after its session closed; credited as a follow-up top-up",
		"note_minor", late.Credit.ValueMinor, "topup", t.TopupID, "follows", late.Follows.TopupID, "uncertain_item", late.Resolved.ID)
	c.e.cfg.Health.Event("follow_up_topup", health.Info, health.None,
		fmt.Sprintf("the unit reported the note of uncertain item %d of top-up %s after its session closed; credited by follow-up top-up %s",
			late.Resolved.ID, late.Follows.TopupID, t.TopupID))
	c.followUps = append(c.followUps, t)
	if c.e.cfg.Uplink != nil {
		c.e.cfg.Uplink.Kick()
	}
}

// printFollowUp prints the oldest follow-up receipt waiting, when nobody is being served and
// nothing else prints (prints are one at a time: the journal's account of the printer's
// cuts relies on it). It reports whether it started one.
func (c *core) printFollowUp() bool {
	if len(c.followUps) == 0 || c.rec != nil || c.inSession() || c.printing > 0 || c.exiting {
		return false
	}
	t := c.followUps[0]
	c.followUps = c.followUps[1:]
	// A start-up's reprint of unprinted receipts may have printed it meanwhile.
	if cur, ok, err := c.e.j.Topup(t.Seq); err == nil && ok && cur.PrintState != journal.PrintNone {
		return true
	}
	c.spawnPrint(t, false, func(c *core, printed bool) {
		if !printed {
			c.e.log.Warn("follow-up receipt not printed", "topup", t.TopupID, "receipt_no", t.ReceiptNo)
		}
	})
	return true
}
