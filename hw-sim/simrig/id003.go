package simrig

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/kioskd/kioskd/hw-sim/id003sim"
)

// id003Adapter maps the neutral control surface onto the ID-003 emulator.
type id003Adapter struct {
	s   *id003sim.Sim
	cfg Config
}

func newID003(cfg Config) *id003Adapter {
	return &id003Adapter{cfg: cfg, s: id003sim.New(id003sim.Config{Denominations: cfg.Denominations, EscrowTimeout: cfg.EscrowTimeout,
		Now: cfg.Now, Logger: cfg.Logger.With("device", "acceptor", "protocol", "id003")})}
}

func (a *id003Adapter) Serve(ctx context.Context, port io.ReadWriter) error {
	return a.s.Serve(ctx, port)
}

func (a *id003Adapter) Insert(code int) error {
	if code < 0 || code > 0xFF {
		return fmt.Errorf("simrig: id003 code %d out of range", code)
	}
	return a.s.InsertNote(byte(code))
}

func (a *id003Adapter) CodeFor(v int64) (int, bool) {
	for c, n := range a.cfg.Denominations {
		if n.ValueMinor == v {
			return c, true
		}
	}
	return 0, false
}

func (a *id003Adapter) RejectNext(reason int)     { a.s.ForceReject(byte(reason)) }
func (a *id003Adapter) Jam(stacker bool)          { a.s.Jam(stacker) }
func (a *id003Adapter) ClearJam()                 { a.s.ClearJam() }
func (a *id003Adapter) PullCassette() error       { return a.s.PullCassette() }
func (a *id003Adapter) ReplaceCassette() error    { return a.s.ReplaceCassette() }
func (a *id003Adapter) SetCassetteFull(full bool) { a.s.SetCassetteFull(full) }
func (a *id003Adapter) Cheat()                    { a.s.Cheat() }
func (a *id003Adapter) Fail(code int)             { a.s.Fail(byte(code)) }
func (a *id003Adapter) State() any                { return a.s.State() }

func (a *id003Adapter) PowerCycle(where string) error {
	w, ok := map[string]id003sim.Where{"": id003sim.Auto, "auto": id003sim.Auto, "none": id003sim.NoNote,
		"acceptor": id003sim.InAcceptor, "stacker": id003sim.InStacker}[where]
	if !ok {
		return fmt.Errorf("simrig: power cycle %q: want auto, none, acceptor or stacker", where)
	}
	return a.s.PowerCycle(w)
}

func (a *id003Adapter) Fault(kind string, delay time.Duration) error {
	k, ok := map[string]id003sim.FaultKind{"bad_crc": id003sim.FaultBadCRC, "no_reply": id003sim.FaultNoReply,
		"garbage": id003sim.FaultGarbage, "split": id003sim.FaultSplit, "slow": id003sim.FaultSlow}[kind]
	if !ok {
		return fmt.Errorf("simrig: unknown fault %q", kind)
	}
	a.s.InjectFault(id003sim.Fault{Kind: k, Delay: delay})
	return nil
}

func (a *id003Adapter) Stacked() []Stacked {
	var out []Stacked
	for _, n := range a.s.Cassette() {
		out = append(out, Stacked{Code: int(n.Code), ValueMinor: n.ValueMinor, At: n.At, Acked: n.Acked, Via: n.Via, Cassette: n.Cassette})
	}
	return out
}
