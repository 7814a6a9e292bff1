// Package playbacktest is a byte-exact scripted fake of a serial device, for driver tests.
//
// A script is a list of exchanges: the bytes the host must write next, and what the device
// writes back. The fake compares every byte the host writes with the script as it arrives
// and fails at the first one that differs, or at any byte written after the script ended;
// Check, called once the driver let go of the port, fails the test unless every exchange
// was played. Any failure closes the port, so the driver under test sees its port fail and
// stops instead of waiting for answers that will not come.
//
// The fake runs on one end of a net.Pipe, which has no buffering: a driver's Write returns
// only once the fake has read the bytes, which keeps the exchanges in step. Inside a
// testing/synctest bubble Pause and every timeout of the driver run on the bubble's clock.
package playbacktest

import (
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Step is one exchange of a script.
type Step struct {
	// Host is what the host must write next, byte for byte.
	Host []byte
	// Unit is what the device writes back, one Write per element; none is no answer.
	Unit [][]byte
	// Pause is the silence between two of the device's writes (to tear a frame apart).
	Pause time.Duration
	// Then runs after the answer was written, before the next exchange.
	Then func()
}

// Ask is a step where the host writes host and the device answers with one write.
func Ask(host, unit []byte) Step { return Step{Host: host, Unit: [][]byte{unit}} }

// Silent is a step where the device does not answer.
func Silent(host []byte) Step { return Step{Host: host} }

// Script joins parts into one script.
func Script(parts ...[]Step) []Step {
	var out []Step
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// Fake plays a script on one end of a pipe.
type Fake struct {
	t      testing.TB
	conn   net.Conn
	script []Step
	done   chan struct{}

	mu     sync.Mutex
	played int
	err    error
}

// New starts a fake that plays script, and returns it with the host's end of the pipe.
func New(t testing.TB, script ...Step) (*Fake, net.Conn) {
	host, dev := net.Pipe()
	f := &Fake{t: t, conn: dev, script: script, done: make(chan struct{})}
	go f.serve()
	return f, host
}

func (f *Fake) fail(format string, args ...any) {
	f.mu.Lock()
	if f.err == nil {
		f.err = fmt.Errorf(format, args...)
	}
	f.mu.Unlock()
	f.conn.Close() // the driver sees its port fail and stops
}

// expect reads len(want) bytes one at a time and reports the first that differs, with the
// bytes read so far.
func (f *Fake) expect(want []byte) ([]byte, error) {
	got := make([]byte, 0, len(want))
	b := make([]byte, 1)
	for i := range want {
		if _, err := io.ReadFull(f.conn, b); err != nil {
			return got, err
		}
		got = append(got, b[0])
		if b[0] != want[i] {
			return append(got, f.rest(len(want)-i-1)...), fmt.Errorf("byte %d differs", i)
		}
	}
	return got, nil
}

// rest reads up to n more bytes the host is writing anyway, to show the whole of a wrong
// frame in the failure; it gives up after a short silence.
func (f *Fake) rest(n int) []byte {
	if n <= 0 {
		return nil
	}
	_ = f.conn.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	defer f.conn.SetReadDeadline(time.Time{})
	buf := make([]byte, n)
	m, _ := io.ReadFull(f.conn, buf)
	return buf[:m]
}

func (f *Fake) serve() {
	defer close(f.done)
	for i, s := range f.script {
		got, err := f.expect(s.Host)
		if err != nil {
			f.fail("step %d: host sent % X, want % X (%v)", i, got, s.Host, err)
			return
		}
		for j, chunk := range s.Unit {
			if j > 0 && s.Pause > 0 {
				time.Sleep(s.Pause)
			}
			if _, err := f.conn.Write(chunk); err != nil {
				f.fail("step %d: write answer: %v", i, err)
				return
			}
		}
		f.mu.Lock()
		f.played = i + 1
		f.mu.Unlock()
		if s.Then != nil {
			s.Then()
		}
	}
	b := make([]byte, 1)
	if n, _ := f.conn.Read(b); n > 0 {
		f.fail("after the script: host sent % X", append(b[:1], f.rest(64)...))
	}
}

// Played is how many steps were played so far.
func (f *Fake) Played() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.played
}

// Check waits for the fake to finish (the host closed its end, or the fake failed) and fails
// the test unless every step was played and nothing else was sent. Call it from the test's
// goroutine after the driver released the port.
func (f *Fake) Check() {
	f.t.Helper()
	<-f.done
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		f.t.Fatalf("playback: %v (after %d of %d steps)", f.err, f.played, len(f.script))
	}
	if f.played != len(f.script) {
		f.t.Fatalf("playback: only %d of %d steps played", f.played, len(f.script))
	}
}

// ReadFrame reads from r one byte at a time until complete says the bytes so far are one
// whole frame; complete returns (false, nil) to ask for more and an error for bytes that
// can never become a frame. It is for fakes that answer by what the host sent (fuzz tests)
// rather than by a script.
func ReadFrame(r io.Reader, complete func(b []byte) (bool, error)) ([]byte, error) {
	var got []byte
	b := make([]byte, 1)
	for {
		if _, err := io.ReadFull(r, b); err != nil {
			return got, err
		}
		got = append(got, b[0])
		done, err := complete(got)
		if err != nil {
			return got, err
		}
		if done {
			return got, nil
		}
	}
}
