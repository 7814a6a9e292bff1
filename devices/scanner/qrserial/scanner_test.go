package qrserial_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.bug.st/serial"

	"github.com/kioskd/kioskd/devices/scanner/qrserial"
	"github.com/kioskd/kioskd/hw-sim/ptypair"
	"github.com/kioskd/kioskd/hw-sim/scannersim"
)

// events collects what Run reports.
type events struct {
	mu    sync.Mutex
	codes []string
	errs  []error
}

func (e *events) code(c string) { e.mu.Lock(); e.codes = append(e.codes, c); e.mu.Unlock() }
func (e *events) err(err error) { e.mu.Lock(); e.errs = append(e.errs, err); e.mu.Unlock() }
func (e *events) get() ([]string, []error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.codes...), append([]error(nil), e.errs...)
}

// bench wires scannersim to a Scanner over net.Pipe inside a synctest bubble.
type bench struct {
	sim *scannersim.Sim
	ev  *events
	sc  *qrserial.Scanner
}

func newBench(t *testing.T, simCfg scannersim.Config, cfg qrserial.Config) *bench {
	host, dev := net.Pipe()
	ev := &events{}
	cfg.OnError = ev.err
	b := &bench{sim: scannersim.New(simCfg), ev: ev, sc: qrserial.New(host, cfg)}
	ctx, cancel := context.WithCancel(context.Background())
	runDone, serveDone := make(chan error, 1), make(chan error, 1)
	go func() { runDone <- b.sc.Run(ctx, ev.code) }()
	go func() { serveDone <- b.sim.Serve(ctx, dev) }()
	t.Cleanup(func() {
		cancel()
		if err := <-runDone; err != nil {
			t.Errorf("Run: %v", err)
		}
		if err := <-serveDone; err != nil {
			t.Errorf("Serve: %v", err)
		}
		host.Close()
		dev.Close()
	})
	return b
}

func TestScans(t *testing.T) {
	for _, suffix := range []string{"\r\n", "\r", "\n"} {
		synctest.Test(t, func(t *testing.T) {
			b := newBench(t, scannersim.Config{Suffix: suffix}, qrserial.Config{})
			b.sim.Scan("IMW1.first")
			b.sim.Scan("IMW1.second")
			synctest.Wait()
			codes, errs := b.ev.get()
			if strings.Join(codes, ",") != "IMW1.first,IMW1.second" || len(errs) != 0 {
				t.Errorf("suffix %q: codes %q errs %v", suffix, codes, errs)
			}
		})
	}
}

// TestNoiseIsNotGluedToTheNextScan: line noise without a terminator, a pause, then a real
// scan. The noise is reported and the scan arrives clean.
func TestNoiseIsNotGluedToTheNextScan(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBench(t, scannersim.Config{}, qrserial.Config{InterCharTimeout: 200 * time.Millisecond})
		b.sim.ScanRaw([]byte("~#x"))
		synctest.Wait()
		time.Sleep(200 * time.Millisecond) // fake time: the inter-character timeout passes
		synctest.Wait()
		_, errs := b.ev.get()
		if len(errs) != 1 || !errors.Is(errs[0], qrserial.ErrIncomplete) {
			t.Fatalf("after the pause: errors %v, want one ErrIncomplete reported at once", errs)
		}
		b.sim.Scan("GOOD")
		synctest.Wait()
		codes, errs := b.ev.get()
		if strings.Join(codes, ",") != "GOOD" || len(errs) != 1 {
			t.Errorf("codes %q errs %v", codes, errs)
		}
	})
}

func TestSlowTyping(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBench(t, scannersim.Config{}, qrserial.Config{InterCharTimeout: 100 * time.Millisecond})
		b.sim.ScanSlow("OK", 50*time.Millisecond)  // within the timeout: one code
		b.sim.ScanSlow("AB", 150*time.Millisecond) // every gap too long: all abandoned
		time.Sleep(2 * time.Second)
		synctest.Wait()
		codes, errs := b.ev.get()
		if strings.Join(codes, ",") != "OK" {
			t.Errorf("codes %q", codes)
		}
		// "A" and "B" are abandoned; the CR LF that follows after the pause ends an empty line.
		if len(errs) != 2 || !errors.Is(errs[0], qrserial.ErrIncomplete) || !errors.Is(errs[1], qrserial.ErrIncomplete) {
			t.Errorf("errors %v", errs)
		}
	})
}

func TestRejections(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBench(t, scannersim.Config{}, qrserial.Config{MaxLen: 16})
		b.sim.Scan(strings.Repeat("A", 40))
		b.sim.Scan("bell\x07here")
		b.sim.Scan("caf\u00e9")
		b.sim.Scan("\x1b[2J")
		b.sim.Scan("after")
		synctest.Wait()
		codes, errs := b.ev.get()
		if strings.Join(codes, ",") != "after" {
			t.Errorf("codes %q", codes)
		}
		want := []error{qrserial.ErrTooLong, qrserial.ErrBadByte, qrserial.ErrBadByte, qrserial.ErrBadByte}
		if len(errs) != len(want) {
			t.Fatalf("errors %v", errs)
		}
		for i := range want {
			if !errors.Is(errs[i], want[i]) {
				t.Errorf("error %d = %v, want %v", i, errs[i], want[i])
			}
		}
	})
}

func TestWalletPayload(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, priv, _ := ed25519.GenerateKey(nil)
		b := newBench(t, scannersim.Config{}, qrserial.Config{})
		w := scannersim.DemoWallet{Key: priv, KeyID: "wallet-2025", Account: "acct_42"}
		if err := b.sim.ScanWallet(w); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		codes, errs := b.ev.get()
		if len(codes) != 1 || !strings.HasPrefix(codes[0], "IMW1.acct_42.") || len(errs) != 0 {
			t.Errorf("codes %q errs %v", codes, errs)
		}
	})
}

// zeroPort has no deadlines and returns (0, nil) every other read after a read timeout, as a
// serial port opened with a read timeout does.
type zeroPort struct {
	r    io.Reader
	flip bool
}

func (z *zeroPort) Read(b []byte) (int, error) {
	z.flip = !z.flip
	if z.flip {
		time.Sleep(20 * time.Millisecond) // the port's read timeout (fake time)
		return 0, nil
	}
	return z.r.Read(b)
}

func TestZeroReadsAndEOF(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pr, pw := io.Pipe()
		ev := &events{}
		sc := qrserial.New(&zeroPort{r: pr}, qrserial.Config{InterCharTimeout: 100 * time.Millisecond, OnError: ev.err})
		done := make(chan error, 1)
		go func() { done <- sc.Run(context.Background(), ev.code) }()
		pw.Write([]byte("par"))
		time.Sleep(time.Second)
		pw.Write([]byte("CODE\r\n"))
		pw.Write([]byte("tail"))
		pw.Close() // the scanner is unplugged
		err := <-done
		if !errors.Is(err, io.EOF) {
			t.Errorf("Run = %v, want io.EOF", err)
		}
		codes, errs := ev.get()
		if strings.Join(codes, ",") != "CODE" || len(errs) != 2 {
			t.Errorf("codes %q errs %v (want the partial before and after the code reported)", codes, errs)
		}
	})
}

func TestCancelReturnsNil(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		host, dev := net.Pipe()
		defer dev.Close()
		defer host.Close()
		sc := qrserial.New(host, qrserial.Config{})
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := sc.Run(ctx, func(string) {}); err != nil {
			t.Fatalf("Run = %v", err)
		}
	})
}

// rw reads nothing and records what is written.
type rw struct {
	io.Reader
	out bytes.Buffer
}

func (p *rw) Write(b []byte) (int, error) { return p.out.Write(b) }

func TestTrigger(t *testing.T) {
	p := &rw{Reader: strings.NewReader("")}
	sc := qrserial.New(p, qrserial.Config{})
	if err := sc.StartScan(); err != nil {
		t.Fatal(err)
	}
	if err := sc.StopScan(); err != nil {
		t.Fatal(err)
	}
	if got := p.out.String(); got != "\x16T\r\x16U\r" {
		t.Errorf("wrote %q", got)
	}
	if err := qrserial.New(strings.NewReader(""), qrserial.Config{}).StartScan(); !errors.Is(err, qrserial.ErrNotWritable) {
		t.Errorf("read-only port: %v", err)
	}
}

// TestOverPTY reads the emulator through a real pseudo-terminal with the serial library the
// daemon uses, read timeout included.
func TestOverPTY(t *testing.T) {
	pair, err := ptypair.Open()
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	port, err := serial.Open(pair.Path(), &serial.Mode{BaudRate: 9600, DataBits: 8, Parity: serial.NoParity, StopBits: serial.OneStopBit})
	if err != nil {
		pair.Close()
		t.Skipf("serial open: %v", err)
	}
	port.SetReadTimeout(20 * time.Millisecond)
	sim := scannersim.New(scannersim.Config{})
	codes := make(chan string, 4)
	ctx, cancel := context.WithCancel(context.Background())
	runDone, serveDone := make(chan error, 1), make(chan error, 1)
	go func() { runDone <- qrserial.New(port, qrserial.Config{}).Run(ctx, func(c string) { codes <- c }) }()
	go func() { serveDone <- sim.Serve(ctx, pair.Master) }()
	defer func() {
		cancel()
		if err := <-runDone; err != nil { // the read timeout lets Run see the cancellation
			t.Errorf("Run: %v", err)
		}
		<-serveDone
		port.Close()
		pair.Close()
	}()
	sim.Scan("IMW1.over.the.pty")
	select {
	case c := <-codes:
		if c != "IMW1.over.the.pty" {
			t.Errorf("code %q", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no code within 10 s")
	}
}
