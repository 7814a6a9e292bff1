package daemon

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/kioskd/kioskd/kiosk/ctl"
	"github.com/kioskd/kioskd/kiosk/ctl/ctltest"
	"github.com/kioskd/kioskd/kiosk/session"
)

// TestUpdateGateAndWatchdogOnTheKiosk: the update gate on a running kioskd with emulated
// devices: go when idle, retry later with a customer in session, and -prepare parks the
// kiosk (the session is finished, the acceptor inhibited) and answers go once it is ready,
// the kiosk staying in maintenance. The watchdog's probe of the real engine and journal
// feeds systemd's watchdog and tells the state.
func TestUpdateGateAndWatchdogOnTheKiosk(t *testing.T) {
	k := newKit(t)
	sock := filepath.Join(ctltest.ShortDir(t), "kioskd.sock")
	k.cfg.Control.Socket = sock
	k.accDev.plug()
	k.prnDev.plug()
	r := k.start()
	r.conds.waitCleared(t, condPrinter)
	e := r.s.Engine()
	c := ctl.NewClient(sock)
	ctx := context.Background()
	waitView(t, e, "idle", func(v session.View) bool { return v.State == session.Idle.String() })

	n := &notes{}
	wd := r.s.NewWatchdog(n, time.Second, true, nil)
	wd.Tick(ctx)
	if got := n.take(); !slices.Equal(got, []string{"STATUS=idle", "WATCHDOG=1"}) {
		t.Fatalf("watchdog on an idle kiosk sent %q", got)
	}

	g, err := c.UpdateGate(ctx, ctl.UpdateGateRequest{})
	if err != nil || g.Verdict != ctl.GateGo || g.SessionOpen || !g.OutboxPersisted || g.OutboxDepth != 0 {
		t.Fatalf("idle: %+v %v", g, err)
	}

	if err := e.Scan(k.payload("bob")); err != nil {
		t.Fatal(err)
	}
	waitView(t, e, "accepting", func(v session.View) bool { return v.State == session.Accepting.String() })
	g, err = c.UpdateGate(ctx, ctl.UpdateGateRequest{})
	if err != nil || g.Verdict != ctl.GateRetryLater || !g.SessionOpen || len(g.Reasons) == 0 {
		t.Fatalf("in session: %+v %v", g, err)
	}

	g, err = c.UpdateGate(ctx, ctl.UpdateGateRequest{Prepare: true, WaitMS: testWait.Milliseconds()})
	if err != nil || g.Verdict != ctl.GateGo || !g.Prepared || g.SessionOpen || g.State != session.Maintenance.String() {
		t.Fatalf("prepare: %+v %v", g, err)
	}
	// It stays parked: asked again, still a go, still maintenance.
	g, err = c.UpdateGate(ctx, ctl.UpdateGateRequest{Prepare: true})
	if err != nil || g.Verdict != ctl.GateGo || !g.Prepared {
		t.Fatalf("prepared, asked again: %+v %v", g, err)
	}
	wd.Tick(ctx)
	if got := n.take(); !slices.Equal(got, []string{"STATUS=maintenance (ready for an update)", "WATCHDOG=1"}) {
		t.Fatalf("watchdog on a prepared kiosk sent %q", got)
	}
	if _, err := c.Maintenance(ctx, false, nil); err != nil {
		t.Fatal(err)
	}
	waitView(t, e, "idle", func(v session.View) bool { return v.State == session.Idle.String() })
}
