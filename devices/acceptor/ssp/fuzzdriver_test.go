package ssp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/devices/acceptor/acceptortest"
)

// FuzzDriver plays arbitrary unit behaviour against the whole driver (plain SSP, POLL WITH
// ACK taken when answered OK): the input is a list of replies, each [flags, n, data[n%8]...]
// where the data is the reply DATA (generic response and events); flags bit 0 corrupts the
// CRC, bit 1 drops the reply, bit 2 splits it, bit 3 answers with the opposite sequence
// flag. The driver must not panic, must leave no goroutine behind (the synctest bubble
// checks), must never send EVENT ACK after a poll reply with a credit Credited failed for,
// and must never poll a note in escrow the handler did not say Stack to.
func FuzzDriver(f *testing.F) {
	seq := func(replies ...[]byte) []byte {
		var b []byte
		for _, r := range replies {
			b = append(b, 0, byte(len(r)))
			b = append(b, r...)
		}
		return b
	}
	ok := []byte{RespOK}
	f.Add(seq(ok, ok, []byte{RespCannotProcess}, []byte{RespOK, EvSlaveReset, EvDisabled}, ok, ok))
	f.Add(seq(ok, ok, []byte{RespCannotProcess}, []byte{RespOK, EvRead, 2}, ok, []byte{RespOK, EvStacking},
		[]byte{RespOK, EvStacking, EvNoteCredit, 2}, []byte{RespOK, EvStacking, EvNoteCredit, 2}, ok))
	f.Add(seq(ok, ok, ok, ok, []byte{RespOK, EvRejected}, []byte{RespOK, 0x13}, []byte{RespKeyNotSet}))
	f.Add([]byte{1, 1, RespOK, 2, 1, RespOK, 4, 3, RespOK, EvRead, 1, 8, 1, RespOK})
	f.Fuzz(fuzzDriverOnce)
}

func fuzzDriverOnce(t *testing.T, in []byte) {
	if len(in) > 800 {
		return
	}
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		host, unit := net.Pipe()
		var lastCreditOK atomic.Bool // the last Credited call returned nil
		var decision atomic.Int32    // the handler's last escrow decision
		rec := &acceptortest.Recorder{
			Decide: func(n acceptor.Note, call int) acceptor.Decision {
				d := acceptor.Decision(call%4 + 0)
				decision.Store(int32(d))
				return d
			},
			Credit: func(n acceptor.Note, call int) error {
				if call%2 == 0 {
					lastCreditOK.Store(false)
					return io.ErrUnexpectedEOF
				}
				lastCreditOK.Store(true)
				return nil
			},
		}
		d := New(unit0(host), Config{Denominations: testDenoms, PowerUpSettle: 1})
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx, rec) }()
		go func() {
			defer cancel()
			var dec Decoder
			buf := make([]byte, 64)
			escrowSent := false // the last reply delivered put a note in escrow
			creditSent := false // the last reply delivered carried a NOTE CREDIT
			for len(in) >= 2 {
				flags, n := in[0], int(in[1]%8)
				in = in[2:]
				n = min(n, len(in))
				data := in[:n]
				in = in[n:]
				var f Frame
				for {
					got, err := dec.Next()
					if err == nil {
						f = got
						break
					}
					if !errors.Is(err, ErrIncomplete) {
						continue
					}
					m, err := unit.Read(buf)
					if err != nil {
						return
					}
					dec.Feed(buf[:m])
				}
				switch f.Data[0] {
				case CmdEventAck:
					if creditSent && !lastCreditOK.Load() {
						t.Errorf("EVENT ACK sent for a credit Credited failed for")
					}
				case CmdPoll, CmdPollWithAck:
					if escrowSent && acceptor.Decision(decision.Load()) != acceptor.Stack {
						t.Errorf("poll sent for a note in escrow the handler said %v to", acceptor.Decision(decision.Load()))
					}
				}
				isPoll := f.Data[0] == CmdPoll || f.Data[0] == CmdPollWithAck
				if isPoll {
					escrowSent, creditSent = false, false
				}
				// The note left escrow by REJECT, or a HOLD was refused (no note in escrow):
				// a poll may follow.
				if f.Data[0] == CmdReject || (f.Data[0] == CmdHold && (len(data) == 0 || data[0] != RespOK || flags&11 != 0)) {
					escrowSent = false
				}
				if flags&2 != 0 || len(data) == 0 {
					continue
				}
				if isPoll && flags&9 == 0 && data[0] == RespOK {
					events, _ := ParseEvents(data[1:])
					for _, e := range events {
						escrowSent = (escrowSent || (e.Code == EvRead && e.Channel() > 0)) && e.Code != EvSlaveReset
						creditSent = creditSent || e.Code == EvNoteCredit
					}
				}
				s := f.Seq
				if flags&8 != 0 {
					s = !s
				}
				reply, err := Encode(Frame{Seq: s, Data: data})
				if err != nil {
					continue
				}
				if flags&1 != 0 {
					reply[len(reply)-1] ^= 0x21
				}
				if flags&4 != 0 && len(reply) > 2 {
					unit.Write(reply[:2])
					reply = reply[2:]
				}
				unit.Write(reply)
			}
		}()
		<-done
		unit.Close()
	})
}

// unit0 keeps the port a plain io.ReadWriteCloser.
func unit0(c net.Conn) io.ReadWriteCloser { return c }

// TestDriverRandomUnits runs the FuzzDriver checks over a fixed set of pseudo-random units
// whose replies are mostly well-formed: OK or a generic error, then known events.
func TestDriverRandomUnits(t *testing.T) {
	var codes []byte
	for c := range eventDataLen {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	resp := []byte{RespOK, RespOK, RespOK, RespOK, RespUnknownCommand, RespCannotProcess, RespKeyNotSet, RespFail}
	r := rand.New(rand.NewPCG(7, 9))
	for i := 0; i < 300; i++ {
		var in []byte
		for k := r.IntN(40); k > 0; k-- {
			flags := byte(0)
			if r.IntN(6) == 0 {
				flags = byte(r.IntN(16))
			}
			d := []byte{resp[r.IntN(len(resp))]}
			for e := r.IntN(4); e > 0; e-- {
				c := codes[r.IntN(len(codes))]
				d = append(d, c)
				if eventDataLen[c] == 1 {
					d = append(d, byte(r.IntN(5)))
				}
			}
			d = d[:min(len(d), 7)]
			in = append(in, flags, byte(len(d)))
			in = append(in, d...)
		}
		if !t.Run(fmt.Sprint(i), func(t *testing.T) { fuzzDriverOnce(t, in) }) {
			t.Fatalf("unit % X", in)
		}
	}
}
