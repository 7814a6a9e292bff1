package id003_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/devices/acceptor/acceptortest"
	"github.com/kioskd/kioskd/devices/acceptor/id003"
	"github.com/kioskd/kioskd/hw-sim/id003sim"
)

// The driver against the byte-level emulator over net.Pipe, inside a synctest bubble: every
// wait is on the fake clock, so the tests are fast and deterministic.

var cny = acceptor.Denominations{
	0x61: {ValueMinor: 100, Currency: "CNY"},
	0x62: {ValueMinor: 500, Currency: "CNY"},
	0x63: {ValueMinor: 1000, Currency: "CNY"},
	0x64: {ValueMinor: 2000, Currency: "CNY"},
}

// rig is a driver and an emulator joined by a net.Pipe.
type rig struct {
	t       testing.TB
	sim     *id003sim.Sim
	drv     *id003.Driver
	h       *acceptortest.Recorder
	stopDrv context.CancelFunc
	stopSim context.CancelFunc
	runErr  chan error
	simErr  chan error
}

func newRig(t testing.TB, sim *id003sim.Sim, h *acceptortest.Recorder) *rig {
	host, unit := net.Pipe()
	drvCtx, stopDrv := context.WithCancel(context.Background())
	simCtx, stopSim := context.WithCancel(context.Background())
	r := &rig{t: t, sim: sim, h: h, stopDrv: stopDrv, stopSim: stopSim,
		runErr: make(chan error, 1), simErr: make(chan error, 1)}
	r.drv = id003.New(host, id003.Config{Denominations: cny})
	go func() { r.simErr <- sim.Serve(simCtx, unit) }()
	go func() { r.runErr <- r.drv.Run(drvCtx, h) }()
	return r
}

// stop ends the driver first, so its inhibit on the way out reaches the emulator, then the
// emulator, and checks both finished cleanly.
func (r *rig) stop() {
	r.t.Helper()
	r.stopDrv()
	if err := <-r.runErr; err != nil {
		r.t.Fatalf("Run: %v", err)
	}
	r.stopSim()
	if err := <-r.simErr; err != nil {
		r.t.Fatalf("Serve: %v", err)
	}
}

// ready waits for the configured unit and enables every denomination.
func (r *rig) ready() {
	r.t.Helper()
	acceptortest.Eventually(r.t, "identified", func() bool { return r.h.Count(acceptor.Identified) > 0 })
	if err := r.drv.Enable(context.Background(), []int{0x61, 0x62, 0x63, 0x64}); err != nil {
		r.t.Fatal(err)
	}
	idle := r.h.Count(acceptor.Idle)
	acceptortest.Eventually(r.t, "idle", func() bool { return r.h.Count(acceptor.Idle) > idle })
}

func TestEmulatorInsertEscrowStackCredit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := id003sim.New(id003sim.Config{Denominations: cny})
		h := &acceptortest.Recorder{}
		r := newRig(t, sim, h)
		r.ready()
		if err := sim.InsertNote(0x64); err != nil {
			t.Fatal(err)
		}
		acceptortest.Eventually(t, "stacked", func() bool { return h.Count(acceptor.Stacked) == 1 })
		acceptortest.Eventually(t, "idle", func() bool { return h.Count(acceptor.Idle) == 2 })
		r.stop()
		twenty := acceptor.Note{Code: 0x64, ValueMinor: 2000, Currency: "CNY"}
		escrows, credits := h.EscrowCalls(), h.CreditCalls()
		if len(escrows) != 1 || escrows[0] != twenty || len(credits) != 1 || credits[0] != twenty {
			t.Fatalf("escrows %v credits %v", escrows, credits)
		}
		c := sim.Cassette()
		if len(c) != 1 || !c[0].Acked || c[0].ValueMinor != 2000 {
			t.Fatalf("emulator cassette %+v", c)
		}
		if !sim.State().Inhibited {
			t.Fatal("Run did not inhibit the unit on its way out")
		}
		if info := r.drv.Info(); info.Model == "" || len(info.Denominations) != 4 {
			t.Fatalf("Info %+v", info)
		}
		if h.Count(acceptor.ProtocolError) != 0 {
			t.Fatalf("protocol errors: %v", h.Last(acceptor.ProtocolError))
		}
	})
}

func TestEmulatorReturnAndRejects(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := id003sim.New(id003sim.Config{Denominations: cny})
		h := &acceptortest.Recorder{Decide: func(acceptor.Note, int) acceptor.Decision { return acceptor.Return }}
		r := newRig(t, sim, h)
		r.ready()
		sim.InsertNote(0x61)
		acceptortest.Eventually(t, "returned", func() bool { return h.Count(acceptor.Returned) == 1 })
		for reason := byte(0x71); reason <= 0x7F; reason++ {
			sim.ForceReject(reason)
			acceptortest.Eventually(t, "idle for the next note", func() bool { return sim.InsertNote(0x62) == nil })
			n := int(reason-0x71) + 1
			acceptortest.Eventually(t, "rejected", func() bool { return h.Count(acceptor.Rejected) == n })
			if e := h.Last(acceptor.Rejected); e.Code != int(reason) || e.Reason != id003.RejectReason(reason) {
				t.Fatalf("reject %#x reported as %v", reason, e)
			}
		}
		r.stop()
		if credits := h.CreditCalls(); len(credits) != 0 || len(sim.Cassette()) != 0 {
			t.Fatalf("money moved: credits %v cassette %v", credits, sim.Cassette())
		}
	})
}

func TestEmulatorEscrowTimeoutWhileHolding(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := id003sim.New(id003sim.Config{Denominations: cny, EscrowTimeout: 3 * time.Second})
		var holdUntil time.Time
		h := &acceptortest.Recorder{}
		h.Decide = func(acceptor.Note, int) acceptor.Decision {
			if holdUntil.IsZero() {
				holdUntil = time.Now().Add(2 * time.Second)
			}
			if time.Now().Before(holdUntil) {
				return acceptor.Hold // HOLD restarts the unit's escrow timeout
			}
			return acceptor.Stack
		}
		r := newRig(t, sim, h)
		r.ready()
		sim.InsertNote(0x63)
		acceptortest.Eventually(t, "credited", func() bool { c := h.CreditCalls(); return len(c) == 1 })
		acceptortest.Eventually(t, "stacked", func() bool { return h.Count(acceptor.Stacked) == 1 })
		r.stop()
		if escrows := h.EscrowCalls(); len(escrows) < 5 {
			t.Fatalf("Escrow asked %d times while holding", len(escrows))
		}
		if h.Count(acceptor.Holding) != 1 {
			t.Fatalf("%d Holding events, want one", h.Count(acceptor.Holding))
		}
	})
}

func TestEmulatorFaultsAndCassette(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := id003sim.New(id003sim.Config{Denominations: cny, CassetteCapacity: 1})
		h := &acceptortest.Recorder{}
		r := newRig(t, sim, h)
		r.ready()
		sim.InsertNote(0x62)
		acceptortest.Eventually(t, "cassette full", func() bool { return h.Count(acceptor.CassetteFull) == 1 })
		if err := sim.PullCassette(); err != nil {
			t.Fatal(err)
		}
		acceptortest.Eventually(t, "removed", func() bool { return h.Count(acceptor.CassetteRemoved) == 1 })
		sim.ReplaceCassette()
		acceptortest.Eventually(t, "replaced", func() bool { return h.Count(acceptor.CassetteReplaced) == 1 })
		for _, f := range []struct {
			inject func()
			clear  func()
			kind   acceptor.Kind
		}{
			{func() { sim.Jam(false) }, sim.ClearJam, acceptor.AcceptorJam},
			{func() { sim.Jam(true) }, sim.ClearJam, acceptor.StackerJam},
			{func() { sim.Pause(true) }, func() { sim.Pause(false) }, acceptor.Paused},
			{sim.Cheat, func() { r.drv.Reset(context.Background()) }, acceptor.Fraud},
			{func() { sim.Fail(0xA5) }, func() { r.drv.Reset(context.Background()) }, acceptor.Failure},
		} {
			f.inject()
			acceptortest.Eventually(t, f.kind.String(), func() bool { return h.Count(f.kind) == 1 })
			f.clear()
			acceptortest.Eventually(t, "recovered from "+f.kind.String(), func() bool {
				s := sim.State().Status
				return s == "idling" || s == "disabled"
			})
		}
		r.stop()
		if e := h.Last(acceptor.Failure); e.Code != 0xA5 {
			t.Fatalf("failure event %v", e)
		}
	})
}

func TestEmulatorPowerCycleWhileStacking(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := id003sim.New(id003sim.Config{Denominations: cny})
		h := &acceptortest.Recorder{}
		h.Decide = func(acceptor.Note, int) acceptor.Decision {
			// The power goes right after the host decided to stack.
			go func() {
				acceptortest.Eventually(t, "stacking", func() bool { return sim.State().Status == "stacking" })
				sim.PowerCycle(id003sim.Auto)
			}()
			return acceptor.Stack
		}
		r := newRig(t, sim, h)
		r.ready()
		sim.InsertNote(0x63)
		acceptortest.Eventually(t, "power-up report", func() bool { return h.Count(acceptor.PowerUpNoteInStacker) == 1 })
		acceptortest.Eventually(t, "reconfigured", func() bool { return sim.State().Status == "disabled" })
		r.stop()
		e := h.Last(acceptor.PowerUpNoteInStacker)
		if e.Note.Code != 0x63 || e.Note.ValueMinor != 1000 {
			t.Fatalf("power-up event %v does not name the note being stacked", e)
		}
		if credits := h.CreditCalls(); len(credits) != 0 {
			t.Fatalf("credited without VEND VALID: %v", credits)
		}
		c := sim.Cassette()
		if len(c) != 1 || c[0].Acked || c[0].Via != "power_up_recovery" {
			t.Fatalf("emulator cassette %+v: the note is in the cassette, uncredited", c)
		}
	})
}

func TestEmulatorHostRestartDuringVendValid(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := id003sim.New(id003sim.Config{Denominations: cny})
		// The first host process cannot journal: VEND VALID stays unacknowledged.
		h1 := &acceptortest.Recorder{Credit: func(acceptor.Note, int) error { return errors.New("disk full") }}
		r1 := newRig(t, sim, h1)
		r1.ready()
		sim.InsertNote(0x62)
		acceptortest.Eventually(t, "credit attempts", func() bool { c := h1.CreditCalls(); return len(c) >= 3 })
		r1.stop()
		if st := sim.State(); st.Status != "vend_valid" {
			t.Fatalf("emulator %s after the host went away", st.Status)
		}
		// The new process finds the unit in VEND VALID and credits it, denomination unknown.
		h2 := &acceptortest.Recorder{}
		r2 := newRig(t, sim, h2)
		acceptortest.Eventually(t, "credited", func() bool { c := h2.CreditCalls(); return len(c) == 1 })
		acceptortest.Eventually(t, "configured", func() bool { return h2.Count(acceptor.Identified) == 1 })
		r2.stop()
		if c := h2.CreditCalls(); c[0] != (acceptor.Note{}) {
			t.Fatalf("credit after restart %v, want Note{}", c[0])
		}
		if escrows := h2.EscrowCalls(); len(escrows) != 0 {
			t.Fatalf("escrow asked after restart: %v", escrows)
		}
		c := sim.Cassette()
		if len(c) != 1 || !c[0].Acked {
			t.Fatalf("emulator cassette %+v", c)
		}
	})
}

func TestEmulatorLinkFaults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := id003sim.New(id003sim.Config{Denominations: cny})
		h := &acceptortest.Recorder{}
		r := newRig(t, sim, h)
		r.ready()
		for _, f := range []id003sim.Fault{
			{Kind: id003sim.FaultBadCRC}, {Kind: id003sim.FaultGarbage},
			{Kind: id003sim.FaultSplit, Delay: 20 * time.Millisecond}, {Kind: id003sim.FaultNoReply},
			{Kind: id003sim.FaultSlow, Delay: 100 * time.Millisecond},
		} {
			sim.InjectFault(f)
		}
		sim.InsertNote(0x61)
		acceptortest.Eventually(t, "stacked", func() bool { return h.Count(acceptor.Stacked) == 1 })
		// Four silent replies in a row: the driver gives up on that poll and says so.
		for range 4 {
			sim.InjectFault(id003sim.Fault{Kind: id003sim.FaultNoReply})
		}
		acceptortest.Eventually(t, "comm lost", func() bool { return h.Count(acceptor.CommLost) == 1 })
		acceptortest.Eventually(t, "comm restored", func() bool { return h.Count(acceptor.CommRestored) == 1 })
		sim.InsertNote(0x62)
		acceptortest.Eventually(t, "second note", func() bool { return h.Count(acceptor.Stacked) == 2 })
		r.stop()
		credits := h.CreditCalls()
		if len(credits) != 2 || len(sim.Cassette()) != 2 {
			t.Fatalf("credits %v cassette %+v", credits, sim.Cassette())
		}
		for _, n := range sim.Cassette() {
			if !n.Acked {
				t.Fatalf("cassette %+v", sim.Cassette())
			}
		}
		if st := r.drv.Stats(); st.BadFrames == 0 || st.GarbageBytes == 0 || st.Timeouts < 5 {
			t.Fatalf("stats %+v", st)
		}
	})
}

// BenchmarkPollCycle measures one STATUS REQUEST round trip with the driver's handling,
// against the emulator over a net.Pipe.
func BenchmarkPollCycle(b *testing.B) {
	sim := id003sim.New(id003sim.Config{Denominations: cny})
	host, unit := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	simDone := make(chan error, 1)
	go func() { simDone <- sim.Serve(ctx, unit) }()
	d := id003.New(host, id003.Config{Denominations: cny, PollInterval: time.Nanosecond})
	runDone := make(chan error, 1)
	go func() { runDone <- d.Run(ctx, &acceptortest.Recorder{}) }()
	for d.Stats().Polls < 10 { // past the start-up sequence
		time.Sleep(time.Millisecond)
	}
	b.ResetTimer()
	start := d.Stats().Polls
	for d.Stats().Polls-start < uint64(b.N) {
		time.Sleep(50 * time.Microsecond)
	}
	b.StopTimer()
	cancel()
	<-runDone
	<-simDone
}

// TestRunCancellationInhibitsAndLeavesNothing: cancelling Run inhibits an enabled unit, closes
// the port and stops the reader; the synctest bubble fails the test if any goroutine is left.
func TestRunCancellationInhibitsAndLeavesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := id003sim.New(id003sim.Config{Denominations: cny})
		h := &acceptortest.Recorder{}
		r := newRig(t, sim, h)
		r.ready()
		if sim.State().Inhibited {
			t.Fatal("unit not enabled by Enable")
		}
		r.stop()
		if !sim.State().Inhibited {
			t.Fatal("Run ended without inhibiting the unit")
		}
		if err := r.drv.Enable(context.Background(), []int{0x61}); !errors.Is(err, acceptor.ErrNotRunning) {
			t.Fatalf("Enable after Run: %v", err)
		}
	})
}
