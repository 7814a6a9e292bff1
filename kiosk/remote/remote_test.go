package remote

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kioskd/kioskd/kiosk/config"
	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/kiosk/session"
	"github.com/kioskd/kioskd/sync/wire"
)

var (
	opsPriv    = ed25519.NewKeyFromSeed([]byte("ops-key-seed-0123456789abcdef012"))
	ledgerPriv = ed25519.NewKeyFromSeed([]byte("ledger-key-seed-0123456789abcdef"))
	ops        = wire.Signer{KID: "ops1", Key: opsPriv}
	opsRing    = wire.Keyring{"ops1": opsPriv.Public().(ed25519.PublicKey)}
)

const bcryptHash = "$2b$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"

// fakeEngine models the command API: a customer in session holds out-of-service and
// maintenance back until it finishes.
type fakeEngine struct {
	mu                      sync.Mutex
	inSession               bool
	oos, maint, maintWanted bool
	seq                     uint64
	changed                 chan struct{}
	calls                   []session.Command
	limits                  *session.Limits
	limitsVersion           int64
}

func newFakeEngine() *fakeEngine { return &fakeEngine{changed: make(chan struct{}), seq: 1} }

func (f *fakeEngine) statusLocked() session.Status {
	st := "idle"
	switch {
	case f.inSession:
		st = "accepting"
	case f.maint:
		st = "maintenance"
	case f.oos:
		st = "out_of_service"
	}
	s := session.Status{State: st, Maintenance: f.maint, Waiting: f.maintWanted && !f.maint}
	if l := f.limits; l != nil {
		s.Limits = &session.LimitsStatus{Version: f.limitsVersion, SessionMaxMinor: l.SessionMax, OfflineSessionMaxMinor: l.OfflineSessionMax, OfflineTotalMaxMinor: l.OfflineTotalMax}
	}
	if f.inSession {
		s.Session = &session.SessionSummary{ID: 1}
	}
	return s
}

func (f *fakeEngine) bump() {
	f.seq++
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeEngine) Do(ctx context.Context, c session.Command) (session.Reply, error) {
	f.mu.Lock()
	f.calls = append(f.calls, c)
	progress := session.ProgressDone
	var err error
	switch c.Kind {
	case session.CmdOutOfService:
		f.oos = c.On
	case session.CmdMaintenance, session.CmdPrepareUpdate:
		if c.On || c.Kind == session.CmdPrepareUpdate {
			f.maintWanted = true
			if f.inSession {
				progress = session.ProgressWaitingIdle
			} else {
				f.maint = true
			}
		} else {
			f.maint, f.maintWanted = false, false
		}
	case session.CmdReprint:
		if c.ReceiptNo > 100 {
			err = fmt.Errorf("no receipt %d", c.ReceiptNo)
		}
	case session.CmdSetLimits:
		if c.LimitsVersion <= f.limitsVersion {
			err = fmt.Errorf("limits version %d is not newer than %d", c.LimitsVersion, f.limitsVersion)
		} else {
			f.limits, f.limitsVersion = c.Limits, c.LimitsVersion
		}
	}
	if c.Kind != session.CmdStatus {
		f.bump() // like the engine, a new view only on a change
	}
	f.mu.Unlock()
	if progress == session.ProgressWaitingIdle && c.Wait {
		for {
			f.mu.Lock()
			done, ch := f.maint, f.changed
			f.mu.Unlock()
			if done {
				progress = session.ProgressDone
				break
			}
			select {
			case <-ctx.Done():
				return session.Reply{Progress: progress}, ctx.Err()
			case <-ch:
			}
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return session.Reply{Progress: progress, Status: f.statusLocked()}, err
}

func (f *fakeEngine) WaitView(ctx context.Context, after uint64) (session.View, bool) {
	for {
		f.mu.Lock()
		seq, st, ch := f.seq, f.statusLocked().State, f.changed
		f.mu.Unlock()
		if seq > after {
			return session.View{Seq: seq, State: st}, true
		}
		select {
		case <-ctx.Done():
			return session.View{}, false
		case <-ch:
		}
	}
}

// finish ends the customer's session.
func (f *fakeEngine) finish() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inSession = false
	if f.maintWanted {
		f.maint = true
	}
	f.bump()
}

// countingJournal counts the writes.
type countingJournal struct {
	Journal
	mu     sync.Mutex
	writes int
}

func (c *countingJournal) wrote() {
	c.mu.Lock()
	c.writes++
	c.mu.Unlock()
}

func (c *countingJournal) Writes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes
}

func (c *countingJournal) AcceptCommand(e journal.CommandAcceptedEvent) (uint64, error) {
	c.wrote()
	return c.Journal.AcceptCommand(e)
}
func (c *countingJournal) CommandStep(e journal.CommandResultEvent) error {
	c.wrote()
	return c.Journal.CommandStep(e)
}
func (c *countingJournal) SetCredentials(x journal.Credentials) error {
	c.wrote()
	return c.Journal.SetCredentials(x)
}

type rig struct {
	t        *testing.T
	j        *journal.Journal
	cj       *countingJournal
	e        *fakeEngine
	h        *health.Registry
	r        *Remote
	mu       sync.Mutex
	results  []wire.CmdResult
	reboots  int
	restarts int
	synced   int
}

func newRig(t *testing.T, engine Engine, fe *fakeEngine) *rig {
	t.Helper()
	j, err := journal.Open(filepath.Join(t.TempDir(), "j.db"), journal.Options{KioskID: "K1", Currency: "CNY"})
	if err != nil {
		t.Fatal(err)
	}
	g := &rig{t: t, j: j, cj: &countingJournal{Journal: j}, e: fe, h: health.New("b", nil)}
	g.r, err = New(Config{KioskID: "K1", OpsKeys: opsRing, Journal: g.cj, Engine: engine, Health: g.h,
		Report: func(r wire.CmdResult) {
			if err := r.Validate(); err != nil {
				t.Errorf("invalid result %+v: %v", r, err)
			}
			g.mu.Lock()
			g.results = append(g.results, r)
			g.mu.Unlock()
		},
		Limits:      config.Limits{SessionMaxMinor: 50000, OfflineSessionMaxMinor: 20000, OfflineTotalMaxMinor: 30000},
		SyncNow:     func() { g.mu.Lock(); g.synced++; g.mu.Unlock() },
		Flush:       func(context.Context) error { return nil },
		Diagnostics: func() any { return map[string]int{"outbox_depth": 0} },
		Reboot:      func(context.Context) error { g.mu.Lock(); g.reboots++; g.mu.Unlock(); return nil },
		Restart:     func() { g.mu.Lock(); g.restarts++; g.mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- g.r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; j.Close() })
	return g
}

var cmdN int

func command(kind string, args string) wire.Command {
	cmdN++
	now := time.Now()
	c := wire.Command{V: 1, CmdID: fmt.Sprintf("cmd%013d", cmdN), KioskID: "K1", IssuedAt: now.Add(-time.Minute), ExpiresAt: now.Add(10 * time.Minute), Kind: kind}
	if args != "" {
		c.Args = json.RawMessage(args)
	}
	return c
}

func seal(t *testing.T, s wire.Signer, c wire.Command) []byte {
	t.Helper()
	b, err := s.Seal(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (g *rig) statuses(id string) []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []string
	for _, r := range g.results {
		if r.CmdID == id {
			out = append(out, r.Status)
		}
	}
	return out
}

func (g *rig) last(id string) wire.CmdResult {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i := len(g.results) - 1; i >= 0; i-- {
		if g.results[i].CmdID == id {
			return g.results[i]
		}
	}
	return wire.CmdResult{}
}

func eq(a []string, b ...string) bool { return strings.Join(a, ",") == strings.Join(b, ",") }

// Every kind succeeds on an idle kiosk: accepted, then succeeded, each step journaled.
func TestEachKindOnIdleKiosk(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fe := newFakeEngine()
		g := newRig(t, fe, fe)
		for _, tc := range []struct{ kind, args string }{
			{wire.CmdOutOfService, `{"reason":"cash collection"}`}, {wire.CmdInService, ""},
			{wire.CmdMaintenanceOn, ""}, {wire.CmdMaintenanceOff, ""},
			{wire.CmdReprint, `{"receipt_no":7}`}, {wire.CmdSyncNow, ""}, {wire.CmdDiagnostics, ""},
			{wire.CmdSetLimits, `{"version":3,"session_max_minor":40000}`},
			{wire.CmdSetCredentials, `{"version":1,"roles":{"technician":"` + bcryptHash + `"}}`},
			{wire.CmdPrepareUpdate, ""}, {wire.CmdMaintenanceOff, ""},
			{wire.CmdReboot, ""}, {wire.CmdRestartService, ""},
		} {
			c := command(tc.kind, tc.args)
			g.r.Handle(seal(t, ops, c))
			synctest.Wait()
			if got := g.statuses(c.CmdID); !eq(got, wire.CmdAccepted, wire.CmdSucceeded) {
				t.Fatalf("%s: results %v (%+v)", tc.kind, got, g.last(c.CmdID))
			}
			if tc.kind == wire.CmdOutOfService && !fe.oos {
				t.Fatal("not out of service")
			}
		}
		if g.reboots != 1 || g.restarts != 1 || g.synced != 1 {
			t.Fatalf("reboots %d restarts %d syncs %d", g.reboots, g.restarts, g.synced)
		}
		// The configuration's limits with the one the command changed, through the engine.
		if fe.limits == nil || fe.limits.SessionMax != 40000 || fe.limits.OfflineSessionMax != 20000 || fe.limitsVersion != 3 {
			t.Fatalf("limits %+v", fe.limits)
		}
		if c, ok, _ := g.j.Credentials(); !ok || c.Roles["technician"] != bcryptHash {
			t.Fatalf("credentials %+v", c)
		}
		// One accept and one step per command, plus the credentials (the limits are the
		// engine's to journal).
		if w := g.cj.Writes(); w != 13*2+1 {
			t.Fatalf("%d journal writes", w)
		}
	})
}

// A reboot and an out-of-service wait for the customer in session: waiting_idle, then the
// final status once the customer finished; the machine is not rebooted before.
func TestWaitsForCustomer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fe := newFakeEngine()
		fe.inSession = true
		g := newRig(t, fe, fe)
		oos := command(wire.CmdOutOfService, "")
		g.r.Handle(seal(t, ops, oos))
		synctest.Wait()
		if got := g.statuses(oos.CmdID); !eq(got, wire.CmdAccepted, wire.CmdWaitingIdle) {
			t.Fatalf("out_of_service while in session: %v", got)
		}
		fe.finish()
		synctest.Wait()
		if got := g.statuses(oos.CmdID); !eq(got, wire.CmdAccepted, wire.CmdWaitingIdle, wire.CmdSucceeded) {
			t.Fatalf("out_of_service after the customer: %v", got)
		}

		fe.mu.Lock()
		fe.inSession, fe.oos = true, false
		fe.mu.Unlock()
		rb := command(wire.CmdReboot, "")
		g.r.Handle(seal(t, ops, rb))
		time.Sleep(5 * time.Minute)
		synctest.Wait()
		if got := g.statuses(rb.CmdID); !eq(got, wire.CmdAccepted, wire.CmdWaitingIdle) || g.reboots != 0 {
			t.Fatalf("reboot while in session: %v, %d reboots", got, g.reboots)
		}
		fe.finish()
		synctest.Wait()
		if got := g.statuses(rb.CmdID); !eq(got, wire.CmdAccepted, wire.CmdWaitingIdle, wire.CmdSucceeded) || g.reboots != 1 {
			t.Fatalf("reboot after the customer: %v, %d reboots", got, g.reboots)
		}
	})
}

// A command still waiting for the customer when it expires is undone and reported expired.
func TestWaitEndsAtExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fe := newFakeEngine()
		fe.inSession = true
		g := newRig(t, fe, fe)
		c := command(wire.CmdMaintenanceOn, "")
		g.r.Handle(seal(t, ops, c))
		time.Sleep(11 * time.Minute)
		synctest.Wait()
		if got := g.statuses(c.CmdID); !eq(got, wire.CmdAccepted, wire.CmdWaitingIdle, wire.CmdExpired) {
			t.Fatalf("results %v", got)
		}
		fe.mu.Lock()
		defer fe.mu.Unlock()
		if fe.maintWanted {
			t.Fatal("maintenance left asked for after the command expired")
		}
	})
}

// Forged, ledger-signed, wrong-kiosk, expired, future and replayed commands are refused
// without a journal write; all but the replay are reported.
func TestRefusals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fe := newFakeEngine()
		g := newRig(t, fe, fe)
		_, otherPriv, _ := ed25519.GenerateKey(nil)
		forged := command(wire.CmdReboot, "")
		byLedger := command(wire.CmdReboot, "")
		byLedgerAsOps := command(wire.CmdReboot, "")
		wrongKiosk := command(wire.CmdReboot, "")
		wrongKiosk.KioskID = "K2"
		expired := command(wire.CmdReboot, "")
		expired.IssuedAt, expired.ExpiresAt = time.Now().Add(-time.Hour), time.Now().Add(-time.Minute)
		future := command(wire.CmdReboot, "")
		future.IssuedAt, future.ExpiresAt = time.Now().Add(time.Hour), time.Now().Add(2*time.Hour)
		clearPIN := command(wire.CmdSetCredentials, `{"version":1,"roles":{"technician":"123456"}}`)
		for _, tc := range []struct {
			name    string
			payload []byte
			id      string
			status  string
			reason  string
		}{
			{"forged", seal(t, wire.Signer{KID: "ops1", Key: otherPriv}, forged), forged.CmdID, wire.CmdRejected, "bad signature"},
			{"ledger key", seal(t, wire.Signer{KID: "l1", Key: ledgerPriv}, byLedger), byLedger.CmdID, wire.CmdRejected, "unknown signing key"},
			{"ledger key as ops kid", seal(t, wire.Signer{KID: "ops1", Key: ledgerPriv}, byLedgerAsOps), byLedgerAsOps.CmdID, wire.CmdRejected, "bad signature"},
			{"wrong kiosk", seal(t, ops, wrongKiosk), wrongKiosk.CmdID, wire.CmdRejected, "kiosk K2"},
			{"expired", seal(t, ops, expired), expired.CmdID, wire.CmdExpired, "expired"},
			{"future", seal(t, ops, future), future.CmdID, wire.CmdRejected, "future"},
			{"clear PIN", seal(t, ops, clearPIN), clearPIN.CmdID, wire.CmdRejected, "not a bcrypt or argon2id hash"},
		} {
			g.r.Handle(tc.payload)
			synctest.Wait()
			r := g.last(tc.id)
			if r.Status != tc.status || !strings.Contains(r.Reason, tc.reason) {
				t.Errorf("%s: %+v", tc.name, r)
			}
		}
		if g.reboots != 0 || g.cj.Writes() != 0 {
			t.Fatalf("reboots %d writes %d", g.reboots, g.cj.Writes())
		}
		if strings.Contains(g.last(clearPIN.CmdID).Reason, "123456") {
			t.Fatal("the PIN is echoed")
		}

		// A replay of an accepted command: refused forever, not run again, not answered.
		ok := command(wire.CmdSyncNow, "")
		env := seal(t, ops, ok)
		g.r.Handle(env)
		synctest.Wait()
		writes := g.cj.Writes()
		for range 3 {
			g.r.Handle(env)
		}
		synctest.Wait()
		if got := g.statuses(ok.CmdID); !eq(got, wire.CmdAccepted, wire.CmdSucceeded) || g.synced != 1 || g.cj.Writes() != writes {
			t.Fatalf("replay: results %v, %d syncs, writes %d→%d", got, g.synced, writes, g.cj.Writes())
		}
		c := g.h.Counters()
		if c[CounterReplayed] != 3 || c[CounterForged] != 3 || c[CounterRefused] != 4 {
			t.Fatalf("counters %v", c)
		}
	})
}

// A flood of forged commands costs no journal write, and only a few results and log lines.
func TestForgedFloodCostsNoWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fe := newFakeEngine()
		g := newRig(t, fe, fe)
		before, _ := g.j.Stats()
		_, otherPriv, _ := ed25519.GenerateKey(nil)
		forger := wire.Signer{KID: "ops1", Key: otherPriv}
		for range 1000 {
			g.r.Handle(seal(t, forger, command(wire.CmdReboot, "")))
		}
		synctest.Wait()
		after, _ := g.j.Stats()
		if g.cj.Writes() != 0 || after.Events != before.Events || after.Head != before.Head {
			t.Fatalf("writes %d, events %d → %d", g.cj.Writes(), before.Events, after.Events)
		}
		g.mu.Lock()
		n := len(g.results)
		g.mu.Unlock()
		if n > 10 {
			t.Fatalf("%d refusals reported in a flood", n)
		}
		if g.h.Counters()[CounterForged] != 1000 || g.reboots != 0 {
			t.Fatalf("counters %v", g.h.Counters())
		}
	})
}

func TestNewNeedsOpsKeys(t *testing.T) {
	_, err := New(Config{KioskID: "K1", Journal: &countingJournal{}, Engine: newFakeEngine(), Report: func(wire.CmdResult) {}})
	if err == nil {
		t.Fatal("no ops keys accepted")
	}
}

func TestValidPINHash(t *testing.T) {
	for _, h := range []string{bcryptHash, "$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG"} {
		if !ValidPINHash(h) {
			t.Errorf("%s refused", h)
		}
	}
	for _, h := range []string{"", "1234", "$2b$10$short", "$argon2i$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA"} {
		if ValidPINHash(h) {
			t.Errorf("%q accepted", h)
		}
	}
}
