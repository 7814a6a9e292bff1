package conformance

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/devices/acceptor/ccnet"
	"github.com/kioskd/kioskd/devices/acceptor/id003"
	"github.com/kioskd/kioskd/devices/acceptor/pulse"
	"github.com/kioskd/kioskd/devices/acceptor/ssp"
	"github.com/kioskd/kioskd/hw-sim/ccnetsim"
	"github.com/kioskd/kioskd/hw-sim/id003sim"
	"github.com/kioskd/kioskd/hw-sim/pulsesim"
	"github.com/kioskd/kioskd/hw-sim/simrig"
	"github.com/kioskd/kioskd/hw-sim/sspsim"
)

// The driver configurations under test and their emulators, behind one neutral control
// surface. simrig builds the same adapters, but only inside a Rig with ptys and an HTTP
// server; the suite needs them on a net.Pipe inside a synctest bubble, so it builds its own
// from the emulators' public APIs. This file is not a test file only so that Note (bench.go)
// can be called from kioskctl's bench table.

const currency = "CNY"

// logger returns a component's logger; the tests replace it (-conformance.log).
var logger = func(component string) *slog.Logger { return slog.New(slog.DiscardHandler) }

// unitControl is the part of simrig.AcceptorSim the suite drives.
type unitControl interface {
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
	Stacked() []simrig.Stacked
	// pendingFaults counts injected faults no reply has used yet.
	pendingFaults() int
}

// link is one connection of a new driver to the unit: a fresh net.Pipe for a serial unit,
// the same pins for a pulse unit.
type link struct {
	drv acceptor.Acceptor
	// serve is the emulator's side of the line; nil for a pulse unit.
	serve func(ctx context.Context) error
	// cut cuts the line at the host's end, as a host process dying does; nil for pins.
	cut func()
}

// unit is one emulated acceptor; it lives across host restarts.
type unit struct {
	unitControl
	// raw is the emulator itself, for controls only one protocol has (sspsim.SwapUnit).
	raw     any
	connect func() (link, error)
}

// protocol is one driver configuration of the matrix.
type protocol struct {
	name   string
	denoms acceptor.Denominations
	// escrowless: the unit never calls Handler.Escrow (acceptor.Info.Escrowless).
	escrowless bool
	// rejectReason is the driver package's exported mapping of raw reject codes; nil when
	// the protocol has no reject reasons.
	rejectReason func(byte) acceptor.RejectReason
	// stackerJam: the protocol reports a jam in the stacker apart from one in the acceptor.
	stackerJam bool
	// reReports: the unit repeats a credit the host did not acknowledge, across a host
	// restart; else the reason it does not.
	reReports string
	// creditRecovery: after a power-up with a note in the stacker and RESET the unit reports
	// that note's credit as well (CCNET's "credit recovery"), which the host must recognise
	// as the note it already credited from the power-up report.
	creditRecovery bool
	// powerCutForgetsCredit: a unit that lost power after reporting a credit the host had
	// not acknowledged says nothing about that note at power-up; else empty.
	powerCutForgetsCredit string
	// stackCounter: the unit counts what it stacked across power cycles (SSP GET
	// COUNTERS), which lets recovery settle a note the unit no longer reports.
	stackCounter bool
	// faults are the link faults the emulator can inject.
	faults []string
	// replyTimeout is the driver's reply timeout, for faults timed around it.
	replyTimeout time.Duration
	newUnit      func(o unitOpts) *unit
}

// unitOpts tunes a unit and its drivers.
type unitOpts struct {
	// fast polls as fast as the link allows and shortens pulses, for benchmarks that measure
	// the host's own cost per note rather than the protocol's waits.
	fast bool
}

// benchPoll is the poll interval of the fast configurations.
const benchPoll = 100 * time.Microsecond

var errUnsupported = errors.New("conformance: the unit has no such control")

// byteSim is the control surface id003sim, ccnetsim and sspsim share.
type byteSim[W any, F any] interface {
	Serve(ctx context.Context, port io.ReadWriter) error
	InsertNote(code byte) error
	ForceReject(reason byte)
	Jam(stacker bool)
	ClearJam()
	PullCassette() error
	ReplaceCassette() error
	SetCassetteFull(full bool)
	Cheat()
	Fail(code byte)
	PowerCycle(where W) error
	InjectFault(f F)
}

// byteUnit maps unitControl onto one byte-coded emulator.
type byteUnit[W any, F any] struct {
	sim     byteSim[W, F]
	wheres  map[string]W
	fault   func(kind string, d time.Duration) (F, bool)
	stacked func() []simrig.Stacked
	pending func() int
}

func (u *byteUnit[W, F]) Insert(code int) error {
	if code < 0 || code > 0xFF {
		return fmt.Errorf("conformance: note code %d out of range", code)
	}
	return u.sim.InsertNote(byte(code))
}
func (u *byteUnit[W, F]) RejectNext(reason int)     { u.sim.ForceReject(byte(reason)) }
func (u *byteUnit[W, F]) Jam(stacker bool)          { u.sim.Jam(stacker) }
func (u *byteUnit[W, F]) ClearJam()                 { u.sim.ClearJam() }
func (u *byteUnit[W, F]) PullCassette() error       { return u.sim.PullCassette() }
func (u *byteUnit[W, F]) ReplaceCassette() error    { return u.sim.ReplaceCassette() }
func (u *byteUnit[W, F]) SetCassetteFull(full bool) { u.sim.SetCassetteFull(full) }
func (u *byteUnit[W, F]) Cheat()                    { u.sim.Cheat() }
func (u *byteUnit[W, F]) Fail(code int)             { u.sim.Fail(byte(code)) }
func (u *byteUnit[W, F]) Stacked() []simrig.Stacked { return u.stacked() }
func (u *byteUnit[W, F]) pendingFaults() int        { return u.pending() }
func (u *byteUnit[W, F]) PowerCycle(w string) error { return u.sim.PowerCycle(u.wheres[w]) }
func (u *byteUnit[W, F]) serve(ctx context.Context, port io.ReadWriter) error {
	return u.sim.Serve(ctx, port)
}

func (u *byteUnit[W, F]) Fault(kind string, d time.Duration) error {
	f, ok := u.fault(kind, d)
	if !ok {
		return fmt.Errorf("%w: fault %q", errUnsupported, kind)
	}
	u.sim.InjectFault(f)
	return nil
}

// pipeLink joins a new driver to the emulator with a net.Pipe.
func pipeLink[W, F any](u *byteUnit[W, F], newDriver func(port io.ReadWriter) acceptor.Acceptor) func() (link, error) {
	return func() (link, error) {
		hostEnd, unitEnd := net.Pipe()
		return link{
			drv:   newDriver(hostEnd),
			serve: func(ctx context.Context) error { return u.serve(ctx, unitEnd) },
			cut:   func() { hostEnd.Close() },
		}, nil
	}
}

func id003Protocol() *protocol {
	denoms := simrig.DemoDenominations("id003", currency)
	return &protocol{
		name: "id003", denoms: denoms, rejectReason: id003.RejectReason, stackerJam: true,
		faults:       []string{"bad_crc", "no_reply", "garbage", "split", "slow", "late"},
		replyTimeout: id003.DefaultReplyTimeout,
		newUnit: func(o unitOpts) *unit {
			s := id003sim.New(id003sim.Config{Denominations: denoms, Logger: logger("id003sim")})
			kinds := map[string]id003sim.FaultKind{"bad_crc": id003sim.FaultBadCRC, "no_reply": id003sim.FaultNoReply,
				"garbage": id003sim.FaultGarbage, "split": id003sim.FaultSplit, "slow": id003sim.FaultSlow, "late": id003sim.FaultSlow}
			bu := &byteUnit[id003sim.Where, id003sim.Fault]{sim: s,
				wheres: map[string]id003sim.Where{"auto": id003sim.Auto, "none": id003sim.NoNote, "acceptor": id003sim.InAcceptor, "stacker": id003sim.InStacker},
				fault: func(kind string, d time.Duration) (id003sim.Fault, bool) {
					k, ok := kinds[kind]
					return id003sim.Fault{Kind: k, Delay: d}, ok
				},
				stacked: func() []simrig.Stacked {
					var out []simrig.Stacked
					for _, n := range s.Cassette() {
						out = append(out, simrig.Stacked{Code: int(n.Code), ValueMinor: n.ValueMinor, Acked: n.Acked, Via: n.Via, Cassette: n.Cassette})
					}
					return out
				},
				pending: func() int { return s.State().PendingFaults }}
			return &unit{unitControl: bu, raw: s, connect: pipeLink(bu, func(port io.ReadWriter) acceptor.Acceptor {
				cfg := id003.Config{Denominations: denoms, Logger: logger("id003")}
				if o.fast {
					cfg.PollInterval = benchPoll
				}
				return id003.New(port, cfg)
			})}
		},
	}
}

func ccnetProtocol() *protocol {
	denoms := simrig.DemoDenominations("ccnet", currency)
	return &protocol{
		name: "ccnet", denoms: denoms, rejectReason: ccnet.RejectReason, stackerJam: true, creditRecovery: true,
		faults:       []string{"bad_crc", "no_reply", "garbage", "split", "slow", "late"},
		replyTimeout: ccnet.DefaultReplyTimeout,
		newUnit: func(o unitOpts) *unit {
			s := ccnetsim.New(ccnetsim.Config{Denominations: denoms, SerialNumber: "SIM0000001", PartNumber: "KIOSKD-SIM-CCNET", Logger: logger("ccnetsim")})
			kinds := map[string]ccnetsim.FaultKind{"bad_crc": ccnetsim.FaultBadCRC, "no_reply": ccnetsim.FaultNoReply,
				"garbage": ccnetsim.FaultGarbage, "split": ccnetsim.FaultSplit, "slow": ccnetsim.FaultSlow, "late": ccnetsim.FaultSlow}
			bu := &byteUnit[ccnetsim.Where, ccnetsim.Fault]{sim: s,
				wheres: map[string]ccnetsim.Where{"auto": ccnetsim.Auto, "none": ccnetsim.NoNote, "acceptor": ccnetsim.InAcceptor, "stacker": ccnetsim.InStacker},
				fault: func(kind string, d time.Duration) (ccnetsim.Fault, bool) {
					k, ok := kinds[kind]
					return ccnetsim.Fault{Kind: k, Delay: d}, ok
				},
				stacked: func() []simrig.Stacked {
					var out []simrig.Stacked
					for _, n := range s.Cassette() {
						out = append(out, simrig.Stacked{Code: int(n.Code), ValueMinor: n.ValueMinor, Acked: n.Acked, Via: n.Via, Cassette: n.Cassette})
					}
					return out
				},
				pending: func() int { return s.State().PendingFaults }}
			return &unit{unitControl: bu, raw: s, connect: pipeLink(bu, func(port io.ReadWriter) acceptor.Acceptor {
				cfg := ccnet.Config{Denominations: denoms, Logger: logger("ccnet")}
				if o.fast {
					cfg.PollInterval, cfg.CommandGap = benchPoll, -1
				}
				return ccnet.New(port, cfg)
			})}
		},
	}
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

// sspProtocol is SSP as an NV9USB speaks it: encryption optional, POLL WITH ACK only
// encrypted. Plain, the driver falls back to POLL.
func sspProtocol(encrypt bool) *protocol {
	denoms := simrig.DemoDenominations("ssp", currency)
	p := &protocol{
		name: "ssp", denoms: denoms, rejectReason: ssp.RejectReason,
		stackCounter: true,
		reReports:    "plain POLL reports NOTE CREDIT once; the unit does not repeat it to a restarted host (devices/acceptor/ssp doc.go, Money)",
		powerCutForgetsCredit: "a power cut clears the unit's unacknowledged NOTE CREDIT, and a credited note is in the cashbox, so the unit reports " +
			"only SLAVE RESET (hw-sim/sspsim PowerCycle); the journal keeps an uncertain item, settled from the unit's stacked counter (GET COUNTERS), the witness recovery asks",
		faults:       []string{"bad_crc", "no_reply", "garbage", "split", "slow", "late"},
		replyTimeout: ssp.DefaultReplyTimeout,
	}
	if encrypt {
		p.name, p.reReports = "essp", ""
		p.faults = append(p.faults, "bad_count")
	}
	p.newUnit = func(o unitOpts) *unit {
		key := randomFixedKey()
		s := sspsim.New(sspsim.Config{Denominations: denoms, FixedKey: key, Serial: 1_000_001, Logger: logger("sspsim")})
		kinds := map[string]sspsim.FaultKind{"bad_crc": sspsim.FaultBadCRC, "no_reply": sspsim.FaultNoReply,
			"garbage": sspsim.FaultGarbage, "split": sspsim.FaultSplit, "slow": sspsim.FaultSlow, "late": sspsim.FaultSlow,
			"bad_count": sspsim.FaultBadCount}
		bu := &byteUnit[sspsim.Where, sspsim.Fault]{sim: s,
			wheres: map[string]sspsim.Where{"auto": sspsim.Auto, "none": sspsim.NoNote, "acceptor": sspsim.InAcceptor, "stacker": sspsim.InStacker},
			fault: func(kind string, d time.Duration) (sspsim.Fault, bool) {
				k, ok := kinds[kind]
				return sspsim.Fault{Kind: k, Delay: d}, ok
			},
			stacked: func() []simrig.Stacked {
				var out []simrig.Stacked
				for _, n := range s.Cassette() {
					out = append(out, simrig.Stacked{Code: int(n.Channel), ValueMinor: n.ValueMinor, Acked: n.Acked, Via: n.Via, Cassette: n.Cassette})
				}
				return out
			},
			pending: func() int { return s.State().PendingFaults }}
		cfg := ssp.Config{Denominations: denoms, Logger: logger("ssp")}
		if o.fast {
			cfg.PollInterval = benchPoll
		}
		if encrypt {
			cfg.Encrypt, cfg.FixedKey = true, key
		}
		return &unit{unitControl: bu, raw: s, connect: pipeLink(bu, func(port io.ReadWriter) acceptor.Acceptor {
			return ssp.New(port, cfg)
		})}
	}
	return p
}

func pulseProtocol() *protocol {
	denoms := simrig.DemoDenominations("pulse", currency)
	return &protocol{
		name: "pulse", denoms: denoms, escrowless: true,
		reReports: "a pulse train is never repeated; the pulses journaled before the crash become an uncertain item (devices/acceptor/pulse doc.go)",
		// A pulse unit has no serial link; the only disturbance its line knows is noise.
		faults: []string{"garbage"},
		newUnit: func(o unitOpts) *unit {
			scfg := pulsesim.Config{Notes: denoms, ActiveLevel: gpio.Low, InhibitLevel: gpio.High, Logger: logger("pulsesim")}
			dcfg := pulse.Config{ActiveLevel: gpio.Low, InhibitLevel: gpio.High, Notes: denoms, Logger: logger("pulse")}
			if o.fast {
				// Pulses a few milliseconds wide, decoded with limits scaled to match: real
				// time, so wide enough for the scheduler's jitter.
				scfg.Shape, scfg.Transit = pulsesim.Shape{Width: 5 * time.Millisecond, Gap: 5 * time.Millisecond}, -1
				dcfg.Timing = pulse.Timing{Debounce: time.Millisecond, MinWidth: 2 * time.Millisecond, MaxWidth: 20 * time.Millisecond, MaxGap: 15 * time.Millisecond}
				dcfg.EdgePoll, dcfg.InhibitGrace = 10*time.Millisecond, 100*time.Millisecond
			}
			s := pulsesim.New(scfg)
			pu := &pulseUnit{s: s}
			return &unit{unitControl: pu, raw: s, connect: func() (link, error) {
				c := dcfg
				c.Credit, c.Inhibit = s.CreditPin(), s.InhibitPin()
				d, err := pulse.New(c)
				return link{drv: d}, err
			}}
		},
	}
}

// pulseUnit is the pulse emulator behind unitControl. A jam is the credit line held active
// until ClearJam; line noise is its only link fault.
type pulseUnit struct {
	s       *pulsesim.Sim
	mu      sync.Mutex
	jamStop context.CancelFunc
	jamDone chan struct{}
}

func (u *pulseUnit) Insert(code int) error { return u.s.InsertNote(code) }
func (u *pulseUnit) RejectNext(int)        {}
func (u *pulseUnit) SetCassetteFull(bool)  {}
func (u *pulseUnit) Cheat()                {}
func (u *pulseUnit) Fail(int)              {}
func (u *pulseUnit) PullCassette() error   { return errUnsupported }
func (u *pulseUnit) ReplaceCassette() error {
	return errUnsupported
}
func (u *pulseUnit) PowerCycle(string) error { return errUnsupported }

func (u *pulseUnit) Jam(bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	u.jamStop, u.jamDone = cancel, make(chan struct{})
	go func(done chan struct{}) {
		defer close(done)
		u.s.Waveform(ctx, pulsesim.Step{Active: true, For: time.Hour})
	}(u.jamDone)
}

func (u *pulseUnit) ClearJam() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.jamStop != nil {
		u.jamStop()
		<-u.jamDone
		u.jamStop = nil
	}
}

func (u *pulseUnit) Fault(kind string, d time.Duration) error {
	if kind != "garbage" {
		return fmt.Errorf("%w: fault %q", errUnsupported, kind)
	}
	return u.s.Noise(2*time.Millisecond, 3*time.Millisecond, time.Millisecond)
}

func (u *pulseUnit) pendingFaults() int { return 0 } // noise goes out at once

func (u *pulseUnit) Stacked() []simrig.Stacked {
	var out []simrig.Stacked
	for _, n := range u.s.Cassette() {
		out = append(out, simrig.Stacked{Code: n.Pulses, ValueMinor: n.ValueMinor, Acked: n.Complete, Via: "pulses", Cassette: 1})
	}
	return out
}

func protocols() []*protocol {
	return []*protocol{id003Protocol(), ccnetProtocol(), sspProtocol(false), sspProtocol(true), pulseProtocol()}
}
