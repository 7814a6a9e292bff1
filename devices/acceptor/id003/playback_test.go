package id003

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/kioskd/kioskd/devices/acceptor"
)

// A byte-exact scripted fake of the unit, in the manner of periph's conntest: every frame the
// host sends must be exactly the next one of the script, the fake answers with the scripted
// bytes, and check() fails the test unless the whole script was played and nothing else was
// sent.

type step struct {
	host []byte   // the frame the host must send next
	unit [][]byte // what the unit writes back, one Write per element; none = no answer
	then func()   // runs after the answer was written
}

// ask is a step where the host sends host and the unit answers with one frame.
func ask(host, unit []byte) step { return step{host: host, unit: [][]byte{unit}} }

// silent is a step where the unit does not answer.
func silent(host []byte) step { return step{host: host} }

type playback struct {
	t      testing.TB
	conn   net.Conn
	script []step
	done   chan struct{}

	mu     sync.Mutex
	played int
	err    error
}

// newPlayback starts the fake on one end of a net.Pipe and returns the host's end.
func newPlayback(t testing.TB, script ...step) (*playback, net.Conn) {
	host, unit := net.Pipe()
	p := &playback{t: t, conn: unit, script: script, done: make(chan struct{})}
	go p.serve()
	return p, host
}

func (p *playback) fail(format string, args ...any) {
	p.mu.Lock()
	if p.err == nil {
		p.err = fmt.Errorf(format, args...)
	}
	p.mu.Unlock()
	p.conn.Close() // the driver sees the port fail and Run returns
}

// readFrame reads one whole frame as the host sent it.
func (p *playback) readFrame() ([]byte, error) {
	head := make([]byte, 2)
	if _, err := io.ReadFull(p.conn, head); err != nil {
		return nil, err
	}
	if head[0] != Sync || head[1] < MinFrameLen {
		return head, fmt.Errorf("not a frame start: % X", head)
	}
	rest := make([]byte, int(head[1])-2)
	if _, err := io.ReadFull(p.conn, rest); err != nil {
		return head, err
	}
	return append(head, rest...), nil
}

func (p *playback) serve() {
	defer close(p.done)
	for i, s := range p.script {
		got, err := p.readFrame()
		if err != nil {
			p.fail("step %d: want % X, got % X and %v", i, s.host, got, err)
			return
		}
		if string(got) != string(s.host) {
			p.fail("step %d: host sent % X, want % X", i, got, s.host)
			return
		}
		for _, chunk := range s.unit {
			if _, err := p.conn.Write(chunk); err != nil {
				p.fail("step %d: write answer: %v", i, err)
				return
			}
		}
		p.mu.Lock()
		p.played = i + 1
		p.mu.Unlock()
		if s.then != nil {
			s.then()
		}
	}
	if got, err := p.readFrame(); err == nil || len(got) > 0 {
		p.fail("after the script: host sent % X (%v)", got, err)
	}
}

// check waits for the fake to finish (the driver closes the port when Run ends) and fails the
// test unless every step was played.
func (p *playback) check() {
	p.t.Helper()
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		p.t.Fatalf("playback: %v (after %d of %d steps)", p.err, p.played, len(p.script))
	}
	if p.played != len(p.script) {
		p.t.Fatalf("playback: only %d of %d steps played", p.played, len(p.script))
	}
}

// fr encodes a frame; the encoder itself is pinned by the literal frame table.
func fr(cmd byte, data ...byte) []byte {
	b, err := Encode(cmd, data...)
	if err != nil {
		panic(err)
	}
	return b
}

var statusReq = fr(CmdStatusRequest)

// recorder is a Handler that records every call.
type recorder struct {
	mu      sync.Mutex
	events  []acceptor.Event
	escrows []acceptor.Note
	credits []acceptor.Note

	decide  func(n acceptor.Note, call int) acceptor.Decision // nil: Stack
	credit  func(n acceptor.Note, call int) error             // nil: accept
	onEvent func(e acceptor.Event)
}

func (r *recorder) Escrow(ctx context.Context, n acceptor.Note) acceptor.Decision {
	r.mu.Lock()
	r.escrows = append(r.escrows, n)
	call := len(r.escrows)
	decide := r.decide
	r.mu.Unlock()
	if decide == nil {
		return acceptor.Stack
	}
	return decide(n, call)
}

func (r *recorder) Credited(ctx context.Context, n acceptor.Note) error {
	r.mu.Lock()
	r.credits = append(r.credits, n)
	call := len(r.credits)
	credit := r.credit
	r.mu.Unlock()
	if credit == nil {
		return nil
	}
	return credit(n, call)
}

func (r *recorder) Event(ctx context.Context, e acceptor.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	on := r.onEvent
	r.mu.Unlock()
	if on != nil {
		on(e)
	}
}

func (r *recorder) kinds() []acceptor.Kind {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]acceptor.Kind, len(r.events))
	for i, e := range r.events {
		out[i] = e.Kind
	}
	return out
}

func (r *recorder) eventsOf(k acceptor.Kind) []acceptor.Event {
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

func (r *recorder) creditCalls() []acceptor.Note {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]acceptor.Note(nil), r.credits...)
}

func (r *recorder) escrowCalls() []acceptor.Note {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]acceptor.Note(nil), r.escrows...)
}

// cancelOn returns an onEvent hook that cancels when the n-th event of kind k arrives.
func cancelOn(cancel context.CancelFunc, k acceptor.Kind, n int) func(acceptor.Event) {
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

// Test fixtures: a CNY table for codes 0x61..0x63.
var testDenoms = acceptor.Denominations{
	0x61: {ValueMinor: 100, Currency: "CNY"},  // 1 yuan
	0x62: {ValueMinor: 500, Currency: "CNY"},  // 5 yuan
	0x63: {ValueMinor: 1000, Currency: "CNY"}, // 10 yuan
}

const testVersion = "i(CHN)100-SS ID003-05V310-00"

var testCurrencyTable = []byte{
	0x61, 0x2D, 0x01, 0x00,
	0x62, 0x2D, 0x05, 0x00,
	0x63, 0x2D, 0x01, 0x01,
}

// configSteps is the settings sequence after a RESET or on a unit found already running; with
// identify it also reads the version and the currency table (first configuration of a Run).
func configSteps(identify bool) []step {
	s := []step{
		ask(fr(CmdSetDenoms, 0xF8, 0xFF), fr(CmdSetDenoms, 0xF8, 0xFF)), // 0x61..0x63 enabled
		ask(fr(CmdSetSecurity, 0x00, 0x00), fr(CmdSetSecurity, 0x00, 0x00)),
		ask(fr(CmdSetCommMode, 0x00), fr(CmdSetCommMode, 0x00)),
		ask(fr(CmdSetInhibit, 0x01), fr(CmdSetInhibit, 0x01)),
	}
	if identify {
		s = append(s,
			ask(fr(CmdVersion), fr(CmdVersion, []byte(testVersion)...)),
			ask(fr(CmdCurrency), fr(CmdCurrency, testCurrencyTable...)),
		)
	}
	return s
}

// shutdownSteps is the inhibit Run sends on its way out.
func shutdownSteps() []step {
	return []step{ask(fr(CmdSetInhibit, 0x01), fr(CmdSetInhibit, 0x01))}
}

func script(parts ...[]step) []step {
	var out []step
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func poll(status byte, data ...byte) step { return ask(statusReq, fr(status, data...)) }

// runDriver runs a driver on port until Run returns and reports Run's error.
func runDriver(ctx context.Context, d *Driver, h acceptor.Handler) <-chan error {
	errc := make(chan error, 1)
	go func() { errc <- d.Run(ctx, h) }()
	return errc
}

func wantKinds(t testing.TB, got []acceptor.Kind, want ...acceptor.Kind) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("events %v, want %v", got, want)
		}
	}
}

func mustNil(t testing.TB, err error) {
	t.Helper()
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}
