package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kioskd/kioskd/kiosk/ctl"
	"github.com/kioskd/kioskd/kiosk/session"
)

// gateStatusTimeout bounds the gate's own status request: an engine that does not answer
// within it is stuck (the watchdog restarts it), and the gate says so rather than hang the
// update client's hook.
const gateStatusTimeout = 5 * time.Second

// UpdateGate answers the control API's update gate (ctl.DecideUpdate): with req.Prepare it
// first sends the engine prepare_update (idempotent: asking again while it waits changes
// nothing) and waits up to req.Wait() for the kiosk to be ready.
func (b controlBackend) UpdateGate(ctx context.Context, req ctl.UpdateGateRequest) (ctl.UpdateGate, error) {
	s := b.s
	if s.safe != nil {
		_, kinds := s.reg.Worst()
		st := session.Status{State: session.OutOfService.String(), Reason: "journal unusable", Conditions: kinds}
		return ctl.DecideUpdate(st, nil, s.safe.Error(), req.Prepare), nil
	}
	if req.Prepare {
		rep, err := s.engine.PrepareUpdate(ctx, false)
		switch {
		case errors.Is(err, session.ErrBusy):
			// Only refused while the previous run is recovered: the gate says retry below.
		case err != nil:
			return ctl.UpdateGate{}, fmt.Errorf("prepare_update: %w", err)
		case rep.Progress == session.ProgressWaitingIdle && req.Wait() > 0:
			wctx, cancel := context.WithTimeout(ctx, req.Wait())
			_, err := s.engine.PrepareUpdate(wctx, true)
			cancel()
			if err != nil && !errors.Is(err, context.DeadlineExceeded) {
				return ctl.UpdateGate{}, fmt.Errorf("prepare_update: %w", err)
			}
		}
		if ctx.Err() != nil {
			return ctl.UpdateGate{}, ctx.Err()
		}
	}
	sctx, cancel := context.WithTimeout(ctx, gateStatusTimeout)
	st, err := s.engine.Status(sctx)
	cancel()
	switch {
	case err != nil && ctx.Err() != nil:
		return ctl.UpdateGate{}, ctx.Err()
	case errors.Is(err, context.DeadlineExceeded):
		// Stuck: systemd's watchdog restarts kioskd; the gate opens once it answers.
		return ctl.UpdateGate{Verdict: ctl.GateRetryLater, Reasons: []string{fmt.Sprintf("the session engine did not answer within %v", gateStatusTimeout)}}, nil
	case errors.Is(err, session.ErrNotRunning):
		return ctl.UpdateGate{Verdict: ctl.GateRetryLater, Reasons: []string{"kioskd is stopping"}}, nil
	case err != nil:
		return ctl.UpdateGate{}, fmt.Errorf("engine status: %w", err)
	}
	js, err := s.j.Stats()
	if err != nil {
		// The outbox cannot be shown to be persisted: not a "go".
		return ctl.UpdateGate{}, fmt.Errorf("journal: %w", err)
	}
	g := ctl.DecideUpdate(st, &js, "", req.Prepare)
	g.Currency = s.cfg.Kiosk.Currency
	return g, nil
}
