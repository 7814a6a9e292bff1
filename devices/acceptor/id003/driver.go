package id003

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/devices/internal/seriallink"
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
	// DefaultInterByteTimeout is the silence after which a partial frame is dropped. A byte
	// takes 1.15 ms at 9600 8E1 and a unit sends a frame without pauses; the figure leaves
	// room for USB serial adapters, which deliver bytes in batches (FTDI: every 16 ms by
	// default), and stays well below ReplyTimeout so a reply re-sent after a torn one is
	// decoded cleanly.
	DefaultInterByteTimeout = 50 * time.Millisecond
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
	// InterByteTimeout is the silence after which a partial frame is dropped (default 50 ms).
	InterByteTimeout time.Duration
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
	if c.InterByteTimeout <= 0 {
		c.InterByteTimeout = DefaultInterByteTimeout
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
	polls, retries, commErrors, refused atomic.Uint64
}

// Driver drives one ID-003 unit. It implements acceptor.Acceptor.
type Driver struct {
	link *seriallink.Link[Frame, request]
	cfg  Config
	log  *slog.Logger
	n    counters

	mu   sync.Mutex
	info acceptor.Info
}

var _ acceptor.Acceptor = (*Driver)(nil)

// New returns a driver for the unit on port. Nothing is sent until Run.
func New(port io.ReadWriter, cfg Config) *Driver {
	cfg = cfg.withDefaults()
	log := cfg.Logger.With("device", "id003")
	return &Driver{
		link: seriallink.New[Frame, request](port, seriallink.Config[Frame]{
			Name:             "id003",
			NewDecoder:       func() seriallink.Decoder[Frame] { return &Decoder{} },
			Incomplete:       ErrIncomplete,
			InterByteTimeout: cfg.InterByteTimeout,
			WriteTimeout:     cfg.ReplyTimeout,
			ShutdownTimeout:  cfg.ShutdownTimeout,
			AlreadyRunning:   ErrAlreadyRunning,
			NotRunning:       acceptor.ErrNotRunning,
			Logger:           log,
		}),
		cfg:  cfg,
		log:  log,
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
	if err := d.link.Do(ctx, r); err != nil {
		return fmt.Errorf("id003: %s: %w", what, err)
	}
	return nil
}

// Info returns what the driver learned about the unit (version text, currency table).
func (d *Driver) Info() acceptor.Info {
	d.mu.Lock()
	defer d.mu.Unlock()
	info := d.info
	info.Denominations = maps.Clone(d.info.Denominations)
	return info
}

// Stats returns the link counters.
func (d *Driver) Stats() Stats {
	ls := d.link.Stats()
	return Stats{
		Polls: d.n.polls.Load(), Timeouts: ls.Timeouts, Retries: d.n.retries.Load(),
		BadFrames: ls.BadFrames, GarbageBytes: ls.GarbageBytes,
		Unexpected: ls.Unexpected, CommErrors: d.n.commErrors.Load(), Refused: d.n.refused.Load(),
	}
}

// Run brings the unit up and polls it until ctx ends; see the package documentation for the
// start-up sequence and the port's lifetime. It returns nil when ctx was cancelled and an
// error when the port failed (a read or write error other than a timeout).
func (d *Driver) Run(ctx context.Context, h acceptor.Handler) error {
	if h == nil {
		return errors.New("id003: run: nil handler")
	}
	l := &loop{d: d, h: h, link: d.link, cfg: d.cfg, log: d.log}
	return d.link.Run(ctx, seriallink.Loop[request]{
		Cycle:    l.step,
		Ready:    func() bool { return l.phase == phaseRunning },
		Serve:    l.serve,
		Shutdown: l.shutdown,
	})
}
