package sensors

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"
)

const ms = time.Millisecond

func newPin(name string, l gpio.Level) *gpiotest.Pin {
	return &gpiotest.Pin{N: name, L: l, EdgesChan: make(chan gpio.Level, 64)}
}

// collector records the changes Run reports.
type collector struct {
	mu      sync.Mutex
	changes []Change
	changed chan struct{}
}

func newCollector() *collector { return &collector{changed: make(chan struct{})} }

func (c *collector) report(ch Change) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.changes = append(c.changes, ch)
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *collector) all() []Change {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Change(nil), c.changes...)
}

func (c *collector) waitN(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		c.mu.Lock()
		got, ch := len(c.changes), c.changed
		c.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("timed out waiting for %d changes; got %v", n, c.all())
		}
	}
}

type running struct {
	s      *Sensors
	c      *collector
	cancel context.CancelFunc
	done   chan error
	start  time.Time
}

func run(t *testing.T, cfg Config) *running {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	r := &running{s: s, c: newCollector(), cancel: cancel, done: make(chan error, 1), start: time.Now()}
	go func() { r.done <- s.Run(ctx, r.c.report) }()
	synctest.Wait() // pins set up, watchers waiting
	return r
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	if err := <-r.done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// edges puts levels on a pin, each held for the duration that follows it.
func edges(p *gpiotest.Pin, steps ...any) {
	for i := 0; i < len(steps); i += 2 {
		p.EdgesChan <- steps[i].(gpio.Level)
		if i+1 < len(steps) {
			time.Sleep(steps[i+1].(time.Duration)) // bubble time: the waveform itself
		}
	}
}

func TestInitialState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		door := newPin("door", gpio.Low)      // NC switch closed: door shut
		tamper := newPin("tamper", gpio.High) // triggered
		r := run(t, Config{Inputs: []Input{
			{Name: CabinetDoor, Pin: door, ActiveLevel: gpio.High},
			{Name: Tamper, Pin: tamper, ActiveLevel: gpio.High, Debounce: 20 * ms},
		}})
		r.c.waitN(t, 2)
		r.stop(t)
		got := map[string]Change{}
		for _, c := range r.c.all() {
			got[c.Name] = c
		}
		if c := got[CabinetDoor]; c.Active || !c.Initial || !c.At.Equal(r.start) {
			t.Errorf("door initial %+v", c)
		}
		if c := got[Tamper]; !c.Active || !c.Initial || !c.At.Equal(r.start) {
			t.Errorf("tamper initial %+v", c)
		}
		if st := r.s.State(); fmt.Sprint(st) != "map[cabinet_door:false tamper:true]" {
			t.Errorf("State() = %v", st)
		}
		if n := len(r.c.all()); n != 2 {
			t.Errorf("%d changes, want only the two initial states", n)
		}
	})
}

func TestBounceRejectedStableChangeReportedOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		door := newPin("door", gpio.Low)
		r := run(t, Config{Inputs: []Input{{Name: VaultDoor, Pin: door, ActiveLevel: gpio.High}}})
		r.c.waitN(t, 1) // initial: closed

		// Bounce and noise that end where they began: nothing to report.
		edges(door, gpio.High, 2*ms, gpio.Low, 3*ms, gpio.High, 49*ms, gpio.Low, time.Second)
		if n := len(r.c.all()); n != 1 {
			t.Fatalf("noise reported: %v", r.c.all())
		}

		// The door opens with contact bounce, then stays open: one change, dated from the
		// last bounce.
		opened := time.Now()
		edges(door, gpio.High, 1*ms, gpio.Low, 1*ms, gpio.High, 10*time.Second)
		closed := time.Now()
		edges(door, gpio.Low, time.Second)
		r.stop(t)

		cs := r.c.all()
		if len(cs) != 3 {
			t.Fatalf("changes %v, want initial, opened, closed", cs)
		}
		if c := cs[1]; !c.Active || c.Initial || !c.At.Equal(opened.Add(2*ms)) {
			t.Errorf("open change %+v, want active at the last bounce (+2ms)", c)
		}
		if c := cs[2]; c.Active || !c.At.Equal(closed) {
			t.Errorf("close change %+v", c)
		}
		if r.s.State()[VaultDoor] {
			t.Error("State says open after the door closed")
		}
	})
}

// A change whose edge never came is still seen: the level is read after every poll.
func TestLostEdgeCaughtByPoll(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		door := newPin("door", gpio.Low)
		r := run(t, Config{Inputs: []Input{{Name: CabinetDoor, Pin: door, ActiveLevel: gpio.High}}, Poll: 200 * ms})
		r.c.waitN(t, 1)
		changed := time.Now()
		door.Out(gpio.High) // level changes, no edge
		r.c.waitN(t, 2)
		if took := time.Since(changed); took > 200*ms+DefaultDebounce {
			t.Errorf("lost edge seen after %v", took)
		}
		r.stop(t)
	})
}

// noEdgePin is a pin without edge detection: In with an edge fails.
type noEdgePin struct{ *gpiotest.Pin }

func (p noEdgePin) In(pull gpio.Pull, e gpio.Edge) error {
	if e != gpio.NoEdge {
		return errors.New("no edge detection")
	}
	return p.Pin.In(pull, e)
}

func TestPinWithoutEdgesIsSampled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := noEdgePin{newPin("polled", gpio.Low)}
		r := run(t, Config{Inputs: []Input{{Name: Tamper, Pin: p, ActiveLevel: gpio.High, Debounce: 30 * ms}}})
		r.c.waitN(t, 1)
		p.Out(gpio.High)
		time.Sleep(5 * ms) // bubble time: a 5 ms blip is bounce
		p.Out(gpio.Low)
		time.Sleep(time.Second)
		if n := len(r.c.all()); n != 1 {
			t.Fatalf("blip reported: %v", r.c.all())
		}
		p.Out(gpio.High)
		r.c.waitN(t, 2)
		r.stop(t)
		if c := r.c.all()[1]; !c.Active {
			t.Errorf("change %+v", c)
		}
	})
}

func TestCancelReturnsPromptly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := run(t, Config{Inputs: []Input{{Name: CabinetDoor, Pin: newPin("a", gpio.Low)}, {Name: VaultDoor, Pin: newPin("b", gpio.Low)}}})
		r.c.waitN(t, 2)
		t1 := time.Now()
		r.stop(t)
		if took := time.Since(t1); took > DefaultPoll {
			t.Errorf("Run took %v to stop", took)
		}
		// synctest.Test fails if a watcher is still alive.
	})
}

type failingPin struct{ *gpiotest.Pin }

func (failingPin) In(gpio.Pull, gpio.Edge) error { return errors.New("pin busy") }

func TestRunErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := New(Config{Inputs: []Input{{Name: CabinetDoor, Pin: failingPin{newPin("x", gpio.Low)}}}})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Run(t.Context(), func(Change) {}); err == nil {
			t.Fatal("Run with a pin that cannot be set up")
		}
		if err := s.Run(t.Context(), nil); err == nil {
			t.Fatal("Run with no report function")
		}
		r := run(t, Config{Inputs: []Input{{Name: CabinetDoor, Pin: newPin("a", gpio.Low)}}})
		if err := r.s.Run(t.Context(), func(Change) {}); !errors.Is(err, ErrAlreadyRunning) {
			t.Errorf("second Run: %v", err)
		}
		r.stop(t)
	})
}

func TestNewChecksConfig(t *testing.T) {
	p := newPin("p", gpio.Low)
	for _, cfg := range []Config{
		{},
		{Inputs: []Input{{Pin: p}}},
		{Inputs: []Input{{Name: "a"}}},
		{Inputs: []Input{{Name: "a", Pin: p}, {Name: "a", Pin: p}}},
		{Inputs: []Input{{Name: "a", Pin: p, Debounce: -1}}},
	} {
		if _, err := New(cfg); !errors.Is(err, ErrBadConfig) {
			t.Errorf("New(%+v) = %v, want ErrBadConfig", cfg, err)
		}
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name          string
		active, maint bool
		want          Condition
	}{
		{CabinetDoor, true, false, Condition{Kind: "cabinet_door_open", Raise: true, Severity: "warning", Actor: "staff", Detail: "cabinet door opened outside maintenance"}},
		{CabinetDoor, true, true, Condition{Kind: "cabinet_door_open", Raise: true, Severity: "info", Actor: "none", Detail: "cabinet door open during maintenance"}},
		{CabinetDoor, false, false, Condition{Kind: "cabinet_door_open", Detail: "cabinet door closed"}},
		{VaultDoor, true, false, Condition{Kind: "vault_door_open", Raise: true, Severity: "critical", Actor: "staff", StopsService: true, Detail: "vault door opened outside maintenance; cash acceptance stopped"}},
		{VaultDoor, true, true, Condition{Kind: "vault_door_open", Raise: true, Severity: "info", Actor: "staff", StopsService: true, Detail: "vault door open during maintenance; cash acceptance stopped"}},
		{VaultDoor, false, true, Condition{Kind: "vault_door_open", Detail: "vault door closed"}},
		{Tamper, true, true, Condition{Kind: "tamper", Raise: true, Latched: true, Severity: "critical", Actor: "engineer", StopsService: true, Detail: "tamper switch triggered"}},
		{Tamper, false, false, Condition{Kind: "tamper", Latched: true, Detail: "tamper switch back to normal; the alarm stays until an engineer clears it"}},
		{"flood", true, false, Condition{Kind: "sensor_flood_active", Raise: true, Severity: "warning", Actor: "engineer", Detail: "input flood active"}},
		{"flood", false, false, Condition{Kind: "sensor_flood_active", Detail: "input flood inactive"}},
	} {
		if got := Classify(tc.name, tc.active, tc.maint); got != tc.want {
			t.Errorf("Classify(%s, %v, %v) = %+v, want %+v", tc.name, tc.active, tc.maint, got, tc.want)
		}
	}
}

func TestDebouncer(t *testing.T) {
	t0 := time.Unix(1000, 0)
	d := debouncer{hold: 10 * ms}
	if _, _, ok := d.due(t0); ok {
		t.Fatal("due with no reading")
	}
	d.sample(true, t0)
	if dl, ok := d.deadline(); !ok || !dl.Equal(t0.Add(10*ms)) {
		t.Fatalf("deadline %v %v", dl, ok)
	}
	if _, _, ok := d.due(t0.Add(10*ms - 1)); ok {
		t.Fatal("believed before the hold time")
	}
	if lv, at, ok := d.due(t0.Add(10 * ms)); !ok || !lv || !at.Equal(t0) {
		t.Fatalf("due = %v %v %v", lv, at, ok)
	}
	if _, ok := d.deadline(); ok {
		t.Fatal("deadline with nothing pending")
	}
	// The same reading again does not restart anything.
	d.sample(true, t0.Add(time.Second))
	if _, _, ok := d.due(t0.Add(2 * time.Second)); ok {
		t.Fatal("unchanged level reported again")
	}
}
