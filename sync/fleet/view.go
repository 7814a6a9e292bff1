package fleet

import (
	"cmp"
	"math"
	"slices"
	"time"

	"github.com/kioskd/kioskd/sync/wire"
)

// KioskSummary is one kiosk as the overview shows it.
type KioskSummary struct {
	KioskID        string        `json:"kiosk_id"`
	State          string        `json:"state"`
	Reason         string        `json:"reason,omitempty"`
	LastHeartbeat  time.Time     `json:"last_heartbeat,omitzero"`
	HeartbeatAge   time.Duration `json:"heartbeat_age_ns"`
	Stale          bool          `json:"stale"`
	Stuck          bool          `json:"stuck"`
	SessionState   string        `json:"session_state,omitempty"`
	SessionFor     time.Duration `json:"session_for_ns"`
	Idle           bool          `json:"idle"`
	LastTopupAt    time.Time     `json:"last_topup_at,omitzero"`
	OpenAlarms     int           `json:"open_alarms"`
	NeedsStaff     bool          `json:"needs_staff"`
	NeedsEngineer  bool          `json:"needs_engineer"`
	NeedsOps       bool          `json:"needs_ops"`
	Unacked        int           `json:"unacked"`
	WorstSeverity  string        `json:"worst_severity,omitempty"`
	FillRatio      float64       `json:"fill_ratio"`
	HasFill        bool          `json:"has_fill"`
	OutboxDepth    int           `json:"outbox_depth"`
	OldestUnackedS int64         `json:"oldest_unacked_s"`
	Uncertain      int           `json:"uncertain"`
}

// Overview is the fleet page.
type Overview struct {
	At            time.Time      `json:"at"`
	Total         int            `json:"total"`
	ByState       map[string]int `json:"by_state"`
	NeedsStaff    []string       `json:"needs_staff"`
	NeedsEngineer []string       `json:"needs_engineer"`
	NeedsOps      []string       `json:"needs_ops"`
	Stale         []string       `json:"stale"`
	Stuck         []string       `json:"stuck"`
	Idle          []string       `json:"idle"`
	Kiosks        []KioskSummary `json:"kiosks"`
	// The thresholds, for the page's wording.
	StaleAfter time.Duration `json:"stale_after_ns"`
	StuckAfter time.Duration `json:"stuck_after_ns"`
	IdleAfter  time.Duration `json:"idle_after_ns"`
}

// States in the order the overview counts them.
var States = []string{wire.StateOnline, wire.StateDegraded, wire.StateOutOfService, wire.StateMaintenance, wire.StateOffline}

func severityRank(s string) int {
	switch s {
	case wire.SeverityCritical:
		return 3
	case wire.SeverityWarning:
		return 2
	case wire.SeverityInfo:
		return 1
	}
	return 0
}

func (f *Fleet) summarize(k KioskRecord, alarms []AlarmRecord, now time.Time) KioskSummary {
	s := KioskSummary{KioskID: k.KioskID, State: "unknown"}
	if k.Status != nil {
		s.State, s.Reason = k.Status.State, k.Status.Reason
	}
	online := k.Status != nil && k.Status.State != wire.StateOffline
	if h := k.Heartbeat; h != nil {
		s.LastHeartbeat = k.HeartbeatAt
		s.HeartbeatAge = now.Sub(k.HeartbeatAt)
		s.OutboxDepth, s.OldestUnackedS, s.Uncertain = h.OutboxDepth, h.OldestUnackedS, h.Uncertain()
		if c := h.CassetteFill(); c != nil {
			s.FillRatio, s.HasFill = c.FillRatio, true
		}
		s.LastTopupAt = h.LastTopupAt
	}
	s.Stale = online && (k.Heartbeat == nil || s.HeartbeatAge > f.cfg.StaleAfter)
	s.SessionState = k.SessionState
	if !k.SessionSince.IsZero() {
		s.SessionFor = now.Sub(k.SessionSince)
	}
	s.Stuck = online && !s.Stale && k.SessionState != "" && k.SessionState != "idle" && s.SessionFor > f.cfg.StuckAfter
	since := s.LastTopupAt
	if since.IsZero() {
		since = k.FirstSeen
	}
	s.Idle = online && now.Sub(since) > f.cfg.IdleAfter
	for _, a := range alarms {
		if !a.Open {
			continue
		}
		s.OpenAlarms++
		if a.AckedBy == "" {
			s.Unacked++
		}
		switch a.Actor {
		case wire.ActorStaff:
			s.NeedsStaff = true
		case wire.ActorEngineer:
			s.NeedsEngineer = true
		case wire.ActorOps:
			s.NeedsOps = true
		}
		if severityRank(a.Severity) > severityRank(s.WorstSeverity) {
			s.WorstSeverity = a.Severity
		}
	}
	return s
}

// Overview computes the fleet page.
func (f *Fleet) Overview() (Overview, error) {
	// Under the mutex, so that a status and the alarms it raises are seen together.
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now().UTC()
	o := Overview{At: now, ByState: map[string]int{}, StaleAfter: f.cfg.StaleAfter, StuckAfter: f.cfg.StuckAfter, IdleAfter: f.cfg.IdleAfter}
	ks, err := f.store.Kiosks()
	if err != nil {
		return o, err
	}
	open, err := f.store.Alarms("", true)
	if err != nil {
		return o, err
	}
	byKiosk := map[string][]AlarmRecord{}
	for _, a := range open {
		byKiosk[a.KioskID] = append(byKiosk[a.KioskID], a)
	}
	for _, k := range ks {
		s := f.summarize(k, byKiosk[k.KioskID], now)
		o.Kiosks = append(o.Kiosks, s)
		o.Total++
		o.ByState[s.State]++
		if s.NeedsStaff {
			o.NeedsStaff = append(o.NeedsStaff, s.KioskID)
		}
		if s.NeedsEngineer {
			o.NeedsEngineer = append(o.NeedsEngineer, s.KioskID)
		}
		if s.NeedsOps {
			o.NeedsOps = append(o.NeedsOps, s.KioskID)
		}
		if s.Stale {
			o.Stale = append(o.Stale, s.KioskID)
		}
		if s.Stuck {
			o.Stuck = append(o.Stuck, s.KioskID)
		}
		if s.Idle {
			o.Idle = append(o.Idle, s.KioskID)
		}
	}
	// Worst first: unacknowledged critical alarms at the top, then by id.
	slices.SortStableFunc(o.Kiosks, func(a, b KioskSummary) int {
		return cmp.Or(-cmp.Compare(severityRank(a.WorstSeverity), severityRank(b.WorstSeverity)), cmp.Compare(a.KioskID, b.KioskID))
	})
	return o, nil
}

// KioskDetail is the page of one kiosk.
type KioskDetail struct {
	Summary    KioskSummary    `json:"summary"`
	Record     KioskRecord     `json:"record"`
	Open       []AlarmRecord   `json:"open_alarms"`
	History    []Event         `json:"history"`
	Commands   []CommandRecord `json:"commands"`
	Devices    []wire.Device   `json:"devices"`
	Cassette   *wire.Cassette  `json:"cassette,omitempty"`
	DaysToFull float64         `json:"days_to_full"` // -1: unknown (no trend, or not filling)
	ClockSkew  time.Duration   `json:"clock_skew_ns"`
}

// Kiosk computes the page of one kiosk.
func (f *Fleet) Kiosk(id string) (KioskDetail, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now().UTC()
	var d KioskDetail
	k, err := f.store.Kiosk(id)
	if err != nil {
		return d, err
	}
	all, err := f.store.Alarms(id, false)
	if err != nil {
		return d, err
	}
	d.Record = k
	d.Summary = f.summarize(k, all, now)
	for _, a := range all {
		if a.Open {
			d.Open = append(d.Open, a)
		}
	}
	slices.SortFunc(d.Open, func(a, b AlarmRecord) int {
		return cmp.Or(-cmp.Compare(severityRank(a.Severity), severityRank(b.Severity)), a.RaisedAt.Compare(b.RaisedAt))
	})
	if d.History, err = f.store.History(id, 50); err != nil {
		return d, err
	}
	if d.Commands, err = f.store.Commands(id, 20); err != nil {
		return d, err
	}
	d.DaysToFull = DaysToFull(k.Fill)
	if h := k.Heartbeat; h != nil {
		d.Devices = h.Devs()
		d.Cassette = h.CassetteFill()
		d.ClockSkew = ClockOffset(h, k.HeartbeatAt)
	}
	return d, nil
}

// ClockOffset is the kiosk's clock minus the console's receive time of its heartbeat (a few
// hundred ms of transit at most; minutes mean a wrong clock). 0 when the kiosk sent no clock.
func ClockOffset(h *wire.Heartbeat, receivedAt time.Time) time.Duration {
	c := h.Clock
	if c.IsZero() {
		c = h.At
	}
	if c.IsZero() || receivedAt.IsZero() {
		return 0
	}
	return c.Sub(receivedAt)
}

// DaysToFull estimates when the cassette is full from the fill trend: a least-squares line
// through the samples (since the last emptying) extrapolated to 1.0. -1 when it cannot say:
// fewer than two samples over less than an hour, or a flat or falling trend.
func DaysToFull(samples []FillSample) float64 {
	n := len(samples)
	if n < 2 || samples[n-1].At.Sub(samples[0].At) < time.Hour {
		return -1
	}
	t0 := samples[0].At
	var sx, sy, sxx, sxy float64
	for _, s := range samples {
		x := s.At.Sub(t0).Hours() / 24
		sx += x
		sy += s.Ratio
		sxx += x * x
		sxy += x * s.Ratio
	}
	fn := float64(n)
	den := fn*sxx - sx*sx
	if den == 0 {
		return -1
	}
	slope := (fn*sxy - sx*sy) / den // fill per day
	if slope <= 0 || math.IsNaN(slope) {
		return -1
	}
	last := samples[n-1].Ratio
	return math.Max(0, (1-last)/slope)
}
