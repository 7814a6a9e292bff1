package ssp

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/devices/acceptor/acceptortest"
	"github.com/kioskd/kioskd/devices/internal/playbacktest"
)

func TestStartupFromPowerUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		rec := &acceptortest.Recorder{}
		rec.OnEvent = acceptortest.CancelOn(cancel, acceptor.Identified, 1)
		b := &sb{}
		b.link().probe().poll(EvSlaveReset, EvDisabled)
		b.link().poll(EvDisabled).configure(true, testSerial).shutdown()
		pb, port := playbacktest.New(t, b.steps...)
		d := New(port, testConfig())
		err := d.Run(ctx, rec)
		pb.Check()
		acceptortest.NoRunError(t, err)
		acceptortest.WantKinds(t, rec.Kinds(), acceptor.PowerUp, acceptor.Disabled, acceptor.Identified)
		if len(rec.CreditCalls()) != 0 || len(rec.EscrowCalls()) != 0 {
			t.Fatalf("handler called for money during a plain power-up")
		}
		info := d.Info()
		if info.Protocol != "SSP" || info.Model != "banknote validator" || info.Firmware != "3.80" || info.Serial != "1873452" {
			t.Errorf("Info = %+v", info)
		}
		if n := info.Denominations[3]; n.ValueMinor != 1000 || n.Currency != "CNY" {
			t.Errorf("unit table entry 3 = %v", n)
		}
		if pe := rec.EventsOf(acceptor.ProtocolError); len(pe) != 0 {
			t.Errorf("unexpected protocol errors: %v", pe)
		}
	})
}

func TestStartupPowerUpWithNoteClearedIntoCashbox(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		rec := &acceptortest.Recorder{}
		rec.OnEvent = acceptortest.CancelOn(cancel, acceptor.Identified, 1)
		b := &sb{}
		b.link().probe().poll(EvSlaveReset)
		// The unit clears the note it had in its stack path: no plain PowerUp is reported.
		b.link().poll(EvClearedCashbox, 0x03, EvDisabled).configure(true, testSerial).shutdown()
		pb, port := playbacktest.New(t, b.steps...)
		err := New(port, testConfig()).Run(ctx, rec)
		pb.Check()
		acceptortest.NoRunError(t, err)
		acceptortest.WantKinds(t, rec.Kinds(), acceptor.PowerUpNoteInStacker, acceptor.Disabled, acceptor.Identified)
		e := rec.EventsOf(acceptor.PowerUpNoteInStacker)[0]
		if e.Note != (acceptor.Note{Code: 3, ValueMinor: 1000, Currency: "CNY"}) || e.Code != int(EvClearedCashbox) {
			t.Fatalf("power-up event %v", e)
		}
		if len(rec.CreditCalls()) != 0 {
			t.Fatal("a note cleared at power-up was credited")
		}
	})
}

func TestStartupAfterHostRestartWithNoteInEscrow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		rec := &acceptortest.Recorder{Decide: func(acceptor.Note, int) acceptor.Decision { return acceptor.Return }}
		rec.OnEvent = acceptortest.CancelOn(cancel, acceptor.Identified, 1)
		b := &sb{}
		b.link()
		// HOLD answers OK: a note the previous process never settled waits in escrow. No
		// poll may be sent before the handler decided, since a poll would stack it.
		b.ask(c(CmdHold), RespOK)
		b.ask(c(CmdReject), RespOK)
		b.poll(EvRejecting)
		b.poll(EvRejected).ask(c(CmdLastRejectCode), ok(RejectByHost)...)
		b.configure(true, testSerial).shutdown()
		pb, port := playbacktest.New(t, b.steps...)
		err := New(port, testConfig()).Run(ctx, rec)
		pb.Check()
		acceptortest.NoRunError(t, err)
		if e := rec.EscrowCalls(); len(e) != 1 || e[0] != (acceptor.Note{}) {
			t.Fatalf("Escrow calls %v, want one with Note{} (channel unknown after a restart)", e)
		}
		// The unit was left enabled by the previous process: idle once the note is back.
		acceptortest.WantKinds(t, rec.Kinds(), acceptor.Returning, acceptor.Returned, acceptor.Idle, acceptor.Identified)
	})
}

func TestStartupAfterHostRestartWithCreditPending(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		rec := &acceptortest.Recorder{}
		rec.OnEvent = acceptortest.CancelOn(cancel, acceptor.Identified, 1)
		b := &sb{}
		b.link().probe()
		// POLL WITH ACK: the unit repeats the credit the previous process never
		// acknowledged. It goes to Credited before anything is reconfigured.
		b.ask(c(CmdPollWithAck), ok(EvStacking, EvNoteCredit, 0x02)...)
		b.ask(c(CmdEventAck), RespOK)
		b.ask(c(CmdPollWithAck), ok(EvStacked, EvDisabled)...)
		b.configure(true, testSerial).shutdown()
		pb, port := playbacktest.New(t, b.steps...)
		cfg := testConfig()
		cfg.PollMode = PollAuto
		acceptortest.NoRunError(t, New(port, cfg).Run(ctx, rec))
		pb.Check()
		five := acceptor.Note{Code: 2, ValueMinor: 500, Currency: "CNY"}
		if c := rec.CreditCalls(); len(c) != 1 || c[0] != five {
			t.Fatalf("Credited calls %v", c)
		}
		acceptortest.WantKinds(t, rec.Kinds(), acceptor.Stacking, acceptor.Stacked, acceptor.Disabled, acceptor.Identified)
	})
}

func TestEscrowStackCredit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		b := (&sb{}).running()
		b.poll()
		b.poll(EvRead, 0x00)
		b.poll(EvRead, 0x03) // escrow: the handler says Stack, the next poll stacks it
		b.poll(EvStacking)
		b.poll(EvNoteCredit, 0x03, EvStacked)
		b.shutdown()
		pb, port := playbacktest.New(t, b.steps...)
		d := New(port, testConfig())
		rec := &acceptortest.Recorder{}
		rec.OnEvent = enableOnIdentified(t, ctx, d, acceptortest.CancelOn(cancel, acceptor.Idle, 2))
		err := d.Run(ctx, rec)
		pb.Check()
		acceptortest.NoRunError(t, err)
		ten := acceptor.Note{Code: 3, ValueMinor: 1000, Currency: "CNY"}
		if e := rec.EscrowCalls(); len(e) != 1 || e[0] != ten {
			t.Fatalf("Escrow calls %v", e)
		}
		if c := rec.CreditCalls(); len(c) != 1 || c[0] != ten {
			t.Fatalf("Credited calls %v", c)
		}
		acceptortest.WantKinds(t, rec.Kinds(), acceptor.Disabled, acceptor.Identified, acceptor.Idle, acceptor.Accepting,
			acceptor.Stacking, acceptor.Stacked, acceptor.Idle)
		if s := rec.EventsOf(acceptor.Stacked)[0]; s.Note != ten {
			t.Errorf("Stacked note %v", s.Note)
		}
	})
}

func TestEscrowReturn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		b := (&sb{}).running()
		b.poll(EvRead, 0x01)
		b.ask(c(CmdReject), RespOK)
		b.poll(EvRejecting)
		b.poll(EvRejecting)
		b.poll(EvRejected).ask(c(CmdLastRejectCode), ok(RejectByHost)...)
		b.shutdown()
		pb, port := playbacktest.New(t, b.steps...)
		d := New(port, testConfig())
		rec := &acceptortest.Recorder{Decide: func(acceptor.Note, int) acceptor.Decision { return acceptor.Return }}
		rec.OnEvent = enableOnIdentified(t, ctx, d, acceptortest.CancelOn(cancel, acceptor.Idle, 1))
		err := d.Run(ctx, rec)
		pb.Check()
		acceptortest.NoRunError(t, err)
		one := acceptor.Note{Code: 1, ValueMinor: 100, Currency: "CNY"}
		acceptortest.WantKinds(t, rec.Kinds(), acceptor.Disabled, acceptor.Identified, acceptor.Returning, acceptor.Returned, acceptor.Idle)
		if r := rec.EventsOf(acceptor.Returned)[0]; r.Note != one {
			t.Errorf("Returned %v", r)
		}
		if len(rec.CreditCalls()) != 0 {
			t.Fatal("a returned note was credited")
		}
	})
}

func TestHoldKeepsTheUnitWithinItsEscrowTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		var holds []time.Time
		mark := func() { holds = append(holds, time.Now()) }
		b := (&sb{}).running()
		b.poll(EvRead, 0x02)
		b.askThen(mark, c(CmdHold), RespOK)
		b.askThen(mark, c(CmdHold), RespOK)
		b.askThen(mark, c(CmdHold), RespOK)
		b.askThen(mark, c(CmdPoll), ok(EvStacking)...) // Stack at last: the poll takes the note
		b.poll(EvNoteCredit, 0x02, EvStacked)
		b.shutdown()
		pb, port := playbacktest.New(t, b.steps...)
		d := New(port, testConfig())
		var first time.Time
		rec := &acceptortest.Recorder{Decide: func(acceptor.Note, int) acceptor.Decision {
			if first.IsZero() {
				first = time.Now()
			}
			if time.Since(first) < 7*time.Second {
				return acceptor.Hold
			}
			return acceptor.Stack
		}}
		rec.OnEvent = enableOnIdentified(t, ctx, d, acceptortest.CancelOn(cancel, acceptor.Stacked, 1))
		err := d.Run(ctx, rec)
		pb.Check()
		acceptortest.NoRunError(t, err)
		for i := 1; i < len(holds); i++ {
			if gap := holds[i].Sub(holds[i-1]); gap > DefaultHoldInterval+DefaultPollInterval || gap >= UnitEscrowTimeout-holdMargin {
				t.Errorf("command %d came %v after the one before", i, gap)
			}
		}
		if n := len(rec.EscrowCalls()); n < 30 {
			t.Errorf("Escrow asked %d times while holding; want once per poll interval", n)
		}
		if c := rec.CreditCalls(); len(c) != 1 || c[0].Code != 2 {
			t.Fatalf("Credited calls %v", c)
		}
	})
}

func TestCreditedErrorWithPlainPoll(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		var d *Driver
		enableErr := make(chan error, 1)
		b := (&sb{}).running()
		b.poll(EvRead, 0x01)
		b.poll(EvStacking)
		b.poll(EvNoteCredit, 0x01, EvStacked) // Credited fails: the unit will not say it again
		b.ask(c(CmdDisable), RespOK)          // no more money while the journal cannot take it
		b.askThen(func() {                    // Credited is retried before every poll: fails again
			go func() { enableErr <- d.Enable(ctx, []int{1}) }()
		}, c(CmdPoll), ok(EvDisabled)...)
		b.poll(EvDisabled) // the third attempt succeeds: the state is reported again
		b.shutdown()
		pb, port := playbacktest.New(t, b.steps...)
		d = New(port, testConfig())
		rec := &acceptortest.Recorder{Credit: func(_ acceptor.Note, call int) error {
			if call < 3 {
				return errors.New("journal busy")
			}
			return nil
		}}
		rec.OnEvent = enableOnIdentified(t, ctx, d, acceptortest.CancelOn(cancel, acceptor.Disabled, 2))
		err := d.Run(ctx, rec)
		pb.Check()
		acceptortest.NoRunError(t, err)
		c := rec.CreditCalls()
		if len(c) < 3 || c[0].Code != 1 || c[2].Code != 1 {
			t.Fatalf("Credited calls %v, want three for channel 1", c)
		}
		f := rec.EventsOf(acceptor.Failure)
		if len(f) != 1 || f[0].Code != CodeCreditNotRecorded || f[0].Note.Code != 1 {
			t.Fatalf("failure events %v", f)
		}
		if err := <-enableErr; !errors.Is(err, ErrCreditPending) {
			t.Fatalf("Enable while a credit is pending: %v", err)
		}
		// No Disabled while the credit is pending: it would tell the caller all is well.
		acceptortest.WantKinds(t, rec.Kinds(), acceptor.Disabled, acceptor.Identified, acceptor.Stacking,
			acceptor.Failure, acceptor.Stacked, acceptor.Disabled)
	})
}

// runningAck is running() with POLL WITH ACK taken by the unit.
func (b *sb) runningAck() *sb {
	b.link().probe().ask(c(CmdPollWithAck), ok(EvDisabled)...).configure(true, testSerial)
	return b.ask(c(CmdSetInhibits, 0x05, 0x00), RespOK).ask(c(CmdEnable), RespOK)
}

func (b *sb) pollAck(events ...byte) *sb { return b.ask(c(CmdPollWithAck), ok(events...)...) }

func ackConfig() Config {
	cfg := testConfig()
	cfg.PollMode = PollAuto
	return cfg
}

func TestPollWithAckCreditWaitsForTheJournal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		b := (&sb{}).runningAck()
		b.pollAck(EvRead, 0x03)
		b.pollAck(EvStacking)
		b.pollAck(EvStacking, EvNoteCredit, 0x03)          // Credited fails: no EVENT ACK
		b.pollAck(EvStacking, EvNoteCredit, 0x03)          // repeated: Credited again, succeeds
		b.silent(c(CmdEventAck)...)                        // the EVENT ACK reply is lost...
		b.ask(c(CmdEventAck), RespOK)                      // ...so the same packet is re-sent
		b.ask(c(CmdGetSerial), serialReply(testSerial)...) // a re-send is a gap: same unit?
		b.pollAck(EvStacked)
		b.shutdown()
		pb, port := playbacktest.New(t, b.steps...)
		d := New(port, ackConfig())
		rec := &acceptortest.Recorder{Credit: func(_ acceptor.Note, call int) error {
			if call == 1 {
				return errors.New("journal busy")
			}
			return nil
		}}
		rec.OnEvent = enableOnIdentified(t, ctx, d, acceptortest.CancelOn(cancel, acceptor.Idle, 1))
		err := d.Run(ctx, rec)
		pb.Check()
		acceptortest.NoRunError(t, err)
		c := rec.CreditCalls()
		if len(c) != 2 || c[0].Code != 3 || c[1].Code != 3 {
			t.Fatalf("Credited calls %v, want 2 for channel 3", c)
		}
		// The repeated reply is one fact: one Stacking, one Stacked, no alarm.
		acceptortest.WantKinds(t, rec.Kinds(), acceptor.Disabled, acceptor.Identified, acceptor.Stacking, acceptor.Stacked, acceptor.Idle)
		if st := d.Stats(); st.Retries != 1 || st.Timeouts != 1 {
			t.Errorf("stats %+v", st)
		}
	})
}

func TestPollWithAckRefusedFallsBackToPoll(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		rec := &acceptortest.Recorder{}
		rec.OnEvent = acceptortest.CancelOn(cancel, acceptor.Identified, 1)
		b := &sb{}
		b.link().probe()
		b.ask(c(CmdPollWithAck), RespKeyNotSet) // an NV9USB wants POLL WITH ACK encrypted
		b.poll(EvDisabled).configure(true, testSerial).shutdown()
		pb, port := playbacktest.New(t, b.steps...)
		acceptortest.NoRunError(t, New(port, ackConfig()).Run(ctx, rec))
		pb.Check()
		if pe := rec.EventsOf(acceptor.ProtocolError); len(pe) != 0 {
			t.Fatalf("a refused POLL WITH ACK is not an error: %v", pe)
		}
	})
}

func TestEveryRejectCode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		b := (&sb{}).running()
		var codes []byte
		for code := byte(0); code <= 0x20; code++ {
			codes = append(codes, code)
			b.poll(EvRead, 0x00).poll(EvRejecting).poll(EvRejected).ask(c(CmdLastRejectCode), ok(code)...)
		}
		b.shutdown()
		pb, port := playbacktest.New(t, b.steps...)
		d := New(port, testConfig())
		rec := &acceptortest.Recorder{}
		// Code 0x08 (reject by host) is reported as Returned, every other as Rejected.
		rec.OnEvent = enableOnIdentified(t, ctx, d, acceptortest.CancelOn(cancel, acceptor.Idle, len(codes)))
		err := d.Run(ctx, rec)
		pb.Check()
		acceptortest.NoRunError(t, err)
		got := rec.EventsOf(acceptor.Rejected)
		if len(got) != len(codes)-1 || len(rec.EventsOf(acceptor.Returned)) != 1 {
			t.Fatalf("%d Rejected events for %d codes", len(got), len(codes))
		}
		i := 0
		for _, code := range codes {
			if code == RejectByHost {
				continue
			}
			if e := got[i]; e.Code != int(code) || e.Reason != RejectReason(code) || e.Detail != RejectName(code) {
				t.Errorf("reject %#x: event %v", code, e)
			}
			i++
		}
		if len(rec.CreditCalls())+len(rec.EscrowCalls()) != 0 {
			t.Fatal("handler asked about money for rejected notes")
		}
	})
}

func TestEveryEvent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		b := (&sb{}).running()
		b.poll(EvStackerFull).poll(EvStackerFull) // repeated: one event
		b.poll()                                  // full until the cashbox is emptied
		b.poll(EvCashboxRemoved).poll(EvCashboxRemoved)
		b.poll(EvCashboxReplaced)
		b.poll(EvCashboxRemoved, EvCashboxReplaced) // out and back between two polls
		b.poll(EvUnsafeJam).poll(EvSafeJam)         // still a jam: one event
		b.poll()
		b.poll(EvNotePathOpen)
		b.poll(EvChannelDisable)
		b.poll(EvFraudAttempt, 0x02, EvDisabled)
		b.poll(EvInitialising)
		b.poll(EvStacked, 0xDA, 0x01, EvNoteCredit, 0x01) // an unknown event: the rest is lost
		b.shutdown()
		pb, port := playbacktest.New(t, b.steps...)
		d := New(port, testConfig())
		rec := &acceptortest.Recorder{}
		rec.OnEvent = enableOnIdentified(t, ctx, d, acceptortest.CancelOn(cancel, acceptor.Idle, 4))
		err := d.Run(ctx, rec)
		pb.Check()
		acceptortest.NoRunError(t, err)
		acceptortest.WantKinds(t, rec.Kinds(), acceptor.Disabled, acceptor.Identified,
			acceptor.CassetteFull, acceptor.CassetteRemoved, acceptor.CassetteReplaced, acceptor.Idle,
			acceptor.CassetteRemoved, acceptor.CassetteReplaced, acceptor.Idle,
			acceptor.AcceptorJam, acceptor.Idle, acceptor.Failure, acceptor.Disabled,
			acceptor.Fraud, acceptor.Initializing, acceptor.Stacked, acceptor.ProtocolError, acceptor.Idle)
		if j := rec.EventsOf(acceptor.AcceptorJam)[0]; j.Code != int(EvUnsafeJam) {
			t.Errorf("jam %v", j)
		}
		if f := rec.EventsOf(acceptor.Failure)[0]; f.Code != int(EvNotePathOpen) {
			t.Errorf("note path open reported as %v", f)
		}
		if f := rec.EventsOf(acceptor.Fraud)[0]; f.Note.Code != 2 || f.Note.ValueMinor != 500 {
			t.Errorf("fraud %v", f)
		}
		if pe := rec.EventsOf(acceptor.ProtocolError)[0]; pe.Code != 0xDA {
			t.Errorf("protocol error %v", pe)
		}
		if len(rec.CreditCalls()) != 0 {
			t.Fatal("a credit behind an unknown event was acted on")
		}
		if dis := rec.EventsOf(acceptor.Disabled); dis[1].Code != int(EvChannelDisable) {
			t.Errorf("channel disable reported as %v", dis[1])
		}
	})
}

func TestLostPollReplyIsRepeatedNotLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		b := (&sb{}).running()
		b.poll(EvRead, 0x03)
		b.poll(EvStacking)
		// The unit answered the next poll with the credit, and the answer was lost four
		// times: the same packet (same flag) is re-sent, and the unit repeats the reply.
		poll := c(CmdPoll)
		b.silent(poll...).silent(poll...).silent(poll...).silent(poll...) // CommLost
		b.silent(poll...)                                                 // one attempt per slow poll
		b.poll(EvNoteCredit, 0x03, EvStacked)                             // CommRestored; handled once
		b.ask(c(CmdGetSerial), serialReply(testSerial)...)                // a gap: same unit?
		b.poll(EvRead, 0x00)
		b.shutdown()
		pb, port := playbacktest.New(t, b.steps...)
		cfg := testConfig()
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		d := New(port, cfg)
		rec := &acceptortest.Recorder{}
		var lostAt, restoredAt time.Time
		rec.OnEvent = enableOnIdentified(t, ctx, d, func(e acceptor.Event) {
			switch e.Kind {
			case acceptor.CommLost:
				lostAt = time.Now()
			case acceptor.CommRestored:
				restoredAt = time.Now()
			case acceptor.Accepting:
				cancel()
			}
		})
		err := d.Run(ctx, rec)
		pb.Check()
		acceptortest.NoRunError(t, err)
		if c := rec.CreditCalls(); len(c) != 1 || c[0].Code != 3 {
			t.Fatalf("Credited calls %v", c)
		}
		acceptortest.WantKinds(t, rec.Kinds(), acceptor.Disabled, acceptor.Identified, acceptor.Stacking,
			acceptor.CommLost, acceptor.CommRestored, acceptor.Stacked, acceptor.Idle, acceptor.Accepting)
		if gap := restoredAt.Sub(lostAt); gap < 2*DefaultLostPollInterval {
			t.Errorf("restored %v after lost; the slow rate was not used", gap)
		}
		if st := d.Stats(); st.Timeouts != 5 || st.Retries != 3 {
			t.Errorf("stats %+v", st)
		}
	})
}

func TestSwapDetectedAfterAGap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		var d *Driver
		enableErr, confirmErr := make(chan error, 1), make(chan error, 1)
		const other = 0x00ABCDEF
		b := (&sb{}).running()
		b.poll()
		b.silent(c(CmdPoll)...)
		b.poll() // answered after one re-send: a gap
		b.ask(c(CmdGetSerial), serialReply(other)...)
		b.askThen(func() {
			go func() {
				enableErr <- d.Enable(ctx, []int{1})
				confirmErr <- d.ConfirmSwap(ctx)
			}()
		}, c(CmdDisable), RespOK) // kept disabled
		// ConfirmSwap: the new unit is read like a new one.
		b.poll(EvDisabled).configure(true, other)
		b.shutdown()
		pb, port := playbacktest.New(t, b.steps...)
		d = New(port, testConfig())
		rec := &acceptortest.Recorder{}
		rec.OnEvent = enableOnIdentified(t, ctx, d, acceptortest.CancelOn(cancel, acceptor.Identified, 2))
		err := d.Run(ctx, rec)
		pb.Check()
		acceptortest.NoRunError(t, err)
		f := rec.EventsOf(acceptor.Failure)
		if len(f) != 1 || f[0].Code != CodeUnitSwapped || f[0].Detail != "unit swapped: serial 1873452 -> 11259375" {
			t.Fatalf("failure events %v", f)
		}
		if err := <-enableErr; !errors.Is(err, ErrUnitSwapped) {
			t.Fatalf("Enable after a swap: %v", err)
		}
		if err := <-confirmErr; err != nil {
			t.Fatalf("ConfirmSwap: %v", err)
		}
		if d.Info().Serial != "11259375" {
			t.Errorf("Info %+v", d.Info())
		}
	})
}

func TestExpectedSerialAtStartup(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		rec := &acceptortest.Recorder{}
		rec.OnEvent = acceptortest.CancelOn(cancel, acceptor.Identified, 1)
		b := &sb{}
		b.link().probe().poll(EvDisabled)
		b.ask(c(CmdSetupRequest), ok(AppendSetup(nil, testSetup)...)...)
		b.ask(c(CmdGetSerial), serialReply(testSerial)...)
		b.ask(c(CmdDisable), RespOK) // the swap keeps it disabled
		b.ask(c(CmdSetInhibits, 0x07, 0x00), RespOK).ask(c(CmdDisable), RespOK)
		b.shutdown()
		pb, port := playbacktest.New(t, b.steps...)
		cfg := testConfig()
		cfg.ExpectedSerial = 42
		acceptortest.NoRunError(t, New(port, cfg).Run(ctx, rec))
		pb.Check()
		if f := rec.EventsOf(acceptor.Failure); len(f) != 1 || f[0].Code != CodeUnitSwapped {
			t.Fatalf("failures %v", f)
		}
	})
}

func TestDamagedRepliesAreResynchronised(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		b := (&sb{}).running()
		poll := c(CmdPoll)
		idle := b.reply(CmdPoll, RespOK)
		b.raw(false, poll, badCRC(idle))                                // dropped; re-sent at once
		b.raw(false, poll, garbageBefore(idle)[:4])                     // noise ending in a lone STX
		b.raw(false, poll, frame(!b.flag(CmdPoll), RespOK, EvDisabled)) // a late answer to an older packet
		b.raw(true, poll, interrupted(idle), idle)                      // cut short by a restart
		b.ask(c(CmdGetSerial), serialReply(testSerial)...)              // re-sends were a gap
		escrow := b.reply(CmdPoll, RespOK, EvRead, 0x01)
		b.raw(true, poll, escrow[:1], escrow[1:3], escrow[3:]) // split
		b.ask(c(CmdReject), RespOK)
		b.poll(EvRejecting, EvRejected).ask(c(CmdLastRejectCode), ok(RejectByHost)...)
		b.shutdown()
		pb, port := playbacktest.New(t, b.steps...)
		d := New(port, testConfig())
		rec := &acceptortest.Recorder{Decide: func(acceptor.Note, int) acceptor.Decision { return acceptor.Return }}
		rec.OnEvent = enableOnIdentified(t, ctx, d, acceptortest.CancelOn(cancel, acceptor.Returned, 1))
		err := d.Run(ctx, rec)
		pb.Check()
		acceptortest.NoRunError(t, err)
		if e := rec.EscrowCalls(); len(e) != 1 || e[0].Code != 1 {
			t.Fatalf("escrow calls %v", e)
		}
		st := d.Stats()
		if st.BadFrames < 2 || st.GarbageBytes == 0 || st.Unexpected != 1 || st.Retries != 3 {
			t.Errorf("stats %+v", st)
		}
		if len(rec.EventsOf(acceptor.CommLost)) != 0 {
			t.Errorf("damaged replies within the retry budget were taken for CommLost")
		}
	})
}

func TestUnitResetWhileStacking(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		b := (&sb{}).running()
		b.poll(EvRead, 0x03)
		b.poll(EvStacking)
		b.poll(EvSlaveReset, EvDisabled) // the power went while stacking
		b.link()
		b.poll(EvClearedCashbox, 0x00, EvDisabled) // channel unknown to the unit
		b.configure(false, testSerial)             // setup is read once per Run
		b.poll(EvRead, 0x00)
		b.shutdown()
		pb, port := playbacktest.New(t, b.steps...)
		d := New(port, testConfig())
		rec := &acceptortest.Recorder{}
		rec.OnEvent = enableOnIdentified(t, ctx, d, acceptortest.CancelOn(cancel, acceptor.Accepting, 1))
		err := d.Run(ctx, rec)
		pb.Check()
		acceptortest.NoRunError(t, err)
		ps := rec.EventsOf(acceptor.PowerUpNoteInStacker)
		if len(ps) != 1 || ps[0].Note.Code != 3 || ps[0].Note.ValueMinor != 1000 {
			t.Fatalf("power-up events %v: the note being stacked must be named", ps)
		}
		if len(rec.CreditCalls()) != 0 {
			t.Fatal("a note without NOTE CREDIT was credited")
		}
		if len(rec.EventsOf(acceptor.PowerUp)) != 0 {
			t.Fatal("a plain PowerUp was reported besides the note cleared into the cashbox")
		}
	})
}

func TestResetRefusedWithNoteInPath(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		var d *Driver
		resetErr := make(chan error, 1)
		b := (&sb{}).running()
		b.askThen(func() { go func() { resetErr <- d.Reset(ctx) }() }, c(CmdPoll), ok(EvRead, 0x00)...)
		b.poll(EvRejecting)
		b.poll(EvRejected).ask(c(CmdLastRejectCode), ok(RejectAverageFail)...)
		b.ask(c(CmdReset), RespOK) // allowed again once the path is clear
		b.link()
		b.poll(EvSlaveReset, EvDisabled).link()
		b.poll(EvDisabled).configure(false, testSerial)
		b.poll(EvRead, 0x00)
		b.shutdown()
		pb, port := playbacktest.New(t, b.steps...)
		d = New(port, testConfig())
		rec := &acceptortest.Recorder{}
		accepting := acceptortest.CancelOn(cancel, acceptor.Accepting, 2)
		rec.OnEvent = enableOnIdentified(t, ctx, d, func(e acceptor.Event) {
			if e.Kind == acceptor.Rejected {
				go func() {
					if err := d.Reset(ctx); err != nil {
						t.Errorf("Reset when idle: %v", err)
					}
				}()
			}
			accepting(e)
		})
		err := d.Run(ctx, rec)
		pb.Check()
		acceptortest.NoRunError(t, err)
		if err := <-resetErr; !errors.Is(err, ErrWrongState) {
			t.Fatalf("Reset with a note being read: %v, want ErrWrongState", err)
		}
	})
}

func TestSetupMismatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		unit := testSetup
		unit.Channels = []Channel{{1, 1, "CNY"}, {2, 2, "CNY"}, {3, 0, "CNY"}, {4, 20, "CNY"}} // 2 yuan on 2, none on 3, 20 on 4
		rec := &acceptortest.Recorder{}
		rec.OnEvent = func(e acceptor.Event) {
			if e.Kind == acceptor.ProtocolError {
				cancel()
			}
		}
		b := &sb{}
		b.link().probe().poll(EvDisabled)
		b.ask(c(CmdSetupRequest), ok(AppendSetup(nil, unit)...)...)
		b.ask(c(CmdGetSerial), serialReply(testSerial)...).ask(c(CmdSetInhibits, 0x07, 0x00), RespOK).ask(c(CmdDisable), RespOK)
		b.shutdown()
		pb, port := playbacktest.New(t, b.steps...)
		d := New(port, testConfig())
		err := d.Run(ctx, rec)
		pb.Check()
		acceptortest.NoRunError(t, err)
		pe := rec.EventsOf(acceptor.ProtocolError)
		if len(pe) != 1 {
			t.Fatalf("protocol errors %v", pe)
		}
		for _, want := range []string{"channel 2: unit 200 CNY, configured 500 CNY", "channel 4: unit 2000 CNY, not configured", "channel 3: configured 1000 CNY, unit has none"} {
			if !strings.Contains(pe[0].Detail, want) {
				t.Errorf("detail %q lacks %q", pe[0].Detail, want)
			}
		}
		if n := d.Info().Denominations[2]; n.ValueMinor != 200 {
			t.Errorf("Info shows the unit's table: %v", n)
		}
	})
}

func TestKeyNotSetWithoutEncryption(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		rec := &acceptortest.Recorder{}
		rec.OnEvent = acceptortest.CancelOn(cancel, acceptor.ProtocolError, 2)
		b := &sb{}
		b.ask(c(CmdSync), RespOK).ask(c(CmdHostProtocol, 7), RespKeyNotSet) // encryption mandatory
		b.probe()
		b.ask(c(CmdPoll), RespKeyNotSet)
		b.ask(c(CmdDisable), RespKeyNotSet) // Run's last word
		pb, port := playbacktest.New(t, b.steps...)
		err := New(port, testConfig()).Run(ctx, rec)
		pb.Check()
		acceptortest.NoRunError(t, err)
		pe := rec.EventsOf(acceptor.ProtocolError)
		if len(pe) != 2 || pe[0].Code != int(CmdHostProtocol) || pe[1].Code != int(RespKeyNotSet) ||
			!strings.Contains(pe[1].Detail, "eSSP") {
			t.Fatalf("protocol errors %v: want the refused version, then one KEY NOT SET report", pe)
		}
	})
}

func TestCommandsNeedRun(t *testing.T) {
	d := New(nil, Config{})
	ctx := t.Context()
	for name, f := range map[string]func() error{
		"enable":   func() error { return d.Enable(ctx, []int{1}) },
		"inhibit":  func() error { return d.Inhibit(ctx) },
		"reset":    func() error { return d.Reset(ctx) },
		"counters": func() error { _, err := d.Counters(ctx); return err },
		"confirm":  func() error { return d.ConfirmSwap(ctx) },
	} {
		if err := f(); !errors.Is(err, acceptor.ErrNotRunning) {
			t.Errorf("%s before Run: %v", name, err)
		}
	}
	if err := d.Enable(ctx, []int{17}); err == nil || errors.Is(err, acceptor.ErrNotRunning) {
		t.Errorf("Enable with a bad channel: %v", err)
	}
	if err := d.Run(ctx, nil); err == nil {
		t.Error("Run with a nil handler")
	}
}

func TestConfigValidate(t *testing.T) {
	good := Config{Denominations: testDenoms, Encrypt: true, FixedKey: 0x0102030405060708}
	if err := good.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for name, tc := range map[string]struct {
		mod  func(*Config)
		want error
	}{
		"default key":      {func(c *Config) { c.FixedKey = DefaultFixedKey }, ErrDefaultKey},
		"no key":           {func(c *Config) { c.FixedKey = 0 }, ErrNoFixedKey},
		"address":          {func(c *Config) { c.Address = 0x7E }, ErrBadConfig},
		"protocol":         {func(c *Config) { c.ProtocolVersion = 5 }, ErrBadConfig},
		"prime bits":       {func(c *Config) { c.PrimeBits = 8 }, ErrBadConfig},
		"hold too slow":    {func(c *Config) { c.HoldInterval = 7 * time.Second }, ErrBadConfig},
		"too many retries": {func(c *Config) { c.MaxRetries = 8 }, ErrBadConfig},
		"channel 0":        {func(c *Config) { c.Denominations = acceptor.Denominations{0: {}} }, ErrBadConfig},
		"poll mode":        {func(c *Config) { c.PollMode = 9 }, ErrBadConfig},
	} {
		c := good
		tc.mod(&c)
		if err := c.Validate(); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	c := good
	c.FixedKey, c.AllowDefaultKey = DefaultFixedKey, true
	if err := c.Validate(); err != nil {
		t.Errorf("default key allowed for simulation: %v", err)
	}
	c.AllowDefaultKey = false
	if err := New(nil, c).Run(t.Context(), &acceptortest.Recorder{}); !errors.Is(err, ErrDefaultKey) {
		t.Errorf("Run with the default key: %v", err)
	}
}

func TestRunTwiceAndPortFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		host, unit := net.Pipe()
		d := New(host, testConfig())
		rec := &acceptortest.Recorder{}
		errc := make(chan error, 1)
		go func() { errc <- d.Run(ctx, rec) }()
		// The unit side reads the first SYNC and then hangs up.
		buf := make([]byte, 6)
		if _, err := io.ReadFull(unit, buf); err != nil {
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

func TestAddressIsConfigurable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		at := func(seq bool, data ...byte) []byte {
			b, _ := Encode(Frame{Address: 0x10, Seq: seq, Data: data})
			return b
		}
		sync := at(true, CmdSync)
		steps := []step{
			// A reply from the validator at address 0 is not an answer for address 0x10.
			{Host: sync, Unit: [][]byte{frame(true, RespOK)}},
			{Host: sync, Unit: [][]byte{at(true, RespOK)}},
			{Host: at(false, CmdHostProtocol, 7), Unit: [][]byte{at(false, RespFail)}},
			{Host: at(true, CmdHostProtocol, 6), Unit: [][]byte{at(true, RespFail)}},
			{Host: at(false, CmdDisable), Unit: [][]byte{at(false, RespOK)}},
		}
		pb, port := playbacktest.New(t, steps...)
		cfg := testConfig()
		cfg.Address = 0x10
		d := New(port, cfg)
		rec := &acceptortest.Recorder{OnEvent: acceptortest.CancelOn(cancel, acceptor.ProtocolError, 1)}
		err := d.Run(ctx, rec)
		pb.Check()
		acceptortest.NoRunError(t, err)
		if st := d.Stats(); st.Unexpected != 1 || st.Retries != 1 {
			t.Fatalf("stats %+v", st)
		}
	})
}

// A unit that goes silent in the middle of a reply: after InterByteTimeout the partial
// frame is dropped quietly (not taken for a broken frame when the next STX arrives), and
// the reply that follows is decoded at once, without a timeout or a re-send.
func TestTornFrameDroppedAfterSilence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		b := (&sb{}).running()
		idle := b.reply(CmdPoll, RespOK)
		b.raw(true, c(CmdPoll), idle[:3], idle)
		last := &b.steps[len(b.steps)-1]
		last.Pause, last.Then = 2*DefaultInterByteTimeout, cancel
		b.shutdown()
		pb, port := playbacktest.New(t, b.steps...)
		d := New(port, testConfig())
		rec := &acceptortest.Recorder{}
		rec.OnEvent = enableOnIdentified(t, ctx, d, nil)
		err := d.Run(ctx, rec)
		pb.Check()
		acceptortest.NoRunError(t, err)
		if st := d.Stats(); st.Timeouts != 0 || st.Retries != 0 || st.BadFrames != 0 || st.GarbageBytes != 3 {
			t.Errorf("stats %+v: want the torn frame dropped as 3 bytes of garbage, nothing re-sent", st)
		}
	})
}

// The unit reports NOTE CLEARED INTO CASHBOX once. A handler that records power-up reports
// (acceptor.PowerUpRecorder) and cannot (its journal write failed) gets the report again,
// as a credit it failed to record does: the driver holds it, raises the alarm, and retries
// before every poll until it is recorded; the note is never silently dropped.
func TestClearedIntoCashboxNotRecordedIsRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		rec := &acceptortest.PowerUps{Record: func(e acceptor.Event, call int) error {
			if call < 2 {
				return errors.New("journal: input/output error")
			}
			return nil
		}}
		rec.OnEvent = acceptortest.CancelOn(cancel, acceptor.Disabled, 1)
		b := &sb{}
		b.link().probe().poll(EvSlaveReset)
		b.link().poll(EvClearedCashbox, 0x03, EvDisabled).configure(true, testSerial)
		b.poll(EvDisabled) // recorded before this poll: the state is reported again
		b.shutdown()
		pb, port := playbacktest.New(t, b.steps...)
		err := New(port, testConfig()).Run(ctx, rec)
		pb.Check()
		acceptortest.NoRunError(t, err)
		calls := rec.PowerUpCalls()
		if len(calls) != 2 || calls[1].Kind != acceptor.PowerUpNoteInStacker || calls[1].Note.Code != 3 {
			t.Fatalf("PowerUp calls %v, want the cleared note twice", calls)
		}
		if f := rec.EventsOf(acceptor.Failure); len(f) != 1 || f[0].Code != CodeCreditNotRecorded {
			t.Fatalf("failure events %v, want the not-recorded alarm", f)
		}
		if n := rec.Count(acceptor.PowerUpNoteInStacker); n != 1 {
			t.Fatalf("%d power-up events recorded, want 1", n)
		}
	})
}
