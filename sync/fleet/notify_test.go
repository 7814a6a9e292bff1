package fleet

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/kioskd/kioskd/sync/wire"
)

func hookServer(t *testing.T) (*httptest.Server, chan Notification) {
	ch := make(chan Notification, 100)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var n Notification
		if err := json.NewDecoder(r.Body).Decode(&n); err != nil {
			t.Errorf("webhook body: %v", err)
		}
		ch <- n
	}))
	t.Cleanup(s.Close)
	return s, ch
}

func next(t *testing.T, ch chan Notification) Notification {
	t.Helper()
	select {
	case n := <-ch:
		return n
	case <-time.After(10 * time.Second):
		t.Fatal("no webhook delivery")
	}
	return Notification{}
}

// none checks that nothing more was delivered: a marker notification sent after the events
// under test arrives first (deliveries are in order).
func none(t *testing.T, n *Notifier, ch chan Notification) {
	t.Helper()
	n.Raised(AlarmRecord{KioskID: "MARK", AlarmID: "mark", Severity: wire.SeverityCritical, Actor: wire.ActorOps})
	if got := next(t, ch); got.KioskID != "MARK" {
		t.Fatalf("unexpected delivery %+v", got)
	}
	n.Cleared(AlarmRecord{KioskID: "MARK", AlarmID: "mark"})
	next(t, ch)
}

func TestWebhookDedupeRepeatAllClear(t *testing.T) {
	srv, ch := hookServer(t)
	clk := newClock()
	n, err := NewNotifier([]Rule{{Name: "oncall", URL: srv.URL, MinSeverity: wire.SeverityWarning, Repeat: Duration(15 * time.Minute)}}, nil, clk.Now, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	r := newRig(t)
	r.n = n
	r.restart() // a Fleet that tells n
	n.CountWith(r.f)

	jam := wire.Alarm{V: 1, AlarmID: "a1", Kind: "acceptor_jam", Severity: wire.SeverityCritical, Actor: wire.ActorEngineer, State: wire.AlarmRaised}
	r.send("K1", wire.UpAlarm, jam)
	got := next(t, ch)
	if got.Event != NotifyRaised || got.KioskID != "K1" || got.AlarmID != "a1" || got.Actor != wire.ActorEngineer || got.Rule != "oncall" {
		t.Fatalf("first delivery %+v", got)
	}
	// Raised again while it stands, and an info alarm below the rule: nothing.
	r.send("K1", wire.UpAlarm, jam)
	r.send("K1", wire.UpAlarm, wire.Alarm{V: 1, AlarmID: "i1", Kind: "note", Severity: wire.SeverityInfo, Actor: wire.ActorNone})
	none(t, n, ch)

	// Not yet due, then due.
	clk.Add(14 * time.Minute)
	n.Tick()
	none(t, n, ch)
	clk.Add(time.Minute)
	n.Tick()
	if got := next(t, ch); got.Event != NotifyRepeat || got.AlarmID != "a1" {
		t.Fatalf("repeat %+v", got)
	}
	n.Tick() // just sent: not again
	none(t, n, ch)

	// Acknowledged: no more repeats.
	if _, err := r.f.Acknowledge("K1", "a1", "alice"); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Hour)
	n.Tick()
	none(t, n, ch)

	// Cleared: all clear, once.
	r.send("K1", wire.UpAlarm, wire.Alarm{V: 1, AlarmID: "a1", Kind: "acceptor_jam", State: wire.AlarmCleared})
	got = next(t, ch)
	if got.Event != NotifyCleared || got.AlarmID != "a1" || got.AckedBy != "alice" || got.ClearedAt.IsZero() {
		t.Fatalf("all clear %+v", got)
	}
	r.send("K1", wire.UpAlarm, wire.Alarm{V: 1, AlarmID: "a1", Kind: "acceptor_jam", State: wire.AlarmCleared})
	none(t, n, ch)

	// Raised anew after the clear: news again.
	r.send("K1", wire.UpAlarm, jam)
	if got := next(t, ch); got.Event != NotifyRaised {
		t.Fatalf("re-raise %+v", got)
	}
}

func TestWebhookRuleFilters(t *testing.T) {
	srv, ch := hookServer(t)
	n, err := NewNotifier([]Rule{{Name: "staff", URL: srv.URL, Actors: []string{wire.ActorStaff}, Kinds: []string{"printer_paper_out"}}}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	n.Raised(AlarmRecord{KioskID: "K1", AlarmID: "x", Kind: "printer_paper_out", Severity: wire.SeverityInfo, Actor: wire.ActorEngineer})
	n.Raised(AlarmRecord{KioskID: "K1", AlarmID: "y", Kind: "door_open", Severity: wire.SeverityInfo, Actor: wire.ActorStaff})
	n.Raised(AlarmRecord{KioskID: "K1", AlarmID: "z", Kind: "printer_paper_out", Severity: wire.SeverityInfo, Actor: wire.ActorStaff})
	if got := next(t, ch); got.AlarmID != "z" {
		t.Fatalf("filtered delivery %+v", got)
	}
	for _, bad := range [][]Rule{{{Name: "", URL: "http://x"}}, {{Name: "a"}}, {{Name: "a", URL: "http://x", MinSeverity: "loud"}}} {
		if _, err := NewNotifier(bad, nil, nil, nil); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
}

// TestWebhookAcrossRestart: an alarm announced before a restart is not announced again, and
// still gets its repeat and its all clear after it.
func TestWebhookAcrossRestart(t *testing.T) {
	srv, ch := hookServer(t)
	clk := newClock()
	rules := []Rule{{Name: "oncall", URL: srv.URL, Repeat: Duration(10 * time.Minute)}}
	n1, err := NewNotifier(rules, nil, clk.Now, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := newRig(t)
	r.clk = clk
	r.n = n1
	r.restart()
	r.send("K1", wire.UpStatus, wire.Status{V: 1, State: wire.StateDegraded,
		Conditions: []wire.Condition{{Kind: "printer_paper_out", Severity: wire.SeverityWarning, Actor: wire.ActorStaff}}})
	if got := next(t, ch); got.Event != NotifyRaised {
		t.Fatalf("%+v", got)
	}
	n1.Close()

	// fleetd restarts: a new Notifier; the broker sends the retained status again.
	n2, err := NewNotifier(rules, nil, clk.Now, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Close()
	r.n = n2
	r.restart()
	r.send("K1", wire.UpStatus, wire.Status{V: 1, State: wire.StateDegraded,
		Conditions: []wire.Condition{{Kind: "printer_paper_out", Severity: wire.SeverityWarning, Actor: wire.ActorStaff}}})
	none(t, n2, ch)
	clk.Add(10 * time.Minute)
	n2.Tick()
	if got := next(t, ch); got.Event != NotifyRepeat {
		t.Fatalf("repeat after restart: %+v", got)
	}
	r.send("K1", wire.UpStatus, wire.Status{V: 1, State: wire.StateOnline})
	if got := next(t, ch); got.Event != NotifyCleared || got.AlarmID != "cond:printer_paper_out" {
		t.Fatalf("all clear after restart: %+v", got)
	}
}
