package ctl_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/kioskd/kioskd/kiosk/ctl"
	"github.com/kioskd/kioskd/kiosk/ctl/ctltest"
	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/kiosk/session"
)

// TestDecideUpdate: the gate's rule.
func TestDecideUpdate(t *testing.T) {
	outbox := &journal.Stats{OutboxDepth: 3, OutboxMinor: 15000}
	empty := &journal.Stats{}
	sess := &session.SessionSummary{ID: 7, TotalMinor: 1000}
	escrow := &session.SessionSummary{ID: 8, PendingMinor: 5000}
	for _, tc := range []struct {
		name             string
		st               session.Status
		js               *journal.Stats
		safe             string
		prepare          bool
		verdict          string
		sessOpen, inPath bool
		prepared         bool
		reason, note     string
	}{
		{name: "idle, empty outbox", st: session.Status{State: "idle"}, js: empty, verdict: ctl.GateGo, note: "outbox empty"},
		{name: "idle, journaled outbox is not a blocker", st: session.Status{State: "idle"}, js: outbox, verdict: ctl.GateGo, note: "safely persisted"},
		{name: "out of service", st: session.Status{State: "out_of_service", Reason: "[acceptor_jam]"}, js: empty, verdict: ctl.GateGo},
		{name: "accepting", st: session.Status{State: "accepting", Session: sess}, js: empty, verdict: ctl.GateRetryLater, sessOpen: true, reason: "session #7 is open"},
		{name: "note in escrow", st: session.Status{State: "accepting", Session: escrow}, js: empty, verdict: ctl.GateRetryLater, sessOpen: true, inPath: true, reason: "note is in the path"},
		{name: "authorizing", st: session.Status{State: "authorizing"}, js: empty, verdict: ctl.GateRetryLater, sessOpen: true, reason: "being served"},
		{name: "recovering", st: session.Status{State: "starting"}, js: empty, verdict: ctl.GateRetryLater, inPath: true, reason: "recovering"},
		{name: "result on screen", st: session.Status{State: "done"}, js: empty, verdict: ctl.GateRetryLater, reason: "result"},
		{name: "prepare, not ready yet", st: session.Status{State: "maintenance", Maintenance: true}, js: empty, prepare: true, verdict: ctl.GateRetryLater, reason: "preparing"},
		{name: "prepare, ready", st: session.Status{State: "maintenance", Maintenance: true, UpdateReady: true}, js: outbox, prepare: true, verdict: ctl.GateGo, prepared: true, note: "maintenance off"},
		{name: "safe mode", st: session.Status{State: "out_of_service"}, safe: "bad hash chain", verdict: ctl.GateGo, note: "safe mode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := ctl.DecideUpdate(tc.st, tc.js, tc.safe, tc.prepare)
			if g.Verdict != tc.verdict || g.SessionOpen != tc.sessOpen || g.NoteInPath != tc.inPath || g.Prepared != tc.prepared {
				t.Fatalf("%+v", g)
			}
			if tc.reason != "" && !strings.Contains(strings.Join(g.Reasons, "|"), tc.reason) {
				t.Errorf("reasons %q lack %q", g.Reasons, tc.reason)
			}
			if tc.verdict == ctl.GateGo && len(g.Reasons) != 0 {
				t.Errorf("a go with reasons against: %q", g.Reasons)
			}
			if tc.note != "" && !strings.Contains(strings.Join(g.Notes, "|"), tc.note) {
				t.Errorf("notes %q lack %q", g.Notes, tc.note)
			}
			if tc.js != nil && (!g.OutboxPersisted || g.OutboxDepth != tc.js.OutboxDepth || g.OutboxMinor != tc.js.OutboxMinor) {
				t.Errorf("outbox %+v", g)
			}
		})
	}
}

// gater is a fake kiosk with an update gate.
type gater struct {
	*ctltest.Fake
	mu  sync.Mutex
	got []ctl.UpdateGateRequest
}

func (g *gater) UpdateGate(ctx context.Context, req ctl.UpdateGateRequest) (ctl.UpdateGate, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.got = append(g.got, req)
	return ctl.UpdateGate{Verdict: ctl.GateGo, Prepared: req.Prepare}, nil
}

// TestUpdateGateEndpoint: the request reaches the backend; a backend without a gate answers
// 501; a bad body is a 400.
func TestUpdateGateEndpoint(t *testing.T) {
	ctx := context.Background()
	b := &gater{Fake: ctltest.NewFake()}
	c := ctl.NewClient(ctltest.Serve(t, b, ctltest.Self()))
	g, err := c.UpdateGate(ctx, ctl.UpdateGateRequest{Prepare: true, WaitMS: 1500})
	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil || g.Verdict != ctl.GateGo || !g.Prepared || len(b.got) != 1 || b.got[0].Wait().Milliseconds() != 1500 {
		t.Fatalf("%+v %v %+v", g, err, b.got)
	}
	var se *ctl.ServerError
	if err := c.Post(ctx, "/v1/update-gate", map[string]any{"wait_ms": -1}, &g); !errors.As(err, &se) || se.Code != http.StatusBadRequest {
		t.Fatalf("negative wait: %v", err)
	}
	plain := ctl.NewClient(ctltest.Serve(t, ctltest.NewFake(), ctltest.Self()))
	if _, err := plain.UpdateGate(ctx, ctl.UpdateGateRequest{}); !errors.As(err, &se) || se.Code != http.StatusNotImplemented {
		t.Fatalf("no gate: %v", err)
	}
	if w := (ctl.UpdateGateRequest{WaitMS: 1 << 50}).Wait(); w != ctl.MaxUpdateWait {
		t.Fatalf("wait not capped: %v", w)
	}
}
