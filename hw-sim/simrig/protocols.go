package simrig

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/devices/acceptor/ccnet"
	"github.com/kioskd/kioskd/devices/acceptor/id003"
	"github.com/kioskd/kioskd/devices/acceptor/pulse"
	"github.com/kioskd/kioskd/devices/acceptor/ssp"
	"github.com/kioskd/kioskd/hw-sim/pulsesim"
)

// Protocol is one bill acceptor protocol on the simulator side: its emulator, its demo note
// table, and what the conformance suite and the benchmark table need to run its driver
// against the emulator. Its Name is the name of a row of devices/acceptor/registry, the
// product's driver table; a test checks that both tables list exactly the same names, so a
// new protocol is one row there and one row here.
type Protocol struct {
	Name string
	// Denominations is the demo note table in a currency.
	Denominations func(currency string) acceptor.Denominations
	// Pins are the acceptor's own simulated pins (opened in-process through Rig.Pin); nil
	// for a unit on a serial line, which the rig puts on a pty.
	Pins []string
	// newSim builds the emulator for the rig.
	newSim func(cfg Config) AcceptorSim
	// Conformance lists the driver configurations the conformance suite and the note
	// benchmark run against this emulator (SSP: plain and encrypted).
	Conformance []Conformance
}

// Conformance is one driver configuration under test, with the protocol facts the
// protocol-neutral scenarios depend on.
type Conformance struct {
	// Name of the configuration ("ssp", "essp"); the first configuration of a protocol
	// carries the protocol's name.
	Name string
	// RejectReason is the driver package's mapping of raw reject codes; nil when the
	// protocol has no reject reasons.
	RejectReason func(byte) acceptor.RejectReason
	// StackerJam: the protocol reports a jam in the stacker apart from one in the acceptor.
	StackerJam bool
	// ReReports is empty when the unit repeats a credit the host did not acknowledge across
	// a host restart; else the reason it does not.
	ReReports string
	// CreditRecovery: after a power-up with a note in the stacker and RESET the unit reports
	// that note's credit as well (CCNET's "credit recovery").
	CreditRecovery bool
	// PowerCutForgetsCredit is the reason a unit that lost power after reporting a credit
	// the host had not acknowledged says nothing about that note at power-up; else empty.
	PowerCutForgetsCredit string
	// StackCounter: the unit counts what it stacked across power cycles (SSP GET COUNTERS).
	StackCounter bool
	// Faults are the link faults the emulator can inject.
	Faults []string
	// ReplyTimeout is the driver's reply timeout, for faults timed around it.
	ReplyTimeout time.Duration
	// NewUnit builds an emulator and the way to join a fresh driver to it.
	NewUnit func(o UnitOptions) *Unit
	// Codec returns one status poll's frame work for the benchmark table: encoding the
	// host's request and decoding a typical reply. Nil for a unit without frames.
	Codec func() (encodePoll, decodeReply func())
}

// FastPoll is the poll interval of UnitOptions.Fast drivers.
const FastPoll = 100 * time.Microsecond

// UnitOptions tunes a conformance unit and its drivers.
type UnitOptions struct {
	// Denominations is the unit's and its drivers' note table: the protocol's
	// Denominations in the caller's currency.
	Denominations acceptor.Denominations
	// Fast polls as fast as the link allows (FastPoll, no bus gap) and shortens pulses, for
	// benchmarks that measure the host's own cost per note rather than the protocol's waits.
	Fast bool
	// Logger returns a component's logger; nil discards every log.
	Logger func(component string) *slog.Logger
	// Abrupt makes a driver's Run return as soon as its context ends, as a host process
	// that crashes does: a pulse driver then skips its shutdown drain (the grace in which a
	// cleanly stopped daemon finishes and credits a train already on the line), so a
	// simulated crash does not keep reading the line for seconds after the host died.
	Abrupt bool
}

func (o UnitOptions) logger(component string) *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger(component)
}

// UnitControl is the part of the emulator's control surface the conformance suite drives.
type UnitControl interface {
	Insert(code int) error
	RejectNext(reason int)
	Jam(stacker bool)
	ClearJam()
	PullCassette() error
	ReplaceCassette() error
	SetCassetteFull(full bool)
	Cheat()
	PowerCycle(where string) error
	Fail(code int)
	Fault(kind string, d time.Duration) error
	Stacked() []Stacked
	// PendingFaults counts injected faults no reply has used yet.
	PendingFaults() int
}

// Unit is one emulated acceptor outside a rig; it lives across host restarts.
type Unit struct {
	UnitControl
	// Raw is the emulator itself, for controls only one protocol has (sspsim.SwapUnit).
	Raw any
	// Connect joins a new driver to the unit.
	Connect func() (Link, error)
}

// Link is one connection of a new driver to the unit: a fresh net.Pipe for a serial unit,
// the same pins for a pulse unit.
type Link struct {
	Driver acceptor.Acceptor
	// Serve is the emulator's side of the line; nil for a unit on pins.
	Serve func(ctx context.Context) error
	// Cut cuts the line at the host's end, as a host process dying does; nil for pins.
	Cut func()
	// Polls reads the driver's poll counter; nil for a unit that is not polled.
	Polls func() uint64
}

// serialSim is an emulator on a byte stream with the suite's controls.
type serialSim interface {
	UnitControl
	Serve(ctx context.Context, port io.ReadWriter) error
}

// pipeUnit joins drivers to a serial emulator with a net.Pipe each.
func pipeUnit(s serialSim, raw any, newDriver func(port io.ReadWriter) (acceptor.Acceptor, func() uint64)) *Unit {
	return &Unit{UnitControl: s, Raw: raw, Connect: func() (Link, error) {
		hostEnd, unitEnd := net.Pipe()
		d, polls := newDriver(hostEnd)
		return Link{Driver: d, Polls: polls,
			Serve: func(ctx context.Context) error { return s.Serve(ctx, unitEnd) },
			Cut:   func() { hostEnd.Close() },
		}, nil
	}}
}

var serialFaults = []string{"bad_crc", "no_reply", "garbage", "split", "slow", "late"}

// byteCodes is a demo table of 1, 5, 10, 20, 50 and 100 in the currency (minor units with
// two decimals) on consecutive codes from first.
func byteCodes(first int) func(currency string) acceptor.Denominations {
	return func(currency string) acceptor.Denominations {
		d := acceptor.Denominations{}
		for i, v := range []int64{100, 500, 1000, 2000, 5000, 10000} {
			d[first+i] = acceptor.Note{Code: first + i, ValueMinor: v, Currency: currency}
		}
		return d
	}
}

// protocols is the table; see Protocol.
var protocols = []Protocol{
	{
		// ID-003 escrow codes 0x61..0x66.
		Name: "id003", Denominations: byteCodes(0x61),
		newSim: func(cfg Config) AcceptorSim { return newID003(cfg) },
		Conformance: []Conformance{{
			Name: "id003", RejectReason: id003.RejectReason, StackerJam: true, Faults: serialFaults, ReplyTimeout: id003.DefaultReplyTimeout,
			NewUnit: func(o UnitOptions) *Unit {
				denoms := o.Denominations
				a := newID003(Config{Denominations: denoms, Logger: o.logger("id003sim")})
				return pipeUnit(a, a.raw, func(port io.ReadWriter) (acceptor.Acceptor, func() uint64) {
					c := id003.Config{Denominations: denoms, Logger: o.logger("id003")}
					if o.Fast {
						c.PollInterval = FastPoll
					}
					d := id003.New(port, c)
					return d, func() uint64 { return d.Stats().Polls }
				})
			},
			Codec: func() (func(), func()) {
				reply, _ := id003.Encode(0x13, 0x63) // ESCROW + code
				return func() { _, _ = id003.Encode(0x11) }, func() { _, _, _ = id003.Decode(reply) }
			},
		}},
	},
	{
		// CCNET bill types 1..6.
		Name: "ccnet", Denominations: byteCodes(1),
		newSim: func(cfg Config) AcceptorSim { return newCCNET(cfg) },
		Conformance: []Conformance{{
			Name: "ccnet", RejectReason: ccnet.RejectReason, StackerJam: true, CreditRecovery: true, Faults: serialFaults,
			ReplyTimeout: ccnet.DefaultReplyTimeout,
			NewUnit: func(o UnitOptions) *Unit {
				denoms := o.Denominations
				a := newCCNET(Config{Denominations: denoms, Logger: o.logger("ccnetsim")})
				return pipeUnit(a, a.raw, func(port io.ReadWriter) (acceptor.Acceptor, func() uint64) {
					c := ccnet.Config{Denominations: denoms, Logger: o.logger("ccnet")}
					if o.Fast {
						c.PollInterval, c.CommandGap = FastPoll, -1
					}
					d := ccnet.New(port, c)
					return d, func() uint64 { return d.Stats().Polls }
				})
			},
			Codec: func() (func(), func()) {
				reply, _ := ccnet.Encode(0x03, 0x80, 0x04)
				return func() { _, _ = ccnet.Encode(0x03, 0x33) }, func() { _, _, _ = ccnet.Decode(reply) }
			},
		}},
	},
	{
		// SSP channels 1..6.
		Name: "ssp", Denominations: byteCodes(1),
		newSim:      func(cfg Config) AcceptorSim { return newSSP(cfg) },
		Conformance: []Conformance{sspConformance(false), sspConformance(true)},
	},
	{
		Name: "pulse", Denominations: pulseCodes, Pins: []string{PinPulseCredit, PinPulseInhibit},
		newSim: func(cfg Config) AcceptorSim { return newPulse(cfg) },
		Conformance: []Conformance{{
			Name:      "pulse",
			ReReports: "a pulse train is never repeated; the pulses journaled before the crash become an uncertain item (devices/acceptor/pulse doc.go)",
			// A pulse unit has no serial link; the only disturbance its line knows is noise.
			Faults:  []string{"garbage"},
			NewUnit: newPulseLineUnit,
		}},
	},
}

// pulseCodes is a pulse unit's demo table: its codes are pulse counts, 1 pulse per 10.
func pulseCodes(currency string) acceptor.Denominations {
	d := acceptor.Denominations{}
	for _, v := range []int64{1000, 2000, 5000, 10000} {
		n := int(v / 1000)
		d[n] = acceptor.Note{Code: n, ValueMinor: v, Currency: currency}
	}
	return d
}

// Protocols returns the table, in order.
func Protocols() []Protocol { return append([]Protocol(nil), protocols...) }

// ProtocolNames returns the protocols' names, in order.
func ProtocolNames() []string {
	out := make([]string, len(protocols))
	for i, p := range protocols {
		out[i] = p.Name
	}
	return out
}

// LookupProtocol finds a protocol by name; the error names the known ones.
func LookupProtocol(name string) (Protocol, error) {
	for _, p := range protocols {
		if p.Name == name {
			return p, nil
		}
	}
	return Protocol{}, fmt.Errorf("simrig: unknown acceptor protocol %q (known: %s)", name, strings.Join(ProtocolNames(), ", "))
}

// randomFixedKey is an eSSP fixed key of the kind a kiosk is provisioned with: random, and
// never the well-known default.
func randomFixedKey() uint64 {
	var b [8]byte
	for {
		rand.Read(b[:])
		if k := binary.LittleEndian.Uint64(b[:]); k != 0 && k != ssp.DefaultFixedKey {
			return k
		}
	}
}

// sspConformance is SSP as an NV9USB speaks it: encryption optional, POLL WITH ACK only
// encrypted. Plain, the driver falls back to POLL.
func sspConformance(encrypt bool) Conformance {
	c := Conformance{
		Name: "ssp", RejectReason: ssp.RejectReason, StackCounter: true,
		ReReports: "plain POLL reports NOTE CREDIT once; the unit does not repeat it to a restarted host (devices/acceptor/ssp doc.go, Money)",
		PowerCutForgetsCredit: "a power cut clears the unit's unacknowledged NOTE CREDIT, and a credited note is in the cashbox, so the unit reports " +
			"only SLAVE RESET (hw-sim/sspsim PowerCycle); the journal keeps an uncertain item, settled from the unit's stacked counter (GET COUNTERS), the witness recovery asks",
		Faults:       serialFaults,
		ReplyTimeout: ssp.DefaultReplyTimeout,
	}
	if encrypt {
		c.Name, c.ReReports = "essp", ""
		c.Faults = append(append([]string(nil), serialFaults...), "bad_count")
	}
	c.NewUnit = func(o UnitOptions) *Unit {
		denoms := o.Denominations
		key := randomFixedKey()
		a := newSSP(Config{Denominations: denoms, SSPFixedKey: key, Logger: o.logger("sspsim")})
		return pipeUnit(a, a.sim, func(port io.ReadWriter) (acceptor.Acceptor, func() uint64) {
			cfg := ssp.Config{Denominations: denoms, Logger: o.logger("ssp")}
			if o.Fast {
				cfg.PollInterval = FastPoll
			}
			if encrypt {
				cfg.Encrypt, cfg.FixedKey = true, key
			}
			d := ssp.New(port, cfg)
			return d, func() uint64 { return d.Stats().Polls }
		})
	}
	c.Codec = func() (func(), func()) {
		if !encrypt {
			reply, _ := ssp.Encode(ssp.Frame{Seq: true, Data: []byte{0xF0, 0xEF, 0x02}})
			return func() { _, _ = ssp.Encode(ssp.Frame{Seq: true, Data: []byte{0x07}}) }, func() { _, _, _ = ssp.Decode(reply) }
		}
		ciph := ssp.NewCipher(ssp.MakeKey(0x0123456789ABCDEF, 0x1122334455667788))
		sealed, _ := ciph.Seal(nil, 7, []byte{0xF0, 0xEF, 0x02}, nil)
		reply, _ := ssp.Encode(ssp.Frame{Seq: true, Data: sealed})
		return func() {
				p, _ := ciph.Seal(nil, 8, []byte{0x07}, nil)
				_, _ = ssp.Encode(ssp.Frame{Seq: true, Data: p})
			}, func() {
				f, _, _ := ssp.Decode(reply)
				_, _, _ = ciph.Open(f.Data, 7)
			}
	}
	return c
}

// newPulseLineUnit is the pulse emulator as the suite drives it; the driver reads the
// emulator's pins directly.
func newPulseLineUnit(o UnitOptions) *Unit {
	denoms := o.Denominations
	scfg := pulsesim.Config{Notes: denoms, ActiveLevel: gpio.Low, InhibitLevel: gpio.High, Logger: o.logger("pulsesim")}
	dcfg := pulse.Config{ActiveLevel: gpio.Low, InhibitLevel: gpio.High, Notes: denoms, Logger: o.logger("pulse")}
	if o.Fast {
		// Pulses a few milliseconds wide, decoded with limits scaled to match: real time, so
		// wide enough for the scheduler's jitter. A late release only widens a pulse, and on
		// a loaded machine by tens of milliseconds (a 5 ms pulse was seen held 28 ms, which a
		// 20 ms MaxWidth took for a stuck line), so MaxWidth leaves room; MaxGap, the silence
		// that ends each note's train, stays short because it is most of the figure.
		scfg.Shape, scfg.Transit = pulsesim.Shape{Width: 5 * time.Millisecond, Gap: 5 * time.Millisecond}, -1
		dcfg.Timing = pulse.Timing{Debounce: time.Millisecond, MinWidth: 2 * time.Millisecond, MaxWidth: 100 * time.Millisecond, MaxGap: 15 * time.Millisecond}
		dcfg.EdgePoll, dcfg.InhibitGrace = 10*time.Millisecond, 100*time.Millisecond
	}
	if o.Abrupt {
		dcfg.ShutdownTimeout = time.Nanosecond
	}
	s := pulsesim.New(scfg)
	return &Unit{UnitControl: &pulseLine{s: s}, Raw: s, Connect: func() (Link, error) {
		c := dcfg
		c.Credit, c.Inhibit = s.CreditPin(), s.InhibitPin()
		d, err := pulse.New(c)
		return Link{Driver: d}, err
	}}
}
