package ssp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/devices/internal/seriallink"
)

// Defaults for Config fields left zero.
const (
	// DefaultProtocolVersion is the HOST PROTOCOL VERSION the driver asks for: 7 is the
	// lowest that defines every event the driver maps (CHANNEL DISABLE came with 7, NOTE PATH
	// OPEN with 6). A unit that refuses 7 is asked for 6.
	DefaultProtocolVersion = 7
	// DefaultPollInterval: SSP wants a poll well inside the unit's 10 s timeout; 200 ms
	// keeps escrow decisions and credits prompt.
	DefaultPollInterval = 200 * time.Millisecond
	// DefaultReplyTimeout is the 1 s the SSP manual gives the host before it re-sends.
	DefaultReplyTimeout = time.Second
	// DefaultMaxRetries is how many times a command is re-sent (the manual allows twenty
	// before the host declares the unit dead; three is 4 s of silence).
	DefaultMaxRetries = 3
	// DefaultLostPollInterval is the slower rate while the unit does not answer.
	DefaultLostPollInterval = time.Second
	// DefaultShutdownTimeout bounds the best-effort DISABLE when Run ends.
	DefaultShutdownTimeout = 2 * time.Second
	// DefaultHoldInterval is how often HOLD is re-sent while the handler holds a note. The
	// unit returns a held note after UnitEscrowTimeout without a command; 3 s plus three
	// 1 s retries still reaches the unit within 6 s.
	DefaultHoldInterval = 3 * time.Second
	// DefaultInterByteTimeout is the silence after which a partial frame is dropped. A byte
	// takes 1.15 ms at 9600 8N2 and a unit sends a packet without pauses; the figure leaves
	// room for USB-CDC units and serial adapters, which deliver bytes in batches, and stays
	// far below ReplyTimeout so the repeat of a torn reply is decoded cleanly.
	DefaultInterByteTimeout = 100 * time.Millisecond
	// DefaultPowerUpSettle is how long after SLAVE RESET the driver waits for NOTE CLEARED
	// FROM FRONT / INTO CASHBOX before it reports a plain PowerUp.
	DefaultPowerUpSettle = 2 * time.Second
)

// UnitEscrowTimeout is the SSP poll timeout (GA138, HOLD): a validator that receives no
// command for this long rejects the note it holds in escrow (reject code 0x13). Any command
// other than POLL restarts it; POLL accepts the note.
const UnitEscrowTimeout = 10 * time.Second

// holdMargin is what HoldInterval plus the retries must leave of UnitEscrowTimeout.
const holdMargin = time.Second

// Codes of the Failure events the driver raises itself. They are above 0xFF so they never
// collide with a protocol byte.
const (
	// CodeUnitSwapped: GET SERIAL after a communication gap or a reset returned another
	// serial number. The unit is kept disabled until ConfirmSwap.
	CodeUnitSwapped = 0x1001
	// CodeCreditNotRecorded: with plain POLL a NOTE CREDIT is reported once; Credited failed
	// for it, so the driver keeps the note and calls Credited again on every cycle, and keeps
	// the unit disabled, until it returns nil.
	CodeCreditNotRecorded = 0x1002
)

// Errors returned by the driver besides those of package acceptor.
var (
	// ErrWrongState: the command is not allowed in the unit's current state (RESET with a
	// note in the path, a change of the acceptance set with a note in escrow).
	ErrWrongState = errors.New("ssp: command not allowed in the unit's current state")
	// ErrAlreadyRunning: Run was called while another Run of the same Driver is active.
	ErrAlreadyRunning = errors.New("ssp: driver already running")
	// ErrUnitSwapped: the unit's serial number changed; Enable is refused until ConfirmSwap.
	ErrUnitSwapped = errors.New("ssp: unit swapped; a technician must confirm it")
	// ErrNoSwap: ConfirmSwap was called with no swap to confirm.
	ErrNoSwap = errors.New("ssp: no unit swap to confirm")
	// ErrCreditPending: a credit the handler could not record is still pending; the unit
	// stays disabled until it is recorded.
	ErrCreditPending = errors.New("ssp: a credit is not recorded yet")
	// ErrDefaultKey: Config.Encrypt with the well-known default fixed key and without
	// AllowDefaultKey.
	ErrDefaultKey = errors.New("ssp: the default eSSP fixed key 0123456701234567 is refused")
	// ErrNoFixedKey: Config.Encrypt without a FixedKey.
	ErrNoFixedKey = errors.New("ssp: eSSP needs a fixed key")
	// ErrBadConfig: a Config value is out of range.
	ErrBadConfig = errors.New("ssp: invalid configuration")
)

// PollMode chooses between POLL and POLL WITH ACK.
type PollMode int

const (
	// PollAuto uses POLL WITH ACK when the unit takes it and falls back to POLL, for the
	// rest of the Run, when the unit refuses it (an NV9USB wants it encrypted).
	PollAuto PollMode = iota
	// PollPlain always uses POLL: a NOTE CREDIT is reported once.
	PollPlain
	// PollAck always uses POLL WITH ACK; a unit that refuses it is reported as a protocol
	// error on every poll.
	PollAck
)

func (m PollMode) String() string {
	switch m {
	case PollAuto:
		return "auto"
	case PollPlain:
		return "poll"
	case PollAck:
		return "poll_with_ack"
	}
	return fmt.Sprintf("PollMode(%d)", int(m))
}

// Config configures a Driver.
type Config struct {
	// Denominations maps channels (1..16) to notes. It is the kiosk's own table and wins
	// over what the unit reports in SETUP REQUEST.
	Denominations acceptor.Denominations
	// Address is the unit's SSP address (0, the default, for a banknote validator).
	Address byte
	// ProtocolVersion is asked for with HOST PROTOCOL VERSION (default 7; at least 6).
	ProtocolVersion byte
	// PollMode chooses POLL or POLL WITH ACK (default PollAuto).
	PollMode PollMode
	// Encrypt turns eSSP on: SYNC, key exchange, then every other command encrypted.
	Encrypt bool
	// FixedKey is the fixed half of the eSSP key, as ITL writes it (0x0123456701234567 is
	// the default every unit ships with). Never logged.
	FixedKey uint64
	// AllowDefaultKey accepts DefaultFixedKey, for simulation only.
	AllowDefaultKey bool
	// PrimeBits is the size of the Diffie-Hellman primes (default DefaultPrimeBits).
	PrimeBits int
	// ExpectedSerial, when not zero, is the serial number the unit must have at start-up; a
	// different one is treated as a swap. Zero learns the serial at the first start-up.
	ExpectedSerial uint32
	// PollInterval is the time between two polls (default 200 ms).
	PollInterval time.Duration
	// ReplyTimeout is how long to wait for a reply before re-sending (default 1 s).
	ReplyTimeout time.Duration
	// InterByteTimeout is the silence after which a partial frame is dropped (default
	// 100 ms).
	InterByteTimeout time.Duration
	// MaxRetries is how many times a command is re-sent, with the same sequence flag, before
	// it fails (default 3).
	MaxRetries int
	// LostPollInterval is the retry interval while communication is lost (default 1 s).
	LostPollInterval time.Duration
	// ShutdownTimeout bounds the best-effort DISABLE when Run ends (default 2 s).
	ShutdownTimeout time.Duration
	// HoldInterval is how often HOLD is re-sent while a note is held (default 3 s). With
	// MaxRetries × ReplyTimeout it must stay 1 s below UnitEscrowTimeout.
	HoldInterval time.Duration
	// PowerUpSettle is how long after SLAVE RESET the power-up report waits for the unit to
	// say what it cleared from its note path (default 2 s).
	PowerUpSettle time.Duration
	// Rand supplies key-exchange randomness and packing (nil: crypto/rand).
	Rand io.Reader
	// Logger receives the driver's logs; nil discards them.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.ProtocolVersion == 0 {
		c.ProtocolVersion = DefaultProtocolVersion
	}
	if c.PrimeBits == 0 {
		c.PrimeBits = DefaultPrimeBits
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
	if c.MaxRetries <= 0 {
		c.MaxRetries = DefaultMaxRetries
	}
	if c.LostPollInterval <= 0 {
		c.LostPollInterval = DefaultLostPollInterval
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.HoldInterval <= 0 {
		c.HoldInterval = DefaultHoldInterval
	}
	if c.PowerUpSettle <= 0 {
		c.PowerUpSettle = DefaultPowerUpSettle
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports whether the configuration can run, with defaults applied.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.Address > MaxAddress:
		return fmt.Errorf("%w: address %#x above %#x", ErrBadConfig, c.Address, MaxAddress)
	case c.ProtocolVersion < 6:
		return fmt.Errorf("%w: protocol version %d, need 6 or higher", ErrBadConfig, c.ProtocolVersion)
	case c.PrimeBits < 16 || c.PrimeBits > 64:
		return fmt.Errorf("%w: %d-bit primes, want 16..64", ErrBadConfig, c.PrimeBits)
	case c.PollMode < PollAuto || c.PollMode > PollAck:
		return fmt.Errorf("%w: poll mode %v", ErrBadConfig, c.PollMode)
	case c.HoldInterval+time.Duration(c.MaxRetries)*c.ReplyTimeout > UnitEscrowTimeout-holdMargin:
		return fmt.Errorf("%w: hold interval %v plus %d retries of %v reaches the unit's %v escrow timeout",
			ErrBadConfig, c.HoldInterval, c.MaxRetries, c.ReplyTimeout, UnitEscrowTimeout)
	case c.Encrypt && c.FixedKey == 0:
		return ErrNoFixedKey
	case c.Encrypt && c.FixedKey == DefaultFixedKey && !c.AllowDefaultKey:
		return ErrDefaultKey
	}
	for code := range c.Denominations {
		if code < 1 || code > MaxChannel {
			return fmt.Errorf("%w: denomination channel %d outside 1..%d", ErrBadConfig, code, MaxChannel)
		}
	}
	return nil
}

// Stats counts what happened on the link since the Driver was made.
type Stats struct {
	Polls        uint64 // poll replies handled
	Timeouts     uint64 // replies that did not come in time
	Retries      uint64 // packets re-sent with the same sequence flag
	BadFrames    uint64 // frames dropped for a bad CRC or header, or abandoned at a lone STX
	GarbageBytes uint64 // bytes skipped while resynchronising
	Unexpected   uint64 // good frames that did not answer the packet in flight
	Refused      uint64 // generic responses other than OK
	KeyExchanges uint64 // eSSP keys negotiated
	CryptoErrors uint64 // encrypted replies dropped (bad eCRC, wrong counter, plain downgrade)
}

type counters struct {
	polls, retries, refused, keyExchanges, cryptoErrors atomic.Uint64
}

// Driver drives one SSP or eSSP banknote validator. It implements acceptor.Acceptor.
type Driver struct {
	link *seriallink.Link[Frame, request]
	cfg  Config
	log  *slog.Logger
	n    counters

	mu   sync.Mutex
	info acceptor.Info
}

var _ acceptor.Acceptor = (*Driver)(nil)

// New returns a driver for the unit on port. Nothing is sent until Run; Run fails at once
// when cfg does not pass Validate.
func New(port io.ReadWriter, cfg Config) *Driver {
	cfg = cfg.withDefaults()
	proto := "SSP"
	if cfg.Encrypt {
		proto = "eSSP"
	}
	log := cfg.Logger.With("device", "ssp", "address", cfg.Address)
	return &Driver{
		link: seriallink.New[Frame, request](port, seriallink.Config[Frame]{
			Name:             "ssp",
			NewDecoder:       func() seriallink.Decoder[Frame] { return &Decoder{} },
			Incomplete:       ErrIncomplete,
			InterByteTimeout: cfg.InterByteTimeout,
			WriteTimeout:     cfg.ReplyTimeout,
			ShutdownTimeout:  cfg.ShutdownTimeout,
			ReadBuffer:       512,
			AlreadyRunning:   ErrAlreadyRunning,
			NotRunning:       acceptor.ErrNotRunning,
			Logger:           log,
		}),
		cfg:  cfg,
		log:  log,
		info: acceptor.Info{Protocol: proto},
	}
}

type requestKind int

const (
	reqEnable requestKind = iota + 1
	reqInhibit
	reqReset
	reqCounters
	reqConfirmSwap
)

type request struct {
	kind     requestKind
	codes    []int
	counters *Counters
}

// Enable sets the channel inhibits to exactly codes and enables the unit. An empty list is
// Inhibit. It fails with ErrUnitSwapped after a swap until ConfirmSwap, with
// ErrCreditPending while a credit is unrecorded, and with ErrWrongState while a note waits
// in escrow.
func (d *Driver) Enable(ctx context.Context, codes []int) error {
	if len(codes) == 0 {
		return d.Inhibit(ctx)
	}
	if _, err := InhibitMask(codes); err != nil {
		return fmt.Errorf("ssp: enable: %w", err)
	}
	return d.do(ctx, request{kind: reqEnable, codes: append([]int(nil), codes...)}, "enable")
}

// Inhibit sends DISABLE. A note already in the path still finishes.
func (d *Driver) Inhibit(ctx context.Context) error {
	return d.do(ctx, request{kind: reqInhibit}, "inhibit")
}

// Reset sends RESET. The unit restarts, reports SLAVE RESET, and the driver brings it up
// again and leaves it disabled; call Enable afterwards. It fails with ErrWrongState while a
// note is in the path.
func (d *Driver) Reset(ctx context.Context) error {
	return d.do(ctx, request{kind: reqReset}, "reset")
}

// Counters reads the unit's note activity counters (GET COUNTERS).
func (d *Driver) Counters(ctx context.Context) (Counters, error) {
	var c Counters
	err := d.do(ctx, request{kind: reqCounters, counters: &c}, "counters")
	return c, err
}

// ConfirmSwap is the technician's confirmation that the unit now on the port, whose serial
// number differs from the one before, is legitimate. The driver adopts the new serial, reads
// the unit's setup again, and leaves it disabled: call Enable afterwards. It fails with
// ErrNoSwap when no swap is pending.
func (d *Driver) ConfirmSwap(ctx context.Context) error {
	return d.do(ctx, request{kind: reqConfirmSwap}, "confirm swap")
}

// do hands a request to the poll loop, the only goroutine that talks to the unit. Requests
// wait while the loop is still bringing the unit up; ctx bounds that wait.
func (d *Driver) do(ctx context.Context, r request, what string) error {
	if err := d.link.Do(ctx, r); err != nil {
		return fmt.Errorf("ssp: %s: %w", what, err)
	}
	return nil
}

// Info returns what the driver learned about the unit (setup, serial number).
func (d *Driver) Info() acceptor.Info {
	d.mu.Lock()
	defer d.mu.Unlock()
	info := d.info
	info.Denominations = maps.Clone(d.info.Denominations)
	return info
}

func (d *Driver) setInfo(f func(*acceptor.Info)) {
	d.mu.Lock()
	f(&d.info)
	d.mu.Unlock()
}

// Stats returns the link counters.
func (d *Driver) Stats() Stats {
	ls := d.link.Stats()
	return Stats{
		Polls: d.n.polls.Load(), Timeouts: ls.Timeouts, Retries: d.n.retries.Load(),
		BadFrames: ls.BadFrames, GarbageBytes: ls.GarbageBytes,
		Unexpected: ls.Unexpected, Refused: d.n.refused.Load(),
		KeyExchanges: d.n.keyExchanges.Load(), CryptoErrors: d.n.cryptoErrors.Load(),
	}
}

// Run brings the unit up and polls it until ctx ends; see the package documentation for the
// start-up sequence and the port's lifetime. It returns nil when ctx was cancelled and an
// error when the configuration is invalid or the port failed.
func (d *Driver) Run(ctx context.Context, h acceptor.Handler) error {
	if h == nil {
		return errors.New("ssp: run: nil handler")
	}
	if err := d.cfg.Validate(); err != nil {
		return fmt.Errorf("ssp: run: %w", err)
	}
	l := newLoop(d, h)
	return d.link.Run(ctx, seriallink.Loop[request]{
		Cycle:    l.step,
		Ready:    func() bool { return l.phase == phaseRunning },
		Serve:    l.serve,
		Shutdown: l.shutdown,
	})
}

func formatSerial(s uint32) string { return strconv.FormatUint(uint64(s), 10) }

// formatFirmware turns the setup's "0380" into "3.80".
func formatFirmware(fw string) string {
	if len(fw) != 4 {
		return fw
	}
	major := fw[:2]
	if major[0] == '0' {
		major = major[1:]
	}
	return major + "." + fw[2:]
}

// StackedCount returns the unit's stacked-notes counter (acceptor.StackCounter).
func (d *Driver) StackedCount(ctx context.Context) (uint64, error) {
	c, err := d.Counters(ctx)
	if err != nil {
		return 0, err
	}
	return uint64(c.Stacked), nil
}

var _ acceptor.StackCounter = (*Driver)(nil)
