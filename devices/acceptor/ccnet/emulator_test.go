package ccnet_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/devices/acceptor/acceptortest"
	"github.com/kioskd/kioskd/devices/acceptor/ccnet"
	"github.com/kioskd/kioskd/hw-sim/ccnetsim"
)

// The driver against the byte-level emulator over net.Pipe, inside a synctest bubble: every
// wait is on the fake clock, so the tests are fast and deterministic.

var rub = acceptor.Denominations{
	2: {ValueMinor: 1000, Currency: "RUB"},
	3: {ValueMinor: 5000, Currency: "RUB"},
	4: {ValueMinor: 10000, Currency: "RUB"},
	5: {ValueMinor: 50000, Currency: "RUB"},
}

var allTypes = []int{2, 3, 4, 5}

// rig is a driver and an emulator joined by a net.Pipe.
type rig struct {
	t       testing.TB
	sim     *ccnetsim.Sim
	drv     *ccnet.Driver
	h       *acceptortest.Recorder
	stopDrv context.CancelFunc
	stopSim context.CancelFunc
	runErr  chan error
	simErr  chan error
}

func newRig(t testing.TB, sim *ccnetsim.Sim, h *acceptortest.Recorder) *rig {
	host, unit := net.Pipe()
	drvCtx, stopDrv := context.WithCancel(context.Background())
	simCtx, stopSim := context.WithCancel(context.Background())
	r := &rig{t: t, sim: sim, h: h, stopDrv: stopDrv, stopSim: stopSim,
		runErr: make(chan error, 1), simErr: make(chan error, 1)}
	r.drv = ccnet.New(host, ccnet.Config{Denominations: rub})
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
	if err := r.drv.Enable(context.Background(), allTypes); err != nil {
		r.t.Fatal(err)
	}
	idle := r.h.Count(acceptor.Idle)
	acceptortest.Eventually(r.t, "idle", func() bool { return r.h.Count(acceptor.Idle) > idle })
}

func TestEmulatorInsertEscrowStackCredit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := ccnetsim.New(ccnetsim.Config{Denominations: rub, AssetNumber: [7]byte{0, 0, 0, 0, 0, 0x12, 0x34}})
		h := &acceptortest.Recorder{}
		r := newRig(t, sim, h)
		r.ready()
		if got := sim.State(); len(got.EscrowTypes) != ccnet.NumBillTypes || len(got.EnabledTypes) != 4 {
			t.Fatalf("unit settings %+v: every type must stop in escrow", got)
		}
		if err := sim.InsertNote(5); err != nil {
			t.Fatal(err)
		}
		acceptortest.Eventually(t, "stacked", func() bool { return h.Count(acceptor.Stacked) == 1 })
		acceptortest.Eventually(t, "idle", func() bool { return h.Count(acceptor.Idle) == 2 })
		r.stop()
		fiveHundred := acceptor.Note{Code: 5, ValueMinor: 50000, Currency: "RUB"}
		escrows, credits := h.EscrowCalls(), h.CreditCalls()
		if len(escrows) != 1 || escrows[0] != fiveHundred || len(credits) != 1 || credits[0] != fiveHundred {
			t.Fatalf("escrows %v credits %v", escrows, credits)
		}
		c := sim.Cassette()
		if len(c) != 1 || !c[0].Acked || c[0].ValueMinor != 50000 {
			t.Fatalf("emulator cassette %+v", c)
		}
		if !sim.State().Inhibited {
			t.Fatal("Run did not inhibit the unit on its way out")
		}
		info := r.drv.Info()
		if info.Model != ccnetsim.DefaultPartNumber || info.Serial != ccnetsim.DefaultSerialNumber || len(info.Denominations) != 4 {
			t.Fatalf("Info %+v", info)
		}
		if id, _ := r.drv.Identification(); id.AssetNumber[6] != 0x34 {
			t.Fatalf("identification %+v", id)
		}
		if h.Count(acceptor.ProtocolError) != 0 {
			t.Fatalf("protocol errors: %v", h.Last(acceptor.ProtocolError))
		}
	})
}

func TestEmulatorReturnAndRejects(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := ccnetsim.New(ccnetsim.Config{Denominations: rub})
		h := &acceptortest.Recorder{Decide: func(acceptor.Note, int) acceptor.Decision { return acceptor.Return }}
		r := newRig(t, sim, h)
		r.ready()
		sim.InsertNote(2)
		acceptortest.Eventually(t, "returned", func() bool { return h.Count(acceptor.Returned) == 1 })
		if e := h.Last(acceptor.Returned); e.Note.Code != 2 || e.Note.ValueMinor != 1000 || e.Detail != "" {
			t.Fatalf("Returned %v: RETURNED names the type", e)
		}
		codes := []byte{0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6A, 0x6C, 0x6D, 0x92, 0x93, 0x94, 0x95}
		for i, reason := range codes {
			sim.ForceReject(reason)
			acceptortest.Eventually(t, "idle for the next note", func() bool { return sim.InsertNote(3) == nil })
			acceptortest.Eventually(t, "rejected", func() bool { return h.Count(acceptor.Rejected) == i+1 })
			if e := h.Last(acceptor.Rejected); e.Code != int(reason) || e.Reason != ccnet.RejectReason(reason) {
				t.Fatalf("reject %#x reported as %v", reason, e)
			}
		}
		sim.InsertNote(9) // unknown to the unit
		acceptortest.Eventually(t, "rejected unknown", func() bool { return h.Count(acceptor.Rejected) == len(codes)+1 })
		if e := h.Last(acceptor.Rejected); e.Reason != acceptor.RejectDenomination {
			t.Fatalf("unknown note: %v", e)
		}
		r.stop()
		if credits := h.CreditCalls(); len(credits) != 0 || len(sim.Cassette()) != 0 {
			t.Fatalf("money moved: credits %v cassette %v", credits, sim.Cassette())
		}
	})
}

func TestEmulatorHoldLongerThanTheUnitsTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := ccnetsim.New(ccnetsim.Config{Denominations: rub})
		var holdUntil time.Time
		h := &acceptortest.Recorder{}
		h.Decide = func(acceptor.Note, int) acceptor.Decision {
			if holdUntil.IsZero() {
				holdUntil = time.Now().Add(25 * time.Second) // 2.5 × the unit's 10 s
			}
			if time.Now().Before(holdUntil) {
				return acceptor.Hold
			}
			return acceptor.Stack
		}
		r := newRig(t, sim, h)
		r.ready()
		sim.InsertNote(4)
		acceptortest.Eventually(t, "holding", func() bool { return h.Count(acceptor.Holding) == 1 })
		time.Sleep(20 * time.Second) // on the bubble's clock
		acceptortest.Eventually(t, "credited", func() bool { c := h.CreditCalls(); return len(c) == 1 })
		acceptortest.Eventually(t, "stacked", func() bool { return h.Count(acceptor.Stacked) == 1 })
		r.stop()
		if h.Count(acceptor.Returned) != 0 {
			t.Fatal("the unit returned a note the handler was holding: HOLD was not refreshed")
		}
		if escrows := h.EscrowCalls(); len(escrows) < 100 {
			t.Fatalf("Escrow asked %d times while holding", len(escrows))
		}
		if h.Count(acceptor.Holding) != 1 {
			t.Fatalf("%d Holding events, want one", h.Count(acceptor.Holding))
		}
	})
}

func TestEmulatorFaultsAndCassette(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := ccnetsim.New(ccnetsim.Config{Denominations: rub, CassetteCapacity: 1})
		h := &acceptortest.Recorder{}
		r := newRig(t, sim, h)
		r.ready()
		sim.InsertNote(3)
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
			{func() { sim.Fail(0x55) }, func() { r.drv.Reset(context.Background()) }, acceptor.Failure},
		} {
			f.inject()
			acceptortest.Eventually(t, f.kind.String(), func() bool { return h.Count(f.kind) == 1 })
			f.clear()
			acceptortest.Eventually(t, "recovered from "+f.kind.String(), func() bool {
				s := sim.State().Status
				return s == "idling" || s == "disabled"
			})
		}
		sim.Busy(10)
		acceptortest.Eventually(t, "busy", func() bool { return r.drv.Stats().Busy == 1 })
		r.stop()
		if e := h.Last(acceptor.Failure); e.Code != 0x55 || e.Detail != ccnet.FailureName(0x55) {
			t.Fatalf("failure event %v", e)
		}
	})
}

func TestEmulatorPowerCycleWhileStacking(t *testing.T) {
	for _, recovery := range []bool{true, false} {
		name := map[bool]string{true: "credit recovery", false: "no credit recovery"}[recovery]
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				sim := ccnetsim.New(ccnetsim.Config{Denominations: rub, NoCreditRecovery: !recovery})
				h := &acceptortest.Recorder{}
				h.Decide = func(acceptor.Note, int) acceptor.Decision {
					// The power goes right after the host decided to stack.
					go func() {
						acceptortest.Eventually(t, "stacking", func() bool { return sim.State().Status == "stacking" })
						sim.PowerCycle(ccnetsim.Auto)
					}()
					return acceptor.Stack
				}
				r := newRig(t, sim, h)
				r.ready()
				sim.InsertNote(4)
				acceptortest.Eventually(t, "power-up report", func() bool { return h.Count(acceptor.PowerUpNoteInStacker) == 1 })
				acceptortest.Eventually(t, "reconfigured", func() bool { return sim.State().Status == "disabled" })
				r.stop()
				hundred := acceptor.Note{Code: 4, ValueMinor: 10000, Currency: "RUB"}
				if e := h.Last(acceptor.PowerUpNoteInStacker); e.Note != hundred {
					t.Fatalf("power-up event %v does not name the note being stacked", e)
				}
				credits := h.CreditCalls()
				c := sim.Cassette()
				if len(c) != 1 || c[0].Via != "power_up_recovery" {
					t.Fatalf("emulator cassette %+v", c)
				}
				if recovery {
					if len(credits) != 1 || credits[0] != hundred || !c[0].Acked {
						t.Fatalf("credit recovery: credits %v cassette %+v", credits, c)
					}
				} else if len(credits) != 0 || c[0].Acked {
					t.Fatalf("credited without STACKED: %v (cassette %+v)", credits, c)
				}
			})
		})
	}
}

func TestEmulatorHostRestartDuringStacked(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := ccnetsim.New(ccnetsim.Config{Denominations: rub})
		// The first host process cannot journal: STACKED stays unacknowledged.
		h1 := &acceptortest.Recorder{Credit: func(acceptor.Note, int) error { return errors.New("disk full") }}
		r1 := newRig(t, sim, h1)
		r1.ready()
		sim.InsertNote(3)
		acceptortest.Eventually(t, "credit attempts", func() bool { c := h1.CreditCalls(); return len(c) >= 3 })
		r1.stop()
		if st := sim.State(); st.Status != "stacked" {
			t.Fatalf("emulator %s after the host went away", st.Status)
		}
		if c := sim.Cassette(); len(c) != 1 || c[0].Acked {
			t.Fatalf("an unrecorded credit was acknowledged: %+v", c)
		}
		// The new process finds the unit in STACKED and credits it, denomination known.
		h2 := &acceptortest.Recorder{}
		r2 := newRig(t, sim, h2)
		acceptortest.Eventually(t, "credited", func() bool { c := h2.CreditCalls(); return len(c) == 1 })
		acceptortest.Eventually(t, "configured", func() bool { return h2.Count(acceptor.Identified) == 1 })
		r2.stop()
		fifty := acceptor.Note{Code: 3, ValueMinor: 5000, Currency: "RUB"}
		if c := h2.CreditCalls(); c[0] != fifty {
			t.Fatalf("credit after restart %v, want %v", c[0], fifty)
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

func TestEmulatorOneShotUnitCreditRetriedLocally(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := ccnetsim.New(ccnetsim.Config{Denominations: rub, OneShotEvents: true})
		fails := 3
		h := &acceptortest.Recorder{Credit: func(acceptor.Note, int) error {
			if fails > 0 {
				fails--
				return errors.New("journal busy")
			}
			return nil
		}}
		r := newRig(t, sim, h)
		r.ready()
		sim.InsertNote(2)
		acceptortest.Eventually(t, "recorded late", func() bool { c := h.CreditCalls(); return len(c) == 4 })
		acceptortest.Eventually(t, "idle", func() bool { return sim.InsertNote(5) == nil })
		acceptortest.Eventually(t, "second note", func() bool { return h.Count(acceptor.Stacked) == 2 })
		r.stop()
		credits := h.CreditCalls()
		if len(credits) != 5 || credits[3].Code != 2 || credits[4].Code != 5 {
			t.Fatalf("credits %v", credits)
		}
		c := sim.Cassette()
		if len(c) != 2 || c[0].Acked || !c[1].Acked {
			t.Fatalf("cassette %+v: the first note's STACKED must not have been acknowledged", c)
		}
	})
}

func TestEmulatorLinkFaults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := ccnetsim.New(ccnetsim.Config{Denominations: rub})
		h := &acceptortest.Recorder{}
		r := newRig(t, sim, h)
		r.ready()
		for _, f := range []ccnetsim.Fault{
			{Kind: ccnetsim.FaultBadCRC}, {Kind: ccnetsim.FaultGarbage},
			{Kind: ccnetsim.FaultSplit, Delay: 20 * time.Millisecond}, {Kind: ccnetsim.FaultNoReply},
			{Kind: ccnetsim.FaultSlow, Delay: 60 * time.Millisecond}, {Kind: ccnetsim.FaultBadCRC},
		} {
			sim.InjectFault(f)
		}
		sim.InsertNote(2)
		acceptortest.Eventually(t, "stacked", func() bool { return h.Count(acceptor.Stacked) == 1 })
		// Four silent replies in a row: the driver gives up on that poll and says so.
		for range 4 {
			sim.InjectFault(ccnetsim.Fault{Kind: ccnetsim.FaultNoReply})
		}
		acceptortest.Eventually(t, "comm lost", func() bool { return h.Count(acceptor.CommLost) == 1 })
		acceptortest.Eventually(t, "comm restored", func() bool { return h.Count(acceptor.CommRestored) == 1 })
		sim.InsertNote(3)
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
		if st := r.drv.Stats(); st.BadFrames < 2 || st.NaksSent < 2 || st.GarbageBytes == 0 || st.Timeouts < 5 {
			t.Fatalf("stats %+v", st)
		}
	})
}

// BenchmarkPollCycle measures one POLL round trip (POLL, reply, ACK) with the driver's
// handling, against the emulator over a net.Pipe.
func BenchmarkPollCycle(b *testing.B) {
	sim := ccnetsim.New(ccnetsim.Config{Denominations: rub})
	host, unit := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	simDone := make(chan error, 1)
	go func() { simDone <- sim.Serve(ctx, unit) }()
	d := ccnet.New(host, ccnet.Config{Denominations: rub, PollInterval: time.Nanosecond, CommandGap: -1})
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
		sim := ccnetsim.New(ccnetsim.Config{Denominations: rub})
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
		if err := r.drv.Enable(context.Background(), []int{2}); !errors.Is(err, acceptor.ErrNotRunning) {
			t.Fatalf("Enable after Run: %v", err)
		}
	})
}

// lateReplyAfterStack makes the unit's answer to the first POLL after STACK (STACKING) come
// later than the driver's ReplyTimeout: the driver re-sends POLL, the unit answers that one
// with STACKED, and the late STACKING reaches the driver first. CCNET has no sequence
// numbers: the host's ACK always acknowledges the unit's last reply, which is the STACKED.
func lateReplyAfterStack(sim *ccnetsim.Sim) func(acceptor.Note, int) acceptor.Decision {
	return func(_ acceptor.Note, call int) acceptor.Decision {
		if call > 1 {
			return acceptor.Stack // the next notes go through cleanly
		}
		sim.InjectFault(ccnetsim.Fault{}) // STACK's ACK: on time
		sim.InjectFault(ccnetsim.Fault{Kind: ccnetsim.FaultSlow, Delay: 150 * time.Millisecond})
		return acceptor.Stack
	}
}

// TestEmulatorLateReplyNeverAcksUncreditedStacked: a reply that comes after the driver re-sent
// POLL cannot be told from the answer to the re-sent POLL, so the driver must not ACK it: the
// ACK would land on the unit's last reply, here an uncredited STACKED, and the unit would
// move on with the note in the cassette and nothing journaled.
func TestEmulatorLateReplyNeverAcksUncreditedStacked(t *testing.T) {
	for _, oneShot := range []bool{false, true} {
		name := "repeating"
		if oneShot {
			name = "one-shot"
		}
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				sim := ccnetsim.New(ccnetsim.Config{Denominations: rub, OneShotEvents: oneShot})
				ackedUncredited := false
				h := &acceptortest.Recorder{Decide: lateReplyAfterStack(sim)}
				h.Credit = func(acceptor.Note, int) error {
					// The unit must still wait for the ACK of this credit.
					if c := sim.Cassette(); len(c) > 0 && c[len(c)-1].Acked {
						ackedUncredited = true
					}
					return nil
				}
				r := newRig(t, sim, h)
				r.ready()
				if err := sim.InsertNote(4); err != nil {
					t.Fatal(err)
				}
				acceptortest.Eventually(t, "credited", func() bool { return len(h.CreditCalls()) == 1 })
				acceptortest.Eventually(t, "unit idle", func() bool { return sim.InsertNote(2) == nil })
				acceptortest.Eventually(t, "second note", func() bool { return len(h.CreditCalls()) == 2 })
				acceptortest.Eventually(t, "second ack", func() bool { c := sim.Cassette(); return len(c) == 2 && c[1].Acked })
				r.stop()
				credits := h.CreditCalls()
				if len(credits) != 2 || credits[0].Code != 4 || credits[1].Code != 2 {
					t.Fatalf("credits %v, cassette %+v", credits, sim.Cassette())
				}
				if ackedUncredited {
					t.Fatalf("the unit had its STACKED acknowledged before Credited: cassette %+v", sim.Cassette())
				}
				if !oneShot && !sim.Cassette()[0].Acked {
					t.Fatalf("cassette %+v: the credit was never acknowledged", sim.Cassette())
				}
			})
		})
	}
}
