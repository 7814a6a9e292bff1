package main

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/kioskd/kioskd/kiosk/ctl"
	"github.com/kioskd/kioskd/kiosk/ctl/ctltest"
	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/kiosk/session"
)

// gateFake is a fake kioskd whose gate answers from its status, with the real rule.
type gateFake struct {
	*ctltest.Fake
	mu       sync.Mutex
	st       session.Status
	err      error
	prepares []ctl.UpdateGateRequest
}

func (f *gateFake) UpdateGate(ctx context.Context, req ctl.UpdateGateRequest) (ctl.UpdateGate, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return ctl.UpdateGate{}, f.err
	}
	if req.Prepare {
		// Like the engine's prepare_update: the session is finished, the kiosk parked.
		f.prepares = append(f.prepares, req)
		f.st = session.Status{State: "maintenance", Maintenance: true, UpdateReady: true}
	}
	return ctl.DecideUpdate(f.st, &journal.Stats{OutboxDepth: 2, OutboxMinor: 3000}, "", req.Prepare), nil
}

func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if err != nil {
		return 1
	}
	return 0
}

// TestUpdateGate: the exit statuses an update client's hook sees: 0 go, 21 retry later,
// 1 error; -prepare parks the kiosk and answers go; -json prints the answer; a kioskd that
// does not run is a go.
func TestUpdateGate(t *testing.T) {
	f := &gateFake{Fake: ctltest.NewFake(), st: session.Status{State: "idle"}}
	sock := ctltest.Serve(t, f, ctltest.Self())

	out, err := kioskctl(t, "update-gate", "-socket", sock)
	if exitCode(err) != gateExitGo || !strings.Contains(out, "GO") || !strings.Contains(out, "outbox: 2 top-up(s)") {
		t.Fatalf("idle: %v\n%s", err, out)
	}

	f.mu.Lock()
	f.st = session.Status{State: "accepting", Session: &session.SessionSummary{ID: 5, PendingMinor: 1000}}
	f.mu.Unlock()
	out, err = kioskctl(t, "update-gate", "-socket", sock)
	if exitCode(err) != gateExitRetry || !strings.Contains(out, "RETRY LATER") || !strings.Contains(out, "note is in the path") {
		t.Fatalf("in session: %v\n%s", err, out)
	}
	out, err = kioskctl(t, "update-gate", "-json", "-socket", sock)
	var g gateResult
	if exitCode(err) != gateExitRetry || json.Unmarshal([]byte(out), &g) != nil || g.Verdict != ctl.GateRetryLater || !g.SessionOpen || !g.NoteInPath || !g.OutboxPersisted || g.OutboxDepth != 2 {
		t.Fatalf("in session, -json: %v\n%s", err, out)
	}

	out, err = kioskctl(t, "update-gate", "-prepare", "-wait", "90s", "-socket", sock)
	f.mu.Lock()
	prepares := f.prepares
	f.mu.Unlock()
	if exitCode(err) != gateExitGo || len(prepares) != 1 || prepares[0].WaitMS != 90000 || !strings.Contains(out, "prepared: true") || !strings.Contains(out, "maintenance off") {
		t.Fatalf("prepare: %v %+v\n%s", err, prepares, out)
	}

	f.mu.Lock()
	f.err = errors.New("journal: database not open")
	f.mu.Unlock()
	out, err = kioskctl(t, "update-gate", "-json", "-socket", sock)
	if exitCode(err) != gateExitError || json.Unmarshal([]byte(out), &g) != nil || g.Verdict != "error" || !strings.Contains(g.Error, "database not open") {
		t.Fatalf("error: %v\n%s", err, out)
	}

	// A kioskd without the gate (an older one) is an error, not a go.
	old := ctltest.Serve(t, ctltest.NewFake(), ctltest.Self())
	if _, err := kioskctl(t, "update-gate", "-socket", old); exitCode(err) != gateExitError {
		t.Fatalf("no gate: %v", err)
	}

	// Nothing listens: nothing is in flight.
	out, err = kioskctl(t, "update-gate", "-socket", filepath.Join(t.TempDir(), "none.sock"))
	if exitCode(err) != gateExitGo || !strings.Contains(out, "not running") {
		t.Fatalf("not running: %v\n%s", err, out)
	}

	for _, args := range [][]string{{"-wait", "1m"}, {"-prepare", "-wait", "-1s"}, {"extra"}, {"-frobnicate"}} {
		if _, err := kioskctl(t, append([]string{"update-gate", "-socket", sock}, args...)...); exitCode(err) != gateExitError || !strings.Contains(err.Error(), "usage") {
			t.Errorf("%q: %v", args, err)
		}
	}
}
