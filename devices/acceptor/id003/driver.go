package id003

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
)

// Defaults for Config fields left zero.
const (
	// DefaultPollInterval sits in the 100-300 ms window hosts use for STATUS REQUEST.
	DefaultPollInterval = 200 * time.Millisecond
	// DefaultReplyTimeout is how long the driver waits for a short reply. A 255-byte frame
	// takes about 290 ms at 9600 8E1 (11 bits a byte), so requests that return data wait
	// longer (see dataReplyExtra).
	DefaultReplyTimeout = 300 * time.Millisecond
	// DefaultMaxRetries is how many times a command is re-sent after the first attempt.
	DefaultMaxRetries = 3
	// DefaultLostPollInterval is the slower poll rate while the unit does not answer.
	DefaultLostPollInterval = time.Second
	// DefaultShutdownTimeout bounds the best-effort inhibit when Run ends.
	DefaultShutdownTimeout = time.Second
)

// dataReplyExtra is the transmission time of a maximum-length frame at 9600 8E1.
const dataReplyExtra = 300 * time.Millisecond

// Errors returned by the driver besides those of package acceptor.
var (
	// ErrWrongState: the command is not allowed in the unit's current state (for example a
	// RESET while a note is in the path, which could lose a credit).
	ErrWrongState = errors.New("id003: command not allowed in the unit's current state")
	// ErrAlreadyRunning: Run was called while another Run of the same Driver is active.
	ErrAlreadyRunning = errors.New("id003: driver already running")
)

// Config configures a Driver.
type Config struct {
	// Denominations maps escrow codes (0x61..0x70) to notes. It is the kiosk's own table and
	// wins over what the unit reports.
	Denominations acceptor.Denominations
	// Security is the SET SECURITY bitmap (bit n = high security for code 0x61+n); zero keeps
	// standard security for every denomination.
	Security uint16
	// PollInterval is the time between two STATUS REQUESTs (default 200 ms).
	PollInterval time.Duration
	// ReplyTimeout is how long to wait for a reply before re-sending (default 300 ms).
	ReplyTimeout time.Duration
	// MaxRetries is how many times a command is re-sent before it fails; after a STATUS
	// REQUEST failed that many times the driver reports CommLost (default 3).
	MaxRetries int
	// LostPollInterval is the poll interval while communication is lost (default 1 s).
	LostPollInterval time.Duration
	// ShutdownTimeout bounds the best-effort inhibit when Run ends (default 1 s).
	ShutdownTimeout time.Duration
	// Logger receives the driver's logs; nil discards them.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.PollInterval <= 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.ReplyTimeout <= 0 {
		c.ReplyTimeout = DefaultReplyTimeout
	}
	if c.MaxRetries <= 0 {
		c.MaxRetries = DefaultMaxRetries
	}
	if c.LostPollInterval <= 0 {
		c.LostPollInterval = DefaultLostPollInterval
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Stats counts what happened on the link since the Driver was made.
type Stats struct {
	Polls        uint64 // STATUS REQUESTs answered
	Timeouts     uint64 // replies that did not come in time
	Retries      uint64 // commands re-sent
	BadFrames    uint64 // frames dropped for a bad CRC or an impossible length
	GarbageBytes uint64 // bytes skipped while resynchronising
	Unexpected   uint64 // well-formed replies that did not answer the command (late or stale)
	CommErrors   uint64 // COMM ERROR (0x4A) replies: the unit received a damaged frame
	Refused      uint64 // INVALID COMMAND (0x4B) replies
}

type counters struct {
	polls, timeouts, retries, badFrames, garbage, unexpected, commErrors, refused atomic.Uint64
}

// Driver drives one ID-003 unit. It implements acceptor.Acceptor.
type Driver struct {
	port io.ReadWriter
	cfg  Config
	log  *slog.Logger

	reqs    chan request
	resetRx atomic.Bool // ask the reader to drop a partial frame
	n       counters

	mu   sync.Mutex
	stop chan struct{} // non-nil while Run is active; closed when it ends
	info acceptor.Info
}

var _ acceptor.Acceptor = (*Driver)(nil)

// New returns a driver for the unit on port. Nothing is sent until Run.
func New(port io.ReadWriter, cfg Config) *Driver {
	cfg = cfg.withDefaults()
	return &Driver{
		port: port,
		cfg:  cfg,
		log:  cfg.Logger.With("device", "id003"),
		reqs: make(chan request),
		info: acceptor.Info{Protocol: "ID-003"},
	}
}

type requestKind int

const (
	reqEnable requestKind = iota + 1
	reqInhibit
	reqReset
)

type request struct {
	kind  requestKind
	codes []int
	done  chan error
}

// Enable accepts the given escrow codes and lifts the inhibit. An empty list inhibits.
func (d *Driver) Enable(ctx context.Context, codes []int) error {
	if len(codes) == 0 {
		return d.Inhibit(ctx)
	}
	if _, err := DenominationBitmap(codes); err != nil {
		return fmt.Errorf("id003: enable: %w", err)
	}
	return d.do(ctx, request{kind: reqEnable, codes: append([]int(nil), codes...)}, "enable")
}

// Inhibit stops acceptance. A note already in the path still finishes.
func (d *Driver) Inhibit(ctx context.Context) error {
	return d.do(ctx, request{kind: reqInhibit}, "inhibit")
}

// Reset sends RESET. It returns once the unit acknowledged it; the driver then reconfigures
// the unit on the following polls and leaves it inhibited, so call Enable again afterwards.
// It fails with ErrWrongState while a note is in the path.
func (d *Driver) Reset(ctx context.Context) error {
	return d.do(ctx, request{kind: reqReset}, "reset")
}

// do hands a request to the poll loop, the only goroutine that talks to the unit. Requests
// wait while the loop is still bringing the unit up; ctx bounds that wait.
func (d *Driver) do(ctx context.Context, r request, what string) error {
	d.mu.Lock()
	stop := d.stop
	d.mu.Unlock()
	if stop == nil {
		return fmt.Errorf("id003: %s: %w", what, acceptor.ErrNotRunning)
	}
	r.done = make(chan error, 1)
	select {
	case d.reqs <- r:
	case <-stop:
		return fmt.Errorf("id003: %s: %w", what, acceptor.ErrNotRunning)
	case <-ctx.Done():
		return fmt.Errorf("id003: %s: %w", what, ctx.Err())
	}
	select {
	case err := <-r.done:
		if err != nil {
			return fmt.Errorf("id003: %s: %w", what, err)
		}
		return nil
	case <-stop:
		return fmt.Errorf("id003: %s: %w", what, acceptor.ErrNotRunning)
	case <-ctx.Done():
		return fmt.Errorf("id003: %s: %w", what, ctx.Err())
	}
}

// Info returns what the driver learned about the unit (version text, currency table).
func (d *Driver) Info() acceptor.Info {
	d.mu.Lock()
	defer d.mu.Unlock()
	info := d.info
	if d.info.Denominations != nil {
		info.Denominations = make(acceptor.Denominations, len(d.info.Denominations))
		for k, v := range d.info.Denominations {
			info.Denominations[k] = v
		}
	}
	return info
}

// Stats returns the link counters.
func (d *Driver) Stats() Stats {
	return Stats{
		Polls: d.n.polls.Load(), Timeouts: d.n.timeouts.Load(), Retries: d.n.retries.Load(),
		BadFrames: d.n.badFrames.Load(), GarbageBytes: d.n.garbage.Load(),
		Unexpected: d.n.unexpected.Load(), CommErrors: d.n.commErrors.Load(), Refused: d.n.refused.Load(),
	}
}

// Run brings the unit up and polls it until ctx ends; see the package documentation for the
// start-up sequence and the port's lifetime. It returns nil when ctx was cancelled and an
// error when the port failed (a read or write error other than a timeout).
func (d *Driver) Run(ctx context.Context, h acceptor.Handler) error {
	if h == nil {
		return errors.New("id003: run: nil handler")
	}
	d.mu.Lock()
	if d.stop != nil {
		d.mu.Unlock()
		return ErrAlreadyRunning
	}
	stop := make(chan struct{})
	d.stop = stop
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.stop = nil
		d.mu.Unlock()
		close(stop)
	}()

	rx := make(chan rxItem, 8)
	quit := make(chan struct{})
	readerDone := make(chan struct{})
	d.resetRx.Store(false)
	go d.readLoop(rx, quit, readerDone)

	l := &loop{d: d, h: h, rx: rx, cfg: d.cfg, log: d.log}
	err := l.run(ctx)
	if l.fatal == nil {
		l.shutdown(ctx)
	}
	close(quit)
	if c, ok := d.port.(io.Closer); ok {
		if cerr := c.Close(); cerr != nil {
			d.log.Debug("close port", "err", cerr)
		}
		// Closing the port is what releases a reader blocked in Read; bound the wait anyway,
		// a port whose Close does not do that would otherwise hang Run.
		t := time.NewTimer(d.cfg.ShutdownTimeout)
		select {
		case <-readerDone:
		case <-t.C:
			d.log.Error("reader goroutine still blocked in Read after the port was closed")
		}
		t.Stop()
	}
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// rxItem is what the reader goroutine hands to the poll loop: a good frame, a dropped broken
// frame (err), or a port failure (fatal).
type rxItem struct {
	f     Frame
	err   error
	fatal error
}

// readLoop owns the decoder. A Read that returns (0, nil) is a serial read timeout, not end
// of input.
func (d *Driver) readLoop(rx chan<- rxItem, quit <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	var dec Decoder
	var seen DecoderStats
	buf := make([]byte, 256)
	for {
		n, err := d.port.Read(buf)
		if n > 0 {
			if d.resetRx.Swap(false) {
				dec.Reset()
			}
			dec.Feed(buf[:n])
			// A damaged frame is reported only when nothing good came with it: a stray 0xFC in
			// line noise ahead of a good reply must not trigger a re-send.
			var damaged error
			good := false
			for {
				f, ferr := dec.Next()
				if errors.Is(ferr, ErrIncomplete) {
					break
				}
				if ferr != nil {
					damaged = ferr
					continue
				}
				good = true
				select {
				case rx <- rxItem{f: f}:
				case <-quit:
					return
				}
			}
			if damaged != nil && !good {
				select {
				case rx <- rxItem{err: damaged}:
				case <-quit:
					return
				}
			}
			st := dec.Stats()
			d.n.garbage.Add(st.GarbageBytes - seen.GarbageBytes)
			d.n.badFrames.Add(st.BadCRC + st.BadLength - seen.BadCRC - seen.BadLength)
			seen = st
		}
		if err != nil {
			select {
			case rx <- rxItem{fatal: err}:
			case <-quit:
			}
			return
		}
	}
}
