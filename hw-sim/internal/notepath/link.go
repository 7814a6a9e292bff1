package notepath

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/kioskd/kioskd/hw-sim/linespeed"
)

// FaultKind is a link fault an emulator can inject into one reply.
type FaultKind int

const (
	// FaultBadCRC corrupts the reply's check bytes.
	FaultBadCRC FaultKind = iota + 1
	// FaultNoReply drops the reply; the command was still carried out.
	FaultNoReply
	// FaultGarbage sends Fault.Garbage (or the emulator's noise bytes) before the reply.
	FaultGarbage
	// FaultSplit writes the reply in two parts, Fault.Delay apart.
	FaultSplit
	// FaultSlow waits Fault.Delay before replying.
	FaultSlow
)

// Fault is one injected fault; each applies to one reply.
type Fault struct {
	Kind    FaultKind
	Delay   time.Duration
	Garbage []byte
}

// Link is an emulator's serial side: it reads the host's bytes, hands them to the
// emulator's framing, and writes the replies, spoiling them with the queued faults. Its
// methods are safe for concurrent use.
type Link struct {
	// Name prefixes the errors (the emulator's package name).
	Name string
	// Line, when on, paces the port at a serial line's speed (package linespeed).
	Line linespeed.Line
	// Noise is sent before a reply by FaultGarbage without bytes of its own.
	Noise []byte
	// Corrupt spoils a copy of a reply for FaultBadCRC (default: flip its last byte).
	Corrupt func(reply []byte)
	// Applies, when set, says whether the fault at the head of the queue is one Serve
	// applies to a reply; one it does not stays queued for the emulator to Take.
	Applies func(Fault) bool

	mu     sync.Mutex
	faults []Fault
}

// Inject queues a fault; each applies to one reply, in order.
func (l *Link) Inject(f Fault) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.faults = append(l.faults, f)
}

// Pending is how many faults are queued.
func (l *Link) Pending() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.faults)
}

// Take removes the fault at the head of the queue when it is of kind, and reports whether it
// did (for faults the emulator applies itself, inside its framing).
func (l *Link) Take(kind FaultKind) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.faults) == 0 || l.faults[0].Kind != kind {
		return false
	}
	l.faults = l.faults[1:]
	return true
}

func (l *Link) next() Fault {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.faults) == 0 || (l.Applies != nil && !l.Applies(l.faults[0])) {
		return Fault{}
	}
	f := l.faults[0]
	l.faults = l.faults[1:]
	return f
}

// Serve runs the link until ctx ends or the host hangs up (both return nil), or the port
// fails. feed takes the bytes read; next answers the next complete frame (reply nil: no
// answer) and reports false when no complete frame is left. On cancellation Serve releases
// its blocked Read with SetReadDeadline when the port has one, else by closing the port if it
// is an io.Closer.
func (l *Link) Serve(ctx context.Context, port io.ReadWriter, feed func([]byte), next func() (reply []byte, more bool)) error {
	port = linespeed.Wrap(port, l.Line)
	stop := context.AfterFunc(ctx, func() {
		if rd, ok := port.(interface{ SetReadDeadline(time.Time) error }); ok && rd.SetReadDeadline(time.Unix(1, 0)) == nil {
			return
		}
		if c, ok := port.(io.Closer); ok {
			c.Close()
		}
	})
	defer stop()
	buf := make([]byte, 512)
	for {
		n, err := port.Read(buf)
		if n > 0 {
			feed(buf[:n])
			for {
				reply, more := next()
				if !more {
					break
				}
				if reply == nil {
					continue
				}
				if werr := l.send(ctx, port, reply); werr != nil {
					if ctx.Err() != nil {
						return nil
					}
					return fmt.Errorf("%s: write: %w", l.Name, werr)
				}
			}
		}
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, io.EOF) || errors.Is(err, os.ErrClosed) {
				return nil
			}
			return fmt.Errorf("%s: read: %w", l.Name, err)
		}
	}
}

// send writes a reply, applying the next injected fault.
func (l *Link) send(ctx context.Context, port io.Writer, reply []byte) error {
	f := l.next()
	wait := func(d time.Duration) bool {
		if d <= 0 {
			return true
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-ctx.Done():
			return false
		}
	}
	switch f.Kind {
	case FaultNoReply:
		return nil
	case FaultBadCRC:
		reply = slices.Clone(reply)
		if l.Corrupt != nil {
			l.Corrupt(reply)
		} else {
			reply[len(reply)-1] ^= 0xFF
		}
	case FaultGarbage:
		g := f.Garbage
		if len(g) == 0 {
			g = l.Noise
		}
		reply = append(slices.Clone(g), reply...)
	case FaultSlow:
		if !wait(f.Delay) {
			return nil
		}
	case FaultSplit:
		half := len(reply) / 2
		if _, err := port.Write(reply[:half]); err != nil {
			return err
		}
		if !wait(f.Delay) {
			return nil
		}
		reply = reply[half:]
	}
	_, err := port.Write(reply)
	return err
}
