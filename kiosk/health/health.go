// Package health is the kiosk's registry of named conditions (alarms): a jammed acceptor, an
// open vault, a printer out of paper, an uncertain note, a forged QR code. Components raise and
// clear conditions by kind; the registry keeps the active set for diagnostics and the customer
// screen, and tells its listeners (the journal, the MQTT uplink) about every change so central
// operations see the same picture.
//
// A condition is either persistent (active until cleared: a door open) or an event (raised
// once, never active: a forged QR code was scanned).
//
// A persistent condition is an alarm with a life: its id is its kind, stable across updates
// and restarts, so central operations see one raise and one clear for it however often the
// code that watches the cause calls Set. An event is not an alarm: the registry counts events
// by kind (Counters) for the heartbeat, and its listeners may log them, but one-off happenings
// (a refused QR code, a rejected note, a bad ack) are neither sent as alarms nor journaled one
// by one.
package health

import (
	"fmt"
	"slices"
	"sync"
	"time"
)

// Severity of a condition.
type Severity string

const (
	Info     Severity = "info"
	Warning  Severity = "warning"
	Critical Severity = "critical"
)

// Actor is who must act.
type Actor string

const (
	None     Actor = "none"
	Staff    Actor = "staff"    // staff on site can clear it (paper, cassette, door)
	Engineer Actor = "engineer" // needs a technician (jam, failure, corrupt journal)
	Ops      Actor = "ops"      // central operations must act (a top-up conflict at the ledger)
)

// Effect is what a condition does to the kiosk.
type Effect int

const (
	// NoEffect: informative.
	NoEffect Effect = iota
	// Degrades: the kiosk keeps serving, with a reduced service (no receipts, offline).
	Degrades
	// StopsService: no cash is accepted while it is active.
	StopsService
)

// Condition is one alarm.
type Condition struct {
	ID       string   `json:"alarm_id"`
	Kind     string   `json:"kind"`
	Severity Severity `json:"severity"`
	Actor    Actor    `json:"actor"`
	Effect   Effect   `json:"effect"`
	Detail   string   `json:"details"`
	// Since is when the change happened: the raise, the update, the clear, the event.
	Since time.Time `json:"since"`
	// RaisedAt is when the condition was raised (kept across updates and on its clear).
	RaisedAt time.Time `json:"raised_at,omitzero"`
	// Event is set for one-shot conditions that are never active.
	Event bool `json:"event,omitempty"`
	// Updated is set when an active condition changed its detail or severity: not a new
	// raise (same id, same RaisedAt).
	Updated bool `json:"updated,omitempty"`
	// Cleared is set on the change that clears it.
	Cleared bool `json:"cleared,omitempty"`
}

// Registry holds the active conditions.
type Registry struct {
	mu        sync.Mutex
	now       func() time.Time
	active    map[string]Condition
	counter   uint64
	bootID    string
	counts    map[string]uint64
	listeners []func(Condition)
}

// New returns an empty registry. bootID makes alarm ids unique across restarts.
func New(bootID string, now func() time.Time) *Registry {
	if now == nil {
		now = time.Now
	}
	return &Registry{now: now, active: map[string]Condition{}, bootID: bootID, counts: map[string]uint64{}}
}

// Listen registers fn for every change; fn must not block and must not call back into the
// registry.
func (r *Registry) Listen(fn func(Condition)) {
	r.mu.Lock()
	r.listeners = append(r.listeners, fn)
	r.mu.Unlock()
}

// AlarmID is the alarm id of a persistent condition of kind: the kind itself, so that the
// raise and the clear of a condition carry the same id, also across a restart while its
// cause stands.
func AlarmID(kind string) string { return kind }

// Set raises or updates a persistent condition. Raising an already active kind with the same
// detail is a no-op, so polling code may call it repeatedly; a changed detail, severity or
// effect is an update of the same alarm (Updated, same id and RaisedAt), not a new raise.
func (r *Registry) Set(kind string, sev Severity, actor Actor, eff Effect, detail string) {
	r.mu.Lock()
	old, ok := r.active[kind]
	if ok && old.Detail == detail && old.Severity == sev && old.Effect == eff && old.Actor == actor {
		r.mu.Unlock()
		return
	}
	now := r.now().UTC()
	c := Condition{ID: AlarmID(kind), Kind: kind, Severity: sev, Actor: actor, Effect: eff, Detail: detail, Since: now, RaisedAt: now}
	if ok {
		c.RaisedAt, c.Updated = old.RaisedAt, true
	}
	r.active[kind] = c
	ls := slices.Clone(r.listeners)
	r.mu.Unlock()
	for _, l := range ls {
		l(c)
	}
}

// Event reports a one-shot happening: it is counted by kind (Counters) and passed to the
// listeners, never kept active.
func (r *Registry) Event(kind string, sev Severity, actor Actor, detail string) {
	r.mu.Lock()
	r.counter++
	r.counts[kind]++
	c := Condition{ID: fmt.Sprintf("%s-%d", r.bootID, r.counter), Kind: kind, Severity: sev, Actor: actor, Detail: detail, Since: r.now().UTC(), Event: true}
	ls := slices.Clone(r.listeners)
	r.mu.Unlock()
	for _, l := range ls {
		l(c)
	}
}

// Clear ends a persistent condition; clearing an inactive kind is a no-op.
func (r *Registry) Clear(kind string) {
	r.mu.Lock()
	c, ok := r.active[kind]
	if !ok {
		r.mu.Unlock()
		return
	}
	delete(r.active, kind)
	c.Cleared, c.Updated = true, false
	c.Since = r.now().UTC()
	ls := slices.Clone(r.listeners)
	r.mu.Unlock()
	for _, l := range ls {
		l(c)
	}
}

// Active returns the active conditions sorted by kind.
func (r *Registry) Active() []Condition {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Condition, 0, len(r.active))
	for _, c := range r.active {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Condition) int {
		if a.Kind < b.Kind {
			return -1
		}
		if a.Kind > b.Kind {
			return 1
		}
		return 0
	})
	return out
}

// Has reports whether kind is active.
func (r *Registry) Has(kind string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.active[kind]
	return ok
}

// Worst returns the strongest effect among the active conditions and their kinds.
func (r *Registry) Worst() (Effect, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	worst := NoEffect
	var kinds []string
	for k, c := range r.active {
		if c.Effect > worst {
			worst, kinds = c.Effect, nil
		}
		if c.Effect == worst && worst != NoEffect {
			kinds = append(kinds, k)
		}
	}
	slices.Sort(kinds)
	return worst, kinds
}

// Counters returns how many events of each kind were reported since the registry was made.
func (r *Registry) Counters() map[string]uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]uint64, len(r.counts))
	for k, n := range r.counts {
		out[k] = n
	}
	return out
}

// Count adds n to the counter of kind without telling the listeners: for happenings that are
// only ever counted (refused commands, reconnects).
func (r *Registry) Count(kind string, n uint64) {
	r.mu.Lock()
	r.counts[kind] += n
	r.mu.Unlock()
}
