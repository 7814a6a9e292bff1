package fleet

import (
	"testing"
)

// FuzzHandle feeds arbitrary payloads on every operations topic: never a panic, and the state
// stays readable (the pages and the metrics can still be computed).
func FuzzHandle(f *testing.F) {
	f.Add(0, []byte(`{"v":1,"state":"degraded","conditions":[{"kind":"k","severity":"warning","actor":"staff"}]}`))
	f.Add(1, []byte(`{"v":1,"devices":[{"name":"a","state":"ok"}],"cassette":{"notes":1,"capacity":2,"fill_ratio":0.5,"value_minor":1},"session_state":"accepting"}`))
	f.Add(2, []byte(`{"v":1,"alarm_id":"a","kind":"k","severity":"critical","actor":"ops","state":"raised"}`))
	f.Add(2, []byte(`{"v":1,"alarm_id":"a","kind":"k","state":"cleared"}`))
	f.Add(3, []byte(`{"v":1,"cmd_id":"c","status":"failed","reason":"x"}`))
	topics := []string{"kiosk/K1/up/status", "kiosk/K1/up/heartbeat", "kiosk/K1/up/alarm", "kiosk/K1/up/cmd_result", "kiosk/K1/up/other"}
	r := newRig(f)
	f.Fuzz(func(t *testing.T, topic int, payload []byte) {
		if topic < 0 {
			topic = -topic
		}
		r.f.Handle(topics[topic%len(topics)], payload)
		if _, err := r.f.Overview(); err != nil {
			t.Fatal(err)
		}
		if _, err := r.f.Kiosk("K1"); err != nil && err != ErrNotFound {
			t.Fatal(err)
		}
		if _, err := r.f.Registry().Gather(); err != nil {
			t.Fatal(err)
		}
	})
}
