package fleet

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kioskd/kioskd/sync/wire"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)} }
func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type published struct {
	mu   sync.Mutex
	msgs []struct {
		topic   string
		payload []byte
	}
}

func (p *published) publish(_ context.Context, topic string, payload []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.msgs = append(p.msgs, struct {
		topic   string
		payload []byte
	}{topic, payload})
	return nil
}

type rig struct {
	t     testing.TB
	path  string
	store *BoltStore
	f     *Fleet
	clk   *clock
	pub   *published
	opsPK ed25519.PublicKey
	opsSK ed25519.PrivateKey
	n     *Notifier
}

func newRig(t testing.TB) *rig {
	t.Helper()
	pk, sk, _ := ed25519.GenerateKey(nil)
	r := &rig{t: t, path: filepath.Join(t.TempDir(), "fleet.db"), clk: newClock(), pub: &published{}, opsPK: pk, opsSK: sk}
	r.open()
	return r
}

func (r *rig) open() {
	r.t.Helper()
	s, err := OpenBolt(r.path)
	if err != nil {
		r.t.Fatal(err)
	}
	r.store = s
	f, err := New(Config{Store: s, Signer: wire.Signer{KID: "ops-1", Key: r.opsSK}, Publish: r.pub.publish, Now: r.clk.Now, Notifier: r.n})
	if err != nil {
		r.t.Fatal(err)
	}
	r.f = f
	r.t.Cleanup(func() { s.Close() })
}

// restart closes the store and opens it again: what a fleetd restart does.
func (r *rig) restart() {
	r.t.Helper()
	if err := r.store.Close(); err != nil {
		r.t.Fatal(err)
	}
	r.open()
}

func (r *rig) send(kiosk, suffix string, v any) {
	r.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		r.t.Fatal(err)
	}
	r.f.Handle(wire.Topic(kiosk, suffix), b)
}

func (r *rig) alarm(kiosk, id string) AlarmRecord {
	r.t.Helper()
	a, err := r.store.Alarm(kiosk, id)
	if err != nil {
		r.t.Fatalf("alarm %s/%s: %v", kiosk, id, err)
	}
	return a
}

func TestAlarmRaiseAckClearSurvivesRestart(t *testing.T) {
	r := newRig(t)
	t0 := r.clk.Now()
	r.send("K1", wire.UpAlarm, wire.Alarm{V: 1, AlarmID: "a1", Kind: "acceptor_jam", Severity: wire.SeverityCritical, Actor: wire.ActorEngineer,
		State: wire.AlarmRaised, RaisedAt: t0, Detail: "jammed at the stacker"})
	// Raised twice while it stands: one alarm, one history line.
	r.send("K1", wire.UpAlarm, wire.Alarm{V: 1, AlarmID: "a1", Kind: "acceptor_jam", Severity: wire.SeverityCritical, Actor: wire.ActorEngineer, State: wire.AlarmRaised, RaisedAt: t0})
	a := r.alarm("K1", "a1")
	if !a.Open || a.Actor != wire.ActorEngineer || !a.RaisedAt.Equal(t0) {
		t.Fatalf("raised: %+v", a)
	}
	r.clk.Add(time.Minute)
	if _, err := r.f.Acknowledge("K1", "a1", "alice"); err != nil {
		t.Fatal(err)
	}
	r.clk.Add(time.Minute)
	if _, err := r.f.Acknowledge("K1", "a1", "bob"); err != nil {
		t.Fatal(err) // a second acknowledgement keeps the first
	}

	r.restart()
	a = r.alarm("K1", "a1")
	if !a.Open || a.AckedBy != "alice" || !a.AckedAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("after restart: %+v", a)
	}
	r.clk.Add(time.Minute)
	r.send("K1", wire.UpAlarm, wire.Alarm{V: 1, AlarmID: "a1", Kind: "acceptor_jam", State: wire.AlarmCleared, ClearedAt: r.clk.Now()})
	r.restart()
	a = r.alarm("K1", "a1")
	if a.Open || !a.ClearedAt.Equal(t0.Add(3*time.Minute)) || a.AckedBy != "alice" {
		t.Fatalf("cleared: %+v", a)
	}
	if _, err := r.f.Acknowledge("K1", "a1", "bob"); !errors.Is(err, ErrRequest) {
		t.Errorf("ack of a cleared alarm: %v", err)
	}
	h, err := r.store.History("K1", 10)
	if err != nil {
		t.Fatal(err)
	}
	var whats []string
	for _, e := range h {
		whats = append(whats, e.What+":"+e.By)
	}
	want := []string{"cleared:", "acknowledged:alice", "raised:engineer"}
	if len(whats) != len(want) {
		t.Fatalf("history %v, want %v", whats, want)
	}
	for i := range want {
		if whats[i] != want[i] {
			t.Fatalf("history %v, want %v", whats, want)
		}
	}
	// The older alarm form (cleared: true) clears too.
	r.send("K1", wire.UpAlarm, wire.Alarm{V: 1, AlarmID: "a2", Kind: "door_open", Severity: wire.SeverityWarning, Actor: wire.ActorStaff, At: t0})
	r.send("K1", wire.UpAlarm, wire.Alarm{V: 1, AlarmID: "a2", Kind: "door_open", Cleared: true, At: t0})
	if a := r.alarm("K1", "a2"); a.Open {
		t.Errorf("legacy clear: %+v", a)
	}
}

func TestConditionsFromRetainedStatus(t *testing.T) {
	r := newRig(t)
	t0 := r.clk.Now()
	st := wire.Status{V: 1, State: wire.StateDegraded, At: t0, Since: t0, Reason: "paper",
		Conditions: []wire.Condition{
			{Kind: "printer_paper_out", Severity: wire.SeverityWarning, Actor: wire.ActorStaff, Since: t0.Add(-time.Hour)},
			{Kind: "journal_check_failed", Severity: wire.SeverityCritical, Actor: wire.ActorEngineer, Since: t0},
		}}
	r.send("K1", wire.UpStatus, st)
	if a := r.alarm("K1", "cond:printer_paper_out"); !a.Open || a.Source != SourceCondition || !a.RaisedAt.Equal(t0.Add(-time.Hour)) {
		t.Fatalf("condition alarm: %+v", a)
	}
	// The Last Will knows nothing of conditions: they stay.
	r.send("K1", wire.UpStatus, wire.Status{V: 1, State: wire.StateOffline})
	if a := r.alarm("K1", "cond:printer_paper_out"); !a.Open {
		t.Fatal("the Last Will cleared a condition")
	}
	// Back online with paper: that condition clears, the other stays.
	r.clk.Add(time.Minute)
	st.State, st.At, st.Conditions = wire.StateOutOfService, r.clk.Now(), st.Conditions[1:]
	r.send("K1", wire.UpStatus, st)
	if a := r.alarm("K1", "cond:printer_paper_out"); a.Open {
		t.Fatalf("condition gone but alarm open: %+v", a)
	}
	if a := r.alarm("K1", "cond:journal_check_failed"); !a.Open {
		t.Fatal("standing condition cleared")
	}
	// An older status that arrives late does not win.
	old := wire.Status{V: 1, State: wire.StateOnline, At: t0.Add(-time.Hour)}
	r.send("K1", wire.UpStatus, old)
	if k, _ := r.store.Kiosk("K1"); k.Status.State != wire.StateOutOfService {
		t.Errorf("late status won: %s", k.Status.State)
	}

	// A console with an empty store rebuilds the open alarms from the retained statuses alone.
	r2 := newRig(t)
	r2.send("K1", wire.UpStatus, st)
	open, err := r2.store.Alarms("", true)
	if err != nil || len(open) != 1 || open[0].AlarmID != "cond:journal_check_failed" || open[0].Actor != wire.ActorEngineer {
		t.Fatalf("rebuilt: %+v %v", open, err)
	}
	if err := r2.f.Rebuild(); err != nil {
		t.Fatal(err)
	}
	if open2, _ := r2.store.Alarms("", true); len(open2) != 1 {
		t.Errorf("rebuild changed the picture: %+v", open2)
	}
}

func TestBadPayloadsAreRefused(t *testing.T) {
	r := newRig(t)
	for _, tc := range []struct{ topic, payload string }{
		{"kiosk/K1/up/status", `{"v":1,"state":"sleepy"}`},
		{"kiosk/K1/up/status", `not json`},
		{"kiosk/K1/up/alarm", `{"v":1,"alarm_id":"a","kind":"k","severity":"loud","actor":"staff"}`},
		{"kiosk/K1/up/heartbeat", `{"v":1,"outbox_depth":-1}`},
		{"kiosk/K1/up/cmd_result", `{"v":1,"cmd_id":"x","status":"failed"}`},
		{"kiosk/K+/up/status", `{"v":1,"state":"online"}`},
		{"kiosk/K1/up/topup", `{}`},
	} {
		r.f.Handle(tc.topic, []byte(tc.payload))
	}
	ks, _ := r.store.Kiosks()
	as, _ := r.store.Alarms("", false)
	if len(ks) != 0 || len(as) != 0 {
		t.Errorf("bad payloads changed state: %+v %+v", ks, as)
	}
}

func TestCommandSignedAndResultsRecorded(t *testing.T) {
	r := newRig(t)
	rec, err := r.f.SendCommand(context.Background(), "K1", wire.CmdReprint, json.RawMessage(`{"receipt_no":118}`), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.pub.msgs) != 1 || r.pub.msgs[0].topic != "kiosk/K1/down/cmd" {
		t.Fatalf("published %+v", r.pub.msgs)
	}
	var cmd wire.Command
	kid, err := wire.Keyring{"ops-1": r.opsPK}.Open(r.pub.msgs[0].payload, &cmd)
	if err != nil || kid != "ops-1" {
		t.Fatalf("the kiosk could not verify the command: %v", err)
	}
	if err := cmd.Validate(); err != nil || cmd.CmdID != rec.Command.CmdID || cmd.KioskID != "K1" || cmd.Kind != wire.CmdReprint ||
		cmd.ExpiresAt.Sub(cmd.IssuedAt) != 10*time.Minute || !cmd.IssuedAt.Equal(r.clk.Now()) {
		t.Fatalf("command %+v: %v", cmd, err)
	}
	// A ledger key does not open it: the ops key is its own.
	ledgerPK, _, _ := ed25519.GenerateKey(nil)
	if _, err := (wire.Keyring{"ops-1": ledgerPK}).Open(r.pub.msgs[0].payload, &cmd); !errors.Is(err, wire.ErrBadSig) {
		t.Errorf("another key verified the command: %v", err)
	}
	// cmd_ids are random.
	rec2, _ := r.f.SendCommand(context.Background(), "K1", wire.CmdSyncNow, nil, "alice")
	if rec2.Command.CmdID == rec.Command.CmdID || !wire.ValidCmdID(rec2.Command.CmdID) {
		t.Errorf("cmd ids %q %q", rec.Command.CmdID, rec2.Command.CmdID)
	}
	// Refused before signing: a bad reprint.
	if _, err := r.f.SendCommand(context.Background(), "K1", wire.CmdReprint, json.RawMessage(`{"receipt_no":0}`), "alice"); !errors.Is(err, ErrRequest) {
		t.Errorf("bad reprint: %v", err)
	}

	r.send("K1", wire.UpCmdResult, wire.CmdResult{V: 1, CmdID: rec.Command.CmdID, Status: wire.CmdWaitingIdle})
	r.send("K2", wire.UpCmdResult, wire.CmdResult{V: 1, CmdID: rec.Command.CmdID, Status: wire.CmdSucceeded}) // another kiosk: refused
	r.restart()
	r.send("K1", wire.UpCmdResult, wire.CmdResult{V: 1, CmdID: rec.Command.CmdID, Status: wire.CmdSucceeded})
	got, err := r.store.Command(rec.Command.CmdID)
	if err != nil || got.Status != wire.CmdSucceeded || len(got.Results) != 2 || got.SentBy != "alice" {
		t.Fatalf("command record %+v %v", got, err)
	}
	list, _ := r.store.Commands("K1", 10)
	if len(list) != 2 || list[0].Command.CmdID != rec2.Command.CmdID {
		t.Errorf("newest first: %+v", list)
	}
	if l, _ := r.store.Commands("K", 10); len(l) != 0 {
		t.Errorf("prefix kiosk sees K1's commands: %+v", l)
	}
}

func TestOverviewFlags(t *testing.T) {
	r := newRig(t)
	now := r.clk.Now()
	r.send("K1", wire.UpStatus, wire.Status{V: 1, State: wire.StateOnline, At: now})
	r.send("K1", wire.UpHeartbeat, wire.Heartbeat{V: 1, SessionState: "accepting", LastTopupAt: now})
	r.send("K2", wire.UpStatus, wire.Status{V: 1, State: wire.StateDegraded, At: now,
		Conditions: []wire.Condition{{Kind: "cassette_near_full", Severity: wire.SeverityWarning, Actor: wire.ActorStaff}}})
	r.send("K2", wire.UpHeartbeat, wire.Heartbeat{V: 1, SessionState: "idle", LastTopupAt: now.Add(-5 * 24 * time.Hour), UncertainCount: 1})
	r.send("K3", wire.UpStatus, wire.Status{V: 1, State: wire.StateOffline})
	r.clk.Add(8 * time.Minute)
	r.send("K2", wire.UpHeartbeat, wire.Heartbeat{V: 1, SessionState: "idle", LastTopupAt: now.Add(-5 * 24 * time.Hour), UncertainCount: 1})
	o, err := r.f.Overview()
	if err != nil {
		t.Fatal(err)
	}
	if o.Total != 3 || o.ByState[wire.StateOnline] != 1 || o.ByState[wire.StateDegraded] != 1 || o.ByState[wire.StateOffline] != 1 {
		t.Errorf("counts %+v", o.ByState)
	}
	eq := func(name string, got []string, want ...string) {
		if len(got) != len(want) || (len(want) > 0 && got[0] != want[0]) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	eq("stale", o.Stale, "K1") // K1's heartbeat is 8 minutes old
	eq("stuck", o.Stuck)       // stale kiosks are not also stuck
	eq("idle", o.Idle, "K2")
	eq("needs staff", o.NeedsStaff, "K2")
	eq("needs engineer", o.NeedsEngineer)
	// K1 heartbeats again, still accepting after 8 minutes: stuck.
	r.send("K1", wire.UpHeartbeat, wire.Heartbeat{V: 1, SessionState: "accepting", LastTopupAt: now})
	o, _ = r.f.Overview()
	eq("stuck", o.Stuck, "K1")
}

func TestDaysToFull(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	var s []FillSample
	for i := range 5 {
		s = append(s, FillSample{At: t0.Add(time.Duration(i) * 24 * time.Hour), Ratio: 0.1 + 0.1*float64(i)})
	}
	if d := DaysToFull(s); d < 4.99 || d > 5.01 {
		t.Errorf("10%%/day from 50%%: %v days, want 5", d)
	}
	if DaysToFull(s[:1]) != -1 || DaysToFull([]FillSample{{t0, 0.5}, {t0.Add(time.Hour), 0.5}}) != -1 {
		t.Error("no trend should be unknown")
	}
	// Heartbeats build the trend; an emptied cassette restarts it.
	r := newRig(t)
	for i := range 3 {
		r.send("K1", wire.UpHeartbeat, wire.Heartbeat{V: 1, Cassette: &wire.Cassette{Notes: int64(100 * (i + 1)), Capacity: 1000, FillRatio: 0.1 * float64(i+1)}})
		r.clk.Add(12 * time.Hour)
	}
	d, err := r.f.Kiosk("K1")
	if err != nil || d.DaysToFull < 3.4 || d.DaysToFull > 3.6 {
		t.Errorf("days to full %v %v, want 3.5 (70%% left at 20%%/day)", d.DaysToFull, err)
	}
	r.send("K1", wire.UpHeartbeat, wire.Heartbeat{V: 1, Cassette: &wire.Cassette{Capacity: 1000}})
	if k, _ := r.store.Kiosk("K1"); len(k.Fill) != 1 {
		t.Errorf("after emptying: %+v", k.Fill)
	}
}

// A clear sent while the console was away is lost (its broker session is clean): the next
// status newer than the raise, without the condition, clears the alarm; an older status
// leaves it, and a status that still lists the condition keeps it open.
func TestMissedAlarmClearReconciledByStatus(t *testing.T) {
	r := newRig(t)
	t0 := r.clk.Now()
	r.send("K1", wire.UpAlarm, wire.Alarm{V: 1, AlarmID: "acceptor_jam", Kind: "acceptor_jam", Severity: wire.SeverityCritical,
		Actor: wire.ActorEngineer, At: t0, RaisedAt: t0, State: wire.AlarmRaised})
	jam := wire.Condition{Kind: "acceptor_jam", Severity: wire.SeverityCritical, Actor: wire.ActorEngineer, Since: t0}
	r.send("K1", wire.UpStatus, wire.Status{V: 1, State: wire.StateOnline, At: t0.Add(-time.Second)})
	if a := r.alarm("K1", "acceptor_jam"); !a.Open {
		t.Fatal("a status older than the raise cleared the alarm")
	}
	r.send("K1", wire.UpStatus, wire.Status{V: 1, State: wire.StateOutOfService, At: t0.Add(time.Second), Conditions: []wire.Condition{jam}})
	if a := r.alarm("K1", "acceptor_jam"); !a.Open {
		t.Fatal("a status listing the condition cleared the alarm")
	}
	r.send("K1", wire.UpStatus, wire.Status{V: 1, State: wire.StateOnline, At: t0.Add(2 * time.Second)})
	if a := r.alarm("K1", "acceptor_jam"); a.Open || !a.ClearedAt.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("missed clear not reconciled: %+v", a)
	}
}
