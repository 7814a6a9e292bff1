package journal

import (
	"encoding/json"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Remote commands in the journal: the cmd_ids the kiosk accepted (kept forever, so that a
// replayed command is refused however old it is), the audit events of each command, and the
// settings commands change (a limits overlay, role PIN hashes).
//
// The buckets are created by the first write that needs them: a journal written before
// commands existed has none, and reads of a missing bucket find nothing.

var (
	bCommands = []byte("commands")
	bOps      = []byte("ops")
	kLimits   = []byte("limits")
	kCreds    = []byte("credentials")
)

// Command errors.
var (
	// ErrCommandReplayed: the cmd_id was accepted before.
	ErrCommandReplayed = errors.New("journal: command id already accepted")
	// ErrStaleVersion: a versioned setting older than (or as old as) the one in force.
	ErrStaleVersion = errors.New("journal: version not newer than the one in force")
)

// commandRecord is what the commands bucket keeps per cmd_id.
type commandRecord struct {
	Kind   string `json:"kind"`
	Seq    uint64 `json:"seq"` // the command_accepted event
	Status string `json:"status,omitempty"`
}

// CommandSeen reports whether cmd_id was accepted before. It only reads: a flood of replayed
// or forged commands costs no write.
func (j *Journal) CommandSeen(cmdID string) (bool, error) {
	seen := false
	err := j.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bCommands); b != nil {
			seen = b.Get([]byte(cmdID)) != nil
		}
		return nil
	})
	return seen, err
}

// AcceptCommand journals a verified command and its cmd_id in one transaction (one fsync),
// or returns ErrCommandReplayed without writing when the cmd_id was accepted before. It
// returns the event's seq.
func (j *Journal) AcceptCommand(e CommandAcceptedEvent) (uint64, error) {
	if e.CmdID == "" || e.Kind == "" {
		return 0, fmt.Errorf("journal: command needs cmd_id and kind")
	}
	var seq uint64
	err := j.update(func(w *writer) error {
		b, err := w.tx.CreateBucketIfNotExists(bCommands)
		if err != nil {
			return err
		}
		if b.Get([]byte(e.CmdID)) != nil {
			return ErrCommandReplayed
		}
		if seq, err = w.append(e); err != nil {
			return err
		}
		v, err := json.Marshal(commandRecord{Kind: e.Kind, Seq: seq})
		if err != nil {
			return err
		}
		return b.Put([]byte(e.CmdID), v)
	})
	return seq, err
}

// CommandStep journals a step of an accepted command (its audit trail) and keeps the last
// status with its cmd_id.
func (j *Journal) CommandStep(e CommandResultEvent) error {
	return j.update(func(w *writer) error {
		b := w.tx.Bucket(bCommands)
		var rec commandRecord
		var raw []byte
		if b != nil {
			raw = b.Get([]byte(e.CmdID))
		}
		if raw == nil {
			return fmt.Errorf("journal: step of command %q that was never accepted", e.CmdID)
		}
		if err := json.Unmarshal(raw, &rec); err != nil {
			return fmt.Errorf("%w: command %q: %v", ErrCorrupt, e.CmdID, err)
		}
		if _, err := w.append(e); err != nil {
			return err
		}
		rec.Status = e.Status
		v, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		return b.Put([]byte(e.CmdID), v)
	})
}

// SetLimitsOverlay journals a limits overlay; its version must be newer than the one in force
// (ErrStaleVersion). The caller validates the limits.
func (j *Journal) SetLimitsOverlay(o LimitsOverlay) error {
	return j.setOps(kLimits, o.Version, LimitsSetEvent(o), o)
}

// LimitsOverlay returns the limits overlay in force (false when none was ever set).
func (j *Journal) LimitsOverlay() (LimitsOverlay, bool, error) {
	var o LimitsOverlay
	ok, err := j.getOps(kLimits, &o)
	return o, ok, err
}

// SetCredentials journals role PIN hashes; the version must be newer than the one in force.
// The caller checks that every value is a hash, never a PIN.
func (j *Journal) SetCredentials(c Credentials) error {
	return j.setOps(kCreds, c.Version, CredentialsSetEvent(c), c)
}

// Credentials returns the role PIN hashes in force (false when none were ever set).
func (j *Journal) Credentials() (Credentials, bool, error) {
	var c Credentials
	ok, err := j.getOps(kCreds, &c)
	return c, ok, err
}

func (j *Journal) setOps(key []byte, version int64, ev Event, v any) error {
	return j.update(func(w *writer) error {
		b, err := w.tx.CreateBucketIfNotExists(bOps)
		if err != nil {
			return err
		}
		if raw := b.Get(key); raw != nil {
			var cur struct {
				Version int64 `json:"version"`
			}
			if err := json.Unmarshal(raw, &cur); err != nil {
				return fmt.Errorf("%w: ops/%s: %v", ErrCorrupt, key, err)
			}
			if version <= cur.Version {
				return fmt.Errorf("%w: %d, in force %d", ErrStaleVersion, version, cur.Version)
			}
		}
		if _, err := w.append(ev); err != nil {
			return err
		}
		raw, err := json.Marshal(v)
		if err != nil {
			return err
		}
		return b.Put(key, raw)
	})
}

func (j *Journal) getOps(key []byte, v any) (bool, error) {
	found := false
	err := j.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bOps)
		if b == nil {
			return nil
		}
		raw := b.Get(key)
		if raw == nil {
			return nil
		}
		found = true
		if err := json.Unmarshal(raw, v); err != nil {
			return fmt.Errorf("%w: ops/%s: %v", ErrCorrupt, key, err)
		}
		return nil
	})
	return found, err
}
