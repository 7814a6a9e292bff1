package linespeed_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kioskd/kioskd/hw-sim/linespeed"
)

func TestDurationAndByteTime(t *testing.T) {
	if got := linespeed.ID003.ByteTime(); got < 1145*time.Microsecond || got > 1146*time.Microsecond {
		t.Errorf("9600 8E1 byte time %v, want about 1.146 ms", got)
	}
	// 1,000 bytes at 9600 8N1 take 1.0417 s: one rounding, not a thousand.
	if got, want := linespeed.Printer.Duration(1000), time.Duration(1_041_666_667); got != want {
		t.Errorf("1000 bytes at 9600 8N1: %v, want %v", got, want)
	}
	if (linespeed.Line{}).Duration(1000) != 0 || (linespeed.Line{}).On() {
		t.Error("the zero line paces")
	}
}

func TestParse(t *testing.T) {
	for in, want := range map[string]linespeed.Line{
		"9600":       {Baud: 9600, BitsPerByte: 10},
		"9600 8E1":   {Baud: 9600, BitsPerByte: 11},
		"9600/8n2":   {Baud: 9600, BitsPerByte: 11},
		"19200,7E1":  {Baud: 19200, BitsPerByte: 10},
		"115200 8N1": {Baud: 115200, BitsPerByte: 10},
	} {
		got, err := linespeed.Parse(in)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "fast", "-9600", "9600 8X1", "9600 8N3", "9600 8N1 extra", "9600 4N1"} {
		if l, err := linespeed.Parse(bad); err == nil {
			t.Errorf("Parse(%q) = %+v, want an error", bad, l)
		}
	}
	if err := (linespeed.Line{Baud: 9600, BitsPerByte: 3}).Validate(); err == nil {
		t.Error("3 bits per character accepted")
	}
}

// TestWritePaced: byte i of a write reaches the other side at exactly (i+1) byte times.
func TestWritePaced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		line := linespeed.ID003
		emu, host := net.Pipe()
		defer host.Close()
		p := linespeed.Wrap(emu, line)
		msg := bytes.Repeat([]byte{0xAA}, 50)
		start := time.Now()
		go func() {
			p.Write(msg)
			emu.Close()
		}()
		var at []time.Duration
		b := make([]byte, 64)
		for {
			n, err := host.Read(b)
			for range n {
				at = append(at, time.Since(start))
			}
			if err != nil {
				break
			}
		}
		if len(at) != len(msg) {
			t.Fatalf("%d bytes arrived, want %d", len(at), len(msg))
		}
		for i, d := range at {
			if want := line.Duration(i + 1); d != want {
				t.Fatalf("byte %d arrived after %v, want %v", i, d, want)
			}
		}
	})
}

// TestWriteQueuesBehindPrevious: a second write starts when the line is free, not before.
func TestWriteQueuesBehindPrevious(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		line := linespeed.CCNET
		emu, host := net.Pipe()
		defer host.Close()
		defer emu.Close()
		p := linespeed.Wrap(emu, line)
		go io.Copy(io.Discard, host)
		start := time.Now()
		p.Write(make([]byte, 10))
		p.Write(make([]byte, 10))
		if got, want := time.Since(start), line.Duration(20); got != want {
			t.Fatalf("two writes of 10 took %v, want %v", got, want)
		}
	})
}

// TestReadPaced: 1,000 bytes the host wrote at once reach the emulator over 1,000 byte
// times, never ahead of the line.
func TestReadPaced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		line := linespeed.Printer
		emu, host := net.Pipe()
		defer emu.Close()
		p := linespeed.Wrap(emu, line)
		start := time.Now()
		go func() {
			host.Write(bytes.Repeat([]byte("x"), 1000))
			host.Close()
		}()
		got := 0
		b := make([]byte, 4096)
		for {
			n, err := p.Read(b)
			got += n
			elapsed := time.Since(start)
			if max := int(elapsed * time.Duration(line.Baud) / (time.Duration(line.BitsPerByte) * time.Second)); got > max {
				t.Fatalf("%d bytes delivered after %v: the line carries only %d", got, elapsed, max)
			}
			if got == 1000 && elapsed != line.Duration(1000) {
				t.Fatalf("last byte delivered after %v, want %v", elapsed, line.Duration(1000))
			}
			if err != nil {
				if !errors.Is(err, io.EOF) {
					t.Fatal(err)
				}
				break
			}
		}
		if got != 1000 {
			t.Fatalf("%d bytes delivered", got)
		}
	})
}

// TestReadDeadline: a deadline releases a Read waiting for bytes still on the line.
func TestReadDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		emu, host := net.Pipe()
		defer emu.Close()
		defer host.Close()
		p := linespeed.Wrap(emu, linespeed.SSP).(*linespeed.Port)
		go host.Write(make([]byte, 100))
		b := make([]byte, 100)
		if n, err := p.Read(b); n != 1 || err != nil {
			t.Fatalf("first read: %d, %v", n, err)
		}
		start := time.Now()
		if err := p.SetReadDeadline(time.Now().Add(10 * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		total := 1
		for {
			n, err := p.Read(b)
			total += n
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if el := time.Since(start); el != 10*time.Millisecond {
			t.Errorf("deadline released the read after %v", el)
		}
		if total > 2+int(10*time.Millisecond/linespeed.SSP.ByteTime()) {
			t.Errorf("%d bytes delivered in 10 ms at 9600 8N2", total)
		}
	})
}

func TestWrapOffIsIdentity(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if linespeed.Wrap(a, linespeed.Line{}) != io.ReadWriter(a) {
		t.Error("an off line wrapped the port")
	}
}

// TestNoDeadlines: a port without deadlines says so through the wrapper, so emulators fall
// back to closing it.
func TestNoDeadlines(t *testing.T) {
	var rw struct {
		io.Reader
		io.Writer
	}
	p := linespeed.Wrap(rw, linespeed.ID003).(*linespeed.Port)
	if err := p.SetReadDeadline(time.Now()); !errors.Is(err, linespeed.ErrNoDeadlines) {
		t.Errorf("SetReadDeadline on a plain port: %v", err)
	}
}

// TestSetLine: a port wrapped off passes bytes at once; switched on it paces them.
func TestSetLine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		emu, host := net.Pipe()
		defer emu.Close()
		defer host.Close()
		p := linespeed.NewPort(emu, linespeed.Line{})
		go io.Copy(io.Discard, host)
		start := time.Now()
		p.Write(make([]byte, 100))
		if time.Since(start) != 0 {
			t.Fatalf("an off line took %v", time.Since(start))
		}
		p.SetLine(linespeed.Printer)
		if p.Line() != linespeed.Printer {
			t.Fatal("line not set")
		}
		p.Write(make([]byte, 100))
		if got, want := time.Since(start), linespeed.Printer.Duration(100); got != want {
			t.Fatalf("100 bytes at 9600 8N1 took %v, want %v", got, want)
		}
	})
}
