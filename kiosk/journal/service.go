package journal

import (
	"encoding/json"
	"fmt"
	"maps"
	"time"
)

// Event types of the technicians' work on site (the service menu and kioskctl): the audit
// trail of who did what at the kiosk. Like every event type name, they never change.
const (
	// EvServiceAction records one action of a technician at the kiosk: a login, a lockout
	// after wrong PINs, a self-test, maintenance on/off, a reprint, a PIN change.
	EvServiceAction = "service_action"
)

// ServiceActionEvent is one audited action. Who is the role and PIN slot
// ("technician/1"), or "kioskctl uid N" for the control socket.
type ServiceActionEvent struct {
	Who    string    `json:"who"`
	Action string    `json:"action"`
	Detail string    `json:"detail,omitempty"`
	Result string    `json:"result,omitempty"`
	At     time.Time `json:"at"`
}

func (ServiceActionEvent) EventType() string { return EvServiceAction }

func newServiceEvent(typ string) Event {
	switch typ {
	case EvServiceAction:
		return &ServiceActionEvent{}
	}
	return nil
}

// AuditService journals one technician action (one transaction, one fsync).
func (j *Journal) AuditService(e ServiceActionEvent) error {
	if e.Who == "" || e.Action == "" {
		return fmt.Errorf("journal: a service action needs who and action")
	}
	return j.update(func(w *writer) error {
		_, err := w.append(e)
		return err
	})
}

// SetLocalCredential sets one role's PIN hash on the kiosk itself (an admin in the service
// menu). It journals a credentials_set event carrying the whole role map in force and Who,
// at the same version as the credentials in force: a later remote set_credentials (a newer
// version from operations) replaces the map as a whole, while the local change stays until
// then. The caller hashes the PIN; a PIN in clear never reaches the journal.
func (j *Journal) SetLocalCredential(role, hash, who string) error {
	if role == "" || hash == "" || who == "" {
		return fmt.Errorf("journal: a local credential needs role, hash and who")
	}
	return j.update(func(w *writer) error {
		b, err := w.tx.CreateBucketIfNotExists(bOps)
		if err != nil {
			return err
		}
		var cur Credentials
		if raw := b.Get(kCreds); raw != nil {
			if err := json.Unmarshal(raw, &cur); err != nil {
				return fmt.Errorf("%w: ops/%s: %v", ErrCorrupt, kCreds, err)
			}
		}
		next := Credentials{Version: cur.Version, CmdID: cur.CmdID, Roles: maps.Clone(cur.Roles), Who: who}
		if next.Roles == nil {
			next.Roles = map[string]string{}
		}
		next.Roles[role] = hash
		if _, err := w.append(CredentialsSetEvent(next)); err != nil {
			return err
		}
		raw, err := json.Marshal(next)
		if err != nil {
			return err
		}
		return b.Put(kCreds, raw)
	})
}
