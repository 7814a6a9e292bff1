package ssp

import (
	"context"
	"testing"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/devices/internal/playbacktest"
)

// Playback scripts for the driver tests: the fake unit is devices/internal/playback,
// the handler acceptortest.Recorder. Scripts are written with a builder that tracks the sequence flag the way the SSP manual
// wants it: SYNC sets it, every new command flips it, a re-sent packet keeps it.

// step is one exchange of a script.
type step = playbacktest.Step

// frame encodes a frame for address 0; the encoder itself is pinned by the frame table.
func frame(seq bool, data ...byte) []byte {
	b, err := Encode(Frame{Seq: seq, Data: data})
	if err != nil {
		panic(err)
	}
	return b
}

// sb builds a script, tracking the sequence flag.
type sb struct {
	seq   bool
	steps []step
}

func (b *sb) flag(cmd byte) bool {
	if cmd == CmdSync {
		return true
	}
	return !b.seq
}

// ask: the host sends cmd (a new packet), the unit answers with reply.
func (b *sb) ask(cmd []byte, reply ...byte) *sb {
	f := b.flag(cmd[0])
	b.steps = append(b.steps, step{Host: frame(f, cmd...), Unit: [][]byte{frame(f, reply...)}})
	b.seq = f
	return b
}

// askThen is ask with a hook run after the answer.
func (b *sb) askThen(then func(), cmd []byte, reply ...byte) *sb {
	b.ask(cmd, reply...)
	b.steps[len(b.steps)-1].Then = then
	return b
}

// silent: the host sends cmd and gets no answer; the next ask or silent of the same packet
// re-sends it with the same flag.
func (b *sb) silent(cmd ...byte) *sb {
	b.steps = append(b.steps, step{Host: frame(b.flag(cmd[0]), cmd...)})
	return b
}

// raw: the host sends cmd and the unit answers with arbitrary chunks; commit says whether
// the packet counts as answered (the flag flips).
func (b *sb) raw(commit bool, cmd []byte, unit ...[]byte) *sb {
	f := b.flag(cmd[0])
	b.steps = append(b.steps, step{Host: frame(f, cmd...), Unit: unit})
	if commit {
		b.seq = f
	}
	return b
}

// reply is the frame the unit sends for the next new packet of cmd, for raw steps.
func (b *sb) reply(cmd byte, data ...byte) []byte { return frame(b.flag(cmd), data...) }

func c(cmd byte, args ...byte) []byte { return append([]byte{cmd}, args...) }

func ok(data ...byte) []byte { return append([]byte{RespOK}, data...) }

// poll: POLL answered with events.
func (b *sb) poll(events ...byte) *sb { return b.ask(c(CmdPoll), ok(events...)...) }

// Test fixtures: a CNY table for channels 1..3, and the setup of a unit that matches it.
var testDenoms = acceptor.Denominations{
	1: {ValueMinor: 100, Currency: "CNY"},  // 1 yuan
	2: {ValueMinor: 500, Currency: "CNY"},  // 5 yuan
	3: {ValueMinor: 1000, Currency: "CNY"}, // 10 yuan
}

var testSetup = Setup{
	UnitType: UnitValidator, Firmware: "0380", Country: "CNY", ValueMultiplier: 1,
	ProtocolVersion: 7, RealValueMultiplier: 100, Security: []byte{2, 2, 2},
	Channels: []Channel{{1, 1, "CNY"}, {2, 5, "CNY"}, {3, 10, "CNY"}},
}

const testSerial = 0x001C962C // 1873452, GA138's example

func serialReply(s uint32) []byte {
	return ok(byte(s>>24), byte(s>>16), byte(s>>8), byte(s))
}

// link is SYNC and HOST PROTOCOL VERSION 7.
func (b *sb) link() *sb {
	return b.ask(c(CmdSync), RespOK).ask(c(CmdHostProtocol, 7), RespOK)
}

// probe is the start-up HOLD answered "no note in escrow".
func (b *sb) probe() *sb { return b.ask(c(CmdHold), RespCannotProcess) }

// configure is the setup (when first), serial, inhibits for channels 1..3 and DISABLE.
func (b *sb) configure(first bool, serial uint32) *sb {
	if first {
		b.ask(c(CmdSetupRequest), ok(AppendSetup(nil, testSetup)...)...)
	}
	return b.ask(c(CmdGetSerial), serialReply(serial)...).
		ask(c(CmdSetInhibits, 0x07, 0x00), RespOK).
		ask(c(CmdDisable), RespOK)
}

// running is a unit found idle and disabled by a fresh Run, configured, then enabled for
// channels 1 and 3 by the test (enableOnIdentified).
func (b *sb) running() *sb {
	b.link().probe().poll(EvDisabled).configure(true, testSerial)
	return b.ask(c(CmdSetInhibits, 0x05, 0x00), RespOK).ask(c(CmdEnable), RespOK)
}

// shutdown is the DISABLE Run sends on its way out.
func (b *sb) shutdown() *sb { return b.ask(c(CmdDisable), RespOK) }

// enableOnIdentified makes the handler call Enable(1, 3) once the driver is configured.
func enableOnIdentified(t *testing.T, ctx context.Context, d *Driver, next func(acceptor.Event)) func(acceptor.Event) {
	return func(e acceptor.Event) {
		if e.Kind == acceptor.Identified {
			go func() {
				if err := d.Enable(ctx, []int{1, 3}); err != nil && ctx.Err() == nil {
					t.Errorf("Enable: %v", err)
				}
			}()
		}
		if next != nil {
			next(e)
		}
	}
}

// testConfig is the driver configuration of the playback tests: plain POLL, a short
// power-up settle time.
func testConfig() Config {
	return Config{Denominations: testDenoms, PollMode: PollPlain, PowerUpSettle: time.Millisecond}
}
