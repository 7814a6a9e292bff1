package health

import (
	"testing"
	"time"
)

func TestAlarmRaiseUpdateClearOneID(t *testing.T) {
	now := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	r := New("boot", func() time.Time { return now })
	var got []Condition
	r.Listen(func(c Condition) { got = append(got, c) })

	r.Set("printer_paper_out", Warning, Staff, Degrades, "no paper")
	r.Set("printer_paper_out", Warning, Staff, Degrades, "no paper") // polling: no news
	now = now.Add(time.Minute)
	r.Set("printer_paper_out", Warning, Staff, Degrades, "no paper (lid open)")
	now = now.Add(time.Minute)
	r.Clear("printer_paper_out")
	r.Clear("printer_paper_out") // not active: no news

	if len(got) != 3 {
		t.Fatalf("changes %+v", got)
	}
	raise, upd, clr := got[0], got[1], got[2]
	if raise.ID != "printer_paper_out" || upd.ID != raise.ID || clr.ID != raise.ID {
		t.Fatalf("ids %q %q %q", raise.ID, upd.ID, clr.ID)
	}
	if raise.Updated || !upd.Updated || clr.Updated || !clr.Cleared {
		t.Fatalf("flags %+v", got)
	}
	t0 := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	if !raise.RaisedAt.Equal(t0) || !upd.RaisedAt.Equal(t0) || !clr.RaisedAt.Equal(t0) || !clr.Since.Equal(t0.Add(2*time.Minute)) {
		t.Fatalf("times %+v", got)
	}
	if len(r.Active()) != 0 {
		t.Fatal("still active")
	}
	// Raised again after its clear: the same id, a new life.
	r.Set("printer_paper_out", Warning, Staff, Degrades, "no paper")
	if c := got[len(got)-1]; c.ID != "printer_paper_out" || c.Updated || c.Cleared {
		t.Fatalf("second raise %+v", c)
	}
}

func TestEventsAreCountedNotActive(t *testing.T) {
	r := New("boot", nil)
	n := 0
	r.Listen(func(c Condition) {
		if !c.Event {
			t.Errorf("not an event: %+v", c)
		}
		n++
	})
	for range 3 {
		r.Event("qr_refused", Warning, None, "bad code")
	}
	r.Event("bad_ack", Warning, Engineer, "bad signature")
	r.Count("cmd_refused", 5)
	c := r.Counters()
	if c["qr_refused"] != 3 || c["bad_ack"] != 1 || c["cmd_refused"] != 5 || len(r.Active()) != 0 || n != 4 {
		t.Fatalf("counters %v active %v listened %d", c, r.Active(), n)
	}
	c["qr_refused"] = 99 // a copy
	if r.Counters()["qr_refused"] != 3 {
		t.Fatal("Counters returned the registry's map")
	}
}
