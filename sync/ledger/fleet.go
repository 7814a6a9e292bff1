package ledger

import (
	"cmp"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/kioskd/kioskd/sync/wire"
)

// KioskView is what the ledger knows about one kiosk: the latest status (retained on the
// broker, so it is back at once after a ledger restart), the latest heartbeat, the open
// alarms, recent command results, and the watermarks from the store.
type KioskView struct {
	KioskID         string          `json:"kiosk_id"`
	Status          *wire.Status    `json:"status,omitempty"`
	StatusAt        time.Time       `json:"status_at,omitzero"`
	Heartbeat       *wire.Heartbeat `json:"heartbeat,omitempty"`
	LastHeartbeatAt time.Time       `json:"last_heartbeat_at,omitzero"`
	// OutboxDepth and OldestUnackedS are the kiosk's outbox lag from its last heartbeat:
	// top-ups it holds that the ledger has not acknowledged.
	OutboxDepth    int             `json:"outbox_depth"`
	OldestUnackedS int64           `json:"oldest_unacked_s"`
	Alarms         []wire.Alarm    `json:"alarms"`
	CmdResults     []CmdResultView `json:"cmd_results,omitempty"`
	Epochs         []EpochInfo     `json:"epochs,omitempty"`
}

// CmdResultView is a command result with the time the ledger received it.
type CmdResultView struct {
	wire.CmdResult
	At time.Time `json:"received_at"`
}

// Bounds on what the in-memory fleet view keeps, so a misbehaving client cannot grow it
// without limit.
const (
	maxKiosks        = 100_000
	maxAlarmsPer     = 100
	maxCmdResultsPer = 20
)

type kioskState struct {
	status     *wire.Status
	statusAt   time.Time
	hb         *wire.Heartbeat
	hbAt       time.Time
	alarms     map[string]wire.Alarm
	cmdResults []CmdResultView
}

type fleet struct {
	mu     sync.Mutex
	kiosks map[string]*kioskState
}

func newFleet() *fleet { return &fleet{kiosks: map[string]*kioskState{}} }

func (f *fleet) get(id string) *kioskState {
	k := f.kiosks[id]
	if k == nil {
		if len(f.kiosks) >= maxKiosks {
			return nil
		}
		k = &kioskState{alarms: map[string]wire.Alarm{}}
		f.kiosks[id] = k
	}
	return k
}

func (f *fleet) status(id string, s wire.Status, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := f.get(id)
	if k == nil {
		return
	}
	// Handlers run on several workers, so an older status may arrive second; the Last Will
	// ("offline") carries no time and always applies.
	if k.status != nil && !s.At.IsZero() && !k.status.At.IsZero() && s.At.Before(k.status.At) {
		return
	}
	k.status, k.statusAt = &s, now
}

func (f *fleet) heartbeat(id string, h wire.Heartbeat, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if k := f.get(id); k != nil {
		k.hb, k.hbAt = &h, now
	}
}

func (f *fleet) alarm(id string, a wire.Alarm, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := f.get(id)
	if k == nil {
		return
	}
	if a.Cleared {
		delete(k.alarms, a.AlarmID)
		return
	}
	if _, ok := k.alarms[a.AlarmID]; !ok && len(k.alarms) >= maxAlarmsPer {
		return
	}
	k.alarms[a.AlarmID] = a
}

func (f *fleet) cmdResult(id string, r wire.CmdResult, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if k := f.get(id); k != nil {
		k.cmdResults = append(k.cmdResults, CmdResultView{CmdResult: r, At: now})
		if n := len(k.cmdResults); n > maxCmdResultsPer {
			k.cmdResults = slices.Clone(k.cmdResults[n-maxCmdResultsPer:])
		}
	}
}

// Kiosks returns the fleet view, sorted by kiosk id: every kiosk that sent anything since
// the ledger started, and every kiosk the store holds top-ups for.
func (l *Ledger) Kiosks() ([]KioskView, error) {
	stored, err := l.store.Kiosks()
	if err != nil {
		return nil, fmt.Errorf("ledger: fleet: %w", err)
	}
	views := map[string]*KioskView{}
	view := func(id string) *KioskView {
		v := views[id]
		if v == nil {
			v = &KioskView{KioskID: id, Alarms: []wire.Alarm{}}
			views[id] = v
		}
		return v
	}
	for _, k := range stored {
		view(k.KioskID).Epochs = k.Epochs
	}
	l.fleet.mu.Lock()
	for id, k := range l.fleet.kiosks {
		v := view(id)
		v.Status, v.StatusAt = k.status, k.statusAt
		v.Heartbeat, v.LastHeartbeatAt = k.hb, k.hbAt
		if k.hb != nil {
			v.OutboxDepth, v.OldestUnackedS = k.hb.OutboxDepth, k.hb.OldestUnackedS
		}
		for _, a := range k.alarms {
			v.Alarms = append(v.Alarms, a)
		}
		slices.SortFunc(v.Alarms, func(a, b wire.Alarm) int {
			return cmp.Or(a.At.Compare(b.At), cmp.Compare(a.AlarmID, b.AlarmID))
		})
		v.CmdResults = slices.Clone(k.cmdResults)
	}
	l.fleet.mu.Unlock()
	out := make([]KioskView, 0, len(views))
	for _, v := range views {
		out = append(out, *v)
	}
	slices.SortFunc(out, func(a, b KioskView) int { return cmp.Compare(a.KioskID, b.KioskID) })
	return out, nil
}
