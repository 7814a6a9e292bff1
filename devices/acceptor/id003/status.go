package id003

import (
	"context"
	"fmt"

	"github.com/kioskd/kioskd/devices/acceptor"
)

// statusEvents maps the statuses that are plain facts to event kinds. ESCROW and VEND VALID
// are not here: they go to Handler.Escrow and Handler.Credited.
var statusEvents = map[byte]acceptor.Kind{
	StIdling:      acceptor.Idle,
	StAccepting:   acceptor.Accepting,
	StStacking:    acceptor.Stacking,
	StStacked:     acceptor.Stacked,
	StRejecting:   acceptor.Rejected,
	StReturning:   acceptor.Returning,
	StHolding:     acceptor.Holding,
	StDisabled:    acceptor.Disabled,
	StInitialize:  acceptor.Initializing,
	StPowerUp:     acceptor.PowerUp,
	StPowerUpAcc:  acceptor.PowerUpNoteInAcceptor,
	StPowerUpStk:  acceptor.PowerUpNoteInStacker,
	StStackerFull: acceptor.CassetteFull,
	StStackerOpen: acceptor.CassetteRemoved,
	StAcceptorJam: acceptor.AcceptorJam,
	StStackerJam:  acceptor.StackerJam,
	StPause:       acceptor.Paused,
	StCheated:     acceptor.Fraud,
	StFailure:     acceptor.Failure,
}

// onStatus handles one answer to STATUS REQUEST: the money first (escrow decisions, credits),
// then events, each emitted when the status changes rather than on every identical poll.
func (l *loop) onStatus(ctx context.Context, f Frame) {
	status := f.Cmd
	var arg byte
	if len(f.Data) > 0 {
		arg = f.Data[0]
	}
	prevStatus := l.lastStatus
	changed := !l.seen || status != l.lastStatus || arg != l.lastArg
	l.seen, l.lastStatus, l.lastArg = true, status, arg
	l.state = stateOf(status)

	// Leaving a state.
	if changed && prevStatus == StStackerOpen && status != StStackerOpen {
		l.emit(ctx, acceptor.Event{Kind: acceptor.CassetteReplaced})
	}
	if l.state != stateVendValid {
		l.credited = false
	}
	if !powerUpState.has(l.state) || changed {
		// A new power-up report (or none): it has to be recorded before the next RESET.
		l.powerUp.Reset()
	}
	if !inEscrow.has(l.state) {
		l.inEscrow = false
	}
	// The note is back with the customer once the unit is idle again, or already busy with
	// the next note (both can happen between two polls).
	if l.returning && states(stateIdling, stateDisabled, stateAccepting, stateEscrow).has(l.state) {
		l.returning = false
		l.emit(ctx, acceptor.Event{Kind: acceptor.Returned, Note: l.note})
		l.forgetNote()
	}

	switch l.state {
	case stateEscrow:
		l.onEscrow(ctx, arg, changed)
		return
	case stateHolding:
		if changed {
			l.emit(ctx, acceptor.Event{Kind: acceptor.Holding, Note: l.note})
		}
		l.onEscrow(ctx, byte(l.note.Code), false)
		return
	case stateVendValid:
		l.onVendValid(ctx)
		return
	case stateAccepting:
		if changed {
			l.forgetNote()
		}
	case stateReturning:
		l.returning = true
	case stateIdling, stateDisabled, stateInitialize:
		if !l.returning {
			l.forgetNote()
		}
	case stateUnknown:
		if changed {
			l.emit(ctx, acceptor.Event{Kind: acceptor.ProtocolError, Code: int(status),
				Detail: fmt.Sprintf("unknown status %v", f)})
		}
		return
	case statePowerUp, statePowerUpAcceptor, statePowerUpStacker:
		l.onPowerUp(ctx, status, changed)
		return
	}
	if !changed {
		return
	}
	e := acceptor.Event{Kind: statusEvents[status], Code: int(status)}
	switch l.state {
	case stateStacking, stateStacked, stateReturning, statePowerUpAcceptor, statePowerUpStacker, stateCheated:
		e.Note = l.note
	case stateRejecting:
		e.Reason, e.Code = RejectReason(arg), int(arg)
		l.forgetNote()
	case stateFailure:
		e.Code, e.Detail = int(arg), FailureName(arg)
	}
	l.emit(ctx, e)
}

// onPowerUp reports a power-up status. A handler that records it (PowerUpRecorder) is asked
// on every poll until it did; until then advance and Reset do not reset the unit, which
// would stack or return the note it reports and forget it.
func (l *loop) onPowerUp(ctx context.Context, status byte, changed bool) {
	e := acceptor.Event{Kind: statusEvents[status], Code: int(status)}
	if l.state != statePowerUp {
		e.Note = l.note
	}
	l.powerUp.Report(ctx, l.h, e, changed, l.emit, l.log)
}

// onEscrow asks the handler once per escrow episode (again after a Hold) and carries out the
// decision. A decision whose command the unit did not acknowledge is re-sent on the next poll
// without asking again.
func (l *loop) onEscrow(ctx context.Context, code byte, changed bool) {
	if !l.inEscrow || (l.state == stateEscrow && changed && l.haveNote && byte(l.note.Code) != code) {
		l.inEscrow, l.decision, l.actionOK = true, 0, false
		if l.state == stateEscrow || !l.haveNote {
			l.note = l.cfg.Denominations.Lookup(int(code))
			l.haveNote = l.state == stateEscrow
		}
	}
	if l.decision == 0 || l.decision == acceptor.Hold {
		l.decision = l.h.Escrow(ctx, l.note)
		l.actionOK = false
		l.log.Info("escrow", "note", l.note.String(), "decision", l.decision.String())
	} else if l.actionOK {
		return // the unit has the command; it is busy carrying it out
	}
	var cmd byte
	switch l.decision {
	case acceptor.Stack:
		cmd = CmdStack1
	case acceptor.Hold:
		cmd = CmdHold
	case acceptor.Return:
		cmd = CmdReturn
	default:
		l.log.Error("handler returned an invalid decision; returning the note", "decision", l.decision)
		l.decision, cmd = acceptor.Return, CmdReturn
	}
	if _, err := l.exchange(ctx, cmd, nil); err != nil {
		l.log.Warn("escrow command failed; re-sent on the next poll", "decision", l.decision.String(), "err", err)
		return
	}
	l.actionOK = true
	if cmd == CmdStack1 {
		l.credited = false // a new credit point is coming
	}
}

// onVendValid is the credit point. Credited is called until it returns nil, then ACK is sent;
// repeats of the same VEND VALID (the unit answering a poll before it saw the ACK, or having
// lost it) get the ACK again but never a second Credited.
func (l *loop) onVendValid(ctx context.Context) {
	if !l.credited {
		n := acceptor.Note{}
		if l.haveNote {
			n = l.note
		}
		if err := l.h.Credited(ctx, n); err != nil {
			l.log.Warn("credit not recorded; VEND VALID left unacknowledged", "note", n.String(), "err", err)
			return
		}
		l.credited = true
		l.log.Info("credited", "note", n.String())
	}
	if _, err := l.exchange(ctx, CmdAck, nil); err != nil {
		l.log.Warn("ack failed; re-sent on the next poll", "err", err)
	}
}

func (l *loop) forgetNote() {
	l.note, l.haveNote = acceptor.Note{}, false
}
