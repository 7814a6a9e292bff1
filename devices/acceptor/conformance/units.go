package conformance

import (
	"context"
	"log/slog"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/devices/acceptor/registry"
	"github.com/kioskd/kioskd/hw-sim/simrig"
)

// The driver configurations under test come from the simulator's protocol table
// (hw-sim/simrig.Protocols), one or more per row of the product's driver table
// (devices/acceptor/registry), which also says whether a unit is escrowless. This file
// only adapts them to the names the suite uses.

const currency = "CNY"

// logger returns a component's logger; the tests replace it (-conformance.log).
var logger = func(component string) *slog.Logger { return slog.New(slog.DiscardHandler) }

// unitControl is the part of an emulator's control surface the suite drives.
type unitControl = simrig.UnitControl

// link is one connection of a new driver to the unit: a fresh net.Pipe for a serial unit,
// the same pins for a pulse unit.
type link struct {
	drv acceptor.Acceptor
	// serve is the emulator's side of the line; nil for a pulse unit.
	serve func(ctx context.Context) error
	// cut cuts the line at the host's end, as a host process dying does; nil for pins.
	cut func()
	// polls reads the driver's poll counter; nil for a unit that is not polled.
	polls func() uint64
}

// unit is one emulated acceptor; it lives across host restarts.
type unit struct {
	unitControl
	// raw is the emulator itself, for controls only one protocol has (sspsim.SwapUnit).
	raw     any
	connect func() (link, error)
}

// pendingFaults counts injected faults no reply has used yet.
func (u *unit) pendingFaults() int { return u.PendingFaults() }

// protocol is one driver configuration of the matrix; see simrig.Conformance for the facts.
type protocol struct {
	name   string
	denoms acceptor.Denominations
	// escrowless: the unit never calls Handler.Escrow (acceptor.Info.Escrowless).
	escrowless            bool
	rejectReason          func(byte) acceptor.RejectReason
	stackerJam            bool
	reReports             string
	creditRecovery        bool
	powerCutForgetsCredit string
	stackCounter          bool
	faults                []string
	replyTimeout          time.Duration
	newUnit               func(o unitOpts) *unit
}

// unitOpts tunes a unit and its drivers.
type unitOpts struct {
	// fast polls as fast as the link allows and shortens pulses, for benchmarks that measure
	// the host's own cost per note rather than the protocol's waits.
	fast bool
}

// benchPoll is the poll interval of the fast configurations.
const benchPoll = simrig.FastPoll

// protocols is every driver configuration of every protocol in the tables.
func protocols() []*protocol {
	var out []*protocol
	for _, sp := range simrig.Protocols() {
		drv, err := registry.Lookup(sp.Name)
		if err != nil {
			// The tables are kept identical by a test in hw-sim/simrig; a row without its
			// driver has nothing to test.
			continue
		}
		denoms := sp.Denominations(currency)
		for _, c := range sp.Conformance {
			out = append(out, &protocol{name: c.Name, denoms: denoms, escrowless: drv.Escrowless,
				rejectReason: c.RejectReason, stackerJam: c.StackerJam, reReports: c.ReReports, creditRecovery: c.CreditRecovery,
				powerCutForgetsCredit: c.PowerCutForgetsCredit, stackCounter: c.StackCounter, faults: c.Faults, replyTimeout: c.ReplyTimeout,
				newUnit: func(o unitOpts) *unit {
					su := c.NewUnit(simrig.UnitOptions{Denominations: denoms, Fast: o.fast, Logger: logger})
					return &unit{unitControl: su.UnitControl, raw: su.Raw, connect: func() (link, error) {
						l, err := su.Connect()
						return link{drv: l.Driver, serve: l.Serve, cut: l.Cut, polls: l.Polls}, err
					}}
				}})
		}
	}
	return out
}
