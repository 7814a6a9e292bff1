package ssp

import (
	"fmt"

	"github.com/kioskd/kioskd/devices/acceptor"
)

// unitState is what the unit is doing, derived in one place (loop.deriveState) from the
// events of the last poll reply and what the driver commanded, so that the command table and
// the poll loop agree on it.
type unitState uint8

const (
	stateUnknown      unitState = iota // nothing polled yet
	stateDisabled                      // DISABLED or CHANNEL DISABLE, or nothing while disabled
	stateIdle                          // enabled, nothing reported
	stateReading                       // READ 0: a note is being drawn in and validated
	stateEscrow                        // READ n reported (or found by the HOLD probe): a note waits in escrow
	stateStacking                      // STACKING
	stateRejecting                     // REJECTING
	stateJam                           // SAFE or UNSAFE JAM
	stateCashboxOut                    // CASHBOX REMOVED
	statePathOpen                      // NOTE PATH OPEN
	stateStackerFull                   // STACKER FULL (sticky until the cashbox is emptied)
	stateInitialising                  // INITIALISING (POLL WITH ACK only)
	numStates
)

var stateNames = [numStates]string{
	stateUnknown: "unknown", stateDisabled: "disabled", stateIdle: "idle",
	stateReading: "reading", stateEscrow: "escrow", stateStacking: "stacking",
	stateRejecting: "rejecting", stateJam: "jam", stateCashboxOut: "cashbox_out",
	statePathOpen: "note_path_open", stateStackerFull: "stacker_full",
	stateInitialising: "initialising",
}

func (s unitState) String() string {
	if s < numStates {
		return stateNames[s]
	}
	return fmt.Sprintf("unitState(%d)", uint8(s))
}

// kind is the event that reports entering the state; 0 for states that are reported
// otherwise (escrow goes to Handler.Escrow, a unit's own rejection is reported once as
// Rejected).
func (s unitState) kind() acceptor.Kind {
	switch s {
	case stateDisabled:
		return acceptor.Disabled
	case stateIdle:
		return acceptor.Idle
	case stateReading:
		return acceptor.Accepting
	case stateStacking:
		return acceptor.Stacking
	case stateJam:
		return acceptor.AcceptorJam
	case stateCashboxOut:
		return acceptor.CassetteRemoved
	case statePathOpen:
		return acceptor.Failure
	case stateStackerFull:
		return acceptor.CassetteFull
	case stateInitialising:
		return acceptor.Initializing
	}
	return 0
}

// stateSet is a set of unit states.
type stateSet uint32

func states(ss ...unitState) stateSet {
	var set stateSet
	for _, s := range ss {
		set |= 1 << s
	}
	return set
}

func (set stateSet) has(s unitState) bool { return set&(1<<s) != 0 }

var (
	anyState = stateSet(1<<numStates - 1)
	// notePath: a note is somewhere between the bezel and the cashbox.
	notePath = states(stateReading, stateEscrow, stateStacking, stateRejecting)
	// quiet: known to have no note in the path, so the unit may be reset.
	quiet = anyState &^ notePath &^ states(stateUnknown)
)

// crypt says whether a command travels encrypted once keys are negotiated.
type crypt uint8

const (
	// sealed: encrypted whenever a key is set. ITL recommends encrypting everything, and
	// the driver never accepts a plain reply carrying data to an encrypted command.
	sealed crypt = iota
	// plain: always sent in clear (SYNC and the key exchange itself).
	plain
)

// commandSpec is one row of the command table: the states the driver may send the command
// in and how it travels. The legal states protect money: RESET is never sent with a note in
// the path; REJECT and HOLD only make sense with a note in escrow (or while the start-up
// probe does not know yet); nothing that changes the acceptance set is sent while a note
// waits in escrow. POLL has one more rule the table cannot express (loop.exchange): it stacks
// a note in escrow, so it is only sent there after the handler said Stack.
type commandSpec struct {
	legal stateSet
	crypt crypt
}

var commandTable = map[byte]commandSpec{
	CmdSync:               {anyState, plain},
	CmdSetGenerator:       {anyState, plain},
	CmdSetModulus:         {anyState, plain},
	CmdRequestKeyExchange: {anyState, plain},
	CmdHostProtocol:       {anyState, sealed},
	CmdPoll:               {anyState, sealed},
	CmdPollWithAck:        {anyState, sealed},
	CmdEventAck:           {anyState, sealed},
	CmdHold:               {states(stateEscrow, stateUnknown), sealed},
	CmdReject:             {states(stateEscrow, stateUnknown), sealed},
	CmdReset:              {quiet, sealed},
	CmdSetInhibits:        {anyState &^ states(stateEscrow), sealed},
	CmdEnable:             {anyState &^ states(stateEscrow), sealed},
	CmdDisable:            {anyState &^ states(stateEscrow), sealed},
	CmdSetupRequest:       {anyState, sealed},
	CmdGetSerial:          {anyState, sealed},
	CmdGetCounters:        {anyState, sealed},
	CmdLastRejectCode:     {anyState, sealed},
}
