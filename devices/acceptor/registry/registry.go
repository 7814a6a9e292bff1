// Package registry is the one table of the bill acceptor drivers this build knows: per
// driver its name (the value of the config file's acceptor.driver), the serial line it
// speaks on, its constructor, and whether the unit is escrowless. Config validation, the
// daemon and, through hw-sim's emulator table (which must list exactly the same names), the
// simulator, the conformance suite and the benchmarks all read it, so adding a protocol is
// one row here and one row in hw-sim/simrig.
//
// The package links only drivers: it is part of the product and must stay free of
// emulators and test code.
package registry

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/devices/acceptor/ccnet"
	"github.com/kioskd/kioskd/devices/acceptor/id003"
	"github.com/kioskd/kioskd/devices/acceptor/pulse"
	"github.com/kioskd/kioskd/devices/acceptor/ssp"
	"github.com/kioskd/kioskd/devices/serialport"
)

// ErrUnknown is returned for a driver name the table does not list.
var ErrUnknown = errors.New("unknown acceptor driver")

// Options is what a driver is built from besides its line: the settings every driver takes
// and the few that belong to one protocol.
type Options struct {
	// Denominations is the kiosk's note table, by the protocol's codes.
	Denominations acceptor.Denominations
	// PollInterval between two status polls (0: the driver's default); unused by units
	// that are not polled.
	PollInterval time.Duration
	// Logger receives the driver's logs; nil discards them.
	Logger *slog.Logger
	// SSP: eSSP encryption and its fixed key (the driver refuses the well-known default).
	SSPEncrypt  bool
	SSPFixedKey uint64
	// Pulse is the pulse driver's configuration (pins, levels, timing); its Notes and
	// Logger default to Denominations and Logger.
	Pulse pulse.Config
}

// Driver is one row of the table.
type Driver struct {
	// Name is the config file's acceptor.driver value.
	Name string
	// Description names the protocol for people.
	Description string
	// Serial: the unit is on a serial line opened with Mode. False for a unit wired to GPIO
	// pins, which has no port (Options.Pulse carries its pins).
	Serial bool
	Mode   serialport.Mode
	// Escrowless: the unit never holds a note in escrow and never asks the host to decide
	// (acceptor.Info.Escrowless); the session engine runs without escrow decisions.
	Escrowless bool
	// New builds the driver on port (nil for a unit that is not Serial). It returns an
	// error for options the driver refuses, never panics.
	New func(port io.ReadWriter, o Options) (acceptor.Acceptor, error)
	// check refuses options before any port is open (nil: nothing to check early); New
	// checks them as well.
	check func(o Options) error
}

// Check refuses options the driver would refuse, without a port: start-up calls it so that
// a configuration error stops the daemon instead of a retry loop reopening the port.
func (d Driver) Check(o Options) error {
	if d.check == nil {
		return nil
	}
	return d.check(o)
}

// drivers is the table, in the order error messages and help texts list the names.
var drivers = []Driver{
	{
		Name: "id003", Description: "JCM ID-003", Serial: true, Mode: serialport.ID003,
		New: func(port io.ReadWriter, o Options) (acceptor.Acceptor, error) {
			return id003.New(port, id003.Config{Denominations: o.Denominations, PollInterval: o.PollInterval, Logger: o.Logger}), nil
		},
	},
	{
		Name: "ccnet", Description: "CashCode CCNET", Serial: true, Mode: serialport.CCNET,
		New: func(port io.ReadWriter, o Options) (acceptor.Acceptor, error) {
			return ccnet.New(port, ccnet.Config{Denominations: o.Denominations, PollInterval: o.PollInterval, Logger: o.Logger}), nil
		},
	},
	{
		Name: "ssp", Description: "ITL SSP / eSSP", Serial: true, Mode: serialport.SSP,
		New: func(port io.ReadWriter, o Options) (acceptor.Acceptor, error) {
			c := sspConfig(o)
			if err := c.Validate(); err != nil {
				return nil, err
			}
			return ssp.New(port, c), nil
		},
		check: func(o Options) error { return sspConfig(o).Validate() },
	},
	{
		Name: "pulse", Description: "pulse output on GPIO", Escrowless: true,
		New: func(_ io.ReadWriter, o Options) (acceptor.Acceptor, error) {
			c := o.Pulse
			if c.Notes == nil {
				c.Notes = o.Denominations
			}
			if c.Logger == nil {
				c.Logger = o.Logger
			}
			return pulse.New(c)
		},
	},
}

func sspConfig(o Options) ssp.Config {
	return ssp.Config{Denominations: o.Denominations, PollInterval: o.PollInterval, Encrypt: o.SSPEncrypt, FixedKey: o.SSPFixedKey, Logger: o.Logger}
}

// Drivers returns the table, in order.
func Drivers() []Driver { return slices.Clone(drivers) }

// Names returns the drivers' names, in order.
func Names() []string {
	out := make([]string, len(drivers))
	for i, d := range drivers {
		out[i] = d.Name
	}
	return out
}

// Lookup finds a driver by name; the error names the known ones.
func Lookup(name string) (Driver, error) {
	for _, d := range drivers {
		if d.Name == name {
			return d, nil
		}
	}
	return Driver{}, fmt.Errorf("%w %q (known: %s)", ErrUnknown, name, strings.Join(Names(), ", "))
}

// New builds the named driver on port.
func New(name string, port io.ReadWriter, o Options) (acceptor.Acceptor, error) {
	d, err := Lookup(name)
	if err != nil {
		return nil, err
	}
	if d.Serial && port == nil {
		return nil, fmt.Errorf("acceptor driver %q: no serial port", name)
	}
	return d.New(port, o)
}

// Escrowless reports whether the named driver's unit credits without escrow (false for an
// unknown name: the configuration check refuses those before anything is built).
func Escrowless(name string) bool {
	d, err := Lookup(name)
	return err == nil && d.Escrowless
}
