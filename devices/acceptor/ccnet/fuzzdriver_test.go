package ccnet

import (
	"bytes"
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/devices/acceptor/acceptortest"
	"github.com/kioskd/kioskd/devices/internal/playbacktest"
)

// creditWatch tracks, on the unit's side, what the driver may acknowledge. A STACKED episode
// starts when the unit delivers a STACKED that the driver will take as new (its previous
// processed POLL answer was not the same STACKED); the driver's ACK of a STACKED answer is
// legal only once Credited returned nil for that bill type in the episode.
type creditWatch struct {
	mu          sync.Mutex
	lastPoll    []byte // payload of the last POLL answer the driver processes
	inEpisode   bool
	episodeType int
	recorded    bool
	lastStacked bool // the last reply delivered was a STACKED the driver processes
}

// delivered notes an intact reply to cmd.
func (w *creditWatch) delivered(cmd byte, payload []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lastStacked = false
	// A STACKED with its bill type fits no other command: the driver takes it as the late
	// answer to an earlier POLL and gives it to the credit logic, so it is a POLL answer here
	// too. It may start an episode (and record its credit) that the next POLL answer
	// continues.
	lateStacked := len(payload) == 2 && payload[0] == StStacked
	if cmd != CmdPoll && !lateStacked {
		return // not taken as a state
	}
	if len(payload) == 0 || len(payload) > 2 || payload[0] == StBusy ||
		(len(payload) == 1 && (payload[0] == CmdAck || payload[0] == CmdNak || payload[0] == RepIllegalCommand)) {
		return // the driver does not take this as a state
	}
	stacked := payload[0] == StStacked
	if stacked && !bytes.Equal(payload, w.lastPoll) {
		w.inEpisode, w.recorded = true, false
		w.episodeType = 0 // Note{}.Code, for a STACKED without a bill type
		if len(payload) > 1 {
			w.episodeType = int(payload[1])
		}
	}
	w.lastStacked = stacked
	if !stacked {
		w.inEpisode = false
	}
	w.lastPoll = append(w.lastPoll[:0], payload...)
}

func (w *creditWatch) credited(n acceptor.Note) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.inEpisode && n.Code == w.episodeType {
		w.recorded = true
	}
}

func (w *creditWatch) ackAllowed() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return !w.lastStacked || w.recorded
}

// FuzzDriver plays arbitrary unit behaviour against the whole driver: the input is a list of
// replies, each [flags, first byte, n, data[n%4]...]; flags bit 0 corrupts the CRC, bit 1
// drops the reply, bit 2 splits it. The fake unit answers the host's NAK with its last reply
// and does not answer ACK. The driver must not panic, must leave no goroutine behind (the
// synctest bubble checks), and must never acknowledge a STACKED answer before Credited
// returned nil for it.
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
	f.Add(seq([]byte{StEscrow, 2}, []byte{CmdAck}, []byte{StStacking}, []byte{StStacked, 2}, []byte{StStacked, 2}, []byte{StIdling}))
	f.Add(seq([]byte{StStacked, 0}, []byte{StStacked, 0}, []byte{StStacked, 1}, []byte{StFailure, 0x50}, []byte{RepIllegalCommand}))
	f.Add(seq([]byte{StPowerUpBillInStacker}, []byte{CmdAck}, []byte{StInitialize}, []byte{StStacked, 2}, []byte{StBusy, 2}, []byte{StStacked, 2}))
	f.Add([]byte{1, StStacked, 1, 0, 2, StIdling, 0, 4, StEscrow, 1, 1, 0, CmdNak, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > 600 {
			return
		}
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			host, unit := net.Pipe()
			var watch creditWatch
			rec := &acceptortest.Recorder{
				Decide: func(n acceptor.Note, call int) acceptor.Decision { return acceptor.Decision(call % 4) },
				Credit: func(n acceptor.Note, call int) error {
					if call%2 == 0 {
						return io.ErrUnexpectedEOF
					}
					watch.credited(n)
					return nil
				},
			}
			d := New(host, Config{Denominations: testDenoms})
			done := make(chan error, 1)
			go func() { done <- d.Run(ctx, rec) }()
			go func() {
				defer cancel()
				var last []byte // the last reply, intact
				var lastCmd byte
				for len(in) >= 3 {
					got, err := playbacktest.ReadFrame(unit, frameDone)
					if err != nil {
						return
					}
					switch got[3] {
					case CmdAck:
						if !watch.ackAllowed() {
							t.Errorf("ACK of a STACKED answer before Credited returned nil")
						}
						continue // the host's ACK is not answered
					case CmdNak:
						if last != nil {
							watch.delivered(lastCmd, last[3:len(last)-2])
							unit.Write(last)
						}
						continue
					}
					flags, first, n := in[0], in[1], int(in[2]%4)
					in = in[3:]
					n = min(n, len(in))
					data := in[:n]
					in = in[n:]
					if flags&2 != 0 {
						continue
					}
					reply := fr(first, data...)
					last, lastCmd = reply, got[3]
					out := reply
					if flags&1 != 0 {
						out = append([]byte(nil), reply...)
						out[len(out)-1] ^= 0x5A
					} else {
						watch.delivered(got[3], reply[3:len(reply)-2])
					}
					if flags&4 != 0 && len(out) > 2 {
						unit.Write(out[:2])
						out = out[2:]
					}
					unit.Write(out)
				}
			}()
			<-done
			unit.Close()
		})
	})
}
