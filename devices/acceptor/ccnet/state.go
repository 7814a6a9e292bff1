package ccnet

import "fmt"

// unitState is what the unit last said it is doing, derived from its POLL answer in one
// place (stateOf) so the command table and the poll loop agree on it.
type unitState uint8

const (
	stateUnknown unitState = iota // no state seen yet, or a state this driver does not know
	statePowerUp
	statePowerUpValidator
	statePowerUpStacker
	stateInitialize
	stateIdling
	stateAccepting
	stateStacking
	stateReturning
	stateDisabled
	stateHolding
	stateBusy
	stateRejecting
	stateCassetteFull
	stateCassetteOut
	stateValidatorJammed
	stateCassetteJammed
	stateCheated
	statePause
	stateFailure
	stateEscrow
	stateStacked
	stateReturned
	numStates
)

var stateNames = [numStates]string{
	stateUnknown: "unknown", statePowerUp: "power_up",
	statePowerUpValidator: "power_up_bill_in_validator", statePowerUpStacker: "power_up_bill_in_stacker",
	stateInitialize: "initialize", stateIdling: "idling", stateAccepting: "accepting",
	stateStacking: "stacking", stateReturning: "returning", stateDisabled: "disabled",
	stateHolding: "holding", stateBusy: "busy", stateRejecting: "rejecting",
	stateCassetteFull: "cassette_full", stateCassetteOut: "cassette_out",
	stateValidatorJammed: "validator_jammed", stateCassetteJammed: "cassette_jammed",
	stateCheated: "cheated", statePause: "pause", stateFailure: "failure",
	stateEscrow: "escrow", stateStacked: "stacked", stateReturned: "returned",
}

func (s unitState) String() string {
	if s < numStates {
		return stateNames[s]
	}
	return fmt.Sprintf("unitState(%d)", uint8(s))
}

var statusStates = map[byte]unitState{
	StPowerUp: statePowerUp, StPowerUpBillInValidator: statePowerUpValidator,
	StPowerUpBillInStacker: statePowerUpStacker, StInitialize: stateInitialize,
	StIdling: stateIdling, StAccepting: stateAccepting, StStacking: stateStacking,
	StReturning: stateReturning, StDisabled: stateDisabled, StHolding: stateHolding,
	StBusy: stateBusy, StRejecting: stateRejecting, StCassetteFull: stateCassetteFull,
	StCassetteOut: stateCassetteOut, StValidatorJammed: stateValidatorJammed,
	StCassetteJammed: stateCassetteJammed, StCheated: stateCheated, StPause: statePause,
	StFailure: stateFailure, StEscrow: stateEscrow, StStacked: stateStacked,
	StReturned: stateReturned,
}

// stateOf derives the unit state from a POLL answer's first byte.
func stateOf(status byte) unitState {
	if s, ok := statusStates[status]; ok {
		return s
	}
	return stateUnknown
}

// StatusName names a POLL state byte ("idling", "escrow", "stacked", ...; "unknown" for a
// state this package does not know), for logs and control panels.
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
	// notePath: a note is between the bezel and the cassette, or the unit holds an event
	// about one (STACKED, RETURNED) that a RESET would lose.
	notePath = states(stateAccepting, stateEscrow, stateHolding, stateStacking, stateStacked,
		stateRejecting, stateReturning, stateReturned, statePause)
	// quiet: no note in the path, so the unit may be reset or reconfigured.
	quiet        = anyState &^ notePath
	powerUpState = states(statePowerUp, statePowerUpValidator, statePowerUpStacker)
	inEscrow     = states(stateEscrow, stateHolding)
	// infoStates: where the unit answers IDENTIFICATION and GET BILL TABLE; elsewhere it
	// answers ILLEGAL COMMAND (power up, initialize, the failure states 0x41..0x47, disabled).
	infoStates = powerUpState | states(stateInitialize, stateDisabled, stateCassetteFull,
		stateCassetteOut, stateValidatorJammed, stateCassetteJammed, stateCheated, statePause,
		stateFailure)
)

// replyKind is how the unit answers a command.
type replyKind uint8

const (
	replyNone   replyKind = iota // no answer (the host's ACK and NAK)
	replyStatus                  // a state, maybe with one data byte (POLL)
	replyACK                     // ACK 0x00
	replyData                    // data
)

// commandSpec is one row of the command table: what the unit answers, how much data a data
// reply has at least, and in which states the driver may send the command. The legal states
// protect money: RESET is never sent with a note in the path or a credit unacknowledged.
type commandSpec struct {
	name    string
	reply   replyKind
	minData int
	legal   stateSet
}

var commandTable = map[byte]commandSpec{
	CmdPoll:            {"poll", replyStatus, 0, anyState},
	CmdAck:             {"ack", replyNone, 0, anyState},
	CmdNak:             {"nak", replyNone, 0, anyState},
	CmdReset:           {"reset", replyACK, 0, quiet},
	CmdGetStatus:       {"get status", replyData, 6, quiet},
	CmdSetSecurity:     {"set security", replyACK, 0, quiet},
	CmdEnableBillTypes: {"enable bill types", replyACK, 0, anyState},
	CmdStack:           {"stack", replyACK, 0, inEscrow},
	CmdReturn:          {"return", replyACK, 0, inEscrow},
	CmdHold:            {"hold", replyACK, 0, inEscrow},
	CmdIdentification:  {"identification", replyData, IdentificationLen, infoStates},
	CmdGetBillTable:    {"get bill table", replyData, BillEntryLen, infoStates},
}
