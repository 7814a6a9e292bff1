package uplink

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/sync/wire"
)

func (f *fakeClient) on(topicSuffix string) []pub {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []pub
	for _, p := range f.pubs {
		if strings.HasSuffix(p.topic, topicSuffix) {
			out = append(out, p)
		}
	}
	return out
}

// A condition is one alarm: raised once (an update of its detail is not a new raise), cleared
// once, under one alarm_id; events are not alarms.
func TestAlarmRaiseThenClearOneID(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newURig(t, 0, 4)
		r.h.Listen(r.u.Alarm)
		r.h.Set("vault_door_open", health.Critical, health.Staff, health.StopsService, "vault door open")
		time.Sleep(time.Minute)
		r.h.Set("vault_door_open", health.Critical, health.Staff, health.StopsService, "vault door open (2nd sensor)")
		r.h.Event("qr_refused", health.Warning, health.None, "expired code")
		time.Sleep(time.Minute)
		r.h.Clear("vault_door_open")
		synctest.Wait()
		ps := r.c.on(wire.UpAlarm)
		if len(ps) != 2 {
			t.Fatalf("%d alarm messages, want raise and clear", len(ps))
		}
		var raise, clear wire.Alarm
		if err := wire.Decode(ps[0].payload, &raise); err != nil || raise.Validate() != nil {
			t.Fatalf("raise %s: %v", ps[0].payload, err)
		}
		if err := wire.Decode(ps[1].payload, &clear); err != nil || clear.Validate() != nil {
			t.Fatalf("clear %s: %v", ps[1].payload, err)
		}
		if raise.AlarmID != "vault_door_open" || clear.AlarmID != raise.AlarmID {
			t.Fatalf("ids %q %q", raise.AlarmID, clear.AlarmID)
		}
		if raise.State != wire.AlarmRaised || raise.IsCleared() || clear.State != wire.AlarmCleared || !clear.IsCleared() {
			t.Fatalf("states %+v %+v", raise, clear)
		}
		if raise.RaisedAt.IsZero() || !clear.RaisedAt.Equal(raise.RaisedAt) || clear.ClearedAt.Sub(raise.RaisedAt) != 2*time.Minute {
			t.Fatalf("times raise %+v clear %+v", raise, clear)
		}
		if raise.Text() != "vault door open" || raise.Severity != wire.SeverityCritical || raise.Actor != wire.ActorStaff {
			t.Fatalf("raise %+v", raise)
		}
		if got := r.h.Counters()["qr_refused"]; got != 1 {
			t.Fatalf("qr_refused counted %d", got)
		}
	})
}

func TestConditionsOf(t *testing.T) {
	h := health.New("b", nil)
	h.Set("printer_paper_out", health.Warning, health.Staff, health.Degrades, "no paper")
	h.Set("acceptor_jam", health.Critical, health.Engineer, health.StopsService, "jam")
	st := wire.Status{V: wire.Version, State: wire.StateOutOfService, Conditions: ConditionsOf(h.Active())}
	if err := st.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(st.Conditions) != 2 || st.Conditions[0].Kind != "acceptor_jam" || st.Conditions[1].Since.IsZero() {
		t.Fatalf("%+v", st.Conditions)
	}
}

// rtt_ms is the time from the top-up's publish to its ack.
func TestAckRoundTrip(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newURig(t, 1, 4)
		synctest.Wait()
		var w wire.Topup
		if err := wire.Decode(r.c.topups()[0].payload, &w); err != nil {
			t.Fatal(err)
		}
		time.Sleep(150 * time.Millisecond)
		r.ack(t, w.TopupID, wire.AckCredited, w.AmountMinor)
		synctest.Wait()
		if got := r.u.RTT(); got != 150*time.Millisecond {
			t.Fatalf("rtt %v", got)
		}
		if s := r.u.Stats(); s.RTTMs != 150 {
			t.Fatalf("stats rtt %d", s.RTTMs)
		}
	})
}

// down/cmd goes to the command handler as received; results go out on up/cmd_result in order,
// also those queued while offline.
func TestCommandsInResultsOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newURig(t, 0, 4)
		var got [][]byte
		r.u.cfg.OnCommand = func(p []byte) { got = append(got, p) }
		r.u.OnConnect(context.Background())
		r.c.deliver(wire.Topic("K1", wire.DownCmd), []byte(`{"v":1}`))
		if len(got) != 1 || string(got[0]) != `{"v":1}` {
			t.Fatalf("handler got %q", got)
		}
		r.c.mu.Lock()
		r.c.connected = false
		r.c.mu.Unlock()
		r.u.CommandResult(wire.CmdResult{CmdID: "cmd-0001", Status: wire.CmdAccepted})
		r.u.CommandResult(wire.CmdResult{CmdID: "cmd-0001", Status: wire.CmdSucceeded})
		synctest.Wait()
		if n := len(r.c.on(wire.UpCmdResult)); n != 0 {
			t.Fatalf("%d results published offline", n)
		}
		r.c.mu.Lock()
		r.c.connected = true
		r.c.mu.Unlock()
		r.u.OnConnect(context.Background())
		synctest.Wait()
		ps := r.c.on(wire.UpCmdResult)
		if len(ps) != 2 {
			t.Fatalf("%d results", len(ps))
		}
		for i, want := range []string{wire.CmdAccepted, wire.CmdSucceeded} {
			var res wire.CmdResult
			if err := wire.Decode(ps[i].payload, &res); err != nil || res.Validate() != nil || res.Status != want {
				t.Fatalf("result %d %s: %v", i, ps[i].payload, err)
			}
		}
		if r.h.Counters()["mqtt_reconnects"] != 2 {
			t.Fatalf("reconnects %v", r.h.Counters())
		}
	})
}

// Without a journal (safe mode) the uplink connects and reports: the retained status and
// heartbeats, and hears neither acks nor commands.
func TestReportOnlyWithoutJournal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := &fakeClient{connected: true}
		h := health.New("b", nil)
		h.Set("journal_corrupt", health.Critical, health.Engineer, health.StopsService, "bad hash at 42")
		u, err := New(Config{KioskID: "K1", Client: c, Health: h, OnCommand: func([]byte) { t.Error("command in safe mode") },
			Status: func() wire.Status {
				return wire.Status{State: wire.StateOutOfService, Reason: "journal_corrupt", Conditions: ConditionsOf(h.Active())}
			},
			Heartbeat: func() wire.Heartbeat { return wire.Heartbeat{Counters: h.Counters()} }, HeartbeatEvery: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- u.Run(ctx) }()
		u.OnConnect(ctx)
		time.Sleep(90 * time.Second)
		synctest.Wait()
		cancel()
		<-done
		if len(c.subs) != 0 {
			t.Fatalf("subscribed without a journal: %v", c.subs)
		}
		st := c.on(wire.UpStatus)
		if len(st) != 1 || !st[0].retain {
			t.Fatalf("status %+v", st)
		}
		var s wire.Status
		if err := wire.Decode(st[0].payload, &s); err != nil || s.Validate() != nil || s.State != wire.StateOutOfService ||
			len(s.Conditions) != 1 || s.Conditions[0].Kind != "journal_corrupt" {
			t.Fatalf("status %s: %v", st[0].payload, err)
		}
		if n := len(c.on(wire.UpHeartbeat)); n != 1 {
			t.Fatalf("%d heartbeats", n)
		}
		if err := u.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}
