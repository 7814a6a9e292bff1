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
// step is an audit event, and set_limits says the engine cannot apply it (journaled anyway).
func TestRealEngine(t *testing.T) {
	j, err := journal.Open(filepath.Join(t.TempDir(), "j.db"), journal.Options{KioskID: "K1", Currency: "CNY"})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	h := health.New("b", nil)
	e, err := session.New(session.Config{Journal: j, Acceptor: &unit{}, Health: h,
		Denominations: acceptor.Denominations{0x61: {ValueMinor: 1000, Currency: "CNY"}},
		Limits:        session.Limits{SessionMax: 50000, OfflineSessionMax: 20000, OfflineTotalMax: 30000},
		Timing:        session.Timing{RecoveryTimeout: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	h.Listen(func(health.Condition) { e.HealthChanged() })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	defer func() { cancel(); <-done }()

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
		{wire.CmdSetLimits, `{"version":1,"session_max_minor":40000}`, wire.CmdFailed, session.Idle.String()},
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
		if tc.kind == wire.CmdSetLimits && res.Reason != "not supported by this engine" {
			t.Fatalf("set_limits: %+v", res)
		}
		if tc.kind == wire.CmdDiagnostics && !strings.Contains(res.Reason, `"state":"idle"`) {
			t.Fatalf("diagnostics: %s", res.Reason)
		}
	}
	if o, ok, _ := j.LimitsOverlay(); !ok || o.SessionMaxMinor != 40000 {
		t.Fatalf("overlay not journaled: %+v", o)
	}
	n := 0
	j.Events(1, func(rec journal.Record) bool {
		if rec.Type == journal.EvCommandAccepted {
			n++
		}
		return true
	})
	if n != 8 {
		t.Fatalf("%d commands journaled", n)
	}
	if _, err := j.Verify(); err != nil {
		t.Fatal(err)
	}
}
