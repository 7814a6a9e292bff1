package ccnet

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
// sent.

type step struct {
	host  []byte        // the frame the host must send next
	unit  [][]byte      // what the unit writes back, one Write per element; none = no answer
	pause time.Duration // silence between the unit's writes
	then  func()        // runs after the answer was written
}

// ask is a step where the host sends host and the unit answers with one frame.
func ask(host, unit []byte) []step { return []step{{host: host, unit: [][]byte{unit}}} }

// silent is a step where the unit does not answer.
func silent(host []byte) []step { return []step{{host: host}} }

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
func readFrame(r io.Reader) ([]byte, error) {
	head := make([]byte, 3)
	if _, err := io.ReadFull(r, head); err != nil {
		return nil, err
	}
	if head[0] != Sync {
		return head, fmt.Errorf("not a frame start: % X", head)
	}
	n := int(head[2])
	if n == 0 {
		ext := make([]byte, 3)
		if _, err := io.ReadFull(r, ext); err != nil {
			return head, err
		}
		head = append(head, ext...)
		n = int(ext[1])<<8 | int(ext[2])
	}
	if n < len(head)+2 {
		return head, fmt.Errorf("impossible length in % X", head)
	}
	rest := make([]byte, n-len(head))
	if _, err := io.ReadFull(r, rest); err != nil {
		return head, err
	}
	return append(head, rest...), nil
}

func (p *playback) serve() {
	defer close(p.done)
	for i, s := range p.script {
		got, err := readFrame(p.conn)
		if err != nil {
			p.fail("step %d: want % X, got % X and %v", i, s.host, got, err)
			return
		}
		if string(got) != string(s.host) {
			p.fail("step %d: host sent % X, want % X", i, got, s.host)
			return
		}
		for j, chunk := range s.unit {
			if j > 0 && s.pause > 0 {
				time.Sleep(s.pause)
			}
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
	if got, err := readFrame(p.conn); err == nil || len(got) > 0 {
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

// fr encodes a frame for the bill validator address; the encoder itself is pinned by the
// literal frame table.
func fr(cmd byte, data ...byte) []byte {
	b, err := Encode(AddrBillValidator, cmd, data...)
	if err != nil {
		panic(err)
	}
	return b
}

var (
	pollReq = fr(CmdPoll)
	ackF    = fr(CmdAck)
	nakF    = fr(CmdNak)
	illegal = fr(RepIllegalCommand)
)

// hostAck is the host's ACK of a reply; the unit does not answer it.
func hostAck() []step { return silent(ackF) }

// poll is POLL answered by a state (and data), then the host's ACK.
func poll(status byte, data ...byte) []step {
	return script(ask(pollReq, fr(status, data...)), hostAck())
}

// pollStacked is POLL answered by STACKED: whether the host ACKs is up to the test.
func pollStacked(billType byte) []step { return ask(pollReq, fr(StStacked, billType)) }

// command is a command the unit acknowledges with ACK.
func command(cmd byte, data ...byte) []step { return ask(fr(cmd, data...), ackF) }

// dataReq is a command answered with data, then the host's ACK.
func dataReq(cmd byte, reply []byte) []step {
	return script(ask(fr(cmd), fr(reply[0], reply[1:]...)), hostAck())
}

// then makes f run once the last of steps was answered.
func then(steps []step, f func()) []step {
	steps[len(steps)-1].then = f
	return steps
}

func script(parts ...[]step) []step {
	var out []step
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

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

// Test fixtures: a CNY table for bill types 0..2. Type 0 is a real bill type in CCNET.
var testDenoms = acceptor.Denominations{
	0: {ValueMinor: 1000, Currency: "CNY"}, // 10 yuan
	1: {ValueMinor: 2000, Currency: "CNY"}, // 20 yuan
	2: {ValueMinor: 5000, Currency: "CNY"}, // 50 yuan
}

var (
	ten    = acceptor.Note{Code: 0, ValueMinor: 1000, Currency: "CNY"}
	twenty = acceptor.Note{Code: 1, ValueMinor: 2000, Currency: "CNY"}
	fifty  = acceptor.Note{Code: 2, ValueMinor: 5000, Currency: "CNY"}
)

var testIdent = identWire[3 : len(identWire)-2]

var testBillTable = AppendBillTable(nil, []BillEntry{
	{Value: 1, Country: [3]byte{'C', 'H', 'N'}, Exponent: 1},
	{Value: 2, Country: [3]byte{'C', 'H', 'N'}, Exponent: 1},
	{Value: 5, Country: [3]byte{'C', 'H', 'N'}, Exponent: 1},
})

var testStatus = []byte{0x00, 0x00, 0x00, 0x00, 0x00, 0x00}

// identifySteps reads GET STATUS, IDENTIFICATION and the bill table.
func identifySteps() []step {
	return script(
		dataReq(CmdGetStatus, testStatus),
		dataReq(CmdIdentification, testIdent),
		dataReq(CmdGetBillTable, testBillTable),
	)
}

// settingsSteps is SET SECURITY and the inhibiting ENABLE BILL TYPES.
func settingsSteps() []step {
	return script(
		command(CmdSetSecurity, 0, 0, 0),
		command(CmdEnableBillTypes, 0, 0, 0, 0xFF, 0xFF, 0xFF),
	)
}

// configSteps is the configuration after a RESET or on a unit found quiet; with identify it
// also reads the unit's identity (first configuration of a Run in a state that allows it).
func configSteps(identify bool) []step {
	if identify {
		return script(identifySteps(), settingsSteps())
	}
	return settingsSteps()
}

// shutdownSteps is the inhibit Run sends on its way out.
func shutdownSteps() []step { return command(CmdEnableBillTypes, 0, 0, 0, 0xFF, 0xFF, 0xFF) }

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
