package conformance

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/hw-sim/walletsim"
	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/kiosk/qrpay"
	"github.com/kioskd/kioskd/kiosk/session"
	"github.com/kioskd/kioskd/sync/wire"
)

// Protocols names the driver configurations Note measures: "id003", "ccnet", "ssp" (plain),
// "essp" (encrypted, random fixed key) and "pulse".
func Protocols() []string {
	var out []string
	for _, p := range protocols() {
		out = append(out, p.name)
	}
	return out
}

// ErrUnknownProtocol is returned by Note's setup for a name Protocols does not list.
var ErrUnknownProtocol = errors.New("conformance: unknown protocol")

// Note measures one full note per b.N through the real driver of the named protocol, its emulator
// (net.Pipe; pins for pulse), the session engine and a bbolt journal in dir (with fsync):
// insert → escrow decision (stack intent committed) → stack → credit committed → credit
// acknowledged to the unit → unit at rest again, on the real clock. It reports ns/note.
//
// The drivers poll every 100 µs instead of their production 200 ms and CCNET keeps no bus
// gap, so the figure is the host's own cost per note (journal commits, engine, driver and
// emulator work, one pipe round trip per exchange), not the protocol's waits: at production
// settings a note costs about five polls, ≈1 s. The pulse figure is mostly its waveform: one
// 5 ms pulse (the smallest note) and the 15 ms of silence that end the train. After the
// loop the session is finished and the money checked: every note credited once, in the
// journal (verified) and in the emulator's cassette.
func Note(b *testing.B, name, dir string) {
	all := protocols()
	i := slices.IndexFunc(all, func(p *protocol) bool { return p.name == name })
	if i < 0 {
		b.Fatalf("%v: %q", ErrUnknownProtocol, name)
	}
	p, protocol := all[i], name
	u := p.newUnit(unitOpts{fast: true})
	l, err := u.connect()
	if err != nil {
		b.Fatal(err)
	}
	j, err := journal.Open(filepath.Join(dir, fmt.Sprintf("bench-%s-%d.db", protocol, time.Now().UnixNano())), journal.Options{KioskID: "K-BENCH", Currency: currency})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = j.Close() }()
	priv := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	reg := health.New("bench", nil)
	e, err := session.New(session.Config{Journal: j, Acceptor: l.drv, Denominations: p.denoms, Authorizer: openLimit{},
		Health: reg, WalletKeys: qrpay.Keys{"w1": priv.Public().(ed25519.PublicKey)},
		Limits: session.Limits{SessionMax: 1 << 50, OfflineSessionMax: 1, OfflineTotalMax: 1},
		Timing: session.Timing{AckWait: time.Millisecond, ResultDisplay: time.Millisecond}, Escrowless: p.escrowless,
		Logger: logger("engine")})
	if err != nil {
		b.Fatal(err)
	}
	reg.Listen(func(health.Condition) { e.HealthChanged() })

	// The note's journey ends when the unit reports itself at rest after the credit: by
	// then the credit is committed and acknowledged.
	h := &benchHandler{next: e.Handler(), done: make(chan struct{}, 1), ready: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	ectx, ecancel := context.WithCancel(context.Background())
	serveDone, drvDone, engDone := make(chan error, 1), make(chan error, 1), make(chan error, 1)
	if l.serve != nil {
		go func() { serveDone <- l.serve(ctx) }()
	} else {
		serveDone <- nil
	}
	go func() { drvDone <- l.drv.Run(ctx, h) }()
	go func() { engDone <- e.Run(ectx) }()
	defer func() {
		// The engine first, so its inhibit reaches the unit through the running driver.
		ecancel()
		waitStop(b, protocol+" engine", engDone)
		cancel()
		waitStop(b, protocol+" driver", drvDone)
		waitStop(b, protocol+" emulator", serveDone)
	}()

	wait := func(what string, cond func(session.View) bool) {
		wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer wcancel()
		for v := e.View(); !cond(v); {
			var ok bool
			if v, ok = e.WaitView(wctx, v.Seq); !ok {
				b.Fatalf("%s: %s: engine stuck in %s (%s)", protocol, what, v.State, v.Message)
			}
		}
	}
	select {
	case <-h.ready:
	case <-time.After(30 * time.Second):
		b.Fatalf("%s: the unit was never identified and at rest", protocol)
	}
	wait("idle", func(v session.View) bool { return v.State == session.Idle.String() })
	code := walletsim.Sign(priv, "w1", "bench", time.Now().Add(time.Hour), "benchnonce01")
	if err := e.Scan(code); err != nil {
		b.Fatal(err)
	}
	wait("accepting", func(v session.View) bool { return v.State == session.Accepting.String() })

	var v int64 = -1
	noteCode := 0
	for c, n := range p.denoms {
		if v < 0 || n.ValueMinor < v {
			v, noteCode = n.ValueMinor, c
		}
	}
	notes := 0
	b.ResetTimer()
	for b.Loop() {
		for u.Insert(noteCode) != nil {
			time.Sleep(benchPoll) // the unit is still finishing the previous note's report
		}
		select {
		case <-h.done:
		case <-time.After(10 * time.Second):
			b.Fatalf("%s: note %d never completed", protocol, notes+1)
		}
		notes++
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(notes), "ns/note")

	if err := e.Finish(); err != nil {
		b.Fatal(err)
	}
	wait("the result", func(v session.View) bool { return v.Result != nil })
	if _, err := j.Verify(); err != nil {
		b.Fatal(err)
	}
	c, err := j.Cassette()
	if err != nil {
		b.Fatal(err)
	}
	ob, err := j.Outbox()
	if err != nil {
		b.Fatal(err)
	}
	in, err := j.OpenIntents()
	if err != nil {
		b.Fatal(err)
	}
	if c.Count != int64(notes) || c.ValueMinor != v*int64(notes) || len(u.Stacked()) != notes || len(in) != 0 ||
		len(ob) != 1 || ob[0].AmountMinor != v*int64(notes) || ob[0].Outcome != wire.OutcomeComplete {
		b.Fatalf("%s: %d notes of %d: journal cassette %d / %d, emulator cassette %d notes, open intents %d, top-ups %+v",
			protocol, notes, v, c.Count, c.ValueMinor, len(u.Stacked()), len(in), ob)
	}
}

// waitStop waits, bounded, for a goroutine's result.
func waitStop(b *testing.B, what string, ch chan error) {
	select {
	case err := <-ch:
		if err != nil {
			b.Errorf("%s: %v", what, err)
		}
	case <-time.After(30 * time.Second):
		b.Errorf("%s did not stop", what)
	}
}

// openLimit authorizes every account for as much as the session limit allows.
type openLimit struct{}

func (openLimit) Authorize(ctx context.Context, account, nonce, qr string) (wire.AuthzResponse, error) {
	return wire.AuthzResponse{V: wire.Version, ReqID: nonce, Status: wire.AuthzOK, RemainingMinor: 1 << 50}, nil
}

// benchHandler passes everything to the engine and signals when the unit is ready (identified
// and at rest: a pulse driver doubts a train that starts as it starts) and the end of each
// note.
type benchHandler struct {
	next                   acceptor.Handler
	credited               atomic.Bool
	done                   chan struct{}
	ready                  chan struct{}
	identified, rest, once atomic.Bool
}

func (h *benchHandler) Escrow(ctx context.Context, n acceptor.Note) acceptor.Decision {
	return h.next.Escrow(ctx, n)
}

func (h *benchHandler) Credited(ctx context.Context, n acceptor.Note) error {
	err := h.next.Credited(ctx, n)
	if err == nil {
		h.credited.Store(true)
	}
	return err
}

func (h *benchHandler) Event(ctx context.Context, e acceptor.Event) {
	h.next.Event(ctx, e)
	h.observe(e)
}

// observe notes what the benchmark waits for in an event the engine took.
func (h *benchHandler) observe(e acceptor.Event) {
	atRest := e.Kind == acceptor.Idle || e.Kind == acceptor.Disabled
	if e.Kind == acceptor.Identified {
		h.identified.Store(true)
	}
	if atRest {
		h.rest.Store(true)
	}
	if h.identified.Load() && h.rest.Load() && !h.once.Swap(true) {
		close(h.ready)
	}
	if atRest && h.credited.Swap(false) {
		select {
		case h.done <- struct{}{}:
		default: // nobody waits: the benchmark loop is over
		}
	}
}

// PowerUp passes a power-up report to the engine, which journals it before the driver may
// reset the unit.
func (h *benchHandler) PowerUp(ctx context.Context, e acceptor.Event) error {
	err := h.next.(acceptor.PowerUpRecorder).PowerUp(ctx, e)
	if err == nil {
		h.observe(e)
	}
	return err
}

func (h *benchHandler) Pulse(ctx context.Context, train uint64, count int) error {
	return h.next.(acceptor.PulseRecorder).Pulse(ctx, train, count)
}

// PollCost runs the named serial driver against its emulator for d at the fast poll
// interval, with a handler that takes no decision, and returns the polls answered and the
// process CPU time they cost (user + system, from getrusage). The CPU includes the
// emulator's own work in the same process, so CPU/poll is an upper bound of the driver's
// cost; the share of one core at a production poll interval is that over the interval.
// Pulse units have no polls and are refused.
func PollCost(name string, d time.Duration) (polls uint64, cpu time.Duration, err error) {
	all := protocols()
	i := slices.IndexFunc(all, func(p *protocol) bool { return p.name == name })
	if i < 0 || all[i].escrowless {
		return 0, 0, fmt.Errorf("%w: %q", ErrUnknownProtocol, name)
	}
	u := all[i].newUnit(unitOpts{fast: true})
	l, err := u.connect()
	if err != nil {
		return 0, 0, err
	}
	if l.polls == nil || l.serve == nil {
		return 0, 0, fmt.Errorf("%w: %q is not a polled serial unit", ErrUnknownProtocol, name)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	serveDone := make(chan struct{})
	go func() { defer close(serveDone); _ = l.serve(ctx) }()
	runDone := make(chan error, 1)
	go func() { runDone <- l.drv.Run(ctx, idleHandler{}) }()
	count := l.polls
	// Let the start-up sequence finish, then measure steady polling.
	time.Sleep(200 * time.Millisecond) // warm-up of a measurement, not test timing
	// The process CPU clock also counts collecting what earlier work (a benchmark run just
	// before) left on the heap; collect it now so that it is not charged to polling.
	runtime.GC()
	p0, c0 := count(), cpuTime()
	time.Sleep(d)
	p1, c1 := count(), cpuTime()
	cancel()
	// The measurement is over; a driver that failed during it makes the figure worthless.
	rerr := <-runDone
	if l.cut != nil {
		l.cut()
	}
	<-serveDone
	if rerr != nil && !errors.Is(rerr, context.Canceled) {
		return 0, 0, fmt.Errorf("%s: driver stopped during the measurement: %w", name, rerr)
	}
	return p1 - p0, c1 - c0, nil
}

// idleHandler returns every note and journals nothing: PollCost measures polling only.
type idleHandler struct{}

func (idleHandler) Escrow(context.Context, acceptor.Note) acceptor.Decision { return acceptor.Return }
func (idleHandler) Credited(context.Context, acceptor.Note) error           { return nil }
func (idleHandler) Event(context.Context, acceptor.Event)                   {}
