package simrig

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/hw-sim/ccnetsim"
	"github.com/kioskd/kioskd/hw-sim/id003sim"
	"github.com/kioskd/kioskd/hw-sim/sspsim"
)

// byteSim is the control surface the byte-coded emulators (id003sim, ccnetsim, ...) share;
// W is the emulator's "where was the note" type and F its link fault type.
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

// adapter maps the neutral AcceptorSim onto one byte-coded emulator.
type adapter[W any, F any] struct {
	sim     byteSim[W, F]
	denoms  acceptor.Denominations
	wheres  map[string]W
	fault   func(kind string, d time.Duration) (F, bool)
	stacked func() []Stacked
	state   func() any
	pending func() int
	// raw is the emulator itself, for controls only one protocol has.
	raw any
}

func (a *adapter[W, F]) Serve(ctx context.Context, port io.ReadWriter) error {
	return a.sim.Serve(ctx, port)
}

func (a *adapter[W, F]) Insert(code int) error {
	if code < 0 || code > 0xFF {
		return fmt.Errorf("simrig: note code %d out of range", code)
	}
	return a.sim.InsertNote(byte(code))
}

func (a *adapter[W, F]) CodeFor(v int64) (int, bool) {
	for c, n := range a.denoms {
		if n.ValueMinor == v {
			return c, true
		}
	}
	return 0, false
}

func (a *adapter[W, F]) RejectNext(reason int)     { a.sim.ForceReject(byte(reason)) }
func (a *adapter[W, F]) Jam(stacker bool)          { a.sim.Jam(stacker) }
func (a *adapter[W, F]) ClearJam()                 { a.sim.ClearJam() }
func (a *adapter[W, F]) PullCassette() error       { return a.sim.PullCassette() }
func (a *adapter[W, F]) ReplaceCassette() error    { return a.sim.ReplaceCassette() }
func (a *adapter[W, F]) SetCassetteFull(full bool) { a.sim.SetCassetteFull(full) }
func (a *adapter[W, F]) Cheat()                    { a.sim.Cheat() }
func (a *adapter[W, F]) Fail(code int)             { a.sim.Fail(byte(code)) }
func (a *adapter[W, F]) State() any                { return a.state() }
func (a *adapter[W, F]) Stacked() []Stacked        { return a.stacked() }

// PendingFaults counts injected faults no reply has used yet.
func (a *adapter[W, F]) PendingFaults() int { return a.pending() }

func (a *adapter[W, F]) rawSim() any { return a.raw }

func (a *adapter[W, F]) PowerCycle(where string) error {
	if where == "" {
		where = "auto"
	}
	w, ok := a.wheres[where]
	if !ok {
		return fmt.Errorf("simrig: power cycle %q: want auto, none, acceptor or stacker", where)
	}
	return a.sim.PowerCycle(w)
}

func (a *adapter[W, F]) Fault(kind string, d time.Duration) error {
	f, ok := a.fault(kind, d)
	if !ok {
		return fmt.Errorf("simrig: unknown fault %q", kind)
	}
	a.sim.InjectFault(f)
	return nil
}

// newID003 builds the ID-003 emulator behind the neutral surface. Of its fault kinds, "late"
// is "slow" with a delay beyond the driver's reply timeout (the caller picks the delay);
// both names exist so that a test can say which one it means. The same holds for CCNET and
// SSP.
func newID003(cfg Config) *adapter[id003sim.Where, id003sim.Fault] {
	s := id003sim.New(id003sim.Config{Denominations: cfg.Denominations, EscrowTimeout: cfg.EscrowTimeout,
		Now: cfg.Now, Logger: cfg.Logger.With("device", "acceptor", "protocol", "id003")})
	kinds := map[string]id003sim.FaultKind{"bad_crc": id003sim.FaultBadCRC, "no_reply": id003sim.FaultNoReply,
		"garbage": id003sim.FaultGarbage, "split": id003sim.FaultSplit, "slow": id003sim.FaultSlow, "late": id003sim.FaultSlow}
	return &adapter[id003sim.Where, id003sim.Fault]{sim: s, denoms: cfg.Denominations,
		wheres: map[string]id003sim.Where{"auto": id003sim.Auto, "none": id003sim.NoNote, "acceptor": id003sim.InAcceptor, "stacker": id003sim.InStacker},
		fault: func(kind string, d time.Duration) (id003sim.Fault, bool) {
			k, ok := kinds[kind]
			return id003sim.Fault{Kind: k, Delay: d}, ok
		},
		stacked: func() []Stacked {
			var out []Stacked
			for _, n := range s.Cassette() {
				out = append(out, Stacked{Code: int(n.Code), ValueMinor: n.ValueMinor, At: n.At, Acked: n.Acked, Via: n.Via, Cassette: n.Cassette})
			}
			return out
		},
		state: func() any { return s.State() }, pending: func() int { return s.State().PendingFaults }, raw: s}
}

func newCCNET(cfg Config) *adapter[ccnetsim.Where, ccnetsim.Fault] {
	s := ccnetsim.New(ccnetsim.Config{Denominations: cfg.Denominations, EscrowTimeout: cfg.EscrowTimeout, SerialNumber: "SIM0000001",
		PartNumber: "KIOSKD-SIM-CCNET", Now: cfg.Now, Logger: cfg.Logger.With("device", "acceptor", "protocol", "ccnet")})
	kinds := map[string]ccnetsim.FaultKind{"bad_crc": ccnetsim.FaultBadCRC, "no_reply": ccnetsim.FaultNoReply,
		"garbage": ccnetsim.FaultGarbage, "split": ccnetsim.FaultSplit, "slow": ccnetsim.FaultSlow, "late": ccnetsim.FaultSlow}
	return &adapter[ccnetsim.Where, ccnetsim.Fault]{sim: s, denoms: cfg.Denominations,
		wheres: map[string]ccnetsim.Where{"auto": ccnetsim.Auto, "none": ccnetsim.NoNote, "acceptor": ccnetsim.InAcceptor, "stacker": ccnetsim.InStacker},
		fault: func(kind string, d time.Duration) (ccnetsim.Fault, bool) {
			k, ok := kinds[kind]
			return ccnetsim.Fault{Kind: k, Delay: d}, ok
		},
		stacked: func() []Stacked {
			var out []Stacked
			for _, n := range s.Cassette() {
				out = append(out, Stacked{Code: int(n.Code), ValueMinor: n.ValueMinor, At: n.At, Acked: n.Acked, Via: n.Via, Cassette: n.Cassette})
			}
			return out
		},
		state: func() any { return s.State() }, pending: func() int { return s.State().PendingFaults }, raw: s}
}

// sspAdapter adds the unit swap only the SSP emulator has.
type sspAdapter struct {
	*adapter[sspsim.Where, sspsim.Fault]
	sim *sspsim.Sim
}

func (a sspAdapter) SwapUnit(serial uint32) error { return a.sim.SwapUnit(serial) }

func newSSP(cfg Config) sspAdapter {
	enc := sspsim.EncryptionOptional
	s := sspsim.New(sspsim.Config{Denominations: cfg.Denominations, EscrowTimeout: cfg.EscrowTimeout, FixedKey: cfg.SSPFixedKey,
		Encryption: enc, Serial: 1_000_001, Now: cfg.Now, Logger: cfg.Logger.With("device", "acceptor", "protocol", "ssp")})
	kinds := map[string]sspsim.FaultKind{"bad_crc": sspsim.FaultBadCRC, "no_reply": sspsim.FaultNoReply,
		"garbage": sspsim.FaultGarbage, "split": sspsim.FaultSplit, "slow": sspsim.FaultSlow, "late": sspsim.FaultSlow, "bad_count": sspsim.FaultBadCount}
	return sspAdapter{sim: s, adapter: &adapter[sspsim.Where, sspsim.Fault]{sim: s, denoms: cfg.Denominations,
		wheres: map[string]sspsim.Where{"auto": sspsim.Auto, "none": sspsim.NoNote, "acceptor": sspsim.InAcceptor, "stacker": sspsim.InStacker},
		fault: func(kind string, d time.Duration) (sspsim.Fault, bool) {
			k, ok := kinds[kind]
			return sspsim.Fault{Kind: k, Delay: d}, ok
		},
		stacked: func() []Stacked {
			var out []Stacked
			for _, n := range s.Cassette() {
				out = append(out, Stacked{Code: int(n.Channel), ValueMinor: n.ValueMinor, At: n.At, Acked: n.Acked, Via: n.Via, Cassette: n.Cassette})
			}
			return out
		},
		state: func() any { return s.State() }, pending: func() int { return s.State().PendingFaults }, raw: s}}
}
