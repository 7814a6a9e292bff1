package simrig

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"

	"github.com/kioskd/kioskd/hw-sim/pulsesim"
)

// Names of the simulated GPIO pins; a daemon run in-process with the rig opens them through
// Rig.Pin instead of the board's pins.
const (
	PinPulseCredit  = "SIM_PULSE_CREDIT"
	PinPulseInhibit = "SIM_PULSE_INHIBIT"
	PinCabinetDoor  = "SIM_CABINET_DOOR"
	PinVaultDoor    = "SIM_VAULT_DOOR"
	PinTamper       = "SIM_TAMPER"
)

// sensorPins are the door, vault and tamper switches: closed (inactive, low) at start.
type sensorPins struct {
	mu   sync.Mutex
	pins map[string]*gpiotest.Pin
}

func newSensorPins() *sensorPins {
	s := &sensorPins{pins: map[string]*gpiotest.Pin{}}
	for _, n := range []string{PinCabinetDoor, PinVaultDoor, PinTamper} {
		s.pins[n] = &gpiotest.Pin{N: n, L: gpio.Low, EdgesChan: make(chan gpio.Level, 64)}
	}
	return s
}

// set drives a sensor input: active is high.
func (s *sensorPins) set(name string, active bool) error {
	s.mu.Lock()
	p := s.pins[name]
	s.mu.Unlock()
	if p == nil {
		return fmt.Errorf("simrig: no sensor pin %q", name)
	}
	l := gpio.Level(active)
	p.Lock()
	p.L = l
	p.Unlock()
	select {
	case p.EdgesChan <- l:
	default: // a reader that is not waiting will read the level anyway
	}
	return nil
}

// Pin opens a simulated pin by name (the PinOpener a daemon under test uses).
func (r *Rig) Pin(name string) (gpio.PinIO, error) {
	switch name {
	case PinPulseCredit, PinPulseInhibit:
		pa, ok := r.Acc.(*pulseAdapter)
		if !ok {
			return nil, errors.New("simrig: no pulse acceptor in this rig")
		}
		if name == PinPulseCredit {
			return pa.s.CreditPin(), nil
		}
		return pa.s.InhibitPin(), nil
	}
	r.sensors.mu.Lock()
	defer r.sensors.mu.Unlock()
	if p, ok := r.sensors.pins[name]; ok {
		return p, nil
	}
	return nil, fmt.Errorf("simrig: no pin %q", name)
}

// SetSensor opens (active) or closes a simulated door/vault/tamper switch by pin name.
func (r *Rig) SetSensor(pin string, active bool) error { return r.sensors.set(pin, active) }

// Sensors returns each simulated switch's state by pin name (true: active, door open).
func (r *Rig) Sensors() map[string]bool {
	r.sensors.mu.Lock()
	defer r.sensors.mu.Unlock()
	out := make(map[string]bool, len(r.sensors.pins))
	for n, p := range r.sensors.pins {
		out[n] = p.Read() == gpio.High
	}
	return out
}

// pulseAdapter is the pulse acceptor behind the neutral control surface. It has no serial
// line: the daemon reads its pins in-process (Rig.Pin).
type pulseAdapter struct {
	s   *pulsesim.Sim
	cfg Config
}

// newPulse uses pulsesim's default transit (a note takes about a second to validate before
// its pulses): the driver rightly doubts a train that begins within MaxGap of its start.
func newPulse(cfg Config) *pulseAdapter {
	return &pulseAdapter{cfg: cfg, s: pulsesim.New(pulsesim.Config{Notes: cfg.Denominations, ActiveLevel: gpio.Low, InhibitLevel: gpio.High,
		Logger: cfg.Logger.With("device", "acceptor", "protocol", "pulse")})}
}

func (a *pulseAdapter) Serve(ctx context.Context, port io.ReadWriter) error {
	<-ctx.Done()
	return nil
}

func (a *pulseAdapter) Insert(code int) error { return a.s.InsertNote(code) }

func (a *pulseAdapter) CodeFor(v int64) (int, bool) {
	for c, n := range a.cfg.Denominations {
		if n.ValueMinor == v {
			return c, true
		}
	}
	return 0, false
}

var errPulseUnsupported = errors.New("simrig: a pulse acceptor has no such state")

func (a *pulseAdapter) RejectNext(int)      {}
func (a *pulseAdapter) Jam(bool)            { go func() { _ = a.s.StuckLine(2 * time.Second) }() }
func (a *pulseAdapter) ClearJam()           {}
func (a *pulseAdapter) PullCassette() error { return errPulseUnsupported }
func (a *pulseAdapter) ReplaceCassette() error {
	return errPulseUnsupported
}
func (a *pulseAdapter) SetCassetteFull(bool)    {}
func (a *pulseAdapter) Cheat()                  { go a.s.SetIgnoreInhibit(true) }
func (a *pulseAdapter) Fail(int)                {}
func (a *pulseAdapter) PowerCycle(string) error { return errPulseUnsupported }
func (a *pulseAdapter) State() any              { return a.s.State() }
func (a *pulseAdapter) Fault(kind string, d time.Duration) error {
	if kind != "garbage" {
		return errPulseUnsupported
	}
	return a.s.Noise(2*time.Millisecond, 3*time.Millisecond)
}

func (a *pulseAdapter) Stacked() []Stacked {
	var out []Stacked
	for _, n := range a.s.Cassette() {
		via := "pulses"
		if !n.Complete {
			via = "incomplete_train"
		}
		out = append(out, Stacked{Code: n.Pulses, ValueMinor: n.ValueMinor, At: n.At, Acked: n.Complete, Via: via, Cassette: 1})
	}
	return out
}

// pulseLine is the pulse emulator as the conformance suite drives it. Unlike the rig's
// adapter (a jam button that sticks the line for two seconds), a jam holds the credit line
// active until ClearJam, so a scenario decides when it ends; line noise is its only link
// fault, and it has no cheat or failure to inject.
type pulseLine struct {
	s       *pulsesim.Sim
	mu      sync.Mutex
	jamStop context.CancelFunc
	jamDone chan struct{}
	jamFrom time.Time
}

// jamMinHold is the shortest a jam holds the credit line. A stuck line is one active for
// longer than the host's longest valid pulse (150 ms by default); released sooner, the jam
// is a credit pulse on the wire, which no host can tell from a note (two simulation seeds
// counted such a "jam" as a 1-pulse note).
const jamMinHold = time.Second

func (u *pulseLine) Insert(code int) error   { return u.s.InsertNote(code) }
func (u *pulseLine) RejectNext(int)          {}
func (u *pulseLine) SetCassetteFull(bool)    {}
func (u *pulseLine) Cheat()                  {}
func (u *pulseLine) Fail(int)                {}
func (u *pulseLine) PullCassette() error     { return errPulseUnsupported }
func (u *pulseLine) ReplaceCassette() error  { return errPulseUnsupported }
func (u *pulseLine) PowerCycle(string) error { return errPulseUnsupported }
func (u *pulseLine) PendingFaults() int      { return 0 } // noise goes out at once

func (u *pulseLine) Jam(bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.jamStop != nil {
		return // already held
	}
	ctx, cancel := context.WithCancel(context.Background())
	u.jamStop, u.jamDone, u.jamFrom = cancel, make(chan struct{}), time.Now()
	go func(done chan struct{}) {
		defer close(done)
		_ = u.s.Waveform(ctx, pulsesim.Step{Active: true, For: time.Hour})
	}(u.jamDone)
}

// ClearJam releases the line and waits until the waveform has stopped driving it.
func (u *pulseLine) ClearJam() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.jamStop != nil {
		if held := time.Since(u.jamFrom); held < jamMinHold {
			time.Sleep(jamMinHold - held)
		}
		u.jamStop()
		<-u.jamDone
		u.jamStop = nil
	}
}

func (u *pulseLine) Fault(kind string, d time.Duration) error {
	if kind != "garbage" {
		return fmt.Errorf("%w: fault %q", errPulseUnsupported, kind)
	}
	return u.s.Noise(2*time.Millisecond, 3*time.Millisecond, time.Millisecond)
}

func (u *pulseLine) Stacked() []Stacked {
	var out []Stacked
	for _, n := range u.s.Cassette() {
		out = append(out, Stacked{Code: n.Pulses, ValueMinor: n.ValueMinor, At: n.At, Acked: n.Complete, Via: "pulses", Cassette: 1})
	}
	return out
}
