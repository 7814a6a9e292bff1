package session

import (
	"context"
	"errors"
	"slices"

	"github.com/kioskd/kioskd/devices/acceptor"
)

// The acceptor's note test: in maintenance, a technician feeds one note to see the unit
// read it. The unit is enabled for every configured denomination, and the note in escrow is
// returned, never stacked: it credits nobody, enters no session and no cassette count, and
// the journal records it as a refused note with the reason "acceptor self-test". A unit that
// stacks it all the same (it ignored the return) reports a credit nobody asked for, which
// the engine journals and counts in the cassette like any unexpected credit: the cassette's
// ground truth stays whole either way.

// ErrNoteTest is returned when a note test cannot run now.
var ErrNoteTest = errors.New("session: note test not possible")

// NoteTestResult is what the unit read.
type NoteTestResult struct {
	Code       int    `json:"code"`
	ValueMinor int64  `json:"value_minor"`
	Currency   string `json:"currency"`
	Known      bool   `json:"known"`
}

// noteTest is an armed note test.
type noteTest struct {
	done chan NoteTestResult
}

// NoteTest enables the acceptor in maintenance, waits for one note (or ctx), returns it to
// the tester and inhibits again.
func (e *Engine) NoteTest(ctx context.Context) (NoteTestResult, error) {
	select {
	case <-e.running:
	default:
		return NoteTestResult{}, ErrNotRunning
	}
	nt := &noteTest{done: make(chan NoteTestResult, 1)}
	var err error
	if !e.call(ctx, func(c *core) { err = c.armNoteTest(nt) }) {
		if ctx.Err() != nil {
			return NoteTestResult{}, ctx.Err()
		}
		return NoteTestResult{}, ErrNotRunning
	}
	if err != nil {
		return NoteTestResult{}, err
	}
	select {
	case r := <-nt.done:
		return r, nil
	case <-ctx.Done():
		// Disarm; a note read just now still counts.
		e.call(context.WithoutCancel(ctx), func(c *core) {
			if c.noteTest == nt {
				c.noteTest = nil
				c.advance()
			}
		})
		select {
		case r := <-nt.done:
			return r, nil
		default:
		}
		return NoteTestResult{}, ctx.Err()
	}
}

func (c *core) armNoteTest(nt *noteTest) error {
	switch {
	case c.derive() != Maintenance || c.maintWanted && !c.maintenance:
		return errors.Join(ErrNoteTest, errors.New("the note test runs in maintenance only"))
	case c.e.cfg.Escrowless:
		return errors.Join(ErrNoteTest, errors.New("this unit has no escrow: a test note would be stacked"))
	case c.noteTest != nil:
		return errors.Join(ErrNoteTest, errors.New("a note test is already waiting"))
	case c.stopping || c.exiting || c.rec != nil:
		return errors.Join(ErrNoteTest, errors.New("the kiosk is starting or stopping"))
	}
	c.noteTest = nt
	c.e.log.Info("acceptor note test: waiting for a note")
	c.advance()
	return nil
}

// testCodes are the codes the unit is enabled for during a note test.
func (c *core) testCodes() []int {
	codes := make([]int, 0, len(c.e.cfg.Denominations))
	for code := range c.e.cfg.Denominations {
		codes = append(codes, code)
	}
	slices.Sort(codes)
	return codes
}

// escrowTest returns the test note and reports it.
func (c *core) escrowTest(n acceptor.Note) acceptor.Decision {
	nt := c.noteTest
	c.noteTest = nil
	c.refuse(0, n, "acceptor self-test: test note returned")
	nt.done <- NoteTestResult{Code: n.Code, ValueMinor: n.ValueMinor, Currency: n.Currency, Known: n.Known()}
	c.e.log.Info("acceptor note test: note read and returned", "note", n.String())
	return acceptor.Return
}
