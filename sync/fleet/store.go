package fleet

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/kioskd/kioskd/sync/wire"
)

// KioskRecord is what the console keeps about one kiosk.
type KioskRecord struct {
	KioskID     string          `json:"kiosk_id"`
	FirstSeen   time.Time       `json:"first_seen"`
	Status      *wire.Status    `json:"status,omitempty"`
	StatusAt    time.Time       `json:"status_at,omitzero"`
	Heartbeat   *wire.Heartbeat `json:"heartbeat,omitempty"`
	HeartbeatAt time.Time       `json:"heartbeat_at,omitzero"`
	// SessionState is the heartbeat's session state and SessionSince when it last changed:
	// a kiosk that sits outside "idle" for long is stuck.
	SessionState string    `json:"session_state,omitempty"`
	SessionSince time.Time `json:"session_since,omitzero"`
	// Fill is the cassette fill trend (at most one sample per fillEvery, the last
	// maxFillSamples), for the days-to-full estimate.
	Fill []FillSample `json:"fill,omitempty"`
}

// FillSample is one point of the cassette fill trend.
type FillSample struct {
	At    time.Time `json:"at"`
	Ratio float64   `json:"ratio"`
}

// Alarm sources: an up/alarm message, or an open condition of a retained status.
const (
	SourceAlarm     = "alarm"
	SourceCondition = "condition"
)

// AlarmRecord is one alarm's life: raised, perhaps acknowledged, perhaps cleared. The key is
// (KioskID, AlarmID); a condition from a status has the AlarmID "cond:<kind>".
type AlarmRecord struct {
	KioskID   string    `json:"kiosk_id"`
	AlarmID   string    `json:"alarm_id"`
	Kind      string    `json:"kind"`
	Severity  string    `json:"severity"`
	Actor     string    `json:"actor"`
	Detail    string    `json:"detail,omitempty"`
	Source    string    `json:"source"`
	Open      bool      `json:"open"`
	RaisedAt  time.Time `json:"raised_at"`
	ClearedAt time.Time `json:"cleared_at,omitzero"`
	AckedBy   string    `json:"acked_by,omitempty"`
	AckedAt   time.Time `json:"acked_at,omitzero"`
}

// History event kinds.
const (
	EventRaised  = "raised"
	EventCleared = "cleared"
	EventAcked   = "acknowledged"
	EventCommand = "command"
	EventResult  = "cmd_result"
)

// Event is one line of the durable history.
type Event struct {
	Seq     uint64    `json:"seq"`
	At      time.Time `json:"at"`
	KioskID string    `json:"kiosk_id"`
	What    string    `json:"what"`
	AlarmID string    `json:"alarm_id,omitempty"`
	CmdID   string    `json:"cmd_id,omitempty"`
	By      string    `json:"by,omitempty"`
	Detail  string    `json:"detail,omitempty"`
}

// CommandRecord is a command the console sent and what the kiosk answered.
type CommandRecord struct {
	Command wire.Command   `json:"command"`
	SentBy  string         `json:"sent_by"`
	SentAt  time.Time      `json:"sent_at"`
	Status  string         `json:"status"` // "sent", "publish_failed", or the last result status
	Reason  string         `json:"reason,omitempty"`
	Results []ResultRecord `json:"results,omitempty"`
}

// ResultRecord is one up/cmd_result as received.
type ResultRecord struct {
	Status string    `json:"status"`
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at"`
}

// ErrNotFound is returned for an unknown kiosk, alarm or command.
var ErrNotFound = errors.New("fleet: not found")

// Store keeps the console's state durably. Every method is atomic; the Fleet serializes its
// read-modify-write sequences, so a Store needs no compare-and-swap. BoltStore is the
// embedded implementation; a PostgreSQL one can follow behind the same interface.
type Store interface {
	PutKiosk(k KioskRecord) error
	Kiosk(id string) (KioskRecord, error)
	Kiosks() ([]KioskRecord, error)
	// PutAlarm stores the alarm and appends ev to the history in one transaction.
	PutAlarm(a AlarmRecord, ev Event) error
	Alarm(kioskID, alarmID string) (AlarmRecord, error)
	// Alarms lists alarms of one kiosk ("" for all), only open ones when openOnly.
	Alarms(kioskID string, openOnly bool) ([]AlarmRecord, error)
	// PutCommand stores the command record and appends ev to the history in one transaction.
	PutCommand(c CommandRecord, ev Event) error
	Command(cmdID string) (CommandRecord, error)
	// Commands lists the newest commands sent to a kiosk, newest first.
	Commands(kioskID string, limit int) ([]CommandRecord, error)
	// History lists the newest events of one kiosk ("" for all), newest first.
	History(kioskID string, limit int) ([]Event, error)
	Close() error
}

// BoltStore is the embedded Store (go.etcd.io/bbolt). Layout (bucket: key → JSON value;
// "\x00" separates key parts, which never contain it):
//
//	kiosks:     kiosk_id → KioskRecord
//	alarms:     kiosk_id \x00 alarm_id → AlarmRecord
//	history:    uint64be(seq) → Event
//	commands:   cmd_id → CommandRecord
//	kiosk_cmds: kiosk_id \x00 uint64be(seq) → cmd_id
type BoltStore struct{ db *bolt.DB }

var (
	bKiosks    = []byte("kiosks")
	bAlarms    = []byte("alarms")
	bHistory   = []byte("history")
	bCommands  = []byte("commands")
	bKioskCmds = []byte("kiosk_cmds")
)

// OpenBolt opens (or creates) the store at path.
func OpenBolt(path string) (*BoltStore, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("fleet: open store: %w", err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bKiosks, bAlarms, bHistory, bCommands, bKioskCmds} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close() // the init error is the one to report
		return nil, fmt.Errorf("fleet: init store: %w", err)
	}
	return &BoltStore{db: db}, nil
}

// Close closes the file.
func (s *BoltStore) Close() error { return s.db.Close() }

func key(parts ...string) []byte { return []byte(joinKey(parts...)) }

func joinKey(parts ...string) string {
	var b bytes.Buffer
	for i, p := range parts {
		if i > 0 {
			b.WriteByte(0)
		}
		b.WriteString(p)
	}
	return b.String()
}

func u64(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

func putJSON(b *bolt.Bucket, k []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(k, data)
}

func getJSON(b *bolt.Bucket, k []byte, v any) error {
	data := b.Get(k)
	if data == nil {
		return ErrNotFound
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("fleet: corrupt record %q: %w", k, err)
	}
	return nil
}

func appendEvent(tx *bolt.Tx, ev Event) error {
	if ev.What == "" {
		return nil
	}
	h := tx.Bucket(bHistory)
	seq, err := h.NextSequence()
	if err != nil {
		return err
	}
	ev.Seq = seq
	return putJSON(h, u64(seq), ev)
}

// PutKiosk implements Store.
func (s *BoltStore) PutKiosk(k KioskRecord) error {
	return s.db.Update(func(tx *bolt.Tx) error { return putJSON(tx.Bucket(bKiosks), []byte(k.KioskID), k) })
}

// Kiosk implements Store.
func (s *BoltStore) Kiosk(id string) (k KioskRecord, err error) {
	err = s.db.View(func(tx *bolt.Tx) error { return getJSON(tx.Bucket(bKiosks), []byte(id), &k) })
	return k, err
}

// Kiosks implements Store, in kiosk id order.
func (s *BoltStore) Kiosks() (out []KioskRecord, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bKiosks).ForEach(func(k, v []byte) error {
			var r KioskRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("fleet: corrupt kiosk %q: %w", k, err)
			}
			out = append(out, r)
			return nil
		})
	})
	return out, err
}

// PutAlarm implements Store.
func (s *BoltStore) PutAlarm(a AlarmRecord, ev Event) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if err := putJSON(tx.Bucket(bAlarms), key(a.KioskID, a.AlarmID), a); err != nil {
			return err
		}
		return appendEvent(tx, ev)
	})
}

// Alarm implements Store.
func (s *BoltStore) Alarm(kioskID, alarmID string) (a AlarmRecord, err error) {
	err = s.db.View(func(tx *bolt.Tx) error { return getJSON(tx.Bucket(bAlarms), key(kioskID, alarmID), &a) })
	return a, err
}

// Alarms implements Store.
func (s *BoltStore) Alarms(kioskID string, openOnly bool) (out []AlarmRecord, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bAlarms).Cursor()
		var prefix []byte
		if kioskID != "" {
			prefix = key(kioskID, "")
		}
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var a AlarmRecord
			if err := json.Unmarshal(v, &a); err != nil {
				return fmt.Errorf("fleet: corrupt alarm %q: %w", k, err)
			}
			if !openOnly || a.Open {
				out = append(out, a)
			}
		}
		return nil
	})
	return out, err
}

// PutCommand implements Store.
func (s *BoltStore) PutCommand(c CommandRecord, ev Event) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bCommands)
		if b.Get([]byte(c.Command.CmdID)) == nil {
			kc := tx.Bucket(bKioskCmds)
			seq, err := kc.NextSequence()
			if err != nil {
				return err
			}
			if err := kc.Put(append(key(c.Command.KioskID, ""), u64(seq)...), []byte(c.Command.CmdID)); err != nil {
				return err
			}
		}
		if err := putJSON(b, []byte(c.Command.CmdID), c); err != nil {
			return err
		}
		return appendEvent(tx, ev)
	})
}

// Command implements Store.
func (s *BoltStore) Command(cmdID string) (c CommandRecord, err error) {
	err = s.db.View(func(tx *bolt.Tx) error { return getJSON(tx.Bucket(bCommands), []byte(cmdID), &c) })
	return c, err
}

// Commands implements Store.
func (s *BoltStore) Commands(kioskID string, limit int) (out []CommandRecord, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		prefix := key(kioskID, "")
		c := tx.Bucket(bKioskCmds).Cursor()
		// Walk the kiosk's keys backwards: seek past the prefix, then step back.
		end := append(slices.Clone(prefix), 0xff)
		k, _ := c.Seek(end)
		var v []byte
		if k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
		for ; k != nil && bytes.HasPrefix(k, prefix) && len(out) < limit; k, v = c.Prev() {
			var r CommandRecord
			if err := getJSON(tx.Bucket(bCommands), v, &r); err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	})
	return out, err
}

// History implements Store. It scans backwards from the newest event; the scan is bounded so
// that a quiet kiosk in a busy fleet does not walk the whole history.
func (s *BoltStore) History(kioskID string, limit int) (out []Event, err error) {
	const maxScan = 100_000
	err = s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bHistory).Cursor()
		n := 0
		for k, v := c.Last(); k != nil && len(out) < limit && n < maxScan; k, v = c.Prev() {
			n++
			var ev Event
			if err := json.Unmarshal(v, &ev); err != nil {
				return fmt.Errorf("fleet: corrupt event %x: %w", k, err)
			}
			if kioskID == "" || ev.KioskID == kioskID {
				out = append(out, ev)
			}
		}
		return nil
	})
	return out, err
}
