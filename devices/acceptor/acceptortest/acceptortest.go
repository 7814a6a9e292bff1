// Package acceptortest has test helpers for acceptor drivers: a Handler that records every
// call, and small checks on what it recorded.
package acceptortest

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
)

// Recorder is an acceptor.Handler that records every call. Its hooks, set before the driver
// runs, decide what the calls answer; each gets the call's number (1 for the first).
type Recorder struct {
	// Decide answers Escrow; nil stacks every note.
	Decide func(n acceptor.Note, call int) acceptor.Decision
	// Credit answers Credited; nil records every credit.
	Credit func(n acceptor.Note, call int) error
	// OnEvent sees every event after it was recorded.
	OnEvent func(e acceptor.Event)

	mu      sync.Mutex
	events  []acceptor.Event
	escrows []acceptor.Note
	credits []acceptor.Note
}

var _ acceptor.Handler = (*Recorder)(nil)

// Escrow implements acceptor.Handler.
func (r *Recorder) Escrow(ctx context.Context, n acceptor.Note) acceptor.Decision {
	r.mu.Lock()
	r.escrows = append(r.escrows, n)
	call := len(r.escrows)
	decide := r.Decide
	r.mu.Unlock()
	if decide == nil {
		return acceptor.Stack
	}
	return decide(n, call)
}

// Credited implements acceptor.Handler.
func (r *Recorder) Credited(ctx context.Context, n acceptor.Note) error {
	r.mu.Lock()
	r.credits = append(r.credits, n)
	call := len(r.credits)
	credit := r.Credit
	r.mu.Unlock()
	if credit == nil {
		return nil
	}
	return credit(n, call)
}

// Event implements acceptor.Handler.
func (r *Recorder) Event(ctx context.Context, e acceptor.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	on := r.OnEvent
	r.mu.Unlock()
	if on != nil {
		on(e)
	}
}

// Events returns the events so far.
func (r *Recorder) Events() []acceptor.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// Kinds returns the kinds of the events so far, in order.
func (r *Recorder) Kinds() []acceptor.Kind {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]acceptor.Kind, len(r.events))
	for i, e := range r.events {
		out[i] = e.Kind
	}
	return out
}

// EventsOf returns the events of kind k so far.
func (r *Recorder) EventsOf(k acceptor.Kind) []acceptor.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []acceptor.Event
	for _, e := range r.events {
		if e.Kind == k {
			out = append(out, e)
		}
	}
	return out
}

// Count is how many events of kind k came so far.
func (r *Recorder) Count(k acceptor.Kind) int { return len(r.EventsOf(k)) }

// Last returns the latest event of kind k, the zero Event when none came.
func (r *Recorder) Last(k acceptor.Kind) acceptor.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.events) - 1; i >= 0; i-- {
		if r.events[i].Kind == k {
			return r.events[i]
		}
	}
	return acceptor.Event{}
}

// CreditCalls returns the notes of every Credited call so far, successful or not.
func (r *Recorder) CreditCalls() []acceptor.Note {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.credits)
}

// EscrowCalls returns the notes of every Escrow call so far.
func (r *Recorder) EscrowCalls() []acceptor.Note {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.escrows)
}

// CancelOn returns an OnEvent hook that calls cancel when the n-th event of kind k arrives.
func CancelOn(cancel context.CancelFunc, k acceptor.Kind, n int) func(acceptor.Event) {
	seen := 0
	return func(e acceptor.Event) {
		if e.Kind == k {
			seen++
			if seen == n {
				cancel()
			}
		}
	}
}

// WantKinds fails the test unless got is exactly want.
func WantKinds(t testing.TB, got []acceptor.Kind, want ...acceptor.Kind) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
}

// Eventually polls cond every 10 ms and fails the test when it is still false after 10 s:
// on the fake clock inside a synctest bubble (where the wait costs nothing), on the real one
// in end-to-end tests over a pty.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// NoRunError fails the test when a driver's Run returned an error other than a cancelled
// context.
func NoRunError(t testing.TB, err error) {
	t.Helper()
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}

// PowerUps is a Recorder whose handler also records power-up reports
// (acceptor.PowerUpRecorder), so a driver resets a powered-up unit only once PowerUp
// accepted its report. Each report is recorded as an event too (Events, Kinds, OnEvent).
type PowerUps struct {
	Recorder
	// Record answers PowerUp; nil accepts every report.
	Record func(e acceptor.Event, call int) error

	pmu   sync.Mutex
	calls []acceptor.Event
}

var _ acceptor.PowerUpRecorder = (*PowerUps)(nil)

// PowerUp implements acceptor.PowerUpRecorder.
func (p *PowerUps) PowerUp(ctx context.Context, e acceptor.Event) error {
	p.pmu.Lock()
	p.calls = append(p.calls, e)
	call := len(p.calls)
	record := p.Record
	p.pmu.Unlock()
	var err error
	if record != nil {
		err = record(e, call)
	}
	if err == nil {
		p.Event(ctx, e)
	}
	return err
}

// PowerUpCalls returns every PowerUp call so far, refused ones included.
func (p *PowerUps) PowerUpCalls() []acceptor.Event {
	p.pmu.Lock()
	defer p.pmu.Unlock()
	return slices.Clone(p.calls)
}
