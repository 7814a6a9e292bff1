package receipts

import (
	"errors"
	"fmt"
	"time"

	"github.com/kioskd/kioskd/kiosk/i18n"
)

// Status is what the customer is told about the money.
type Status string

// Statuses.
const (
	StatusCredited    Status = "credited"     // the ledger acknowledged the top-up
	StatusPending     Status = "pending"      // journaled and queued: "will be credited"
	StatusUnderReview Status = "under_review" // something is uncertain and a person will settle it
)

// Outcome says how the cash session ended (same words as the up/topup payload).
type Outcome string

// Outcomes.
const (
	OutcomeComplete    Outcome = "complete"
	OutcomeInterrupted Outcome = "interrupted" // closed at start-up after a crash or power cut
)

// Lang selects the label language.
type Lang string

// Languages. LangZH prints Simplified Chinese labels with English subtitles; on a printer
// without a Chinese font it falls back to English labels.
const (
	LangEN Lang = "en"
	LangZH Lang = "zh"
)

// ParseLang maps a configured language tag to a receipt language: any Chinese tag ("zh",
// "zh-CN", "zh_Hans") is LangZH, anything else LangEN (the catalogue's kiosk/i18n.ParseLang).
func ParseLang(tag string) Lang {
	if i18n.ParseLang(tag) == i18n.ZH {
		return LangZH
	}
	return LangEN
}

// NoteLine is a count of notes of one value.
type NoteLine struct {
	ValueMinor int64
	Count      int64
}

// UncertainItem is a note whose fate is unknown (kiosk/journal's money invariants). It is shown as
// "under review" and is never part of Total.
type UncertainItem struct {
	ValueMinor int64
	Reason     string
}

// Receipt is everything printed on one receipt. The caller fills it from the journal's receipt
// record; rendering never consults a clock or the environment.
type Receipt struct {
	KioskID  string
	Location string // free text, may be Chinese
	// LocationLatin, if set, replaces Location on a printer that cannot print it (no Chinese
	// font); otherwise the unprintable characters of Location become '?', and a Location that
	// is mostly unprintable is left out.
	LocationLatin string
	Time          time.Time      // when the session closed
	TZ            *time.Location // zone Time is shown in; nil means UTC (never the host's zone)
	Account       string         // already masked by the caller, e.g. "****5678"
	Currency      string         // ISO 4217
	Notes         []NoteLine
	Total         int64 // minor units; must equal the sum of Notes
	TopupID       string
	ReceiptNo     uint64
	Status        Status
	Outcome       Outcome
	Uncertain     []UncertainItem
	Hotline       string
	Copy          bool // a reprint: says COPY prominently; an original never does
	Lang          Lang
	// FollowsReceiptNo, when set, is the receipt this one follows: a follow-up top-up of a
	// note whose credit the acceptor reported after that receipt's session had closed.
	FollowsReceiptNo uint64
}

// Errors returned by Validate (wrapped, test with errors.Is).
var (
	ErrInvalid       = errors.New("receipts: invalid receipt")
	ErrTotalMismatch = errors.New("receipts: total differs from the sum of the notes")
)

// maxNoteValue bounds value*count so sums cannot overflow int64.
const maxNoteValue = 1 << 50

// Validate checks what must hold before a receipt goes to paper: printing a wrong total or an
// unreadable reference to a customer is worse than printing nothing and raising an alarm.
func (r *Receipt) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
	}
	if r.KioskID == "" {
		return bad("kiosk id empty")
	}
	if !isISOCode(r.Currency) {
		return bad("currency %q is not an ISO 4217 code", r.Currency)
	}
	if r.TopupID == "" || len(r.TopupID) > 200 || !isPrintableASCII(r.TopupID) {
		return bad("topup_id %q must be 1..200 printable ASCII characters", r.TopupID)
	}
	switch r.Status {
	case StatusCredited, StatusPending, StatusUnderReview:
	default:
		return bad("status %q", r.Status)
	}
	switch r.Outcome {
	case OutcomeComplete, OutcomeInterrupted:
	default:
		return bad("outcome %q", r.Outcome)
	}
	switch r.Lang {
	case "", LangEN, LangZH:
	default:
		return bad("language %q", r.Lang)
	}
	var sum int64
	for i, n := range r.Notes {
		if n.ValueMinor <= 0 || n.ValueMinor > maxNoteValue || n.Count <= 0 || n.Count > maxNoteValue/n.ValueMinor {
			return bad("note line %d: value %d count %d", i, n.ValueMinor, n.Count)
		}
		sum += n.ValueMinor * n.Count
		if sum > maxNoteValue {
			return bad("notes sum too large")
		}
	}
	if sum != r.Total {
		return fmt.Errorf("%w: notes sum to %d, total is %d", ErrTotalMismatch, sum, r.Total)
	}
	for i, u := range r.Uncertain {
		if u.ValueMinor < 0 || u.ValueMinor > maxNoteValue {
			return bad("uncertain item %d: value %d", i, u.ValueMinor)
		}
	}
	return nil
}

func isISOCode(s string) bool {
	if len(s) != 3 {
		return false
	}
	for i := 0; i < 3; i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
