// Package health is the kiosk's registry of named conditions (alarms): a jammed acceptor, an
// open vault, a printer out of paper, an uncertain note, a forged QR code. Components raise and
// clear conditions by kind; the registry keeps the active set for diagnostics and the customer
// screen, and tells its listeners (the journal, the MQTT uplink) about every change so central
// operations see the same picture.
//
// A condition is either persistent (active until cleared: a door open) or an event (raised
// once, never active: a forged QR code was scanned).
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
	ID       string    `json:"alarm_id"`
	Kind     string    `json:"kind"`
	Severity Severity  `json:"severity"`
	Actor    Actor     `json:"actor"`
	Effect   Effect    `json:"effect"`
	Detail   string    `json:"details"`
	Since    time.Time `json:"since"`
	// Event is set for one-shot conditions that are never active.
	Event bool `json:"event,omitempty"`
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
	listeners []func(Condition)
}

// New returns an empty registry. bootID makes alarm ids unique across restarts.
func New(bootID string, now func() time.Time) *Registry {
	if now == nil {
		now = time.Now
	}
	return &Registry{now: now, active: map[string]Condition{}, bootID: bootID}
}

// Listen registers fn for every change; fn must not block and must not call back into the
// registry.
func (r *Registry) Listen(fn func(Condition)) {
	r.mu.Lock()
	r.listeners = append(r.listeners, fn)
	r.mu.Unlock()
}

// Set raises or updates a persistent condition. Raising an already active kind with the same
// detail is a no-op, so polling code may call it repeatedly.
func (r *Registry) Set(kind string, sev Severity, actor Actor, eff Effect, detail string) {
	r.mu.Lock()
	if c, ok := r.active[kind]; ok && c.Detail == detail && c.Severity == sev {
		r.mu.Unlock()
		return
	}
	r.counter++
	c := Condition{ID: fmt.Sprintf("%s-%d", r.bootID, r.counter), Kind: kind, Severity: sev, Actor: actor, Effect: eff, Detail: detail, Since: r.now().UTC()}
	r.active[kind] = c
	ls := slices.Clone(r.listeners)
	r.mu.Unlock()
	for _, l := range ls {
		l(c)
	}
}

// Event raises a one-shot condition.
func (r *Registry) Event(kind string, sev Severity, actor Actor, detail string) {
	r.mu.Lock()
	r.counter++
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
	c.Cleared = true
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
