package journal

import (
	"fmt"
)

// Event types. The names are part of the export format (kioskctl journal export).
const (
	EvJournalCreated    = "journal_created"
	EvBoot              = "boot"
	EvSessionOpened     = "session_opened"
	EvStackIntent       = "stack_intent"
	EvNoteCredited      = "note_credited"
	EvNoteRefused       = "note_refused"
	EvCreditReReported  = "credit_rereported"
	EvIntentResolved    = "intent_resolved"
	EvUncertain         = "uncertain_item"
	EvSessionClosed     = "session_closed"
	EvSessionCancelled  = "session_cancelled"
	EvPrintStarted      = "receipt_print_started"
	EvPrinted           = "receipt_printed"
	EvPrintFailed       = "receipt_print_failed"
	EvTopupAcked        = "topup_acked"
	EvTopupConflict     = "topup_conflict"
	EvAlarm             = "alarm"
	EvDevice            = "device_event"
	EvUnexpectedCredit  = "unexpected_credit"
	EvIntentUncertainty = "intent_uncertain"
)

// EvNoteStacked marks the last credited note as finished at the unit.
const EvNoteStacked = "note_stacked"

// Record appends an informative event (alarm, device event, boot) to the chain.
func (j *Journal) Record(typ string, data any) error {
	switch typ {
	case EvAlarm, EvDevice, EvBoot:
	default:
		return fmt.Errorf("journal: %s is not an informative event type", typ)
	}
	return j.update(func(w *writer) error {
		_, err := w.append(typ, data)
		return err
	})
}

// EvDeviceCounter records the acceptor's own stacked counter next to the journal's cassette
// count, as the baseline for recovery (StackedCountWitness).
const EvDeviceCounter = "device_counter"
