package seriallink

import (
	"context"
	"errors"
	"sync"
)

// ErrStopped is what Mailbox.Do returns when no loop is running to serve the request: Run
// has not started, has ended, or ended while the request waited.
var ErrStopped = errors.New("seriallink: not running")

// errAlreadyOpen is returned by open while another Run holds the mailbox.
var errAlreadyOpen = errors.New("seriallink: already running")

// Envelope is one request in the mailbox, with the place its answer goes.
type Envelope[R any] struct {
	Req  R
	done chan error
}

// Mailbox hands requests from any goroutine (Enable, Inhibit, Reset, ...) to the one loop
// that talks to the unit, and carries the answer back. A request is served between two poll
// cycles, never during one, so commands and polls never interleave on the wire. The zero
// value is ready to use; requests fail with ErrStopped until a loop opens the mailbox.
type Mailbox[R any] struct {
	once sync.Once
	reqs chan Envelope[R]

	mu   sync.Mutex
	stop chan struct{} // non-nil while a loop is open; closed when it stops
}

func (m *Mailbox[R]) init() {
	m.once.Do(func() { m.reqs = make(chan Envelope[R]) })
}

// open marks the mailbox served. It fails while another loop has it open.
func (m *Mailbox[R]) open() error {
	m.init()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stop != nil {
		return errAlreadyOpen
	}
	m.stop = make(chan struct{})
	return nil
}

// close marks the mailbox unserved: a request waiting to be taken, or taken and waiting
// for its answer, returns ErrStopped at once.
func (m *Mailbox[R]) close() {
	m.mu.Lock()
	stop := m.stop
	m.stop = nil
	m.mu.Unlock()
	if stop != nil {
		close(stop)
	}
}

// Do hands r to the loop and waits for the answer. It waits while the loop does not take
// requests (the unit is still being brought up); ctx bounds that wait. It returns
// ErrStopped when no loop runs or the loop stops before answering, ctx's error when ctx
// ends first, and otherwise what the loop answered.
func (m *Mailbox[R]) Do(ctx context.Context, r R) error {
	m.init()
	m.mu.Lock()
	stop := m.stop
	m.mu.Unlock()
	if stop == nil {
		return ErrStopped
	}
	e := Envelope[R]{Req: r, done: make(chan error, 1)}
	select {
	case m.reqs <- e:
	case <-stop:
		return ErrStopped
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-e.done:
		return err
	case <-stop:
		return ErrStopped
	case <-ctx.Done():
		return ctx.Err()
	}
}

// requests is the channel the loop takes requests from.
func (m *Mailbox[R]) requests() <-chan Envelope[R] {
	m.init()
	return m.reqs
}

// reply answers the request. It never blocks: the answer has room of its own, and a caller
// that gave up (ctx, stop) just never reads it.
func (e Envelope[R]) reply(err error) { e.done <- err }
