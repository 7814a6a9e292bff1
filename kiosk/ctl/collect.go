package ctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/kiosk/session"
)

// Collector is implemented by a Backend that runs cash collections (kioskd's): Collect runs
// one collect_* command of the engine's command API.
type Collector interface {
	Collect(ctx context.Context, cmd session.Command) (session.Reply, error)
}

// CollectRequest is the body of POST /v1/collect.
//
//	{"action": "start", "operator": "alice", "cassette_id": "CAS-7", "wait": true}
//	{"action": "cassette_out"}
//	{"action": "count", "counts": [{"value_minor": 10000, "count": 12}, ...]}
//	{"action": "finish"}
//	{"action": "cassette_in"}
//	{"action": "abort", "reason": "..."}
//	{"action": "status"}
//
// The answer is the engine's Reply: Status.Collection holds the collection with its step
// and its record (a preview before finish: expected, counted, differences).
type CollectRequest struct {
	Action     string             `json:"action"`
	Operator   string             `json:"operator,omitempty"`
	CassetteID string             `json:"cassette_id,omitempty"`
	Counts     []journal.NoteLine `json:"counts,omitempty"`
	Reason     string             `json:"reason,omitempty"`
	Wait       bool               `json:"wait,omitempty"`
}

// CollectActions maps the actions of POST /v1/collect to engine commands.
var CollectActions = map[string]session.CommandKind{
	"start":        session.CmdCollectStart,
	"cassette_out": session.CmdCollectCassetteOut,
	"count":        session.CmdCollectCount,
	"finish":       session.CmdCollectFinish,
	"cassette_in":  session.CmdCollectCassetteIn,
	"abort":        session.CmdCollectAbort,
	"status":       session.CmdStatus,
}

func (s *Server) collect(w http.ResponseWriter, r *http.Request) {
	c, ok := s.b.(Collector)
	if !ok {
		fail(w, ErrUnsupported)
		return
	}
	var req CollectRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<16))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("bad collect request: %v", err))
		return
	}
	kind, ok := CollectActions[req.Action]
	if !ok {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("unknown collect action %q", req.Action))
		return
	}
	rep, err := c.Collect(r.Context(), session.Command{Kind: kind, Operator: req.Operator, CassetteID: req.CassetteID,
		Counts: req.Counts, Reason: req.Reason, Wait: req.Wait})
	if err != nil {
		if errors.Is(err, session.ErrCollection) {
			writeErr(w, http.StatusConflict, err)
			return
		}
		fail(w, err)
		return
	}
	s.log.Info("collect", "action", req.Action, "step", collectionStep(rep.Status))
	writeJSON(w, rep)
}

func collectionStep(st session.Status) string {
	if st.Collection == nil {
		return ""
	}
	return st.Collection.Step
}

// Collect runs a collect action on kioskd.
func (c *Client) Collect(ctx context.Context, req CollectRequest) (session.Reply, error) {
	var rep session.Reply
	err := c.Post(ctx, "/v1/collect", req, &rep)
	return rep, err
}
