package remote

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/kiosk/config"
	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/kiosk/session"
	"github.com/kioskd/kioskd/sync/wire"
)

type unit struct{}

func (u *unit) Enable(context.Context, []int) error { return nil }
func (u *unit) Inhibit(context.Context) error       { return nil }

// With the real engine and journal: each command takes effect through the command API, every
// step is an audit event; set_limits is merged with the limits in force, checked, journaled
// and in force, and survives a restart of the engine on the same journal.
func TestRealEngine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.db")
	j, err := journal.Open(path, journal.Options{KioskID: "K1", Currency: "CNY"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { j.Close() }()
	h := health.New("b", nil)
	newEngine := func() *session.Engine {
		e, err := session.New(session.Config{Journal: j, Acceptor: &unit{}, Health: h,
			Denominations: acceptor.Denominations{0x61: {ValueMinor: 1000, Currency: "CNY"}},
			Limits:        session.Limits{SessionMax: 50000, OfflineSessionMax: 20000, OfflineTotalMax: 30000},
			Timing:        session.Timing{RecoveryTimeout: time.Second}})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	e := newEngine()
	h.Listen(func(health.Condition) { e.HealthChanged() })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	stopped := false
	defer func() {
		if !stopped {
			cancel()
			<-done
		}
	}()

	results := make(chan wire.CmdResult, 64)
	r, err := New(Config{KioskID: "K1", OpsKeys: opsRing, Journal: j, Engine: e, Health: h,
		Limits: config.Limits{SessionMaxMinor: 50000, OfflineSessionMaxMinor: 20000, OfflineTotalMaxMinor: 30000},
		Report: func(res wire.CmdResult) { results <- res }})
	if err != nil {
		t.Fatal(err)
	}
	go r.Run(ctx)
	waitIdle := func() {
		for v, seq := e.View(), uint64(0); v.State != session.Idle.String(); seq = v.Seq {
			v, _ = e.WaitView(ctx, seq)
		}
	}
	waitIdle()
	final := func(c wire.Command) wire.CmdResult {
		t.Helper()
		r.Handle(seal(t, ops, c))
		deadline := time.After(10 * time.Second)
		for {
			select {
			case res := <-results:
				if res.CmdID == c.CmdID && wire.CmdFinal(res.Status) {
					return res
				}
			case <-deadline:
				t.Fatalf("%s: no final result", c.Kind)
			}
		}
	}
	for _, tc := range []struct {
		kind, args, status, state string
	}{
		{wire.CmdOutOfService, "", wire.CmdSucceeded, session.OutOfService.String()},
		{wire.CmdInService, "", wire.CmdSucceeded, session.Idle.String()},
		{wire.CmdMaintenanceOn, "", wire.CmdSucceeded, session.Maintenance.String()},
		{wire.CmdMaintenanceOff, "", wire.CmdSucceeded, session.Idle.String()},
		{wire.CmdDiagnostics, "", wire.CmdSucceeded, session.Idle.String()},
		{wire.CmdSetLimits, `{"version":1,"session_max_minor":40000}`, wire.CmdSucceeded, session.Idle.String()},
		{wire.CmdSetLimits, `{"version":2,"offline_total_max_minor":35000}`, wire.CmdSucceeded, session.Idle.String()},
		{wire.CmdSetLimits, `{"version":2,"session_max_minor":45000}`, wire.CmdFailed, session.Idle.String()},
		{wire.CmdSetLimits, `{"version":3,"offline_session_max_minor":60000}`, wire.CmdFailed, session.Idle.String()},
		{wire.CmdPrepareUpdate, "", wire.CmdSucceeded, session.Maintenance.String()},
		{wire.CmdMaintenanceOff, "", wire.CmdSucceeded, session.Idle.String()},
	} {
		res := final(command(tc.kind, tc.args))
		if res.Status != tc.status {
			t.Fatalf("%s: %+v", tc.kind, res)
		}
		st, err := e.Status(ctx)
		if err != nil || st.State != tc.state {
			t.Fatalf("%s: state %q (%v), want %q", tc.kind, st.State, err, tc.state)
		}
		if tc.kind == wire.CmdSetLimits && res.Status == wire.CmdFailed && !strings.Contains(res.Reason, "not newer") && !strings.Contains(res.Reason, "offline_session_max_minor") {
			t.Fatalf("set_limits refused for the wrong reason: %+v", res)
		}
		if tc.kind == wire.CmdDiagnostics && !strings.Contains(res.Reason, `"state":"idle"`) {
			t.Fatalf("diagnostics: %s", res.Reason)
		}
	}
	want := session.LimitsStatus{Version: 2, SessionMaxMinor: 40000, OfflineSessionMaxMinor: 20000, OfflineTotalMaxMinor: 35000}
	if o, ok, _ := j.LimitsOverlay(); !ok || o.Version != 2 || o.SessionMaxMinor != 40000 || o.OfflineTotalMaxMinor != 35000 {
		t.Fatalf("overlay not journaled: %+v", o)
	}
	if st, _ := e.Status(ctx); st.Limits == nil || st.Limits.Version != want.Version || st.Limits.SessionMaxMinor != want.SessionMaxMinor || st.Limits.OfflineTotalMaxMinor != want.OfflineTotalMaxMinor {
		t.Fatalf("limits in force %+v", st.Limits)
	}
	limitsEvents := 0
	n := 0
	j.Events(1, func(rec journal.Record) bool {
		if rec.Type == journal.EvCommandAccepted {
			n++
		}
		if rec.Type == journal.EvLimitsSet {
			limitsEvents++
		}
		return true
	})
	if n != 11 || limitsEvents != 2 {
		t.Fatalf("%d commands, %d limits_set journaled", n, limitsEvents)
	}
	if _, err := j.Verify(); err != nil {
		t.Fatal(err)
	}

	// A restart: a new engine on the reopened journal has the overlay in force.
	cancel()
	<-done
	stopped = true
	j.Close()
	if j, err = journal.Open(path, journal.Options{KioskID: "K1", Currency: "CNY"}); err != nil {
		t.Fatal(err)
	}
	e = newEngine()
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	done2 := make(chan error, 1)
	go func() { done2 <- e.Run(ctx2) }()
	defer func() { cancel2(); <-done2 }()
	for v, seq := e.View(), uint64(0); v.State != session.Idle.String(); seq = v.Seq {
		v, _ = e.WaitView(ctx2, seq)
	}
	st, err := e.Status(ctx2)
	if err != nil || st.Limits == nil || st.Limits.Version != 2 || st.Limits.SessionMaxMinor != 40000 || st.Limits.OfflineTotalMaxMinor != 35000 {
		t.Fatalf("after a restart: limits %+v (%v)", st.Limits, err)
	}
}
