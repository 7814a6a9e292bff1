package scannersim_test

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kioskd/kioskd/hw-sim/linespeed"
	"github.com/kioskd/kioskd/hw-sim/scannersim"
)

// stamped records each chunk the emulator wrote and when it arrived.
type stamped struct {
	at   time.Duration
	data string
}

func TestWrites(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		host, dev := net.Pipe()
		defer host.Close()
		sim := scannersim.New(scannersim.Config{Suffix: "\r"})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- sim.Serve(ctx, dev) }()
		var got []stamped
		start := time.Now()
		readDone := make(chan struct{})
		go func() {
			defer close(readDone)
			buf := make([]byte, 64)
			for {
				n, err := host.Read(buf)
				if err != nil {
					return
				}
				got = append(got, stamped{time.Since(start), string(buf[:n])})
			}
		}()
		sim.Scan("CODE")
		sim.ScanRaw([]byte{0, 0xff})
		sim.ScanSlow("ab", 300*time.Millisecond)
		time.Sleep(time.Second)
		synctest.Wait()
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		dev.Close()
		<-readDone
		want := []stamped{{0, "CODE\r"}, {0, "\x00\xff"}, {0, "a"}, {300 * time.Millisecond, "b"}, {600 * time.Millisecond, "\r"}}
		if len(got) != len(want) {
			t.Fatalf("got %+v", got)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("write %d = %+v, want %+v", i, got[i], want[i])
			}
		}
		if st := sim.State(); st.Scanned != 3 || st.Bytes != 10 || st.Queued != 0 {
			t.Errorf("state = %+v", st)
		}
	})
}

func TestQueueFull(t *testing.T) {
	sim := scannersim.New(scannersim.Config{QueueLen: 2})
	sim.Scan("1")
	sim.Scan("2")
	if err := sim.Scan("3"); !errors.Is(err, scannersim.ErrBusy) {
		t.Errorf("third scan without Serve: %v", err)
	}
}

func TestServeWithoutDeadlines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pr, pw := io.Pipe()
		sim := scannersim.New(scannersim.Config{})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- sim.Serve(ctx, pw) }()
		sim.Scan("x")
		buf := make([]byte, 8)
		n, _ := io.ReadAtLeast(pr, buf, 3)
		if string(buf[:n]) != "x\r\n" {
			t.Errorf("read %q", buf[:n])
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

func TestDemoWallet(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	now := time.Unix(1_750_000_000, 0)
	w := scannersim.DemoWallet{Key: priv, KeyID: "k1", Account: "acct", TTL: time.Minute, Now: func() time.Time { return now }}
	p1, p2 := w.Payload(), w.Payload()
	if p1 == p2 {
		t.Error("two payloads share a nonce")
	}
	parts := strings.Split(p1, ".")
	if len(parts) != 6 || parts[2] != strconv.FormatInt(now.Add(time.Minute).Unix(), 10) {
		t.Fatalf("payload %q", p1)
	}
	i := strings.LastIndexByte(p1, '.')
	sig, _ := base64.RawURLEncoding.DecodeString(p1[i+1:])
	if !ed25519.Verify(pub, []byte(p1[:i]), sig) {
		t.Error("payload does not verify")
	}
}

// TestLineSpeed: at 9600 8N1 a scan's characters reach the host one character time apart.
func TestLineSpeed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		line := linespeed.Scanner
		host, dev := net.Pipe()
		defer host.Close()
		sim := scannersim.New(scannersim.Config{Suffix: "\r", Line: line})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- sim.Serve(ctx, dev) }()
		t0 := time.Now()
		if err := sim.Scan("QR-CODE"); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		got := ""
		for len(got) < len("QR-CODE\r") {
			n, err := host.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			got += string(buf[:n])
			if want := line.Duration(len(got)); time.Since(t0) != want {
				t.Fatalf("%d characters after %v, want after %v", len(got), time.Since(t0), want)
			}
		}
		if got != "QR-CODE\r" {
			t.Fatalf("got %q", got)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		dev.Close()
	})
}
