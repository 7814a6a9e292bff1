package session

import (
	"testing"

	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/journal"
)

// TestDeriveState checks the one function that decides the kiosk's state from the facts,
// on a core that no loop runs.
func TestDeriveState(t *testing.T) {
	r := newRig(t, "", nil)
	defer r.j.Close()
	sess := &journal.Session{ID: 7, LimitMinor: 100}
	for _, tc := range []struct {
		name string
		set  func(c *core)
		want State
	}{
		{"recovering", func(c *core) { c.sess = sess }, Starting},
		{"idle", func(c *core) { c.rec = nil }, Idle},
		{"authorizing", func(c *core) { c.rec, c.authz = nil, &authzPending{} }, Authorizing},
		{"accepting", func(c *core) { c.rec, c.sess = nil, sess }, Accepting},
		{"closing", func(c *core) { c.rec, c.sess, c.closing = nil, sess, &closing{} }, Closing},
		{"closing, result shown", func(c *core) {
			c.rec, c.sess, c.closing, c.result = nil, sess, &closing{shown: true}, &Result{}
		}, Done},
		{"closing, result gone", func(c *core) { c.rec, c.sess, c.closing = nil, sess, &closing{shown: true} }, OutOfService},
		{"result", func(c *core) { c.rec, c.result = nil, &Result{} }, Done},
		{"result beats maintenance", func(c *core) { c.rec, c.result, c.maintenance = nil, &Result{}, true }, Done},
		{"maintenance", func(c *core) { c.rec, c.maintenance, c.oosReason = nil, true, "x" }, Maintenance},
		{"operator", func(c *core) { c.rec, c.oosReason = nil, "cleaning" }, OutOfService},
		{"condition", func(c *core) {
			c.rec = nil
			r.health.Set("acceptor_jam", health.Critical, health.Engineer, health.StopsService, "jam")
		}, OutOfService},
		{"degraded only", func(c *core) {
			c.rec = nil
			r.health.Clear("acceptor_jam")
			r.health.Set("printer", health.Warning, health.Staff, health.Degrades, "paper low")
		}, Idle},
	} {
		c := newCore(r.e)
		tc.set(c)
		if got := c.derive(); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
