package sensors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"periph.io/x/conn/v3/gpio"
)

// Well-known input names; Classify knows what each means.
const (
	CabinetDoor = "cabinet_door"
	VaultDoor   = "vault_door"
	Tamper      = "tamper"
)

// Defaults for fields left zero.
const (
	// DefaultDebounce is long enough for the bounce of door microswitches and reed contacts
	// (a few ms to a few tens of ms) and short against a door opening.
	DefaultDebounce = 50 * time.Millisecond
	// DefaultPoll bounds each wait for an edge; the level is read again after each wait, so a
	// change whose edge was lost is still seen within Poll (plus Debounce).
	DefaultPoll = 500 * time.Millisecond
	// DefaultSampleInterval is how often an input whose pin has no edge detection is read.
	DefaultSampleInterval = 10 * time.Millisecond
)

// Errors.
var (
	// ErrBadConfig: New was given inputs it cannot work with.
	ErrBadConfig = errors.New("sensors: bad config")
	// ErrAlreadyRunning: Run was called while another Run of the same Sensors is active.
	ErrAlreadyRunning = errors.New("sensors: already running")
)

// Input is one switch.
type Input struct {
	// Name identifies the input in Change and State; CabinetDoor, VaultDoor and Tamper have a
	// meaning for Classify.
	Name string
	// Pin is the GPIO input (required).
	Pin gpio.PinIn
	// ActiveLevel is the level that means "active" (door open, tamper triggered). With a
	// normally-closed switch to ground and a pull-up, which also reads a cut wire as open,
	// that is gpio.High.
	ActiveLevel gpio.Level
	// Pull is the bias Run applies. The zero value, gpio.PullNoChange, keeps the pin's
	// current bias (an external resistor, or the board default); a switch to ground with no
	// external resistor needs gpio.PullUp.
	Pull gpio.Pull
	// Debounce is how long a level must hold before it is believed (default DefaultDebounce).
	Debounce time.Duration
}

// Config configures Sensors.
type Config struct {
	Inputs []Input
	// Poll bounds each wait for an edge (default DefaultPoll); it is also how long Run takes
	// at most to stop.
	Poll time.Duration
	// SampleInterval is the read interval for pins without edge detection (default
	// DefaultSampleInterval).
	SampleInterval time.Duration
	// Logger receives the logs; nil discards them.
	Logger *slog.Logger
}

// Change is a debounced change of one input, or its initial state.
type Change struct {
	Name   string `json:"name"`
	Active bool   `json:"active"`
	// At is when the input took the level now believed (the last edge before it held for
	// the debounce time), not when the change was reported.
	At time.Time `json:"at"`
	// Initial marks the first report of each input after Run started.
	Initial bool `json:"initial,omitempty"`
}

// Sensors watches a set of inputs.
type Sensors struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	running bool
	state   map[string]bool
}

// New checks cfg. Nothing touches the pins until Run.
func New(cfg Config) (*Sensors, error) {
	if len(cfg.Inputs) == 0 {
		return nil, fmt.Errorf("%w: no inputs", ErrBadConfig)
	}
	seen := map[string]bool{}
	ins := make([]Input, len(cfg.Inputs))
	for i, in := range cfg.Inputs {
		switch {
		case in.Name == "":
			return nil, fmt.Errorf("%w: input %d has no name", ErrBadConfig, i)
		case seen[in.Name]:
			return nil, fmt.Errorf("%w: input %q named twice", ErrBadConfig, in.Name)
		case in.Pin == nil:
			return nil, fmt.Errorf("%w: input %q has no pin", ErrBadConfig, in.Name)
		case in.Debounce < 0:
			return nil, fmt.Errorf("%w: input %q: negative debounce", ErrBadConfig, in.Name)
		}
		seen[in.Name] = true
		if in.Debounce == 0 {
			in.Debounce = DefaultDebounce
		}
		ins[i] = in
	}
	cfg.Inputs = ins
	if cfg.Poll <= 0 {
		cfg.Poll = DefaultPoll
	}
	if cfg.SampleInterval <= 0 {
		cfg.SampleInterval = DefaultSampleInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Sensors{cfg: cfg, log: cfg.Logger.With("component", "sensors"), state: map[string]bool{}}, nil
}

// State returns the last reported level of each input (true = active); an input appears
// once its initial state is known.
func (s *Sensors) State() map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.state)
}

// Run sets up the pins and reports each input's initial state, then every debounced
// change, until ctx ends. report is called from Run's goroutine, one change at a time. Run
// returns nil once ctx is cancelled and every goroutine it started has ended, or an error
// when a pin cannot be set up (before anything is reported).
func (s *Sensors) Run(ctx context.Context, report func(Change)) error {
	if report == nil {
		return errors.New("sensors: run: nil report function")
	}
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return ErrAlreadyRunning
	}
	s.running = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.running = false
		s.mu.Unlock()
	}()

	edges := make([]bool, len(s.cfg.Inputs))
	for i, in := range s.cfg.Inputs {
		if err := in.Pin.In(in.Pull, gpio.BothEdges); err == nil {
			edges[i] = true
			continue
		} else if err2 := in.Pin.In(in.Pull, gpio.NoEdge); err2 != nil {
			return fmt.Errorf("sensors: run: set up %s on %s: %w", in.Name, in.Pin, errors.Join(err, err2))
		} else {
			s.log.Warn("no edge detection on this pin; reading it periodically", "input", in.Name, "pin", in.Pin.String(),
				"every", s.cfg.SampleInterval, "err", err)
		}
	}

	changes := make(chan Change)
	quit := make(chan struct{})
	var wg sync.WaitGroup
	for i := range s.cfg.Inputs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.watch(&s.cfg.Inputs[i], edges[i], changes, quit)
		}()
	}
serve:
	for {
		select {
		case c := <-changes:
			s.mu.Lock()
			s.state[c.Name] = c.Active
			s.mu.Unlock()
			s.log.Info("sensor", "input", c.Name, "active", c.Active, "initial", c.Initial)
			report(c)
		case <-ctx.Done():
			break serve
		}
	}
	close(quit)
	allDone := make(chan struct{})
	go func() { wg.Wait(); close(allDone) }()
	// Each watcher wakes within Poll; bound the wait anyway in case a pin's WaitForEdge
	// ignores its timeout.
	t := time.NewTimer(2*s.cfg.Poll + time.Second)
	defer t.Stop()
	select {
	case <-allDone:
	case <-t.C:
		s.log.Error("a sensor watcher is still blocked in WaitForEdge")
	}
	return nil
}

// watch follows one input until quit is closed.
func (s *Sensors) watch(in *Input, edges bool, changes chan<- Change, quit <-chan struct{}) {
	db := debouncer{hold: in.Debounce}
	db.sample(in.Pin.Read() == in.ActiveLevel, time.Now())
	initial := true
	for {
		if active, at, ok := db.due(time.Now()); ok {
			select {
			case changes <- Change{Name: in.Name, Active: active, At: at, Initial: initial}:
				initial = false
			case <-quit:
				return
			}
		}
		select {
		case <-quit:
			return
		default:
		}
		wait := s.cfg.SampleInterval
		if edges {
			wait = s.cfg.Poll
		}
		if dl, ok := db.deadline(); ok {
			wait = min(wait, time.Until(dl))
		}
		if wait > 0 {
			if !edges || !s.waitEdge(in.Pin, wait) {
				if !s.pause(wait, quit) {
					return
				}
			}
		}
		// Read after every wake, edge or not: the level is the truth, and a lost edge is
		// caught at the next poll.
		db.sample(in.Pin.Read() == in.ActiveLevel, time.Now())
	}
}

// waitEdge waits for an edge. It reports false when WaitForEdge gave up much earlier than
// asked (a pin that fails at once), so the caller waits instead of spinning.
func (s *Sensors) waitEdge(p gpio.PinIn, wait time.Duration) bool {
	began := time.Now()
	if p.WaitForEdge(wait) {
		return true
	}
	return time.Since(began) >= wait/2
}

// pause waits d unless quit closes first; it reports false on quit.
func (s *Sensors) pause(d time.Duration, quit <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-quit:
		return false
	}
}

// debouncer believes a level once it has held for hold. It is a pure state machine: the
// caller gives it readings with their times and asks what is due.
type debouncer struct {
	hold   time.Duration
	seen   bool // a reading arrived
	known  bool // a level was believed
	stable bool // the believed level
	raw    bool // the last reading
	rawAt  time.Time
}

// sample records a reading. Only a change of the reading restarts the hold time.
func (d *debouncer) sample(level bool, at time.Time) {
	if !d.seen || level != d.raw {
		d.seen, d.raw, d.rawAt = true, level, at
	}
}

// due returns the level to report, with the time it began, once it has held long enough.
func (d *debouncer) due(now time.Time) (level bool, since time.Time, ok bool) {
	if !d.seen || (d.known && d.raw == d.stable) || now.Sub(d.rawAt) < d.hold {
		return false, time.Time{}, false
	}
	d.known, d.stable = true, d.raw
	return d.raw, d.rawAt, true
}

// deadline is when the pending level would be believed, if one is pending.
func (d *debouncer) deadline() (time.Time, bool) {
	if !d.seen || (d.known && d.raw == d.stable) {
		return time.Time{}, false
	}
	return d.rawAt.Add(d.hold), true
}
