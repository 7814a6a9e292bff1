package ccnet

import (
	"context"
	"fmt"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
)

// statusEvents maps the states that are plain facts to event kinds. ESCROW and STACKED are
// not here: they go to Handler.Escrow and Handler.Credited. BUSY is not a state of the note
// path but a request to ask again later, and gives no event.
var statusEvents = map[byte]acceptor.Kind{
	StPowerUp:                acceptor.PowerUp,
	StPowerUpBillInValidator: acceptor.PowerUpNoteInAcceptor,
	StPowerUpBillInStacker:   acceptor.PowerUpNoteInStacker,
	StInitialize:             acceptor.Initializing,
	StIdling:                 acceptor.Idle,
	StAccepting:              acceptor.Accepting,
	StStacking:               acceptor.Stacking,
	StReturning:              acceptor.Returning,
	StDisabled:               acceptor.Disabled,
	StHolding:                acceptor.Holding,
	StRejecting:              acceptor.Rejected,
	StCassetteFull:           acceptor.CassetteFull,
	StCassetteOut:            acceptor.CassetteRemoved,
	StValidatorJammed:        acceptor.AcceptorJam,
	StCassetteJammed:         acceptor.StackerJam,
	StCheated:                acceptor.Fraud,
	StPause:                  acceptor.Paused,
	StFailure:                acceptor.Failure,
	StReturned:               acceptor.Returned,
}

// onStatus handles one answer to POLL: the money first (escrow decisions, credits), then
// events, each emitted when the state changes rather than on every identical poll.
func (l *loop) onStatus(ctx context.Context, f Frame) {
	status := f.Cmd
	arg := -1 // the data byte; -1 when the unit sent none (malformed for states that need one)
	if len(f.Data) > 0 {
		arg = int(f.Data[0])
	}
	if status == StBusy {
		// Not a new fact about the note: keep the state and stay quiet for the time asked.
		wait := time.Duration(max(arg, 0)) * BusyUnit * time.Millisecond
		l.d.n.busy.Add(1)
		l.busyUntil = time.Now().Add(wait)
		l.log.Debug("unit busy", "for", wait)
		return
	}
	prevState := l.state
	changed := !l.seen || status != l.lastStatus || arg != l.lastArg
	l.seen, l.lastStatus, l.lastArg = true, status, arg
	l.state = stateOf(status)

	// Leaving a state.
	if changed && prevState == stateCassetteOut && l.state != stateCassetteOut {
		l.emit(ctx, acceptor.Event{Kind: acceptor.CassetteReplaced})
	}
	if !powerUpState.has(l.state) || changed {
		// A new power-up report (or none): it has to be recorded before the next RESET.
		l.powerUp.Reset()
	}
	if l.state != stateStacked {
		l.leaveStacked(ctx)
	}
	if !inEscrow.has(l.state) {
		l.inEscrow = false
	}
	// The note is back with the customer once the unit is idle again, or already busy with
	// the next note, without having said RETURNED (both can happen between two polls).
	if l.returning && states(stateIdling, stateDisabled, stateAccepting, stateEscrow).has(l.state) {
		l.returning = false
		l.emit(ctx, acceptor.Event{Kind: acceptor.Returned, Note: l.note, Detail: "inferred: no RETURNED event seen"})
		l.forgetNote()
	}

	switch l.state {
	case stateEscrow:
		l.onEscrow(ctx, l.noteFor(arg), changed)
		return
	case stateHolding:
		if changed {
			l.emit(ctx, acceptor.Event{Kind: acceptor.Holding, Note: l.note})
		}
		l.onEscrow(ctx, acceptor.Note{}, false)
		return
	case stateStacked:
		l.onStacked(ctx, l.noteFor(arg), changed)
		return
	case stateReturned:
		if changed {
			l.returning = false
			l.emit(ctx, acceptor.Event{Kind: acceptor.Returned, Note: l.noteFor(arg), Code: int(status)})
			l.forgetNote()
		}
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
				Detail: fmt.Sprintf("unknown state %v", f)})
		}
		return
	case statePowerUp, statePowerUpValidator, statePowerUpStacker:
		l.onPowerUp(ctx, status, changed)
		return
	}
	if !changed {
		return
	}
	e := acceptor.Event{Kind: statusEvents[status], Code: int(status)}
	switch l.state {
	case stateStacking, stateReturning, statePowerUpValidator, statePowerUpStacker, stateCheated:
		e.Note = l.note
	case stateRejecting:
		e.Reason, e.Code, e.Detail = acceptor.RejectUnknown, 0, "rejected: no reason given"
		if arg >= 0 {
			e.Reason, e.Code, e.Detail = RejectReason(byte(arg)), arg, RejectName(byte(arg))
		}
		l.forgetNote()
	case stateFailure:
		e.Code, e.Detail = 0, "failure: no code given"
		if arg >= 0 {
			e.Code, e.Detail = arg, FailureName(byte(arg))
		}
	}
	l.emit(ctx, e)
}

// onPowerUp reports a power-up state. A handler that records it (PowerUpRecorder) is asked
// on every poll until it did; until then advance and Reset do not reset the unit, which
// would stack or return the note it reports and forget it.
func (l *loop) onPowerUp(ctx context.Context, status byte, changed bool) {
	e := acceptor.Event{Kind: statusEvents[status], Code: int(status)}
	if l.state != statePowerUp {
		e.Note = l.note
	}
	l.powerUp.Report(ctx, l.h, e, changed, l.emit, l.log)
}

// onEscrow asks the handler once per escrow episode (again on every poll while it decides
// Hold) and carries out the decision. HOLD is re-sent every HoldRefresh, well inside the
// unit's 10 s. A decision whose command the unit did not acknowledge is re-sent on the next
// poll without asking again.
func (l *loop) onEscrow(ctx context.Context, n acceptor.Note, changed bool) {
	if !l.inEscrow || (l.state == stateEscrow && changed && l.haveNote && l.note != n) {
		l.inEscrow, l.decision, l.actionOK = true, 0, false
		l.haveNote = false
	}
	// HOLDING names no bill type: a note first seen there (after a host restart) is Note{}
	// until the unit says more.
	if l.state == stateEscrow && !l.haveNote {
		l.note, l.haveNote = n, true
	} else if !l.haveNote {
		l.note = acceptor.Note{}
	}
	if l.decision == 0 || l.decision == acceptor.Hold {
		prev := l.decision
		l.decision = l.h.Escrow(ctx, l.note)
		l.log.Info("escrow", "note", l.note.String(), "decision", l.decision.String())
		if l.decision != prev {
			l.actionOK = false
		}
		if l.decision == acceptor.Hold && l.actionOK && time.Since(l.holdSent) < l.cfg.HoldRefresh {
			return // the unit still holds the note from the last HOLD
		}
	} else if l.actionOK {
		return // the unit has the command; it is busy carrying it out
	}
	var cmd byte
	switch l.decision {
	case acceptor.Stack:
		cmd = CmdStack
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
	if cmd == CmdHold {
		l.holdSent = time.Now()
	}
}

// onStacked is the credit point. A run of consecutive STACKED answers for one bill type is
// one credit: Credited is called until it returns nil, and only then is the answer
// acknowledged; repeats after that (the unit did not get the ACK) are acknowledged again
// without a second Credited. With escrow on for every type a second note cannot reach the
// cassette without an ESCROW answer and a STACK in between, so consecutive answers are never
// two notes.
func (l *loop) onStacked(ctx context.Context, n acceptor.Note, changed bool) {
	if changed || !l.stacked {
		l.leaveStacked(ctx)
		l.stacked, l.credited, l.creditNote = true, false, n
		if l.haveNote && l.note != n {
			l.emit(ctx, acceptor.Event{Kind: acceptor.ProtocolError, Code: int(StStacked),
				Detail: fmt.Sprintf("unit stacked %v, escrow reported %v; crediting what the unit stacked", n, l.note)})
		}
	}
	if !l.credited {
		if err := l.h.Credited(ctx, n); err != nil {
			l.log.Warn("credit not recorded; STACKED left unacknowledged", "note", n.String(), "err", err)
		} else {
			l.credited = true
			l.log.Info("credited", "note", n.String())
		}
	}
	if l.credited && !l.lateFrame {
		l.sendAck()
	}
	if changed {
		l.forgetNote()
	}
}

// leaveStacked ends a STACKED episode. A unit that reports STACKED only once, or gave up
// waiting for the ACK, leaves an unrecorded credit behind: it is kept and retried.
//
// Stacked (the unit has finished the note) is emitted here, not at the first STACKED: in
// CCNET, STACKED is the credit report itself, and the unit is done with the note only when
// it moves on after the ACK. A unit that powers up (or is reset) from STACKED may not have
// got the ACK and reports the same note again by credit recovery; a Stacked event before
// that would make the engine record the note finished, and the repeat would then look like
// a second, unexpected note in the cassette.
func (l *loop) leaveStacked(ctx context.Context) {
	if !l.stacked {
		return
	}
	if !l.credited {
		l.log.Error("unit moved on before the credit was recorded; retrying Credited locally", "note", l.creditNote.String())
		l.pending = append(l.pending, l.creditNote)
	}
	l.stacked, l.credited = false, false
	if !powerUpState.has(l.state) && l.state != stateInitialize && l.state != stateUnknown {
		l.emit(ctx, acceptor.Event{Kind: acceptor.Stacked, Note: l.creditNote, Code: int(StStacked)})
	}
}

// retryPending calls Credited again for credits the unit no longer reports.
func (l *loop) retryPending(ctx context.Context) {
	for len(l.pending) > 0 {
		n := l.pending[0]
		if err := l.h.Credited(ctx, n); err != nil {
			l.log.Warn("credit still not recorded", "note", n.String(), "err", err)
			return
		}
		l.log.Info("credited late", "note", n.String())
		l.pending = l.pending[1:]
	}
}

// noteFor is the note of a state's bill type byte; a state that should name one and does
// not gives Note{}, never bill type 0.
func (l *loop) noteFor(arg int) acceptor.Note {
	if arg < 0 {
		return acceptor.Note{}
	}
	return l.cfg.Denominations.Lookup(arg)
}

func (l *loop) forgetNote() {
	l.note, l.haveNote = acceptor.Note{}, false
}
