package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Dir selects the direction(s) a fault applies to.
type Dir uint8

// Directions.
const (
	// Up is client to upstream.
	Up Dir = 1 << iota
	// Down is upstream to client.
	Down
	// Both is Up and Down.
	Both = Up | Down
)

func (d Dir) String() string {
	switch d {
	case Up:
		return "up"
	case Down:
		return "down"
	case Both:
		return "both"
	}
	return fmt.Sprintf("Dir(%d)", uint8(d))
}

// Config configures a Proxy.
type Config struct {
	// Listen is the address to listen on; empty means "127.0.0.1:0" (see Proxy.Addr).
	Listen string
	// Upstream is the host:port every connection is forwarded to. Required.
	Upstream string
	// Seed seeds the fault decisions (see the package documentation).
	Seed uint64
	// DialTimeout bounds the upstream dial of each accepted connection (default 5 s).
	DialTimeout time.Duration
	// ChunkSize is the largest read, and so the largest chunk (default 16 KiB).
	ChunkSize int
	// Logger receives fault changes (info) and connection events (debug); nil discards.
	Logger *slog.Logger
}

// Errors.
var (
	// ErrConfig reports an unusable Config.
	ErrConfig = errors.New("faultproxy: bad config")
	// ErrFault reports a fault setting out of range (a probability outside [0, 1], a
	// negative duration or rate, an unknown direction).
	ErrFault = errors.New("faultproxy: bad fault setting")
	// ErrClosed is returned by Refuse after Close.
	ErrClosed = errors.New("faultproxy: closed")
)

// DirStats counts one direction's traffic since Start.
type DirStats struct {
	// BytesIn and ChunksIn were read from the source.
	BytesIn, ChunksIn uint64
	// BytesOut and ChunksOut were written to the destination (a duplicate counts twice).
	BytesOut, ChunksOut uint64
	// Dropped, Duplicated and Blackholed count chunks.
	Dropped, Duplicated, Blackholed uint64
	// HeldCloses counts closes (FIN or reset) held back by a blackhole.
	HeldCloses uint64
}

// Stats counts connections and traffic since Start.
type Stats struct {
	Up, Down DirStats
	// Accepted connections (including those whose upstream dial failed).
	Accepted uint64
	// Active connections now.
	Active int
	// Cut connections, by CutAll.
	Cut uint64
	// DialFailures are accepted connections reset because the upstream dial failed.
	DialFailures uint64
}

type faults struct {
	delay, jitter time.Duration
	drop, dup     float64
	blackhole     bool
	bps           int64
}

type dirCounters struct {
	bytesIn, chunksIn, bytesOut, chunksOut, dropped, duplicated, blackholed, held atomic.Uint64
}

func (c *dirCounters) snapshot() DirStats {
	return DirStats{BytesIn: c.bytesIn.Load(), ChunksIn: c.chunksIn.Load(), BytesOut: c.bytesOut.Load(),
		ChunksOut: c.chunksOut.Load(), Dropped: c.dropped.Load(), Duplicated: c.duplicated.Load(),
		Blackholed: c.blackholed.Load(), HeldCloses: c.held.Load()}
}

// Proxy is a running fault-injection proxy.
type Proxy struct {
	cfg  Config
	log  *slog.Logger
	addr string
	stop chan struct{} // closed by shutdown
	ctx  context.Context
	end  context.CancelFunc
	wg   sync.WaitGroup

	refuseMu sync.Mutex // serialises Refuse (which may wait to re-bind)

	mu       sync.Mutex
	f        [2]faults
	changed  chan struct{} // closed and replaced on every fault change
	ln       net.Listener  // nil while refusing
	refusing bool
	closed   bool
	conns    map[*conn]struct{}
	nconn    uint64
	pace     [2]time.Time // when the direction's link is free again (Throttle)

	counters                 [2]dirCounters
	accepted, cut, dialFails atomic.Uint64
}

// Start listens on cfg.Listen and forwards to cfg.Upstream until Close is called or ctx
// ends. It returns once the listener is bound.
func Start(ctx context.Context, cfg Config) (*Proxy, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("faultproxy: start: %w", err)
	}
	if cfg.Upstream == "" {
		return nil, fmt.Errorf("%w: no upstream address", ErrConfig)
	}
	if _, _, err := net.SplitHostPort(cfg.Upstream); err != nil {
		return nil, fmt.Errorf("%w: upstream %q: %v", ErrConfig, cfg.Upstream, err)
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.ChunkSize <= 0 {
		cfg.ChunkSize = 16 << 10
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen %s: %w", cfg.Listen, err)
	}
	ictx, end := context.WithCancel(context.Background())
	p := &Proxy{
		cfg: cfg, addr: ln.Addr().String(), stop: make(chan struct{}), ctx: ictx, end: end,
		changed: make(chan struct{}), ln: ln, conns: map[*conn]struct{}{},
	}
	p.log = logger.With("component", "faultproxy", "listen", p.addr, "upstream", cfg.Upstream)
	p.wg.Add(2)
	go p.serve()
	go func() {
		defer p.wg.Done()
		select {
		case <-ctx.Done():
			p.shutdown()
		case <-p.stop:
		}
	}()
	p.log.Debug("faultproxy: listening")
	return p, nil
}

// Addr is the address the proxy listens on (host:port, the real port when Listen had 0). It
// stays the same across Refuse.
func (p *Proxy) Addr() string { return p.addr }

// Close stops listening, resets every connection and waits for the proxy's goroutines. It
// is safe to call more than once.
func (p *Proxy) Close() error {
	p.shutdown()
	p.wg.Wait()
	return nil
}

func (p *Proxy) shutdown() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	ln := p.ln
	p.ln = nil
	conns := make([]*conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	close(p.stop)
	p.end()
	p.notifyLocked()
	p.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	for _, c := range conns {
		c.teardown(true)
	}
	p.log.Debug("faultproxy: closed")
}

// notifyLocked wakes everything waiting for a fault change. p.mu must be held.
func (p *Proxy) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

func dirs(d Dir) ([]int, error) {
	switch d {
	case Up:
		return []int{0}, nil
	case Down:
		return []int{1}, nil
	case Both:
		return []int{0, 1}, nil
	}
	return nil, fmt.Errorf("%w: direction %v", ErrFault, d)
}

func (p *Proxy) set(d Dir, what string, fn func(*faults), attrs ...any) error {
	ds, err := dirs(d)
	if err != nil {
		return err
	}
	p.mu.Lock()
	for _, i := range ds {
		fn(&p.f[i])
	}
	p.notifyLocked()
	p.mu.Unlock()
	p.log.Info("faultproxy: "+what, append([]any{"dir", d.String()}, attrs...)...)
	return nil
}

func validP(p float64) bool { return !math.IsNaN(p) && p >= 0 && p <= 1 }

// Delay holds every chunk in direction d for delay plus a uniform random [0, jitter) before
// writing it; order is kept. Zero for both removes the delay.
func (p *Proxy) Delay(d Dir, delay, jitter time.Duration) error {
	if delay < 0 || jitter < 0 {
		return fmt.Errorf("%w: delay %v, jitter %v", ErrFault, delay, jitter)
	}
	return p.set(d, "delay", func(f *faults) { f.delay, f.jitter = delay, jitter }, "delay", delay, "jitter", jitter)
}

// Drop discards each chunk in direction d with probability prob (0 stops dropping).
func (p *Proxy) Drop(d Dir, prob float64) error {
	if !validP(prob) {
		return fmt.Errorf("%w: drop probability %v", ErrFault, prob)
	}
	return p.set(d, "drop", func(f *faults) { f.drop = prob }, "p", prob)
}

// Duplicate writes each chunk in direction d twice with probability prob (0 stops it).
func (p *Proxy) Duplicate(d Dir, prob float64) error {
	if !validP(prob) {
		return fmt.Errorf("%w: duplicate probability %v", ErrFault, prob)
	}
	return p.set(d, "duplicate", func(f *faults) { f.dup = prob }, "p", prob)
}

// Blackhole silently discards everything in direction d (on) or stops doing so (off), as
// described in the package documentation.
func (p *Proxy) Blackhole(d Dir, on bool) error {
	return p.set(d, "blackhole", func(f *faults) { f.blackhole = on }, "on", on)
}

// Throttle paces direction d to bytesPerSecond, summed over every connection; 0 removes
// the limit.
func (p *Proxy) Throttle(d Dir, bytesPerSecond int64) error {
	if bytesPerSecond < 0 {
		return fmt.Errorf("%w: rate %d B/s", ErrFault, bytesPerSecond)
	}
	return p.set(d, "throttle", func(f *faults) { f.bps = bytesPerSecond }, "bytes_per_second", bytesPerSecond)
}

// CutAll resets every current connection (both peers see a reset) and returns how many it
// cut.
func (p *Proxy) CutAll() int {
	p.mu.Lock()
	conns := make([]*conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.teardown(true)
	}
	p.cut.Add(uint64(len(conns)))
	p.log.Info("faultproxy: cut all connections", "n", len(conns))
	return len(conns)
}

// rebindWait bounds how long Refuse(false) retries binding the address again.
const rebindWait = 3 * time.Second

// Refuse closes the listening socket (on), so that new connections are refused, or binds
// the same address again (off). Connections the proxy has accepted are not touched; those
// still in the kernel's accept queue are reset with the socket.
func (p *Proxy) Refuse(on bool) error {
	p.refuseMu.Lock()
	defer p.refuseMu.Unlock()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	if on == p.refusing {
		p.mu.Unlock()
		return nil
	}
	if on {
		ln := p.ln
		p.ln, p.refusing = nil, true
		p.notifyLocked()
		p.mu.Unlock()
		ln.Close()
		p.log.Info("faultproxy: refusing connections")
		return nil
	}
	p.mu.Unlock()
	// Go listeners set SO_REUSEADDR, so the port is normally free at once; retry briefly in
	// case a connection of this host borrowed it as its ephemeral port meanwhile.
	deadline := time.Now().Add(rebindWait)
	for {
		ln, err := net.Listen("tcp", p.addr)
		if err == nil {
			p.mu.Lock()
			if p.closed {
				p.mu.Unlock()
				ln.Close()
				return ErrClosed
			}
			p.ln, p.refusing = ln, false
			p.notifyLocked()
			p.mu.Unlock()
			p.log.Info("faultproxy: accepting connections again")
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("faultproxy: listen again on %s: %w", p.addr, err)
		}
		select {
		case <-p.stop:
			return ErrClosed
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Heal removes every fault: no delay, drop, duplicate, blackhole or throttle, in both
// directions, and accepts connections again.
func (p *Proxy) Heal() error {
	p.mu.Lock()
	p.f = [2]faults{}
	p.notifyLocked()
	p.mu.Unlock()
	p.log.Info("faultproxy: healed")
	return p.Refuse(false)
}

// Stats returns the counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	active := len(p.conns)
	p.mu.Unlock()
	return Stats{Up: p.counters[0].snapshot(), Down: p.counters[1].snapshot(), Accepted: p.accepted.Load(),
		Active: active, Cut: p.cut.Load(), DialFailures: p.dialFails.Load()}
}

func (p *Proxy) faultsOf(i int) faults {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.f[i]
}

// blackholed reports whether direction i is blackholed, and a channel closed on the next
// fault change.
func (p *Proxy) blackholed(i int) (bool, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.f[i].blackhole, p.changed
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		p.mu.Lock()
		ln, changed, closed := p.ln, p.changed, p.closed
		p.mu.Unlock()
		if closed {
			return
		}
		if ln == nil { // refusing
			select {
			case <-changed:
			case <-p.stop:
				return
			}
			continue
		}
		c, err := ln.Accept()
		if err != nil {
			p.mu.Lock()
			replaced := p.ln != ln
			p.mu.Unlock()
			if replaced {
				continue // closed by Refuse or Close
			}
			// EMFILE and the like: do not spin.
			p.log.Warn("faultproxy: accept", "err", err)
			select {
			case <-p.stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		p.accepted.Add(1)
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			resetConn(c)
			return
		}
		n := p.nconn
		p.nconn++
		p.wg.Add(1)
		p.mu.Unlock()
		go p.handle(n, c)
	}
}

func (p *Proxy) handle(n uint64, client net.Conn) {
	defer p.wg.Done()
	dctx, cancel := context.WithTimeout(p.ctx, p.cfg.DialTimeout)
	var d net.Dialer
	server, err := d.DialContext(dctx, "tcp", p.cfg.Upstream)
	cancel()
	if err != nil {
		p.dialFails.Add(1)
		p.log.Debug("faultproxy: upstream dial failed; resetting the client", "conn", n, "err", err)
		resetConn(client)
		return
	}
	c := &conn{p: p, id: n, client: client, server: server, done: make(chan struct{})}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		c.teardown(true)
		return
	}
	p.conns[c] = struct{}{}
	p.mu.Unlock()
	p.log.Debug("faultproxy: connection", "conn", n, "client", client.RemoteAddr().String())

	var wg sync.WaitGroup
	wg.Add(2)
	go c.pump(0, client, server, &wg)
	go c.pump(1, server, client, &wg)
	wg.Wait()
	c.teardown(false)

	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	p.log.Debug("faultproxy: connection closed", "conn", n)
}

// resetConn closes c with an RST instead of a FIN.
func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}

type conn struct {
	p              *Proxy
	id             uint64
	client, server net.Conn
	done           chan struct{}
	once           sync.Once
}

func (c *conn) teardown(rst bool) {
	c.once.Do(func() {
		if rst {
			resetConn(c.client)
			resetConn(c.server)
		} else {
			c.client.Close()
			c.server.Close()
		}
		close(c.done)
	})
}

type item struct {
	data    []byte
	copies  int
	release time.Time
	end     bool
	err     error // the source's read error, for end
}

// queueLen bounds the chunks waiting in a direction: beyond it the reader stops reading,
// so a throttled or delayed direction pushes back on the sender as TCP would.
const queueLen = 64

// pump forwards direction i from src to dst: a reader that decides each chunk's fate and a
// writer that applies delay, blackhole and throttle. It returns when both have stopped.
func (c *conn) pump(i int, src, dst net.Conn, wg *sync.WaitGroup) {
	defer wg.Done()
	p := c.p
	rng := rand.New(rand.NewPCG(p.cfg.Seed, c.id<<1|uint64(i)))
	q := make(chan item, queueLen)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		c.read(i, src, rng, q)
	}()
	c.write(i, dst, q)
	<-readerDone
}

func (c *conn) read(i int, src net.Conn, rng *rand.Rand, q chan<- item) {
	p := c.p
	ctr := &p.counters[i]
	buf := make([]byte, p.cfg.ChunkSize)
	var last time.Time
	push := func(it item) bool {
		select {
		case q <- it:
			return true
		case <-c.done:
			return false
		}
	}
	release := func(f faults, u float64) time.Time {
		r := time.Now().Add(f.delay + time.Duration(u*float64(f.jitter)))
		if r.Before(last) {
			r = last
		}
		last = r
		return r
	}
	for {
		n, err := src.Read(buf)
		if n > 0 {
			// Three draws per chunk whatever the faults, so that a chunk's decisions depend
			// only on its position in the stream.
			uDrop, uDup, uJitter := rng.Float64(), rng.Float64(), rng.Float64()
			f := p.faultsOf(i)
			ctr.bytesIn.Add(uint64(n))
			ctr.chunksIn.Add(1)
			switch {
			case f.blackhole:
				ctr.blackholed.Add(1)
			case uDrop < f.drop:
				ctr.dropped.Add(1)
			default:
				copies := 1
				if uDup < f.dup {
					copies = 2
					ctr.duplicated.Add(1)
				}
				data := make([]byte, n)
				copy(data, buf[:n])
				if !push(item{data: data, copies: copies, release: release(f, uJitter)}) {
					return
				}
			}
		}
		if err != nil {
			push(item{end: true, err: err, release: release(p.faultsOf(i), 0)})
			return
		}
	}
}

func (c *conn) write(i int, dst net.Conn, q <-chan item) {
	p := c.p
	ctr := &p.counters[i]
	for {
		var it item
		select {
		case it = <-q:
		case <-c.done:
			return
		}
		if !c.sleepUntil(it.release) {
			return
		}
		if it.end {
			c.passClose(i, dst, it.err)
			return
		}
		if bh, _ := p.blackholed(i); bh {
			ctr.blackholed.Add(1)
			continue
		}
		for range it.copies {
			if err := c.paced(i, dst, it.data); err != nil {
				c.teardown(true)
				return
			}
			ctr.chunksOut.Add(1)
			ctr.bytesOut.Add(uint64(len(it.data)))
		}
	}
}

// sleepUntil waits until t; false if the connection ended meanwhile.
func (c *conn) sleepUntil(t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return true
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-c.done:
		return false
	}
}

// paced writes b to dst, in slices of about 20 ms of the direction's rate when throttled.
func (c *conn) paced(i int, dst net.Conn, b []byte) error {
	p := c.p
	for len(b) > 0 {
		bps := p.faultsOf(i).bps
		n := len(b)
		if bps > 0 {
			n = min(n, int(max(1, bps/50)))
			p.mu.Lock()
			now := time.Now()
			start := p.pace[i]
			if start.Before(now) {
				start = now
			}
			p.pace[i] = start.Add(time.Duration(float64(n) / float64(bps) * float64(time.Second)))
			p.mu.Unlock()
			if !c.sleepUntil(start) {
				return net.ErrClosed
			}
		}
		if _, err := dst.Write(b[:n]); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// passClose passes the source's close on to dst: a FIN as a half-close, anything else as a
// reset. While the direction is blackholed the close is held back, as a partition would.
func (c *conn) passClose(i int, dst net.Conn, err error) {
	p := c.p
	held := false
	for {
		bh, changed := p.blackholed(i)
		if !bh {
			break
		}
		if !held {
			held = true
			p.counters[i].held.Add(1)
		}
		select {
		case <-changed:
		case <-c.done:
			return
		}
	}
	if errors.Is(err, io.EOF) {
		if tc, ok := dst.(*net.TCPConn); ok {
			if tc.CloseWrite() == nil {
				return
			}
		}
	}
	c.teardown(true)
}
