package wire

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strconv"
	"time"
)

// Cash collection topics (sync/CONTRACT.md §5.6).
const (
	// UpCollection carries a cash collection record (Collection), QoS 1, from the journal's
	// outbox like a top-up: republished with the same bytes until the ledger acks it.
	UpCollection = "up/collection"
	// DownCollectionAck is the ledger's signed CollectionAck.
	DownCollectionAck = "down/collection_ack"
)

// CollectionID builds the idempotency key of a cash collection:
// <kiosk_id>-<journal_epoch as 16 hex>-C<no>, no counting the collections of one journal
// from 1. The "C" keeps it apart from every topup_id.
func CollectionID(kioskID string, epoch uint64, no uint64) string {
	return fmt.Sprintf("%s-%016x-C%d", kioskID, epoch, no)
}

var collectionIDRe = regexp.MustCompile(`^([A-Za-z0-9_-]{1,64})-([0-9a-f]{16})-C([1-9][0-9]{0,18})$`)

// ParseCollectionID splits a collection id into its parts.
func ParseCollectionID(id string) (kioskID string, epoch uint64, no uint64, err error) {
	m := collectionIDRe.FindStringSubmatch(id)
	if m == nil {
		return "", 0, 0, fmt.Errorf("%w: collection_id %q", ErrInvalid, id)
	}
	epoch, err = strconv.ParseUint(m[2], 16, 64)
	if err == nil {
		no, err = strconv.ParseUint(m[3], 10, 64)
	}
	if err != nil {
		return "", 0, 0, fmt.Errorf("%w: collection_id %q", ErrInvalid, id)
	}
	return m[1], epoch, no, nil
}

// NoteDiff is one denomination of a collection: what the journal expected in the cassette,
// what the collector counted, and the difference (counted - expected: negative is a
// shortage, positive a surplus).
type NoteDiff struct {
	ValueMinor      int64 `json:"value_minor"`
	Expected        int64 `json:"expected"`
	Counted         int64 `json:"counted"`
	Difference      int64 `json:"difference"`
	DifferenceMinor int64 `json:"difference_minor"`
}

// UnitCounter is the acceptor's own stacked counter, where the unit has one: To read at this
// collection's cassette-out, From at the previous collection's. Stacked (To - From, the notes
// the unit counted into this cassette) is set only when both readings are of the same unit.
type UnitCounter struct {
	Unit    string `json:"unit,omitempty"`
	From    uint64 `json:"from,omitempty"`
	To      uint64 `json:"to"`
	Stacked *int64 `json:"stacked,omitempty"`
}

// CollectionItem is an uncertain item of the collection's period: a note whose fate the
// kiosk could not establish. TopupID names the top-up it belongs to (the ledger holds a
// suspense record for it); empty for an item outside any session, which the ledger learns
// of only from this record.
type CollectionItem struct {
	ItemID     uint64 `json:"item_id"`
	TopupID    string `json:"topup_id,omitempty"`
	ValueMinor int64  `json:"value_minor"`
	Reason     string `json:"reason"`
}

// Collection is the up/collection payload: one cash collection, evidence for operations
// (it credits nothing).
type Collection struct {
	V            int    `json:"v"`
	CollectionID string `json:"collection_id"`
	KioskID      string `json:"kiosk_id"`
	No           uint64 `json:"no"`
	// PreviousID is the collection the period starts after ("" for the journal's first).
	PreviousID string `json:"previous_collection_id,omitempty"`
	// The period: journal events FromSeq..ToSeq, informative times PeriodFrom..PeriodTo.
	FromSeq    uint64    `json:"from_seq"`
	ToSeq      uint64    `json:"to_seq"`
	PeriodFrom time.Time `json:"period_from,omitzero"`
	PeriodTo   time.Time `json:"period_to"`
	CassetteID string    `json:"cassette_id"`
	// CassetteOutBy is "device" (the unit reported the cassette removed) or "collector".
	CassetteOutBy   string           `json:"cassette_out_by"`
	Currency        string           `json:"currency"`
	Lines           []NoteDiff       `json:"lines"`
	ExpectedNotes   int64            `json:"expected_notes"`
	ExpectedMinor   int64            `json:"expected_minor"`
	CountedNotes    int64            `json:"counted_notes"`
	CountedMinor    int64            `json:"counted_minor"`
	DifferenceMinor int64            `json:"difference_minor"`
	UnitCounter     *UnitCounter     `json:"unit_counter,omitempty"`
	Uncertain       []CollectionItem `json:"uncertain"`
	Operator        string           `json:"operator,omitempty"`
	RecordedAt      time.Time        `json:"recorded_at"`
}

// Validate checks the record's own consistency: the id names the kiosk and number, each
// line's difference is counted - expected, and the totals are the sums of the lines.
func (c *Collection) Validate() error {
	if c.V != Version {
		return fmt.Errorf("%w: %d", ErrVersion, c.V)
	}
	if c.CollectionID == "" || c.KioskID == "" || c.No == 0 || c.Currency == "" || c.CassetteID == "" {
		return fmt.Errorf("%w: collection needs collection_id, kiosk_id, no, currency, cassette_id", ErrMissing)
	}
	kid, _, no, err := ParseCollectionID(c.CollectionID)
	if err != nil {
		return err
	}
	if kid != c.KioskID || no != c.No {
		return fmt.Errorf("%w: collection_id %q does not match kiosk_id %q / no %d", ErrInvalid, c.CollectionID, c.KioskID, c.No)
	}
	if c.PreviousID != "" {
		pk, _, pno, err := ParseCollectionID(c.PreviousID)
		if err != nil || pk != c.KioskID || pno >= c.No {
			return fmt.Errorf("%w: previous_collection_id %q", ErrInvalid, c.PreviousID)
		}
	}
	if !currencyRe.MatchString(c.Currency) {
		return fmt.Errorf("%w: currency %q", ErrInvalid, c.Currency)
	}
	if len(c.CassetteID) > 64 || len(c.Operator) > 64 {
		return fmt.Errorf("%w: cassette_id or operator too long", ErrInvalid)
	}
	if c.CassetteOutBy != "device" && c.CassetteOutBy != "collector" {
		return fmt.Errorf("%w: cassette_out_by %q", ErrInvalid, c.CassetteOutBy)
	}
	var en, em, cn, cm int64
	seen := map[int64]bool{}
	for _, l := range c.Lines {
		if l.ValueMinor <= 0 || l.ValueMinor > 1e12 || l.Expected < 0 || l.Counted < 0 || l.Expected > 1e6 || l.Counted > 1e6 || seen[l.ValueMinor] {
			return fmt.Errorf("%w: line %+v", ErrInvalid, l)
		}
		seen[l.ValueMinor] = true
		if l.Difference != l.Counted-l.Expected || l.DifferenceMinor != l.Difference*l.ValueMinor {
			return fmt.Errorf("%w: line %+v: difference is not counted - expected", ErrInvalid, l)
		}
		en += l.Expected
		em += l.Expected * l.ValueMinor
		cn += l.Counted
		cm += l.Counted * l.ValueMinor
	}
	if en != c.ExpectedNotes || em != c.ExpectedMinor || cn != c.CountedNotes || cm != c.CountedMinor || c.DifferenceMinor != cm-em {
		return fmt.Errorf("%w: totals are not the sums of the lines", ErrInvalid)
	}
	for _, u := range c.Uncertain {
		if u.ValueMinor < 0 || u.Reason == "" || u.ItemID == 0 {
			return fmt.Errorf("%w: uncertain item %+v", ErrInvalid, u)
		}
		if u.TopupID != "" {
			if k, _, _, err := ParseTopupID(u.TopupID); err != nil || k != c.KioskID {
				return fmt.Errorf("%w: uncertain item topup_id %q", ErrInvalid, u.TopupID)
			}
		}
	}
	if c.RecordedAt.IsZero() || c.PeriodTo.IsZero() {
		return fmt.Errorf("%w: recorded_at/period_to", ErrMissing)
	}
	return nil
}

// ContentHash fingerprints what the record says about money and identity, so that the ledger
// tells a redelivery (same content) from a conflict (same collection_id, different record).
func (c *Collection) ContentHash() string {
	h := sha256.New()
	fmt.Fprintf(h, "%s|%s|%d|%s|%d|%d|%s|%s|", c.CollectionID, c.KioskID, c.No, c.PreviousID, c.FromSeq, c.ToSeq, c.CassetteID, c.Currency)
	for _, l := range c.Lines {
		fmt.Fprintf(h, "l%d:%d:%d|", l.ValueMinor, l.Expected, l.Counted)
	}
	for _, u := range c.Uncertain {
		fmt.Fprintf(h, "u%d:%s:%d:%s|", u.ItemID, u.TopupID, u.ValueMinor, u.Reason)
	}
	if u := c.UnitCounter; u != nil {
		fmt.Fprintf(h, "c%s:%d:%d|", u.Unit, u.From, u.To)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Collection ack statuses.
const (
	// CollectionStored: the ledger stored the record (first delivery).
	CollectionStored = "stored"
	// CollectionDuplicate: the ledger already held the same record.
	CollectionDuplicate = "duplicate"
	// CollectionConflict: the ledger holds another record under this collection_id; the
	// kiosk stops resending and alarms.
	CollectionConflict = "conflict"
)

// CollectionAck is the payload of a signed down/collection_ack.
type CollectionAck struct {
	V            int    `json:"v"`
	CollectionID string `json:"collection_id"`
	Status       string `json:"status"`
	LedgerRef    string `json:"ledger_ref,omitempty"`
}

// Validate checks the ack's fields.
func (a *CollectionAck) Validate() error {
	if a.V != Version {
		return fmt.Errorf("%w: %d", ErrVersion, a.V)
	}
	if _, _, _, err := ParseCollectionID(a.CollectionID); err != nil {
		return err
	}
	switch a.Status {
	case CollectionStored, CollectionDuplicate, CollectionConflict:
	default:
		return fmt.Errorf("%w: collection ack status %q", ErrInvalid, a.Status)
	}
	return nil
}
