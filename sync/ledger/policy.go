package ledger

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/kioskd/kioskd/kiosk/qrpay"
	"github.com/kioskd/kioskd/sync/wire"
)

// Hold reasons: why a top-up was stored as held instead of credited (DESIGN.md §11). They
// travel in the held ack's reason and in the held record; operations decide on them.
const (
	HoldQRMissing        = "qr_missing"          // no wallet proof in the top-up
	HoldQRInvalid        = "qr_invalid"          // not a well-formed code, unknown wallet key, or bad signature
	HoldQRAccount        = "qr_account_mismatch" // the wallet signed another account
	HoldQRExpired        = "qr_expired_at_open"  // the session opened after the code expired (beyond the tolerance)
	HoldQRReused         = "qr_reused"           // the code's nonce already opened another top-up
	HoldOverMax          = "over_max_topup"
	HoldCurrency         = "currency_not_accepted"
	HoldDenomination     = "denomination_unknown"
	HoldKioskDailyAmount = "kiosk_daily_cash_in"
	HoldKioskDailyNotes  = "kiosk_daily_notes"
	HoldUnknownEpoch     = "unknown_epoch"
	// HoldFollowUpUnmatched: a follow-up top-up (follows_topup_id) whose notes are not all
	// open suspense records of the top-up it names, for the same account.
	HoldFollowUpUnmatched = "follow_up_unmatched"
)

// Authz denial reasons for the proof (the others are in ledger.go).
const (
	ReasonNoProof      = "proof_missing"
	ReasonBadProof     = "proof_invalid"
	ReasonProofExpired = "proof_expired"
	ReasonProofUsed    = "proof_used"
)

// DefaultDenominations are the banknotes the reference ledger accepts when the policy names
// none: CNY 1, 5, 10, 20, 50 and 100 yuan, in fen.
func DefaultDenominations() map[string][]int64 {
	return map[string][]int64{"CNY": {100, 500, 1000, 2000, 5000, 10000}}
}

// Policy is what every top-up is checked against (DESIGN.md §11). The zero value of a field
// takes the default noted; Fleet.Kiosks overrides fields for one kiosk.
type Policy struct {
	// MaxTopupMinor caps one top-up (default Limits.PerTopupMaxMinor).
	MaxTopupMinor int64 `json:"max_topup_minor,omitempty"`
	// Denominations lists, per currency, the note values (minor units) that exist; a note
	// of another value, or a currency not listed, holds the top-up (default
	// DefaultDenominations).
	Denominations map[string][]int64 `json:"denominations,omitempty"`
	// DailyNotes bounds the notes one kiosk may take in per day: what a cassette can
	// plausibly hold, with collections (default 2500; negative: no bound).
	DailyNotes int64 `json:"daily_notes,omitempty"`
	// DailyCashInMinor bounds the amount one kiosk may take in per day, per currency (0: no
	// bound beyond DailyNotes).
	DailyCashInMinor int64 `json:"daily_cash_in_minor,omitempty"`
	// StrictEpochs holds every top-up of a journal epoch the ledger has not seen for that
	// kiosk until operations release one (which makes the epoch known). Off, a new epoch
	// only raises an alarm.
	StrictEpochs bool `json:"strict_epochs,omitempty"`
	// QRTolerance is how far past the code's expiry a session may have opened by the
	// kiosk's clock, and how far past it an authz request may come (default 10 min).
	QRTolerance Duration `json:"qr_tolerance,omitempty"`
}

// Override changes some Policy fields for one kiosk; a nil field keeps the fleet's.
type Override struct {
	MaxTopupMinor    *int64             `json:"max_topup_minor,omitempty"`
	Denominations    map[string][]int64 `json:"denominations,omitempty"`
	DailyNotes       *int64             `json:"daily_notes,omitempty"`
	DailyCashInMinor *int64             `json:"daily_cash_in_minor,omitempty"`
	StrictEpochs     *bool              `json:"strict_epochs,omitempty"`
}

// Fleet is the policy of a fleet, with per-kiosk overrides.
type Fleet struct {
	Policy
	Kiosks map[string]Override `json:"kiosks,omitempty"`
}

// Duration is a time.Duration that reads and writes as "10m" in JSON.
type Duration time.Duration

// MarshalText writes the time.Duration form.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText reads the time.Duration form.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("ledger: duration %q: %w", b, err)
	}
	*d = Duration(v)
	return nil
}

// ParseFleet reads a Fleet from JSON, refusing unknown fields (a misspelt limit must not
// silently become no limit).
func ParseFleet(raw []byte) (Fleet, error) {
	var f Fleet
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return Fleet{}, fmt.Errorf("ledger: policy: %w", err)
	}
	return f, f.check()
}

func (f Fleet) check() error {
	if err := checkDenoms(f.Denominations); err != nil {
		return err
	}
	if f.MaxTopupMinor < 0 || f.DailyCashInMinor < 0 || f.QRTolerance < 0 {
		return fmt.Errorf("%w: negative policy value", ErrConfig)
	}
	for k, o := range f.Kiosks {
		if !wire.ValidKioskID(k) {
			return fmt.Errorf("%w: policy override for %q: not a kiosk id", ErrConfig, k)
		}
		if err := checkDenoms(o.Denominations); err != nil {
			return err
		}
		if (o.MaxTopupMinor != nil && *o.MaxTopupMinor < 0) || (o.DailyCashInMinor != nil && *o.DailyCashInMinor < 0) {
			return fmt.Errorf("%w: policy override for %q: negative value", ErrConfig, k)
		}
	}
	return nil
}

func checkDenoms(m map[string][]int64) error {
	for cur, vs := range m {
		if len(cur) != 3 || len(vs) == 0 {
			return fmt.Errorf("%w: denominations %q: want a currency code and at least one value", ErrConfig, cur)
		}
		for _, v := range vs {
			if v <= 0 {
				return fmt.Errorf("%w: denominations %q: value %d", ErrConfig, cur, v)
			}
		}
	}
	return nil
}

// effective is the policy for one kiosk, defaults applied.
func (f Fleet) effective(kiosk string, lim Limits) Policy {
	p := f.Policy
	if o, ok := f.Kiosks[kiosk]; ok {
		if o.MaxTopupMinor != nil {
			p.MaxTopupMinor = *o.MaxTopupMinor
		}
		if o.Denominations != nil {
			p.Denominations = o.Denominations
		}
		if o.DailyNotes != nil {
			p.DailyNotes = *o.DailyNotes
		}
		if o.DailyCashInMinor != nil {
			p.DailyCashInMinor = *o.DailyCashInMinor
		}
		if o.StrictEpochs != nil {
			p.StrictEpochs = *o.StrictEpochs
		}
	}
	if p.MaxTopupMinor == 0 {
		p.MaxTopupMinor = lim.PerTopupMaxMinor
	}
	if p.Denominations == nil {
		p.Denominations = DefaultDenominations()
	}
	if p.DailyNotes == 0 {
		p.DailyNotes = 2500
	}
	if p.QRTolerance == 0 {
		p.QRTolerance = Duration(10 * time.Minute)
	}
	return p
}

// proof is a verified wallet code.
type proof struct {
	Nonce   string
	Expires time.Time
}

// verifyQR checks the wallet's signature on code and that it names account. It does not
// check expiry: the caller knows at which time the code had to be valid.
func verifyQR(keys map[string]ed25519.PublicKey, code, account string) (proof, string) {
	if code == "" {
		return proof{}, HoldQRMissing
	}
	// Verify at the beginning of time: the expiry is the caller's check.
	p, err := qrpay.Keys(keys).Verify(code, time.Unix(0, 0))
	if err != nil {
		return proof{}, HoldQRInvalid
	}
	if p.Account != account {
		return proof{}, HoldQRAccount
	}
	return proof{Nonce: p.KID + "." + p.Nonce, Expires: p.Expires}, ""
}

// checkTopup runs the checks that need no stored state, returning the first failure
// ("" when none) and the verified proof (zero when the proof failed).
func (p Policy) checkTopup(keys map[string]ed25519.PublicKey, t *wire.Topup) (proof, string) {
	pr, reason := verifyQR(keys, t.QR, t.Account)
	if reason != "" {
		return proof{}, reason
	}
	// Offline top-ups arrive days later: what matters is that the session opened while
	// the code was valid, by the kiosk's clock give or take the tolerance.
	if !t.OpenedAt.Before(pr.Expires.Add(time.Duration(p.QRTolerance))) {
		return pr, HoldQRExpired
	}
	if t.AmountMinor > p.MaxTopupMinor {
		return pr, HoldOverMax
	}
	denoms, ok := p.Denominations[t.Currency]
	if !ok {
		return pr, HoldCurrency
	}
	for _, n := range t.Notes {
		if !slices.Contains(denoms, n.ValueMinor) {
			return pr, HoldDenomination
		}
	}
	// Uncertain items are suspense, never credit, but a value that is no note is a forgery.
	for _, u := range t.Uncertain {
		if u.ValueMinor != 0 && !slices.Contains(denoms, u.ValueMinor) {
			return pr, HoldDenomination
		}
	}
	return pr, ""
}
