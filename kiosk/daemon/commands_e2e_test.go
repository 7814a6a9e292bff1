package daemon

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kioskd/kioskd/kiosk/config"
	"github.com/kioskd/kioskd/kiosk/remote"
	"github.com/kioskd/kioskd/kiosk/session"
	"github.com/kioskd/kioskd/sync/wire"
)

const testBcrypt = "$2b$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"

// Every command kind, signed by the ops key and sent through the broker, succeeds on an idle
// kiosk with the real engine and journal; reboot and out_of_service wait for the customer in
// session; forged, ledger-signed, expired, wrong-kiosk and replayed commands are refused, the
// first four reported, all counted in the heartbeat.
func TestEveryCommandThroughTheBroker(t *testing.T) {
	k := newKit(t)
	o, ops := withBroker(t, k)
	lpub, lpriv, _ := ed25519.GenerateKey(nil)
	k.cfg.MQTT.LedgerKeys = map[string]string{"l1": base64.StdEncoding.EncodeToString(lpub)}
	k.cfg.Session.AuthzTimeout = config.Duration(200 * time.Millisecond) // no ledger: offline at once
	var reboots, restarts atomic.Int32
	k.options.Reboot = func(context.Context) error { reboots.Add(1); return nil }
	k.options.Restart = func() { restarts.Add(1) }
	k.accDev.plug()
	k.prnDev.plug()
	r := k.start()
	e := r.s.Engine()
	var st wire.Status
	o.wait(wire.UpStatus, &st, func() bool { return st.State == wire.StateOnline })
	k.topUp(t, e, "alice", 0x63, 1000) // receipt 1, for the reprint
	if err := e.Cancel(); err != nil {
		t.Fatal(err)
	}
	waitView(t, e, "idle", func(v session.View) bool { return v.State == session.Idle.String() })

	n := 0
	build := func(kind, args string) wire.Command {
		n++
		now := time.Now()
		c := wire.Command{V: 1, CmdID: fmt.Sprintf("cmd%013d", n), KioskID: k.cfg.Kiosk.ID, IssuedAt: now.Add(-time.Second),
			ExpiresAt: now.Add(time.Minute), Kind: kind}
		if args != "" {
			c.Args = json.RawMessage(args)
		}
		return c
	}
	publish := func(s wire.Signer, c wire.Command) []byte {
		t.Helper()
		b, err := s.Seal(c)
		if err != nil {
			t.Fatal(err)
		}
		if err := o.obs.Publish(o.ctx, wire.Topic(k.cfg.Kiosk.ID, wire.DownCmd), 1, false, b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	result := func(c wire.Command, ok func(wire.CmdResult) bool) wire.CmdResult {
		t.Helper()
		var res wire.CmdResult
		o.wait(wire.UpCmdResult, &res, func() bool { return res.CmdID == c.CmdID && ok(res) })
		return res
	}
	final := func(c wire.Command) wire.CmdResult {
		return result(c, func(res wire.CmdResult) bool { return wire.CmdFinal(res.Status) })
	}
	run := func(kind, args string) wire.CmdResult {
		t.Helper()
		c := build(kind, args)
		if kind == wire.CmdPrepareUpdate {
			// No ledger acks the top-up in the outbox: the flush ends at the command's expiry,
			// and the kiosk reports ready with the outbox not empty.
			c.ExpiresAt = time.Now().Add(2 * time.Second)
		}
		publish(ops, c)
		res := final(c)
		if res.Status != wire.CmdSucceeded {
			t.Fatalf("%s: %+v", kind, res)
		}
		return res
	}

	docs := len(k.prn.Documents())
	for _, tc := range []struct{ kind, args, state string }{
		{wire.CmdOutOfService, `{"reason":"cash collection"}`, session.OutOfService.String()},
		{wire.CmdInService, "", session.Idle.String()},
		{wire.CmdMaintenanceOn, "", session.Maintenance.String()},
		{wire.CmdMaintenanceOff, "", session.Idle.String()},
		{wire.CmdReprint, `{"receipt_no":1}`, session.Idle.String()},
		{wire.CmdSyncNow, "", session.Idle.String()},
		{wire.CmdDiagnostics, "", session.Idle.String()},
		{wire.CmdSetLimits, `{"version":1,"session_max_minor":150000}`, session.Idle.String()},
		{wire.CmdSetCredentials, `{"version":1,"roles":{"technician":"` + testBcrypt + `"}}`, session.Idle.String()},
		{wire.CmdPrepareUpdate, "", session.Maintenance.String()},
		{wire.CmdMaintenanceOff, "", session.Idle.String()},
		{wire.CmdReboot, "", session.Maintenance.String()},
		{wire.CmdMaintenanceOff, "", session.Idle.String()},
		{wire.CmdRestartService, "", session.Maintenance.String()},
		{wire.CmdMaintenanceOff, "", session.Idle.String()},
	} {
		res := run(tc.kind, tc.args)
		waitView(t, e, tc.kind+" → "+tc.state, func(v session.View) bool { return v.State == tc.state })
		if tc.kind == wire.CmdDiagnostics && !strings.Contains(res.Reason, `"journal_epoch"`) {
			t.Fatalf("diagnostics: %s", res.Reason)
		}
		if tc.kind == wire.CmdPrepareUpdate && !strings.Contains(res.Reason, "outbox not empty") {
			t.Fatalf("prepare_update: %s", res.Reason)
		}
	}
	if reboots.Load() != 1 || restarts.Load() != 1 {
		t.Fatalf("reboots %d, restarts %d", reboots.Load(), restarts.Load())
	}
	if l := e.Limits(); l.Version != 1 || l.SessionMaxMinor != 150000 || l.OfflineSessionMaxMinor != k.cfg.Limits.OfflineSessionMaxMinor {
		t.Fatalf("limits %+v", l)
	}
	if hb := r.s.heartbeatNow(); hb.Limits == nil || hb.Limits.Version != 1 {
		t.Fatalf("heartbeat limits %+v", hb.Limits)
	}
	if c, ok, err := r.s.j.Credentials(); err != nil || !ok || c.Roles["technician"] != testBcrypt {
		t.Fatalf("credentials %+v %v", c, err)
	}
	if got := len(k.prn.Documents()); got <= docs || !strings.Contains(k.prn.Documents()[got-1].Text, "COPY") {
		t.Fatalf("no reprint (%d → %d documents)", docs, got)
	}

	// A customer in session: reboot and out_of_service wait for them.
	for _, kind := range []string{wire.CmdReboot, wire.CmdOutOfService} {
		before := reboots.Load()
		if err := e.Scan(k.payload("bob")); err != nil {
			t.Fatal(err)
		}
		waitView(t, e, "accepting", func(v session.View) bool { return v.State == session.Accepting.String() })
		c := build(kind, "")
		publish(ops, c)
		result(c, func(res wire.CmdResult) bool { return res.Status == wire.CmdWaitingIdle })
		if reboots.Load() != before {
			t.Fatal("rebooted with a customer in session")
		}
		if v := e.View(); v.State != session.Accepting.String() {
			t.Fatalf("%s disturbed the customer: %s", kind, v.State)
		}
		if err := e.Finish(); err != nil { // no money: the session ends
			t.Fatal(err)
		}
		if res := final(c); res.Status != wire.CmdSucceeded {
			t.Fatalf("%s after the customer: %+v", kind, res)
		}
		off := wire.CmdMaintenanceOff
		if kind == wire.CmdOutOfService {
			off = wire.CmdInService
		}
		run(off, "")
		waitView(t, e, "idle", func(v session.View) bool { return v.State == session.Idle.String() })
	}
	if reboots.Load() != 2 {
		t.Fatalf("reboots %d", reboots.Load())
	}

	// Refusals, each reported (but the replay) and counted; nothing runs.
	_, otherPriv, _ := ed25519.GenerateKey(nil)
	forged := build(wire.CmdReboot, "")
	publish(wire.Signer{KID: "ops1", Key: otherPriv}, forged)
	byLedger := build(wire.CmdReboot, "")
	publish(wire.Signer{KID: "l1", Key: lpriv}, byLedger)
	expired := build(wire.CmdReboot, "")
	expired.IssuedAt, expired.ExpiresAt = time.Now().Add(-time.Hour), time.Now().Add(-time.Minute)
	publish(ops, expired)
	wrong := build(wire.CmdReboot, "")
	wrong.KioskID = "T-02"
	publish(ops, wrong)
	for _, tc := range []struct {
		c              wire.Command
		status, reason string
	}{
		{forged, wire.CmdRejected, "bad signature"},
		{byLedger, wire.CmdRejected, "bad signature"},
		{expired, wire.CmdExpired, "expired"},
		{wrong, wire.CmdRejected, "kiosk T-02"},
	} {
		res := final(tc.c)
		if res.Status != tc.status || !strings.Contains(res.Reason, tc.reason) {
			t.Errorf("%s: %+v", tc.reason, res)
		}
	}
	replayed := build(wire.CmdSyncNow, "")
	env := publish(ops, replayed)
	final(replayed)
	if err := o.obs.Publish(o.ctx, wire.Topic(k.cfg.Kiosk.ID, wire.DownCmd), 1, false, env); err != nil {
		t.Fatal(err)
	}
	// The replay is only counted: poll the heartbeat's counters.
	deadline := time.Now().Add(testWait)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for r.s.heartbeatNow().Counters[remote.CounterReplayed] == 0 {
		if time.Now().After(deadline) {
			t.Fatal("replay not counted")
		}
		<-tick.C
	}
	c := r.s.heartbeatNow().Counters
	if c[remote.CounterForged] != 2 || c[remote.CounterRefused] != 2 || c[remote.CounterReplayed] != 1 || reboots.Load() != 2 {
		t.Fatalf("counters %v, reboots %d", c, reboots.Load())
	}
	if _, err := r.stop(t); err != nil {
		t.Fatal(err)
	}
}
