package escpos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"
)

// Querier sends a request to the printer and reads a reply of n bytes within the reply
// timeout. Dialect profiles use it to ask their own status commands.
type Querier interface {
	Query(ctx context.Context, req []byte, n int) ([]byte, error)
}

// Profile is a printer dialect. The zero value is Generic.
type Profile struct {
	Name string
	// Extra, if set, runs after the generic DLE EOT 1..4 and adds the dialect's own findings to
	// s.Extra (presenter jam, ticket not taken, ...). Generic ESC/POS leaves it nil.
	Extra func(ctx context.Context, q Querier, s *Status) error
}

// Generic is plain ESC/POS: DLE EOT 1..4 and nothing else.
var Generic = Profile{Name: "generic"}

// Config configures a Printer. The zero value works.
type Config struct {
	Profile Profile
	// ReplyTimeout bounds the wait for each status byte (they come "at once"); 0 means 500 ms.
	ReplyTimeout time.Duration
	// WriteTimeout bounds writing one chunk on ports with write deadlines; 0 means 10 s (a
	// 256-byte chunk takes 0.3 s at 9600 baud; hardware flow control may hold it longer).
	WriteTimeout time.Duration
	// ChunkSize is the most bytes written at once, so cancellation is seen between chunks;
	// 0 means 256.
	ChunkSize int
	// Baud and BitsPerByte are the line's speed (BitsPerByte: start + data + parity + stop
	// bits, 10 for 8N1, the default when Baud is set). A write returns when the bytes are in
	// the port's buffer, long before a 9600-baud line has carried them to the printer (a
	// 1,000-byte receipt takes a second), so before reading a reply the driver waits until
	// everything it wrote is through the line: it drains the port (Drainer) and also waits
	// the time the line needs for the bytes written (a USB adapter's own FIFO, a pty, a
	// port that cannot drain). Zero Baud takes the port's own ByteTime() when it has one,
	// else no line time is waited. The reply timeout is counted from then on.
	Baud        int
	BitsPerByte int
	Logger      *slog.Logger // nil discards
}

// Drainer is a port that can wait until everything written to it has been sent (tcdrain;
// go.bug.st/serial's Port has it). The driver drains such a port before it reads a reply.
type Drainer interface {
	Drain() error
}

// byteTimer is a port that knows how long one character takes on its line.
type byteTimer interface {
	ByteTime() time.Duration
}

// Printer is an ESC/POS printer on a port. Its methods are safe for concurrent use; exchanges
// are serialised.
type Printer struct {
	port io.ReadWriter
	cfg  Config
	log  *slog.Logger

	mu         sync.Mutex
	lineTime   func(n int) time.Duration // time n characters take on the line; nil: unknown
	txUntil    time.Time                 // when the line will have carried every byte written
	undrained  bool                      // bytes were written since the last wait for the line
	rd         readDeadliner             // nil: port has no read deadlines
	wd         writeDeadliner
	pending    chan readResult // helper-goroutine read in flight (ports without deadlines)
	leftover   []byte
	dirty      bool // a reply may still be in flight: drain before the next request
	last       Status
	lastReady  bool
	haveStatus bool
}

type readDeadliner interface{ SetReadDeadline(time.Time) error }
type writeDeadliner interface{ SetWriteDeadline(time.Time) error }

type readResult struct {
	b   []byte
	err error
}

// New returns a Printer on port. It does not talk to the printer until asked.
func New(port io.ReadWriter, cfg Config) *Printer {
	if cfg.ReplyTimeout <= 0 {
		cfg.ReplyTimeout = 500 * time.Millisecond
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if cfg.ChunkSize <= 0 {
		cfg.ChunkSize = 256
	}
	if cfg.Profile.Name == "" && cfg.Profile.Extra == nil {
		cfg.Profile = Generic
	}
	p := &Printer{port: port, cfg: cfg, log: cfg.Logger}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.log = p.log.With("printer", cfg.Profile.Name)
	switch bt, ok := port.(byteTimer); {
	case cfg.Baud > 0:
		bits := cfg.BitsPerByte
		if bits <= 0 {
			bits = 10
		}
		p.lineTime = func(n int) time.Duration {
			return time.Duration(int64(n) * int64(bits) * int64(time.Second) / int64(cfg.Baud))
		}
	case ok && bt.ByteTime() > 0:
		d := bt.ByteTime()
		p.lineTime = func(n int) time.Duration { return time.Duration(n) * d }
	}
	// Probe deadlines once: a port type may have the methods and still refuse (a regular file).
	if rd, ok := port.(readDeadliner); ok && rd.SetReadDeadline(time.Time{}) == nil {
		p.rd = rd
	}
	if wd, ok := port.(writeDeadliner); ok && wd.SetWriteDeadline(time.Time{}) == nil {
		p.wd = wd
	}
	return p
}

// Status asks the printer for its real-time status (DLE EOT 1..4, then the profile's extra).
func (p *Printer) Status(ctx context.Context) (Status, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.statusLocked(ctx)
}

// LastStatus is the status read by the last successful Status or Print, and whether there is
// one; it does not talk to the printer.
func (p *Printer) LastStatus() (Status, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last, p.haveStatus
}

func (p *Printer) statusLocked(ctx context.Context) (Status, error) {
	var raw [4]byte
	for i := range raw {
		b, err := p.queryLocked(ctx, []byte{0x10, 0x04, byte(i + 1)}, 1)
		if err != nil {
			return Status{}, fmt.Errorf("escpos: status %d: %w", i+1, err)
		}
		raw[i] = b[0]
	}
	st, err := DecodeStatus(raw)
	if err != nil {
		p.dirty = true // out of step with the printer: resynchronise next time
		return st, fmt.Errorf("escpos: status: %w", err)
	}
	if p.cfg.Profile.Extra != nil {
		if err := p.cfg.Profile.Extra(ctx, lockedQuerier{p}, &st); err != nil {
			return st, fmt.Errorf("escpos: %s status: %w", p.cfg.Profile.Name, err)
		}
	}
	if ready := st.Ready(); !p.haveStatus || ready != p.lastReady || st.PaperNearEnd != p.last.PaperNearEnd {
		lvl := slog.LevelInfo
		if !ready || st.PaperNearEnd {
			lvl = slog.LevelWarn
		}
		p.log.Log(ctx, lvl, "escpos: printer status", "status", st.String())
		p.lastReady = ready
	}
	p.last, p.haveStatus = st, true
	return st, nil
}

// lockedQuerier lets a profile query while the Printer's lock is held by statusLocked.
type lockedQuerier struct{ p *Printer }

func (q lockedQuerier) Query(ctx context.Context, req []byte, n int) ([]byte, error) {
	return q.p.queryLocked(ctx, req, n)
}

// Stage says how far a print got when it failed.
type Stage uint8

// Stages.
const (
	// StageBefore: nothing was sent; the receipt did not print. Safe to print later.
	StageBefore Stage = iota
	// StageWrite: the port failed or the context ended part way; some of it may have printed.
	StageWrite
	// StageAfter: everything was sent but the printer is not healthy (or silent) afterwards;
	// the receipt may be cut short. A reprint must be marked COPY.
	StageAfter
)

func (s Stage) String() string {
	switch s {
	case StageBefore:
		return "before"
	case StageWrite:
		return "write"
	case StageAfter:
		return "after"
	}
	return fmt.Sprintf("Stage(%d)", uint8(s))
}

// PrintError is the error Print returns. errors.Is sees the cause (ErrPaperOut, ErrTimeout,
// context.Canceled, a port error, ...).
type PrintError struct {
	Stage   Stage
	Written int    // bytes handed to the port
	Status  Status // the status that stopped the print, if one was read
	Err     error
}

func (e *PrintError) Error() string {
	return fmt.Sprintf("escpos: print: %s (%d bytes written): %v", e.Stage, e.Written, e.Err)
}

func (e *PrintError) Unwrap() error { return e.Err }

// Print checks that the printer is ready, writes data in chunks, and checks the status again.
// It returns nil only if the printer was ready before and is still healthy after; otherwise a
// *PrintError saying how far it got. The status after is asked once the document is through
// the line (see Config.Baud), so it reflects the moment the printer had the last byte: a
// printer with a large buffer may still be printing.
func (p *Printer) Print(ctx context.Context, data []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	st, err := p.statusLocked(ctx)
	if err != nil {
		return &PrintError{Stage: StageBefore, Status: st, Err: err}
	}
	if err := st.Err(); err != nil {
		return &PrintError{Stage: StageBefore, Status: st, Err: err}
	}
	written := 0
	for written < len(data) {
		if err := ctx.Err(); err != nil {
			return &PrintError{Stage: StageWrite, Written: written, Err: err}
		}
		end := min(written+p.cfg.ChunkSize, len(data))
		n, err := p.writeLocked(ctx, data[written:end])
		written += n
		if err != nil {
			return &PrintError{Stage: StageWrite, Written: written, Err: err}
		}
	}
	st, err = p.statusLocked(ctx)
	if err != nil {
		return &PrintError{Stage: StageAfter, Written: written, Err: err}
	}
	if err := st.Err(); err != nil {
		return &PrintError{Stage: StageAfter, Written: written, Status: st, Err: err}
	}
	p.log.Debug("escpos: printed", "bytes", written)
	return nil
}

// writeLocked writes all of b, bounded by the write timeout and ctx where the port has write
// deadlines.
func (p *Printer) writeLocked(ctx context.Context, b []byte) (int, error) {
	if p.wd != nil {
		deadline := time.Now().Add(p.cfg.WriteTimeout)
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		_ = p.wd.SetWriteDeadline(deadline)
		release := afterFunc(ctx, func() { _ = p.wd.SetWriteDeadline(time.Unix(1, 0)) })
		defer func() {
			release()
			_ = p.wd.SetWriteDeadline(time.Time{})
		}()
	}
	start := time.Now()
	n, err := p.port.Write(b)
	if n > 0 {
		p.undrained = true
		if p.lineTime != nil {
			// The line carries these bytes after those still on it.
			p.txUntil = later(p.txUntil, start).Add(p.lineTime(n))
		}
	}
	if err == nil && n < len(b) {
		err = io.ErrShortWrite
	}
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		} else if errors.Is(err, os.ErrDeadlineExceeded) {
			err = fmt.Errorf("%w: write: %w", ErrTimeout, err)
		}
		return n, fmt.Errorf("escpos: write: %w", err)
	}
	return n, nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// lineLocked waits until everything written is through the line: the port drained (when it
// can) and the line time of the bytes written elapsed (when it is known). Until then the
// printer cannot have answered a request written last, however fast it is.
func (p *Printer) lineLocked(ctx context.Context) error {
	if !p.undrained {
		return nil
	}
	if d, ok := p.port.(Drainer); ok {
		// tcdrain cannot be cancelled: it runs aside, bounded by ctx and the write timeout
		// (a line held by flow control); it ends at the latest when the owner closes the port.
		done := make(chan error, 1)
		go func() { done <- d.Drain() }()
		t := time.NewTimer(p.cfg.WriteTimeout)
		defer t.Stop()
		select {
		case err := <-done:
			if err != nil {
				p.log.Debug("escpos: drain failed; waiting the line time only", "err", err)
			}
		case <-t.C:
			return fmt.Errorf("%w: output not drained within %v", ErrTimeout, p.cfg.WriteTimeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if wait := time.Until(p.txUntil); wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	p.undrained = false
	return nil
}

// queryLocked sends req and reads n reply bytes, each within the reply timeout counted from
// the moment req is through the line.
func (p *Printer) queryLocked(ctx context.Context, req []byte, n int) ([]byte, error) {
	if p.dirty {
		p.discardLocked(ctx)
	}
	if _, err := p.writeLocked(ctx, req); err != nil {
		return nil, err
	}
	if err := p.lineLocked(ctx); err != nil {
		p.dirty = true
		return nil, err
	}
	out := make([]byte, 0, n)
	for len(out) < n {
		b, err := p.readByteLocked(ctx, p.cfg.ReplyTimeout)
		if err != nil {
			p.dirty = true // the reply may still come; it must not be taken for the next one
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// discardLocked discards whatever arrives within one reply timeout: a late reply to an earlier
// request, or noise.
func (p *Printer) discardLocked(ctx context.Context) {
	p.leftover = nil
	for {
		b, err := p.readByteLocked(ctx, p.cfg.ReplyTimeout)
		if err != nil {
			break
		}
		p.log.Debug("escpos: discarded stale byte", "byte", b)
	}
	p.dirty = false
}

// readByteLocked reads one byte within timeout (and ctx).
func (p *Printer) readByteLocked(ctx context.Context, timeout time.Duration) (byte, error) {
	if len(p.leftover) > 0 {
		b := p.leftover[0]
		p.leftover = p.leftover[1:]
		return b, nil
	}
	deadline := time.Now().Add(timeout)
	if p.rd != nil {
		return p.readDeadline(ctx, deadline)
	}
	return p.readHelper(ctx, deadline)
}

func (p *Printer) readDeadline(ctx context.Context, deadline time.Time) (byte, error) {
	_ = p.rd.SetReadDeadline(deadline)
	release := afterFunc(ctx, func() { _ = p.rd.SetReadDeadline(time.Unix(1, 0)) })
	defer func() {
		release()
		_ = p.rd.SetReadDeadline(time.Time{})
	}()
	var buf [1]byte
	for {
		n, err := p.port.Read(buf[:])
		if n == 1 {
			return buf[0], nil
		}
		switch {
		case ctx.Err() != nil:
			return 0, ctx.Err()
		case errors.Is(err, os.ErrDeadlineExceeded):
			return 0, ErrTimeout
		case err != nil:
			return 0, fmt.Errorf("escpos: read: %w", err)
		case !time.Now().Before(deadline):
			return 0, ErrTimeout // (0, nil) until the deadline: a serial read timeout
		}
	}
}

// readHelper reads through one helper goroutine, for ports without read deadlines. A read
// still pending at the timeout stays pending; its bytes serve the next request (after the
// drain that a timeout triggers). The goroutine ends when the port returns, at the latest when
// its owner closes it.
func (p *Printer) readHelper(ctx context.Context, deadline time.Time) (byte, error) {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		if p.pending == nil {
			ch := make(chan readResult, 1)
			p.pending = ch
			go func(port io.Reader) {
				buf := make([]byte, 64)
				n, err := port.Read(buf)
				ch <- readResult{buf[:n], err}
			}(p.port)
		}
		select {
		case res := <-p.pending:
			p.pending = nil
			if len(res.b) > 0 {
				p.leftover = res.b[1:]
				return res.b[0], nil
			}
			if res.err != nil {
				return 0, fmt.Errorf("escpos: read: %w", res.err)
			}
			if !time.Now().Before(deadline) {
				return 0, ErrTimeout // (0, nil) until the deadline: a serial read timeout
			}
		case <-timer.C:
			return 0, ErrTimeout
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// afterFunc runs f if ctx ends before release is called; release waits for a running f, so
// the caller can reset a deadline f may be setting.
func afterFunc(ctx context.Context, f func()) (release func()) {
	done := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(done)
		f()
	})
	return func() {
		if !stop() {
			<-done
		}
	}
}

// ErrNoCounter is returned by CutCount when the printer does not answer the maintenance
// counter request (not every ESC/POS printer implements GS g 2).
var ErrNoCounter = errors.New("escpos: printer has no cut counter")

// CutCount reads the printer's cumulative autocutter counter (GS g 2, counter 178): how many
// receipts it has cut in its life. The kiosk reads it before printing a receipt and again
// after a crash in the middle of printing: if it has not moved, no receipt came out and the
// reprint is still the original; if it has, the receipt is out and no second original may be
// printed. The reply is 0x5F, the value in ASCII decimal, NUL.
func (p *Printer) CutCount(ctx context.Context) (uint64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dirty {
		p.discardLocked(ctx)
	}
	if _, err := p.writeLocked(ctx, []byte{0x1D, 'g', '2', 0, 178, 0}); err != nil {
		return 0, err
	}
	// After a receipt the request waits behind it on the line, like a status request.
	if err := p.lineLocked(ctx); err != nil {
		p.dirty = true
		return 0, err
	}
	b, err := p.readByteLocked(ctx, p.cfg.ReplyTimeout)
	if err != nil {
		p.dirty = true
		return 0, fmt.Errorf("%w: %v", ErrNoCounter, err)
	}
	if b != 0x5F {
		p.dirty = true
		return 0, fmt.Errorf("%w: header %#02x", ErrNoCounter, b)
	}
	var v uint64
	for range 11 {
		b, err := p.readByteLocked(ctx, p.cfg.ReplyTimeout)
		if err != nil {
			p.dirty = true
			return 0, fmt.Errorf("%w: %v", ErrNoCounter, err)
		}
		switch {
		case b == 0:
			return v, nil
		case b >= '0' && b <= '9':
			v = v*10 + uint64(b-'0')
		default:
			p.dirty = true
			return 0, fmt.Errorf("%w: byte %#02x", ErrNoCounter, b)
		}
	}
	p.dirty = true
	return 0, fmt.Errorf("%w: reply too long", ErrNoCounter)
}
