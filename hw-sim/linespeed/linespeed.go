// Package linespeed makes an emulator's port behave like a serial line of a given baud rate.
//
// A pseudo-terminal has no baud rate: whatever the daemon writes is readable by the emulator
// at once, and the emulator's replies are readable by the daemon at once. A real line moves
// one character per ByteTime (9600 baud 8E1 = 11 bits a character, about 1.15 ms), so a
// 1,000-byte receipt reaches a 9600-baud printer over about a second, and a driver that asks
// for the printer's status right after its write returned waits behind that second. Tests on
// a pty cannot see that kind of bug; an emulator whose port is wrapped by Wrap can:
//
//   - it takes the host's bytes no faster than the line delivers them: a byte read at instant
//     t is handed to the emulator at t + ByteTime, the next one ByteTime later, and so on;
//   - its own writes go out at the same pace: byte i of a reply reaches the host at
//     start + (i+1)·ByteTime.
//
// Times are absolute (start + i·ByteTime), so a late wake-up of the emulator never slows the
// line down, it only hands over several characters at once, as a UART's FIFO does.
//
// What it cannot know: when the host wrote bytes that were already waiting when the emulator
// read them. They are taken as written at the moment of the read, which can only make the
// line look slower than it is, never faster.
package linespeed

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Line is a serial line's speed. The zero Line is "no line": Wrap leaves the port as it is.
type Line struct {
	// Baud is the line's bit rate.
	Baud int `json:"baud"`
	// BitsPerByte is how many bit times one character takes on the wire: start bit, data
	// bits, parity bit, stop bits (8N1 = 10, 8E1 = 11, 8N2 = 11).
	BitsPerByte int `json:"bits_per_byte"`
}

// The factory settings of the kiosk's devices (each driver's doc.go lists them).
var (
	// ID003 is JCM ID-003: 9600 8E1.
	ID003 = Line{Baud: 9600, BitsPerByte: 11}
	// CCNET is CashCode CCNET: 9600 8N1.
	CCNET = Line{Baud: 9600, BitsPerByte: 10}
	// SSP is ITL SSP: 9600 8N2.
	SSP = Line{Baud: 9600, BitsPerByte: 11}
	// Printer is an ESC/POS receipt printer at its common default, 9600 8N1.
	Printer = Line{Baud: 9600, BitsPerByte: 10}
	// Scanner is a serial QR scanner at 9600 8N1.
	Scanner = Line{Baud: 9600, BitsPerByte: 10}
)

// On reports whether the line paces anything.
func (l Line) On() bool { return l.Baud > 0 }

// Validate reports whether l can be used: zero (off), or a positive baud rate with 7 to 13
// bits a character (5 data bits, no parity, 1 stop bit is 7; 9 data bits, parity, 2 stop
// bits is 13).
func (l Line) Validate() error {
	switch {
	case l == Line{}:
		return nil
	case l.Baud <= 0:
		return fmt.Errorf("linespeed: baud %d", l.Baud)
	case l.BitsPerByte < 7 || l.BitsPerByte > 13:
		return fmt.Errorf("linespeed: %d bits per character", l.BitsPerByte)
	}
	return nil
}

// ByteTime is how long one character takes on the line (0 when the line is off).
func (l Line) ByteTime() time.Duration {
	if !l.On() {
		return 0
	}
	return time.Duration(l.BitsPerByte) * time.Second / time.Duration(l.Baud)
}

// Duration is how long n characters take on the line, rounded up to the nanosecond so that
// n characters are complete at exactly Duration(n). It is computed in one step so that
// rounding does not add up over a long document.
func (l Line) Duration(n int) time.Duration {
	if !l.On() || n <= 0 {
		return 0
	}
	bits := int64(n) * int64(l.BitsPerByte) * int64(time.Second)
	return time.Duration((bits + int64(l.Baud) - 1) / int64(l.Baud))
}

// bytesIn is how many whole characters the line carries in d.
func (l Line) bytesIn(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	return int(int64(d) * int64(l.Baud) / (int64(l.BitsPerByte) * int64(time.Second)))
}

func (l Line) String() string {
	if !l.On() {
		return "off"
	}
	return fmt.Sprintf("%d baud, %d bits/char", l.Baud, l.BitsPerByte)
}

// Parse reads a line setting as "9600" (8N1), "9600 8E1", "9600/8N2" or "9600,8N1".
func Parse(s string) (Line, error) {
	f := strings.FieldsFunc(strings.TrimSpace(s), func(r rune) bool { return r == ' ' || r == '/' || r == ',' })
	if len(f) == 0 || len(f) > 2 {
		return Line{}, fmt.Errorf("linespeed: %q: want BAUD or BAUD DATA-PARITY-STOP, e.g. 9600 8E1", s)
	}
	baud, err := strconv.Atoi(f[0])
	if err != nil || baud <= 0 {
		return Line{}, fmt.Errorf("linespeed: %q: bad baud rate", s)
	}
	frame := "8N1"
	if len(f) == 2 {
		frame = strings.ToUpper(f[1])
	}
	if len(frame) != 3 || frame[0] < '5' || frame[0] > '9' || !strings.ContainsRune("NEOMS", rune(frame[1])) || (frame[2] != '1' && frame[2] != '2') {
		return Line{}, fmt.Errorf("linespeed: %q: bad character frame %q (want e.g. 8N1, 8E1, 8N2)", s, frame)
	}
	bits := 1 + int(frame[0]-'0') + int(frame[2]-'0')
	if frame[1] != 'N' {
		bits++
	}
	return Line{Baud: baud, BitsPerByte: bits}, nil
}

// Port is a port seen through a serial line: see the package comment. Read and Write may be
// used by one reader and one writer at the same time, as on a full-duplex line.
type Port struct {
	inner any // the wrapped port: its deadlines and Close
	r     io.Reader
	w     io.Writer

	rmu     sync.Mutex // one Read at a time
	buf     []byte
	pending []byte    // read from inner, not yet delivered
	rxStart time.Time // when the first byte of pending's batch started on the line
	rxDone  int       // bytes of the batch already delivered
	rxErr   error     // error that came with the batch, returned once it is delivered

	wmu    sync.Mutex // one Write at a time
	txFree time.Time  // when the line finishes sending the last byte written

	dmu           sync.Mutex
	line          Line
	readDeadline  time.Time
	writeDeadline time.Time
}

// Wrap returns port paced at line, or port itself when the line is off.
func Wrap(port io.ReadWriter, line Line) io.ReadWriter {
	if !line.On() {
		return port
	}
	return NewPort(port, line)
}

// NewPort wraps port even when line is off, so that SetLine can turn the pacing on and off
// while the port is in use (a control panel's switch).
func NewPort(port io.ReadWriter, line Line) *Port {
	return &Port{inner: port, r: port, w: port, line: line, buf: make([]byte, 4096)}
}

// SetLine changes the line's speed; the zero Line passes bytes through as fast as they come.
// A write in progress finishes at the speed it started with.
func (p *Port) SetLine(l Line) {
	p.dmu.Lock()
	defer p.dmu.Unlock()
	p.line = l
}

// Line is the line's speed now.
func (p *Port) Line() Line {
	p.dmu.Lock()
	defer p.dmu.Unlock()
	return p.line
}

// WrapWriter is Wrap for a port the emulator only writes to (a scanner).
func WrapWriter(port io.Writer, line Line) io.Writer {
	if !line.On() {
		return port
	}
	return &Port{inner: port, w: port, line: line}
}

// ErrWriteOnly is returned by Read on a port wrapped by WrapWriter.
var ErrWriteOnly = errors.New("linespeed: write-only port")

// Read hands over the bytes the line has delivered by now, at least one, waiting for the
// first when it is still on the wire. A read deadline set through SetReadDeadline also
// bounds that wait.
func (p *Port) Read(b []byte) (int, error) {
	if p.r == nil {
		return 0, ErrWriteOnly
	}
	if len(b) == 0 {
		return 0, nil
	}
	p.rmu.Lock()
	defer p.rmu.Unlock()
	if len(p.pending) == 0 {
		if err := p.rxErr; err != nil {
			p.rxErr = nil
			return 0, err
		}
		n, err := p.r.Read(p.buf)
		if n == 0 {
			return 0, err
		}
		p.pending, p.rxErr = p.buf[:n], err
		p.rxStart, p.rxDone = time.Now(), 0
	}
	line := p.Line()
	arrived := len(p.pending) // an off line delivers everything at once
	if line.On() {
		// The next byte is complete on the line at rxStart + (rxDone+1)·ByteTime.
		next := p.rxStart.Add(line.Duration(p.rxDone + 1))
		if err := p.waitUntil(next, p.deadline(&p.readDeadline)); err != nil {
			return 0, err
		}
		arrived = line.bytesIn(time.Since(p.rxStart)) - p.rxDone
	}
	n := copy(b, p.pending[:max(1, min(arrived, len(p.pending)))])
	p.pending = p.pending[n:]
	p.rxDone += n
	if len(p.pending) == 0 && p.rxErr != nil {
		err := p.rxErr
		p.rxErr = nil
		return n, err
	}
	return n, nil
}

// Write sends b at the line's pace and returns once its last byte is on the other side (or
// the write deadline passed: then it reports how many bytes went).
func (p *Port) Write(b []byte) (int, error) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	line := p.Line()
	if !line.On() {
		return p.w.Write(b)
	}
	start := time.Now()
	if p.txFree.After(start) {
		start = p.txFree
	}
	sent := 0
	for sent < len(b) {
		due := start.Add(line.Duration(sent + 1))
		if err := p.waitUntil(due, p.deadline(&p.writeDeadline)); err != nil {
			return sent, err
		}
		upto := min(len(b), line.bytesIn(time.Since(start)))
		upto = max(upto, sent+1)
		n, err := p.w.Write(b[sent:upto])
		sent += n
		if err != nil {
			return sent, err
		}
	}
	p.txFree = start.Add(line.Duration(len(b)))
	return sent, nil
}

// waitUntil sleeps until t, or fails with os.ErrDeadlineExceeded when the deadline (if set)
// comes first.
func (p *Port) waitUntil(t, deadline time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return nil
	}
	if !deadline.IsZero() && deadline.Before(t) {
		time.Sleep(max(0, time.Until(deadline)))
		return os.ErrDeadlineExceeded
	}
	time.Sleep(d)
	return nil
}

func (p *Port) deadline(d *time.Time) time.Time {
	p.dmu.Lock()
	defer p.dmu.Unlock()
	return *d
}

// ErrNoDeadlines is returned by the deadline setters when the wrapped port has none.
var ErrNoDeadlines = errors.New("linespeed: port has no deadlines")

// SetReadDeadline sets the wrapped port's read deadline and bounds the wait for bytes still
// on the line by it.
func (p *Port) SetReadDeadline(t time.Time) error {
	rd, ok := p.inner.(interface{ SetReadDeadline(time.Time) error })
	if !ok {
		return ErrNoDeadlines
	}
	if err := rd.SetReadDeadline(t); err != nil {
		return err
	}
	p.dmu.Lock()
	p.readDeadline = t
	p.dmu.Unlock()
	return nil
}

// SetWriteDeadline sets the wrapped port's write deadline and bounds the pacing of a write.
func (p *Port) SetWriteDeadline(t time.Time) error {
	wd, ok := p.inner.(interface{ SetWriteDeadline(time.Time) error })
	if !ok {
		return ErrNoDeadlines
	}
	if err := wd.SetWriteDeadline(t); err != nil {
		return err
	}
	p.dmu.Lock()
	p.writeDeadline = t
	p.dmu.Unlock()
	return nil
}

// Close closes the wrapped port when it is an io.Closer.
func (p *Port) Close() error {
	if c, ok := p.inner.(io.Closer); ok {
		return c.Close()
	}
	return nil
}
