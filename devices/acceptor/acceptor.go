// Package acceptor is the protocol-neutral model of a bill acceptor (banknote validator).
//
// Every protocol driver (devices/acceptor/id003, and later SSP, CCNET, ccTalk, EBDS, pulse)
// translates its wire protocol into this model, so the session engine, the journal and the
// sync layer never depend on which unit a kiosk carries.
//
// The model is built around the one thing that matters for money: the credit point. A driver
// reports a note in escrow through Handler.Escrow and does what the caller decides (stack,
// return, hold). When the unit reaches its credit point (ID-003 VEND VALID, SSP NOTE CREDIT,
// CCNET BILL STACKED, ...) the driver calls Handler.Credited and acknowledges the credit to the
// unit only after Credited returned nil, that is after the caller has journaled it. Everything
// else is an Event.
package acceptor

import (
	"context"
	"errors"
	"fmt"
)

// Note is one banknote as a unit reports it.
type Note struct {
	// Code is the protocol's own denomination code: the ID-003 escrow code (0x61..0x68), the
	// SSP channel number, the CCNET bill type. Zero means the unit did not say.
	Code int `json:"code"`
	// ValueMinor is the face value in minor currency units; zero when Code is not in the
	// denomination table (the caller must return such a note, never credit it).
	ValueMinor int64 `json:"value_minor"`
	// Currency is the ISO 4217 code, empty when unknown.
	Currency string `json:"currency,omitempty"`
}

// Known reports whether the note's value is known.
func (n Note) Known() bool { return n.ValueMinor > 0 && n.Currency != "" }

func (n Note) String() string {
	if !n.Known() {
		return fmt.Sprintf("code %#x (unknown value)", n.Code)
	}
	return fmt.Sprintf("%d %s (code %#x)", n.ValueMinor, n.Currency, n.Code)
}

// Denominations maps a protocol's denomination codes to notes. It comes from the kiosk
// config, checked against the table the unit reports where the protocol offers one.
type Denominations map[int]Note

// Lookup returns the note for code; an unknown code gives a Note with only Code set.
func (d Denominations) Lookup(code int) Note {
	if n, ok := d[code]; ok {
		n.Code = code
		return n
	}
	return Note{Code: code}
}

// Decision is the caller's answer to a note in escrow.
type Decision int

const (
	// Stack moves the note into the cassette. The caller must have durably recorded its
	// intent to stack before returning Stack.
	Stack Decision = iota + 1
	// Return gives the note back to the customer.
	Return
	// Hold keeps the note in escrow; the driver keeps the unit holding (within the unit's own
	// escrow timeout) and asks again.
	Hold
)

func (d Decision) String() string {
	switch d {
	case Stack:
		return "stack"
	case Return:
		return "return"
	case Hold:
		return "hold"
	}
	return fmt.Sprintf("Decision(%d)", int(d))
}

// Handler receives what the unit reports. A driver calls its methods from its own goroutine,
// one at a time, in the order the unit reported the facts.
type Handler interface {
	// Escrow is called when a note is held in escrow. It must answer quickly: units return a
	// note on their own after a few seconds without a decision.
	Escrow(ctx context.Context, n Note) Decision
	// Credited is called at the unit's credit point. The driver acknowledges the credit to the
	// unit only when Credited returns nil. On an error the driver leaves the credit
	// unacknowledged, so the unit keeps reporting it, and calls Credited again later: a credit
	// is never acknowledged without having been journaled.
	//
	// After a host restart a unit may re-report a credit the host already journaled; the
	// caller recognises it and returns nil without counting it twice.
	Credited(ctx context.Context, n Note) error
	// Event reports every other fact.
	Event(ctx context.Context, e Event)
}

// Kind classifies an Event.
type Kind int

// Event kinds. The comments name the protocol codes that map to each.
const (
	_ Kind = iota
	// PowerUp: the unit started with nothing in the note path (ID-003 0x40, SSP 0xF1, CCNET 0x10).
	PowerUp
	// PowerUpNoteInAcceptor: the unit started with a note in the acceptor head; it returns it
	// to the front on reset (ID-003 0x41, CCNET 0x11, SSP 0xE1 NOTE CLEARED FROM FRONT).
	PowerUpNoteInAcceptor
	// PowerUpNoteInStacker: the unit started with a note past the point of no return; it
	// stacks it on reset (ID-003 0x42, CCNET 0x12, SSP 0xE2 NOTE CLEARED INTO CASHBOX).
	PowerUpNoteInStacker
	// Initializing: the unit is running its own start-up (ID-003 0x1B, CCNET 0x13, SSP 0xB6).
	Initializing
	// Idle: enabled and waiting for a note.
	Idle
	// Disabled: inhibited by the host.
	Disabled
	// Accepting: a note is being drawn in and validated.
	Accepting
	// Stacking: a note is moving from escrow to the cassette.
	Stacking
	// Stacked: the note is in the cassette (after the credit point) and the unit has
	// finished with it: a repeat of its credit report after this is a new note. Drivers
	// whose credit report is itself a state (CCNET's STACKED) emit it when the unit moves on.
	Stacked
	// Returning: a note is being given back.
	Returning
	// Returned: the note was given back to the customer.
	Returned
	// Holding: the unit holds a note in escrow at the host's request.
	Holding
	// Rejected: the unit refused a note; Reason says why.
	Rejected
	// AcceptorJam: a note is stuck in the transport (ID-003 0x45, CCNET 0x43, SSP 0xE9/0xEA).
	AcceptorJam
	// StackerJam: a note is stuck in the stacker (ID-003 0x46, CCNET 0x44).
	StackerJam
	// CassetteFull: the cassette cannot take another note.
	CassetteFull
	// CassetteRemoved: the cassette (stacker box) is out.
	CassetteRemoved
	// CassetteReplaced: the cassette is back.
	CassetteReplaced
	// Fraud: the unit detected a cheat attempt (string, fishing).
	Fraud
	// Failure: the unit reports a hardware failure; Code carries the unit's failure code.
	Failure
	// Paused: the unit paused because a second note was inserted during a transaction.
	Paused
	// CommLost: the unit stopped answering (timeouts, or only bad frames) for longer than the
	// driver's tolerance.
	CommLost
	// CommRestored: the unit answers again after CommLost.
	CommRestored
	// ProtocolError: the unit said something the driver does not understand, or refused a
	// command (ID-003 INVALID COMMAND, COMM ERROR); the driver resynchronises on its own.
	ProtocolError
	// Identified: the driver read the unit's identity (model, serial, firmware); Detail has it.
	Identified
)

var kindNames = [...]string{
	PowerUp: "power_up", PowerUpNoteInAcceptor: "power_up_note_in_acceptor",
	PowerUpNoteInStacker: "power_up_note_in_stacker", Initializing: "initializing", Idle: "idle",
	Disabled: "disabled", Accepting: "accepting", Stacking: "stacking", Stacked: "stacked",
	Returning: "returning", Returned: "returned", Holding: "holding", Rejected: "rejected",
	AcceptorJam: "acceptor_jam", StackerJam: "stacker_jam", CassetteFull: "cassette_full",
	CassetteRemoved: "cassette_removed", CassetteReplaced: "cassette_replaced", Fraud: "fraud",
	Failure: "failure", Paused: "paused", CommLost: "comm_lost", CommRestored: "comm_restored",
	ProtocolError: "protocol_error", Identified: "identified",
}

func (k Kind) String() string {
	if k > 0 && int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Fault reports whether the kind is a fault that stops cash acceptance until it clears.
func (k Kind) Fault() bool {
	switch k {
	case AcceptorJam, StackerJam, CassetteFull, CassetteRemoved, Failure, CommLost, Fraud:
		return true
	}
	return false
}

// RejectReason is why a unit refused a note, in protocol-neutral terms.
type RejectReason int

const (
	RejectUnknown            RejectReason = iota
	RejectInsertion                       // note inserted badly / skewed
	RejectMagnetic                        // magnetic pattern check
	RejectRemainingInHead                 // a note was left in the head
	RejectMultiple                        // more than one note
	RejectConveying                       // transport error
	RejectDenomination                    // could not identify the denomination
	RejectPhotoPattern                    // optical pattern check
	RejectPhotoLevel                      // optical level check
	RejectInhibited                       // denomination disabled or unit inhibited
	RejectOperation                       // operation error (e.g. return requested)
	RejectRemainingInStacker              // a note was left in the stacker path
	RejectLength                          // length check
	RejectCounterfeit                     // true-bill / security check failed
	RejectHostReturn                      // the host asked for the note to be returned
	RejectTimeout                         // escrow timeout in the unit
)

var reasonNames = [...]string{
	RejectUnknown: "unknown", RejectInsertion: "insertion", RejectMagnetic: "magnetic",
	RejectRemainingInHead: "remaining_in_head", RejectMultiple: "multiple_notes",
	RejectConveying: "conveying", RejectDenomination: "denomination",
	RejectPhotoPattern: "photo_pattern", RejectPhotoLevel: "photo_level",
	RejectInhibited: "inhibited", RejectOperation: "operation",
	RejectRemainingInStacker: "remaining_in_stacker", RejectLength: "length",
	RejectCounterfeit: "counterfeit", RejectHostReturn: "host_return", RejectTimeout: "timeout",
}

func (r RejectReason) String() string {
	if r >= 0 && int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("RejectReason(%d)", int(r))
}

// Event is a fact reported by a unit.
type Event struct {
	Kind Kind
	// Note is set for events about one note (Returned, Stacked, Fraud, power-up reports when
	// the protocol names the note).
	Note Note
	// Reason is set for Rejected.
	Reason RejectReason
	// Code is the raw protocol code (status byte, reject code, failure code) for diagnostics.
	Code int
	// Detail is free text for technicians; never money-relevant.
	Detail string
}

func (e Event) String() string {
	s := e.Kind.String()
	if e.Note.Code != 0 || e.Note.ValueMinor != 0 {
		s += " " + e.Note.String()
	}
	if e.Kind == Rejected {
		s += " reason=" + e.Reason.String()
	}
	if e.Code != 0 {
		s += fmt.Sprintf(" code=%#x", e.Code)
	}
	if e.Detail != "" {
		s += " " + e.Detail
	}
	return s
}

// Info identifies a unit.
type Info struct {
	Protocol string `json:"protocol"`
	Model    string `json:"model,omitempty"`
	Serial   string `json:"serial,omitempty"`
	Firmware string `json:"firmware,omitempty"`
	// Denominations is the table the unit reported, when the protocol offers one.
	Denominations Denominations `json:"-"`
	// Escrowless is set for units that have no escrow (pulse acceptors): they never call
	// Handler.Escrow, a note is in the cassette when Credited is called, and the only way to
	// keep a session within its limit is to inhibit the unit while the largest note would not
	// fit.
	Escrowless bool `json:"escrowless,omitempty"`
}

// StackCounter is implemented by drivers of units that count the notes they stacked, across
// power cycles (ITL SSP GET COUNTERS): an independent witness that tells, after a crash,
// whether a note whose fate is unknown went into the cassette. The count may wrap at 2^32.
type StackCounter interface {
	StackedCount(ctx context.Context) (uint64, error)
}

// PulseRecorder is implemented by a Handler that journals the pulses of an escrowless pulse
// acceptor one by one, so that a crash in the middle of a pulse train leaves evidence of
// the pulses already seen (invariant 3 of kiosk/journal; the pulse driver's device facts:
// persist the count per pulse). A pulse driver calls Pulse for every accepted pulse, in order, before acting on
// it; train numbers a pulse train (rising per driver run) and count is the pulses seen so far
// in that train. When Pulse returns an error the driver raises it as a Failure event and
// inhibits the unit: it cannot refuse a pulse that has already happened.
type PulseRecorder interface {
	Pulse(ctx context.Context, train uint64, count int) error
}

// PowerUpRecorder is implemented by a Handler that journals what a unit reports at
// power-up (PowerUp, PowerUpNoteInAcceptor, PowerUpNoteInStacker) and must be able to refuse
// it. The report is the only evidence of a note the unit holds in its path, and the RESET
// that follows makes the unit stack or return that note and forget it. So a driver whose
// Handler implements PowerUpRecorder calls PowerUp instead of Event for a power-up report,
// and resets the unit (on its own or at a Reset request) only after PowerUp returned nil. On
// an error it leaves the unit in its power-up state, calls PowerUp again at the next poll,
// and refuses Reset with ErrNotRecorded meanwhile: nothing makes the unit forget a note
// before the host has recorded it. A protocol whose unit reports the power-up only once
// (SSP NOTE CLEARED INTO CASHBOX / FROM FRONT) keeps the report and retries it as it does a
// credit the handler could not record; its plain PowerUp (after SLAVE RESET, with nothing
// in the path to lose) may still come as an Event.
//
// A unit that powers up again before the report was recorded reports again; the handler
// recognises a report it already recorded and returns nil without counting the note twice.
type PowerUpRecorder interface {
	PowerUp(ctx context.Context, e Event) error
}

// IsPowerUp reports whether k is one of the power-up reports (see PowerUpRecorder).
func (k Kind) IsPowerUp() bool {
	return k == PowerUp || k == PowerUpNoteInAcceptor || k == PowerUpNoteInStacker
}

// Acceptor is what every bill acceptor driver provides. Commands other than Run may be called
// from any goroutine; a driver serialises them with its poll loop.
type Acceptor interface {
	// Run performs the power-up sequence (status, reset, settings), leaves the unit inhibited,
	// and then polls it, reporting to h, until ctx ends. On the way out it inhibits the unit
	// (best effort) so no note is accepted while the host is away. Run returns nil when ctx was
	// cancelled, an error when the port failed for good.
	Run(ctx context.Context, h Handler) error
	// Enable accepts the given denomination codes and lifts the inhibit. An empty list is the
	// same as Inhibit.
	Enable(ctx context.Context, codes []int) error
	// Inhibit stops acceptance. A note already in the path still ends at the credit point or
	// back at the front.
	Inhibit(ctx context.Context) error
	// Reset restarts the unit (technician action; also used to clear faults).
	Reset(ctx context.Context) error
	// Info returns what the driver learned about the unit.
	Info() Info
}

// Errors returned by drivers.
var (
	// ErrNotRunning is returned by commands when Run is not active.
	ErrNotRunning = errors.New("acceptor: driver not running")
	// ErrTimeout is returned when the unit did not answer a command in time.
	ErrTimeout = errors.New("acceptor: unit did not answer")
	// ErrRefused is returned when the unit refused a command.
	ErrRefused = errors.New("acceptor: unit refused the command")
	// ErrNotRecorded is returned by Reset while the unit's power-up report has not been
	// recorded by the handler (PowerUpRecorder): a reset now would make the unit forget a
	// note the journal has no record of.
	ErrNotRecorded = errors.New("acceptor: power-up report not recorded yet; reset withheld")
)
