package ccnetsim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/devices/acceptor/ccnet"
	"github.com/kioskd/kioskd/hw-sim/linespeed"
)

var denoms = acceptor.Denominations{
	0: {ValueMinor: 1000, Currency: "RUB"},
	1: {ValueMinor: 5000, Currency: "RUB"},
	2: {ValueMinor: 10000, Currency: "RUB"},
	3: {ValueMinor: 50000, Currency: "RUB"},
}

// host drives the emulator through its byte protocol over a net.Pipe.
type host struct {
	t    testing.TB
	conn net.Conn
	dec  ccnet.Decoder
}

func start(t *testing.T, cfg Config) (*Sim, *host) {
	t.Helper()
	if cfg.Denominations == nil {
		cfg.Denominations = denoms
	}
	s := New(cfg)
	a, b := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, b) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		a.Close()
	})
	return s, &host{t: t, conn: a}
}

func (h *host) write(b []byte) {
	h.t.Helper()
	h.conn.SetWriteDeadline(time.Now().Add(time.Second))
	if _, err := h.conn.Write(b); err != nil {
		h.t.Fatalf("write % X: %v", b, err)
	}
}

// read returns the next frame, or ok=false when none comes within a second.
func (h *host) read() (ccnet.Frame, bool) {
	h.t.Helper()
	buf := make([]byte, 512)
	for {
		f, err := h.dec.Next()
		if err == nil {
			return f, true
		}
		if !errors.Is(err, ccnet.ErrIncomplete) {
			continue // damage is counted in h.dec.Stats(); the fault tests look there
		}
		h.conn.SetReadDeadline(time.Now().Add(time.Second))
		n, err := h.conn.Read(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return ccnet.Frame{}, false
		}
		if err != nil {
			h.t.Fatalf("read: %v", err)
		}
		h.dec.Feed(buf[:n])
	}
}

func enc(cmd byte, data ...byte) []byte {
	b, _ := ccnet.Encode(ccnet.AddrBillValidator, cmd, data...)
	return b
}

// send sends a command and returns the answer, without acknowledging it.
func (h *host) send(cmd byte, data ...byte) ccnet.Frame {
	h.t.Helper()
	h.write(enc(cmd, data...))
	f, ok := h.read()
	if !ok {
		h.t.Fatalf("no answer to %02X % X", cmd, data)
	}
	return f
}

func (h *host) expect(got ccnet.Frame, payload ...byte) {
	h.t.Helper()
	if !bytes.Equal(got.Payload(), payload) {
		h.t.Fatalf("got %v, want % X", got, payload)
	}
}

func (h *host) ack() {
	h.t.Helper()
	h.write(enc(ccnet.CmdAck))
}

// poll sends POLL, checks the answer and acknowledges it.
func (h *host) poll(payload ...byte) {
	h.t.Helper()
	h.expect(h.send(ccnet.CmdPoll), payload...)
	h.ack()
}

// command sends a command that the unit must acknowledge with ACK.
func (h *host) command(cmd byte, data ...byte) {
	h.t.Helper()
	h.expect(h.send(cmd, data...), ccnet.CmdAck)
}

// refused sends a command that the unit must refuse with ILLEGAL COMMAND, and ACKs that.
func (h *host) refused(cmd byte, data ...byte) {
	h.t.Helper()
	h.expect(h.send(cmd, data...), ccnet.RepIllegalCommand)
	h.ack()
}

// up resets the unit and enables types 0..3 with escrow.
func (h *host) up() {
	h.t.Helper()
	h.poll(ccnet.StPowerUp)
	h.command(ccnet.CmdReset)
	h.poll(ccnet.StInitialize)
	h.poll(ccnet.StDisabled)
	h.command(ccnet.CmdEnableBillTypes, 0, 0, 0x0F, 0xFF, 0xFF, 0xFF)
	h.poll(ccnet.StIdling)
}

func TestPowerUpWantsReset(t *testing.T) {
	s, h := start(t, Config{AssetNumber: [7]byte{9, 8, 7, 6, 5, 4, 3}})
	h.poll(ccnet.StPowerUp)
	h.poll(ccnet.StPowerUp)
	h.refused(ccnet.CmdStack)
	if err := s.InsertNote(0); !errors.Is(err, ErrPoweredUp) {
		t.Fatalf("InsertNote before RESET: %v", err)
	}
	f := h.send(ccnet.CmdIdentification) // answered in POWER UP
	h.ack()
	id, err := ccnet.ParseIdentification(f.Payload())
	if err != nil || id.PartNumber != DefaultPartNumber || id.SerialNumber != DefaultSerialNumber || id.AssetNumber != [7]byte{9, 8, 7, 6, 5, 4, 3} {
		t.Fatalf("identification %+v %v", id, err)
	}
	h.refused(ccnet.CmdSetSecurity, 0x00) // wrong length
	h.command(ccnet.CmdSetSecurity, 0x00, 0x00, 0x01)
	h.command(ccnet.CmdReset)
	h.poll(ccnet.StInitialize)
	h.poll(ccnet.StDisabled)
	if err := s.InsertNote(0); !errors.Is(err, ErrInhibited) {
		t.Fatalf("InsertNote while disabled: %v", err)
	}
	h.command(ccnet.CmdEnableBillTypes, 0, 0, 0x05, 0xFF, 0xFF, 0xFF)
	h.poll(ccnet.StIdling)
	h.refused(ccnet.CmdIdentification) // not in IDLING
	h.refused(ccnet.CmdGetBillTable)
	h.expect(h.send(ccnet.CmdGetStatus), 0, 0, 0x05, 0, 0, 0x01)
	h.ack()
	h.refused(0x99)
	h.command(ccnet.CmdEnableBillTypes, 0, 0, 0, 0xFF, 0xFF, 0xFF)
	h.poll(ccnet.StDisabled)
	f = h.send(ccnet.CmdGetBillTable)
	h.ack()
	entries, err := ccnet.ParseBillTable(f.Payload())
	if err != nil || len(entries) != ccnet.NumBillTypes {
		t.Fatalf("bill table %v %v", entries, err)
	}
	for code, want := range denoms {
		if n, ok := entries[code].Note(code); !ok || n.ValueMinor != want.ValueMinor || n.Currency != "RUB" {
			t.Errorf("type %d: %v %v", code, n, ok)
		}
	}
	if string(entries[0].Country[:]) != "RUS" || entries[4].Used() {
		t.Errorf("entries %v", entries[:5])
	}
}

func TestNoteStackedAndAcked(t *testing.T) {
	// In a bubble: checking that the ACK gets no answer waits on the fake clock.
	synctest.Test(t, func(t *testing.T) {
		s, h := start(t, Config{})
		h.up()
		if err := s.InsertNote(2); err != nil {
			t.Fatal(err)
		}
		if err := s.InsertNote(1); !errors.Is(err, ErrBusy) {
			t.Fatalf("second note: %v", err)
		}
		h.poll(ccnet.StAccepting)
		h.poll(ccnet.StEscrow, 2)
		h.poll(ccnet.StEscrow, 2)
		h.command(ccnet.CmdStack)
		h.refused(ccnet.CmdStack)
		h.poll(ccnet.StStacking)
		if len(s.Cassette()) != 0 {
			t.Fatal("note counted before the point of no return")
		}
		h.expect(h.send(ccnet.CmdPoll), ccnet.StStacked, 2) // no ACK: repeated
		h.expect(h.send(ccnet.CmdPoll), ccnet.StStacked, 2)
		c := s.Cassette()
		if len(c) != 1 || c[0].Acked || c[0].Via != "stacked" || !s.State().AwaitingAck {
			t.Fatalf("cassette during an unacknowledged STACKED: %+v", c)
		}
		h.ack()
		if _, ok := h.read(); ok {
			t.Fatal("the host's ACK was answered")
		}
		h.poll(ccnet.StIdling)
		c = s.Cassette()
		if len(c) != 1 || !c[0].Acked || c[0].Code != 2 || c[0].ValueMinor != 10000 || c[0].Cassette != 1 {
			t.Fatalf("cassette: %+v", c)
		}
	})
}

func TestOneShotEvents(t *testing.T) {
	s, h := start(t, Config{OneShotEvents: true})
	h.up()
	s.InsertNote(3)
	h.poll(ccnet.StAccepting)
	h.poll(ccnet.StEscrow, 3)
	h.command(ccnet.CmdStack)
	h.poll(ccnet.StStacking)
	h.expect(h.send(ccnet.CmdPoll), ccnet.StStacked, 3) // not acknowledged
	h.poll(ccnet.StIdling)                              // moved on anyway
	if c := s.Cassette(); len(c) != 1 || c[0].Acked {
		t.Fatalf("cassette %+v", c)
	}
	s.InsertNote(0)
	h.poll(ccnet.StAccepting)
	h.poll(ccnet.StEscrow, 0)
	h.command(ccnet.CmdReturn)
	h.poll(ccnet.StReturning)
	h.poll(ccnet.StReturned, 0)
	h.poll(ccnet.StIdling)
}

func TestNAKRepeatsTheLastReply(t *testing.T) {
	s, h := start(t, Config{})
	h.up()
	s.InsertNote(1)
	h.expect(h.send(ccnet.CmdPoll), ccnet.StAccepting)
	for range 3 {
		h.expect(h.send(ccnet.CmdNak), ccnet.StAccepting) // the same reply; the note does not move twice
	}
	h.ack()
	h.poll(ccnet.StEscrow, 1)
	h.command(ccnet.CmdStack)
	h.expect(h.send(ccnet.CmdNak), ccnet.CmdAck) // the ACK to STACK, again; STACK not re-executed
	h.poll(ccnet.StStacking)
	h.expect(h.send(ccnet.CmdPoll), ccnet.StStacked, 1)
	h.expect(h.send(ccnet.CmdNak), ccnet.StStacked, 1)
	h.ack()
	h.poll(ccnet.StIdling)
	if c := s.Cassette(); len(c) != 1 || !c[0].Acked {
		t.Fatalf("cassette %+v", c)
	}
	// A damaged host frame is answered by NAK.
	b := enc(ccnet.CmdPoll)
	b[len(b)-1] ^= 0xFF
	h.write(b)
	f, _ := h.read()
	h.expect(f, ccnet.CmdNak)
}

func TestReturnHoldAndEscrowTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, h := start(t, Config{})
		h.up()
		s.InsertNote(1)
		h.poll(ccnet.StAccepting)
		h.poll(ccnet.StEscrow, 1)
		h.command(ccnet.CmdReturn)
		h.poll(ccnet.StReturning)
		h.poll(ccnet.StReturned, 1)
		h.poll(ccnet.StIdling)

		s.InsertNote(1)
		h.poll(ccnet.StAccepting)
		h.poll(ccnet.StEscrow, 1)
		time.Sleep(DefaultEscrowTimeout - time.Second)
		h.command(ccnet.CmdHold) // restarts the timeout
		time.Sleep(DefaultEscrowTimeout - time.Second)
		h.poll(ccnet.StHolding)
		time.Sleep(time.Second)
		h.poll(ccnet.StReturning) // the unit gives the note back on its own
		h.poll(ccnet.StReturned, 1)
		h.poll(ccnet.StIdling)
		if len(s.Cassette()) != 0 {
			t.Fatalf("returned notes counted: %+v", s.Cassette())
		}
	})
}

func TestRejectsAndEscrowOff(t *testing.T) {
	s, h := start(t, Config{})
	h.up()
	s.ForceReject(0x6C)
	s.InsertNote(0)
	h.poll(ccnet.StAccepting)
	h.poll(ccnet.StRejecting, 0x6C)
	h.poll(ccnet.StIdling)
	s.InsertNote(9) // unknown to the unit
	h.poll(ccnet.StAccepting)
	h.poll(ccnet.StRejecting, 0x65)
	h.poll(ccnet.StIdling)
	h.command(ccnet.CmdEnableBillTypes, 0, 0, 0x0E, 0, 0, 0x0C) // type 0 off; escrow for 2, 3 only
	s.InsertNote(0)
	h.poll(ccnet.StAccepting)
	h.poll(ccnet.StRejecting, 0x68)
	h.poll(ccnet.StIdling)
	s.InsertNote(1) // escrow off: straight to the cassette
	h.poll(ccnet.StAccepting)
	h.poll(ccnet.StStacking)
	h.poll(ccnet.StStacked, 1)
	h.poll(ccnet.StIdling)
	if got := s.State(); len(got.EnabledTypes) != 3 || got.EnabledTypes[0] != 1 || len(got.EscrowTypes) != 2 {
		t.Fatalf("state %+v", got)
	}
	if c := s.Cassette(); len(c) != 1 || c[0].Code != 1 || !c[0].Acked {
		t.Fatalf("cassette %+v", c)
	}
}

func TestPowerCycleWithNoteInPath(t *testing.T) {
	t.Run("escrow: returned, never counted", func(t *testing.T) {
		s, h := start(t, Config{})
		h.up()
		s.InsertNote(2)
		h.poll(ccnet.StAccepting)
		h.poll(ccnet.StEscrow, 2)
		if err := s.PowerCycle(Auto); err != nil {
			t.Fatal(err)
		}
		h.poll(ccnet.StPowerUpBillInValidator)
		h.poll(ccnet.StPowerUpBillInValidator)
		h.command(ccnet.CmdReset)
		h.poll(ccnet.StInitialize)
		h.poll(ccnet.StDisabled)
		if len(s.Cassette()) != 0 {
			t.Fatalf("cassette %+v", s.Cassette())
		}
	})
	t.Run("stacking: stacked on reset, credit recovery", func(t *testing.T) {
		s, h := start(t, Config{})
		h.up()
		s.InsertNote(2)
		h.poll(ccnet.StAccepting)
		h.poll(ccnet.StEscrow, 2)
		h.command(ccnet.CmdStack)
		if err := s.PowerCycle(NoNote); !errors.Is(err, ErrBusy) {
			t.Fatalf("PowerCycle(NoNote) with a note: %v", err)
		}
		s.PowerCycle(Auto)
		h.poll(ccnet.StPowerUpBillInStacker)
		if len(s.Cassette()) != 0 {
			t.Fatal("counted before RESET")
		}
		h.command(ccnet.CmdReset)
		c := s.Cassette()
		if len(c) != 1 || c[0].Acked || c[0].Via != "power_up_recovery" || c[0].Code != 2 {
			t.Fatalf("cassette %+v", c)
		}
		h.poll(ccnet.StInitialize)
		h.poll(ccnet.StStacked, 2) // reported once INITIALIZE is over
		h.poll(ccnet.StDisabled)
		if c := s.Cassette(); len(c) != 1 || !c[0].Acked {
			t.Fatalf("cassette %+v", c)
		}
	})
	t.Run("stacking: no credit recovery", func(t *testing.T) {
		s, h := start(t, Config{NoCreditRecovery: true})
		h.up()
		s.InsertNote(3)
		h.poll(ccnet.StAccepting)
		h.poll(ccnet.StEscrow, 3)
		h.command(ccnet.CmdStack)
		h.poll(ccnet.StStacking)
		s.PowerCycle(Auto)
		h.poll(ccnet.StPowerUpBillInStacker)
		h.command(ccnet.CmdReset)
		h.poll(ccnet.StInitialize)
		h.poll(ccnet.StDisabled)
		if c := s.Cassette(); len(c) != 1 || c[0].Acked || c[0].Code != 3 {
			t.Fatalf("cassette %+v", c)
		}
	})
	t.Run("unacknowledged STACKED: 0x12, counted once", func(t *testing.T) {
		s, h := start(t, Config{})
		h.up()
		s.InsertNote(0)
		h.poll(ccnet.StAccepting)
		h.poll(ccnet.StEscrow, 0)
		h.command(ccnet.CmdStack)
		h.poll(ccnet.StStacking)
		h.expect(h.send(ccnet.CmdPoll), ccnet.StStacked, 0)
		s.PowerCycle(Auto)
		h.poll(ccnet.StPowerUpBillInStacker)
		h.command(ccnet.CmdReset)
		h.poll(ccnet.StInitialize)
		h.poll(ccnet.StStacked, 0)
		h.poll(ccnet.StDisabled)
		c := s.Cassette()
		if len(c) != 1 || !c[0].Acked || c[0].Via != "stacked" {
			t.Fatalf("cassette %+v", c)
		}
	})
	t.Run("forced places", func(t *testing.T) {
		s, h := start(t, Config{NoCreditRecovery: true})
		if err := s.PowerCycle(InStacker); !errors.Is(err, ErrNoNote) {
			t.Fatalf("PowerCycle(InStacker) without a note: %v", err)
		}
		if err := s.PowerCycleWithNote(InStacker, 1); err != nil {
			t.Fatal(err)
		}
		h.poll(ccnet.StPowerUpBillInStacker)
		h.command(ccnet.CmdReset)
		if c := s.Cassette(); len(c) != 1 || c[0].Code != 1 || c[0].ValueMinor != 5000 {
			t.Fatalf("cassette %+v", c)
		}
		if err := s.PowerCycleWithNote(InAcceptor, 0); err != nil {
			t.Fatal(err)
		}
		h.poll(ccnet.StPowerUpBillInValidator)
		h.command(ccnet.CmdReset)
		if c := s.Cassette(); len(c) != 1 {
			t.Fatalf("a note in the validator was counted: %+v", c)
		}
		if err := s.PowerCycleWithNote(Auto, 0); err == nil {
			t.Fatal("PowerCycleWithNote(Auto) accepted")
		}
	})
}

func TestFaultStates(t *testing.T) {
	s, h := start(t, Config{CassetteCapacity: 1})
	h.up()
	s.InsertNote(3)
	h.poll(ccnet.StAccepting)
	h.poll(ccnet.StEscrow, 3)
	h.command(ccnet.CmdStack)
	h.poll(ccnet.StStacking)
	h.poll(ccnet.StStacked, 3)
	h.poll(ccnet.StCassetteFull) // capacity 1 reached
	if err := s.InsertNote(0); !errors.Is(err, ErrCassetteFull) {
		t.Fatalf("insert when full: %v", err)
	}
	f := h.send(ccnet.CmdIdentification) // answered in a failure state
	h.ack()
	if _, err := ccnet.ParseIdentification(f.Payload()); err != nil {
		t.Fatalf("identification in CASSETTE FULL: %v", err)
	}
	if err := s.PullCassette(); err != nil {
		t.Fatal(err)
	}
	if err := s.PullCassette(); !errors.Is(err, ErrCassetteState) {
		t.Fatalf("pull twice: %v", err)
	}
	h.poll(ccnet.StCassetteOut)
	if err := s.InsertNote(0); !errors.Is(err, ErrCassetteOut) {
		t.Fatalf("insert with the cassette out: %v", err)
	}
	s.ReplaceCassette()
	h.poll(ccnet.StInitialize)
	h.poll(ccnet.StIdling) // the cassette's initialisation keeps the host's settings
	if st := s.State(); st.CassetteNumber != 2 || st.CassetteCount != 0 || !st.CassetteIn {
		t.Fatalf("state %+v", st)
	}
	s.Jam(false)
	h.poll(ccnet.StValidatorJammed)
	if err := s.InsertNote(0); !errors.Is(err, ErrFault) {
		t.Fatalf("insert while jammed: %v", err)
	}
	s.ClearJam()
	h.poll(ccnet.StInitialize)
	s.Jam(true)
	h.poll(ccnet.StCassetteJammed)
	if s.State().Jam != "cassette" {
		t.Fatal("jam not in the snapshot")
	}
	s.ClearJam()
	h.poll(ccnet.StInitialize)
	h.poll(ccnet.StIdling)
	s.Pause(true)
	h.poll(ccnet.StPause)
	s.Pause(false)
	h.poll(ccnet.StIdling)
	s.Cheat()
	h.poll(ccnet.StCheated)
	h.command(ccnet.CmdReset)
	h.poll(ccnet.StInitialize)
	s.Fail(0x52)
	h.poll(ccnet.StFailure, 0x52)
	h.poll(ccnet.StFailure, 0x52)
	h.command(ccnet.CmdReset)
	h.poll(ccnet.StInitialize)
	h.poll(ccnet.StDisabled)
	s.SetCassetteFull(true)
	h.poll(ccnet.StCassetteFull)
	s.SetCassetteFull(false)
	s.Busy(3)
	h.poll(ccnet.StBusy, 3)
	h.poll(ccnet.StDisabled)
	if c := s.Cassette(); len(c) != 1 || c[0].Cassette != 1 {
		t.Fatalf("cassette %+v", c)
	}
}

func TestJamClearedInTheCassetteCountsTheNote(t *testing.T) {
	s, h := start(t, Config{})
	h.up()
	s.InsertNote(2)
	h.poll(ccnet.StAccepting)
	h.poll(ccnet.StEscrow, 2)
	h.command(ccnet.CmdStack)
	s.Jam(true)
	h.poll(ccnet.StCassetteJammed)
	s.ClearJam()
	h.poll(ccnet.StInitialize)
	if c := s.Cassette(); len(c) != 1 || c[0].Via != "jam_cleared" || c[0].Acked {
		t.Fatalf("cassette %+v", c)
	}
}

func TestLinkFaults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, h := start(t, Config{})
		s.InjectFault(Fault{Kind: FaultBadCRC})
		h.write(enc(ccnet.CmdPoll))
		raw := make([]byte, 6)
		h.conn.Read(raw)
		if _, _, err := ccnet.Decode(raw); !errors.Is(err, ccnet.ErrBadCRC) {
			t.Fatalf("bad CRC fault: % X %v", raw, err)
		}
		h.expect(h.send(ccnet.CmdNak), ccnet.StPowerUp) // the clean copy
		h.ack()

		s.InjectFault(Fault{Kind: FaultNoReply})
		h.write(enc(ccnet.CmdPoll))
		if _, ok := h.read(); ok {
			t.Fatal("no-reply fault answered")
		}
		s.InjectFault(Fault{Kind: FaultGarbage})
		s.InjectFault(Fault{Kind: FaultSplit, Delay: 50 * time.Millisecond})
		s.InjectFault(Fault{Kind: FaultSlow, Delay: 200 * time.Millisecond})
		h.poll(ccnet.StPowerUp)
		h.poll(ccnet.StPowerUp)
		t0 := time.Now()
		h.poll(ccnet.StPowerUp)
		if time.Since(t0) < 200*time.Millisecond {
			t.Fatal("slow fault was not slow")
		}
		if s.State().PendingFaults != 0 {
			t.Fatal("faults left over")
		}
		if st := h.dec.Stats(); st.GarbageBytes == 0 {
			t.Fatalf("garbage fault sent no garbage: %+v", st)
		}
	})
}

func TestLineNoiseFromTheHost(t *testing.T) {
	_, h := start(t, Config{})
	// A false start announcing a 64 KiB frame, then a real POLL: the POLL is answered.
	h.write(append([]byte{0x00, 0x02, 0x03, 0x00, 0x33, 0xFF, 0xFF}, enc(ccnet.CmdPoll)...))
	f, ok := h.read()
	if !ok {
		t.Fatal("the POLL behind the noise was not answered")
	}
	h.expect(f, ccnet.StPowerUp)
	h.ack()
}

func TestOtherAddressIgnored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, h := start(t, Config{})
		b, _ := ccnet.Encode(ccnet.AddrCoinChanger, ccnet.CmdPoll)
		h.write(b)
		if _, ok := h.read(); ok {
			t.Fatal("a frame for address 2 was answered")
		}
		h.poll(ccnet.StPowerUp)
	})
}

func TestBillTableOverride(t *testing.T) {
	table := []ccnet.BillEntry{{}, {Value: 2, Country: [3]byte{'R', 'U', 'S'}, Exponent: 2}}
	s, h := start(t, Config{BillTable: table})
	f := h.send(ccnet.CmdGetBillTable)
	h.ack()
	got, err := ccnet.ParseBillTable(f.Payload())
	if err != nil || got[0].Used() || got[1] != table[1] {
		t.Fatalf("table %v %v", got, err)
	}
	h.command(ccnet.CmdReset)
	h.poll(ccnet.StInitialize)
	h.command(ccnet.CmdEnableBillTypes, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF)
	h.poll(ccnet.StIdling)
	s.InsertNote(0) // configured, but not in the unit's table: unknown to it
	h.poll(ccnet.StAccepting)
	h.poll(ccnet.StRejecting, 0x65)
	h.poll(ccnet.StIdling)
	s.InsertNote(1)
	h.poll(ccnet.StAccepting)
	h.poll(ccnet.StEscrow, 1)
	h.command(ccnet.CmdStack)
	h.poll(ccnet.StStacking)
	h.poll(ccnet.StStacked, 1)
	// The ground truth uses the configured value where there is one (5000), not the table's.
	if c := s.Cassette(); len(c) != 1 || c[0].ValueMinor != 5000 {
		t.Fatalf("cassette %+v", c)
	}
}

func TestSnapshotJSON(t *testing.T) {
	s, h := start(t, Config{})
	h.up()
	s.InsertNote(0)
	h.poll(ccnet.StAccepting)
	b, err := json.Marshal(s.State())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(b, &m)
	if m["status"] != "escrow" || m["note_in_path"] != float64(0) || m["cassette_in"] != true || m["inhibited"] != false {
		t.Fatalf("snapshot %s", b)
	}
	if w := Where(9).String(); w != "Where(9)" {
		t.Errorf("Where(9) = %q", w)
	}
}

// TestLineSpeed: at 9600 8N1 a POLL (six characters) and its reply each take their
// characters' time on the line.
func TestLineSpeed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		line := linespeed.CCNET
		s, h := start(t, Config{Line: line})
		t0 := time.Now()
		h.expect(h.send(ccnet.CmdPoll), ccnet.StPowerUp)
		if got, want := time.Since(t0), line.Duration(len(enc(ccnet.CmdPoll)))+line.Duration(len(enc(ccnet.StPowerUp))); got != want {
			t.Fatalf("poll exchange took %v at 9600 8N1, want %v", got, want)
		}
		h.ack()
		h.command(ccnet.CmdReset)
		h.poll(ccnet.StInitialize)
		if st := s.State(); st.Status == "" {
			t.Fatalf("state %+v", st)
		}
	})
}

// A power cycle that asks for a note in the path while RETURNED waits for the host's ACK
// (the note with the customer) fails with ErrNoNote and leaves the unit as it was: it used
// to drop the note first and fail after, leaving the unit RETURNED with no note, and its
// next POLL dereferenced the missing note (a panic; found by the kiosk simulation).
func TestPowerCycleAfterReturnedNote(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, where := range []Where{InAcceptor, InStacker, Auto} {
			s, h := start(t, Config{})
			h.up()
			s.InsertNote(1)
			h.poll(ccnet.StAccepting)
			h.poll(ccnet.StEscrow, 1)
			h.command(ccnet.CmdReturn)
			h.poll(ccnet.StReturning)
			h.expect(h.send(ccnet.CmdPoll), ccnet.StReturned, 1) // not acknowledged
			err := s.PowerCycle(where)
			if where == Auto {
				// A plain power-up: the note is with the customer, nothing in the cassette.
				if err != nil {
					t.Fatal(err)
				}
				h.poll(ccnet.StPowerUp)
			} else {
				if !errors.Is(err, ErrNoNote) {
					t.Fatalf("PowerCycle(%v) after the note was returned: %v, want ErrNoNote", where, err)
				}
				h.poll(ccnet.StReturned, 1) // unchanged: the unit still reports the returned note
				h.poll(ccnet.StIdling)
			}
			if len(s.Cassette()) != 0 {
				t.Fatalf("returned notes counted: %+v", s.Cassette())
			}
		}
	})
}

// TestFailureBetweenStackedAndAck: a unit that fails after reporting STACKED and before the
// host's ACK arrives has still been told the credit is taken: the ACK ends the note, and the
// RESET that clears the failure does not report it again by credit recovery (sim seed
// 123095061: a second credit of one note).
func TestFailureBetweenStackedAndAck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, h := start(t, Config{})
		h.up()
		if err := s.InsertNote(2); err != nil {
			t.Fatal(err)
		}
		h.poll(ccnet.StAccepting)
		h.poll(ccnet.StEscrow, 2)
		h.command(ccnet.CmdStack)
		h.poll(ccnet.StStacking)
		h.expect(h.send(ccnet.CmdPoll), ccnet.StStacked, 2)
		s.Fail(0x50)
		h.ack()
		h.poll(ccnet.StFailure, 0x50)
		h.command(ccnet.CmdReset)
		h.poll(ccnet.StInitialize)
		h.poll(ccnet.StDisabled) // not STACKED again
		if c := s.Cassette(); len(c) != 1 || !c[0].Acked {
			t.Fatalf("cassette: %+v", c)
		}
	})
}
