package ssp_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/devices/acceptor/acceptortest"
	"github.com/kioskd/kioskd/devices/acceptor/ssp"
	"github.com/kioskd/kioskd/hw-sim/sspsim"
)

// The driver against the byte-level emulator over net.Pipe, inside a synctest bubble: every
// wait is on the fake clock, so the tests are fast and deterministic.

var cny = acceptor.Denominations{
	1: {ValueMinor: 100, Currency: "CNY"},
	2: {ValueMinor: 500, Currency: "CNY"},
	3: {ValueMinor: 1000, Currency: "CNY"},
	4: {ValueMinor: 2000, Currency: "CNY"},
}

const simKey = 0x0A1B2C3D4E5F6071 // a kiosk's own fixed key

// rig is a driver and an emulator joined by a net.Pipe.
type rig struct {
	t       testing.TB
	sim     *sspsim.Sim
	drv     *ssp.Driver
	h       *acceptortest.Recorder
	stopDrv context.CancelFunc
	stopSim context.CancelFunc
	runErr  chan error
	simErr  chan error
	host    net.Conn
}

// plainConfig is SSP without encryption; eSSPConfig is eSSP with the rig's fixed key.
func plainConfig() ssp.Config { return ssp.Config{Denominations: cny} }

func eSSPConfig() ssp.Config {
	return ssp.Config{Denominations: cny, Encrypt: true, FixedKey: simKey}
}

func newRig(t testing.TB, sim *sspsim.Sim, h *acceptortest.Recorder, cfg ssp.Config) *rig {
	host, unit := net.Pipe()
	drvCtx, stopDrv := context.WithCancel(context.Background())
	simCtx, stopSim := context.WithCancel(context.Background())
	r := &rig{t: t, sim: sim, h: h, stopDrv: stopDrv, stopSim: stopSim,
		runErr: make(chan error, 1), simErr: make(chan error, 1), host: host}
	r.drv = ssp.New(host, cfg)
	go func() { r.simErr <- sim.Serve(simCtx, unit) }()
	go func() { r.runErr <- r.drv.Run(drvCtx, h) }()
	return r
}

// stop ends the driver first, so its DISABLE on the way out reaches the emulator, then the
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

// ready waits for the configured unit and enables every channel.
func (r *rig) ready() {
	r.t.Helper()
	acceptortest.Eventually(r.t, "identified", func() bool { return r.h.Count(acceptor.Identified) > 0 })
	idle := r.h.Count(acceptor.Idle)
	if err := r.drv.Enable(context.Background(), []int{1, 2, 3, 4}); err != nil {
		r.t.Fatal(err)
	}
	acceptortest.Eventually(r.t, "idle", func() bool { return r.h.Count(acceptor.Idle) > idle })
}

func newSim(cfg sspsim.Config) *sspsim.Sim {
	if cfg.Denominations == nil {
		cfg.Denominations = cny
	}
	if cfg.FixedKey == 0 {
		cfg.FixedKey = simKey
	}
	return sspsim.New(cfg)
}

func TestEmulatorInsertEscrowStackCredit(t *testing.T) {
	for name, cfg := range map[string]ssp.Config{"ssp": plainConfig(), "essp": eSSPConfig()} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				sim := newSim(sspsim.Config{})
				h := &acceptortest.Recorder{}
				r := newRig(t, sim, h, cfg)
				r.ready()
				if err := sim.InsertNote(4); err != nil {
					t.Fatal(err)
				}
				acceptortest.Eventually(t, "stacked", func() bool { return h.Count(acceptor.Stacked) == 1 })
				acceptortest.Eventually(t, "idle", func() bool { return h.Count(acceptor.Idle) == 2 })
				counters, err := r.drv.Counters(context.Background())
				if err != nil || counters.Stacked != 1 {
					t.Fatalf("Counters = %+v, %v", counters, err)
				}
				r.stop()
				twenty := acceptor.Note{Code: 4, ValueMinor: 2000, Currency: "CNY"}
				escrows, credits := h.EscrowCalls(), h.CreditCalls()
				if len(escrows) != 1 || escrows[0] != twenty || len(credits) != 1 || credits[0] != twenty {
					t.Fatalf("escrows %v credits %v", escrows, credits)
				}
				c := sim.Cassette()
				if len(c) != 1 || !c[0].Reported || c[0].ValueMinor != 2000 {
					t.Fatalf("emulator cassette %+v", c)
				}
				// eSSP takes POLL WITH ACK: the credit was acknowledged after Credited.
				if c[0].Acked != cfg.Encrypt {
					t.Fatalf("acked %v with encryption %v", c[0].Acked, cfg.Encrypt)
				}
				if sim.State().Enabled {
					t.Fatal("Run did not disable the unit on its way out")
				}
				info := r.drv.Info()
				if info.Serial != "1873452" || len(info.Denominations) != 4 || (info.Protocol == "eSSP") != cfg.Encrypt {
					t.Fatalf("Info %+v", info)
				}
				if h.Count(acceptor.ProtocolError) != 0 {
					t.Fatalf("protocol errors: %v", h.Last(acceptor.ProtocolError))
				}
				if st := r.drv.Stats(); (st.KeyExchanges == 1) != cfg.Encrypt || st.CryptoErrors != 0 {
					t.Fatalf("stats %+v", st)
				}
			})
		})
	}
}

func TestEmulatorReturnAndRejects(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(sspsim.Config{})
		h := &acceptortest.Recorder{Decide: func(acceptor.Note, int) acceptor.Decision { return acceptor.Return }}
		r := newRig(t, sim, h, plainConfig())
		r.ready()
		sim.InsertNote(1)
		acceptortest.Eventually(t, "returned", func() bool { return h.Count(acceptor.Returned) == 1 })
		n := 0
		for reason := byte(0x01); reason <= 0x1F; reason++ {
			if reason == ssp.RejectByHost {
				continue
			}
			n++
			sim.ForceReject(reason)
			acceptortest.Eventually(t, "idle for the next note", func() bool { return sim.InsertNote(2) == nil })
			acceptortest.Eventually(t, "rejected", func() bool { return h.Count(acceptor.Rejected) == n })
			if e := h.Last(acceptor.Rejected); e.Code != int(reason) || e.Reason != ssp.RejectReason(reason) {
				t.Fatalf("reject %#x reported as %v", reason, e)
			}
		}
		r.stop()
		if credits := h.CreditCalls(); len(credits) != 0 || len(sim.Cassette()) != 0 {
			t.Fatalf("money moved: credits %v cassette %v", credits, sim.Cassette())
		}
		if c := sim.Counters(); c.Rejected != uint32(n+1) {
			t.Fatalf("counters %+v", c)
		}
	})
}

func TestEmulatorHoldThenStack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(sspsim.Config{})
		var holdUntil time.Time
		h := &acceptortest.Recorder{}
		h.Decide = func(acceptor.Note, int) acceptor.Decision {
			if holdUntil.IsZero() {
				holdUntil = time.Now().Add(25 * time.Second) // far past the unit's 10 s
			}
			if time.Now().Before(holdUntil) {
				return acceptor.Hold
			}
			return acceptor.Stack
		}
		r := newRig(t, sim, h, plainConfig())
		r.ready()
		sim.InsertNote(3)
		time.Sleep(25 * time.Second)
		acceptortest.Eventually(t, "credited", func() bool { c := h.CreditCalls(); return len(c) == 1 })
		r.stop()
		if escrows := h.EscrowCalls(); len(escrows) < 100 {
			t.Fatalf("Escrow asked %d times while holding", len(escrows))
		}
		if h.Count(acceptor.Rejected) != 0 {
			t.Fatalf("the unit timed the held note out: %v", h.Last(acceptor.Rejected))
		}
	})
}

func TestEmulatorEscrowTimeoutWhenTheHostIsSilent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(sspsim.Config{})
		h := &acceptortest.Recorder{}
		block := make(chan struct{})
		h.Decide = func(acceptor.Note, int) acceptor.Decision {
			<-block // a host stuck in its escrow decision for 12 s
			return acceptor.Stack
		}
		r := newRig(t, sim, h, plainConfig())
		r.ready()
		sim.InsertNote(2)
		acceptortest.Eventually(t, "escrow", func() bool { e := h.EscrowCalls(); return len(e) == 1 })
		time.Sleep(12 * time.Second)
		close(block)
		acceptortest.Eventually(t, "rejected", func() bool { return h.Count(acceptor.Rejected) == 1 })
		r.stop()
		if e := h.Last(acceptor.Rejected); e.Reason != acceptor.RejectTimeout {
			t.Fatalf("rejection %v", e)
		}
		if c := h.CreditCalls(); len(c) != 0 || len(sim.Cassette()) != 0 {
			t.Fatal("a timed-out note was credited")
		}
	})
}

func TestEmulatorFaultsAndCassette(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(sspsim.Config{CassetteCapacity: 1})
		h := &acceptortest.Recorder{}
		r := newRig(t, sim, h, plainConfig())
		r.ready()
		sim.InsertNote(2)
		acceptortest.Eventually(t, "cassette full", func() bool { return h.Count(acceptor.CassetteFull) == 1 })
		if err := sim.PullCassette(); err != nil {
			t.Fatal(err)
		}
		acceptortest.Eventually(t, "removed", func() bool { return h.Count(acceptor.CassetteRemoved) == 1 })
		sim.ReplaceCassette()
		acceptortest.Eventually(t, "replaced", func() bool { return h.Count(acceptor.CassetteReplaced) == 1 })
		acceptortest.Eventually(t, "idle", func() bool { return h.Last(acceptor.Idle).Kind == acceptor.Idle && h.Count(acceptor.Idle) >= 2 })
		for _, f := range []struct {
			inject func()
			clear  func()
			kind   acceptor.Kind
		}{
			{func() { sim.Jam(false) }, sim.ClearJam, acceptor.AcceptorJam},
			{func() { sim.OpenNotePath(true) }, func() { sim.OpenNotePath(false) }, acceptor.Failure},
			{func() { sim.InsertNote(1); sim.Cheat() }, func() {}, acceptor.Fraud},
		} {
			before := h.Count(acceptor.Idle)
			f.inject()
			acceptortest.Eventually(t, f.kind.String(), func() bool { return h.Count(f.kind) == 1 })
			f.clear()
			acceptortest.Eventually(t, "recovered from "+f.kind.String(), func() bool { return h.Count(acceptor.Idle) > before })
		}
		r.stop()
		if e := h.Last(acceptor.Failure); e.Code != int(ssp.EvNotePathOpen) {
			t.Fatalf("failure event %v", e)
		}
		if e := h.Last(acceptor.Rejected); e.Reason != acceptor.RejectCounterfeit {
			t.Fatalf("cheat rejection %v", e)
		}
	})
}

func TestEmulatorPowerCycleWhileStacking(t *testing.T) {
	for name, cfg := range map[string]ssp.Config{"ssp": plainConfig(), "essp": eSSPConfig()} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				sim := newSim(sspsim.Config{})
				h := &acceptortest.Recorder{}
				h.Decide = func(acceptor.Note, int) acceptor.Decision {
					// The power goes right after the note was taken from escrow.
					go func() {
						acceptortest.Eventually(t, "stacking", func() bool { return sim.State().Mode == "stacking" })
						sim.PowerCycle(sspsim.Auto)
					}()
					return acceptor.Stack
				}
				r := newRig(t, sim, h, cfg)
				r.ready()
				sim.InsertNote(3)
				acceptortest.Eventually(t, "power-up report", func() bool { return h.Count(acceptor.PowerUpNoteInStacker) == 1 })
				acceptortest.Eventually(t, "reconfigured", func() bool { return sim.State().Protocol == 7 && len(sim.State().EnabledChannels) == 4 })
				r.stop()
				e := h.Last(acceptor.PowerUpNoteInStacker)
				if e.Note.Code != 3 || e.Note.ValueMinor != 1000 {
					t.Fatalf("power-up event %v does not name the note", e)
				}
				if credits := h.CreditCalls(); len(credits) != 0 {
					t.Fatalf("credited without NOTE CREDIT: %v", credits)
				}
				if h.Count(acceptor.PowerUp) != 1 { // the emulator's first start only
					t.Fatal("a plain PowerUp was reported for the power cycle too")
				}
				c := sim.Cassette()
				if len(c) != 1 || c[0].Reported || c[0].Via != "power_up_recovery" {
					t.Fatalf("emulator cassette %+v: the note is in the cashbox, uncredited", c)
				}
			})
		})
	}
}

func TestEmulatorHostRestartWithUnacknowledgedCredit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(sspsim.Config{})
		// The first host process cannot journal: the credit stays unacknowledged.
		h1 := &acceptortest.Recorder{Credit: func(acceptor.Note, int) error { return errors.New("disk full") }}
		r1 := newRig(t, sim, h1, eSSPConfig())
		r1.ready()
		sim.InsertNote(2)
		acceptortest.Eventually(t, "credit attempts", func() bool { c := h1.CreditCalls(); return len(c) >= 3 })
		r1.stop()
		if st := sim.State(); !st.AckPending {
			t.Fatalf("emulator %+v after the host went away", st)
		}
		// The new process negotiates new keys; the unit still repeats the credit.
		h2 := &acceptortest.Recorder{}
		r2 := newRig(t, sim, h2, eSSPConfig())
		acceptortest.Eventually(t, "credited", func() bool { c := h2.CreditCalls(); return len(c) == 1 })
		acceptortest.Eventually(t, "configured", func() bool { return h2.Count(acceptor.Identified) == 1 })
		r2.stop()
		five := acceptor.Note{Code: 2, ValueMinor: 500, Currency: "CNY"}
		if c := h2.CreditCalls(); c[0] != five {
			t.Fatalf("credit after restart %v, want %v (SSP names the channel)", c[0], five)
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

func TestEmulatorHostRestartWithNoteInEscrow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(sspsim.Config{})
		block := make(chan struct{})
		h1 := &acceptortest.Recorder{Decide: func(acceptor.Note, int) acceptor.Decision { <-block; return acceptor.Stack }}
		r1 := newRig(t, sim, h1, plainConfig())
		r1.ready()
		sim.InsertNote(3)
		acceptortest.Eventually(t, "escrow", func() bool { e := h1.EscrowCalls(); return len(e) == 1 })
		// The process dies while deciding: the port goes away under it and its decision
		// never reaches the unit.
		r1.host.Close()
		if err := <-r1.simErr; err != nil {
			t.Fatal(err)
		}
		close(block)
		if err := <-r1.runErr; err == nil {
			t.Fatal("Run survived its port")
		}
		r1.stopDrv()
		r1.stopSim()
		if st := sim.State(); st.Mode != "escrow" {
			t.Fatalf("emulator %+v", st)
		}
		h2 := &acceptortest.Recorder{Decide: func(acceptor.Note, int) acceptor.Decision { return acceptor.Return }}
		r2 := newRig(t, sim, h2, plainConfig())
		acceptortest.Eventually(t, "returned", func() bool { return h2.Count(acceptor.Returned) == 1 })
		r2.stop()
		if e := h2.EscrowCalls(); len(e) != 1 || e[0] != (acceptor.Note{}) {
			t.Fatalf("escrow after restart %v", e)
		}
		if len(sim.Cassette()) != 0 {
			t.Fatalf("a note nobody decided on was stacked: %+v", sim.Cassette())
		}
	})
}

func TestEmulatorLinkFaults(t *testing.T) {
	for name, cfg := range map[string]ssp.Config{"ssp": plainConfig(), "essp": eSSPConfig()} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				sim := newSim(sspsim.Config{})
				h := &acceptortest.Recorder{}
				r := newRig(t, sim, h, cfg)
				r.ready()
				for _, f := range []sspsim.Fault{
					{Kind: sspsim.FaultBadCRC}, {Kind: sspsim.FaultGarbage},
					{Kind: sspsim.FaultSplit, Delay: 20 * time.Millisecond}, {Kind: sspsim.FaultNoReply},
					{Kind: sspsim.FaultSlow, Delay: 100 * time.Millisecond}, {Kind: sspsim.FaultNoReply},
				} {
					sim.InjectFault(f)
				}
				sim.InsertNote(1)
				acceptortest.Eventually(t, "stacked", func() bool { return h.Count(acceptor.Stacked) == 1 })
				// Four silent replies in a row: the driver gives up on that packet and says so.
				for range 4 {
					sim.InjectFault(sspsim.Fault{Kind: sspsim.FaultNoReply})
				}
				acceptortest.Eventually(t, "comm lost", func() bool { return h.Count(acceptor.CommLost) == 1 })
				acceptortest.Eventually(t, "comm restored", func() bool { return h.Count(acceptor.CommRestored) == 1 })
				if cfg.Encrypt {
					sim.InjectFault(sspsim.Fault{Kind: sspsim.FaultBadCount})
					acceptortest.Eventually(t, "re-keyed", func() bool { return r.drv.Stats().KeyExchanges == 2 })
				}
				idle := h.Count(acceptor.Idle)
				r.drv.Enable(context.Background(), []int{1, 2, 3, 4})
				acceptortest.Eventually(t, "idle", func() bool { return h.Count(acceptor.Idle) > idle || sim.State().Enabled })
				acceptortest.Eventually(t, "accepts", func() bool { return sim.InsertNote(2) == nil })
				acceptortest.Eventually(t, "second note", func() bool { return h.Count(acceptor.Stacked) == 2 })
				r.stop()
				credits := h.CreditCalls()
				if len(credits) != 2 || len(sim.Cassette()) != 2 {
					t.Fatalf("credits %v cassette %+v", credits, sim.Cassette())
				}
				if st := r.drv.Stats(); st.BadFrames == 0 || st.GarbageBytes == 0 || st.Timeouts < 6 {
					t.Fatalf("stats %+v", st)
				}
				if h.Count(acceptor.Failure) != 0 {
					t.Fatalf("a fault was taken for a swap: %v", h.Last(acceptor.Failure))
				}
			})
		})
	}
}

func TestEmulatorSwapUnit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(sspsim.Config{})
		h := &acceptortest.Recorder{}
		r := newRig(t, sim, h, eSSPConfig())
		r.ready()
		if err := sim.SwapUnit(0xABCDEF); err != nil {
			t.Fatal(err)
		}
		acceptortest.Eventually(t, "swap reported", func() bool { return h.Count(acceptor.Failure) == 1 })
		if e := h.Last(acceptor.Failure); e.Code != ssp.CodeUnitSwapped || e.Detail != "unit swapped: serial 1873452 -> 11259375" {
			t.Fatalf("failure %v", e)
		}
		if err := r.drv.Enable(context.Background(), []int{1}); !errors.Is(err, ssp.ErrUnitSwapped) {
			t.Fatalf("Enable after a swap: %v", err)
		}
		if sim.State().Enabled {
			t.Fatal("the swapped unit was enabled")
		}
		time.Sleep(time.Second)
		events := h.Events()
		for i := len(events) - 1; events[i].Kind != acceptor.Failure; i-- {
			if k := events[i].Kind; k == acceptor.Idle || k == acceptor.Disabled {
				t.Errorf("%v reported while the swap stands: the caller would clear its alarm", k)
			}
		}
		if err := r.drv.ConfirmSwap(context.Background()); err != nil {
			t.Fatal(err)
		}
		acceptortest.Eventually(t, "identified again", func() bool { return h.Count(acceptor.Identified) == 2 })
		if err := r.drv.Enable(context.Background(), []int{1}); err != nil {
			t.Fatalf("Enable after ConfirmSwap: %v", err)
		}
		if err := r.drv.ConfirmSwap(context.Background()); !errors.Is(err, ssp.ErrNoSwap) {
			t.Fatalf("second ConfirmSwap: %v", err)
		}
		r.stop()
		if r.drv.Info().Serial != "11259375" {
			t.Fatalf("Info %+v", r.drv.Info())
		}
	})
}

// TestRunCancellationDisablesAndLeavesNothing: cancelling Run disables an enabled unit,
// closes the port and stops the reader; the synctest bubble fails the test if any goroutine
// is left.
func TestRunCancellationDisablesAndLeavesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(sspsim.Config{})
		h := &acceptortest.Recorder{}
		r := newRig(t, sim, h, eSSPConfig())
		r.ready()
		if !sim.State().Enabled {
			t.Fatal("unit not enabled by Enable")
		}
		r.stop()
		if sim.State().Enabled {
			t.Fatal("Run ended without disabling the unit")
		}
		if err := r.drv.Enable(context.Background(), []int{1}); !errors.Is(err, acceptor.ErrNotRunning) {
			t.Fatalf("Enable after Run: %v", err)
		}
	})
}

// BenchmarkPollCycle measures one poll round trip with the driver's handling, against the
// emulator over a net.Pipe, plain and encrypted.
func BenchmarkPollCycle(b *testing.B) {
	for name, cfg := range map[string]ssp.Config{"ssp": plainConfig(), "essp": eSSPConfig()} {
		b.Run(name, func(b *testing.B) {
			sim := newSim(sspsim.Config{})
			host, unit := net.Pipe()
			ctx, cancel := context.WithCancel(context.Background())
			simDone := make(chan error, 1)
			go func() { simDone <- sim.Serve(ctx, unit) }()
			cfg.PollInterval = time.Nanosecond
			d := ssp.New(host, cfg)
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
		})
	}
}

func TestEmulatorWithoutESSP(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(sspsim.Config{Encryption: sspsim.EncryptionUnsupported})
		h := &acceptortest.Recorder{}
		r := newRig(t, sim, h, eSSPConfig())
		acceptortest.Eventually(t, "reported", func() bool { return h.Count(acceptor.ProtocolError) == 1 })
		time.Sleep(5 * time.Second)
		r.stop()
		if e := h.Last(acceptor.ProtocolError); e.Code != int(ssp.RespUnknownCommand) || h.Count(acceptor.ProtocolError) != 1 {
			t.Fatalf("protocol errors: %d, last %v", h.Count(acceptor.ProtocolError), e)
		}
		if h.Count(acceptor.Identified) != 0 || sim.State().Enabled {
			t.Fatal("a unit that cannot do eSSP was brought up in clear")
		}
	})
}
