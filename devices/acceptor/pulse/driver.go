package pulse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/kioskd/kioskd/devices/acceptor"
)

// Defaults for Config fields left zero.
const (
	// DefaultInhibitGrace covers a note the unit drew in just before it was inhibited: its
	// validation and stacking take a few seconds before the pulses start.
	DefaultInhibitGrace = 5 * time.Second
	// DefaultEdgePoll bounds each wait for an edge, hence how long the edge reader takes to
	// notice that Run is ending.
	DefaultEdgePoll = 100 * time.Millisecond
	// DefaultRetryInterval is the pause between two calls of Handler.Credited that failed.
	DefaultRetryInterval = time.Second
	// DefaultShutdownTimeout bounds how long Run, once cancelled, keeps decoding a train
	// that is still arriving.
	DefaultShutdownTimeout = 2 * time.Second
)

// edgeBuffer is how many edges the reader may stamp ahead of the decoder, for example while
// the handler journals a pulse: 256 pulses, minutes of a fast unit.
const edgeBuffer = 512

// Errors returned by the driver besides those of package acceptor.
var (
	// ErrBadConfig: New was given a configuration it cannot work with.
	ErrBadConfig = errors.New("pulse: bad config")
	// ErrAlreadyRunning: Run was called while another Run of the same Driver is active.
	ErrAlreadyRunning = errors.New("pulse: driver already running")
	// ErrUnknownCode: Enable named a pulse count that is not in Config.Notes.
	ErrUnknownCode = errors.New("pulse: no denomination has that pulse count")
	// ErrCreditOwed: Enable was refused because a train's credit could not be handed to the
	// handler yet (Handler.Credited keeps failing); the unit stays inhibited meanwhile.
	ErrCreditOwed = errors.New("pulse: a credit is still waiting to be journaled")
)

// Config configures a Driver.
type Config struct {
	// Credit is the input the unit pulses (required). Run sets it up with In(Pull, BothEdges).
	Credit gpio.PinIn
	// ActiveLevel is the level of the credit line during a pulse. The zero value, gpio.Low,
	// fits the usual open-collector output that pulls the line low.
	ActiveLevel gpio.Level
	// Pull is the bias Run applies to the credit input. The zero value, gpio.PullNoChange,
	// keeps the pin's current bias (an external resistor, or the board default); an
	// open-collector output with no external resistor needs gpio.PullUp.
	Pull gpio.Pull
	// Inhibit is the unit's inhibit input, driven by the host; nil when it is not wired, in
	// which case the unit cannot be stopped and Enable/Inhibit only change what the driver
	// reports.
	Inhibit gpio.PinOut
	// InhibitLevel is the level that inhibits the unit; the other level lets it accept. It
	// differs between makes (ITL NV9/NV10: high inhibits; CashCode isolated pulse interface:
	// no voltage inhibits), so set it for the unit fitted.
	InhibitLevel gpio.Level
	// Notes maps a train's pulse count to the note it stands for (for example 1 → 10 CNY,
	// 5 → 50 CNY). Required; every note must have a value and a currency.
	Notes acceptor.Denominations
	// Timing says what valid pulses and trains look like.
	Timing Timing
	// InhibitGrace is how long after the inhibit was applied pulses are still taken as a note
	// the unit drew in before it (default DefaultInhibitGrace); a train that starts later is
	// reported as a ProtocolError ("pulses while inhibited"). It is also how long the driver
	// waits after an inhibit before it reports Disabled.
	InhibitGrace time.Duration
	// EdgePoll bounds each wait for an edge (default DefaultEdgePoll).
	EdgePoll time.Duration
	// RetryInterval is the pause between two failed calls of Handler.Credited (default
	// DefaultRetryInterval).
	RetryInterval time.Duration
	// ShutdownTimeout bounds the work Run does once ctx is cancelled (default
	// DefaultShutdownTimeout; it should exceed Timing.MaxGap so that a train arriving at that
	// moment can still end and be credited).
	ShutdownTimeout time.Duration
	// Model is reported in Info (for example "ITL NV9 (pulse)").
	Model string
	// Logger receives the driver's logs; nil discards them.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	c.Timing = c.Timing.withDefaults()
	if c.InhibitGrace <= 0 {
		c.InhibitGrace = DefaultInhibitGrace
	}
	if c.EdgePoll <= 0 {
		c.EdgePoll = DefaultEdgePoll
	}
	if c.RetryInterval <= 0 {
		c.RetryInterval = DefaultRetryInterval
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Stats counts what the driver saw since it was made.
type Stats struct {
	DecoderStats
	// Unknown counts trains whose pulse count matches no denomination.
	Unknown uint64
	// Uncertain counts trains credited with ValueMinor 0 for any reason (unknown count,
	// interrupted by a stuck line, missed edges, possibly cut by a host restart).
	Uncertain uint64
	// WhileInhibited counts trains that started while the unit was inhibited (after the grace).
	WhileInhibited uint64
	// PulseErrors counts failed calls of PulseRecorder.Pulse.
	PulseErrors uint64
	// CreditRetries counts failed calls of Handler.Credited (each is retried).
	CreditRetries uint64
	// Overruns counts edges the reader had to hold because the decoder was behind; their
	// timestamps may be late.
	Overruns uint64
	// Unseen counts level changes the reader found with no edge event (two polls apart):
	// edge detection is not working, and the timing of those changes is off by up to two
	// EdgePolls.
	Unseen uint64
	// Lost counts trains whose credit never succeeded before Run ended (their pulses were
	// offered to PulseRecorder).
	Lost uint64
}

// Driver reads one pulse-output bill acceptor. It implements acceptor.Acceptor.
type Driver struct {
	cfg   Config
	log   *slog.Logger
	notes acceptor.Denominations
	reqs  chan request

	mu    sync.Mutex
	stop  chan struct{} // non-nil while Run is active; closed when it ends
	stats Stats
}

var _ acceptor.Acceptor = (*Driver)(nil)

// New checks cfg and returns a driver. Nothing touches the pins until Run.
func New(cfg Config) (*Driver, error) {
	cfg = cfg.withDefaults()
	if cfg.Credit == nil {
		return nil, fmt.Errorf("%w: no credit pin", ErrBadConfig)
	}
	if err := cfg.Timing.check(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadConfig, err)
	}
	if len(cfg.Notes) == 0 {
		return nil, fmt.Errorf("%w: no denominations", ErrBadConfig)
	}
	notes := make(acceptor.Denominations, len(cfg.Notes))
	for count, n := range cfg.Notes {
		if count < 1 {
			return nil, fmt.Errorf("%w: pulse count %d (must be at least 1)", ErrBadConfig, count)
		}
		if !n.Known() {
			return nil, fmt.Errorf("%w: note for %d pulses has no value or currency", ErrBadConfig, count)
		}
		n.Code = count
		notes[count] = n
	}
	cfg.Notes = notes
	return &Driver{
		cfg:   cfg,
		log:   cfg.Logger.With("device", "pulse", "pin", cfg.Credit.Name()),
		notes: notes,
		reqs:  make(chan request),
	}, nil
}

// Info describes the unit: protocol "pulse", the configured table (code = pulse count) and
// Escrowless.
func (d *Driver) Info() acceptor.Info {
	table := make(acceptor.Denominations, len(d.notes))
	for k, v := range d.notes {
		table[k] = v
	}
	return acceptor.Info{Protocol: "pulse", Model: d.cfg.Model, Denominations: table, Escrowless: true}
}

// Stats returns the counters.
func (d *Driver) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stats
}

func (d *Driver) count(f func(*Stats)) {
	d.mu.Lock()
	f(&d.stats)
	d.mu.Unlock()
}

type requestKind int

const (
	reqEnable requestKind = iota + 1
	reqInhibit
	reqReset
)

type request struct {
	kind requestKind
	done chan error
}

// Enable lifts the inhibit. A pulse unit cannot choose denominations: the codes (pulse
// counts from Config.Notes) only say whether anything is allowed, and an empty list is the
// same as Inhibit. Whatever the codes, every note the unit knows may then arrive, so the
// caller keeps the unit inhibited while the largest note would exceed what the session may
// still take. Codes that are not in Config.Notes are refused with ErrUnknownCode.
func (d *Driver) Enable(ctx context.Context, codes []int) error {
	if len(codes) == 0 {
		return d.Inhibit(ctx)
	}
	seen := make(map[int]bool, len(codes))
	for _, c := range codes {
		if _, ok := d.notes[c]; !ok {
			return fmt.Errorf("pulse: enable: %d pulses: %w", c, ErrUnknownCode)
		}
		seen[c] = true
	}
	if len(seen) < len(d.notes) {
		d.log.Warn("enable: a pulse unit cannot restrict denominations; every note it knows may arrive",
			"asked", codes, "unit_knows", d.codes())
	}
	return d.do(ctx, reqEnable, "enable")
}

func (d *Driver) codes() []int {
	cs := make([]int, 0, len(d.notes))
	for c := range d.notes {
		cs = append(cs, c)
	}
	sort.Ints(cs)
	return cs
}

// Inhibit drives the inhibit line to stop acceptance. A note the unit already drew in
// still produces its train (see InhibitGrace); Disabled is reported once InhibitGrace has
// passed with no train in progress.
func (d *Driver) Inhibit(ctx context.Context) error {
	return d.do(ctx, reqInhibit, "inhibit")
}

// Reset inhibits the unit: a pulse unit has no reset input. Call Enable afterwards.
func (d *Driver) Reset(ctx context.Context) error {
	return d.do(ctx, reqReset, "reset")
}

// do hands a request to Run's loop, which owns the inhibit line and the handler.
func (d *Driver) do(ctx context.Context, kind requestKind, what string) error {
	d.mu.Lock()
	stop := d.stop
	d.mu.Unlock()
	if stop == nil {
		return fmt.Errorf("pulse: %s: %w", what, acceptor.ErrNotRunning)
	}
	r := request{kind: kind, done: make(chan error, 1)}
	select {
	case d.reqs <- r:
	case <-stop:
		return fmt.Errorf("pulse: %s: %w", what, acceptor.ErrNotRunning)
	case <-ctx.Done():
		return fmt.Errorf("pulse: %s: %w", what, ctx.Err())
	}
	select {
	case err := <-r.done:
		if err != nil {
			return fmt.Errorf("pulse: %s: %w", what, err)
		}
		return nil
	case <-stop:
		return fmt.Errorf("pulse: %s: %w", what, acceptor.ErrNotRunning)
	case <-ctx.Done():
		return fmt.Errorf("pulse: %s: %w", what, ctx.Err())
	}
}

// Run sets up the pins, inhibits the unit and reads the credit line, reporting to h, until
// ctx ends; see the package documentation for what is reported when. Once ctx is cancelled
// it inhibits the unit, lets a train that is still arriving end and be credited (bounded by
// ShutdownTimeout, with a context that is no longer cancelled), and stops its edge reader
// before it returns nil. It returns an error when a pin cannot be set up.
func (d *Driver) Run(ctx context.Context, h acceptor.Handler) error {
	if h == nil {
		return errors.New("pulse: run: nil handler")
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

	l, err := d.newLoop(h)
	if err != nil {
		return err
	}
	if err := d.cfg.Credit.In(d.cfg.Pull, gpio.BothEdges); err != nil {
		return fmt.Errorf("pulse: run: set up credit input %s: %w", d.cfg.Credit, err)
	}
	if err := l.driveInhibit(true); err != nil {
		return fmt.Errorf("pulse: run: inhibit: %w", err)
	}

	edges := make(chan edge, edgeBuffer)
	quit := make(chan struct{})
	readerDone := make(chan struct{})
	go d.readEdges(edges, quit, readerDone)

	l.edges = edges
	l.start(ctx)
	l.run(ctx)

	// Shutdown: stop new notes first, then give a train already on the line its chance to
	// end and be credited; the handler gets a context that is not cancelled yet.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.cfg.ShutdownTimeout)
	if err := l.driveInhibit(true); err != nil {
		d.log.Error("inhibit on the way out failed", "err", err)
	}
	l.drain(sctx)
	cancel()

	close(quit)
	// The reader wakes from WaitForEdge within EdgePoll; bound the wait anyway in case a
	// pin's WaitForEdge ignores its timeout.
	t := time.NewTimer(d.cfg.EdgePoll + d.cfg.ShutdownTimeout)
	select {
	case <-readerDone:
	case <-t.C:
		d.log.Error("edge reader still blocked in WaitForEdge")
	}
	t.Stop()
	return nil
}

// edge is one level change as the reader saw it.
type edge struct {
	level gpio.Level
	at    time.Time
}

// readEdges stamps each edge the moment WaitForEdge returns and hands it on, so that a slow
// handler delays the decoding but not the measurement. A pin reports an edge, not its
// direction, so the level is read right after it.
func (d *Driver) readEdges(edges chan<- edge, quit <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	pin := d.cfg.Credit
	last := pin.Read()
	unseen := false
	for {
		select {
		case <-quit:
			return
		default:
		}
		began := time.Now()
		if !pin.WaitForEdge(d.cfg.EdgePoll) {
			// A pin that fails at once (no edge support after all, a device gone) must not
			// turn this loop into a spin: wait out the rest of the poll.
			if rest := d.cfg.EdgePoll - time.Since(began); rest > d.cfg.EdgePoll/2 {
				t := time.NewTimer(rest)
				select {
				case <-t.C:
				case <-quit:
					t.Stop()
					return
				}
			}
			// The level is checked at each timeout, so that a pin whose edge detection does
			// not work is noticed. A change with no edge is believed only at the second poll
			// that sees it: its edge may just be on its way.
			lv := pin.Read()
			if lv == last {
				unseen = false
				continue
			}
			if !unseen {
				unseen = true
				continue
			}
			unseen = false
			d.count(func(s *Stats) { s.Unseen++ })
			d.log.Warn("credit line changed without an edge event: is edge detection working on this pin?", "level", lv.String())
		}
		unseen = false
		e := edge{level: pin.Read(), at: time.Now()}
		last = e.level
		select {
		case edges <- e:
			continue
		default:
		}
		d.count(func(s *Stats) { s.Overruns++ })
		select {
		case edges <- e:
		case <-quit:
			return
		}
	}
}
