package id003

import (
	"context"
	"errors"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/devices/internal/playbacktest"
)

// Playback scripts for the driver tests: the fake unit is devices/internal/playback,
// the handler acceptortest.Recorder.

// step is one exchange of a script.
type step = playbacktest.Step

// fr encodes a frame; the encoder itself is pinned by the literal frame table.
func fr(cmd byte, data ...byte) []byte {
	b, err := Encode(cmd, data...)
	if err != nil {
		panic(err)
	}
	return b
}

var statusReq = fr(CmdStatusRequest)

// Test fixtures: a CNY table for codes 0x61..0x63.
var testDenoms = acceptor.Denominations{
	0x61: {ValueMinor: 100, Currency: "CNY"},  // 1 yuan
	0x62: {ValueMinor: 500, Currency: "CNY"},  // 5 yuan
	0x63: {ValueMinor: 1000, Currency: "CNY"}, // 10 yuan
}

const testVersion = "i(CHN)100-SS ID003-05V310-00"

var testCurrencyTable = []byte{
	0x61, 0x2D, 0x01, 0x00,
	0x62, 0x2D, 0x05, 0x00,
	0x63, 0x2D, 0x01, 0x01,
}

// configSteps is the settings sequence after a RESET or on a unit found already running; with
// identify it also reads the version and the currency table (first configuration of a Run).
func configSteps(identify bool) []step {
	s := []step{
		playbacktest.Ask(fr(CmdSetDenoms, 0xF8, 0xFF), fr(CmdSetDenoms, 0xF8, 0xFF)), // 0x61..0x63 enabled
		playbacktest.Ask(fr(CmdSetSecurity, 0x00, 0x00), fr(CmdSetSecurity, 0x00, 0x00)),
		playbacktest.Ask(fr(CmdSetCommMode, 0x00), fr(CmdSetCommMode, 0x00)),
		playbacktest.Ask(fr(CmdSetInhibit, 0x01), fr(CmdSetInhibit, 0x01)),
	}
	if identify {
		s = append(s,
			playbacktest.Ask(fr(CmdVersion), fr(CmdVersion, []byte(testVersion)...)),
			playbacktest.Ask(fr(CmdCurrency), fr(CmdCurrency, testCurrencyTable...)),
		)
	}
	return s
}

// shutdownSteps is the inhibit Run sends on its way out.
func shutdownSteps() []step {
	return []step{playbacktest.Ask(fr(CmdSetInhibit, 0x01), fr(CmdSetInhibit, 0x01))}
}

func poll(status byte, data ...byte) step { return playbacktest.Ask(statusReq, fr(status, data...)) }

// runDriver runs a driver on port until Run returns and reports Run's error.
func runDriver(ctx context.Context, d *Driver, h acceptor.Handler) <-chan error {
	errc := make(chan error, 1)
	go func() { errc <- d.Run(ctx, h) }()
	return errc
}

// frameDone tells playbacktest.ReadFrame whether b is one whole frame.
func frameDone(b []byte) (bool, error) {
	_, _, err := Decode(b)
	if errors.Is(err, ErrIncomplete) {
		return false, nil
	}
	return err == nil, err
}
