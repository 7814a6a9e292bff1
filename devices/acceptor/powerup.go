package acceptor

import (
	"context"
	"log/slog"
)

// PowerUpGate is a serial driver's bookkeeping of one power-up report (see PowerUpRecorder):
// whether the handler recorded it, so that the unit may be reset, and whether it refused it,
// so that the refusal is logged once rather than at every poll. The driver's poll loop owns
// it; Reset starts a new power-up.
type PowerUpGate struct {
	// Recorded: the handler recorded the current power-up report (or records none), so the
	// unit may be reset.
	Recorded bool
	refused  bool
}

// Reset forgets the previous power-up: the unit is out of its power-up state.
func (g *PowerUpGate) Reset() { *g = PowerUpGate{} }

// Report hands power-up report e to h. A handler that records reports (PowerUpRecorder) is
// asked at every call until it did; any other handler gets e once through emit, when changed
// says the unit's state just changed.
func (g *PowerUpGate) Report(ctx context.Context, h Handler, e Event, changed bool, emit func(context.Context, Event), log *slog.Logger) {
	rec, ok := h.(PowerUpRecorder)
	if !ok {
		if changed {
			emit(ctx, e)
		}
		g.Recorded = true
		return
	}
	if g.Recorded {
		return
	}
	log.Debug("event", "event", e.String())
	if err := rec.PowerUp(ctx, e); err != nil {
		if !g.refused {
			g.refused = true
			log.Warn("power-up report not recorded; the unit is not reset until it is", "event", e.String(), "err", err)
		}
		return
	}
	if g.refused {
		log.Info("power-up report recorded", "event", e.String())
	}
	g.Recorded, g.refused = true, false
}
