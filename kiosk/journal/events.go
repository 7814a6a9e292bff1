package journal

import (
	"encoding/json"
	"fmt"
	"time"
)

// Event types. The names are part of the export format (kioskctl journal export) and of the
// hash chain: they never change.
const (
	EvJournalCreated   = "journal_created"
	EvBoot             = "boot"
	EvSessionOpened    = "session_opened"
	EvStackIntent      = "stack_intent"
	EvNoteCredited     = "note_credited"
	EvNoteRefused      = "note_refused"
	EvCreditReReported = "credit_rereported"
	EvIntentResolved   = "intent_resolved"
	EvUncertain        = "uncertain_item"
	EvSessionClosed    = "session_closed"
	EvSessionCancelled = "session_cancelled"
	EvPrintStarted     = "receipt_print_started"
	EvPrinted          = "receipt_printed"
	EvPrintFailed      = "receipt_print_failed"
	EvTopupAcked       = "topup_acked"
	EvTopupConflict    = "topup_conflict"
	EvAlarm            = "alarm"
	EvDevice           = "device_event"
	EvUnexpectedCredit = "unexpected_credit"
	// EvIntentUncertainty is reserved: no version of the journal writes it.
	EvIntentUncertainty = "intent_uncertain"
	// EvNoteStacked marks the last credited note as finished at the unit.
	EvNoteStacked = "note_stacked"
	// EvDeviceCounter records the acceptor's own stacked counter next to the journal's
	// cassette count, as the baseline for recovery (StackedWitness).
	EvDeviceCounter = "device_counter"
	// EvPulse and EvCreditedDirect are the events of escrowless (pulse) acceptors.
	EvPulse          = "pulse"
	EvCreditedDirect = "note_credited_unescrowed"
	// EvCutsRead records a reading of the printer's cut counter and what the journal
	// concluded from it (see ReconcileCuts).
	EvCutsRead = "printer_cuts_read"
	// EvFollowUpCredit is a credit the unit reported after its session closed: it resolves
	// that session's uncertain item and creates a follow-up top-up (CreditAfterClose).
	EvFollowUpCredit = "follow_up_credit"
	// EvPulseLine records the state of an escrowless unit's inhibit line (PulseLine): enabled
	// before the line is released, inhibited once the unit said it is at rest behind it.
	EvPulseLine = "pulse_line"
)

// Event is the payload of one event kind: each kind has exactly one struct below, used both
// to write the event and to read it back (Verify's replay, tools).
//
// The JSON of every payload is part of the hash chain, so it must stay byte for byte what
// earlier versions wrote: field names never change, and the fields are declared in the
// order their JSON has always had (alphabetical for the kinds first written from maps). A
// field that is always zero (the id of a session_opened, which is the event's own seq) is
// kept for that reason. New fields are optional (omitempty), so that an event written
// without them reads back the same.
type Event interface {
	EventType() string
}

// JournalCreatedEvent is the first event of every journal.
type JournalCreatedEvent struct {
	Currency string `json:"currency"`
	Epoch    string `json:"epoch"` // 16 hex digits
	KioskID  string `json:"kiosk_id"`
	Schema   int    `json:"schema"`
}

// BootEvent records a start of kioskd (informative).
type BootEvent struct {
	BootID  string `json:"boot_id"`
	Version string `json:"version"`
}

// DeviceEvent records a device report worth keeping (informative).
type DeviceEvent struct {
	Code   int    `json:"code"`
	Detail string `json:"detail"`
	Device string `json:"device"`
	Event  string `json:"event"`
}

// SessionOpenedEvent opens a session; the session's id is the event's seq. It is the
// session as opened: the zero id, totals and empty note list are written for compatibility.
type SessionOpenedEvent struct {
	ID            uint64     `json:"id"`
	Account       string     `json:"account"`
	AccountMasked string     `json:"account_masked"`
	Currency      string     `json:"currency"`
	LimitMinor    int64      `json:"limit_minor"`
	Offline       bool       `json:"offline"`
	QRNonce       string     `json:"qr_nonce,omitempty"`
	QR            string     `json:"qr,omitempty"`
	OpenedAt      time.Time  `json:"opened_at"`
	Notes         []NoteLine `json:"notes"`
	TotalMinor    int64      `json:"total_minor"`
	NoteCount     int64      `json:"note_count"`
	PendingMinor  int64      `json:"pending_minor"`
	Closed        bool       `json:"closed"`
}

// StackIntentEvent records that the host is about to stack a note; the intent's id is the
// event's seq (ID is always zero).
type StackIntentEvent struct {
	ID        uint64    `json:"id"`
	SessionID uint64    `json:"session_id"`
	Note      Note      `json:"note"`
	At        time.Time `json:"at"`
}

// NoteCreditedEvent is the credit point of an intent's note. Note is what the unit
// credited, IntentNote what the intent named; SessionTotal the session total after it.
type NoteCreditedEvent struct {
	Detail       string `json:"detail"`
	IntentID     uint64 `json:"intent_id"`
	IntentNote   Note   `json:"intent_note"`
	Note         Note   `json:"note"`
	SessionID    uint64 `json:"session_id"`
	SessionTotal int64  `json:"session_total"`
}

// NoteStackedEvent records that the unit finished the last credited note.
type NoteStackedEvent struct {
	IntentID  uint64 `json:"intent_id"`
	SessionID uint64 `json:"session_id"`
}

// NoteRefusedEvent records a note returned from escrow without stacking (no money moves).
type NoteRefusedEvent struct {
	Note      Note   `json:"note"`
	Reason    string `json:"reason"`
	SessionID uint64 `json:"session_id"`
}

// CreditReReportedEvent records a unit repeating the last journaled credit.
type CreditReReportedEvent struct {
	Detail       string `json:"detail"`
	LastIntentID uint64 `json:"last_intent_id"`
	Note         Note   `json:"note"`
}

// UnexpectedCreditEvent records a credit with no intent (or no session): the note is in the
// cassette and an uncertain item follows it in the same transaction.
type UnexpectedCreditEvent struct {
	Detail    string `json:"detail"`
	Note      Note   `json:"note"`
	SessionID uint64 `json:"session_id"`
}

// UncertainEvent records an uncertain item; its id is the event's seq (ID is always zero).
type UncertainEvent struct {
	ID         uint64 `json:"id"`
	SessionID  uint64 `json:"session_id,omitempty"`
	ValueMinor int64  `json:"value_minor"`
	Reason     string `json:"reason"`
	// InCassette: the note was reported credited and is in the cassette count already (an
	// unexpected credit); only its owner is uncertain, not whether it went in.
	InCassette bool `json:"in_cassette,omitempty"`
}

// IntentResolvedEvent settles an open intent without a credit report (Resolved*).
type IntentResolvedEvent struct {
	Evidence   string `json:"evidence"`
	IntentID   uint64 `json:"intent_id"`
	Note       Note   `json:"note"`
	Resolution string `json:"resolution"`
	SessionID  uint64 `json:"session_id"`
}

// DeviceCounterEvent records a new baseline of the unit's stacked counter (DeviceBaseline).
type DeviceCounterEvent struct {
	Device           uint64 `json:"device"`
	Cassette         int64  `json:"cassette"`
	Unit             string `json:"unit,omitempty"`
	UncertainThrough uint64 `json:"uncertain_through,omitempty"`
	Pending          int64  `json:"pending_uncertain,omitempty"`
}

// SessionClosedEvent closes a session that took money (or holds an uncertain item) and
// creates its top-up; Payload is the wire.Topup published to the ledger.
type SessionClosedEvent struct {
	AmountMinor int64           `json:"amount_minor"`
	Outcome     string          `json:"outcome"`
	Payload     json.RawMessage `json:"payload"`
	ReceiptNo   uint64          `json:"receipt_no"`
	SessionID   uint64          `json:"session_id"`
	TopupID     string          `json:"topup_id"`
	TopupSeq    uint64          `json:"topup_seq"`
}

// SessionCancelledEvent closes a session that took nothing: no top-up.
type SessionCancelledEvent struct {
	Outcome   string `json:"outcome"`
	SessionID uint64 `json:"session_id"`
}

// PrintStartedEvent is committed before the first byte of a receipt goes to the printer.
// Cuts is the printer's cut counter read just before, when CutsKnown. (Journals written
// before the counter was recorded also hold a form with only detail, receipt_no and
// topup_seq: it reads as CutsKnown false.)
type PrintStartedEvent struct {
	Cuts      uint64 `json:"cuts"`
	CutsKnown bool   `json:"cuts_known"`
	Detail    string `json:"detail,omitempty"`
	ReceiptNo uint64 `json:"receipt_no"`
	TopupSeq  uint64 `json:"topup_seq"`
}

// PrintedEvent records a receipt that came out. Cut, when set, is the printer's cut counter
// value of the cut the journal attributes to it.
type PrintedEvent struct {
	Cut       uint64 `json:"cut,omitempty"`
	Detail    string `json:"detail"`
	ReceiptNo uint64 `json:"receipt_no"`
	TopupSeq  uint64 `json:"topup_seq"`
}

// PrintFailedEvent records a print attempt that failed; Unsent when it put no receipt out
// (refused before any byte went to the printer, or the cut counter shows no cut).
type PrintFailedEvent struct {
	Detail    string `json:"detail"`
	ReceiptNo uint64 `json:"receipt_no"`
	TopupSeq  uint64 `json:"topup_seq"`
	Unsent    bool   `json:"unsent,omitempty"`
}

// CutsReadEvent records a reading of the printer's cut counter that moved the journal's
// account of it (see ReconcileCuts): Previous is the counter value up to which every cut was
// accounted for before, Unexplained how many cuts since then belong to no receipt, and Next
// the top-up whose print is about to start (0 for a reconciliation).
type CutsReadEvent struct {
	Counter     uint64 `json:"counter"`
	Known       bool   `json:"known"`
	Previous    uint64 `json:"previous,omitempty"`
	Unexplained uint64 `json:"unexplained,omitempty"`
	Next        uint64 `json:"next,omitempty"`
}

// TopupAckedEvent records the ledger's credited, duplicate or held ack of a top-up: each
// ends the outbox entry.
type TopupAckedEvent struct {
	AckedThroughSeq uint64 `json:"acked_through_seq"`
	LedgerRef       string `json:"ledger_ref"`
	Status          string `json:"status"`
	TopupID         string `json:"topup_id"`
	TopupSeq        uint64 `json:"topup_seq"`
	// Reason is the ledger's reason for a held ack (status "held").
	Reason string `json:"reason,omitempty"`
}

// TopupConflictEvent records the ledger's conflict ack: retries stop.
type TopupConflictEvent struct {
	LedgerRef string `json:"ledger_ref"`
	TopupID   string `json:"topup_id"`
	TopupSeq  uint64 `json:"topup_seq"`
}

// PulseEvent records one pulse of an escrowless acceptor (PulseTrain).
type PulseEvent struct {
	Train     uint64 `json:"train"`
	Count     int    `json:"count"`
	SessionID uint64 `json:"session_id,omitempty"`
}

// PulseLineEvent records a change of the journaled state of an escrowless unit's inhibit
// line (PulseLine): State is PulseLineEnabled or PulseLineInhibited.
type PulseLineEvent struct {
	State     string `json:"state"`
	SessionID uint64 `json:"session_id,omitempty"`
	Detail    string `json:"detail,omitempty"`
}

// CreditedDirectEvent is the credit of a note from an escrowless unit (no intent).
type CreditedDirectEvent struct {
	Detail       string `json:"detail"`
	Note         Note   `json:"note"`
	OverLimit    bool   `json:"over_limit"`
	SessionID    uint64 `json:"session_id"`
	SessionTotal int64  `json:"session_total"`
}

// FollowUpCreditEvent is a credit report that came after the session of its stack intent
// closed with the note as an uncertain item: the item is resolved, the note counted in the
// cassette and credited by a follow-up top-up of the same account (Payload, the wire.Topup
// with follows_topup_id), with its own top-up seq, outbox entry and receipt number.
type FollowUpCreditEvent struct {
	AmountMinor     int64           `json:"amount_minor"`
	Detail          string          `json:"detail"`
	FollowsTopupSeq uint64          `json:"follows_topup_seq"`
	IntentID        uint64          `json:"intent_id"`
	Note            Note            `json:"note"`
	Payload         json.RawMessage `json:"payload"`
	ReceiptNo       uint64          `json:"receipt_no"`
	SessionID       uint64          `json:"session_id"`
	TopupID         string          `json:"topup_id"`
	TopupSeq        uint64          `json:"topup_seq"`
	UncertainID     uint64          `json:"uncertain_id"`
}

func (JournalCreatedEvent) EventType() string   { return EvJournalCreated }
func (BootEvent) EventType() string             { return EvBoot }
func (DeviceEvent) EventType() string           { return EvDevice }
func (SessionOpenedEvent) EventType() string    { return EvSessionOpened }
func (StackIntentEvent) EventType() string      { return EvStackIntent }
func (NoteCreditedEvent) EventType() string     { return EvNoteCredited }
func (NoteStackedEvent) EventType() string      { return EvNoteStacked }
func (NoteRefusedEvent) EventType() string      { return EvNoteRefused }
func (CreditReReportedEvent) EventType() string { return EvCreditReReported }
func (UnexpectedCreditEvent) EventType() string { return EvUnexpectedCredit }
func (UncertainEvent) EventType() string        { return EvUncertain }
func (IntentResolvedEvent) EventType() string   { return EvIntentResolved }
func (DeviceCounterEvent) EventType() string    { return EvDeviceCounter }
func (SessionClosedEvent) EventType() string    { return EvSessionClosed }
func (SessionCancelledEvent) EventType() string { return EvSessionCancelled }
func (PrintStartedEvent) EventType() string     { return EvPrintStarted }
func (PrintedEvent) EventType() string          { return EvPrinted }
func (PrintFailedEvent) EventType() string      { return EvPrintFailed }
func (CutsReadEvent) EventType() string         { return EvCutsRead }
func (TopupAckedEvent) EventType() string       { return EvTopupAcked }
func (TopupConflictEvent) EventType() string    { return EvTopupConflict }
func (PulseEvent) EventType() string            { return EvPulse }
func (CreditedDirectEvent) EventType() string   { return EvCreditedDirect }
func (FollowUpCreditEvent) EventType() string   { return EvFollowUpCredit }
func (PulseLineEvent) EventType() string        { return EvPulseLine }

// newEvent returns a zero payload of an event type, nil for types with no fixed schema
// (alarms carry their producer's condition) or unknown to this version.
func newEvent(typ string) Event {
	switch typ {
	case EvJournalCreated:
		return &JournalCreatedEvent{}
	case EvBoot:
		return &BootEvent{}
	case EvDevice:
		return &DeviceEvent{}
	case EvSessionOpened:
		return &SessionOpenedEvent{}
	case EvStackIntent:
		return &StackIntentEvent{}
	case EvNoteCredited:
		return &NoteCreditedEvent{}
	case EvNoteStacked:
		return &NoteStackedEvent{}
	case EvNoteRefused:
		return &NoteRefusedEvent{}
	case EvCreditReReported:
		return &CreditReReportedEvent{}
	case EvUnexpectedCredit:
		return &UnexpectedCreditEvent{}
	case EvUncertain:
		return &UncertainEvent{}
	case EvIntentResolved:
		return &IntentResolvedEvent{}
	case EvDeviceCounter:
		return &DeviceCounterEvent{}
	case EvSessionClosed:
		return &SessionClosedEvent{}
	case EvSessionCancelled:
		return &SessionCancelledEvent{}
	case EvPrintStarted:
		return &PrintStartedEvent{}
	case EvPrinted:
		return &PrintedEvent{}
	case EvPrintFailed:
		return &PrintFailedEvent{}
	case EvCutsRead:
		return &CutsReadEvent{}
	case EvTopupAcked:
		return &TopupAckedEvent{}
	case EvTopupConflict:
		return &TopupConflictEvent{}
	case EvPulse:
		return &PulseEvent{}
	case EvCreditedDirect:
		return &CreditedDirectEvent{}
	case EvFollowUpCredit:
		return &FollowUpCreditEvent{}
	case EvPulseLine:
		return &PulseLineEvent{}
	}
	if ev := newCollectionEvent(typ); ev != nil {
		return ev
	}
	if ev := newServiceEvent(typ); ev != nil {
		return ev
	}
	return newCommandEvent(typ)
}

// Payload decodes the event's data into its typed payload (a pointer to one of the *Event
// structs above). Events with no fixed schema (alarms) and types unknown to this version
// return nil and no error.
func (r Record) Payload() (Event, error) {
	ev := newEvent(r.Type)
	if ev == nil {
		return nil, nil
	}
	if err := json.Unmarshal(r.Data, ev); err != nil {
		return nil, fmt.Errorf("journal: event %d (%s): %w", r.Seq, r.Type, err)
	}
	return ev, nil
}

// Record appends an informative event (alarm, device event, boot) to the chain. data is the
// payload: BootEvent for EvBoot, DeviceEvent for EvDevice (or anything that marshals to the
// same JSON); an alarm carries its producer's condition as it marshals.
func (j *Journal) Record(typ string, data any) error {
	switch typ {
	case EvAlarm, EvDevice, EvBoot:
	default:
		return fmt.Errorf("journal: %s is not an informative event type", typ)
	}
	if ev := newEvent(typ); ev != nil {
		// The payload must read back as its kind's struct (Record.Payload).
		b, err := json.Marshal(data)
		if err != nil {
			return fmt.Errorf("journal: encode %s: %w", typ, err)
		}
		if err := json.Unmarshal(b, ev); err != nil {
			return fmt.Errorf("journal: %s payload does not match its schema: %w", typ, err)
		}
	}
	return j.update(func(w *writer) error {
		_, err := w.appendJSON(typ, data)
		return err
	})
}
