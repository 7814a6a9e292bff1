package journal

import (
	"encoding/json"
	"time"
)

// Event types of remote commands (sync/CONTRACT.md §7.4): the audit trail of what central
// operations asked of the kiosk and what came of it. Like every event type name, they never
// change.
const (
	// EvCommandAccepted records a verified command the kiosk accepted; its cmd_id is
	// journaled with it, so a replay is refused forever.
	EvCommandAccepted = "command_accepted"
	// EvCommandResult records a later step of an accepted command (waiting_idle, succeeded,
	// failed, expired).
	EvCommandResult = "command_result"
	// EvLimitsSet records a limits overlay set by a command.
	EvLimitsSet = "limits_set"
	// EvCredentialsSet records technician role PIN hashes set by a command.
	EvCredentialsSet = "credentials_set"
)

// CommandAcceptedEvent is a verified command, as accepted. Args are the command's arguments
// as received (never a secret in clear: set_credentials carries PIN hashes).
type CommandAcceptedEvent struct {
	CmdID     string          `json:"cmd_id"`
	Kind      string          `json:"kind"`
	KID       string          `json:"kid"`
	IssuedAt  time.Time       `json:"issued_at"`
	ExpiresAt time.Time       `json:"expires_at"`
	Args      json.RawMessage `json:"args,omitempty"`
}

// CommandResultEvent is a step of an accepted command.
type CommandResultEvent struct {
	CmdID  string `json:"cmd_id"`
	Kind   string `json:"kind"`
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
}

// LimitsOverlay is a versioned set of session limits set remotely; it overrides the config
// file's limits while its version is the newest.
type LimitsOverlay struct {
	Version                int64  `json:"version"`
	CmdID                  string `json:"cmd_id"`
	SessionMaxMinor        int64  `json:"session_max_minor"`
	OfflineSessionMaxMinor int64  `json:"offline_session_max_minor"`
	OfflineTotalMaxMinor   int64  `json:"offline_total_max_minor"`
}

// Credentials are technician role PIN hashes (bcrypt or argon2id strings), versioned.
type Credentials struct {
	Version int64             `json:"version"`
	CmdID   string            `json:"cmd_id"`
	Roles   map[string]string `json:"roles"`
	// Who set them on the kiosk itself (an admin in the service menu, "admin/1"); empty
	// for a remote set_credentials command (CmdID says which).
	Who string `json:"who,omitempty"`
}

// LimitsSetEvent records a new limits overlay.
type LimitsSetEvent LimitsOverlay

// CredentialsSetEvent records new role PIN hashes.
type CredentialsSetEvent Credentials

func (CommandAcceptedEvent) EventType() string { return EvCommandAccepted }
func (CommandResultEvent) EventType() string   { return EvCommandResult }
func (LimitsSetEvent) EventType() string       { return EvLimitsSet }
func (CredentialsSetEvent) EventType() string  { return EvCredentialsSet }

// newCommandEvent is newEvent for the command event types.
func newCommandEvent(typ string) Event {
	switch typ {
	case EvCommandAccepted:
		return &CommandAcceptedEvent{}
	case EvCommandResult:
		return &CommandResultEvent{}
	case EvLimitsSet:
		return &LimitsSetEvent{}
	case EvCredentialsSet:
		return &CredentialsSetEvent{}
	}
	return newLatchEvent(typ)
}
