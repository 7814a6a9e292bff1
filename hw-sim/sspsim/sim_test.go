package sspsim

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net"
	"os"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/devices/acceptor/ssp"
	"github.com/kioskd/kioskd/hw-sim/linespeed"
)

var denoms = acceptor.Denominations{
	1: {ValueMinor: 100, Currency: "CNY"},
	2: {ValueMinor: 500, Currency: "CNY"},
	3: {ValueMinor: 1000, Currency: "CNY"},
	4: {ValueMinor: 2000, Currency: "CNY"},
}

// host drives the emulator through its byte protocol over a net.Pipe, keeping the sequence
// flag and, once keys are set, the eSSP counter.
type host struct {
	t      testing.TB
	conn   net.Conn
	dec    ssp.Decoder
	seq    bool
	cipher *ssp.Cipher
	count  uint32
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
func (h *host) read() (ssp.Frame, bool) {
	h.t.Helper()
	buf := make([]byte, 600)
	for {
		f, err := h.dec.Next()
		if err == nil {
			return f, true
		}
		if !errors.Is(err, ssp.ErrIncomplete) {
			continue // damage is counted in h.dec.Stats(); the fault tests look there
		}
		h.conn.SetReadDeadline(time.Now().Add(time.Second))
		n, err := h.conn.Read(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return ssp.Frame{}, false
		}
		if err != nil {
			h.t.Fatalf("read: %v", err)
		}
		h.dec.Feed(buf[:n])
	}
}

// packet builds the next new packet for cmd (flag flipped; SYNC sets it).
func (h *host) packet(cmd byte, args ...byte) (wire []byte, seq bool) {
	seq = !h.seq
	if cmd == ssp.CmdSync {
		seq = true
	}
	data := append([]byte{cmd}, args...)
	if h.cipher != nil && cmd != ssp.CmdSync {
		data, _ = h.cipher.Seal(nil, h.count, data, nil)
		h.count++
	}
	w, err := ssp.Encode(ssp.Frame{Seq: seq, Data: data})
	if err != nil {
		h.t.Fatal(err)
	}
	return w, seq
}

// roundTrip sends wire and returns the reply data (decrypted when encrypted).
func (h *host) roundTrip(wire []byte, seq bool) []byte {
	h.t.Helper()
	h.write(wire)
	f, ok := h.read()
	if !ok {
		h.t.Fatalf("no answer to % X", wire)
	}
	if f.Seq != seq {
		h.t.Fatalf("reply flag %v to a packet with flag %v", f.Seq, seq)
	}
	h.seq = seq
	if f.Data[0] == ssp.STEX {
		d, _, err := h.cipher.Open(f.Data, h.count)
		if err != nil {
			h.t.Fatalf("open reply: %v", err)
		}
		return d
	}
	return f.Data
}

func (h *host) send(cmd byte, args ...byte) []byte {
	h.t.Helper()
	w, seq := h.packet(cmd, args...)
	return h.roundTrip(w, seq)
}

func (h *host) expect(got []byte, want ...byte) {
	h.t.Helper()
	if !bytes.Equal(got, want) {
		h.t.Fatalf("got % X, want % X", got, want)
	}
}

// poll sends POLL and checks the events.
func (h *host) poll(events ...byte) {
	h.t.Helper()
	h.expect(h.send(ssp.CmdPoll), append([]byte{ssp.RespOK}, events...)...)
}

func (h *host) pollAck(events ...byte) {
	h.t.Helper()
	h.expect(h.send(ssp.CmdPollWithAck), append([]byte{ssp.RespOK}, events...)...)
}

func okd(data ...byte) []byte { return append([]byte{ssp.RespOK}, data...) }

// up syncs, sets protocol 7, sees the power-up, enables channels 1..4.
func (h *host) up() {
	h.t.Helper()
	h.expect(h.send(ssp.CmdSync), ssp.RespOK)
	h.expect(h.send(ssp.CmdHostProtocol, 7), ssp.RespOK)
	h.poll(ssp.EvSlaveReset, ssp.EvDisabled)
	h.expect(h.send(ssp.CmdSetInhibits, 0x0F, 0x00), ssp.RespOK)
	h.expect(h.send(ssp.CmdEnable), ssp.RespOK)
	h.poll()
}

// keys runs the eSSP key exchange with fixed key fixed.
func (h *host) keys(fixed uint64) {
	h.t.Helper()
	kx, err := ssp.NewKeyExchange(nil, ssp.DefaultPrimeBits)
	if err != nil {
		h.t.Fatal(err)
	}
	le := func(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }
	h.expect(h.send(ssp.CmdSetGenerator, le(kx.Generator)...), ssp.RespOK)
	h.expect(h.send(ssp.CmdSetModulus, le(kx.Modulus)...), ssp.RespOK)
	r := h.send(ssp.CmdRequestKeyExchange, le(kx.HostInter())...)
	if len(r) != 9 || r[0] != ssp.RespOK {
		h.t.Fatalf("key exchange reply % X", r)
	}
	h.cipher = ssp.NewCipher(ssp.MakeKey(fixed, kx.Key(binary.LittleEndian.Uint64(r[1:]))))
	h.count = 0
}

func TestPowerUpAndSetup(t *testing.T) {
	s, h := start(t, Config{})
	h.expect(h.send(ssp.CmdSync), ssp.RespOK)
	// Before HOST PROTOCOL VERSION the unit speaks protocol 4: no expanded section.
	st, err := ssp.ParseSetup(h.send(ssp.CmdSetupRequest)[1:])
	if err != nil || st.ProtocolVersion != 4 || st.ValueMultiplier != 1 || len(st.Channels) != 4 {
		t.Fatalf("setup %+v %v", st, err)
	}
	h.expect(h.send(ssp.CmdHostProtocol, 9), ssp.RespFail) // beyond MaxProtocol
	h.expect(h.send(ssp.CmdHostProtocol, 7), ssp.RespOK)
	st, err = ssp.ParseSetup(h.send(ssp.CmdSetupRequest)[1:])
	if err != nil || st.ProtocolVersion != 7 || st.Country != "CNY" || st.Firmware != DefaultFirmware {
		t.Fatalf("setup %+v %v", st, err)
	}
	if d := st.Denominations(); d[4] != (acceptor.Note{Code: 4, ValueMinor: 2000, Currency: "CNY"}) || len(d) != 4 {
		t.Fatalf("setup table %v", d)
	}
	h.expect(h.send(ssp.CmdGetSerial), okd(0x00, 0x1C, 0x96, 0x2C)...)
	if err := s.InsertNote(1); !errors.Is(err, ErrBusy) {
		t.Fatalf("InsertNote before the power-up was reported: %v", err)
	}
	h.poll(ssp.EvSlaveReset, ssp.EvDisabled)
	if err := s.InsertNote(1); !errors.Is(err, ErrDisabled) {
		t.Fatalf("InsertNote while disabled: %v", err)
	}
	h.poll(ssp.EvDisabled) // repeated while disabled
	h.expect(h.send(ssp.CmdHold), ssp.RespCannotProcess)
	h.expect(h.send(ssp.CmdReject), ssp.RespCannotProcess)
	h.expect(h.send(ssp.CmdEventAck), ssp.RespKeyNotSet) // needs encryption on an NV9USB
	h.expect(h.send(ssp.CmdSetInhibits), ssp.RespWrongParams)
	h.expect(h.send(0x99), ssp.RespUnknownCommand)
	h.expect(h.send(ssp.CmdGetCounters), ssp.AppendCounters(okd(), ssp.Counters{})...)
}

func TestSequenceFlagRepeat(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, h := start(t, Config{})
		h.up()
		if err := s.InsertNote(2); err != nil {
			t.Fatal(err)
		}
		w, seq := h.packet(ssp.CmdPoll)
		h.expect(h.roundTrip(w, seq), okd(ssp.EvRead, 0)...)
		// The same packet again: the reply is repeated, the unit does not move on.
		h.expect(h.roundTrip(w, seq), okd(ssp.EvRead, 0)...)
		h.poll(ssp.EvRead, 2)
		// A lost reply: the unit executed the poll that accepts the note; the re-send gets the
		// same answer and does not accept anything twice.
		s.InjectFault(Fault{Kind: FaultNoReply})
		w, seq = h.packet(ssp.CmdPoll)
		h.write(w)
		if _, ok := h.read(); ok {
			t.Fatal("no-reply fault answered")
		}
		h.expect(h.roundTrip(w, seq), okd(ssp.EvStacking)...)
		h.poll(ssp.EvNoteCredit, 2, ssp.EvStacked)
		h.poll()
		if c := s.Cassette(); len(c) != 1 || c[0].Channel != 2 || !c[0].Reported || c[0].Acked {
			t.Fatalf("cassette %+v", c)
		}
		// SYNC resets the flag: the next packet goes out with it clear, even if the last one
		// also had it clear.
		h.expect(h.send(ssp.CmdSync), ssp.RespOK)
		if !h.seq {
			t.Fatal("sync flag")
		}
		h.poll()
	})
}

func TestNoteStackedAndCredited(t *testing.T) {
	s, h := start(t, Config{})
	h.up()
	if err := s.InsertNote(3); err != nil {
		t.Fatal(err)
	}
	if err := s.InsertNote(1); !errors.Is(err, ErrBusy) {
		t.Fatalf("second note: %v", err)
	}
	h.poll(ssp.EvRead, 0)
	h.poll(ssp.EvRead, 3)
	h.expect(h.send(ssp.CmdHold), ssp.RespOK)
	h.poll(ssp.EvStacking)
	if len(s.Cassette()) != 0 {
		t.Fatal("note counted before its credit")
	}
	h.expect(h.send(ssp.CmdReject), ssp.RespCannotProcess) // too late
	h.poll(ssp.EvNoteCredit, 3, ssp.EvStacked)
	h.poll()
	c := s.Cassette()
	if len(c) != 1 || c[0].ValueMinor != 1000 || c[0].Via != "credit" || c[0].Cassette != 1 || c[0].Serial != DefaultSerial {
		t.Fatalf("cassette: %+v", c)
	}
	if s.Counters().Stacked != 1 {
		t.Fatalf("counters %+v", s.Counters())
	}
}

func TestReturnHoldAndEscrowTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, h := start(t, Config{})
		h.up()
		s.InsertNote(2)
		h.poll(ssp.EvRead, 0)
		h.poll(ssp.EvRead, 2)
		h.expect(h.send(ssp.CmdReject), ssp.RespOK)
		h.poll(ssp.EvRejecting)
		h.poll(ssp.EvRejected)
		h.expect(h.send(ssp.CmdLastRejectCode), okd(ssp.RejectByHost)...)
		h.poll()

		s.InsertNote(2)
		h.poll(ssp.EvRead, 0)
		h.poll(ssp.EvRead, 2)
		time.Sleep(DefaultEscrowTimeout - time.Second)
		h.expect(h.send(ssp.CmdHold), ssp.RespOK) // restarts the timeout
		time.Sleep(DefaultEscrowTimeout - time.Second)
		h.expect(h.send(ssp.CmdGetSerial)[:1], ssp.RespOK) // any command but POLL does too
		time.Sleep(DefaultEscrowTimeout)
		h.poll(ssp.EvRejecting) // nothing for 10 s: the note goes back
		h.poll(ssp.EvRejected)
		h.expect(h.send(ssp.CmdLastRejectCode), okd(ssp.RejectEscrowTimeout)...)
		if len(s.Cassette()) != 0 || s.Counters().Rejected != 2 {
			t.Fatalf("cassette %+v counters %+v", s.Cassette(), s.Counters())
		}
	})
}

func TestRejects(t *testing.T) {
	s, h := start(t, Config{})
	h.up()
	s.ForceReject(ssp.RejectTwisted)
	s.InsertNote(1)
	h.poll(ssp.EvRead, 0)
	h.poll(ssp.EvRejecting)
	h.poll(ssp.EvRejected)
	h.expect(h.send(ssp.CmdLastRejectCode), okd(ssp.RejectTwisted)...)
	s.InsertNote(9) // unknown to the dataset
	h.poll(ssp.EvRead, 0)
	h.poll(ssp.EvRejecting)
	h.poll(ssp.EvRejected)
	h.expect(h.send(ssp.CmdLastRejectCode), okd(ssp.RejectAverageFail)...)
	h.expect(h.send(ssp.CmdSetInhibits, 0x0E), ssp.RespOK) // channel 1 inhibited
	s.InsertNote(1)
	h.poll(ssp.EvRead, 0)
	h.poll(ssp.EvRejecting)
	h.poll(ssp.EvRejected)
	h.expect(h.send(ssp.CmdLastRejectCode), okd(ssp.RejectDisabledByHost)...)
	if got := s.State().EnabledChannels; len(got) != 3 || got[0] != 2 {
		t.Fatalf("enabled channels %v", got)
	}
	// Every channel inhibited while enabled: CHANNEL DISABLE once, then DISABLED.
	h.expect(h.send(ssp.CmdSetInhibits, 0x00, 0x00), ssp.RespOK)
	h.poll(ssp.EvChannelDisable)
	h.poll(ssp.EvDisabled)
}

func TestPollWithAck(t *testing.T) {
	s, h := start(t, Config{})
	h.expect(h.send(ssp.CmdSync), ssp.RespOK)
	h.expect(h.send(ssp.CmdPollWithAck), ssp.RespKeyNotSet) // encryption required for it
	h.keys(ssp.DefaultFixedKey)
	h.expect(h.send(ssp.CmdHostProtocol, 7), ssp.RespOK)
	h.pollAck(ssp.EvSlaveReset, ssp.EvInitialising, ssp.EvDisabled)
	h.expect(h.send(ssp.CmdSetInhibits, 0x0F, 0x00), ssp.RespOK)
	h.expect(h.send(ssp.CmdEnable), ssp.RespOK)
	h.expect(h.send(ssp.CmdEventAck), ssp.RespCannotProcess) // nothing to acknowledge
	s.InsertNote(4)
	h.pollAck(ssp.EvRead, 0)
	h.pollAck(ssp.EvRead, 4)
	h.pollAck(ssp.EvStacking)
	h.pollAck(ssp.EvStacking, ssp.EvNoteCredit, 4)
	h.pollAck(ssp.EvStacking, ssp.EvNoteCredit, 4) // repeated until EVENT ACK
	if c := s.Cassette(); len(c) != 1 || c[0].Acked {
		t.Fatalf("cassette before the ack %+v", c)
	}
	h.expect(h.send(ssp.CmdEventAck), ssp.RespOK)
	h.pollAck(ssp.EvStacked)
	h.pollAck()
	if c := s.Cassette(); len(c) != 1 || !c[0].Acked || !c[0].Reported {
		t.Fatalf("cassette %+v", c)
	}
	// A power cycle with a note being stacked: cleared into the cashbox, repeated until ack.
	s.InsertNote(1)
	h.pollAck(ssp.EvRead, 0)
	h.pollAck(ssp.EvRead, 1)
	h.pollAck(ssp.EvStacking)
	if err := s.PowerCycle(Auto); err != nil {
		t.Fatal(err)
	}
	h.cipher = nil // the unit forgot the keys
	h.expect(h.send(ssp.CmdSync), ssp.RespOK)
	h.keys(ssp.DefaultFixedKey)
	h.pollAck(ssp.EvSlaveReset, ssp.EvInitialising, ssp.EvDisabled)
	h.pollAck(ssp.EvClearedCashbox, 1, ssp.EvDisabled)
	h.pollAck(ssp.EvClearedCashbox, 1, ssp.EvDisabled)
	h.expect(h.send(ssp.CmdEventAck), ssp.RespOK)
	h.pollAck(ssp.EvDisabled)
	c := s.Cassette()
	if len(c) != 2 || c[1].Via != "power_up_recovery" || c[1].Reported || c[1].Channel != 1 {
		t.Fatalf("cassette %+v", c)
	}
}

func TestEncryption(t *testing.T) {
	const key = 0x1122334455667788
	t.Run("required", func(t *testing.T) {
		s, h := start(t, Config{Encryption: EncryptionRequired, FixedKey: key})
		h.expect(h.send(ssp.CmdSync), ssp.RespOK)
		h.expect(h.send(ssp.CmdPoll), ssp.RespKeyNotSet)
		h.expect(h.send(ssp.CmdSetGenerator, 4, 0, 0, 0, 0, 0, 0, 0), ssp.RespOutOfRange) // 4 is not prime
		h.expect(h.send(ssp.CmdRequestKeyExchange, 1, 0, 0, 0, 0, 0, 0, 0), ssp.RespFail) // no generator yet
		h.expect(h.send(ssp.CmdSetModulus, 1), ssp.RespWrongParams)
		h.keys(key)
		h.expect(h.send(ssp.CmdHostProtocol, 7), ssp.RespOK)
		h.poll(ssp.EvSlaveReset, ssp.EvDisabled)
		if st := s.State(); !st.Encrypted || st.Counter != h.count {
			t.Fatalf("state %+v, host counter %d", st, h.count)
		}
	})
	t.Run("wrong fixed key", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			_, h := start(t, Config{FixedKey: key})
			h.expect(h.send(ssp.CmdSync), ssp.RespOK)
			h.keys(key + 1)
			w, _ := h.packet(ssp.CmdPoll)
			h.write(w)
			if _, ok := h.read(); ok {
				t.Fatal("a packet under the wrong key was answered")
			}
		})
	})
	t.Run("counter", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s, h := start(t, Config{FixedKey: key})
			h.expect(h.send(ssp.CmdSync), ssp.RespOK)
			h.keys(key)
			h.poll(ssp.EvSlaveReset, ssp.EvDisabled)
			// A command with a stale counter is dropped.
			h.count--
			w, _ := h.packet(ssp.CmdPoll)
			h.write(w)
			if _, ok := h.read(); ok {
				t.Fatal("a packet with a stale counter was answered")
			}
			h.poll(ssp.EvDisabled)
			// A reply with a wrong counter: the host must drop it.
			s.InjectFault(Fault{Kind: FaultBadCount})
			w, _ = h.packet(ssp.CmdPoll)
			h.write(w)
			f, ok := h.read()
			if !ok {
				t.Fatal("no reply")
			}
			h.seq = f.Seq
			if _, _, err := h.cipher.Open(f.Data, h.count); !errors.Is(err, ssp.ErrBadCount) {
				t.Fatalf("bad-count fault: %v", err)
			}
			// Plain general commands still work with keys set; POLL WITH ACK does not.
			c := h.cipher
			h.cipher = nil
			h.expect(h.send(ssp.CmdGetSerial)[:1], ssp.RespOK)
			h.expect(h.send(ssp.CmdPollWithAck), ssp.RespKeyNotSet)
			h.cipher = c
		})
	})
	t.Run("unsupported", func(t *testing.T) {
		_, h := start(t, Config{Encryption: EncryptionUnsupported, NoPollWithAck: true})
		h.expect(h.send(ssp.CmdSetGenerator, 5, 0, 0, 0, 0, 0, 0, 0), ssp.RespUnknownCommand)
		h.expect(h.send(ssp.CmdPollWithAck), ssp.RespUnknownCommand)
		h.poll(ssp.EvSlaveReset, ssp.EvDisabled)
	})
}

func TestPowerCycleWithNoteInPath(t *testing.T) {
	t.Run("escrow: cleared from the front, never counted", func(t *testing.T) {
		s, h := start(t, Config{})
		h.up()
		s.InsertNote(3)
		h.poll(ssp.EvRead, 0)
		h.poll(ssp.EvRead, 3)
		if err := s.PowerCycle(Auto); err != nil {
			t.Fatal(err)
		}
		h.expect(h.send(ssp.CmdSync), ssp.RespOK)
		h.poll(ssp.EvSlaveReset, ssp.EvDisabled)
		h.poll(ssp.EvClearedFront, 3, ssp.EvDisabled)
		h.poll(ssp.EvDisabled)
		if len(s.Cassette()) != 0 {
			t.Fatalf("cassette %+v", s.Cassette())
		}
	})
	t.Run("stacking: cleared into the cashbox, counted, not credited", func(t *testing.T) {
		s, h := start(t, Config{})
		h.up()
		s.InsertNote(3)
		h.poll(ssp.EvRead, 0)
		h.poll(ssp.EvRead, 3)
		h.poll(ssp.EvStacking)
		if err := s.PowerCycle(NoNote); !errors.Is(err, ErrBusy) {
			t.Fatalf("PowerCycle(NoNote) with a note: %v", err)
		}
		s.PowerCycle(Auto)
		h.expect(h.send(ssp.CmdSync), ssp.RespOK)
		h.poll(ssp.EvSlaveReset, ssp.EvDisabled)
		h.poll(ssp.EvClearedCashbox, 3, ssp.EvDisabled)
		c := s.Cassette()
		if len(c) != 1 || c[0].Reported || c[0].Via != "power_up_recovery" || c[0].Channel != 3 {
			t.Fatalf("cassette %+v", c)
		}
	})
	t.Run("forced places and RESET", func(t *testing.T) {
		s, h := start(t, Config{})
		if err := s.PowerCycle(InStacker); !errors.Is(err, ErrNoNote) {
			t.Fatalf("PowerCycle(InStacker) without a note: %v", err)
		}
		if err := s.PowerCycleWithNote(InStacker, 2); err != nil {
			t.Fatal(err)
		}
		h.poll(ssp.EvSlaveReset, ssp.EvDisabled)
		h.poll(ssp.EvClearedCashbox, 2, ssp.EvDisabled)
		if c := s.Cassette(); len(c) != 1 || c[0].ValueMinor != 500 {
			t.Fatalf("cassette %+v", c)
		}
		if err := s.PowerCycleWithNote(InAcceptor, 1); err != nil {
			t.Fatal(err)
		}
		h.expect(h.send(ssp.CmdReset), ssp.RespOK) // RESET restarts before the note is cleared
		h.poll(ssp.EvSlaveReset, ssp.EvDisabled)
		h.poll(ssp.EvClearedFront, 1, ssp.EvDisabled)
		if c := s.Cassette(); len(c) != 1 {
			t.Fatalf("a note in the acceptor was counted: %+v", c)
		}
	})
}

func TestFaultStatesAndSwap(t *testing.T) {
	s, h := start(t, Config{CassetteCapacity: 1})
	h.up()
	s.InsertNote(4)
	h.poll(ssp.EvRead, 0)
	h.poll(ssp.EvRead, 4)
	h.poll(ssp.EvStacking)
	h.poll(ssp.EvNoteCredit, 4, ssp.EvStacked, ssp.EvStackerFull) // capacity 1 reached
	h.poll(ssp.EvStackerFull)
	if err := s.InsertNote(1); !errors.Is(err, ErrCassetteFull) {
		t.Fatalf("insert when full: %v", err)
	}
	if err := s.PullCassette(); err != nil {
		t.Fatal(err)
	}
	h.poll(ssp.EvCashboxRemoved)
	h.poll(ssp.EvCashboxRemoved)
	if err := s.InsertNote(1); !errors.Is(err, ErrCassetteOut) {
		t.Fatalf("insert with the cashbox out: %v", err)
	}
	s.ReplaceCassette()
	h.poll(ssp.EvCashboxReplaced)
	h.poll()
	if st := s.State(); st.CassetteNumber != 2 || st.CassetteCount != 0 || !st.CassetteIn {
		t.Fatalf("state %+v", st)
	}
	s.Jam(false)
	h.poll(ssp.EvUnsafeJam)
	s.ClearJam()
	h.poll()
	s.InsertNote(2)
	h.poll(ssp.EvRead, 0)
	h.poll(ssp.EvRead, 2)
	h.poll(ssp.EvStacking)
	s.Jam(true)
	h.poll(ssp.EvSafeJam) // frozen
	h.poll(ssp.EvSafeJam)
	s.ClearJam() // the note was past the point of no return: pushed into the cashbox
	h.poll()
	if c := s.Cassette(); len(c) != 2 || c[1].Via != "jam_cleared" || c[1].Reported {
		t.Fatalf("cassette %+v", c)
	}
	s.OpenNotePath(true)
	h.poll(ssp.EvNotePathOpen)
	s.OpenNotePath(false)
	h.poll()
	s.InsertNote(1)
	h.poll(ssp.EvRead, 0)
	s.Cheat()
	h.poll(ssp.EvFraudAttempt, 1, ssp.EvRejecting)
	h.poll(ssp.EvRejected)
	h.expect(h.send(ssp.CmdLastRejectCode), okd(ssp.RejectStrimAttempt)...)
	s.Fail(0)
	h.expect(h.send(ssp.CmdPoll), ssp.RespSoftwareError)
	h.expect(h.send(ssp.CmdSync), ssp.RespOK)
	h.expect(h.send(ssp.CmdReset), ssp.RespOK)
	h.poll(ssp.EvSlaveReset, ssp.EvDisabled)
	if err := s.SwapUnit(0xABCDEF); err != nil {
		t.Fatal(err)
	}
	h.expect(h.send(ssp.CmdSync), ssp.RespOK)
	h.poll(ssp.EvSlaveReset, ssp.EvDisabled)
	h.expect(h.send(ssp.CmdGetSerial), okd(0x00, 0xAB, 0xCD, 0xEF)...)
	if s.Counters() != (ssp.Counters{}) {
		t.Fatalf("a new unit's counters %+v", s.Counters())
	}
	if c := s.Cassette(); len(c) != 2 || c[0].Cassette != 1 {
		t.Fatalf("cassette %+v", c)
	}
}

func TestLinkFaults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, h := start(t, Config{})
		// A damaged host packet is not answered.
		w, seq := h.packet(ssp.CmdSync)
		bad := append([]byte(nil), w...)
		bad[len(bad)-1] ^= 0x11
		h.write(bad)
		if _, ok := h.read(); ok {
			t.Fatal("a damaged packet was answered")
		}
		h.expect(h.roundTrip(w, seq), ssp.RespOK)

		s.InjectFault(Fault{Kind: FaultBadCRC})
		w, seq = h.packet(ssp.CmdPoll)
		h.write(w)
		if _, ok := h.read(); ok {
			t.Fatal("bad CRC reply decoded")
		}
		if st := h.dec.Stats(); st.BadCRC != 1 {
			t.Fatalf("decoder stats %+v", st)
		}
		s.InjectFault(Fault{Kind: FaultGarbage})
		s.InjectFault(Fault{Kind: FaultSplit, Delay: 50 * time.Millisecond})
		s.InjectFault(Fault{Kind: FaultSlow, Delay: 200 * time.Millisecond})
		h.expect(h.roundTrip(w, seq), okd(ssp.EvSlaveReset, ssp.EvDisabled)...) // the re-send gets the repeat
		h.poll(ssp.EvDisabled)
		t0 := time.Now()
		h.poll(ssp.EvDisabled)
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
	s.InsertNote(2)
	h.poll(ssp.EvRead, 0)
	b, err := json.Marshal(s.State())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(b, &m)
	if m["mode"] != "escrow_due" || m["note_in_path"] != float64(2) || m["cassette_in"] != true || m["serial"] != float64(DefaultSerial) {
		t.Fatalf("snapshot %s", b)
	}
}

// TestLineSpeed: at 9600 8N2 a SYNC and its OK each take their characters' time on the line.
func TestLineSpeed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		line := linespeed.SSP
		_, h := start(t, Config{Line: line})
		w, seq := h.packet(ssp.CmdSync)
		reply, _ := ssp.Encode(ssp.Frame{Seq: seq, Data: []byte{ssp.RespOK}})
		t0 := time.Now()
		h.expect(h.roundTrip(w, seq), ssp.RespOK)
		if got, want := time.Since(t0), line.Duration(len(w))+line.Duration(len(reply)); got != want {
			t.Fatalf("SYNC exchange took %v at 9600 8N2, want %v", got, want)
		}
		h.expect(h.send(ssp.CmdHostProtocol, 7), ssp.RespOK)
		h.poll(ssp.EvSlaveReset, ssp.EvDisabled)
	})
}
