// Package seriallink is the link plumbing the serial bill acceptor drivers (ID-003, CCNET,
// SSP) share: the mailbox that serialises the engine's commands with the poll loop, the Run
// lifecycle (reader goroutine started, port closed, reader waited for), the reader that
// turns bytes into frames and drops a frame whose bytes stop arriving mid-frame, and the
// helpers the poll loop uses to write a command and wait for its reply.
//
// What differs between protocols stays in the drivers: the frame codec (a Decoder), the
// command tables, retries (re-send, NAK, sequence flags), the unit's states and the money
// logic around the credit point.
//
// # Goroutines
//
// A Link has two goroutines while Run is active: the caller's, which runs the poll loop
// (Loop.Cycle, Loop.Serve, Loop.Shutdown) and is the only one that writes to the port, and
// the reader, which only reads. The loop-side methods (Write, Await, DrainStale, Quiet,
// Fatal) belong to the poll loop's goroutine; Do and Stats may be called from anywhere.
// Run returns only after the reader is gone (or, for a port whose Close does not release a
// blocked Read, after ShutdownTimeout, which is logged). A port that is not an io.Closer
// cannot be released at all: its reader exits at its next Read, and Run does not wait. After Run the Link is inert:
// nothing is written, and Do fails with ErrStopped.
package seriallink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"time"
)

// Decoder reassembles one protocol's frames from a byte stream; the drivers' Decoder types
// implement it.
type Decoder[F any] interface {
	// Feed appends bytes read from the port.
	Feed(p []byte)
	// Next returns the next good frame, the Config's Incomplete error when more bytes are
	// needed, or another error for a broken frame it dropped (call Next again).
	Next() (F, error)
	// Reset drops any partial frame.
	Reset()
	// Buffered is how many bytes wait for the rest of their frame.
	Buffered() int
	// Dropped returns the running totals of bytes skipped while resynchronising and of
	// broken frames dropped.
	Dropped() (garbageBytes, badFrames uint64)
}

// Config describes the link of one driver.
type Config[F any] struct {
	// Name prefixes errors and identifies the driver ("id003").
	Name string
	// NewDecoder returns a fresh decoder for each Run.
	NewDecoder func() Decoder[F]
	// Incomplete is the decoder's "need more bytes" error.
	Incomplete error
	// InterByteTimeout is the longest silence allowed inside a frame. Bytes that arrive
	// after a longer silence, while a partial frame waits, start afresh: the partial frame is
	// dropped (counted in Stats.Abandoned and GarbageBytes), because a unit never pauses
	// that long inside a frame and the rest of it can only belong to something else. Zero
	// disables the check.
	InterByteTimeout time.Duration
	// WriteTimeout is the write deadline set before each Write on a port that supports one.
	WriteTimeout time.Duration
	// ShutdownTimeout bounds the wait for the reader after the port was closed (default 1 s).
	ShutdownTimeout time.Duration
	// ReadBuffer is the size of one Read (default 256).
	ReadBuffer int
	// AlreadyRunning is returned by Run while another Run of the same Link is active.
	AlreadyRunning error
	// NotRunning is returned by Do in place of ErrStopped, so a driver's commands fail with
	// the error its callers know.
	NotRunning error
	// Logger receives the link's debug logs; nil discards them.
	Logger *slog.Logger
}

// Stats counts what the link saw since it was made.
type Stats struct {
	Timeouts     uint64 // Await calls that ended without a reply
	Unexpected   uint64 // good frames that did not answer the command in flight (late, stale, foreign)
	BadFrames    uint64 // broken frames the decoder dropped
	GarbageBytes uint64 // bytes skipped while resynchronising, and partial frames dropped
	Abandoned    uint64 // partial frames dropped after more silence than InterByteTimeout
}

// Loop is the protocol's poll loop, as Run drives it.
type Loop[R any] struct {
	// Cycle is one poll step; it returns the time until the next one. Required.
	Cycle func(ctx context.Context) time.Duration
	// Ready reports whether requests are taken now (nil: always). While it is false,
	// requests wait in the mailbox.
	Ready func() bool
	// Serve carries out one request between two cycles (nil: requests are never taken).
	Serve func(ctx context.Context, r R) error
	// Shutdown runs once when the loop ends, unless the port failed: typically a best-effort
	// inhibit, with its own deadline (ctx is already done when Run was cancelled).
	Shutdown func(ctx context.Context)
}

// Errors of the loop-side helpers.
var (
	// ErrNoReply: nothing that answers the command came within the timeout.
	ErrNoReply = errors.New("no reply")
	// ErrDamaged: the reply arrived damaged (bad CRC, impossible length).
	ErrDamaged = errors.New("damaged reply")
)

// item is what the reader hands to the poll loop: a good frame, a dropped broken frame
// (err), or a port failure (fatal).
type item[F any] struct {
	f     F
	err   error
	fatal error
}

type counters struct {
	timeouts, unexpected, badFrames, garbage, abandoned atomic.Uint64
}

// Link is one serial port and the machinery around it. R is the type of the requests the
// driver's commands hand to its poll loop.
type Link[F any, R any] struct {
	port io.ReadWriter
	cfg  Config[F]
	log  *slog.Logger
	mb   Mailbox[R]
	n    counters

	resetRx atomic.Bool // ask the reader to drop a partial frame

	// Only the poll loop's goroutine touches these, during Run.
	rx     <-chan item[F]
	fatal  error
	lastIO time.Time // end of the last frame written or read, for Quiet
}

// New returns a link on port. Nothing is read or written until Run.
func New[F any, R any](port io.ReadWriter, cfg Config[F]) *Link[F, R] {
	if cfg.ReadBuffer <= 0 {
		cfg.ReadBuffer = 256
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.AlreadyRunning == nil {
		cfg.AlreadyRunning = errAlreadyOpen
	}
	if cfg.NotRunning == nil {
		cfg.NotRunning = ErrStopped
	}
	return &Link[F, R]{port: port, cfg: cfg, log: cfg.Logger}
}

// Port returns the port the link drives.
func (l *Link[F, R]) Port() io.ReadWriter { return l.port }

// Do hands a request to the poll loop and waits for its answer; see Mailbox.Do. When no
// loop runs, or it stops before answering, Do returns Config.NotRunning.
func (l *Link[F, R]) Do(ctx context.Context, r R) error {
	err := l.mb.Do(ctx, r)
	if errors.Is(err, ErrStopped) {
		return l.cfg.NotRunning
	}
	return err
}

// Stats returns the link counters.
func (l *Link[F, R]) Stats() Stats {
	return Stats{
		Timeouts: l.n.timeouts.Load(), Unexpected: l.n.unexpected.Load(),
		BadFrames: l.n.badFrames.Load(), GarbageBytes: l.n.garbage.Load(), Abandoned: l.n.abandoned.Load(),
	}
}

// Run starts the reader and runs lp until ctx ends or the port fails; then it runs
// lp.Shutdown (unless the port failed), closes the port when it is an io.Closer, which is
// what releases the reader blocked in Read, and waits for the reader. It returns nil when
// ctx ended, the port's error otherwise. Requests wait in the mailbox while lp is not
// Ready and fail with ErrStopped once Run has returned.
func (l *Link[F, R]) Run(ctx context.Context, lp Loop[R]) error {
	if err := l.mb.open(); err != nil {
		return l.cfg.AlreadyRunning
	}
	defer l.mb.close()

	rx := make(chan item[F], 8)
	quit := make(chan struct{})
	readerDone := make(chan struct{})
	l.rx, l.fatal, l.lastIO = rx, nil, time.Time{}
	l.resetRx.Store(false)
	go l.read(rx, quit, readerDone)

	err := l.poll(ctx, lp)
	if l.fatal == nil && lp.Shutdown != nil {
		lp.Shutdown(ctx)
	}
	close(quit)
	if c, ok := l.port.(io.Closer); ok {
		if cerr := c.Close(); cerr != nil {
			l.log.Debug("close port", "err", cerr)
		}
		// Closing the port is what releases a reader blocked in Read; bound the wait anyway,
		// a port whose Close does not do that would otherwise hang Run.
		t := time.NewTimer(l.cfg.ShutdownTimeout)
		select {
		case <-readerDone:
		case <-t.C:
			l.log.Error("reader goroutine still blocked in Read after the port was closed")
		}
		t.Stop()
	}
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// poll runs the cycles and serves requests between them.
func (l *Link[F, R]) poll(ctx context.Context, lp Loop[R]) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		var reqs <-chan Envelope[R]
		if lp.Serve != nil && (lp.Ready == nil || lp.Ready()) {
			reqs = l.mb.requests()
		}
		select {
		case <-ctx.Done():
			return nil
		case e := <-reqs:
			e.reply(lp.Serve(ctx, e.Req))
		case <-timer.C:
			timer.Reset(lp.Cycle(ctx))
		}
		if l.fatal != nil {
			return l.fatal
		}
	}
}

// read owns the decoder. A Read that returns (0, nil) is a serial read timeout, not end of
// input.
func (l *Link[F, R]) read(rx chan<- item[F], quit <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	dec := l.cfg.NewDecoder()
	var seenGarbage, seenBad uint64
	var last time.Time
	buf := make([]byte, l.cfg.ReadBuffer)
	send := func(it item[F]) bool {
		select {
		case rx <- it:
			return true
		case <-quit:
			return false
		}
	}
	for {
		n, err := l.port.Read(buf)
		if n > 0 {
			now := time.Now()
			silent := l.cfg.InterByteTimeout > 0 && dec.Buffered() > 0 && now.Sub(last) > l.cfg.InterByteTimeout
			if l.resetRx.Swap(false) || silent {
				if silent {
					l.n.abandoned.Add(1)
					l.log.Debug("partial frame dropped after silence", "bytes", dec.Buffered(), "silence", now.Sub(last))
				}
				l.n.garbage.Add(uint64(dec.Buffered()))
				dec.Reset()
			}
			last = now
			dec.Feed(buf[:n])
			// A damaged frame is reported only when nothing good came with it: a stray sync
			// byte in line noise ahead of a good reply must not trigger a re-send.
			var damaged error
			good := false
			for {
				f, ferr := dec.Next()
				if errors.Is(ferr, l.cfg.Incomplete) {
					break
				}
				if ferr != nil {
					damaged = ferr
					continue
				}
				good = true
				if !send(item[F]{f: f}) {
					return
				}
			}
			if damaged != nil && !good && !send(item[F]{err: damaged}) {
				return
			}
			garbage, bad := dec.Dropped()
			l.n.garbage.Add(garbage - seenGarbage)
			l.n.badFrames.Add(bad - seenBad)
			seenGarbage, seenBad = garbage, bad
		}
		if err != nil {
			send(item[F]{fatal: err})
			return
		}
	}
}

// Fatal is the port failure that ends Run, nil while the port works.
func (l *Link[F, R]) Fatal() error { return l.fatal }

// ResetRx asks the reader to drop whatever partial frame it holds before it decodes the
// next bytes: after a reply timed out, what is buffered can only be its stale start.
func (l *Link[F, R]) ResetRx() { l.resetRx.Store(true) }

type writeDeadliner interface{ SetWriteDeadline(time.Time) error }

// Write sends wire. An error that errors.Is os.ErrDeadlineExceeded leaves the link usable
// (the caller may try again); any other error is the port failing and becomes Fatal.
func (l *Link[F, R]) Write(wire []byte) error {
	if wd, ok := l.port.(writeDeadliner); ok && l.cfg.WriteTimeout > 0 {
		_ = wd.SetWriteDeadline(time.Now().Add(l.cfg.WriteTimeout))
	}
	_, err := l.port.Write(wire)
	l.lastIO = time.Now()
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) && l.fatal == nil {
		l.fatal = fmt.Errorf("%s: write: %w", l.cfg.Name, err)
	}
	return err
}

// DrainStale drops the frames that arrived while no command was outstanding: they can only
// be late answers to an earlier command. A port failure found on the way becomes Fatal.
func (l *Link[F, R]) DrainStale() { l.DrainStaleFunc(nil) }

// DrainStaleFunc is DrainStale that shows each good stale frame to seen (when not nil)
// before dropping it: a late answer can still carry a fact the driver must not lose.
func (l *Link[F, R]) DrainStaleFunc(seen func(F)) {
	for {
		select {
		case it := <-l.rx:
			if it.fatal != nil {
				l.setFatal(it.fatal)
				return
			}
			if it.err == nil {
				l.n.unexpected.Add(1)
				l.debug("stale frame dropped", it.f)
				if seen != nil {
					seen(it.f)
				}
			}
		default:
			return
		}
	}
}

func (l *Link[F, R]) setFatal(err error) {
	if l.fatal == nil {
		l.fatal = fmt.Errorf("%s: read: %w", l.cfg.Name, err)
	}
}

// Await waits up to timeout for the frame that answers the command just written. match is
// asked about every good frame: true takes it; false skips it as a late or foreign frame
// (counted as Unexpected) while the deadline still holds; an error ends the wait with that
// error (the unit answered, with a refusal or a NAK). A damaged frame ends the wait with
// ErrDamaged, silence with ErrNoReply, ctx with its error, a port failure with Fatal.
func (l *Link[F, R]) Await(ctx context.Context, timeout time.Duration, match func(F) (bool, error)) (F, error) {
	var zero F
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return zero, ctx.Err()
		case <-t.C:
			l.n.timeouts.Add(1)
			return zero, ErrNoReply
		case it := <-l.rx:
			if it.fatal != nil {
				l.setFatal(it.fatal)
				return zero, l.fatal
			}
			l.lastIO = time.Now()
			if it.err != nil {
				l.log.Debug("damaged frame", "err", it.err)
				return zero, ErrDamaged
			}
			l.debug("rx", it.f)
			ok, err := match(it.f)
			if err != nil {
				return zero, err
			}
			if ok {
				return it.f, nil
			}
			l.n.unexpected.Add(1)
			l.debug("unexpected frame skipped", it.f)
		}
	}
}

// debug logs a frame; the frame is formatted only when debug logs are wanted, since the
// poll loop sees several frames a second for as long as the kiosk runs.
func (l *Link[F, R]) debug(msg string, f F) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug(msg, "frame", fmt.Sprint(f))
	}
}

// Quiet waits until the line has been silent for gap since the last frame written or read
// (the bus silence some protocols want before a command).
func (l *Link[F, R]) Quiet(ctx context.Context, gap time.Duration) error {
	wait := time.Until(l.lastIO.Add(gap))
	if wait <= 0 {
		return nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
