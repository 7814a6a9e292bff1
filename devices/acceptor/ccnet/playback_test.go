package ccnet

import (
	"errors"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/devices/internal/playbacktest"
)

// Playback scripts for the driver tests: the fake unit is devices/internal/playback,
// the handler acceptortest.Recorder.

// step is one exchange of a script.
type step = playbacktest.Step

// ask is a step where the host sends host and the unit answers with one frame.
func ask(host, unit []byte) []step { return []step{playbacktest.Ask(host, unit)} }

// silent is a step where the unit does not answer.
func silent(host []byte) []step { return []step{playbacktest.Silent(host)} }

// fr encodes a frame for the bill validator address; the encoder itself is pinned by the
// literal frame table.
func fr(cmd byte, data ...byte) []byte {
	b, err := Encode(AddrBillValidator, cmd, data...)
	if err != nil {
		panic(err)
	}
	return b
}

var (
	pollReq = fr(CmdPoll)
	ackF    = fr(CmdAck)
	nakF    = fr(CmdNak)
	illegal = fr(RepIllegalCommand)
)

// hostAck is the host's ACK of a reply; the unit does not answer it.
func hostAck() []step { return silent(ackF) }

// poll is POLL answered by a state (and data), then the host's ACK.
func poll(status byte, data ...byte) []step {
	return playbacktest.Script(ask(pollReq, fr(status, data...)), hostAck())
}

// pollStacked is POLL answered by STACKED: whether the host ACKs is up to the test.
func pollStacked(billType byte) []step { return ask(pollReq, fr(StStacked, billType)) }

// command is a command the unit acknowledges with ACK.
func command(cmd byte, data ...byte) []step { return ask(fr(cmd, data...), ackF) }

// dataReq is a command answered with data, then the host's ACK.
func dataReq(cmd byte, reply []byte) []step {
	return playbacktest.Script(ask(fr(cmd), fr(reply[0], reply[1:]...)), hostAck())
}

// then makes f run once the last of steps was answered.
func then(steps []step, f func()) []step {
	steps[len(steps)-1].Then = f
	return steps
}

// Test fixtures: a CNY table for bill types 0..2. Type 0 is a real bill type in CCNET.
var testDenoms = acceptor.Denominations{
	0: {ValueMinor: 1000, Currency: "CNY"}, // 10 yuan
	1: {ValueMinor: 2000, Currency: "CNY"}, // 20 yuan
	2: {ValueMinor: 5000, Currency: "CNY"}, // 50 yuan
}

var (
	ten    = acceptor.Note{Code: 0, ValueMinor: 1000, Currency: "CNY"}
	twenty = acceptor.Note{Code: 1, ValueMinor: 2000, Currency: "CNY"}
	fifty  = acceptor.Note{Code: 2, ValueMinor: 5000, Currency: "CNY"}
)

var testIdent = identWire[3 : len(identWire)-2]

var testBillTable = AppendBillTable(nil, []BillEntry{
	{Value: 1, Country: [3]byte{'C', 'H', 'N'}, Exponent: 1},
	{Value: 2, Country: [3]byte{'C', 'H', 'N'}, Exponent: 1},
	{Value: 5, Country: [3]byte{'C', 'H', 'N'}, Exponent: 1},
})

var testStatus = []byte{0x00, 0x00, 0x00, 0x00, 0x00, 0x00}

// identifySteps reads GET STATUS, IDENTIFICATION and the bill table.
func identifySteps() []step {
	return playbacktest.Script(
		dataReq(CmdGetStatus, testStatus),
		dataReq(CmdIdentification, testIdent),
		dataReq(CmdGetBillTable, testBillTable),
	)
}

// settingsSteps is SET SECURITY and the inhibiting ENABLE BILL TYPES.
func settingsSteps() []step {
	return playbacktest.Script(
		command(CmdSetSecurity, 0, 0, 0),
		command(CmdEnableBillTypes, 0, 0, 0, 0xFF, 0xFF, 0xFF),
	)
}

// configSteps is the configuration after a RESET or on a unit found quiet; with identify it
// also reads the unit's identity (first configuration of a Run in a state that allows it).
func configSteps(identify bool) []step {
	if identify {
		return playbacktest.Script(identifySteps(), settingsSteps())
	}
	return settingsSteps()
}

// shutdownSteps is the inhibit Run sends on its way out.
func shutdownSteps() []step { return command(CmdEnableBillTypes, 0, 0, 0, 0xFF, 0xFF, 0xFF) }

// frameDone tells playbacktest.ReadFrame whether b is one whole frame.
func frameDone(b []byte) (bool, error) {
	_, _, err := Decode(b)
	if errors.Is(err, ErrIncomplete) {
		return false, nil
	}
	return err == nil, err
}
