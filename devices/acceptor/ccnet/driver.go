package ccnet

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

// Defaults for Config fields left zero. The CCNET description gives the unit 10 ms to
// answer, at most 5 ms between the bytes of a frame, 10 ms of bus silence (20 ms
// recommended) before the next command, and the host a poll period of 100-200 ms; the
// defaults keep those shapes with room for USB serial adapters, which deliver bytes in
// batches every few milliseconds (FTDI: every 16 ms by default).
const (
	// DefaultPollInterval is the time between two POLLs.
	DefaultPollInterval = 200 * time.Millisecond
	// DefaultReplyTimeout is how long the driver waits for a short reply after its command
	// went out (the description's 10 ms, plus adapter and scheduling latency).
	DefaultReplyTimeout = 100 * time.Millisecond
	// DefaultInterByteTimeout is the silence after which a partial frame is dropped (the
	// description's 5 ms, plus adapter batching).
	DefaultInterByteTimeout = 50 * time.Millisecond
	// DefaultCommandGap is the bus silence kept before each command (t-free).
	DefaultCommandGap = 20 * time.Millisecond
	// DefaultMaxRetries is how many times a command is re-sent after the first attempt.
	DefaultMaxRetries = 3
	// DefaultLostPollInterval is the slower poll rate while the unit does not answer.
	DefaultLostPollInterval = time.Second
	// DefaultHoldRefresh is how often HOLD is re-sent while the handler keeps a note in
	// escrow; one HOLD keeps it for 10 s.
	DefaultHoldRefresh = 5 * time.Second
	// DefaultShutdownTimeout bounds the best-effort inhibit when Run ends.
	DefaultShutdownTimeout = time.Second
)

// HoldTime is how long one HOLD keeps a note in escrow, and how long a unit waits in escrow
// for STACK or RETURN before it returns the note on its own.
const HoldTime = 10 * time.Second

// dataReplyExtra is the transmission time of the longest reply the driver asks for (the
// 126-byte bill table at 9600 8N1 takes 131 ms), added to ReplyTimeout for data requests.
const dataReplyExtra = 150 * time.Millisecond

// frameLimit is the longest frame the driver accepts: none of its replies is longer than
// the bill table, so a longer declared length is line noise.
const frameLimit = 512

// Errors returned by the driver besides those of package acceptor.
var (
	// ErrWrongState: the command is not allowed in the unit's current state (for example a
	// RESET while a note is in the path, which could lose a credit).
	ErrWrongState = errors.New("ccnet: command not allowed in the unit's current state")
	// ErrAlreadyRunning: Run was called while another Run of the same Driver is active.
	ErrAlreadyRunning = errors.New("ccnet: driver already running")
	// ErrBadConfig: the Config cannot work (a bill type outside 0..23, address 0).
	ErrBadConfig = errors.New("ccnet: invalid configuration")
)

// Config configures a Driver.
type Config struct {
	// Address is the unit's CCNET address (default AddrBillValidator, 0x03).
	Address byte
	// Denominations maps bill types (0..23) to notes. It is the kiosk's own table and wins
	// over the unit's bill table.
	Denominations acceptor.Denominations
	// HighSecurity lists the bill types set to high security (SET SECURITY); empty keeps
	// every type at normal security.
	HighSecurity []int
	// PollInterval is the time between two POLLs (default 200 ms).
	PollInterval time.Duration
	// ReplyTimeout is how long to wait for a short reply before re-sending (default 100 ms);
	// data requests get the transmission time of their reply on top.
	ReplyTimeout time.Duration
	// InterByteTimeout is the silence after which a partial frame is dropped (default 50 ms).
	InterByteTimeout time.Duration
	// CommandGap is the bus silence kept before each command; ACK and NAK go at once
	// (default 20 ms; negative for none).
	CommandGap time.Duration
	// MaxRetries is how many times a command is re-sent before it fails; after a POLL failed
	// that many times the driver reports CommLost (default 3).
	MaxRetries int
	// LostPollInterval is the poll interval while communication is lost (default 1 s).
	LostPollInterval time.Duration
	// HoldRefresh is how often HOLD is re-sent while the handler keeps deciding Hold
	// (default 5 s; must stay well below HoldTime).
	HoldRefresh time.Duration
	// ShutdownTimeout bounds the best-effort inhibit when Run ends (default 1 s).
	ShutdownTimeout time.Duration
	// Logger receives the driver's logs; nil discards them.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Address == 0 {
		c.Address = AddrBillValidator
	}
	if c.PollInterval <= 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.ReplyTimeout <= 0 {
		c.ReplyTimeout = DefaultReplyTimeout
	}
	if c.InterByteTimeout <= 0 {
		c.InterByteTimeout = DefaultInterByteTimeout
	}
	switch {
	case c.CommandGap == 0:
		c.CommandGap = DefaultCommandGap
	case c.CommandGap < 0:
		c.CommandGap = 0
	}
	if c.MaxRetries <= 0 {
		c.MaxRetries = DefaultMaxRetries
	}
	if c.LostPollInterval <= 0 {
		c.LostPollInterval = DefaultLostPollInterval
	}
	if c.HoldRefresh <= 0 {
		c.HoldRefresh = DefaultHoldRefresh
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

func (c Config) validate() error {
	for code := range c.Denominations {
		if code < 0 || code >= NumBillTypes {
			return fmt.Errorf("%w: denomination for bill type %d outside 0..%d", ErrBadConfig, code, NumBillTypes-1)
		}
	}
	if _, err := BillMask(c.HighSecurity); err != nil {
		return fmt.Errorf("%w: high security: %w", ErrBadConfig, err)
	}
	if c.HoldRefresh >= HoldTime {
		return fmt.Errorf("%w: hold refresh %v is not below the unit's %v hold", ErrBadConfig, c.HoldRefresh, HoldTime)
	}
	return nil
}

// Stats counts what happened on the link since the Driver was made.
type Stats struct {
	Polls        uint64 // POLLs answered
	Timeouts     uint64 // replies that did not come in time
	Retries      uint64 // commands re-sent, and NAKs sent for a damaged reply
	BadFrames    uint64 // frames dropped for a bad CRC or an impossible length
	GarbageBytes uint64 // bytes skipped while resynchronising, partial frames dropped after silence
	Unexpected   uint64 // well-formed replies that did not answer the command (late, stale, other address)
	NaksSent     uint64 // NAKs sent because a reply arrived damaged
	NaksReceived uint64 // NAKs from the unit: it received a damaged command
	Refused      uint64 // ILLEGAL COMMAND replies
	Busy         uint64 // BUSY replies
}

type counters struct {
	polls, retries, naksSent, naksReceived, refused, busy atomic.Uint64
}

// Driver drives one CCNET bill validator. It implements acceptor.Acceptor.
type Driver struct {
	link *seriallink.Link[Frame, request]
	cfg  Config
	log  *slog.Logger
	n    counters

	mu       sync.Mutex
	info     acceptor.Info
	identity Identification
	haveID   bool
}

var _ acceptor.Acceptor = (*Driver)(nil)

// New returns a driver for the unit on port. Nothing is sent until Run; a Config that cannot
// work makes Run fail with ErrBadConfig.
func New(port io.ReadWriter, cfg Config) *Driver {
	cfg = cfg.withDefaults()
	log := cfg.Logger.With("device", "ccnet")
	return &Driver{
		link: seriallink.New[Frame, request](port, seriallink.Config[Frame]{
			Name:             "ccnet",
			NewDecoder:       func() seriallink.Decoder[Frame] { return &Decoder{Limit: frameLimit} },
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
		info: acceptor.Info{Protocol: "CCNET"},
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

// Enable accepts the given bill types (0..23) and lifts the inhibit. Every type is sent with
// its escrow bit set, so each note stops in escrow for Handler.Escrow. An empty list inhibits.
func (d *Driver) Enable(ctx context.Context, codes []int) error {
	if len(codes) == 0 {
		return d.Inhibit(ctx)
	}
	if _, err := BillMask(codes); err != nil {
		return fmt.Errorf("ccnet: enable: %w", err)
	}
	return d.do(ctx, request{kind: reqEnable, codes: append([]int(nil), codes...)}, "enable")
}

// Inhibit stops acceptance (ENABLE BILL TYPES with an empty mask). A note already in the
// path still finishes.
func (d *Driver) Inhibit(ctx context.Context) error {
	return d.do(ctx, request{kind: reqInhibit}, "inhibit")
}

// Reset sends RESET. It returns once the unit acknowledged it; the driver then reconfigures
// the unit on the following polls and leaves it inhibited, so call Enable again afterwards.
// It fails with ErrWrongState while a note is in the path or a credit is unacknowledged.
func (d *Driver) Reset(ctx context.Context) error {
	return d.do(ctx, request{kind: reqReset}, "reset")
}

// do hands a request to the poll loop, the only goroutine that talks to the unit. Requests
// wait while the loop is still bringing the unit up; ctx bounds that wait.
func (d *Driver) do(ctx context.Context, r request, what string) error {
	if err := d.link.Do(ctx, r); err != nil {
		return fmt.Errorf("ccnet: %s: %w", what, err)
	}
	return nil
}

// Info returns what the driver learned about the unit: Model is the part number, Serial the
// serial number (IDENTIFICATION), Denominations the unit's bill table. acceptor.Info has no
// place for the asset number; Identification has it.
func (d *Driver) Info() acceptor.Info {
	d.mu.Lock()
	defer d.mu.Unlock()
	info := d.info
	if d.info.Denominations != nil {
		info.Denominations = maps.Clone(d.info.Denominations)
	}
	return info
}

// Identification returns the unit's answer to IDENTIFICATION; ok is false until it was read.
func (d *Driver) Identification() (id Identification, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.identity, d.haveID
}

// Stats returns the link counters.
func (d *Driver) Stats() Stats {
	ls := d.link.Stats()
	return Stats{
		Polls: d.n.polls.Load(), Timeouts: ls.Timeouts, Retries: d.n.retries.Load(),
		BadFrames: ls.BadFrames, GarbageBytes: ls.GarbageBytes,
		Unexpected: ls.Unexpected, NaksSent: d.n.naksSent.Load(),
		NaksReceived: d.n.naksReceived.Load(), Refused: d.n.refused.Load(), Busy: d.n.busy.Load(),
	}
}

// Run brings the unit up and polls it until ctx ends; see the package documentation for the
// start-up sequence and the port's lifetime. It returns nil when ctx was cancelled and an
// error when the port failed (a read or write error other than a timeout) or the Config
// cannot work.
func (d *Driver) Run(ctx context.Context, h acceptor.Handler) error {
	if h == nil {
		return errors.New("ccnet: run: nil handler")
	}
	if err := d.cfg.validate(); err != nil {
		return fmt.Errorf("ccnet: run: %w", err)
	}
	l := &loop{d: d, h: h, link: d.link, cfg: d.cfg, log: d.log}
	err := d.link.Run(ctx, seriallink.Loop[request]{
		Cycle:    l.step,
		Ready:    func() bool { return l.phase == phaseRunning },
		Serve:    l.serve,
		Shutdown: l.shutdown,
	})
	if len(l.pending) > 0 {
		l.log.Error("Run ends with credits the handler never recorded; the cassette count must settle them",
			"notes", fmt.Sprint(l.pending))
	}
	return err
}
