package ssp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
)

// A byte-exact scripted fake of the unit, in the manner of periph's conntest: every frame the
// host sends must be exactly the next one of the script, the fake answers with the scripted
// bytes, and check() fails the test unless the whole script was played and nothing else was
// sent. Scripts are written with a builder that tracks the sequence flag the way the SSP
// manual wants it: SYNC sets it, every new command flips it, a re-sent packet keeps it.

type step struct {
	host []byte   // the frame the host must send next
	unit [][]byte // what the unit writes back, one Write per element; none = no answer
	then func()   // runs after the answer was written
}

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
func newPlayback(t testing.TB, script []step) (*playback, net.Conn) {
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

// readFrame reads one whole frame as the host sent it, with any bytes before it.
func (p *playback) readFrame() ([]byte, error) {
	var dec Decoder
	var raw []byte
	b := make([]byte, 1)
	for {
		if _, err := io.ReadFull(p.conn, b); err != nil {
			return raw, err
		}
		raw = append(raw, b[0])
		dec.Feed(b)
		if _, err := dec.Next(); err == nil {
			return raw, nil
		} else if !errors.Is(err, ErrIncomplete) {
			return raw, err
		}
	}
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

// frame encodes a frame for address 0; the encoder itself is pinned by the frame table.
func frame(seq bool, data ...byte) []byte {
	b, err := Encode(Frame{Seq: seq, Data: data})
	if err != nil {
		panic(err)
	}
	return b
}

// sb builds a script, tracking the sequence flag.
type sb struct {
	seq   bool
	steps []step
}

func (b *sb) flag(cmd byte) bool {
	if cmd == CmdSync {
		return true
	}
	return !b.seq
}

// ask: the host sends cmd (a new packet), the unit answers with reply.
func (b *sb) ask(cmd []byte, reply ...byte) *sb {
	f := b.flag(cmd[0])
	b.steps = append(b.steps, step{host: frame(f, cmd...), unit: [][]byte{frame(f, reply...)}})
	b.seq = f
	return b
}

// askThen is ask with a hook run after the answer.
func (b *sb) askThen(then func(), cmd []byte, reply ...byte) *sb {
	b.ask(cmd, reply...)
	b.steps[len(b.steps)-1].then = then
	return b
}

// silent: the host sends cmd and gets no answer; the next ask or silent of the same packet
// re-sends it with the same flag.
func (b *sb) silent(cmd ...byte) *sb {
	b.steps = append(b.steps, step{host: frame(b.flag(cmd[0]), cmd...)})
	return b
}

// raw: the host sends cmd and the unit answers with arbitrary chunks; commit says whether
// the packet counts as answered (the flag flips).
func (b *sb) raw(commit bool, cmd []byte, unit ...[]byte) *sb {
	f := b.flag(cmd[0])
	b.steps = append(b.steps, step{host: frame(f, cmd...), unit: unit})
	if commit {
		b.seq = f
	}
	return b
}

// reply is the frame the unit sends for the next new packet of cmd, for raw steps.
func (b *sb) reply(cmd byte, data ...byte) []byte { return frame(b.flag(cmd), data...) }

func c(cmd byte, args ...byte) []byte { return append([]byte{cmd}, args...) }

func ok(data ...byte) []byte { return append([]byte{RespOK}, data...) }

// poll: POLL answered with events.
func (b *sb) poll(events ...byte) *sb { return b.ask(c(CmdPoll), ok(events...)...) }

// Test fixtures: a CNY table for channels 1..3, and the setup of a unit that matches it.
var testDenoms = acceptor.Denominations{
	1: {ValueMinor: 100, Currency: "CNY"},  // 1 yuan
	2: {ValueMinor: 500, Currency: "CNY"},  // 5 yuan
	3: {ValueMinor: 1000, Currency: "CNY"}, // 10 yuan
}

var testSetup = Setup{
	UnitType: UnitValidator, Firmware: "0380", Country: "CNY", ValueMultiplier: 1,
	ProtocolVersion: 7, RealValueMultiplier: 100, Security: []byte{2, 2, 2},
	Channels: []Channel{{1, 1, "CNY"}, {2, 5, "CNY"}, {3, 10, "CNY"}},
}

const testSerial = 0x001C962C // 1873452, GA138's example

func serialReply(s uint32) []byte {
	return ok(byte(s>>24), byte(s>>16), byte(s>>8), byte(s))
}

// link is SYNC and HOST PROTOCOL VERSION 7.
func (b *sb) link() *sb {
	return b.ask(c(CmdSync), RespOK).ask(c(CmdHostProtocol, 7), RespOK)
}

// probe is the start-up HOLD answered "no note in escrow".
func (b *sb) probe() *sb { return b.ask(c(CmdHold), RespCannotProcess) }

// configure is the setup (when first), serial, inhibits for channels 1..3 and DISABLE.
func (b *sb) configure(first bool, serial uint32) *sb {
	if first {
		b.ask(c(CmdSetupRequest), ok(AppendSetup(nil, testSetup)...)...)
	}
	return b.ask(c(CmdGetSerial), serialReply(serial)...).
		ask(c(CmdSetInhibits, 0x07, 0x00), RespOK).
		ask(c(CmdDisable), RespOK)
}

// running is a unit found idle and disabled by a fresh Run, configured, then enabled for
// channels 1 and 3 by the test (enableOnIdentified).
func (b *sb) running() *sb {
	b.link().probe().poll(EvDisabled).configure(true, testSerial)
	return b.ask(c(CmdSetInhibits, 0x05, 0x00), RespOK).ask(c(CmdEnable), RespOK)
}

// shutdown is the DISABLE Run sends on its way out.
func (b *sb) shutdown() *sb { return b.ask(c(CmdDisable), RespOK) }

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

// enableOnIdentified makes the handler call Enable(1, 3) once the driver is configured.
func enableOnIdentified(t *testing.T, ctx context.Context, d *Driver, next func(acceptor.Event)) func(acceptor.Event) {
	return func(e acceptor.Event) {
		if e.Kind == acceptor.Identified {
			go func() {
				if err := d.Enable(ctx, []int{1, 3}); err != nil && ctx.Err() == nil {
					t.Errorf("Enable: %v", err)
				}
			}()
		}
		if next != nil {
			next(e)
		}
	}
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

// testConfig is the driver configuration of the playback tests: plain POLL, a short
// power-up settle time.
func testConfig() Config {
	return Config{Denominations: testDenoms, PollMode: PollPlain, PowerUpSettle: time.Millisecond}
}
