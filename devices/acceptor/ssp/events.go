package ssp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
)

// facts are the state-like events of one poll reply; the unit repeats them on every poll
// while they last, so they become one state (deriveState) whose event is emitted on change.
type facts struct {
	reading, stacking, rejecting, disabled, channelDisable bool
	jam                                                    byte // EvSafeJam or EvUnsafeJam
	cashboxOut, pathOpen, initialising                     bool
}

// onPoll handles one poll reply: the money first (escrow decisions, credits) in the order
// the unit reported, then the state, then EVENT ACK when POLL WITH ACK is in use and every
// credit in the reply is recorded.
func (l *loop) onPoll(ctx context.Context, r reply) {
	l.d.n.polls.Add(1)
	l.sealedPoll = r.sealed
	if l.escrow == escrowStack {
		l.escrow = escrowNone // this poll took the note out of escrow
	}
	raw := r.data
	if l.ack != nil {
		if l.pollCmd == CmdPollWithAck && bytes.Equal(raw, l.ack.raw) {
			l.repeatAck(ctx)
			return
		}
		// The unit moved on without our EVENT ACK (a reset, or a mode change): whatever the
		// handler has not recorded is kept here and retried.
		l.dropAck(ctx)
	}
	events, perr := ParseEvents(raw)
	ack := &ackPending{raw: append([]byte(nil), raw...)}
	needAck := false
	var f facts
	for _, ev := range events {
		needAck = needAck || ev.NeedsAck()
		l.onEvent(ctx, ev, &f, ack)
		if l.link.Fatal() != nil || ctx.Err() != nil {
			return
		}
	}
	if perr != nil {
		code := 0
		var i int
		if n := len(AppendEvents(nil, events...)); n < len(raw) {
			i = n
			code = int(raw[i])
		}
		l.emit(ctx, acceptor.Event{Kind: acceptor.ProtocolError, Code: code,
			Detail: fmt.Sprintf("%v; events after it are lost: reply % X", perr, raw)})
	}
	l.settlePowerUp(ctx, f)
	l.deriveState(ctx, f)
	if l.pollCmd == CmdPollWithAck && (needAck || perr != nil) {
		// A reply with an event this driver cannot read is never acknowledged: it may be a
		// credit in a format we do not know, and the unit keeps it while it is unacknowledged.
		ack.blocked = perr != nil
		l.ack = ack
		if ack.recorded() && !ack.blocked {
			l.sendEventAck(ctx)
		}
	}
}

func (l *loop) onEvent(ctx context.Context, ev Event, f *facts, ack *ackPending) {
	ch := ev.Channel()
	switch ev.Code {
	case EvSlaveReset:
		l.onSlaveReset(ctx)
	case EvRead:
		if ch == 0 {
			f.reading = true
			return
		}
		l.settleNow(ctx)
		l.onEscrowEvent(ctx, l.cfg.Denominations.Lookup(int(ch)))
	case EvBarcodeValidate:
		// A bar code ticket in escrow: the next poll would take it. The handler sees a note
		// of unknown value and returns it.
		l.settleNow(ctx)
		l.onEscrowEvent(ctx, acceptor.Note{})
	case EvNoteCredit:
		l.settleNow(ctx)
		l.onCredit(ctx, ch, ack)
	case EvRejecting:
		f.rejecting = true
	case EvRejected:
		l.onRejected(ctx)
	case EvStacking:
		f.stacking = true
	case EvStacked:
		l.emit(ctx, acceptor.Event{Kind: acceptor.Stacked, Note: l.pathNote(), Code: int(ev.Code)})
		l.forgetNote()
	case EvSafeJam, EvUnsafeJam:
		f.jam = ev.Code
	case EvDisabled:
		f.disabled = true
	case EvStackerFull:
		l.stackerFull = true
	case EvFraudAttempt:
		n := l.pathNote()
		if ch > 0 {
			n = l.cfg.Denominations.Lookup(int(ch))
		}
		l.emit(ctx, acceptor.Event{Kind: acceptor.Fraud, Note: n, Code: int(ev.Code)})
	case EvCashboxRemoved:
		l.stackerFull = false
		f.cashboxOut = true
	case EvCashboxReplaced:
		l.stackerFull = false
		if f.cashboxOut || l.reported != stateCashboxOut {
			// Out and back between two polls: report the removal first.
			f.cashboxOut = false
			if l.powerUp == nil && l.reported != stateCashboxOut {
				l.emit(ctx, acceptor.Event{Kind: acceptor.CassetteRemoved, Code: int(EvCashboxRemoved)})
			}
		}
		l.reported = stateUnknown
		l.emit(ctx, acceptor.Event{Kind: acceptor.CassetteReplaced, Code: int(ev.Code)})
	case EvClearedCashbox:
		l.onCleared(ctx, acceptor.PowerUpNoteInStacker, ev, ack)
	case EvClearedFront:
		l.onCleared(ctx, acceptor.PowerUpNoteInAcceptor, ev, ack)
	case EvNotePathOpen:
		f.pathOpen = true
	case EvInitialising:
		f.initialising = true
	case EvChannelDisable:
		f.channelDisable = true
	case EvBarcodeAck:
		l.log.Info("bar code ticket stacked")
	}
}

// deriveState turns the facts of a reply into one state, by priority, and emits its event
// when it changed. While a power-up report is pending the state events wait for it.
func (l *loop) deriveState(ctx context.Context, f facts) {
	var s unitState
	switch {
	case f.jam != 0:
		s = stateJam
	case f.cashboxOut:
		s = stateCashboxOut
	case f.pathOpen:
		s = statePathOpen
	case l.stackerFull:
		s = stateStackerFull
	case f.initialising:
		s = stateInitialising
	case l.escrow != escrowNone:
		s = stateEscrow
	case f.stacking:
		s = stateStacking
	case f.rejecting || l.hostReject:
		// After an acknowledged REJECT the note is on its way back until REJECTED.
		s = stateRejecting
	case f.reading:
		s = stateReading
	case f.disabled || f.channelDisable || (l.enabledKnown && !l.enabled):
		s = stateDisabled
	default:
		s = stateIdle
	}
	l.state = s
	if l.powerUp != nil || s == l.reported {
		return
	}
	l.reported = s
	k := s.kind()
	if (k == acceptor.Idle || k == acceptor.Disabled) && (l.alarmed || l.swapped) {
		// Idle and Disabled tell the caller the unit is fine; while a Failure this driver
		// raised (a credit not recorded, a swapped unit) stands, they are held back and
		// reported once it is over.
		return
	}
	if s == stateRejecting && l.hostReject {
		k = acceptor.Returning
	}
	if k == 0 {
		return
	}
	e := acceptor.Event{Kind: k}
	switch s {
	case stateStacking:
		e.Note, e.Code = l.pathNote(), int(EvStacking)
	case stateRejecting:
		e.Note, e.Code = l.pathNote(), int(EvRejecting)
	case stateReading:
		e.Code = int(EvRead)
	case stateJam:
		e.Code, e.Note = int(f.jam), l.pathNote()
		if f.jam == EvUnsafeJam {
			e.Detail = "unsafe jam: the note may be reachable from the bezel"
		} else {
			e.Detail = "safe jam: the note is out of the customer's reach"
		}
	case stateCashboxOut:
		e.Code = int(EvCashboxRemoved)
	case statePathOpen:
		e.Code, e.Detail = int(EvNotePathOpen), "note path open"
	case stateStackerFull:
		e.Code = int(EvStackerFull)
	case stateInitialising:
		e.Code = int(EvInitialising)
	case stateDisabled:
		switch {
		case f.channelDisable:
			e.Code, e.Detail = int(EvChannelDisable), "every channel inhibited"
		case f.disabled:
			e.Code = int(EvDisabled)
		}
	}
	l.emit(ctx, e)
}

// onSlaveReset: the unit restarted. It forgot the protocol version, the keys, its inhibits
// and anything it owed us; what it cleared from its path is reported in the next polls
// (NOTE CLEARED FROM FRONT / INTO CASHBOX), so the power-up report waits for them.
func (l *loop) onSlaveReset(ctx context.Context) {
	l.log.Warn("unit reports SLAVE RESET")
	pu := &powerUp{at: time.Now()}
	if l.haveNote && l.note.Code != 0 {
		pu.note = l.note
	} else if l.powerUp != nil {
		pu.note = l.powerUp.note
	}
	l.powerUp = pu
	l.escrow, l.hostReject = escrowNone, false
	l.forgetNote()
	// A reset wipes the unit's keys, so a SLAVE RESET read from a reply encrypted under the
	// current key happened before the key exchange: the link is already set up.
	l.needLink = !l.sealedPoll
	l.gap = true
	l.enabled, l.enabledKnown = false, true // units come up disabled
	if l.ack != nil {
		l.dropAck(ctx)
	}
	l.stackerFull = false
	l.reported = stateUnknown
	if l.phase == phaseRunning {
		l.setPhase(phaseConfigure)
	}
}

// settlePowerUp reports a plain PowerUp once the unit stopped initialising and the settle
// time passed without a NOTE CLEARED event.
func (l *loop) settlePowerUp(ctx context.Context, f facts) {
	if l.powerUp != nil && !f.initialising && time.Since(l.powerUp.at) >= l.cfg.PowerUpSettle {
		l.settleNow(ctx)
	}
}

// settleNow reports a pending power-up as PowerUp: a note event proves nothing was cleared.
func (l *loop) settleNow(ctx context.Context) {
	if l.powerUp == nil {
		return
	}
	l.powerUp = nil
	l.reported = stateUnknown
	l.emit(ctx, acceptor.Event{Kind: acceptor.PowerUp, Code: int(EvSlaveReset)})
}

// onCleared reports what the unit cleared from its path at power-up, naming the note by the
// event's channel or, when the unit does not know it, by what this process knew. The unit
// reports it once (with POLL WITH ACK, until EVENT ACK): a handler that records power-up
// reports (acceptor.PowerUpRecorder) and fails gets it again, exactly like a credit it
// failed to record, and the unit gets no EVENT ACK for it meanwhile.
func (l *loop) onCleared(ctx context.Context, k acceptor.Kind, ev Event, ack *ackPending) {
	var n acceptor.Note
	if ch := ev.Channel(); ch > 0 {
		n = l.cfg.Denominations.Lookup(int(ch))
	} else if l.powerUp != nil {
		n = l.powerUp.note
	}
	l.powerUp = nil
	l.reported = stateUnknown
	e := acceptor.Event{Kind: k, Note: n, Code: int(ev.Code)}
	if _, ok := l.h.(acceptor.PowerUpRecorder); !ok {
		l.emit(ctx, e)
		return
	}
	p := pendingCredit{note: n, report: &e}
	err := l.record(ctx, p)
	if err != nil {
		l.log.Warn("power-up report not recorded", "event", e.String(), "err", err)
	}
	if l.pollCmd == CmdPollWithAck {
		p.ok = err == nil
		ack.credits = append(ack.credits, p)
		return
	}
	if err != nil {
		l.unrecord(ctx, p)
	}
}

// record passes a pending report to the handler: Credited for a credit, PowerUp for a
// power-up report.
func (l *loop) record(ctx context.Context, p pendingCredit) error {
	if p.report != nil {
		l.log.Debug("event", "event", p.report.String())
		return l.h.(acceptor.PowerUpRecorder).PowerUp(ctx, *p.report)
	}
	return l.h.Credited(ctx, p.note)
}

func (l *loop) pathNote() acceptor.Note {
	if l.haveNote {
		return l.note
	}
	return acceptor.Note{}
}

// forgetNote drops the note of a finished transaction; a note still in escrow is kept
// whatever else the reply says (a unit reports one note at a time, but a garbled reply must
// not make the handler decide on the wrong note).
func (l *loop) forgetNote() {
	if l.escrow == escrowNone {
		l.note, l.haveNote = acceptor.Note{}, false
	}
}

// onEscrowEvent: a note waits in escrow. The next poll would stack it, so the handler is
// asked now and the decision carried out before anything else is sent.
func (l *loop) onEscrowEvent(ctx context.Context, n acceptor.Note) {
	l.note, l.haveNote = n, true
	l.escrow, l.hostReject = escrowAsk, false
	l.state = stateEscrow
	l.escrowStep(ctx)
}

// escrowStep asks the handler (once per episode, again after a Hold) and carries out the
// decision: Stack waits for the next poll, Return sends REJECT, Hold sends HOLD at most every
// HoldInterval (any command but POLL restarts the unit's 10 s timeout).
func (l *loop) escrowStep(ctx context.Context) {
	l.state = stateEscrow
	prev := l.escrow
	d := l.h.Escrow(ctx, l.note)
	if prev == escrowAsk || d != acceptor.Hold {
		l.log.Info("escrow", "note", l.note.String(), "decision", d.String())
	}
	switch d {
	case acceptor.Stack:
		l.escrow = escrowStack
	case acceptor.Hold:
		l.escrow = escrowHold
		if prev != escrowHold || time.Since(l.lastTx) >= l.cfg.HoldInterval {
			_, err := l.exchange(ctx, CmdHold, nil)
			l.onHoldReply(err)
			if err != nil && !isRefusal(err) {
				l.failed(ctx, "hold", err)
			}
		}
	default:
		if d != acceptor.Return {
			l.log.Error("handler returned an invalid decision; returning the note", "decision", d)
		}
		l.escrow = escrowReturn
		l.sendReject(ctx)
	}
}

func (l *loop) sendReject(ctx context.Context) {
	_, err := l.exchange(ctx, CmdReject, nil)
	l.onRejectReply(ctx, err)
	if err != nil && !isRefusal(err) {
		l.failed(ctx, "reject", err)
	}
}

// onRejectReply: OK means the note is on its way back; COMMAND CANNOT BE PROCESSED means it
// is no longer in escrow (the unit's own timeout took it back). Anything else keeps the
// decision, so REJECT is sent again and the note is never polled into the cashbox.
func (l *loop) onRejectReply(ctx context.Context, err error) {
	switch {
	case err == nil:
		l.escrow, l.hostReject = escrowNone, true
		l.state = stateRejecting
	case errors.Is(err, ErrCannotProcess):
		l.escrow = escrowNone
		l.state = stateUnknown
	case isRefusal(err):
		l.emit(ctx, acceptor.Event{Kind: acceptor.ProtocolError, Code: int(CmdReject), Detail: err.Error()})
	}
}

// onHoldReply handles the answer to HOLD, including the start-up probe: OK there means a note
// was left in escrow by a previous host process (its channel is unknown until it moves).
func (l *loop) onHoldReply(err error) {
	if err != nil && !isRefusal(err) {
		return // no answer yet; the packet is re-sent
	}
	if l.phase == phaseProbe {
		l.setPhase(phaseRecover)
		if err == nil {
			l.log.Warn("a note waits in escrow from before this process started")
			l.note, l.haveNote = acceptor.Note{}, true
			l.escrow = escrowAsk
			l.state = stateEscrow
		}
		return
	}
	if errors.Is(err, ErrCannotProcess) && l.escrow != escrowNone {
		l.log.Warn("unit has no note in escrow any more")
		l.escrow = escrowNone
		l.state = stateUnknown
	}
}

// onCredit is the credit point. With POLL WITH ACK the unit repeats the credit until EVENT
// ACK, which is sent only once Credited returned nil for every credit of the reply. With
// POLL the credit is reported once: a failed Credited is kept and retried here.
func (l *loop) onCredit(ctx context.Context, ch byte, ack *ackPending) {
	n := l.pathNote()
	if ch > 0 {
		n = l.cfg.Denominations.Lookup(int(ch))
	}
	if l.escrow == escrowNone {
		l.note, l.haveNote = n, true // named again by STACKED
	}
	err := l.h.Credited(ctx, n)
	if err == nil {
		l.log.Info("credited", "note", n.String())
	} else {
		l.log.Warn("credit not recorded", "note", n.String(), "err", err)
	}
	if l.pollCmd == CmdPollWithAck {
		ack.credits = append(ack.credits, pendingCredit{note: n, ok: err == nil})
		return
	}
	if err != nil {
		l.unrecord(ctx, pendingCredit{note: n})
	}
}

// unrecord keeps a credit (or power-up report) the unit will not report again, raises the
// alarm once and disables the unit so no further money comes in while the journal cannot
// take it.
func (l *loop) unrecord(ctx context.Context, p pendingCredit) {
	p.ok = false
	l.unrecorded = append(l.unrecorded, p)
	if !l.alarmed {
		l.alarmed = true
		l.emit(ctx, acceptor.Event{Kind: acceptor.Failure, Code: CodeCreditNotRecorded, Note: p.note,
			Detail: "credit could not be recorded; the unit reports it only once, so the driver holds it and retries, with the unit disabled"})
	}
	if l.enabled && !l.needLink && commandTable[CmdDisable].legal.has(l.state) {
		_, err := l.exchange(ctx, CmdDisable, nil)
		l.onDisableReply(err)
	}
}

// retryUnrecorded calls Credited again for credits it failed for, oldest first.
func (l *loop) retryUnrecorded(ctx context.Context) {
	for len(l.unrecorded) > 0 {
		p := l.unrecorded[0]
		if err := l.record(ctx, p); err != nil {
			l.log.Warn("credit still not recorded", "report", p.String(), "err", err)
			return
		}
		l.log.Info("recorded (late)", "report", p.String())
		l.unrecorded = l.unrecorded[1:]
	}
	if l.alarmed {
		l.alarmed = false
		l.reported = stateUnknown // report the state again: the fault is over
	}
}

// repeatAck handles a POLL WITH ACK reply the unit repeats because it was not acknowledged:
// nothing in it is new; credits not yet recorded get Credited again.
func (l *loop) repeatAck(ctx context.Context) {
	for i := range l.ack.credits {
		c := &l.ack.credits[i]
		if c.ok {
			continue
		}
		if err := l.record(ctx, *c); err != nil {
			l.log.Warn("credit still not recorded; EVENT ACK withheld", "report", c.String(), "err", err)
			return
		}
		c.ok = true
		l.log.Info("recorded", "report", c.String())
	}
	if !l.ack.blocked {
		l.sendEventAck(ctx)
	}
}

func (l *loop) sendEventAck(ctx context.Context) {
	_, err := l.exchange(ctx, CmdEventAck, nil)
	l.onEventAckReply(err)
	if err != nil && !isRefusal(err) {
		l.failed(ctx, "event ack", err)
	}
}

func (l *loop) onEventAckReply(err error) {
	if err == nil || errors.Is(err, ErrCannotProcess) {
		l.ack = nil // acknowledged, or nothing needed it
	}
}

// dropAck forgets a repeated reply the unit no longer repeats; its unrecorded credits are
// kept and retried locally like POLL credits.
func (l *loop) dropAck(ctx context.Context) {
	for _, c := range l.ack.credits {
		if !c.ok {
			l.unrecord(ctx, c)
		}
	}
	l.ack = nil
}

// onRejected reads the reason with LAST REJECT CODE. A note the host returned is reported
// as Returned, any other as Rejected with the reason.
func (l *loop) onRejected(ctx context.Context) {
	r, err := l.exchange(ctx, CmdLastRejectCode, nil)
	known := err == nil && len(r.data) >= 1
	var code byte
	if known {
		code = r.data[0]
	}
	n := l.pathNote()
	switch {
	case (known && code == RejectByHost) || (!known && l.hostReject):
		l.emit(ctx, acceptor.Event{Kind: acceptor.Returned, Note: n, Code: int(RejectByHost)})
	case known:
		l.emit(ctx, acceptor.Event{Kind: acceptor.Rejected, Note: n, Reason: RejectReason(code), Code: int(code), Detail: RejectName(code)})
	default:
		l.emit(ctx, acceptor.Event{Kind: acceptor.Rejected, Note: n, Reason: acceptor.RejectUnknown,
			Detail: fmt.Sprintf("last reject code unavailable: %v", err)})
	}
	l.hostReject = false
	l.forgetNote()
}
