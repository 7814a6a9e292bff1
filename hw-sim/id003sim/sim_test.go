package id003sim

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
	"github.com/kioskd/kioskd/devices/acceptor/id003"
	"github.com/kioskd/kioskd/hw-sim/linespeed"
)

var denoms = acceptor.Denominations{
	0x61: {ValueMinor: 100, Currency: "CNY"},
	0x62: {ValueMinor: 500, Currency: "CNY"},
	0x63: {ValueMinor: 1000, Currency: "CNY"},
	0x64: {ValueMinor: 2000, Currency: "CNY"},
}

// host drives the emulator through its byte protocol over a net.Pipe.
type host struct {
	t    testing.TB
	conn net.Conn
	dec  id003.Decoder
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
func (h *host) read() (id003.Frame, bool) {
	h.t.Helper()
	buf := make([]byte, 256)
	for {
		f, err := h.dec.Next()
		if err == nil {
			return f, true
		}
		if !errors.Is(err, id003.ErrIncomplete) {
			continue // damage is counted in h.dec.Stats(); the fault tests look there
		}
		h.conn.SetReadDeadline(time.Now().Add(time.Second))
		n, err := h.conn.Read(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return id003.Frame{}, false
		}
		if err != nil {
			h.t.Fatalf("read: %v", err)
		}
		h.dec.Feed(buf[:n])
	}
}

func (h *host) send(cmd byte, data ...byte) id003.Frame {
	h.t.Helper()
	b, _ := id003.Encode(cmd, data...)
	h.write(b)
	f, ok := h.read()
	if !ok {
		h.t.Fatalf("no answer to % X", b)
	}
	return f
}

func (h *host) expect(got id003.Frame, cmd byte, data ...byte) {
	h.t.Helper()
	if got.Cmd != cmd || !bytes.Equal(got.Data, data) {
		h.t.Fatalf("got %v, want %02X % X", got, cmd, data)
	}
}

// poll sends STATUS REQUEST and checks the answer.
func (h *host) poll(status byte, data ...byte) {
	h.t.Helper()
	h.expect(h.send(id003.CmdStatusRequest), status, data...)
}

func (h *host) ack() {
	h.t.Helper()
	b, _ := id003.Encode(id003.CmdAck)
	h.write(b)
}

// up resets the unit and enables all denominations.
func (h *host) up() {
	h.t.Helper()
	h.poll(id003.StPowerUp)
	h.expect(h.send(id003.CmdReset), id003.CmdAck)
	h.poll(id003.StInitialize)
	h.poll(id003.StDisabled)
	h.expect(h.send(id003.CmdSetDenoms, 0x00, 0x00), id003.CmdSetDenoms, 0x00, 0x00)
	h.expect(h.send(id003.CmdSetInhibit, 0x00), id003.CmdSetInhibit, 0x00)
	h.poll(id003.StIdling)
}

func TestPowerUpWantsReset(t *testing.T) {
	s, h := start(t, Config{})
	h.poll(id003.StPowerUp)
	h.poll(id003.StPowerUp)
	h.expect(h.send(id003.CmdStack1), id003.StInvalidCommand)
	if err := s.InsertNote(0x61); !errors.Is(err, ErrPoweredUp) {
		t.Fatalf("InsertNote before RESET: %v", err)
	}
	h.expect(h.send(id003.CmdSetCommMode, 0x00), id003.CmdSetCommMode, 0x00)
	h.expect(h.send(id003.CmdSetSecurity, 0x00), id003.StInvalidCommand) // wrong length
	h.expect(h.send(id003.CmdReset), id003.CmdAck)
	h.poll(id003.StInitialize)
	h.poll(id003.StDisabled)
	if err := s.InsertNote(0x61); !errors.Is(err, ErrInhibited) {
		t.Fatalf("InsertNote while inhibited: %v", err)
	}
	h.expect(h.send(id003.CmdSetInhibit, 0x00), id003.CmdSetInhibit, 0x00)
	h.poll(id003.StIdling)
	h.expect(h.send(id003.CmdVersion), id003.CmdVersion, []byte(DefaultVersion)...)
	h.expect(h.send(id003.CmdCurrency), id003.CmdCurrency,
		0x61, 0x2D, 1, 0, 0x62, 0x2D, 5, 0, 0x63, 0x2D, 10, 0, 0x64, 0x2D, 20, 0)
	h.expect(h.send(0x99), id003.StInvalidCommand)
}

func TestNoteStackedAndAcked(t *testing.T) {
	// In a bubble: checking that the ACK gets no answer waits on the fake clock.
	synctest.Test(t, func(t *testing.T) {
		s, h := start(t, Config{})
		h.up()
		if err := s.InsertNote(0x63); err != nil {
			t.Fatal(err)
		}
		if err := s.InsertNote(0x61); !errors.Is(err, ErrBusy) {
			t.Fatalf("second note: %v", err)
		}
		h.poll(id003.StAccepting)
		h.poll(id003.StEscrow, 0x63)
		h.poll(id003.StEscrow, 0x63)
		h.expect(h.send(id003.CmdStack1), id003.CmdAck)
		h.expect(h.send(id003.CmdStack1), id003.StInvalidCommand)
		h.poll(id003.StStacking)
		if len(s.Cassette()) != 0 {
			t.Fatal("note counted before the point of no return")
		}
		h.poll(id003.StVendValid)
		h.poll(id003.StVendValid) // repeated until ACK
		c := s.Cassette()
		if len(c) != 1 || c[0].Acked || c[0].Via != "vend_valid" {
			t.Fatalf("cassette during VEND VALID: %+v", c)
		}
		h.ack()
		if _, ok := h.read(); ok {
			t.Fatal("the host's ACK was answered")
		}
		h.poll(id003.StStacked)
		h.poll(id003.StIdling)
		c = s.Cassette()
		if len(c) != 1 || !c[0].Acked || c[0].Code != 0x63 || c[0].ValueMinor != 1000 || c[0].Cassette != 1 {
			t.Fatalf("cassette: %+v", c)
		}
	})
}

func TestReturnHoldAndEscrowTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, h := start(t, Config{})
		h.up()
		s.InsertNote(0x62)
		h.poll(id003.StAccepting)
		h.poll(id003.StEscrow, 0x62)
		h.expect(h.send(id003.CmdReturn), id003.CmdAck)
		h.poll(id003.StReturning)
		h.poll(id003.StIdling)

		s.InsertNote(0x62)
		h.poll(id003.StAccepting)
		h.poll(id003.StEscrow, 0x62)
		time.Sleep(DefaultEscrowTimeout - time.Second)
		h.expect(h.send(id003.CmdHold), id003.CmdAck) // restarts the timeout
		time.Sleep(DefaultEscrowTimeout - time.Second)
		h.poll(id003.StHolding)
		time.Sleep(time.Second)
		h.poll(id003.StReturning) // the unit gives the note back on its own
		h.poll(id003.StIdling)
		if len(s.Cassette()) != 0 {
			t.Fatalf("returned notes counted: %+v", s.Cassette())
		}
	})
}

func TestRejects(t *testing.T) {
	s, h := start(t, Config{})
	h.up()
	s.ForceReject(0x72)
	s.InsertNote(0x61)
	h.poll(id003.StAccepting)
	h.poll(id003.StRejecting, 0x72)
	h.poll(id003.StIdling)
	s.InsertNote(0x68) // unknown to the unit
	h.poll(id003.StAccepting)
	h.poll(id003.StRejecting, 0x76)
	h.poll(id003.StIdling)
	h.expect(h.send(id003.CmdSetDenoms, 0x01, 0x00), id003.CmdSetDenoms, 0x01, 0x00) // 0x61 disabled
	s.InsertNote(0x61)
	h.poll(id003.StAccepting)
	h.poll(id003.StRejecting, 0x79)
	h.poll(id003.StIdling)
	if got := s.State().EnabledCodes; len(got) != 3 || got[0] != 0x62 {
		t.Fatalf("enabled codes %v", got)
	}
}

func TestPowerCycleWithNoteInPath(t *testing.T) {
	t.Run("escrow: returned, never counted", func(t *testing.T) {
		s, h := start(t, Config{})
		h.up()
		s.InsertNote(0x63)
		h.poll(id003.StAccepting)
		h.poll(id003.StEscrow, 0x63)
		if err := s.PowerCycle(Auto); err != nil {
			t.Fatal(err)
		}
		h.poll(id003.StPowerUpAcc)
		h.poll(id003.StPowerUpAcc)
		h.expect(h.send(id003.CmdReset), id003.CmdAck)
		h.poll(id003.StInitialize)
		h.poll(id003.StDisabled)
		if len(s.Cassette()) != 0 {
			t.Fatalf("cassette %+v", s.Cassette())
		}
	})
	t.Run("stacking: stacked on reset, counted without VEND VALID", func(t *testing.T) {
		s, h := start(t, Config{})
		h.up()
		s.InsertNote(0x63)
		h.poll(id003.StAccepting)
		h.poll(id003.StEscrow, 0x63)
		h.expect(h.send(id003.CmdStack1), id003.CmdAck)
		if err := s.PowerCycle(NoNote); !errors.Is(err, ErrBusy) {
			t.Fatalf("PowerCycle(NoNote) with a note: %v", err)
		}
		s.PowerCycle(Auto)
		h.poll(id003.StPowerUpStk)
		if len(s.Cassette()) != 0 {
			t.Fatal("counted before RESET")
		}
		h.expect(h.send(id003.CmdReset), id003.CmdAck)
		c := s.Cassette()
		if len(c) != 1 || c[0].Acked || c[0].Via != "power_up_recovery" || c[0].Code != 0x63 {
			t.Fatalf("cassette %+v", c)
		}
	})
	t.Run("unacked VEND VALID: 0x42, counted once", func(t *testing.T) {
		s, h := start(t, Config{})
		h.up()
		s.InsertNote(0x61)
		h.poll(id003.StAccepting)
		h.poll(id003.StEscrow, 0x61)
		h.expect(h.send(id003.CmdStack2), id003.CmdAck)
		h.poll(id003.StStacking)
		h.poll(id003.StVendValid)
		s.PowerCycle(Auto)
		h.poll(id003.StPowerUpStk)
		h.expect(h.send(id003.CmdReset), id003.CmdAck)
		h.poll(id003.StInitialize)
		c := s.Cassette()
		if len(c) != 1 || c[0].Acked || c[0].Via != "vend_valid" {
			t.Fatalf("cassette %+v", c)
		}
	})
	t.Run("forced places", func(t *testing.T) {
		s, h := start(t, Config{})
		if err := s.PowerCycle(InStacker); !errors.Is(err, ErrNoNote) {
			t.Fatalf("PowerCycle(InStacker) without a note: %v", err)
		}
		if err := s.PowerCycleWithNote(InStacker, 0x62); err != nil {
			t.Fatal(err)
		}
		h.poll(id003.StPowerUpStk)
		h.expect(h.send(id003.CmdReset), id003.CmdAck)
		if c := s.Cassette(); len(c) != 1 || c[0].Code != 0x62 || c[0].ValueMinor != 500 {
			t.Fatalf("cassette %+v", c)
		}
		if err := s.PowerCycleWithNote(InAcceptor, 0x61); err != nil {
			t.Fatal(err)
		}
		h.poll(id003.StPowerUpAcc)
		h.expect(h.send(id003.CmdReset), id003.CmdAck)
		if c := s.Cassette(); len(c) != 1 {
			t.Fatalf("a note in the acceptor was counted: %+v", c)
		}
	})
}

func TestFaultStates(t *testing.T) {
	s, h := start(t, Config{CassetteCapacity: 1})
	h.up()
	s.InsertNote(0x64)
	h.poll(id003.StAccepting)
	h.poll(id003.StEscrow, 0x64)
	h.send(id003.CmdStack1)
	h.poll(id003.StStacking)
	h.poll(id003.StVendValid)
	h.ack()
	h.poll(id003.StStacked)
	h.poll(id003.StStackerFull) // capacity 1 reached
	if err := s.InsertNote(0x61); !errors.Is(err, ErrCassetteFull) {
		t.Fatalf("insert when full: %v", err)
	}
	if err := s.PullCassette(); err != nil {
		t.Fatal(err)
	}
	h.poll(id003.StStackerOpen)
	if err := s.InsertNote(0x61); !errors.Is(err, ErrCassetteOut) {
		t.Fatalf("insert with the cassette out: %v", err)
	}
	s.ReplaceCassette()
	h.poll(id003.StInitialize)
	h.poll(id003.StIdling) // the cassette's initialisation keeps the host's settings
	if st := s.State(); st.CassetteNumber != 2 || st.CassetteCount != 0 || !st.CassetteIn {
		t.Fatalf("state %+v", st)
	}
	s.Jam(false)
	h.poll(id003.StAcceptorJam)
	s.ClearJam()
	h.poll(id003.StInitialize)
	s.Jam(true)
	h.poll(id003.StStackerJam)
	s.ClearJam()
	h.poll(id003.StInitialize)
	h.poll(id003.StIdling)
	s.Pause(true)
	h.poll(id003.StPause)
	s.Pause(false)
	h.poll(id003.StIdling)
	s.Cheat()
	h.poll(id003.StCheated)
	h.expect(h.send(id003.CmdReset), id003.CmdAck)
	h.poll(id003.StInitialize)
	s.Fail(0xA6)
	h.poll(id003.StFailure, 0xA6)
	h.poll(id003.StFailure, 0xA6)
	h.expect(h.send(id003.CmdReset), id003.CmdAck)
	h.poll(id003.StInitialize)
	h.poll(id003.StDisabled)
	if c := s.Cassette(); len(c) != 1 || c[0].Cassette != 1 {
		t.Fatalf("cassette %+v", c)
	}
}

func TestLinkFaults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, h := start(t, Config{})
		// A damaged host frame is answered by COMM ERROR.
		b, _ := id003.Encode(id003.CmdStatusRequest)
		b[len(b)-1] ^= 0xFF
		h.write(b)
		f, _ := h.read()
		h.expect(f, id003.StCommError)

		s.InjectFault(Fault{Kind: FaultBadCRC})
		b, _ = id003.Encode(id003.CmdStatusRequest)
		h.write(b)
		raw := make([]byte, 5)
		h.conn.Read(raw)
		if _, _, err := id003.Decode(raw); !errors.Is(err, id003.ErrBadCRC) {
			t.Fatalf("bad CRC fault: % X %v", raw, err)
		}

		s.InjectFault(Fault{Kind: FaultNoReply})
		h.write(b)
		if _, ok := h.read(); ok {
			t.Fatal("no-reply fault answered")
		}
		s.InjectFault(Fault{Kind: FaultGarbage})
		s.InjectFault(Fault{Kind: FaultSplit, Delay: 50 * time.Millisecond})
		s.InjectFault(Fault{Kind: FaultSlow, Delay: 200 * time.Millisecond})
		h.poll(id003.StPowerUp)
		h.poll(id003.StPowerUp)
		t0 := time.Now()
		h.poll(id003.StPowerUp)
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

func TestSnapshotJSON(t *testing.T) {
	s, h := start(t, Config{})
	h.up()
	s.InsertNote(0x62)
	h.poll(id003.StAccepting)
	b, err := json.Marshal(s.State())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(b, &m)
	if m["status"] != "escrow" || m["note_in_path"] != float64(0x62) || m["cassette_in"] != true {
		t.Fatalf("snapshot %s", b)
	}
}

// TestLineSpeed: at 9600 8E1 the emulator takes a STATUS REQUEST over its five character
// times and its reply over five more; a whole note still goes through.
func TestLineSpeed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		line := linespeed.ID003
		s, h := start(t, Config{Line: line})
		req, _ := id003.Encode(id003.CmdStatusRequest)
		t0 := time.Now()
		h.poll(id003.StPowerUp)
		if got, want := time.Since(t0), line.Duration(len(req))+line.Duration(len(frame(id003.StPowerUp))); got != want {
			t.Fatalf("status exchange took %v at 9600 8E1, want %v", got, want)
		}
		h.up()
		if err := s.InsertNote(0x63); err != nil {
			t.Fatal(err)
		}
		h.poll(id003.StAccepting)
		h.poll(id003.StEscrow, 0x63)
		h.expect(h.send(id003.CmdStack1), id003.CmdAck)
		h.poll(id003.StStacking)
		h.poll(id003.StVendValid)
		h.ack()
		h.poll(id003.StStacked)
		if c := s.Cassette(); len(c) != 1 || !c[0].Acked {
			t.Fatalf("cassette %+v", c)
		}
	})
}
