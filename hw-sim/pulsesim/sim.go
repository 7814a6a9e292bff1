package pulsesim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"

	"github.com/kioskd/kioskd/devices/acceptor"
)

// Defaults for Config fields left zero.
const (
	DefaultWidth   = 50 * time.Millisecond
	DefaultGap     = 100 * time.Millisecond
	DefaultTransit = time.Second
	// edgeBuffer is how many edges the credit pin queues for a reader that is behind or
	// absent; beyond that edges are dropped (the pin's level stays right).
	edgeBuffer = 256
)

// Errors of the control API.
var (
	// ErrInhibited: the unit is inhibited and does not draw the note in.
	ErrInhibited = errors.New("pulsesim: unit is inhibited; it does not draw the note in")
	// ErrBusy: the line is already carrying a train, noise or a stuck level.
	ErrBusy = errors.New("pulsesim: the credit line is busy")
	// ErrBadArg: a count or duration out of range.
	ErrBadArg = errors.New("pulsesim: bad argument")
)

// Shape is the waveform of a train.
type Shape struct {
	// Width is how long each pulse holds the line active (default DefaultWidth).
	Width time.Duration
	// Gap is the idle time between two pulses of a train (default DefaultGap).
	Gap time.Duration
	// Bounce adds that many blips of BounceWidth (active, then idle) ahead of each pulse and
	// (idle, then active) at its end, like a relay contact; the pulse keeps its Width
	// between the bounces.
	Bounce      int
	BounceWidth time.Duration
}

// Config configures a Sim.
type Config struct {
	// Notes maps pulse counts to notes, for the values in Cassette.
	Notes acceptor.Denominations
	// ActiveLevel is the credit line's level during a pulse (zero: gpio.Low, open collector).
	ActiveLevel gpio.Level
	// InhibitLevel is the level of the inhibit input that stops the unit.
	InhibitLevel gpio.Level
	// IgnoreInhibit makes the unit take notes whatever its inhibit input says: an inhibit
	// line that is not wired, or a faulty unit.
	IgnoreInhibit bool
	// Shape is the default waveform (zero fields take the defaults).
	Shape Shape
	// Transit is the time from drawing a note in to its first pulse (default
	// DefaultTransit; negative for none). It also keeps two trains apart.
	Transit time.Duration
	// Logger receives the emulator's logs; nil discards them.
	Logger *slog.Logger
}

// Step is one segment of a raw waveform: the line at a level for a time.
type Step struct {
	Active bool
	For    time.Duration
}

// StackedNote is one note that went into the cassette: the emulator's ground truth.
type StackedNote struct {
	// Pulses is the train the note stands for; Emitted how many of them went out.
	Pulses  int `json:"pulses"`
	Emitted int `json:"emitted"`
	// Complete is false when the train was cut short (its context ended).
	Complete   bool      `json:"complete"`
	ValueMinor int64     `json:"value_minor"`
	Currency   string    `json:"currency,omitempty"`
	At         time.Time `json:"at"`
	// WhileInhibited is set when the note was taken with the inhibit input at its inhibit
	// level (IgnoreInhibit).
	WhileInhibited bool `json:"while_inhibited,omitempty"`
}

// Sim emulates one pulse-output bill acceptor on two fake pins: the credit line it drives
// and the inhibit input it reads. Control methods are safe to call from any goroutine; one
// waveform is on the line at a time.
type Sim struct {
	cfg     Config
	log     *slog.Logger
	credit  *gpiotest.Pin
	inhibit *gpiotest.Pin

	mu       sync.Mutex
	busy     bool
	active   bool
	ignore   bool
	cassette []StackedNote
	refused  uint64
	dropped  uint64
	edges    uint64
}

// New returns an idle unit, inhibited until the host drives its inhibit input.
func New(cfg Config) *Sim {
	if cfg.Shape.Width <= 0 {
		cfg.Shape.Width = DefaultWidth
	}
	if cfg.Shape.Gap <= 0 {
		cfg.Shape.Gap = DefaultGap
	}
	if cfg.Transit == 0 {
		cfg.Transit = DefaultTransit
	}
	if cfg.Transit < 0 {
		cfg.Transit = 0
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Sim{
		cfg:     cfg,
		log:     cfg.Logger.With("device", "pulsesim"),
		credit:  &gpiotest.Pin{N: "PULSE_CREDIT", L: !cfg.ActiveLevel, EdgesChan: make(chan gpio.Level, edgeBuffer)},
		inhibit: &gpiotest.Pin{N: "PULSE_INHIBIT", L: cfg.InhibitLevel},
		ignore:  cfg.IgnoreInhibit,
	}
}

// CreditPin is the unit's credit output, for pulse.Config.Credit. Its edges queue in
// EdgesChan for WaitForEdge.
func (s *Sim) CreditPin() *gpiotest.Pin { return s.credit }

// InhibitPin is the unit's inhibit input, for pulse.Config.Inhibit.
func (s *Sim) InhibitPin() *gpiotest.Pin { return s.inhibit }

// Inhibited reports whether the inhibit input is at its inhibit level.
func (s *Sim) Inhibited() bool { return s.inhibit.Read() == s.cfg.InhibitLevel }

// SetIgnoreInhibit makes the unit ignore (or obey again) its inhibit input.
func (s *Sim) SetIgnoreInhibit(on bool) {
	s.mu.Lock()
	s.ignore = on
	s.mu.Unlock()
}

// InsertNote draws a note in and emits its train of pulses with the default shape. It
// returns when the train is over, or ErrInhibited at once when the unit is inhibited.
func (s *Sim) InsertNote(pulses int) error {
	return s.InsertNoteWith(context.Background(), pulses, s.cfg.Shape)
}

// InsertNoteWith is InsertNote with a context and a waveform. The note is in the cassette
// from the first pulse on; a train cut short by ctx leaves it there with Complete false.
func (s *Sim) InsertNoteWith(ctx context.Context, pulses int, sh Shape) error {
	if pulses < 1 {
		return fmt.Errorf("%w: %d pulses", ErrBadArg, pulses)
	}
	if sh.Width <= 0 || sh.Gap <= 0 || sh.Bounce < 0 || (sh.Bounce > 0 && sh.BounceWidth <= 0) {
		return fmt.Errorf("%w: shape %+v", ErrBadArg, sh)
	}
	s.mu.Lock()
	if s.busy {
		s.mu.Unlock()
		return ErrBusy
	}
	inhibited := s.Inhibited()
	if inhibited && !s.ignore {
		s.refused++
		s.mu.Unlock()
		s.log.Info("note refused: inhibited", "pulses", pulses)
		return ErrInhibited
	}
	s.busy = true
	s.mu.Unlock()
	defer s.done()

	if err := s.wait(ctx, s.cfg.Transit); err != nil {
		return err // still in the bezel: the note goes back
	}
	n := s.cfg.Notes[pulses]
	s.mu.Lock()
	idx := len(s.cassette)
	s.cassette = append(s.cassette, StackedNote{Pulses: pulses, ValueMinor: n.ValueMinor, Currency: n.Currency,
		At: time.Now(), WhileInhibited: inhibited})
	s.mu.Unlock()
	s.log.Info("note stacked; pulsing", "pulses", pulses)

	for i := range pulses {
		if i > 0 {
			if err := s.level(ctx, false, sh.Gap); err != nil {
				return err
			}
		}
		for range sh.Bounce {
			if err := s.run(ctx, Step{true, sh.BounceWidth}, Step{false, sh.BounceWidth}); err != nil {
				return err
			}
		}
		if err := s.level(ctx, true, sh.Width); err != nil {
			return err
		}
		for range sh.Bounce {
			if err := s.run(ctx, Step{false, sh.BounceWidth}, Step{true, sh.BounceWidth}); err != nil {
				return err
			}
		}
		s.set(false)
		s.mu.Lock()
		s.cassette[idx].Emitted = i + 1
		s.cassette[idx].Complete = i+1 == pulses
		s.mu.Unlock()
	}
	return nil
}

// Noise puts one glitch per width on the line: active for that long, then idle as long.
func (s *Sim) Noise(widths ...time.Duration) error {
	steps := make([]Step, 0, 2*len(widths))
	for _, w := range widths {
		if w <= 0 {
			return fmt.Errorf("%w: glitch width %v", ErrBadArg, w)
		}
		steps = append(steps, Step{true, w}, Step{false, w})
	}
	return s.Waveform(context.Background(), steps...)
}

// StuckLine holds the credit line active for d, then releases it.
func (s *Sim) StuckLine(d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("%w: stuck for %v", ErrBadArg, d)
	}
	return s.Waveform(context.Background(), Step{true, d}, Step{false, 0})
}

// Waveform puts raw steps on the line (not counted as a note), leaving it idle afterwards.
func (s *Sim) Waveform(ctx context.Context, steps ...Step) error {
	for _, st := range steps {
		if st.For < 0 {
			return fmt.Errorf("%w: step of %v", ErrBadArg, st.For)
		}
	}
	s.mu.Lock()
	if s.busy {
		s.mu.Unlock()
		return ErrBusy
	}
	s.busy = true
	s.mu.Unlock()
	defer s.done()
	return s.run(ctx, steps...)
}

func (s *Sim) run(ctx context.Context, steps ...Step) error {
	for _, st := range steps {
		if err := s.level(ctx, st.Active, st.For); err != nil {
			return err
		}
	}
	return nil
}

// done releases the line, idle, after a waveform (also one cut short).
func (s *Sim) done() {
	s.set(false)
	s.mu.Lock()
	s.busy = false
	s.mu.Unlock()
}

// level sets the line and holds it for d.
func (s *Sim) level(ctx context.Context, active bool, d time.Duration) error {
	s.set(active)
	return s.wait(ctx, d)
}

// set changes the credit line: the level at once, as a real line (a reader that starts
// later, whose In flushes the queue, reads it right), and the edge queued for WaitForEdge,
// which sets the level again as it takes each edge. When the queue is full (nobody reads
// it) the edge is dropped.
func (s *Sim) set(active bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active == active {
		return
	}
	s.active = active
	lv := s.cfg.ActiveLevel
	if !active {
		lv = !lv
	}
	s.edges++
	s.credit.Lock()
	s.credit.L = lv
	s.credit.Unlock()
	select {
	case s.credit.EdgesChan <- lv:
	default:
		s.dropped++
	}
}

func (s *Sim) wait(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("pulsesim: %w", ctx.Err())
	}
}

// Cassette lists every note that went into the cassette, in order.
func (s *Sim) Cassette() []StackedNote {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]StackedNote(nil), s.cassette...)
}

// Snapshot is the emulator's state for the control panel, as JSON.
type Snapshot struct {
	CreditActive    bool   `json:"credit_active"`
	Inhibited       bool   `json:"inhibited"`
	IgnoreInhibit   bool   `json:"ignore_inhibit,omitempty"`
	Busy            bool   `json:"busy"`
	CassetteCount   int    `json:"cassette_count"`
	CassetteMinor   int64  `json:"cassette_value_minor"`
	Currency        string `json:"currency,omitempty"`
	Incomplete      int    `json:"incomplete_trains,omitempty"`
	RefusedNotes    uint64 `json:"refused_notes"`
	EdgesSent       uint64 `json:"edges_sent"`
	DroppedEdges    uint64 `json:"dropped_edges,omitempty"`
	QueuedEdges     int    `json:"queued_edges"`
	LastTrainPulses int    `json:"last_train_pulses,omitempty"`
}

// State returns a snapshot.
func (s *Sim) State() Snapshot {
	inh := s.Inhibited()
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := Snapshot{CreditActive: s.active, Inhibited: inh, IgnoreInhibit: s.ignore, Busy: s.busy,
		CassetteCount: len(s.cassette), RefusedNotes: s.refused, EdgesSent: s.edges,
		DroppedEdges: s.dropped, QueuedEdges: len(s.credit.EdgesChan)}
	for _, n := range s.cassette {
		snap.CassetteMinor += n.ValueMinor
		if n.Currency != "" {
			snap.Currency = n.Currency
		}
		if !n.Complete {
			snap.Incomplete++
		}
	}
	if len(s.cassette) > 0 {
		snap.LastTrainPulses = s.cassette[len(s.cassette)-1].Pulses
	}
	return snap
}
