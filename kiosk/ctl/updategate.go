package ctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/kiosk/session"
)

// The update gate: may an update (or a reboot) start now? It is asked by an update client's
// hook (a Mender state script, a RAUC pre-install handler, ...) through `kioskctl
// update-gate`, served at
//
//	POST /v1/update-gate       body UpdateGateRequest; UpdateGate
//
// "Now" means: no session open, no note in the path, and what the ledger has not
// acknowledged yet safely persisted. The outbox lives in the journal, committed before its
// top-up is shown or printed, so it is persisted whatever its depth: the gate reports the
// depth and never waits for it (a kiosk that is offline for a week must still take an update).

// UpdateGater is the part of a Backend that answers the update gate; a Backend without it
// answers 501.
type UpdateGater interface {
	UpdateGate(ctx context.Context, req UpdateGateRequest) (UpdateGate, error)
}

// MaxUpdateWait bounds UpdateGateRequest.WaitMS.
const MaxUpdateWait = 30 * time.Minute

// UpdateGateRequest asks the gate. With Prepare the kiosk is driven to a state where an
// update may start (session.CmdPrepareUpdate: the session in progress is finished, the
// acceptor inhibited) and stays there, in maintenance, until maintenance is switched off;
// WaitMS then says how long to wait for it to be ready before answering.
type UpdateGateRequest struct {
	Prepare bool  `json:"prepare,omitempty"`
	WaitMS  int64 `json:"wait_ms,omitempty"`
}

// Wait is WaitMS as a duration, within [0, MaxUpdateWait].
func (r UpdateGateRequest) Wait() time.Duration {
	return min(max(time.Duration(r.WaitMS)*time.Millisecond, 0), MaxUpdateWait)
}

// The verdicts of the gate.
const (
	// GateGo: an update or reboot may start now.
	GateGo = "go"
	// GateRetryLater: not now (a customer is being served); ask again later.
	GateRetryLater = "retry_later"
)

// UpdateGate is the gate's answer.
type UpdateGate struct {
	Verdict string `json:"verdict"`
	// Reasons say why not now (GateRetryLater); Notes what else is worth knowing.
	Reasons []string `json:"reasons,omitempty"`
	Notes   []string `json:"notes,omitempty"`
	State   string   `json:"state"`
	// SessionOpen: a customer's session is open (authorizing, accepting or closing).
	SessionOpen bool `json:"session_open"`
	// NoteInPath: a note is between the slot and the cassette (in escrow, or its fate is
	// being settled by the recovery of the previous run).
	NoteInPath bool `json:"note_in_path"`
	// Prepared: the kiosk was asked to prepare and is ready (parked in maintenance, acceptor
	// inhibited, nothing printing); it stays so until `kioskctl maintenance off`.
	Prepared bool   `json:"prepared"`
	SafeMode string `json:"safe_mode,omitempty"`
	// OutboxDepth top-ups (OutboxMinor in total) are not acknowledged by the ledger yet;
	// OutboxPersisted says they are in the journal (always, with a journal), sent after the
	// restart.
	OutboxDepth     int    `json:"outbox_depth"`
	OutboxMinor     int64  `json:"outbox_minor"`
	OutboxPersisted bool   `json:"outbox_persisted"`
	Currency        string `json:"currency,omitempty"`
	// Status is the engine's status the verdict was taken from.
	Status session.Status `json:"status"`
}

// DecideUpdate is the gate's rule, from the engine's status st and the journal's figures js
// (nil in safe mode, then safeMode says why). prepared says whether the kiosk was asked to
// prepare: then only a kiosk that reports UpdateReady is a go.
func DecideUpdate(st session.Status, js *journal.Stats, safeMode string, prepared bool) UpdateGate {
	g := UpdateGate{Verdict: GateGo, State: st.State, Status: st, SafeMode: safeMode, Prepared: prepared && st.UpdateReady}
	if safeMode != "" {
		// No engine runs: the acceptor is held inhibited and no session can exist. An update
		// is how such a kiosk gets fixed; the journal file is left as it is.
		g.Notes = append(g.Notes, "safe mode ("+safeMode+"): no session can run, the acceptor is inhibited; the journal file is kept as it is")
		return g
	}
	if js != nil {
		g.OutboxDepth, g.OutboxMinor, g.OutboxPersisted = js.OutboxDepth, js.OutboxMinor, true
		if js.OutboxDepth == 0 {
			g.Notes = append(g.Notes, "outbox empty: every top-up is acknowledged by the ledger")
		} else {
			g.Notes = append(g.Notes, fmt.Sprintf("outbox: %d top-up(s) not acknowledged yet; they are in the journal (safely persisted) and are sent after the restart", js.OutboxDepth))
		}
	}
	if s := st.Session; s != nil {
		g.SessionOpen = true
		g.Reasons = append(g.Reasons, fmt.Sprintf("session #%d is open (%s)", s.ID, st.State))
		if s.PendingMinor > 0 {
			g.NoteInPath = true
			g.Reasons = append(g.Reasons, "a note is in the path (escrow)")
		}
	}
	switch st.State {
	case session.Starting.String():
		g.NoteInPath = true
		g.Reasons = append(g.Reasons, "recovering the previous run (the fate of a note in transit is being settled)")
	case session.Authorizing.String(), session.Accepting.String(), session.Closing.String():
		g.SessionOpen = true
		if st.Session == nil {
			g.Reasons = append(g.Reasons, "a customer is being served ("+st.State+")")
		}
	case session.Done.String():
		g.Reasons = append(g.Reasons, "a customer's result is on the screen (its receipt may still be printing)")
	}
	if prepared && !st.UpdateReady && len(g.Reasons) == 0 {
		g.Reasons = append(g.Reasons, "preparing: waiting for the acceptor to confirm it is inhibited and the printer to finish")
	}
	if len(g.Reasons) > 0 {
		g.Verdict = GateRetryLater
	}
	if !prepared && g.Verdict == GateGo && st.State == session.Idle.String() {
		g.Notes = append(g.Notes, "the kiosk still serves: a customer may start a session before the update begins (use -prepare to park it first)")
	}
	if g.Prepared {
		g.Notes = append(g.Notes, "prepared: the kiosk stays in maintenance until `kioskctl maintenance off` (or kioskd's next start)")
	}
	return g
}

func (s *Server) updateGate(w http.ResponseWriter, r *http.Request) {
	g, ok := s.b.(UpdateGater)
	if !ok {
		fail(w, fmt.Errorf("update gate: %w", ErrUnsupported))
		return
	}
	var req UpdateGateRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		writeErr(w, http.StatusBadRequest, errors.New(`body must be {"prepare": true|false, "wait_ms": N}`))
		return
	}
	if req.WaitMS < 0 {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("wait_ms must not be negative, got %d", req.WaitMS))
		return
	}
	res, err := g.UpdateGate(r.Context(), req)
	if err != nil {
		fail(w, err)
		return
	}
	s.log.Info("update gate", "verdict", res.Verdict, "prepare", req.Prepare, "reasons", strings.Join(res.Reasons, "; "), "outbox_depth", res.OutboxDepth)
	writeJSON(w, res)
}

// UpdateGate asks kioskd's update gate.
func (c *Client) UpdateGate(ctx context.Context, req UpdateGateRequest) (UpdateGate, error) {
	var g UpdateGate
	err := c.Post(ctx, "/v1/update-gate", req, &g)
	return g, err
}
