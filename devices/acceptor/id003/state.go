package id003

import "fmt"

// unitState is what the unit last said it is doing, derived from its status byte in one place
// (stateOf) so the command table and the poll loop agree on it.
type unitState uint8

const (
	stateUnknown unitState = iota // no status seen yet, or a status this driver does not know
	stateIdling
	stateAccepting
	stateEscrow
	stateStacking
	stateVendValid
	stateStacked
	stateRejecting
	stateReturning
	stateHolding
	stateDisabled
	stateInitialize
	statePowerUp
	statePowerUpAcceptor
	statePowerUpStacker
	stateStackerFull
	stateStackerOpen
	stateAcceptorJam
	stateStackerJam
	statePause
	stateCheated
	stateFailure
	numStates
)

var stateNames = [numStates]string{
	stateUnknown: "unknown", stateIdling: "idling", stateAccepting: "accepting",
	stateEscrow: "escrow", stateStacking: "stacking", stateVendValid: "vend_valid",
	stateStacked: "stacked", stateRejecting: "rejecting", stateReturning: "returning",
	stateHolding: "holding", stateDisabled: "disabled", stateInitialize: "initialize",
	statePowerUp: "power_up", statePowerUpAcceptor: "power_up_bill_in_acceptor",
	statePowerUpStacker: "power_up_bill_in_stacker", stateStackerFull: "stacker_full",
	stateStackerOpen: "stacker_open", stateAcceptorJam: "acceptor_jam",
	stateStackerJam: "stacker_jam", statePause: "pause", stateCheated: "cheated",
	stateFailure: "failure",
}

func (s unitState) String() string {
	if s < numStates {
		return stateNames[s]
	}
	return fmt.Sprintf("unitState(%d)", uint8(s))
}

var statusStates = map[byte]unitState{
	StIdling: stateIdling, StAccepting: stateAccepting, StEscrow: stateEscrow,
	StStacking: stateStacking, StVendValid: stateVendValid, StStacked: stateStacked,
	StRejecting: stateRejecting, StReturning: stateReturning, StHolding: stateHolding,
	StDisabled: stateDisabled, StInitialize: stateInitialize, StPowerUp: statePowerUp,
	StPowerUpAcc: statePowerUpAcceptor, StPowerUpStk: statePowerUpStacker,
	StStackerFull: stateStackerFull, StStackerOpen: stateStackerOpen,
	StAcceptorJam: stateAcceptorJam, StStackerJam: stateStackerJam, StPause: statePause,
	StCheated: stateCheated, StFailure: stateFailure,
}

// stateOf derives the unit state from a status byte.
func stateOf(status byte) unitState {
	if s, ok := statusStates[status]; ok {
		return s
	}
	return stateUnknown
}

// StatusName names a status byte ("idling", "escrow", "vend_valid", ...; "unknown" for a
// status this package does not know), for logs and control panels.
func StatusName(status byte) string { return stateOf(status).String() }

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
	// notePath: a note is somewhere between the bezel and the cassette.
	notePath = states(stateAccepting, stateEscrow, stateStacking, stateVendValid, stateStacked,
		stateRejecting, stateReturning, stateHolding, statePause)
	// quiet: no note in the path, so the unit may be reset or reconfigured.
	quiet        = anyState &^ notePath
	powerUpState = states(statePowerUp, statePowerUpAcceptor, statePowerUpStacker)
	inEscrow     = states(stateEscrow, stateHolding)
)

// replyKind is how the unit answers a command.
type replyKind uint8

const (
	replyNone   replyKind = iota // no answer (the host's ACK to VEND VALID)
	replyStatus                  // a status frame
	replyACK                     // ACK 0x50
	replyEcho                    // the command frame itself
	replyData                    // the command byte followed by data
)

// commandSpec is one row of the command table: what the unit answers and in which states the
// driver may send the command. The legal states protect money: RESET is never sent with a
// note in the path, where it would lose track of a credit.
type commandSpec struct {
	name  string
	reply replyKind
	legal stateSet
}

var commandTable = map[byte]commandSpec{
	CmdStatusRequest: {"status request", replyStatus, anyState},
	CmdAck:           {"ack", replyNone, states(stateVendValid)},
	CmdReset:         {"reset", replyACK, quiet},
	CmdStack1:        {"stack-1", replyACK, inEscrow},
	CmdStack2:        {"stack-2", replyACK, inEscrow},
	CmdReturn:        {"return", replyACK, inEscrow},
	CmdHold:          {"hold", replyACK, inEscrow},
	CmdSetDenoms:     {"set denominations", replyEcho, anyState},
	CmdSetSecurity:   {"set security", replyEcho, quiet},
	CmdSetCommMode:   {"set communication mode", replyEcho, quiet},
	CmdSetInhibit:    {"set inhibit", replyEcho, anyState},
	CmdVersion:       {"version request", replyData, quiet},
	CmdCurrency:      {"currency table request", replyData, quiet},
}
