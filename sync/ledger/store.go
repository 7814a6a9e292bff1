package ledger

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/kioskd/kioskd/sync/wire"
)

// Store is the ledger's durable state. Every method is one transaction, and ApplyTopup is the
// only way money moves. Implementations must be safe for concurrent use: several Ledger
// instances (and several handler workers) share one Store.
//
// The contract every implementation keeps (TestStoreProperties and the other store tests
// check it for BoltStore and PGStore alike):
//   - a topup_id is credited at most once, forever: the first ApplyTopup credits it, a later
//     one with the same ContentHash is a duplicate, with another hash a conflict, and neither
//     changes a balance;
//   - a credit, the account's balance, the per-account top-up list, the suspense records for
//     its uncertain items, the kiosk's watermark and the day's total commit together or not
//     at all;
//   - an error means nothing was credited.
//
// PGStore does the same with a UNIQUE key on topup_id: INSERT the top-up ... ON CONFLICT
// (topup_id) DO NOTHING, and when no row was inserted, compare content hashes to answer
// duplicate or conflict; all in one transaction under the kiosk epoch's row lock (see
// PGStore.apply for why READ COMMITTED with that lock keeps the invariants).
type Store interface {
	// ApplyTopup credits t once. t must pass t.Validate; an invalid top-up is refused with an
	// error wrapping ErrInvalid.
	ApplyTopup(t wire.Topup) (Result, error)
	// Topup returns the stored top-up; ErrNotFound if it was never credited.
	Topup(topupID string) (TopupRecord, error)
	// Account returns balances and recent top-ups; ErrNotFound for an account never credited.
	Account(account string) (AccountInfo, error)
	// DailyCredited returns what was credited to account on day (UTC date, "2006-01-02") per
	// currency; an empty map when nothing was.
	DailyCredited(account, day string) (map[string]int64, error)
	// Watermark returns the highest seq such that the ledger holds every top-up 1..seq of the
	// kiosk's journal epoch (0 when it holds none, or not seq 1).
	Watermark(kioskID string, epoch uint64) (uint64, error)
	// Kiosks returns every kiosk that ever sent a top-up, with a watermark per epoch.
	Kiosks() ([]KioskInfo, error)
	// Suspense returns the uncertain items, open and decided.
	Suspense() ([]SuspenseRecord, error)

	// Apply is ApplyTopup under the ledger's policy (DESIGN.md §11): c carries the checks the
	// Ledger already made; Apply adds those that need stored state (QR nonce used once,
	// journal epoch known, the kiosk's daily cash-in) in the same transaction. A top-up that
	// fails a check is stored as held (Result.Status wire.AckHeld, Result.Reason), never
	// credited and never dropped; a held topup_id delivered again is answered held again
	// (or conflict, with other content).
	Apply(t wire.Topup, c Checks) (Result, error)
	// Held returns held top-ups, all of them or those with the given status (HeldOpen,
	// HeldReleased, HeldRejected).
	Held(status string) ([]HeldRecord, error)
	// HeldTopup returns one held top-up; ErrNotFound if the id was never held.
	HeldTopup(topupID string) (HeldRecord, error)
	// DecideHeld releases (credits, whatever the reason it was held) or rejects a held
	// top-up, recording who decided. ErrDecided if it was decided before.
	DecideHeld(topupID string, d Decision) (HeldRecord, error)
	// DecideSuspense releases (credits the item's value to the top-up's account) or rejects
	// a suspense record. ErrDecided if it was decided before; ErrNotFound for no such ref.
	DecideSuspense(ref string, d Decision) (SuspenseRecord, error)
	// QRNonceOwner returns the topup_id that used a wallet code's nonce ("" when none).
	QRNonceOwner(nonce string) (string, error)
	// Alarms returns the alarms the ledger raised for operations (OpsAlarm), oldest first.
	Alarms() ([]OpsAlarm, error)
	// Close releases the store.
	Close() error
}

// Store errors.
var (
	// ErrNotFound: no such top-up or account.
	ErrNotFound = errors.New("ledger: not found")
	// ErrInvalid: ApplyTopup was given a top-up that fails wire validation.
	ErrInvalid = errors.New("ledger: invalid top-up")
	// ErrOverflow: a credit would overflow a balance; nothing was credited.
	ErrOverflow = errors.New("ledger: balance overflow")
	// ErrDecided: a held top-up or suspense record was released or rejected before.
	ErrDecided = errors.New("ledger: already decided")
	// ErrDecision: a decision without an operator or with an unknown action.
	ErrDecision = errors.New("ledger: bad decision")
)

// Checks are what the Ledger decided about a top-up before the store sees it.
type Checks struct {
	// Hold is the first stateless check that failed ("" when all passed): the top-up is held
	// with this reason.
	Hold string
	// QRNonce identifies the verified wallet code ("" when the proof did not verify): one
	// top-up per code, forever.
	QRNonce string
	// QRSharedWith is a topup_id that may have used the same code before (a follow-up
	// top-up of the same session); empty for none.
	QRSharedWith string
	// Day is the UTC date ("2006-01-02") the top-up counts for in the kiosk's daily cash-in.
	Day string
	// KioskDailyNotes and KioskDailyMinor bound the kiosk's cash-in on Day (<= 0: no bound).
	KioskDailyNotes int64
	KioskDailyMinor int64
	// StrictEpochs holds a top-up of a journal epoch not yet known for the kiosk.
	StrictEpochs bool
}

// Held statuses.
const (
	HeldOpen     = "held"
	HeldReleased = "released"
	HeldRejected = "rejected"
)

// Decision actions.
const (
	ActionRelease = "release"
	ActionReject  = "reject"
)

// Decision is an operator's release or rejection of a held top-up or suspense record.
type Decision struct {
	Action   string    `json:"action"`
	Operator string    `json:"operator"`
	Note     string    `json:"note,omitempty"`
	At       time.Time `json:"at"`
	// CollectionID names the cash collection whose count is the evidence for a decision on
	// a suspense record; the record must be one of its items.
	CollectionID string `json:"collection_id,omitempty"`
	// Account and ValueMinor complete a suspense record that lacks them (an item outside
	// any session, or of unknown value) for a release; for a record that has them they must
	// agree or stay empty.
	Account    string `json:"account,omitempty"`
	ValueMinor int64  `json:"value_minor,omitempty"`
}

func (d Decision) check() error {
	if d.Operator == "" || (d.Action != ActionRelease && d.Action != ActionReject) {
		return fmt.Errorf("%w: want an operator and action release or reject", ErrDecision)
	}
	return nil
}

// HeldRecord is a top-up the ledger stored without crediting it.
type HeldRecord struct {
	TopupID     string    `json:"topup_id"`
	KioskID     string    `json:"kiosk_id"`
	Epoch       Epoch     `json:"epoch"`
	Seq         uint64    `json:"seq"`
	Account     string    `json:"account"`
	Currency    string    `json:"currency"`
	AmountMinor int64     `json:"amount_minor"`
	Reason      string    `json:"reason"`
	Status      string    `json:"status"`
	ContentHash string    `json:"content_hash"`
	QRNonce     string    `json:"qr_nonce,omitempty"`
	HeldAt      time.Time `json:"held_at"`
	// Decision is set once operations released or rejected it; LedgerRef once released.
	Decision  *Decision  `json:"decision,omitempty"`
	LedgerRef string     `json:"ledger_ref,omitempty"`
	Topup     wire.Topup `json:"topup"`
}

// OpsAlarm is something the ledger noticed that operations must look at.
type OpsAlarm struct {
	Ref     string    `json:"ref"`
	Kind    string    `json:"kind"`
	KioskID string    `json:"kiosk_id"`
	TopupID string    `json:"topup_id,omitempty"`
	Details string    `json:"details,omitempty"`
	At      time.Time `json:"at"`
}

// Ops alarm kinds.
const (
	// AlarmNewEpoch: a top-up names a journal epoch the ledger had not seen for the kiosk (a
	// new kiosk, a replaced SD card, a restored backup, or a forged journal).
	AlarmNewEpoch = "new_journal_epoch"
)

// Result is what ApplyTopup did.
type Result struct {
	// Status is wire.AckCredited, wire.AckDuplicate or wire.AckConflict.
	Status  string `json:"status"`
	TopupID string `json:"topup_id"`
	// LedgerRef is the stable reference assigned at the first credit (for a duplicate or a
	// conflict: the original's).
	LedgerRef string `json:"ledger_ref"`
	// Account, Currency and AmountMinor are the credited (original) top-up's.
	Account     string `json:"account"`
	Currency    string `json:"currency"`
	AmountMinor int64  `json:"amount_minor"`
	// Balance is the account's balance in Currency after the operation.
	Balance int64 `json:"balance_minor"`
	// Watermark is the kiosk's watermark for the top-up's journal epoch after the operation.
	Watermark uint64 `json:"watermark"`
	// Suspense is the number of uncertain items recorded (at first credit).
	Suspense int `json:"suspense"`
	// Reason is why a top-up is held (Status wire.AckHeld).
	Reason string `json:"reason,omitempty"`
	// NewEpoch: this top-up was the first of a journal epoch for its kiosk (an OpsAlarm was
	// recorded).
	NewEpoch bool `json:"new_epoch,omitempty"`
}

// Epoch is a journal epoch; it prints as 16 hex digits, as inside a topup_id.
type Epoch uint64

// String returns the 16-hex-digit form.
func (e Epoch) String() string { return fmt.Sprintf("%016x", uint64(e)) }

// MarshalText writes the 16-hex-digit form.
func (e Epoch) MarshalText() ([]byte, error) { return []byte(e.String()), nil }

// UnmarshalText reads the 16-hex-digit form.
func (e *Epoch) UnmarshalText(b []byte) error {
	v, err := strconv.ParseUint(string(b), 16, 64)
	if err != nil || len(b) != 16 {
		return fmt.Errorf("ledger: epoch %q: want 16 hex digits", b)
	}
	*e = Epoch(v)
	return nil
}

// TopupRecord is a credited top-up as the ledger keeps it.
type TopupRecord struct {
	TopupID     string    `json:"topup_id"`
	LedgerRef   string    `json:"ledger_ref"`
	ContentHash string    `json:"content_hash"`
	KioskID     string    `json:"kiosk_id"`
	Epoch       Epoch     `json:"epoch"`
	Seq         uint64    `json:"seq"`
	Account     string    `json:"account"`
	Currency    string    `json:"currency"`
	AmountMinor int64     `json:"amount_minor"`
	Outcome     string    `json:"outcome"`
	ReceiptNo   uint64    `json:"receipt_no"`
	CreditedAt  time.Time `json:"credited_at"`
	// Conflicts counts later deliveries of this topup_id with different content.
	Conflicts int `json:"conflicts"`
	// Topup is the payload as first credited.
	Topup wire.Topup `json:"topup"`
}

// SuspenseRecord is an uncertain item: a note whose fate the kiosk could not establish.
// It is never credited; operations settle it against the cassette count.
type SuspenseRecord struct {
	Ref        string    `json:"ref"`
	TopupID    string    `json:"topup_id"`
	KioskID    string    `json:"kiosk_id"`
	Account    string    `json:"account"`
	Currency   string    `json:"currency"`
	ValueMinor int64     `json:"value_minor"`
	Reason     string    `json:"reason"`
	At         time.Time `json:"at"`
	// Status is "" while open, then HeldReleased or HeldRejected; Decision says who decided,
	// and CreditRef names the credit a release made.
	Status    string    `json:"status,omitempty"`
	Decision  *Decision `json:"decision,omitempty"`
	CreditRef string    `json:"credit_ref,omitempty"`
	// ResolvedBy is the follow-up top-up that credited this item's note (wire.Topup
	// FollowsTopupID); a resolved record is no longer waiting to be settled.
	ResolvedBy string    `json:"resolved_by,omitempty"`
	ResolvedAt time.Time `json:"resolved_at,omitzero"`
	// CollectionID is the cash collection whose record lists this item: its count is the
	// evidence operations settle it on.
	CollectionID string `json:"collection_id,omitempty"`
}

// AccountInfo is an account's balances and top-ups.
type AccountInfo struct {
	Account  string           `json:"account"`
	OpenedAt time.Time        `json:"opened_at"`
	Balances map[string]int64 `json:"balances"`
	// TopupCount is the number of top-ups ever credited; Topups holds the newest
	// MaxAccountTopups of them, newest first.
	TopupCount int           `json:"topup_count"`
	Topups     []TopupRecord `json:"topups"`
}

// MaxAccountTopups bounds AccountInfo.Topups.
const MaxAccountTopups = 200

// KioskInfo is a kiosk's watermarks.
type KioskInfo struct {
	KioskID string      `json:"kiosk_id"`
	Epochs  []EpochInfo `json:"epochs"`
}

// EpochInfo is the ledger's view of one journal of a kiosk.
type EpochInfo struct {
	Epoch Epoch `json:"epoch"`
	// Watermark is the highest contiguous seq held (seqs start at 1).
	Watermark uint64 `json:"watermark"`
	// Above are the seqs held beyond a gap; the watermark moves when the gap fills.
	Above        []uint64  `json:"above,omitempty"`
	Topups       uint64    `json:"topups"`
	LastCreditAt time.Time `json:"last_credit_at"`
}
