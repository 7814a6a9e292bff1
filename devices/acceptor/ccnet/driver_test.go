package ccnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/devices/acceptor/acceptortest"
	"github.com/kioskd/kioskd/devices/internal/playbacktest"
)

func TestStartupFromPowerUp(t *testing.T) {
	for _, tc := range []struct {
		status byte
		kind   acceptor.Kind
	}{{StPowerUp, acceptor.PowerUp}, {StPowerUpBillInValidator, acceptor.PowerUpNoteInAcceptor}} {
		t.Run(fmt.Sprintf("%#02x", tc.status), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				rec := &acceptortest.Recorder{}
				rec.OnEvent = acceptortest.CancelOn(cancel, acceptor.Disabled, 1)
				pb, port := playbacktest.New(t, playbacktest.Script(
					poll(tc.status), command(CmdReset), poll(StInitialize),
					configSteps(true),
					poll(StDisabled),
					shutdownSteps(),
				)...)
				d := New(port, Config{Denominations: testDenoms})
				runErr := d.Run(ctx, rec)
				pb.Check()
				acceptortest.NoRunError(t, runErr)
				acceptortest.WantKinds(t, rec.Kinds(), tc.kind, acceptor.Initializing, acceptor.Identified, acceptor.Disabled)
				if pu := rec.EventsOf(tc.kind)[0]; pu.Note != (acceptor.Note{}) {
					t.Errorf("power-up event names note %v though this process saw no escrow", pu.Note)
				}
				if len(rec.CreditCalls()) != 0 || len(rec.EscrowCalls()) != 0 {
					t.Fatalf("handler called for money during a plain power-up")
				}
				info := d.Info()
				if info.Model != "SM-CN2715" || info.Serial != "41A012345678" || info.Protocol != "CCNET" {
					t.Errorf("Info = %+v", info)
				}
				if id, ok := d.Identification(); !ok || id.AssetNumber != [7]byte{1, 2, 3, 4, 5, 6, 7} {
					t.Errorf("Identification = %+v %v", id, ok)
				}
				if n := info.Denominations[2]; n != fifty {
					t.Errorf("unit table entry 2 = %v", n)
				}
				if len(rec.EventsOf(acceptor.ProtocolError)) != 0 {
					t.Errorf("unexpected protocol errors: %v", rec.EventsOf(acceptor.ProtocolError))
				}
			})
		})
	}
}

// The CCNET description: after POWER UP WITH BILL IN STACKER and RESET, "status will
// immediately change to STACKED (81H)" once INITIALIZE is over: credit recovery.
func TestStartupCreditRecovery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		rec := &acceptortest.Recorder{}
		rec.OnEvent = acceptortest.CancelOn(cancel, acceptor.Disabled, 1)
		pb, port := playbacktest.New(t, playbacktest.Script(
			poll(StPowerUpBillInStacker), command(CmdReset), poll(StInitialize),
			configSteps(true),
			pollStacked(2), hostAck(), // ACK only after Credited returned nil
			poll(StDisabled),
			shutdownSteps(),
		)...)
		runErr := New(port, Config{Denominations: testDenoms}).Run(ctx, rec)
		pb.Check()
		acceptortest.NoRunError(t, runErr)
		acceptortest.WantKinds(t, rec.Kinds(), acceptor.PowerUpNoteInStacker, acceptor.Initializing, acceptor.Identified,
			acceptor.Stacked, acceptor.Disabled)
		if c := rec.CreditCalls(); len(c) != 1 || c[0] != fifty {
			t.Fatalf("Credited calls %v, want the recovered 50", c)
		}
	})
}

func TestStartupFromStackedAfterHostRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		rec := &acceptortest.Recorder{}
		rec.OnEvent = acceptortest.CancelOn(cancel, acceptor.Identified, 1)
		pb, port := playbacktest.New(t, playbacktest.Script(
			// No RESET: the unit repeats a credit the previous process never acknowledged.
			pollStacked(0), hostAck(),
			poll(StIdling),
			configSteps(false), // IDLING does not answer IDENTIFICATION: inhibit first
			poll(StDisabled),
			identifySteps(),
			shutdownSteps(),
		)...)
		runErr := New(port, Config{Denominations: testDenoms}).Run(ctx, rec)
		pb.Check()
		acceptortest.NoRunError(t, runErr)
		if c := rec.CreditCalls(); len(c) != 1 || c[0] != ten {
			t.Fatalf("Credited calls %v, want one for bill type 0 (known after a restart)", c)
		}
		acceptortest.WantKinds(t, rec.Kinds(), acceptor.Stacked, acceptor.Idle, acceptor.Disabled, acceptor.Identified)
	})
}

func TestStartupFromEscrow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		rec := &acceptortest.Recorder{}
		pb, port := playbacktest.New(t, playbacktest.Script(
			poll(StEscrow, 1),
			command(CmdStack),
			poll(StStacking),
			pollStacked(1), hostAck(),
			poll(StDisabled),
			then(configSteps(true), cancel), // configured: stop
			shutdownSteps(),
		)...)
		runErr := New(port, Config{Denominations: testDenoms}).Run(ctx, rec)
		pb.Check()
		acceptortest.NoRunError(t, runErr)
		if e := rec.EscrowCalls(); len(e) != 1 || e[0] != twenty {
			t.Fatalf("Escrow calls %v", e)
		}
		if c := rec.CreditCalls(); len(c) != 1 || c[0] != twenty {
			t.Fatalf("Credited calls %v", c)
		}
		acceptortest.WantKinds(t, rec.Kinds(), acceptor.Stacking, acceptor.Stacked, acceptor.Disabled, acceptor.Identified)
		if s := rec.EventsOf(acceptor.Stacked)[0]; s.Note != twenty {
			t.Errorf("Stacked note %v", s.Note)
		}
	})
}

func TestStartupFromHoldingNamesNoNote(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		rec := &acceptortest.Recorder{Decide: func(n acceptor.Note, _ int) acceptor.Decision {
			if !n.Known() {
				return acceptor.Return
			}
			return acceptor.Stack
		}}
		pb, port := playbacktest.New(t, playbacktest.Script(
			poll(StHolding), // HOLDING carries no bill type: the note is unknown, never type 0
			command(CmdReturn),
			poll(StReturning),
			poll(StReturned, 0),
			poll(StDisabled),
			then(configSteps(true), cancel), // configured: stop
			shutdownSteps(),
		)...)
		runErr := New(port, Config{Denominations: testDenoms}).Run(ctx, rec)
		pb.Check()
		acceptortest.NoRunError(t, runErr)
		if e := rec.EscrowCalls(); len(e) != 1 || e[0] != (acceptor.Note{}) {
			t.Fatalf("Escrow calls %v, want Note{}", e)
		}
		if r := rec.EventsOf(acceptor.Returned); len(r) != 1 || r[0].Note != ten {
			t.Fatalf("Returned %v: RETURNED names the type", r)
		}
	})
}

func TestStartupWaitsForNoteInPath(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		rec := &acceptortest.Recorder{}
		rec.OnEvent = acceptortest.CancelOn(cancel, acceptor.Identified, 1)
		pb, port := playbacktest.New(t, playbacktest.Script(
			// Accepting and returning are polled until they resolve; nothing else is sent.
			poll(StAccepting), poll(StReturning), poll(StReturning), poll(StIdling),
			configSteps(false),
			poll(StDisabled),
			identifySteps(),
			shutdownSteps(),
		)...)
		runErr := New(port, Config{Denominations: testDenoms}).Run(ctx, rec)
		pb.Check()
		acceptortest.NoRunError(t, runErr)
		acceptortest.WantKinds(t, rec.Kinds(), acceptor.Accepting, acceptor.Returning, acceptor.Returned, acceptor.Idle,
			acceptor.Disabled, acceptor.Identified)
	})
}

func TestStartupResetsAFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		rec := &acceptortest.Recorder{}
		rec.OnEvent = acceptortest.CancelOn(cancel, acceptor.Disabled, 1)
		pb, port := playbacktest.New(t, playbacktest.Script(
			poll(StFailure, 0x50), command(CmdReset), poll(StInitialize),
			configSteps(true),
			poll(StDisabled),
			shutdownSteps(),
		)...)
		runErr := New(port, Config{Denominations: testDenoms}).Run(ctx, rec)
		pb.Check()
		acceptortest.NoRunError(t, runErr)
		f := rec.EventsOf(acceptor.Failure)
		if len(f) != 1 || f[0].Code != 0x50 || !strings.Contains(f[0].Detail, "stack") {
			t.Fatalf("failure events %v", f)
		}
	})
}

func TestStartupSetSecurityRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		rec := &acceptortest.Recorder{}
		rec.OnEvent = acceptortest.CancelOn(cancel, acceptor.Disabled, 1)
		pb, port := playbacktest.New(t, playbacktest.Script(
			poll(StInitialize),
			identifySteps(),
			ask(fr(CmdSetSecurity, 0x00, 0x00, 0x05), illegal), hostAck(), // several models refuse it
			command(CmdEnableBillTypes, 0, 0, 0, 0xFF, 0xFF, 0xFF),
			poll(StDisabled),
			shutdownSteps(),
		)...)
		d := New(port, Config{Denominations: testDenoms, HighSecurity: []int{0, 2}})
		runErr := d.Run(ctx, rec)
		pb.Check()
		acceptortest.NoRunError(t, runErr)
		if pe := rec.EventsOf(acceptor.ProtocolError); len(pe) != 1 || pe[0].Code != int(RepIllegalCommand) {
			t.Fatalf("protocol errors %v", pe)
		}
		if d.Stats().Refused != 1 {
			t.Fatalf("stats %+v", d.Stats())
		}
	})
}

// running is the start of a script for a unit found inhibited: identify, configure, then
// Enable(0, 2) from the test.
func running() []step {
	return playbacktest.Script(
		poll(StDisabled),
		configSteps(true),
		command(CmdEnableBillTypes, 0, 0, 0x05, 0xFF, 0xFF, 0xFF),
	)
}

// enableOnIdentified makes the handler call Enable(0, 2) once the driver has the unit's
// identity; the request is served once the configuration is done.
func enableOnIdentified(t *testing.T, ctx context.Context, d *Driver, next func(acceptor.Event)) func(acceptor.Event) {
	return func(e acceptor.Event) {
		if e.Kind == acceptor.Identified {
			go func() {
				if err := d.Enable(ctx, []int{0, 2}); err != nil {
					t.Errorf("Enable: %v", err)
				}
			}()
		}
		if next != nil {
			next(e)
		}
	}
}

func TestEscrowStackCredit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		pb, port := playbacktest.New(t, playbacktest.Script(
			running(),
			poll(StIdling),
			poll(StAccepting),
			poll(StEscrow, 2),
			command(CmdStack),
			poll(StStacking),
			pollStacked(2), hostAck(),
			poll(StIdling),
			shutdownSteps(),
		)...)
		d := New(port, Config{Denominations: testDenoms})
		rec := &acceptortest.Recorder{}
		rec.OnEvent = enableOnIdentified(t, ctx, d, acceptortest.CancelOn(cancel, acceptor.Idle, 2))
		runErr := d.Run(ctx, rec)
		pb.Check()
		acceptortest.NoRunError(t, runErr)
		if c := rec.CreditCalls(); len(c) != 1 || c[0] != fifty {
			t.Fatalf("Credited calls %v", c)
		}
		acceptortest.WantKinds(t, rec.Kinds(), acceptor.Disabled, acceptor.Identified, acceptor.Idle, acceptor.Accepting,
			acceptor.Stacking, acceptor.Stacked, acceptor.Idle)
		if st := d.Stats(); st.Polls != 7 || st.Retries != 0 || st.Timeouts != 0 {
			t.Errorf("stats %+v", st)
		}
	})
}

func TestEscrowReturn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		pb, port := playbacktest.New(t, playbacktest.Script(
			running(),
			poll(StAccepting),
			poll(StEscrow, 0),
			command(CmdReturn),
			poll(StReturning),
			poll(StReturned, 0),
			poll(StIdling),
			shutdownSteps(),
		)...)
		d := New(port, Config{Denominations: testDenoms})
		rec := &acceptortest.Recorder{Decide: func(acceptor.Note, int) acceptor.Decision { return acceptor.Return }}
		rec.OnEvent = enableOnIdentified(t, ctx, d, acceptortest.CancelOn(cancel, acceptor.Idle, 1))
		runErr := d.Run(ctx, rec)
		pb.Check()
		acceptortest.NoRunError(t, runErr)
		if c := rec.CreditCalls(); len(c) != 0 {
			t.Fatalf("Credited calls %v for a returned note", c)
		}
		if e := rec.EscrowCalls(); len(e) != 1 || e[0] != ten {
			t.Fatalf("Escrow calls %v: bill type 0 is a real note", e)
		}
		acceptortest.WantKinds(t, rec.Kinds(), acceptor.Disabled, acceptor.Identified, acceptor.Accepting,
			acceptor.Returning, acceptor.Returned, acceptor.Idle)
		if r := rec.EventsOf(acceptor.Returned)[0]; r.Note != ten || r.Detail != "" {
			t.Errorf("Returned %v", r)
		}
	})
}

func TestEscrowUnknownType(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		pb, port := playbacktest.New(t, playbacktest.Script(
			running(),
			poll(StEscrow, 7),
			command(CmdReturn),
			poll(StReturning),
			poll(StReturned, 7),
			shutdownSteps(),
		)...)
		d := New(port, Config{Denominations: testDenoms})
		rec := &acceptortest.Recorder{Decide: func(n acceptor.Note, _ int) acceptor.Decision {
			if !n.Known() {
				return acceptor.Return
			}
			return acceptor.Stack
		}}
		rec.OnEvent = enableOnIdentified(t, ctx, d, acceptortest.CancelOn(cancel, acceptor.Returned, 1))
		runErr := d.Run(ctx, rec)
		pb.Check()
		acceptortest.NoRunError(t, runErr)
		if e := rec.EscrowCalls(); len(e) != 1 || e[0] != (acceptor.Note{Code: 7}) {
			t.Fatalf("Escrow calls %v, want the bare type", e)
		}
	})
}

func TestHoldIsRefreshedWithinTheUnitsTenSeconds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		var holds []time.Time
		hold := playbacktest.Script(command(CmdHold))
		hold[0].Then = func() { holds = append(holds, time.Now()) }
		pb, port := playbacktest.New(t, playbacktest.Script(
			running(),
			poll(StEscrow, 2), hold,
			// HoldRefresh 1 s, polls every 200 ms: four polls without HOLD, the fifth re-sends it.
			poll(StHolding), poll(StHolding), poll(StHolding), poll(StHolding), poll(StHolding), hold,
			poll(StHolding), command(CmdStack),
			poll(StStacking),
			pollStacked(2), hostAck(),
			poll(StIdling),
			shutdownSteps(),
		)...)
		d := New(port, Config{Denominations: testDenoms, HoldRefresh: time.Second, CommandGap: -1})
		rec := &acceptortest.Recorder{Decide: func(_ acceptor.Note, call int) acceptor.Decision {
			if call < 7 {
				return acceptor.Hold
			}
			return acceptor.Stack
		}}
		rec.OnEvent = enableOnIdentified(t, ctx, d, acceptortest.CancelOn(cancel, acceptor.Idle, 1))
		runErr := d.Run(ctx, rec)
		pb.Check()
		acceptortest.NoRunError(t, runErr)
		if e := rec.EscrowCalls(); len(e) != 7 || e[6] != fifty {
			t.Fatalf("Escrow calls %v, want 7 for the same note", e)
		}
		if len(holds) != 2 || holds[1].Sub(holds[0]) >= HoldTime {
			t.Fatalf("HOLDs at %v: the second must come within the unit's %v", holds, HoldTime)
		}
		if c := rec.CreditCalls(); len(c) != 1 || c[0] != fifty {
			t.Fatalf("Credited calls %v", c)
		}
		if h := rec.EventsOf(acceptor.Holding); len(h) != 1 || h[0].Note != fifty {
			t.Fatalf("Holding events %v", h)
		}
	})
}

func TestEscrowNotAskedTwice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		stack := fr(CmdStack)
		pb, port := playbacktest.New(t, playbacktest.Script(
			running(),
			poll(StEscrow, 2),
			silent(stack), silent(stack), silent(stack), silent(stack), // 1 + MaxRetries
			poll(StEscrow, 2),
			command(CmdStack), // re-sent without asking the handler again
			poll(StEscrow, 2), // the unit is slow: the acknowledged STACK is not re-sent
			poll(StStacking),
			pollStacked(2), hostAck(),
			poll(StIdling),
			shutdownSteps(),
		)...)
		d := New(port, Config{Denominations: testDenoms})
		rec := &acceptortest.Recorder{}
		rec.OnEvent = enableOnIdentified(t, ctx, d, acceptortest.CancelOn(cancel, acceptor.Idle, 1))
		runErr := d.Run(ctx, rec)
		pb.Check()
		acceptortest.NoRunError(t, runErr)
		if e := rec.EscrowCalls(); len(e) != 1 {
			t.Fatalf("Escrow called %d times for one episode", len(e))
		}
		if len(rec.EventsOf(acceptor.CommLost)) != 0 {
			t.Fatalf("a failed STACK must not be reported as CommLost")
		}
	})
}

func TestCreditedErrorLeavesStackedUnacknowledged(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		pb, port := playbacktest.New(t, playbacktest.Script(
			running(),
			poll(StEscrow, 0),
			command(CmdStack),
			pollStacked(0),            // Credited fails: no ACK, the unit repeats
			pollStacked(0), hostAck(), // Credited again, succeeds: ACK
			pollStacked(0), hostAck(), // the ACK was lost: ACK again, no second Credited
			poll(StIdling),
			shutdownSteps(),
		)...)
		d := New(port, Config{Denominations: testDenoms})
		rec := &acceptortest.Recorder{Credit: func(_ acceptor.Note, call int) error {
			if call == 1 {
				return errors.New("journal busy")
			}
			return nil
		}}
		rec.OnEvent = enableOnIdentified(t, ctx, d, acceptortest.CancelOn(cancel, acceptor.Idle, 1))
		runErr := d.Run(ctx, rec)
		pb.Check()
		acceptortest.NoRunError(t, runErr)
		if c := rec.CreditCalls(); len(c) != 2 || c[0] != ten || c[1] != ten {
			t.Fatalf("Credited calls %v, want 2 for bill type 0", c)
		}
		if s := rec.EventsOf(acceptor.Stacked); len(s) != 1 {
			t.Fatalf("Stacked events %v, want one", s)
		}
	})
}

// A unit that reports STACKED once and moves on without the ACK: the driver keeps the
// credit and calls Credited before every POLL until it is recorded.
func TestOneShotStackedIsRetriedLocally(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		pb, port := playbacktest.New(t, playbacktest.Script(
			running(),
			poll(StEscrow, 1),
			command(CmdStack),
			pollStacked(1),    // Credited fails: no ACK
			poll(StIdling),    // the unit moved on anyway
			poll(StIdling),    // Credited failed again before this poll
			poll(StAccepting), // Credited succeeded before this poll
			poll(StIdling),
			shutdownSteps(),
		)...)
		d := New(port, Config{Denominations: testDenoms})
		rec := &acceptortest.Recorder{Credit: func(_ acceptor.Note, call int) error {
			if call < 3 {
				return errors.New("disk full")
			}
			return nil
		}}
		rec.OnEvent = enableOnIdentified(t, ctx, d, acceptortest.CancelOn(cancel, acceptor.Idle, 2))
		runErr := d.Run(ctx, rec)
		pb.Check()
		acceptortest.NoRunError(t, runErr)
		c := rec.CreditCalls()
		if len(c) != 3 || c[0] != twenty || c[1] != twenty || c[2] != twenty {
			t.Fatalf("Credited calls %v, want 3 for the one 20", c)
		}
	})
}

func TestEveryRejectReason(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		codes := []byte{0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6A, 0x6C, 0x6D, 0x92, 0x93, 0x94, 0x95, 0x6B}
		var steps []step
		for _, c := range codes {
			steps = append(steps, playbacktest.Script(poll(StAccepting), poll(StRejecting, c), poll(StIdling))...)
		}
		pb, port := playbacktest.New(t, playbacktest.Script(running(), steps, shutdownSteps())...)
		d := New(port, Config{Denominations: testDenoms})
		rec := &acceptortest.Recorder{}
		rec.OnEvent = enableOnIdentified(t, ctx, d, acceptortest.CancelOn(cancel, acceptor.Idle, len(codes)))
		runErr := d.Run(ctx, rec)
		pb.Check()
		acceptortest.NoRunError(t, runErr)
		got := rec.EventsOf(acceptor.Rejected)
		if len(got) != len(codes) {
			t.Fatalf("%d Rejected events, want %d", len(got), len(codes))
		}
		for i, e := range got {
			if e.Code != int(codes[i]) || e.Reason != RejectReason(codes[i]) || e.Detail != RejectName(codes[i]) {
				t.Errorf("reject %#x: event %v", codes[i], e)
			}
		}
		if got[len(got)-1].Reason != acceptor.RejectUnknown {
			t.Errorf("undocumented 0x6B: %v", got[len(got)-1])
		}
		if len(rec.CreditCalls())+len(rec.EscrowCalls()) != 0 {
			t.Fatal("handler asked about money for rejected notes")
		}
	})
}

func TestEveryErrorState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		var busyAt, afterBusy time.Time
		busy := poll(StBusy, 5)
		busy[0].Then = func() { busyAt = time.Now() }
		next := poll(StIdling)
		next[0].Then = func() { afterBusy = time.Now() }
		pb, port := playbacktest.New(t, playbacktest.Script(
			running(),
			poll(StCassetteFull), poll(StCassetteFull), // repeated state: one event
			poll(StCassetteOut),
			poll(StInitialize), // cassette back
			poll(StValidatorJammed),
			poll(StCassetteJammed),
			poll(StPause),
			poll(StCheated),
			poll(StFailure, 0x52),
			poll(StFailure, 0x5F), // a different failure code is a new fact
			ask(pollReq, illegal), hostAck(),
			poll(0x16), // a state this driver does not know
			busy,       // BUSY: no event, the next POLL waits 500 ms
			next,
			shutdownSteps(),
		)...)
		d := New(port, Config{Denominations: testDenoms})
		rec := &acceptortest.Recorder{}
		rec.OnEvent = enableOnIdentified(t, ctx, d, acceptortest.CancelOn(cancel, acceptor.Idle, 1))
		runErr := d.Run(ctx, rec)
		pb.Check()
		acceptortest.NoRunError(t, runErr)
		acceptortest.WantKinds(t, rec.Kinds(), acceptor.Disabled, acceptor.Identified,
			acceptor.CassetteFull, acceptor.CassetteRemoved, acceptor.CassetteReplaced, acceptor.Initializing,
			acceptor.AcceptorJam, acceptor.StackerJam, acceptor.Paused, acceptor.Fraud,
			acceptor.Failure, acceptor.Failure,
			acceptor.ProtocolError, acceptor.ProtocolError, acceptor.Idle)
		f := rec.EventsOf(acceptor.Failure)
		if f[0].Code != 0x52 || f[1].Code != 0x5F || !strings.Contains(f[1].Detail, "capacitance") {
			t.Errorf("failure events %v", f)
		}
		pe := rec.EventsOf(acceptor.ProtocolError)
		if pe[0].Code != int(RepIllegalCommand) || pe[1].Code != 0x16 {
			t.Errorf("protocol errors %v", pe)
		}
		if gap := afterBusy.Sub(busyAt); gap < 500*time.Millisecond {
			t.Errorf("next POLL %v after BUSY 5", gap)
		}
		if st := d.Stats(); st.Busy != 1 || st.Refused != 1 || st.Timeouts != 0 {
			t.Errorf("stats %+v", st)
		}
	})
}

func TestCommLostAndRestored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		var lostAt, restoredAt time.Time
		disabled := acceptortest.CancelOn(cancel, acceptor.Disabled, 2)
		pb, port := playbacktest.New(t, playbacktest.Script(
			running(),
			poll(StIdling),
			silent(pollReq), silent(pollReq), silent(pollReq), silent(pollReq), // CommLost
			silent(pollReq), // one attempt per slow poll while lost
			silent(pollReq),
			// CommRestored. Not ACKed: the six POLLs that timed out may still be answered,
			// and this answer may be one of theirs.
			ask(pollReq, fr(StIdling)),
			dataReq(CmdGetStatus, testStatus), // answers no POLL: nothing is owed any more
			poll(StDisabled),
			shutdownSteps(),
		)...)
		d := New(port, Config{Denominations: testDenoms})
		rec := &acceptortest.Recorder{}
		rec.OnEvent = enableOnIdentified(t, ctx, d, func(e acceptor.Event) {
			switch e.Kind {
			case acceptor.CommLost:
				lostAt = time.Now()
			case acceptor.CommRestored:
				restoredAt = time.Now()
			}
			disabled(e)
		})
		runErr := d.Run(ctx, rec)
		pb.Check()
		acceptortest.NoRunError(t, runErr)
		if len(rec.EventsOf(acceptor.CommLost)) != 1 || len(rec.EventsOf(acceptor.CommRestored)) != 1 {
			t.Fatalf("events %v", rec.Kinds())
		}
		if gap := restoredAt.Sub(lostAt); gap < 3*DefaultLostPollInterval {
			t.Errorf("restored %v after lost; the slow poll rate was not used", gap)
		}
		if st := d.Stats(); st.Timeouts != 6 || st.Retries != 3 {
			t.Errorf("stats %+v", st)
		}
	})
}

func TestDamagedRepliesAreNAKedAndResynchronised(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		idle := fr(StIdling)
		escrow := fr(StEscrow, 0)
		long := []byte{0x02, 0x03, 0x40, 0x81} // a frame start announcing 64 bytes, then silence
		pb, port := playbacktest.New(t, playbacktest.Script(
			running(),
			ask(pollReq, badCRC(idle)), ask(nakF, idle), hostAck(), // NAK: the unit repeats its reply
			ask(pollReq, garbageBefore(idle)), hostAck(), // noise skipped
			ask(pollReq, wrongLNG(idle)), // waits for a byte that never comes: timeout
			ask(pollReq, idle),           // the stale partial frame was dropped; no ACK while an answer may be owed
			dataReq(CmdGetStatus, testStatus),
			[]step{{Host: pollReq, Unit: [][]byte{long, idle}, Pause: 80 * time.Millisecond}}, // dropped after the silence
			hostAck(),
			ask(pollReq, nakF), ask(pollReq, idle), hostAck(), // the unit's NAK: POLL again
			[]step{{Host: pollReq, Unit: [][]byte{escrow[:1], escrow[1:3], escrow[3:]}}}, hostAck(), // split
			command(CmdReturn),
			[]step{{Host: pollReq, Unit: [][]byte{{0x02}, {0x03}, {0x06}, fr(StReturning)[3:]}}}, hostAck(),
			poll(StIdling),
			shutdownSteps(),
		)...)
		d := New(port, Config{Denominations: testDenoms})
		rec := &acceptortest.Recorder{Decide: func(acceptor.Note, int) acceptor.Decision { return acceptor.Return }}
		rec.OnEvent = enableOnIdentified(t, ctx, d, acceptortest.CancelOn(cancel, acceptor.Returned, 1))
		runErr := d.Run(ctx, rec)
		pb.Check()
		acceptortest.NoRunError(t, runErr)
		if e := rec.EscrowCalls(); len(e) != 1 || e[0] != ten {
			t.Fatalf("escrow calls %v", e)
		}
		st := d.Stats()
		if st.BadFrames < 1 || st.GarbageBytes < uint64(len(long)) || st.Timeouts != 1 || st.NaksSent != 1 || st.NaksReceived != 1 || st.Retries != 3 {
			t.Errorf("stats %+v", st)
		}
		if len(rec.EventsOf(acceptor.CommLost)) != 0 {
			t.Errorf("damaged replies within the retry budget were taken for CommLost")
		}
	})
}

func TestUnitPowerCycledMidNote(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		pb, port := playbacktest.New(t, playbacktest.Script(
			running(),
			poll(StEscrow, 2),
			command(CmdStack),
			poll(StStacking),
			poll(StPowerUpBillInStacker), // power cut while stacking
			command(CmdReset),
			poll(StInitialize),
			configSteps(false),        // identity is read once per Run
			pollStacked(2), hostAck(), // credit recovery
			poll(StDisabled),
			shutdownSteps(),
		)...)
		d := New(port, Config{Denominations: testDenoms})
		rec := &acceptortest.Recorder{}
		rec.OnEvent = enableOnIdentified(t, ctx, d, acceptortest.CancelOn(cancel, acceptor.Disabled, 2))
		runErr := d.Run(ctx, rec)
		pb.Check()
		acceptortest.NoRunError(t, runErr)
		ps := rec.EventsOf(acceptor.PowerUpNoteInStacker)
		if len(ps) != 1 || ps[0].Note != fifty {
			t.Fatalf("power-up events %v: the note being stacked must be named", ps)
		}
		if c := rec.CreditCalls(); len(c) != 1 || c[0] != fifty {
			t.Fatalf("Credited calls %v, want the recovered note once", c)
		}
	})
}

func TestResetRefusedWithNoteInPath(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		resetErr := make(chan error, 1)
		var d *Driver
		pb, port := playbacktest.New(t, playbacktest.Script(
			running(),
			poll(StEscrow, 2),
			command(CmdHold),
			poll(StHolding),
			command(CmdReturn),
			poll(StReturning),
			poll(StReturned, 2),
			poll(StIdling),
			command(CmdReset), // allowed again once the path is clear
			poll(StInitialize),
			configSteps(false),
			poll(StDisabled),
			shutdownSteps(),
		)...)
		d = New(port, Config{Denominations: testDenoms})
		rec := &acceptortest.Recorder{Decide: func(_ acceptor.Note, call int) acceptor.Decision {
			if call == 1 {
				go func() { resetErr <- d.Reset(ctx) }()
				return acceptor.Hold
			}
			return acceptor.Return
		}}
		rec.OnEvent = enableOnIdentified(t, ctx, d, func(e acceptor.Event) {
			if e.Kind == acceptor.Idle {
				go func() {
					if err := d.Reset(ctx); err != nil {
						t.Errorf("Reset when idle: %v", err)
					}
				}()
			}
			if e.Kind == acceptor.Disabled && len(rec.EventsOf(acceptor.Returned)) == 1 {
				cancel()
			}
		})
		runErr := d.Run(ctx, rec)
		pb.Check()
		acceptortest.NoRunError(t, runErr)
		if err := <-resetErr; !errors.Is(err, ErrWrongState) {
			t.Fatalf("Reset with a note in escrow: %v, want ErrWrongState", err)
		}
	})
}

func TestBillTableMismatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		table := AppendBillTable(nil, []BillEntry{
			{Value: 1, Country: [3]byte{'C', 'H', 'N'}, Exponent: 1}, // 10 CNY: matches
			{Value: 1, Country: [3]byte{'C', 'H', 'N'}, Exponent: 2}, // 100 CNY: configured as 20
			{}, // configured as 50, unit has none
			{Value: 5, Country: [3]byte{'X', 'Y', 'Z'}, Exponent: 0}, // unknown country, not configured
		})
		pb, port := playbacktest.New(t, playbacktest.Script(
			poll(StDisabled),
			dataReq(CmdGetStatus, testStatus),
			dataReq(CmdIdentification, testIdent),
			dataReq(CmdGetBillTable, table),
			shutdownSteps(),
		)...)
		d := New(port, Config{Denominations: testDenoms})
		rec := &acceptortest.Recorder{}
		rec.OnEvent = func(e acceptor.Event) {
			if e.Kind == acceptor.ProtocolError {
				cancel()
			}
		}
		runErr := d.Run(ctx, rec)
		pb.Check()
		acceptortest.NoRunError(t, runErr)
		pe := rec.EventsOf(acceptor.ProtocolError)
		if len(pe) != 1 {
			t.Fatalf("protocol errors %v", pe)
		}
		for _, want := range []string{
			"type 1: unit 10000 CNY, configured 2000 CNY",
			"type 3: unit 5×10^0 \"XYZ\", not configured",
			"type 2: configured 5000 CNY, unit has none",
		} {
			if !strings.Contains(pe[0].Detail, want) {
				t.Errorf("detail %q lacks %q", pe[0].Detail, want)
			}
		}
		if strings.Contains(pe[0].Detail, "type 0") {
			t.Errorf("matching type 0 reported: %q", pe[0].Detail)
		}
		if n := d.Info().Denominations[1]; n.ValueMinor != 10000 {
			t.Errorf("Info shows the unit's table: %v", n)
		}
	})
}

func TestCommandsNeedRun(t *testing.T) {
	d := New(nil, Config{})
	ctx := t.Context()
	for name, f := range map[string]func() error{
		"enable":  func() error { return d.Enable(ctx, []int{1}) },
		"inhibit": func() error { return d.Inhibit(ctx) },
		"reset":   func() error { return d.Reset(ctx) },
	} {
		if err := f(); !errors.Is(err, acceptor.ErrNotRunning) {
			t.Errorf("%s before Run: %v", name, err)
		}
	}
	if err := d.Enable(ctx, []int{24}); err == nil || errors.Is(err, acceptor.ErrNotRunning) {
		t.Errorf("Enable with a bad type: %v", err)
	}
	if err := d.Run(ctx, nil); err == nil {
		t.Error("Run with a nil handler")
	}
	for _, cfg := range []Config{
		{Denominations: acceptor.Denominations{24: {ValueMinor: 100, Currency: "CNY"}}},
		{Denominations: acceptor.Denominations{-1: {ValueMinor: 100, Currency: "CNY"}}},
		{HighSecurity: []int{30}},
		{HoldRefresh: HoldTime},
	} {
		if err := New(nil, cfg).Run(ctx, &acceptortest.Recorder{}); !errors.Is(err, ErrBadConfig) {
			t.Errorf("Run with %+v: %v, want ErrBadConfig", cfg, err)
		}
	}
	if _, ok := d.Identification(); ok {
		t.Error("identification before Run")
	}
}

func TestRunTwiceAndPortFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		host, unit := net.Pipe()
		d := New(host, Config{Denominations: testDenoms})
		rec := &acceptortest.Recorder{}
		errc := make(chan error, 1)
		go func() { errc <- d.Run(ctx, rec) }()
		// The unit side reads the first poll and then hangs up.
		buf := make([]byte, 6)
		if _, err := unit.Read(buf); err != nil {
			t.Fatal(err)
		}
		if err := d.Run(ctx, rec); !errors.Is(err, ErrAlreadyRunning) {
			t.Errorf("second Run: %v", err)
		}
		unit.Close()
		if err := <-errc; err == nil {
			t.Fatal("Run returned nil after the port failed")
		}
		if err := d.Inhibit(ctx); !errors.Is(err, acceptor.ErrNotRunning) {
			t.Errorf("Inhibit after Run: %v", err)
		}
	})
}

func TestReturnedWhenTheNextNoteFollowsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		pb, port := playbacktest.New(t, playbacktest.Script(
			running(),
			poll(StEscrow, 0),
			command(CmdReturn),
			poll(StReturning),
			poll(StAccepting), // RETURNED went by between two polls (a one-shot unit)
			poll(StEscrow, 2),
			command(CmdReturn),
			poll(StReturning),
			poll(StReturned, 2),
			shutdownSteps(),
		)...)
		d := New(port, Config{Denominations: testDenoms})
		rec := &acceptortest.Recorder{Decide: func(acceptor.Note, int) acceptor.Decision { return acceptor.Return }}
		rec.OnEvent = enableOnIdentified(t, ctx, d, acceptortest.CancelOn(cancel, acceptor.Returned, 2))
		runErr := d.Run(ctx, rec)
		pb.Check()
		acceptortest.NoRunError(t, runErr)
		r := rec.EventsOf(acceptor.Returned)
		if len(r) != 2 || r[0].Note != ten || !strings.Contains(r[0].Detail, "inferred") || r[1].Note != fifty {
			t.Fatalf("Returned events %v", r)
		}
		acceptortest.WantKinds(t, rec.Kinds(), acceptor.Disabled, acceptor.Identified, acceptor.Returning, acceptor.Returned,
			acceptor.Accepting, acceptor.Returning, acceptor.Returned)
	})
}

func TestOtherAddress(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		b2b := func(cmd byte, data ...byte) []byte {
			b, _ := Encode(AddrBillToBill, cmd, data...)
			return b
		}
		pb, port := playbacktest.New(t, playbacktest.Script(
			ask(b2b(CmdPoll), b2b(StDisabled)), silent(b2b(CmdAck)),
			ask(b2b(CmdGetStatus), b2b(0, 0, 0, 0, 0, 0)), silent(b2b(CmdAck)),
			ask(b2b(CmdIdentification), b2b(testIdent[0], testIdent[1:]...)), silent(b2b(CmdAck)),
			ask(b2b(CmdGetBillTable), append(fr(StIdling), b2b(testBillTable[0], testBillTable[1:]...)...)), // a stray frame for another address first
			silent(b2b(CmdAck)),
			ask(b2b(CmdSetSecurity, 0, 0, 0), b2b(CmdAck)),
			ask(b2b(CmdEnableBillTypes, 0, 0, 0, 0xFF, 0xFF, 0xFF), b2b(CmdAck)), // configure
			ask(b2b(CmdEnableBillTypes, 0, 0, 0, 0xFF, 0xFF, 0xFF), b2b(CmdAck)), // Inhibit
			ask(b2b(CmdEnableBillTypes, 0, 0, 0, 0xFF, 0xFF, 0xFF), b2b(CmdAck)), // shutdown
		)...)
		d := New(port, Config{Address: AddrBillToBill, Denominations: testDenoms})
		rec := &acceptortest.Recorder{}
		rec.OnEvent = func(e acceptor.Event) {
			if e.Kind == acceptor.Identified {
				go func() { // once configured
					if err := d.Inhibit(ctx); err == nil {
						cancel()
					}
				}()
			}
		}
		runErr := d.Run(ctx, rec)
		pb.Check()
		acceptortest.NoRunError(t, runErr)
		if d.Stats().Unexpected != 1 {
			t.Fatalf("stats %+v: the frame for address 3 must be skipped", d.Stats())
		}
	})
}

// A power-up report the handler cannot record (its journal write failed) must not be
// followed by a RESET, which makes the unit stack the note and forget it: the driver keeps
// the unit in its power-up state, asks again at every poll, refuses Reset meanwhile, and
// resets only once the report is recorded.
func TestPowerUpNotRecordedIsNotReset(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		pb, port := playbacktest.New(t, playbacktest.Script(
			running(),
			poll(StPowerUpBillInStacker), // refused: no RESET
			poll(StPowerUpBillInStacker), // refused again
			poll(StPowerUpBillInStacker), // recorded: now RESET
			command(CmdReset), poll(StInitialize),
			configSteps(false),
			pollStacked(2), hostAck(), // credit recovery
			poll(StDisabled),
			shutdownSteps(),
		)...)
		d := New(port, Config{Denominations: testDenoms})
		resetErr := make(chan error, 1)
		rec := &acceptortest.PowerUps{Record: func(e acceptor.Event, call int) error {
			if call == 1 {
				go func() { resetErr <- d.Reset(ctx) }()
			}
			if call < 3 {
				return errors.New("journal: input/output error")
			}
			return nil
		}}
		rec.OnEvent = enableOnIdentified(t, ctx, d, acceptortest.CancelOn(cancel, acceptor.Disabled, 2))
		runErr := d.Run(ctx, rec)
		pb.Check()
		acceptortest.NoRunError(t, runErr)
		if err := <-resetErr; !errors.Is(err, acceptor.ErrNotRecorded) {
			t.Fatalf("Reset while the power-up report is not recorded: %v, want ErrNotRecorded", err)
		}
		if calls := rec.PowerUpCalls(); len(calls) != 3 {
			t.Fatalf("PowerUp calls %v, want 3", calls)
		}
		if n := rec.Count(acceptor.PowerUpNoteInStacker); n != 1 {
			t.Fatalf("%d power-up events recorded, want 1", n)
		}
	})
}

// TestLateAnswerIsNotAcknowledged pins the wire side of a late answer: the POLL after STACK
// gets no answer in time, the driver re-sends it, and the unit's late STACKING arrives
// first, followed by STACKED, its answer to the re-sent POLL. The host's ACK would land on
// that STACKED (the unit's last reply) before Credited: no ACK may follow STACKING. The
// STACKED behind it is a credit report, not a stale frame to drop; the unit repeats it, the
// repeat is the same credit and gets the credit ACK.
func TestLateAnswerIsNotAcknowledged(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		pb, port := playbacktest.New(t, playbacktest.Script(
			running(),
			poll(StEscrow, 2),
			command(CmdStack),
			silent(pollReq), // the answer (STACKING) is late
			[]step{{Host: pollReq, Unit: [][]byte{fr(StStacking), fr(StStacked, 2)}}}, // no ACK
			pollStacked(2), hostAck(), // the repeat: ACK once credited, no second Credited
			poll(StIdling),
			shutdownSteps(),
		)...)
		d := New(port, Config{Denominations: testDenoms})
		rec := &acceptortest.Recorder{}
		rec.OnEvent = enableOnIdentified(t, ctx, d, acceptortest.CancelOn(cancel, acceptor.Idle, 1))
		runErr := d.Run(ctx, rec)
		pb.Check()
		acceptortest.NoRunError(t, runErr)
		if c := rec.CreditCalls(); len(c) != 1 || c[0] != fifty {
			t.Fatalf("Credited calls %v, want one for the 50", c)
		}
		if n := rec.Count(acceptor.Stacked); n != 1 {
			t.Fatalf("%d Stacked events, want 1: %v", n, rec.Kinds())
		}
	})
}

// TestPowerCycleBeforeAckIsNotAFinishedNote pins when Stacked is emitted (sim seed 777): the
// unit reported STACKED, the host credited it and sent the ACK, and the unit lost power
// before it took the ACK in. It powers up with the bill in its stacker and reports it again
// by credit recovery. Until the unit moves on from STACKED to a state of its own, the note
// is not finished: a Stacked event (the engine records the note finished on it) must not
// come before the power-up report, or the recovered report looks like a second note.
func TestPowerCycleBeforeAckIsNotAFinishedNote(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		pb, port := playbacktest.New(t, playbacktest.Script(
			running(),
			poll(StEscrow, 2),
			command(CmdStack),
			poll(StStacking),
			pollStacked(2), hostAck(), // credited and ACKed; the unit never took the ACK in
			poll(StPowerUpBillInStacker),
			command(CmdReset), poll(StInitialize),
			configSteps(false),
			pollStacked(2), hostAck(), // credit recovery: the same note
			poll(StDisabled),
			shutdownSteps(),
		)...)
		d := New(port, Config{Denominations: testDenoms})
		rec := &acceptortest.Recorder{}
		rec.OnEvent = enableOnIdentified(t, ctx, d, acceptortest.CancelOn(cancel, acceptor.Disabled, 2))
		runErr := d.Run(ctx, rec)
		pb.Check()
		acceptortest.NoRunError(t, runErr)
		kinds := rec.Kinds()
		powerUp, stacked := slices.Index(kinds, acceptor.PowerUpNoteInStacker), slices.Index(kinds, acceptor.Stacked)
		if powerUp < 0 || stacked < powerUp {
			t.Fatalf("events %v: Stacked before the power-up report, or no power-up report", kinds)
		}
		if n := rec.Count(acceptor.Stacked); n != 1 {
			t.Fatalf("%d Stacked events, want 1 (after the recovered report): %v", n, kinds)
		}
		if s := rec.EventsOf(acceptor.Stacked)[0]; s.Note != fifty {
			t.Errorf("Stacked note %v, want the 50", s.Note)
		}
	})
}
