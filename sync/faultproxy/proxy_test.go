package faultproxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"net"
	"os"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
)

// wait is the generous deadline for conditions that normally hold within milliseconds.
const wait = 10 * time.Second

// echoServer echoes every connection until the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				io.Copy(c, c)
			})
		}
	})
	return ln.Addr().String()
}

// sink accepts connections and hands each to the test.
func sink(t *testing.T) (addr string, conns <-chan net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan net.Conn, 16)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		close(ch)
		for c := range ch {
			c.Close()
		}
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ch <- c
		}
	})
	return ln.Addr().String(), ch
}

func start(t *testing.T, upstream string, seed uint64) *Proxy {
	t.Helper()
	p, err := Start(t.Context(), Config{Upstream: upstream, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func accept(t *testing.T, conns <-chan net.Conn) net.Conn {
	t.Helper()
	select {
	case c := <-conns:
		t.Cleanup(func() { c.Close() })
		return c
	case <-time.After(wait):
		t.Fatal("no upstream connection")
		return nil
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestForwardsBothWays(t *testing.T) {
	p := start(t, echoServer(t), 1)
	c := dial(t, p.Addr())
	msg := make([]byte, 1<<20)
	rand.Read(msg)
	errc := make(chan error, 1)
	go func() { _, err := c.Write(msg); errc <- err }()
	got := make([]byte, len(msg))
	c.SetReadDeadline(time.Now().Add(wait))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	must(t, <-errc)
	if !bytes.Equal(got, msg) {
		t.Fatal("echo through the proxy differs")
	}
	st := p.Stats()
	if st.Up.BytesIn != uint64(len(msg)) || st.Up.BytesOut != st.Up.BytesIn || st.Down.BytesOut != st.Up.BytesIn {
		t.Fatalf("stats %+v", st)
	}
	if st.Accepted != 1 || st.Active != 1 {
		t.Fatalf("connections: %+v", st)
	}
	// A clean close reaches the server, whose close comes back: the connection is gone.
	c.Close()
	waitFor(t, "connection teardown", func() bool { return p.Stats().Active == 0 })
}

// records sends n numbered 4-byte records through a proxy, one chunk each (it waits until
// the proxy has read a record before it writes the next), and returns the records the
// upstream received, in order, with the proxy's stats.
func records(t *testing.T, seed uint64, n int, setup func(p *Proxy)) ([]uint32, Stats) {
	t.Helper()
	addr, conns := sink(t)
	p := start(t, addr, seed)
	setup(p)
	c := dial(t, p.Addr())
	up := accept(t, conns)
	got := make(chan []uint32, 1)
	go func() {
		var out []uint32
		b, _ := io.ReadAll(up)
		for len(b) >= 4 {
			out = append(out, binary.BigEndian.Uint32(b))
			b = b[4:]
		}
		got <- out
	}()
	for i := range n {
		if _, err := c.Write(binary.BigEndian.AppendUint32(nil, uint32(i))); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the proxy to read a record", func() bool { return p.Stats().Up.ChunksIn == uint64(i+1) })
	}
	c.Close()
	select {
	case out := <-got:
		return out, p.Stats()
	case <-time.After(wait):
		t.Fatal("upstream did not see the close")
		return nil, Stats{}
	}
}

func TestDropIsSeededAndCounted(t *testing.T) {
	const n, prob = 200, 0.3
	drop := func(p *Proxy) { must(t, p.Drop(Up, prob)) }
	a, st := records(t, 7, n, drop)
	b, _ := records(t, 7, n, drop)
	c, _ := records(t, 8, n, drop)
	if !slices.Equal(a, b) {
		t.Fatal("same seed, different drops")
	}
	if slices.Equal(a, c) {
		t.Fatal("different seeds, same drops")
	}
	if int(st.Up.Dropped) != n-len(a) || st.Up.ChunksOut != uint64(len(a)) {
		t.Fatalf("dropped %d, received %d of %d: %+v", st.Up.Dropped, len(a), n, st.Up)
	}
	// Binomial(200, 0.3): mean 60, sd 6.5; the seed fixes the outcome, the bound is loose.
	if frac := float64(st.Up.Dropped) / n; math.Abs(frac-prob) > 0.12 {
		t.Fatalf("dropped fraction %.2f, want about %.2f", frac, prob)
	}
	for i := 1; i < len(a); i++ {
		if a[i] <= a[i-1] {
			t.Fatalf("records out of order: %v", a)
		}
	}
}

func TestDuplicateWritesTwice(t *testing.T) {
	const n = 100
	got, st := records(t, 3, n, func(p *Proxy) { must(t, p.Duplicate(Up, 0.5)) })
	if len(got) != n+int(st.Up.Duplicated) || st.Up.Duplicated == 0 {
		t.Fatalf("received %d records for %d sent and %d duplicated", len(got), n, st.Up.Duplicated)
	}
	// Each record appears once or twice in a row, in order.
	next := uint32(0)
	for i := 0; i < len(got); i++ {
		if got[i] != next {
			t.Fatalf("record %d is %d, want %d", i, got[i], next)
		}
		if i+1 < len(got) && got[i+1] == next {
			i++
		}
		next++
	}
	if next != n {
		t.Fatalf("saw %d distinct records, want %d", next, n)
	}
}

func TestDelayAndJitterKeepOrder(t *testing.T) {
	const delay = 40 * time.Millisecond
	p := start(t, echoServer(t), 5)
	must(t, p.Delay(Both, delay, 30*time.Millisecond))
	c := dial(t, p.Addr())
	t0 := time.Now()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	c.SetReadDeadline(time.Now().Add(wait))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	// Timers never fire early, so the round trip is at least the two delays.
	if rtt := time.Since(t0); rtt < 2*delay {
		t.Fatalf("round trip %v, want at least %v", rtt, 2*delay)
	}
	// Many small writes with jitter come back in order.
	var want []byte
	for i := range 200 {
		b := []byte{byte(i)}
		want = append(want, b...)
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("jitter reordered the stream")
	}
}

func TestBlackholeHoldsDataAndClose(t *testing.T) {
	addr, conns := sink(t)
	p := start(t, addr, 1)
	c := dial(t, p.Addr())
	up := accept(t, conns)
	must(t, p.Blackhole(Up, true))
	c.Write([]byte("lost"))
	waitFor(t, "the chunk to be swallowed", func() bool { return p.Stats().Up.Blackholed == 1 })
	// The client goes away during the partition: the server must not hear of it.
	c.Close()
	waitFor(t, "the close to be held", func() bool { return p.Stats().Up.HeldCloses == 1 })
	if p.Stats().Active != 1 {
		t.Fatal("connection torn down during the partition")
	}
	must(t, p.Blackhole(Up, false))
	up.SetReadDeadline(time.Now().Add(wait))
	b, err := io.ReadAll(up)
	if err != nil || len(b) != 0 {
		t.Fatalf("upstream read %q, %v; want a bare EOF after the heal", b, err)
	}
}

func TestBlackholeNewConnections(t *testing.T) {
	p := start(t, echoServer(t), 1)
	must(t, p.Blackhole(Both, true))
	c := dial(t, p.Addr()) // accepted: a partition is silent, not refused
	c.Write([]byte("x"))
	waitFor(t, "the chunk to be swallowed", func() bool { return p.Stats().Up.Blackholed == 1 })
	must(t, p.Blackhole(Both, false))
	c.Write([]byte("y"))
	buf := make([]byte, 1)
	c.SetReadDeadline(time.Now().Add(wait))
	if _, err := io.ReadFull(c, buf); err != nil || buf[0] != 'y' {
		t.Fatalf("after the heal read %q, %v", buf, err)
	}
}

func TestCutAllResetsBothPeers(t *testing.T) {
	addr, conns := sink(t)
	p := start(t, addr, 1)
	c := dial(t, p.Addr())
	up := accept(t, conns)
	waitFor(t, "the connection", func() bool { return p.Stats().Active == 1 })
	if n := p.CutAll(); n != 1 {
		t.Fatalf("cut %d connections", n)
	}
	for name, conn := range map[string]net.Conn{"client": c, "upstream": up} {
		conn.SetReadDeadline(time.Now().Add(wait))
		_, err := conn.Read(make([]byte, 1))
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("%s read after a cut: %v, want a reset", name, err)
		}
	}
	st := p.Stats()
	if st.Cut != 1 {
		t.Fatalf("cut counter %d", st.Cut)
	}
	waitFor(t, "no active connection", func() bool { return p.Stats().Active == 0 })
}

func TestRefuse(t *testing.T) {
	p := start(t, echoServer(t), 1)
	old := dial(t, p.Addr())
	// Until the proxy has accepted it, the connection sits in the kernel's backlog, which
	// closing the listener resets.
	waitFor(t, "the connection", func() bool { return p.Stats().Active == 1 })
	must(t, p.Refuse(true))
	if c, err := net.DialTimeout("tcp", p.Addr(), wait); err == nil {
		c.Close()
		t.Fatal("connected while refusing")
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial while refusing: %v, want connection refused", err)
	}
	// The connection made before is left alone.
	old.Write([]byte("a"))
	buf := make([]byte, 1)
	old.SetReadDeadline(time.Now().Add(wait))
	if _, err := io.ReadFull(old, buf); err != nil {
		t.Fatalf("existing connection after Refuse: %v", err)
	}
	must(t, p.Refuse(true)) // idempotent
	must(t, p.Refuse(false))
	c := dial(t, p.Addr())
	c.Write([]byte("b"))
	c.SetReadDeadline(time.Now().Add(wait))
	if _, err := io.ReadFull(c, buf); err != nil || buf[0] != 'b' {
		t.Fatalf("after Refuse(false): %q %v", buf, err)
	}
}

func TestThrottlePaces(t *testing.T) {
	const rate = 100 << 10 // 100 KiB/s
	addr, conns := sink(t)
	p := start(t, addr, 1)
	must(t, p.Throttle(Up, rate))
	c := dial(t, p.Addr())
	up := accept(t, conns)
	msg := make([]byte, 40<<10)
	t0 := time.Now()
	go c.Write(msg)
	up.SetReadDeadline(time.Now().Add(wait))
	if _, err := io.ReadFull(up, make([]byte, len(msg))); err != nil {
		t.Fatal(err)
	}
	// 40 KiB at 100 KiB/s: the last slice may go at 0.38 s at the earliest.
	if el := time.Since(t0); el < 350*time.Millisecond {
		t.Fatalf("40 KiB through a 100 KiB/s throttle in %v", el)
	}
}

func TestUpstreamDownResetsClient(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	p := start(t, addr, 1)
	// The reset may even beat the end of the client's connect.
	if c, err := net.DialTimeout("tcp", p.Addr(), wait); err == nil {
		c.SetReadDeadline(time.Now().Add(wait))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("read data with the upstream down")
		} else if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal("client not reset with the upstream down")
		}
		c.Close()
	}
	waitFor(t, "the dial failure", func() bool { return p.Stats().DialFailures == 1 })
}

func TestBadSettings(t *testing.T) {
	p := start(t, echoServer(t), 1)
	for name, err := range map[string]error{
		"drop>1":      p.Drop(Up, 1.5),
		"drop NaN":    p.Drop(Up, math.NaN()),
		"dup<0":       p.Duplicate(Down, -0.1),
		"delay<0":     p.Delay(Both, -time.Second, 0),
		"jitter<0":    p.Delay(Both, 0, -1),
		"throttle<0":  p.Throttle(Up, -1),
		"bad dir":     p.Blackhole(Dir(0), true),
		"bad dir bit": p.Drop(Dir(4), 0.1),
	} {
		if !errors.Is(err, ErrFault) {
			t.Errorf("%s: %v, want ErrFault", name, err)
		}
	}
	for _, cfg := range []Config{{}, {Upstream: "nocolon"}} {
		if _, err := Start(t.Context(), cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("Start(%+v): %v, want ErrConfig", cfg, err)
		}
	}
}

func TestCloseAndContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	p, err := Start(ctx, Config{Upstream: echoServer(t)})
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, p.Addr())
	waitFor(t, "the connection", func() bool { return p.Stats().Active == 1 })
	cancel()
	c.SetReadDeadline(time.Now().Add(wait))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection survived the proxy's end")
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	p.Close() // twice is fine
	if err := p.Refuse(true); !errors.Is(err, ErrClosed) {
		t.Fatalf("Refuse after Close: %v", err)
	}
	if c, err := net.DialTimeout("tcp", p.Addr(), wait); err == nil {
		c.Close()
		t.Fatal("closed proxy still accepts")
	}
}

func TestHealClearsEverything(t *testing.T) {
	p := start(t, echoServer(t), 1)
	must(t, p.Drop(Both, 1))
	must(t, p.Blackhole(Down, true))
	must(t, p.Delay(Up, time.Hour, 0))
	must(t, p.Refuse(true))
	must(t, p.Heal())
	c := dial(t, p.Addr())
	c.Write([]byte("z"))
	buf := make([]byte, 1)
	c.SetReadDeadline(time.Now().Add(wait))
	if _, err := io.ReadFull(c, buf); err != nil || buf[0] != 'z' {
		t.Fatalf("after Heal: %q %v", buf, err)
	}
}
