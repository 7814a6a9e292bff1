package wire

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Version is the payload version this code speaks ("v" field).
const Version = 1

// MaxPayload bounds every payload we parse. A top-up with a few hundred note lines is far
// below it; anything bigger is an attack or a bug.
const MaxPayload = 64 << 10

// Errors.
var (
	ErrTooLarge    = errors.New("wire: payload too large")
	ErrVersion     = errors.New("wire: unsupported payload version")
	ErrMissing     = errors.New("wire: required field missing")
	ErrInvalid     = errors.New("wire: invalid field")
	ErrTopic       = errors.New("wire: not a kiosk topic")
	ErrBadTopupID  = errors.New("wire: malformed topup_id")
	ErrKioskDiffer = errors.New("wire: kiosk_id does not match the topic")
)

var kioskIDRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidKioskID reports whether id can be a kiosk id: it appears in topics, client ids,
// certificate CNs and topup ids, so it is restricted to letters, digits, '_' and '-' (no MQTT
// wildcard or separator characters). A topup_id is split from the right, so '-' is safe.
func ValidKioskID(id string) bool { return kioskIDRe.MatchString(id) }

// Topic suffixes (sync/CONTRACT.md §4).
const (
	UpStatus    = "up/status"
	UpHeartbeat = "up/heartbeat"
	UpAlarm     = "up/alarm"
	UpTopup     = "up/topup"
	UpAuthz     = "up/authz"
	UpCmdResult = "up/cmd_result"
	DownAck     = "down/ack"
	DownAuthz   = "down/authz"
	DownCmd     = "down/cmd"
)

// Topic returns kiosk/{id}/{suffix}.
func Topic(kioskID, suffix string) string { return "kiosk/" + kioskID + "/" + suffix }

// LedgerTopupShare is the shared subscription the reference ledger uses so that several
// ledger instances split the top-up load.
const LedgerTopupShare = "$share/ledger/kiosk/+/up/topup"

// ParseTopic splits kiosk/{id}/{dir}/{name} into the kiosk id and the suffix "dir/name".
func ParseTopic(topic string) (kioskID, suffix string, err error) {
	parts := strings.Split(topic, "/")
	if len(parts) != 4 || parts[0] != "kiosk" || !ValidKioskID(parts[1]) || (parts[2] != "up" && parts[2] != "down") {
		return "", "", fmt.Errorf("%w: %q", ErrTopic, topic)
	}
	return parts[1], parts[2] + "/" + parts[3], nil
}

// TopupID builds the idempotency key <kiosk_id>-<journal_epoch as 16 hex>-<seq>.
func TopupID(kioskID string, epoch uint64, seq uint64) string {
	return fmt.Sprintf("%s-%016x-%d", kioskID, epoch, seq)
}

// ParseTopupID splits a topup_id into its parts.
func ParseTopupID(id string) (kioskID string, epoch uint64, seq uint64, err error) {
	i := strings.LastIndexByte(id, '-')
	if i < 0 {
		return "", 0, 0, fmt.Errorf("%w: %q", ErrBadTopupID, id)
	}
	j := strings.LastIndexByte(id[:i], '-')
	if j < 0 {
		return "", 0, 0, fmt.Errorf("%w: %q", ErrBadTopupID, id)
	}
	kioskID, eh, sq := id[:j], id[j+1:i], id[i+1:]
	if !ValidKioskID(kioskID) || len(eh) != 16 {
		return "", 0, 0, fmt.Errorf("%w: %q", ErrBadTopupID, id)
	}
	epoch, err = strconv.ParseUint(eh, 16, 64)
	if err != nil {
		return "", 0, 0, fmt.Errorf("%w: %q", ErrBadTopupID, id)
	}
	if sq == "" || sq[0] == '0' || sq[0] == '+' {
		return "", 0, 0, fmt.Errorf("%w: %q", ErrBadTopupID, id)
	}
	seq, err = strconv.ParseUint(sq, 10, 64)
	if err != nil {
		return "", 0, 0, fmt.Errorf("%w: %q", ErrBadTopupID, id)
	}
	return kioskID, epoch, seq, nil
}

// NoteLine is a count of notes of one value.
type NoteLine struct {
	ValueMinor int64 `json:"value_minor"`
	Count      int64 `json:"count"`
}

// Uncertain is a note whose fate is unknown after a crash; it is a suspense record for the
// ledger, never a credit.
type Uncertain struct {
	ValueMinor int64  `json:"value_minor"`
	Reason     string `json:"reason"`
}

// Top-up outcomes.
const (
	OutcomeComplete    = "complete"
	OutcomeInterrupted = "interrupted"
)

// Topup is the up/topup payload.
type Topup struct {
	V           int         `json:"v"`
	TopupID     string      `json:"topup_id"`
	KioskID     string      `json:"kiosk_id"`
	Seq         uint64      `json:"seq"`
	Account     string      `json:"account"`
	Currency    string      `json:"currency"`
	AmountMinor int64       `json:"amount_minor"`
	Notes       []NoteLine  `json:"notes"`
	OpenedAt    time.Time   `json:"opened_at"`
	ClosedAt    time.Time   `json:"closed_at"`
	ReceiptNo   uint64      `json:"receipt_no"`
	Outcome     string      `json:"outcome"`
	Uncertain   []Uncertain `json:"uncertain"`
	// QR is the whole wallet-signed code (IMW1....) the session was opened with: the
	// customer's proof that the wallet named this account (DESIGN.md §6, §11). The ledger
	// verifies it and holds a top-up without a valid one; it is not checked here, so that a
	// top-up with a bad proof is still well-formed enough to be held and acked.
	QR string `json:"qr,omitempty"`
	// FollowsTopupID marks a follow-up top-up: it carries the note of an uncertain item of
	// that earlier top-up of the same kiosk, whose credit the unit reported after the session
	// had closed. The ledger credits it and closes the suspense record of that item.
	FollowsTopupID string `json:"follows_topup_id,omitempty"`
}

// maxAmount bounds a top-up far above any kiosk session, and far below int64 overflow.
const maxAmount = 1 << 50

var currencyRe = regexp.MustCompile(`^[A-Z]{3}$`)
var accountRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidAccount reports whether s is a wallet account id (sync/CONTRACT.md §10).
func ValidAccount(s string) bool { return accountRe.MatchString(s) }

// Validate checks the top-up's own consistency: the amount is the sum of the note lines, the
// topup_id names the kiosk and seq, and nothing is negative.
func (t *Topup) Validate() error {
	if t.V != Version {
		return fmt.Errorf("%w: %d", ErrVersion, t.V)
	}
	if t.TopupID == "" || t.KioskID == "" || t.Account == "" || t.Currency == "" || t.Outcome == "" || t.Seq == 0 || t.ReceiptNo == 0 {
		return fmt.Errorf("%w: topup needs topup_id, kiosk_id, seq, account, currency, outcome, receipt_no", ErrMissing)
	}
	kid, _, seq, err := ParseTopupID(t.TopupID)
	if err != nil {
		return err
	}
	if kid != t.KioskID || seq != t.Seq {
		return fmt.Errorf("%w: topup_id %q does not match kiosk_id %q / seq %d", ErrInvalid, t.TopupID, t.KioskID, t.Seq)
	}
	if !ValidAccount(t.Account) {
		return fmt.Errorf("%w: account", ErrInvalid)
	}
	if !currencyRe.MatchString(t.Currency) {
		return fmt.Errorf("%w: currency %q", ErrInvalid, t.Currency)
	}
	if t.Outcome != OutcomeComplete && t.Outcome != OutcomeInterrupted {
		return fmt.Errorf("%w: outcome %q", ErrInvalid, t.Outcome)
	}
	var sum int64
	for _, n := range t.Notes {
		if n.ValueMinor <= 0 || n.Count <= 0 || n.Count > 10000 || n.ValueMinor > 1e12 {
			return fmt.Errorf("%w: note line %+v", ErrInvalid, n)
		}
		sum += n.ValueMinor * n.Count
		if sum > maxAmount {
			return fmt.Errorf("%w: amount over %d", ErrInvalid, int64(maxAmount))
		}
	}
	if sum != t.AmountMinor || t.AmountMinor < 0 {
		return fmt.Errorf("%w: amount_minor %d is not the sum of the notes (%d)", ErrInvalid, t.AmountMinor, sum)
	}
	for _, u := range t.Uncertain {
		if u.ValueMinor < 0 || u.Reason == "" {
			return fmt.Errorf("%w: uncertain item %+v", ErrInvalid, u)
		}
	}
	if t.OpenedAt.IsZero() || t.ClosedAt.IsZero() {
		return fmt.Errorf("%w: opened_at/closed_at", ErrMissing)
	}
	if t.FollowsTopupID != "" {
		fk, fepoch, fseq, err := ParseTopupID(t.FollowsTopupID)
		if err != nil {
			return fmt.Errorf("%w: follows_topup_id: %v", ErrInvalid, err)
		}
		_, epoch, _, _ := ParseTopupID(t.TopupID)
		// A follow-up comes after the top-up it follows, from the same journal.
		if fk != t.KioskID || fepoch != epoch || fseq >= t.Seq {
			return fmt.Errorf("%w: follows_topup_id %q is not an earlier top-up of %s", ErrInvalid, t.FollowsTopupID, t.TopupID)
		}
	}
	return nil
}

// ContentHash is the fingerprint the ledger compares to tell a duplicate (same content) from
// a conflict (same topup_id, different money). It covers what decides money and identity,
// not delivery details: the times a kiosk prints may be rewritten by a clock correction.
func (t *Topup) ContentHash() string {
	h := sha256.New()
	fmt.Fprintf(h, "%s|%s|%d|%s|%s|%d|%d|%s|", t.TopupID, t.KioskID, t.Seq, t.Account, t.Currency, t.AmountMinor, t.ReceiptNo, t.Outcome)
	for _, n := range t.Notes {
		fmt.Fprintf(h, "n%d:%d|", n.ValueMinor, n.Count)
	}
	for _, u := range t.Uncertain {
		fmt.Fprintf(h, "u%d:%s|", u.ValueMinor, u.Reason)
	}
	// Only when present, so that a top-up stored before the field existed keeps its hash.
	// The proof decides which account may be credited, so a different qr is a conflict.
	if t.QR != "" {
		fmt.Fprintf(h, "q%s|", t.QR)
	}
	if t.FollowsTopupID != "" {
		// Only when set: the fingerprints of ordinary top-ups stay what they were.
		fmt.Fprintf(h, "f%s|", t.FollowsTopupID)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Ack statuses.
const (
	AckCredited   = "credited"
	AckDuplicate  = "duplicate"
	AckConflict   = "conflict"
	AckRetryLater = "retry_later"
	// AckHeld: the ledger stored the top-up durably but did not credit it, because a check
	// failed (Reason says which); operations release (credit) or reject it. The kiosk may
	// forget the entry: the ledger will not lose it (DESIGN.md §11).
	AckHeld = "held"
)

// Ack is the payload of a signed down/ack.
type Ack struct {
	V               int    `json:"v"`
	TopupID         string `json:"topup_id"`
	Status          string `json:"status"`
	AmountMinor     int64  `json:"amount_minor"`
	Currency        string `json:"currency"`
	LedgerRef       string `json:"ledger_ref"`
	AckedThroughSeq uint64 `json:"acked_through_seq"`
	// Reason is why a top-up is held (empty for the other statuses).
	Reason string `json:"reason,omitempty"`
}

// Validate checks the ack's required fields.
func (a *Ack) Validate() error {
	if a.V != Version {
		return fmt.Errorf("%w: %d", ErrVersion, a.V)
	}
	if a.TopupID == "" || a.Status == "" {
		return fmt.Errorf("%w: ack needs topup_id and status", ErrMissing)
	}
	switch a.Status {
	case AckCredited, AckDuplicate, AckConflict, AckRetryLater, AckHeld:
	default:
		return fmt.Errorf("%w: ack status %q", ErrInvalid, a.Status)
	}
	return nil
}

// AuthzRequest is the up/authz payload.
type AuthzRequest struct {
	V       int    `json:"v"`
	ReqID   string `json:"req_id"`
	Account string `json:"account"`
	QRNonce string `json:"qr_nonce"`
	// QR is the whole wallet-signed code, the proof that the customer showed this account's
	// code: the ledger denies a request without a valid one (DESIGN.md §11).
	QR string `json:"qr,omitempty"`
}

// Validate checks required fields.
func (r *AuthzRequest) Validate() error {
	if r.V != Version {
		return fmt.Errorf("%w: %d", ErrVersion, r.V)
	}
	if r.ReqID == "" || r.Account == "" {
		return fmt.Errorf("%w: authz needs req_id and account", ErrMissing)
	}
	if !ValidAccount(r.Account) || len(r.ReqID) > 64 {
		return fmt.Errorf("%w: authz request", ErrInvalid)
	}
	return nil
}

// Authz statuses.
const (
	AuthzOK     = "ok"
	AuthzDenied = "denied"
)

// AuthzResponse is the payload of a signed down/authz.
type AuthzResponse struct {
	V              int    `json:"v"`
	ReqID          string `json:"req_id"`
	Status         string `json:"status"`
	Reason         string `json:"reason,omitempty"`
	RemainingMinor int64  `json:"remaining_minor"`
	NameMasked     string `json:"name_masked,omitempty"`
	// Now is the ledger's time when it answered, signed with the rest: a kiosk whose own
	// clock it cannot trust (booted in 1970, not synchronised) checks the code's expiry
	// against it. Omitted by older ledgers; such a kiosk then refuses the code.
	Now time.Time `json:"now,omitzero"`
}

// Validate checks required fields.
func (r *AuthzResponse) Validate() error {
	if r.V != Version {
		return fmt.Errorf("%w: %d", ErrVersion, r.V)
	}
	if r.ReqID == "" || (r.Status != AuthzOK && r.Status != AuthzDenied) {
		return fmt.Errorf("%w: authz response needs req_id and status ok|denied", ErrMissing)
	}
	if r.RemainingMinor < 0 {
		return fmt.Errorf("%w: remaining_minor", ErrInvalid)
	}
	return nil
}

// Kiosk states published on up/status.
const (
	StateOnline       = "online"
	StateDegraded     = "degraded"
	StateOutOfService = "out_of_service"
	StateMaintenance  = "maintenance"
	StateOffline      = "offline"
)

// Status is the retained up/status payload (also the Last Will, with state "offline").
type Status struct {
	V             int       `json:"v"`
	State         string    `json:"state"`
	Version       string    `json:"version,omitempty"`
	ConfigVersion int       `json:"config_version,omitempty"`
	BootID        string    `json:"boot_id,omitempty"`
	Connection    uint64    `json:"connection,omitempty"`
	At            time.Time `json:"at,omitzero"`
	// Since is when the kiosk entered State; Reason says why it is not online; Conditions is
	// the full set of open conditions, so that a console that restarts rebuilds the fleet's
	// alarm picture from retained statuses alone (sync/CONTRACT.md §7.1).
	Since      time.Time   `json:"since,omitzero"`
	Reason     string      `json:"reason,omitempty"`
	Conditions []Condition `json:"conditions,omitempty"`
	// LimitsVersion is the set_limits overlay in force (0 or absent: the configuration's).
	LimitsVersion int64 `json:"limits_version,omitempty"`
}

// Heartbeat is the up/heartbeat payload.
type Heartbeat struct {
	V              int               `json:"v"`
	UptimeS        int64             `json:"uptime_s"`
	OutboxDepth    int               `json:"outbox_depth"`
	OldestUnackedS int64             `json:"oldest_unacked_s"`
	LastAckAt      time.Time         `json:"last_ack_at,omitzero"`
	CassetteNotes  int64             `json:"cassette_notes"`
	CassetteCap    int64             `json:"cassette_capacity"`
	Devices        map[string]string `json:"devices"`
	JournalBytes   int64             `json:"journal_bytes"`
	// JournalEvents and JournalHead anchor the journal's hash chain outside the kiosk: a
	// journal rewritten later (every hash recomputed) no longer matches what central
	// operations received.
	JournalEvents  uint64    `json:"journal_events"`
	JournalHead    string    `json:"journal_head,omitempty"`
	DiskFreeBytes  int64     `json:"disk_free_bytes"`
	UncertainItems int       `json:"uncertain_items"`
	SessionState   string    `json:"session_state"`
	At             time.Time `json:"at,omitzero"`

	// DeviceList is the detailed device list; on the wire it is the array form of "devices"
	// (see Heartbeat.MarshalJSON): sent when set, else Devices goes out as {name: state}.
	DeviceList     []Device          `json:"-"`
	Cassette       *Cassette         `json:"cassette,omitempty"`
	UncertainCount int               `json:"uncertain_count,omitempty"`
	Clock          time.Time         `json:"clock,omitzero"`
	RTTMs          int64             `json:"rtt_ms,omitempty"`
	LastTopupAt    time.Time         `json:"last_topup_at,omitzero"`
	Counters       map[string]uint64 `json:"counters,omitempty"`
	// Limits are the session limits in force (the configuration's, version 0, or the
	// set_limits overlay's).
	Limits *Limits `json:"limits,omitempty"`
}

// Alarm severities and who must act.
const (
	SeverityInfo     = "info"
	SeverityWarning  = "warning"
	SeverityCritical = "critical"

	ActorStaff    = "staff"
	ActorEngineer = "engineer"
	ActorNone     = "none"
	// ActorOps: central operations must act (a held top-up, a conflict, a key problem).
	ActorOps = "ops"
)

// Alarm is the up/alarm payload.
type Alarm struct {
	V        int       `json:"v"`
	AlarmID  string    `json:"alarm_id"`
	Kind     string    `json:"kind"`
	Severity string    `json:"severity"`
	Actor    string    `json:"actor"`
	At       time.Time `json:"at"`
	Details  string    `json:"details,omitempty"`
	Cleared  bool      `json:"cleared,omitempty"`
	// State is AlarmRaised or AlarmCleared; RaisedAt and ClearedAt date the two ends of the
	// alarm's life; Detail is the human text (Details is its older name). A receiver treats
	// Cleared == true as State == "cleared" (IsCleared).
	State     string    `json:"state,omitempty"`
	RaisedAt  time.Time `json:"raised_at,omitzero"`
	ClearedAt time.Time `json:"cleared_at,omitzero"`
	Detail    string    `json:"detail,omitempty"`
}

// Command is the payload of a signed down/cmd.
type Command struct {
	V         int             `json:"v"`
	CmdID     string          `json:"cmd_id"`
	KioskID   string          `json:"kiosk_id"`
	IssuedAt  time.Time       `json:"issued_at"`
	ExpiresAt time.Time       `json:"expires_at"`
	Kind      string          `json:"kind"`
	Args      json.RawMessage `json:"args,omitempty"`
}

// CmdResult is the up/cmd_result payload.
type CmdResult struct {
	V      int    `json:"v"`
	CmdID  string `json:"cmd_id"`
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
}

// Decode parses a JSON payload into v, refusing oversized input, trailing data and values of
// the wrong JSON type. Unknown fields are ignored by design.
func Decode(data []byte, v any) error {
	if len(data) > MaxPayload {
		return fmt.Errorf("%w: %d bytes", ErrTooLarge, len(data))
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("wire: decode: %w", err)
	}
	if dec.More() {
		return fmt.Errorf("%w: trailing data after the JSON object", ErrInvalid)
	}
	return nil
}
