package id003

import (
	"context"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/devices/acceptor/acceptortest"
	"github.com/kioskd/kioskd/devices/internal/playbacktest"
)

// FuzzDriver plays arbitrary unit behaviour against the whole driver: the input is a list of
// replies, each [flags, status, n, data[n%4]...]; flags bit 0 corrupts the CRC, bit 1 drops
// the reply, bit 2 splits it. The driver must not panic, must leave no goroutine behind (the
// synctest bubble checks), and must never send ACK before a Credited call returned nil.
func FuzzDriver(f *testing.F) {
	seq := func(replies ...[]byte) []byte {
		var b []byte
		for _, r := range replies {
			b = append(b, 0, r[0], byte(len(r)-1))
			b = append(b, r[1:]...)
		}
		return b
	}
	f.Add(seq([]byte{StPowerUp}, []byte{CmdAck}, []byte{StInitialize}))
	f.Add(seq([]byte{StEscrow, 0x62}, []byte{CmdAck}, []byte{StStacking}, []byte{StVendValid}, []byte{StStacked}))
	f.Add(seq([]byte{StVendValid}, []byte{StVendValid}, []byte{StFailure, 0xA2}, []byte{StInvalidCommand}))
	f.Add([]byte{1, StIdling, 0, 2, StIdling, 0, 4, StEscrow, 1, 0x61})
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > 600 {
			return
		}
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			host, unit := net.Pipe()
			var creditedOK atomic.Int32
			rec := &acceptortest.Recorder{
				Decide: func(n acceptor.Note, call int) acceptor.Decision { return acceptor.Decision(call%4 + 0) },
				Credit: func(n acceptor.Note, call int) error {
					if call%2 == 0 {
						return io.ErrUnexpectedEOF
					}
					creditedOK.Add(1)
					return nil
				},
			}
			d := New(host, Config{Denominations: testDenoms})
			done := make(chan error, 1)
			go func() { done <- d.Run(ctx, rec) }()
			go func() {
				defer cancel()
				for len(in) >= 3 {
					flags, status, n := in[0], in[1], int(in[2]%4)
					in = in[3:]
					n = min(n, len(in))
					data := in[:n]
					in = in[n:]
					got, err := playbacktest.ReadFrame(unit, frameDone)
					if err != nil {
						return
					}
					if got[2] == CmdAck && creditedOK.Load() == 0 {
						t.Errorf("ACK sent before any credit was recorded")
					}
					if got[2] == CmdAck {
						continue // the host's ACK is not answered; the reply goes to the next frame
					}
					if flags&2 != 0 {
						continue
					}
					reply := fr(status, data...)
					if flags&1 != 0 {
						reply[len(reply)-1] ^= 0x5A
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
	})
}
