package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"time"
)

// Operations payloads (sync/CONTRACT.md §7): the parts of up/status, up/heartbeat, up/alarm,
// down/cmd and up/cmd_result that the ops console reads and writes, and their checks.

// Condition is one open condition in a status: what is wrong, how bad, who must act, since
// when. Kind is the condition's stable name (e.g. "printer_paper_out"); it identifies the
// condition within the kiosk.
type Condition struct {
	Kind     string    `json:"kind"`
	Severity string    `json:"severity"`
	Actor    string    `json:"actor"`
	Since    time.Time `json:"since,omitzero"`
	Detail   string    `json:"detail,omitempty"`
}

// Device is one entry of the heartbeat's device list.
type Device struct {
	Name     string `json:"name"`
	State    string `json:"state"`
	Model    string `json:"model,omitempty"`
	Firmware string `json:"firmware,omitempty"`
}

// Cassette is the heartbeat's cash cassette figure. FillRatio is notes / capacity in [0, 1]
// (0 when the capacity is unknown); ValueMinor is the value of the notes inside.
type Cassette struct {
	Notes      int64   `json:"notes"`
	Capacity   int64   `json:"capacity"`
	FillRatio  float64 `json:"fill_ratio"`
	ValueMinor int64   `json:"value_minor"`
}

// Limits are the session limits a kiosk has in force (heartbeat), in minor units.
type Limits struct {
	Version                int64 `json:"version"`
	SessionMaxMinor        int64 `json:"session_max_minor"`
	OfflineSessionMaxMinor int64 `json:"offline_session_max_minor"`
	OfflineTotalMaxMinor   int64 `json:"offline_total_max_minor"`
}

// Alarm states.
const (
	AlarmRaised  = "raised"
	AlarmCleared = "cleared"
)

// Command kinds (down/cmd).
const (
	CmdOutOfService   = "out_of_service"
	CmdInService      = "in_service"
	CmdMaintenanceOn  = "maintenance_on"
	CmdMaintenanceOff = "maintenance_off"
	CmdReboot         = "reboot"
	CmdRestartService = "restart_service"
	CmdReprint        = "reprint"
	CmdSyncNow        = "sync_now"
	CmdDiagnostics    = "diagnostics"
	CmdSetLimits      = "set_limits"
	CmdSetCredentials = "set_credentials"
	CmdPrepareUpdate  = "prepare_update"
)

// CommandKinds lists every command kind, in the order a console offers them.
var CommandKinds = []string{CmdOutOfService, CmdInService, CmdMaintenanceOn, CmdMaintenanceOff, CmdReboot,
	CmdRestartService, CmdReprint, CmdSyncNow, CmdDiagnostics, CmdSetLimits, CmdSetCredentials, CmdPrepareUpdate}

// Command result statuses (up/cmd_result).
const (
	CmdAccepted    = "accepted"
	CmdRejected    = "rejected"
	CmdWaitingIdle = "waiting_idle"
	CmdSucceeded   = "succeeded"
	CmdFailed      = "failed"
	CmdExpired     = "expired"
)

// MaxCommandTTL bounds expires_at - issued_at: a command is an instruction for now, not a
// standing order, and a short life keeps a captured envelope useless soon.
const MaxCommandTTL = 24 * time.Hour

var cmdIDRe = regexp.MustCompile(`^[A-Za-z0-9_-]{8,64}$`)

// ReprintArgs are the args of a reprint command.
type ReprintArgs struct {
	ReceiptNo uint64 `json:"receipt_no"`
}

func validSeverity(s string) bool {
	return s == SeverityInfo || s == SeverityWarning || s == SeverityCritical
}

func validActor(a string) bool {
	return a == ActorStaff || a == ActorEngineer || a == ActorOps || a == ActorNone
}

// Validate checks a status: a known state, and well-formed conditions.
func (s *Status) Validate() error {
	if s.V != Version {
		return fmt.Errorf("%w: %d", ErrVersion, s.V)
	}
	if s.LimitsVersion < 0 {
		return fmt.Errorf("%w: negative limits_version", ErrInvalid)
	}
	switch s.State {
	case StateOnline, StateDegraded, StateOutOfService, StateMaintenance, StateOffline:
	case "":
		return fmt.Errorf("%w: status needs state", ErrMissing)
	default:
		return fmt.Errorf("%w: state %q", ErrInvalid, s.State)
	}
	if len(s.Conditions) > 256 {
		return fmt.Errorf("%w: %d conditions", ErrInvalid, len(s.Conditions))
	}
	seen := make(map[string]bool, len(s.Conditions))
	for _, c := range s.Conditions {
		if c.Kind == "" || len(c.Kind) > 64 {
			return fmt.Errorf("%w: condition needs a kind of 1-64 bytes", ErrInvalid)
		}
		if seen[c.Kind] {
			return fmt.Errorf("%w: condition %q listed twice", ErrInvalid, c.Kind)
		}
		seen[c.Kind] = true
		if !validSeverity(c.Severity) || !validActor(c.Actor) {
			return fmt.Errorf("%w: condition %q severity %q actor %q", ErrInvalid, c.Kind, c.Severity, c.Actor)
		}
	}
	return nil
}

// Validate checks a heartbeat's figures: nothing negative, a fill ratio in [0, 1].
func (h *Heartbeat) Validate() error {
	if h.V != Version {
		return fmt.Errorf("%w: %d", ErrVersion, h.V)
	}
	if h.UptimeS < 0 || h.OutboxDepth < 0 || h.OldestUnackedS < 0 || h.CassetteNotes < 0 || h.CassetteCap < 0 ||
		h.JournalBytes < 0 || h.DiskFreeBytes < 0 || h.UncertainItems < 0 || h.UncertainCount < 0 || h.RTTMs < 0 {
		return fmt.Errorf("%w: negative heartbeat figure", ErrInvalid)
	}
	if c := h.Cassette; c != nil {
		if c.Notes < 0 || c.Capacity < 0 || c.ValueMinor < 0 || math.IsNaN(c.FillRatio) || c.FillRatio < 0 || c.FillRatio > 1 {
			return fmt.Errorf("%w: cassette %+v", ErrInvalid, *c)
		}
	}
	for _, d := range h.DeviceList {
		if d.Name == "" {
			return fmt.Errorf("%w: device without a name", ErrInvalid)
		}
	}
	if l := h.Limits; l != nil && (l.Version < 0 || l.SessionMaxMinor < 0 || l.OfflineSessionMaxMinor < 0 || l.OfflineTotalMaxMinor < 0) {
		return fmt.Errorf("%w: negative limit %+v", ErrInvalid, *l)
	}
	return nil
}

// Uncertain returns the open uncertain items: uncertain_count, or the older uncertain_items.
func (h *Heartbeat) Uncertain() int { return max(h.UncertainCount, h.UncertainItems) }

// CassetteFill returns the cassette figure: the cassette object, or one made from the older
// cassette_notes / cassette_capacity fields; nil when neither is there.
func (h *Heartbeat) CassetteFill() *Cassette {
	if h.Cassette != nil {
		return h.Cassette
	}
	if h.CassetteCap <= 0 {
		return nil
	}
	return &Cassette{Notes: h.CassetteNotes, Capacity: h.CassetteCap, FillRatio: min(1, float64(h.CassetteNotes)/float64(h.CassetteCap))}
}

// Devs returns the detailed device list: DeviceList, or one made from the {name: state}
// map, sorted by name.
func (h *Heartbeat) Devs() []Device {
	if len(h.DeviceList) > 0 {
		return h.DeviceList
	}
	out := make([]Device, 0, len(h.Devices))
	for n, s := range h.Devices {
		out = append(out, Device{Name: n, State: s})
	}
	sortDevices(out)
	return out
}

func sortDevices(d []Device) {
	for i := 1; i < len(d); i++ {
		for j := i; j > 0 && d[j].Name < d[j-1].Name; j-- {
			d[j], d[j-1] = d[j-1], d[j]
		}
	}
}

// heartbeatJSON is Heartbeat without its methods, so that the codec below can embed it.
type heartbeatJSON Heartbeat

// MarshalJSON writes "devices" as the array [{name, state, model, firmware}] when DeviceList
// is set, else as the older {name: state} object.
func (h Heartbeat) MarshalJSON() ([]byte, error) {
	if len(h.DeviceList) == 0 {
		return json.Marshal(heartbeatJSON(h))
	}
	// The outer Devices field is shallower than the embedded one, so it is the one encoded.
	return json.Marshal(struct {
		heartbeatJSON
		Devices []Device `json:"devices"`
	}{heartbeatJSON(h), h.DeviceList})
}

// UnmarshalJSON reads "devices" in either form: an array fills DeviceList (and Devices with
// name → state, for readers of the older field), an object fills Devices.
func (h *Heartbeat) UnmarshalJSON(data []byte) error {
	var aux struct {
		*heartbeatJSON
		Devices json.RawMessage `json:"devices"`
	}
	aux.heartbeatJSON = (*heartbeatJSON)(h)
	if err := json.Unmarshal(data, &aux); err != nil {
		return err
	}
	raw := bytes.TrimSpace(aux.Devices)
	h.Devices, h.DeviceList = nil, nil
	switch {
	case len(raw) == 0 || bytes.Equal(raw, []byte("null")):
	case raw[0] == '[':
		if err := json.Unmarshal(raw, &h.DeviceList); err != nil {
			return fmt.Errorf("heartbeat devices: %w", err)
		}
		h.Devices = make(map[string]string, len(h.DeviceList))
		for _, d := range h.DeviceList {
			h.Devices[d.Name] = d.State
		}
	case raw[0] == '{':
		if err := json.Unmarshal(raw, &h.Devices); err != nil {
			return fmt.Errorf("heartbeat devices: %w", err)
		}
	default:
		return fmt.Errorf("%w: heartbeat devices must be an array or an object", ErrInvalid)
	}
	return nil
}

// IsCleared reports whether the alarm message clears its alarm (state "cleared", or the
// older cleared: true).
func (a *Alarm) IsCleared() bool { return a.State == AlarmCleared || a.Cleared }

// Text returns the alarm's human text (detail, or the older details).
func (a *Alarm) Text() string {
	if a.Detail != "" {
		return a.Detail
	}
	return a.Details
}

// Validate checks an alarm: an id and kind, and known severity, actor and state. A clearing
// message may leave severity and actor out (the raise said them).
func (a *Alarm) Validate() error {
	if a.V != Version {
		return fmt.Errorf("%w: %d", ErrVersion, a.V)
	}
	if a.AlarmID == "" || len(a.AlarmID) > 128 || a.Kind == "" || len(a.Kind) > 64 {
		return fmt.Errorf("%w: alarm needs alarm_id (≤128) and kind (≤64)", ErrMissing)
	}
	if a.State != "" && a.State != AlarmRaised && a.State != AlarmCleared {
		return fmt.Errorf("%w: alarm state %q", ErrInvalid, a.State)
	}
	if a.State == AlarmRaised && a.Cleared {
		return fmt.Errorf("%w: alarm both raised and cleared", ErrInvalid)
	}
	if !a.IsCleared() && (!validSeverity(a.Severity) || !validActor(a.Actor)) {
		return fmt.Errorf("%w: alarm severity %q actor %q", ErrInvalid, a.Severity, a.Actor)
	}
	return nil
}

// ValidCmdID reports whether s can be a cmd_id: 8-64 characters from A-Z a-z 0-9 _ -.
func ValidCmdID(s string) bool { return cmdIDRe.MatchString(s) }

// Validate checks a command's form (the kiosk also checks kiosk_id against itself, the
// expiry against its clock, and the cmd_id against the ones it has seen).
func (c *Command) Validate() error {
	if c.V != Version {
		return fmt.Errorf("%w: %d", ErrVersion, c.V)
	}
	if c.CmdID == "" || c.KioskID == "" || c.Kind == "" || c.IssuedAt.IsZero() || c.ExpiresAt.IsZero() {
		return fmt.Errorf("%w: command needs cmd_id, kiosk_id, issued_at, expires_at, kind", ErrMissing)
	}
	if !ValidCmdID(c.CmdID) {
		return fmt.Errorf("%w: cmd_id %q", ErrInvalid, c.CmdID)
	}
	if !ValidKioskID(c.KioskID) {
		return fmt.Errorf("%w: kiosk_id %q", ErrInvalid, c.KioskID)
	}
	if !c.ExpiresAt.After(c.IssuedAt) || c.ExpiresAt.Sub(c.IssuedAt) > MaxCommandTTL {
		return fmt.Errorf("%w: expires_at must be after issued_at, by at most %s", ErrInvalid, MaxCommandTTL)
	}
	known := false
	for _, k := range CommandKinds {
		known = known || k == c.Kind
	}
	if !known {
		return fmt.Errorf("%w: command kind %q", ErrInvalid, c.Kind)
	}
	args := bytes.TrimSpace(c.Args)
	hasArgs := len(args) > 0 && !bytes.Equal(args, []byte("null"))
	if hasArgs && args[0] != '{' {
		return fmt.Errorf("%w: args must be a JSON object", ErrInvalid)
	}
	switch c.Kind {
	case CmdReprint:
		var r ReprintArgs
		if !hasArgs || Decode(args, &r) != nil || r.ReceiptNo == 0 {
			return fmt.Errorf("%w: reprint needs args {\"receipt_no\": n ≥ 1}", ErrInvalid)
		}
	case CmdSetLimits, CmdSetCredentials:
		var m map[string]json.RawMessage
		if !hasArgs || Decode(args, &m) != nil || len(m) == 0 {
			return fmt.Errorf("%w: %s needs a non-empty args object", ErrInvalid, c.Kind)
		}
	default:
		if hasArgs {
			var m map[string]json.RawMessage
			if err := Decode(args, &m); err != nil {
				return fmt.Errorf("%w: args: %v", ErrInvalid, err)
			}
		}
	}
	return nil
}

// Validate checks a command result.
func (r *CmdResult) Validate() error {
	if r.V != Version {
		return fmt.Errorf("%w: %d", ErrVersion, r.V)
	}
	if r.CmdID == "" || r.Status == "" {
		return fmt.Errorf("%w: cmd_result needs cmd_id and status", ErrMissing)
	}
	if len(r.CmdID) > 64 {
		return fmt.Errorf("%w: cmd_id", ErrInvalid)
	}
	switch r.Status {
	case CmdAccepted, CmdWaitingIdle, CmdSucceeded, CmdExpired:
	case CmdRejected, CmdFailed:
		if r.Reason == "" {
			return fmt.Errorf("%w: %s needs a reason", ErrMissing, r.Status)
		}
	default:
		return fmt.Errorf("%w: cmd_result status %q", ErrInvalid, r.Status)
	}
	return nil
}

// Final reports whether status ends the command's life (no further result is expected).
func CmdFinal(status string) bool {
	return status == CmdRejected || status == CmdSucceeded || status == CmdFailed || status == CmdExpired
}
