// Package serialport opens the serial ports the kiosk's devices hang on (bill acceptors,
// receipt printers, QR scanners) with go.bug.st/serial, and hands drivers a plain
// io.ReadWriteCloser: drivers never see a concrete serial type.
//
// # Reads, timeouts and Close on Linux
//
// go.bug.st/serial (v1.8.0) reads with select(2) on the port and on an internal pipe. With a
// read timeout (Mode.ReadTimeout > 0) a Read that sees no byte in time returns (0, nil):
// reader loops must treat (0, nil) as "nothing yet", never as end of input (io.Reader allows
// it; the drivers' reader goroutines do so). With no timeout a Read blocks until a byte
// arrives. Either way Close releases a Read blocked in another goroutine at once: Close
// writes to the library's pipe, the select wakes, and the Read returns an error that
// errors.Is(err, ErrClosed) recognises; Close itself waits for pending Reads to return. A
// device that disappears (USB serial adapter unplugged) makes Read return ErrClosed too.
// The read timeout is still worth setting: it bounds how long a reader goes without looking
// at its stop signal, for code that does not own the port's Close.
//
// # Exclusive use
//
// Two programs driving one bill acceptor would each acknowledge notes the other never
// journaled, so a port is opened for exclusive use, in two ways. The tty is put in exclusive
// mode (TIOCEXCL): the kernel then refuses any further open with EBUSY, except to a process
// with CAP_SYS_ADMIN, which is why that alone is not enough on a kiosk where kioskd may run as
// root. Every Open also takes an exclusive flock(2) on the device, held until Close, and gives
// up at once when another holder has it: a second kioskd (root or not), or any tool opening
// the port through this package, gets ErrBusy before it touches the line settings. The lock is
// taken before the port is configured, so a refused opener never changes the holder's baud
// rate or parity.
//
// Parity errors are not reported as such: with parity enabled the library sets INPCK
// without PARMRK, so the kernel delivers a byte with a parity error as 0x00, which the
// protocols' CRCs then reject.
package serialport

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"go.bug.st/serial"
	"golang.org/x/sys/unix"
)

// Parity is the parity bit setting.
type Parity int

const (
	NoParity Parity = iota
	EvenParity
	OddParity
)

func (p Parity) String() string {
	switch p {
	case NoParity:
		return "N"
	case EvenParity:
		return "E"
	case OddParity:
		return "O"
	}
	return fmt.Sprintf("Parity(%d)", int(p))
}

// Mode is a port configuration.
type Mode struct {
	Baud     int
	DataBits int // 5..8
	Parity   Parity
	StopBits int // 1 or 2
	// ReadTimeout bounds one Read: after it a Read with no data returns (0, nil). Zero
	// blocks until data arrives (Close still releases it).
	ReadTimeout time.Duration
}

func (m Mode) String() string {
	return fmt.Sprintf("%d %d%s%d", m.Baud, m.DataBits, m.Parity, m.StopBits)
}

// Presets for the kiosk's devices. The printer and scanner presets are the common factory
// defaults; the kiosk config overrides them for units set otherwise.
var (
	// ID003 is JCM ID-003: 9600 8E1.
	ID003 = Mode{Baud: 9600, DataBits: 8, Parity: EvenParity, StopBits: 1, ReadTimeout: 100 * time.Millisecond}
	// SSP is ITL SSP/eSSP on RS-232 or TTL: 9600 8N2.
	SSP = Mode{Baud: 9600, DataBits: 8, Parity: NoParity, StopBits: 2, ReadTimeout: 100 * time.Millisecond}
	// CCNET is CashCode CCNET: 9600 8N1.
	CCNET = Mode{Baud: 9600, DataBits: 8, Parity: NoParity, StopBits: 1, ReadTimeout: 100 * time.Millisecond}
	// Printer is an ESC/POS receipt printer: 9600 8N1 (many ship at 19200 or 115200).
	Printer = Mode{Baud: 9600, DataBits: 8, Parity: NoParity, StopBits: 1, ReadTimeout: 100 * time.Millisecond}
	// Scanner is a serial QR scanner: 9600 8N1 (many ship at 115200).
	Scanner = Mode{Baud: 9600, DataBits: 8, Parity: NoParity, StopBits: 1, ReadTimeout: 100 * time.Millisecond}
)

// Errors.
var (
	// ErrBadMode: the Mode cannot be applied (zero baud, 9 data bits, 3 stop bits...).
	ErrBadMode = errors.New("serialport: invalid mode")
	// ErrClosed: the port was closed, or the device went away.
	ErrClosed = errors.New("serialport: port closed")
	// ErrBusy: another process (or another Port of this one) has the port open.
	ErrBusy = errors.New("serialport: port in use by another process")
)

// Port is an open serial port.
type Port interface {
	io.ReadWriteCloser
	// ResetInputBuffer drops bytes received but not yet read.
	ResetInputBuffer() error
}

// Validate reports whether m can be applied.
func (m Mode) Validate() error {
	switch {
	case m.Baud <= 0:
		return fmt.Errorf("%w: baud %d", ErrBadMode, m.Baud)
	case m.DataBits < 5 || m.DataBits > 8:
		return fmt.Errorf("%w: %d data bits", ErrBadMode, m.DataBits)
	case m.Parity != NoParity && m.Parity != EvenParity && m.Parity != OddParity:
		return fmt.Errorf("%w: parity %v", ErrBadMode, m.Parity)
	case m.StopBits != 1 && m.StopBits != 2:
		return fmt.Errorf("%w: %d stop bits", ErrBadMode, m.StopBits)
	case m.ReadTimeout < 0:
		return fmt.Errorf("%w: negative read timeout", ErrBadMode)
	}
	return nil
}

// Open opens the serial device at path (for example /dev/ttyUSB0 or a pty slave) in raw
// mode with m, without hardware flow control.
func Open(path string, m Mode) (Port, error) {
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("serialport: open %s: %w", path, err)
	}
	sm := &serial.Mode{BaudRate: m.Baud, DataBits: m.DataBits, Parity: serial.NoParity, StopBits: serial.OneStopBit}
	switch m.Parity {
	case EvenParity:
		sm.Parity = serial.EvenParity
	case OddParity:
		sm.Parity = serial.OddParity
	}
	if m.StopBits == 2 {
		sm.StopBits = serial.TwoStopBits
	}
	claim, err := claim(path)
	if err != nil {
		return nil, err
	}
	p, err := serial.Open(path, sm)
	if err != nil {
		_ = unix.Close(claim)
		return nil, fmt.Errorf("serialport: open %s (%v): %w", path, m, err)
	}
	// go.bug.st/serial sets TIOCEXCL itself but ignores a failure; a port that cannot be made
	// exclusive is refused rather than shared. (It must come after the library's own open,
	// which it would otherwise refuse to an unprivileged process.)
	if err := unix.IoctlSetInt(claim, unix.TIOCEXCL, 0); err != nil {
		_ = p.Close()
		_ = unix.Close(claim)
		return nil, fmt.Errorf("serialport: open %s: exclusive mode: %w", path, err)
	}
	timeout := serial.NoTimeout
	if m.ReadTimeout > 0 {
		timeout = m.ReadTimeout
	}
	if err := p.SetReadTimeout(timeout); err != nil {
		_ = p.Close()
		_ = unix.Close(claim)
		return nil, fmt.Errorf("serialport: open %s: read timeout: %w", path, err)
	}
	return &port{p: p, path: path, mode: m, claim: claim}, nil
}

// claim opens the device without configuring it and takes the exclusive lock on it (see
// "Exclusive use"). The descriptor carries the lock until the port is closed.
func claim(path string) (int, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.EBUSY) {
		// TIOCEXCL set by the holder: the kernel refused the open itself.
		return -1, fmt.Errorf("serialport: open %s: %w", path, ErrBusy)
	}
	if err != nil {
		return -1, fmt.Errorf("serialport: open %s: %w", path, err)
	}
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		_ = unix.Close(fd)
		if errors.Is(err, unix.EWOULDBLOCK) {
			return -1, fmt.Errorf("serialport: open %s: %w", path, ErrBusy)
		}
		return -1, fmt.Errorf("serialport: open %s: lock: %w", path, err)
	}
	return fd, nil
}

// ByteTime is how long one character takes on a line in mode m: start bit, data bits,
// parity bit, stop bits at the baud rate.
func (m Mode) ByteTime() time.Duration {
	if m.Baud <= 0 {
		return 0
	}
	bits := 1 + m.DataBits + m.StopBits
	if m.Parity != NoParity {
		bits++
	}
	return time.Duration(bits) * time.Second / time.Duration(m.Baud)
}

type port struct {
	p      serial.Port
	path   string
	mode   Mode
	closed atomic.Bool
	// claim holds the exclusive lock (and the tty's exclusive mode) until Close.
	claim     int
	closeOnce sync.Once
}

// Drain waits until everything written has been sent (tcdrain). Drivers that must not read
// a reply before their request is through the line (the printer after a receipt) look for
// it. On a pseudo-terminal it returns at once.
func (p *port) Drain() error {
	if err := p.p.Drain(); err != nil {
		return p.wrap("drain", err)
	}
	return nil
}

// ByteTime is the port's character time (Mode.ByteTime), for drivers that wait for their
// output to be through the line where draining cannot tell (a USB adapter's FIFO, a pty).
func (p *port) ByteTime() time.Duration { return p.mode.ByteTime() }

func (p *port) Read(b []byte) (int, error) {
	n, err := p.p.Read(b)
	if err != nil {
		return n, p.wrap("read", err)
	}
	return n, nil
}

func (p *port) Write(b []byte) (int, error) {
	n, err := p.p.Write(b)
	if err != nil {
		return n, p.wrap("write", err)
	}
	return n, nil
}

func (p *port) Close() error {
	p.closed.Store(true)
	err := p.p.Close()
	// The lock goes last: the next holder must find the line free of our descriptor.
	p.closeOnce.Do(func() { _ = unix.Close(p.claim) })
	if err != nil {
		return p.wrap("close", err)
	}
	return nil
}

func (p *port) ResetInputBuffer() error {
	if err := p.p.ResetInputBuffer(); err != nil {
		return p.wrap("reset input buffer", err)
	}
	return nil
}

func (p *port) wrap(op string, err error) error {
	// The library closes the descriptor before it wakes pending reads, so a Read racing
	// Close may see EBADF instead of PortClosed: after our own Close, every error is ErrClosed.
	var pe *serial.PortError
	if p.closed.Load() || errors.As(err, &pe) && pe.Code() == serial.PortClosed {
		return fmt.Errorf("serialport: %s %s: %w", op, p.path, ErrClosed)
	}
	return fmt.Errorf("serialport: %s %s: %w", op, p.path, err)
}
