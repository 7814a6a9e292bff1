package escpos_test

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.bug.st/serial"

	"github.com/kioskd/kioskd/devices/printer/escpos"
	"github.com/kioskd/kioskd/devices/serialport"
	"github.com/kioskd/kioskd/hw-sim/escpossim"
	"github.com/kioskd/kioskd/hw-sim/linespeed"
	"github.com/kioskd/kioskd/receipts"
)

// bufPipe is one end of a buffered in-memory duplex line, as a pty is: a write returns as soon
// as its bytes are in the buffer, whatever the other end has taken. It has no deadlines.
type bufPipe struct {
	in, out chan byte
	closed  chan struct{}
	once    *sync.Once
	// drain, when set, is the port's Drain.
	drain func() error
}

func newBufPipe() (a, b *bufPipe) {
	x, y := make(chan byte, 1<<16), make(chan byte, 1<<16)
	closed, once := make(chan struct{}), &sync.Once{}
	return &bufPipe{in: x, out: y, closed: closed, once: once}, &bufPipe{in: y, out: x, closed: closed, once: once}
}

func (p *bufPipe) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	select {
	case c := <-p.in:
		b[0] = c
	case <-p.closed:
		return 0, io.EOF
	}
	n := 1
	for n < len(b) {
		select {
		case c := <-p.in:
			b[n] = c
			n++
		default:
			return n, nil
		}
	}
	return n, nil
}

func (p *bufPipe) Write(b []byte) (int, error) {
	for i, c := range b {
		select {
		case p.out <- c:
		case <-p.closed:
			return i, io.ErrClosedPipe
		}
	}
	return len(b), nil
}

func (p *bufPipe) Close() error {
	p.once.Do(func() { close(p.closed) })
	return nil
}

// drainingPipe is a bufPipe with a Drain.
type drainingPipe struct {
	*bufPipe
	drains int
}

func (p *drainingPipe) Drain() error {
	p.drains++
	return p.drain()
}

// receipt1000 renders a real receipt and pads it with text lines to about 1,000 bytes.
func receipt1000(t *testing.T) []byte {
	t.Helper()
	r := sampleReceipt()
	data, err := receipts.RenderESCPOS(r, receipts.Chinese58)
	if err != nil {
		t.Fatal(err)
	}
	pad := []byte("\x1b@")
	for len(pad)+len(data) < 1000 {
		pad = append(pad, "................................\n"...)
	}
	return append(pad, data...)
}

// lineRig is the driver and the 9600 8N1 line-speed emulator on a buffered pipe.
func lineRig(t *testing.T, cfg escpos.Config, wrap func(*bufPipe) io.ReadWriter) (*escpos.Printer, *escpossim.Sim) {
	host, dev := newBufPipe()
	sim := escpossim.New(escpossim.Config{Line: linespeed.Printer})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sim.Serve(ctx, dev) }()
	t.Cleanup(func() {
		cancel()
		host.Close() // no deadlines: closing releases Serve's read
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	var port io.ReadWriter = host
	if wrap != nil {
		port = wrap(host)
	}
	return escpos.New(port, cfg), sim
}

// TestPrintAtLineSpeed: a 1,000-byte receipt takes 1.04 s through a 9600-baud line. The
// driver must ask for the status only once it is through and count the reply timeout from
// then: the print is reported done and the status read succeeds. (Asking at once with a 500 ms
// timeout, the status comes after 1.04 s and every real print was journaled as failed.)
func TestPrintAtLineSpeed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, sim := lineRig(t, escpos.Config{Baud: 9600, BitsPerByte: 10}, nil)
		data := receipt1000(t)
		t0 := time.Now()
		if err := p.Print(context.Background(), data); err != nil {
			t.Fatalf("print of %d bytes at 9600 baud: %v", len(data), err)
		}
		if el, min := time.Since(t0), linespeed.Printer.Duration(len(data)); el < min {
			t.Fatalf("print reported done after %v, before the line could carry it (%v)", el, min)
		}
		docs := sim.Documents()
		if len(docs) != 1 || !docs[0].Cut {
			t.Fatalf("printer got %d documents (cut: %v)", len(docs), len(docs) == 1 && docs[0].Cut)
		}
		if st, ok := p.LastStatus(); !ok || !st.Ready() {
			t.Fatalf("status after the print: %v %v", st, ok)
		}
		// The cut counter read right behind a print waits for the line too.
		if err := p.Print(context.Background(), data); err != nil {
			t.Fatal(err)
		}
		n, err := p.CutCount(context.Background())
		if err != nil || n != 2 {
			t.Fatalf("cut count after two receipts: %d, %v", n, err)
		}
	})
}

// TestPrintAtLineSpeedDrains: with no baud configured, a port that drains (tcdrain) is
// drained before the status is read, and the timeout counts from the drain.
func TestPrintAtLineSpeedDrains(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var dp *drainingPipe
		var lineFree time.Time // when the simulated UART has sent all it was given
		p, _ := lineRig(t, escpos.Config{}, func(b *bufPipe) io.ReadWriter {
			dp = &drainingPipe{bufPipe: b}
			b.drain = func() error {
				time.Sleep(time.Until(lineFree))
				return nil
			}
			return uartPipe{dp, &lineFree}
		})
		data := receipt1000(t)
		if err := p.Print(context.Background(), data); err != nil {
			t.Fatalf("print with a draining port: %v", err)
		}
		if dp.drains == 0 {
			t.Fatal("the port was never drained")
		}
	})
}

// uartPipe keeps, for a drainingPipe, when a 9600 8N1 UART would have sent what it was given.
type uartPipe struct {
	*drainingPipe
	free *time.Time
}

func (u uartPipe) Write(b []byte) (int, error) {
	if now := time.Now(); u.free.Before(now) {
		*u.free = now
	}
	*u.free = u.free.Add(linespeed.Printer.Duration(len(b)))
	return u.drainingPipe.Write(b)
}

// TestPrintAtLineSpeedWithoutLineKnowledge documents what the line-speed emulator catches: a
// driver that neither drains nor knows the baud rate reads the status while the receipt is
// still on the line and reports the print failed after it.
func TestPrintAtLineSpeedWithoutLineKnowledge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, _ := lineRig(t, escpos.Config{}, nil)
		err := p.Print(context.Background(), receipt1000(t))
		var pe *escpos.PrintError
		if !errors.As(err, &pe) || pe.Stage != escpos.StageAfter || !errors.Is(err, escpos.ErrTimeout) {
			t.Fatalf("print not knowing the line: %v, want a status timeout after the write", err)
		}
	})
}

// TestReceiptOverPTYAtLineSpeed prints a 1,000-byte receipt through a pseudo-terminal opened
// as the daemon opens its printer (serialport, 9600 8N1) to the emulator at 9600 baud. A pty
// drains at once; the port's line time holds the status request back until the receipt is
// through. Real time: about a second.
func TestReceiptOverPTYAtLineSpeed(t *testing.T) {
	if testing.Short() {
		t.Skip("a second of real line time")
	}
	for _, how := range []string{"serialport", "config"} {
		t.Run(how, func(t *testing.T) {
			pair, sim := ptyPrinter(t, escpossim.Config{Line: linespeed.Printer})
			var p *escpos.Printer
			switch how {
			case "serialport": // the daemon's port: Drain and ByteTime from its mode
				port, err := serialport.Open(pair.Path(), serialport.Printer)
				if err != nil {
					t.Skipf("serial open %s: %v", pair.Path(), err)
				}
				defer port.Close()
				p = escpos.New(port, escpos.Config{})
			case "config": // the library's port (it drains) and the baud rate in the config
				port, err := serial.Open(pair.Path(), &serial.Mode{BaudRate: 9600})
				if err != nil {
					t.Skipf("serial open %s: %v", pair.Path(), err)
				}
				defer port.Close()
				port.SetReadTimeout(50 * time.Millisecond)
				p = escpos.New(port, escpos.Config{Baud: 9600, BitsPerByte: 10})
			}
			pctx, pcancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer pcancel()
			data := receipt1000(t)
			t0 := time.Now()
			if err := p.Print(pctx, data); err != nil {
				t.Fatalf("print of %d bytes at 9600 baud: %v", len(data), err)
			}
			if el := time.Since(t0); el < linespeed.Printer.Duration(len(data)) {
				t.Fatalf("done after %v: before the line could carry the receipt", el)
			}
			if d := sim.Documents(); len(d) != 1 || !d[0].Cut {
				t.Fatalf("%d documents", len(d))
			}
			if n, err := p.CutCount(pctx); err != nil || n != 1 {
				t.Fatalf("cut count %d, %v", n, err)
			}
		})
	}
}
