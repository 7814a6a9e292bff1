package id003

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/devices/acceptor/acceptortest"
	"github.com/kioskd/kioskd/devices/internal/playbacktest"
)

var ackStep = step{Host: fr(CmdAck)} // the host's ACK to VEND VALID gets no answer

func TestStartupFromPowerUp(t *testing.T) {
	for _, tc := range []struct {
		status byte
		kind   acceptor.Kind
	}{{StPowerUp, acceptor.PowerUp}, {StPowerUpAcc, acceptor.PowerUpNoteInAcceptor}, {StPowerUpStk, acceptor.PowerUpNoteInStacker}} {
		t.Run(fmt.Sprintf("%#02x", tc.status), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				rec := &acceptortest.Recorder{}
				rec.OnEvent = acceptortest.CancelOn(cancel, acceptor.Disabled, 1)
				pb, port := playbacktest.New(t, playbacktest.Script(
					[]step{poll(tc.status), playbacktest.Ask(fr(CmdReset), fr(CmdAck)), poll(StInitialize)},
					configSteps(true),
					[]step{poll(StDisabled)},
					shutdownSteps(),
				)...)
				d := New(port, Config{Denominations: testDenoms})
				acceptortest.NoRunError(t, d.Run(ctx, rec))
				pb.Check()
				acceptortest.WantKinds(t, rec.Kinds(), tc.kind, acceptor.Initializing, acceptor.Identified, acceptor.Disabled)
				if pu := rec.EventsOf(tc.kind)[0]; pu.Note != (acceptor.Note{}) {
					t.Errorf("power-up event names note %v though this process saw no escrow", pu.Note)
				}
				if len(rec.CreditCalls()) != 0 || len(rec.EscrowCalls()) != 0 {
					t.Fatalf("handler called for money during a plain power-up")
				}
				info := d.Info()
				if info.Model != "i(CHN)100-SS" || info.Firmware != "ID003-05V310-00" || info.Protocol != "ID-003" {
					t.Errorf("Info = %+v", info)
				}
				if n := info.Denominations[0x63]; n.ValueMinor != 1000 || n.Currency != "CNY" {
					t.Errorf("unit table entry 0x63 = %v", n)
				}
				if len(rec.EventsOf(acceptor.ProtocolError)) != 0 {
					t.Errorf("unexpected protocol errors: %v", rec.EventsOf(acceptor.ProtocolError))
				}
			})
		})
	}
}

func TestStartupFromVendValidAfterHostRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		rec := &acceptortest.Recorder{}
		rec.OnEvent = acceptortest.CancelOn(cancel, acceptor.Disabled, 1)
		pb, port := playbacktest.New(t, playbacktest.Script(
			// No RESET: the unit is in the middle of a credit the previous process never ACKed.
			[]step{poll(StVendValid), ackStep, poll(StStacked), poll(StIdling)},
			configSteps(true),
			[]step{poll(StDisabled)},
			shutdownSteps(),
		)...)
		acceptortest.NoRunError(t, New(port, Config{Denominations: testDenoms}).Run(ctx, rec))
		pb.Check()
		if c := rec.CreditCalls(); len(c) != 1 || c[0] != (acceptor.Note{}) {
			t.Fatalf("Credited calls %v, want one with Note{} (denomination unknown after restart)", c)
		}
		acceptortest.WantKinds(t, rec.Kinds(), acceptor.Stacked, acceptor.Idle, acceptor.Identified, acceptor.Disabled)
	})
}

func TestStartupFromEscrow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		rec := &acceptortest.Recorder{}
		rec.OnEvent = acceptortest.CancelOn(cancel, acceptor.Disabled, 1)
		pb, port := playbacktest.New(t, playbacktest.Script(
			[]step{
				poll(StEscrow, 0x62),
				playbacktest.Ask(fr(CmdStack1), fr(CmdAck)),
				poll(StStacking),
				poll(StVendValid), ackStep,
				poll(StStacked),
				poll(StIdling),
			},
			configSteps(true),
			[]step{poll(StDisabled)},
			shutdownSteps(),
		)...)
		acceptortest.NoRunError(t, New(port, Config{Denominations: testDenoms}).Run(ctx, rec))
		pb.Check()
		five := acceptor.Note{Code: 0x62, ValueMinor: 500, Currency: "CNY"}
		if e := rec.EscrowCalls(); len(e) != 1 || e[0] != five {
			t.Fatalf("Escrow calls %v", e)
		}
		if c := rec.CreditCalls(); len(c) != 1 || c[0] != five {
			t.Fatalf("Credited calls %v", c)
		}
		acceptortest.WantKinds(t, rec.Kinds(), acceptor.Stacking, acceptor.Stacked, acceptor.Idle, acceptor.Identified, acceptor.Disabled)
		if s := rec.EventsOf(acceptor.Stacked)[0]; s.Note != five {
			t.Errorf("Stacked note %v", s.Note)
		}
	})
}

func TestStartupWaitsForNoteInPath(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		rec := &acceptortest.Recorder{}
		rec.OnEvent = acceptortest.CancelOn(cancel, acceptor.Disabled, 1)
		pb, port := playbacktest.New(t, playbacktest.Script(
			// Returning and accepting are polled until they resolve; nothing else is sent.
			[]step{poll(StReturning), poll(StReturning), poll(StIdling)},
			configSteps(true),
			[]step{poll(StDisabled)},
			shutdownSteps(),
		)...)
		acceptortest.NoRunError(t, New(port, Config{Denominations: testDenoms}).Run(ctx, rec))
		pb.Check()
		acceptortest.WantKinds(t, rec.Kinds(), acceptor.Returning, acceptor.Returned, acceptor.Idle, acceptor.Identified, acceptor.Disabled)
	})
}

func TestStartupResetsAFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		rec := &acceptortest.Recorder{}
		rec.OnEvent = acceptortest.CancelOn(cancel, acceptor.Disabled, 1)
		pb, port := playbacktest.New(t, playbacktest.Script(
			[]step{poll(StFailure, 0xA2), playbacktest.Ask(fr(CmdReset), fr(CmdAck)), poll(StInitialize)},
			configSteps(true),
			[]step{poll(StDisabled)},
			shutdownSteps(),
		)...)
		acceptortest.NoRunError(t, New(port, Config{Denominations: testDenoms}).Run(ctx, rec))
		pb.Check()
		f := rec.EventsOf(acceptor.Failure)
		if len(f) != 1 || f[0].Code != 0xA2 || !strings.Contains(f[0].Detail, "stack motor") {
			t.Fatalf("failure events %v", f)
		}
	})
}

// running is the start of a script for a unit found idle and inhibited: configure, then
// Enable(0x61, 0x63) from the test.
func running() []step {
	return playbacktest.Script(
		[]step{poll(StDisabled)},
		configSteps(true),
		[]step{
			playbacktest.Ask(fr(CmdSetDenoms, 0xFA, 0xFF), fr(CmdSetDenoms, 0xFA, 0xFF)),
			playbacktest.Ask(fr(CmdSetInhibit, 0x00), fr(CmdSetInhibit, 0x00)),
		},
	)
}

// enableOnIdentified makes the handler call Enable(0x61, 0x63) once the driver is configured.
func enableOnIdentified(t *testing.T, ctx context.Context, d *Driver, next func(acceptor.Event)) func(acceptor.Event) {
	return func(e acceptor.Event) {
		if e.Kind == acceptor.Identified {
			go func() {
				if err := d.Enable(ctx, []int{0x61, 0x63}); err != nil {
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
			[]step{
				poll(StIdling),
				poll(StAccepting),
				poll(StEscrow, 0x63),
				playbacktest.Ask(fr(CmdStack1), fr(CmdAck)),
				poll(StStacking),
				poll(StVendValid), ackStep,
				poll(StStacked),
				poll(StIdling),
			},
			shutdownSteps(),
		)...)
		d := New(port, Config{Denominations: testDenoms})
		rec := &acceptortest.Recorder{}
		rec.OnEvent = enableOnIdentified(t, ctx, d, acceptortest.CancelOn(cancel, acceptor.Idle, 2))
		acceptortest.NoRunError(t, d.Run(ctx, rec))
		pb.Check()
		ten := acceptor.Note{Code: 0x63, ValueMinor: 1000, Currency: "CNY"}
		if c := rec.CreditCalls(); len(c) != 1 || c[0] != ten {
			t.Fatalf("Credited calls %v", c)
		}
		acceptortest.WantKinds(t, rec.Kinds(), acceptor.Disabled, acceptor.Identified, acceptor.Idle, acceptor.Accepting,
			acceptor.Stacking, acceptor.Stacked, acceptor.Idle)
	})
}

func TestEscrowReturn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		pb, port := playbacktest.New(t, playbacktest.Script(
			running(),
			[]step{
				poll(StIdling),
				poll(StAccepting),
				poll(StEscrow, 0x61),
				playbacktest.Ask(fr(CmdReturn), fr(CmdAck)),
				poll(StReturning),
				poll(StIdling),
			},
			shutdownSteps(),
		)...)
		d := New(port, Config{Denominations: testDenoms})
		rec := &acceptortest.Recorder{Decide: func(acceptor.Note, int) acceptor.Decision { return acceptor.Return }}
		rec.OnEvent = enableOnIdentified(t, ctx, d, acceptortest.CancelOn(cancel, acceptor.Idle, 2))
		acceptortest.NoRunError(t, d.Run(ctx, rec))
		pb.Check()
		if c := rec.CreditCalls(); len(c) != 0 {
			t.Fatalf("Credited calls %v for a returned note", c)
		}
		acceptortest.WantKinds(t, rec.Kinds(), acceptor.Disabled, acceptor.Identified, acceptor.Idle, acceptor.Accepting,
			acceptor.Returning, acceptor.Returned, acceptor.Idle)
		if r := rec.EventsOf(acceptor.Returned)[0]; r.Note.Code != 0x61 || r.Note.ValueMinor != 100 {
			t.Errorf("Returned note %v", r.Note)
		}
	})
}

func TestEscrowUnknownCode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		pb, port := playbacktest.New(t, playbacktest.Script(
			running(),
			[]step{
				poll(StEscrow, 0x68),
				playbacktest.Ask(fr(CmdReturn), fr(CmdAck)),
				poll(StReturning),
				poll(StIdling),
			},
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
		acceptortest.NoRunError(t, d.Run(ctx, rec))
		pb.Check()
		if e := rec.EscrowCalls(); len(e) != 1 || e[0] != (acceptor.Note{Code: 0x68}) {
			t.Fatalf("Escrow calls %v, want the bare code", e)
		}
	})
}

func TestHoldAsksAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		pb, port := playbacktest.New(t, playbacktest.Script(
			running(),
			[]step{
				poll(StEscrow, 0x63),
				playbacktest.Ask(fr(CmdHold), fr(CmdAck)),
				poll(StHolding),
				playbacktest.Ask(fr(CmdHold), fr(CmdAck)), // still Hold: HOLD is re-sent
				poll(StHolding),
				playbacktest.Ask(fr(CmdStack1), fr(CmdAck)),
				poll(StStacking),
				poll(StVendValid), ackStep,
				poll(StStacked),
				poll(StIdling),
			},
			shutdownSteps(),
		)...)
		d := New(port, Config{Denominations: testDenoms})
		rec := &acceptortest.Recorder{Decide: func(_ acceptor.Note, call int) acceptor.Decision {
			if call < 3 {
				return acceptor.Hold
			}
			return acceptor.Stack
		}}
		rec.OnEvent = enableOnIdentified(t, ctx, d, acceptortest.CancelOn(cancel, acceptor.Idle, 1))
		acceptortest.NoRunError(t, d.Run(ctx, rec))
		pb.Check()
		if e := rec.EscrowCalls(); len(e) != 3 || e[2].Code != 0x63 {
			t.Fatalf("Escrow calls %v, want 3 for the same note", e)
		}
		if c := rec.CreditCalls(); len(c) != 1 || c[0].Code != 0x63 {
			t.Fatalf("Credited calls %v", c)
		}
	})
}

func TestEscrowNotAskedTwice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		stack := fr(CmdStack1)
		pb, port := playbacktest.New(t, playbacktest.Script(
			running(),
			[]step{
				poll(StEscrow, 0x63),
				playbacktest.Silent(stack), playbacktest.Silent(stack), playbacktest.Silent(stack), playbacktest.Silent(stack), // 1 + MaxRetries
				poll(StEscrow, 0x63),
				playbacktest.Ask(stack, fr(CmdAck)), // re-sent without asking the handler again
				poll(StEscrow, 0x63),                // the unit is slow: the acknowledged STACK is not re-sent
				poll(StStacking),
				poll(StVendValid), ackStep,
				poll(StStacked),
				poll(StIdling),
			},
			shutdownSteps(),
		)...)
		d := New(port, Config{Denominations: testDenoms})
		rec := &acceptortest.Recorder{}
		rec.OnEvent = enableOnIdentified(t, ctx, d, acceptortest.CancelOn(cancel, acceptor.Idle, 1))
		acceptortest.NoRunError(t, d.Run(ctx, rec))
		pb.Check()
		if e := rec.EscrowCalls(); len(e) != 1 {
			t.Fatalf("Escrow called %d times for one episode", len(e))
		}
		if len(rec.EventsOf(acceptor.CommLost)) != 0 {
			t.Fatalf("a failed STACK must not be reported as CommLost")
		}
	})
}

func TestCreditedErrorIsRetriedWithoutAck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		pb, port := playbacktest.New(t, playbacktest.Script(
			running(),
			[]step{
				poll(StEscrow, 0x61),
				playbacktest.Ask(fr(CmdStack1), fr(CmdAck)),
				poll(StVendValid), // Credited fails: no ACK
				poll(StVendValid), // Credited again, succeeds: ACK
				ackStep,
				poll(StVendValid), // the unit answered before it processed the ACK: ACK again, no Credited
				ackStep,
				poll(StStacked),
				poll(StIdling),
			},
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
		acceptortest.NoRunError(t, d.Run(ctx, rec))
		pb.Check()
		c := rec.CreditCalls()
		if len(c) != 2 || c[0].Code != 0x61 || c[1].Code != 0x61 {
			t.Fatalf("Credited calls %v, want 2 for note 0x61", c)
		}
	})
}

func TestEveryRejectReason(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		var steps []step
		var want []acceptor.RejectReason
		codes := []byte{}
		for c := byte(0x71); c <= 0x7F; c++ {
			codes = append(codes, c)
			steps = append(steps, poll(StAccepting), poll(StRejecting, c), poll(StIdling))
			want = append(want, RejectReason(c))
		}
		pb, port := playbacktest.New(t, playbacktest.Script(running(), steps, shutdownSteps())...)
		d := New(port, Config{Denominations: testDenoms})
		rec := &acceptortest.Recorder{}
		rec.OnEvent = enableOnIdentified(t, ctx, d, acceptortest.CancelOn(cancel, acceptor.Idle, len(codes)))
		acceptortest.NoRunError(t, d.Run(ctx, rec))
		pb.Check()
		got := rec.EventsOf(acceptor.Rejected)
		if len(got) != len(codes) {
			t.Fatalf("%d Rejected events, want %d", len(got), len(codes))
		}
		for i, e := range got {
			if e.Code != int(codes[i]) || e.Reason != want[i] {
				t.Errorf("reject %#x: event %v, want reason %v", codes[i], e, want[i])
			}
		}
		// Spot-check the mapping against the REJECTING codes in the package's device facts (doc.go).
		for code, r := range map[byte]acceptor.RejectReason{
			0x71: acceptor.RejectInsertion, 0x74: acceptor.RejectMultiple, 0x79: acceptor.RejectInhibited,
			0x7C: acceptor.RejectRemainingInStacker, 0x7F: acceptor.RejectCounterfeit, 0x7A: acceptor.RejectUnknown,
		} {
			if RejectReason(code) != r {
				t.Errorf("RejectReason(%#x) = %v, want %v", code, RejectReason(code), r)
			}
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
		pb, port := playbacktest.New(t, playbacktest.Script(
			running(),
			[]step{
				poll(StStackerFull), poll(StStackerFull), // repeated status: one event
				poll(StStackerOpen),
				poll(StInitialize), // cassette back
				poll(StAcceptorJam),
				poll(StStackerJam),
				poll(StPause),
				poll(StCheated),
				poll(StFailure, 0xA6),
				poll(StFailure, 0xB2),                                                                   // a different failure code is a new fact
				playbacktest.Ask(statusReq, fr(StCommError)), playbacktest.Ask(statusReq, fr(StIdling)), // COMM ERROR: re-sent at once
				playbacktest.Ask(statusReq, fr(StInvalidCommand)),
				poll(0x3F), // a status this driver does not know
				poll(StIdling),
			},
			shutdownSteps(),
		)...)
		d := New(port, Config{Denominations: testDenoms})
		rec := &acceptortest.Recorder{}
		rec.OnEvent = enableOnIdentified(t, ctx, d, acceptortest.CancelOn(cancel, acceptor.Idle, 2))
		acceptortest.NoRunError(t, d.Run(ctx, rec))
		pb.Check()
		acceptortest.WantKinds(t, rec.Kinds(), acceptor.Disabled, acceptor.Identified,
			acceptor.CassetteFull, acceptor.CassetteRemoved, acceptor.CassetteReplaced, acceptor.Initializing,
			acceptor.AcceptorJam, acceptor.StackerJam, acceptor.Paused, acceptor.Fraud,
			acceptor.Failure, acceptor.Failure,
			acceptor.ProtocolError, acceptor.Idle, acceptor.ProtocolError, acceptor.ProtocolError, acceptor.Idle)
		f := rec.EventsOf(acceptor.Failure)
		if f[0].Code != 0xA6 || f[1].Code != 0xB2 || !strings.Contains(f[1].Detail, "RAM") {
			t.Errorf("failure events %v", f)
		}
		pe := rec.EventsOf(acceptor.ProtocolError)
		if pe[0].Code != int(StCommError) || pe[1].Code != int(StInvalidCommand) || pe[2].Code != 0x3F {
			t.Errorf("protocol errors %v", pe)
		}
		if len(rec.EventsOf(acceptor.CommLost)) != 0 {
			t.Errorf("answers were taken for silence")
		}
		if st := d.Stats(); st.CommErrors != 1 || st.Refused != 1 {
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
			[]step{
				poll(StIdling),
				playbacktest.Silent(statusReq), playbacktest.Silent(statusReq), playbacktest.Silent(statusReq), playbacktest.Silent(statusReq), // CommLost
				playbacktest.Silent(statusReq), // one attempt per slow poll while lost
				playbacktest.Silent(statusReq),
				poll(StIdling), // CommRestored
				poll(StDisabled),
			},
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
		acceptortest.NoRunError(t, d.Run(ctx, rec))
		pb.Check()
		if len(rec.EventsOf(acceptor.CommLost)) != 1 || len(rec.EventsOf(acceptor.CommRestored)) != 1 {
			t.Fatalf("events %v", rec.Kinds())
		}
		// Two failed slow polls and the answered one: three LostPollIntervals at least.
		if gap := restoredAt.Sub(lostAt); gap < 3*DefaultLostPollInterval {
			t.Errorf("restored %v after lost; the slow poll rate was not used", gap)
		}
		if st := d.Stats(); st.Timeouts != 6 || st.Retries != 3 {
			t.Errorf("stats %+v", st)
		}
	})
}

func TestDamagedRepliesAreResynchronised(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		idle := fr(StIdling)
		escrow := fr(StEscrow, 0x61)
		pb, port := playbacktest.New(t, playbacktest.Script(
			running(),
			[]step{
				playbacktest.Ask(statusReq, badCRC(idle)),                              // dropped; the request is re-sent at once
				playbacktest.Ask(statusReq, garbageBefore(idle)),                       // noise skipped
				playbacktest.Ask(statusReq, wrongLNG(idle)),                            // waits for a byte that never comes: timeout
				playbacktest.Ask(statusReq, idle),                                      // the stale partial frame was dropped
				{Host: statusReq, Unit: [][]byte{escrow[:1], escrow[1:3], escrow[3:]}}, // split
				playbacktest.Ask(fr(CmdReturn), fr(CmdAck)),
				{Host: statusReq, Unit: [][]byte{{0xFC}, {0x05}, {0x18}, fr(StReturning)[3:]}},
				poll(StIdling),
			},
			shutdownSteps(),
		)...)
		d := New(port, Config{Denominations: testDenoms})
		rec := &acceptortest.Recorder{Decide: func(acceptor.Note, int) acceptor.Decision { return acceptor.Return }}
		rec.OnEvent = enableOnIdentified(t, ctx, d, acceptortest.CancelOn(cancel, acceptor.Returned, 1))
		acceptortest.NoRunError(t, d.Run(ctx, rec))
		pb.Check()
		if e := rec.EscrowCalls(); len(e) != 1 || e[0].Code != 0x61 {
			t.Fatalf("escrow calls %v", e)
		}
		st := d.Stats()
		if st.BadFrames < 1 || st.GarbageBytes == 0 || st.Timeouts != 1 || st.Retries != 2 {
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
			[]step{
				poll(StEscrow, 0x63),
				playbacktest.Ask(fr(CmdStack1), fr(CmdAck)),
				poll(StStacking),
				poll(StPowerUpStk), // power cut while stacking
				playbacktest.Ask(fr(CmdReset), fr(CmdAck)),
				poll(StInitialize),
			},
			configSteps(false), // version and table are read once per Run
			[]step{poll(StDisabled)},
			shutdownSteps(),
		)...)
		d := New(port, Config{Denominations: testDenoms})
		rec := &acceptortest.Recorder{}
		rec.OnEvent = enableOnIdentified(t, ctx, d, acceptortest.CancelOn(cancel, acceptor.Disabled, 2))
		acceptortest.NoRunError(t, d.Run(ctx, rec))
		pb.Check()
		ps := rec.EventsOf(acceptor.PowerUpNoteInStacker)
		if len(ps) != 1 || ps[0].Note.Code != 0x63 || ps[0].Note.ValueMinor != 1000 {
			t.Fatalf("power-up events %v: the note being stacked must be named", ps)
		}
		if len(rec.CreditCalls()) != 0 {
			t.Fatal("a note without VEND VALID was credited")
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
			[]step{
				poll(StEscrow, 0x63),
				playbacktest.Ask(fr(CmdHold), fr(CmdAck)),
				poll(StHolding),
				playbacktest.Ask(fr(CmdReturn), fr(CmdAck)),
				poll(StReturning),
				poll(StIdling),
				playbacktest.Ask(fr(CmdReset), fr(CmdAck)), // allowed again once the path is clear
				poll(StInitialize),
			},
			configSteps(false),
			[]step{poll(StDisabled)},
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
			if e.Kind == acceptor.Returned {
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
		acceptortest.NoRunError(t, d.Run(ctx, rec))
		pb.Check()
		if err := <-resetErr; !errors.Is(err, ErrWrongState) {
			t.Fatalf("Reset with a note in escrow: %v, want ErrWrongState", err)
		}
	})
}

func TestCurrencyTableMismatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		table := []byte{
			0x61, 0x2D, 0x01, 0x00, // 1 CNY: matches
			0x62, 0x2D, 0x02, 0x00, // 2 CNY: configured as 5
			0x64, 0x2D, 0x02, 0x01, // 20 CNY: not configured
		}
		pb, port := playbacktest.New(t, playbacktest.Script(
			[]step{poll(StDisabled)},
			configSteps(false),
			[]step{
				playbacktest.Ask(fr(CmdVersion), fr(CmdVersion, []byte(testVersion)...)),
				playbacktest.Ask(fr(CmdCurrency), fr(CmdCurrency, table...)),
			},
			shutdownSteps(),
		)...)
		d := New(port, Config{Denominations: testDenoms})
		rec := &acceptortest.Recorder{}
		rec.OnEvent = func(e acceptor.Event) {
			if e.Kind == acceptor.ProtocolError {
				cancel()
			}
		}
		acceptortest.NoRunError(t, d.Run(ctx, rec))
		pb.Check()
		pe := rec.EventsOf(acceptor.ProtocolError)
		if len(pe) != 1 {
			t.Fatalf("protocol errors %v", pe)
		}
		for _, want := range []string{"code 0x62: unit 200 CNY, configured 500 CNY", "code 0x64: unit 2000 CNY, not configured", "code 0x63: configured 1000 CNY, unit has none"} {
			if !strings.Contains(pe[0].Detail, want) {
				t.Errorf("detail %q lacks %q", pe[0].Detail, want)
			}
		}
		if n := d.Info().Denominations[0x62]; n.ValueMinor != 200 {
			t.Errorf("Info shows the unit's table: %v", n)
		}
	})
}

func TestCommandsNeedRun(t *testing.T) {
	d := New(nil, Config{})
	ctx := t.Context()
	for name, f := range map[string]func() error{
		"enable":  func() error { return d.Enable(ctx, []int{0x61}) },
		"inhibit": func() error { return d.Inhibit(ctx) },
		"reset":   func() error { return d.Reset(ctx) },
	} {
		if err := f(); !errors.Is(err, acceptor.ErrNotRunning) {
			t.Errorf("%s before Run: %v", name, err)
		}
	}
	if err := d.Enable(ctx, []int{0x20}); err == nil || errors.Is(err, acceptor.ErrNotRunning) {
		t.Errorf("Enable with a bad code: %v", err)
	}
	if err := d.Run(ctx, nil); err == nil {
		t.Error("Run with a nil handler")
	}
}

func TestRunTwiceAndPortFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		host, unit := net.Pipe()
		d := New(host, Config{Denominations: testDenoms})
		rec := &acceptortest.Recorder{}
		errc := runDriver(ctx, d, rec)
		// The unit side reads the first poll and then hangs up.
		buf := make([]byte, 5)
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
			[]step{
				poll(StEscrow, 0x61),
				playbacktest.Ask(fr(CmdReturn), fr(CmdAck)),
				poll(StReturning),
				poll(StAccepting), // the customer pushed the next note in between two polls
				poll(StEscrow, 0x63),
				playbacktest.Ask(fr(CmdReturn), fr(CmdAck)),
				poll(StReturning),
				poll(StIdling),
			},
			shutdownSteps(),
		)...)
		d := New(port, Config{Denominations: testDenoms})
		rec := &acceptortest.Recorder{Decide: func(acceptor.Note, int) acceptor.Decision { return acceptor.Return }}
		rec.OnEvent = enableOnIdentified(t, ctx, d, acceptortest.CancelOn(cancel, acceptor.Returned, 2))
		acceptortest.NoRunError(t, d.Run(ctx, rec))
		pb.Check()
		r := rec.EventsOf(acceptor.Returned)
		if len(r) != 2 || r[0].Note.Code != 0x61 || r[1].Note.Code != 0x63 {
			t.Fatalf("Returned events %v", r)
		}
		acceptortest.WantKinds(t, rec.Kinds(), acceptor.Disabled, acceptor.Identified, acceptor.Returning, acceptor.Returned,
			acceptor.Accepting, acceptor.Returning, acceptor.Returned, acceptor.Idle)
	})
}

// A unit that goes silent in the middle of a reply must not leave the driver waiting for
// the rest: after InterByteTimeout the partial frame is dropped, and the reply that follows
// is decoded at once, without a timeout or a re-send.
func TestTornFrameDroppedAfterSilence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		torn := []byte{Sync, 0x20, StIdling} // announces 32 bytes, then nothing
		pb, port := playbacktest.New(t, playbacktest.Script(
			running(),
			[]step{{Host: statusReq, Unit: [][]byte{torn, fr(StIdling)}, Pause: 2 * DefaultInterByteTimeout, Then: cancel}},
			shutdownSteps(),
		)...)
		d := New(port, Config{Denominations: testDenoms})
		rec := &acceptortest.Recorder{}
		rec.OnEvent = enableOnIdentified(t, ctx, d, nil)
		acceptortest.NoRunError(t, d.Run(ctx, rec))
		pb.Check()
		if st := d.Stats(); st.Timeouts != 0 || st.Retries != 0 || st.BadFrames != 0 || st.GarbageBytes != uint64(len(torn)) {
			t.Errorf("stats %+v: want the torn frame dropped as %d bytes of garbage, nothing re-sent", st, len(torn))
		}
	})
}

// A power-up report the handler cannot record (its journal write failed) must not be
// followed by a RESET, which makes the unit stack the note and forget it: the driver keeps
// the unit in its power-up state, asks again at every poll, refuses Reset meanwhile, and
// resets only once the report is recorded (seed 107442 of the kiosk simulation).
func TestPowerUpNotRecordedIsNotReset(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		pb, port := playbacktest.New(t, playbacktest.Script(
			running(),
			[]step{
				poll(StPowerUpStk), // refused: no RESET
				poll(StPowerUpStk), // refused again
				poll(StPowerUpStk), // recorded: now RESET
				playbacktest.Ask(fr(CmdReset), fr(CmdAck)),
				poll(StInitialize),
			},
			configSteps(false),
			[]step{poll(StDisabled)},
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
		acceptortest.NoRunError(t, d.Run(ctx, rec))
		pb.Check()
		if err := <-resetErr; !errors.Is(err, acceptor.ErrNotRecorded) {
			t.Fatalf("Reset while the power-up report is not recorded: %v, want ErrNotRecorded", err)
		}
		calls := rec.PowerUpCalls()
		if len(calls) != 3 || calls[2].Kind != acceptor.PowerUpNoteInStacker {
			t.Fatalf("PowerUp calls %v, want 3 reports of the note in the stacker", calls)
		}
		if n := rec.Count(acceptor.PowerUpNoteInStacker); n != 1 {
			t.Fatalf("%d power-up events recorded, want 1", n)
		}
	})
}
