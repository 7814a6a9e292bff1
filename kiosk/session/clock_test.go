package session

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/i18n"
	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/kiosk/qrpay"
	"github.com/kioskd/kioskd/sync/wire"
)

// wallClock is the kiosk's wall clock: the bubble's time moved by an offset the test sets (a
// 1970 boot, jumps), so the engine's timers still run.
type wallClock struct {
	mu  sync.Mutex
	off time.Duration
}

func newWallClock(t time.Time) *wallClock { return &wallClock{off: time.Until(t)} }

func (c *wallClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off).UTC()
}

func (c *wallClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.off = time.Until(t)
}

// timedAuthz is a ledger that answers ok with its own signed time, or is unreachable.
type timedAuthz struct {
	mu      sync.Mutex
	offline bool
	now     time.Time // zero: an older ledger that sends no time
	asked   int
}

func (a *timedAuthz) set(offline bool, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.offline, a.now = offline, now
}

func (a *timedAuthz) Authorize(ctx context.Context, account, nonce, qr string) (wire.AuthzResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.asked++
	if a.offline {
		return wire.AuthzResponse{}, errors.New("broker unreachable")
	}
	return wire.AuthzResponse{V: 1, ReqID: "x", Status: wire.AuthzOK, RemainingMinor: 50000, Now: a.now}, nil
}

// The kiosk boots in 1970 without NTP, then its clock jumps forward and back. Until the
// clock is known good a code's expiry is checked against the ledger's signed time, or the
// code is refused with its own reason (and stays unspent); a used code is never accepted
// again, whatever the clock says.
func TestUntrustedClockUsesLedgerTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		oldSynced, oldBuild := journal.ClockSynced, journal.BuildTime
		journal.ClockSynced = func() bool { return false }
		journal.BuildTime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		defer func() { journal.ClockSynced, journal.BuildTime = oldSynced, oldBuild }()

		wall := newWallClock(time.Unix(100, 0).UTC())
		j, err := journal.Open(filepath.Join(t.TempDir(), "j.db"), journal.Options{KioskID: "K1", Currency: "CNY", Now: wall.Now})
		if err != nil {
			t.Fatal(err)
		}
		az := &timedAuthz{offline: true}
		r := &rig{t: t, j: j, unit: &fakeUnit{}, printer: &fakePrinter{}, health: health.New("b1", nil)}
		r.e, err = New(Config{Journal: j, Acceptor: r.unit, Denominations: denoms, Authorizer: az, Printer: r.printer,
			Health: r.health, WalletKeys: walletKeys, Now: wall.Now,
			Limits: Limits{SessionMax: 50000, OfflineSessionMax: 20000, OfflineTotalMax: 30000},
			Timing: Timing{RecoveryTimeout: 5 * time.Second, AckWait: time.Second}})
		if err != nil {
			t.Fatal(err)
		}
		r.health.Listen(func(health.Condition) { r.e.HealthChanged() })
		r.start()
		defer r.stop()
		r.waitState(Idle)

		real := time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)
		codeA := code("alice", real.Add(5*time.Minute), "nonceAAAA")
		refused := func(what, c string, want error, key i18n.Key) {
			t.Helper()
			r.waitState(Idle)
			err := r.e.Scan(c)
			synctest.Wait()
			if want == nil {
				t.Fatalf("%s: bad test", what)
			}
			v := r.e.View()
			if err != nil && !errors.Is(err, want) {
				t.Fatalf("%s: scan: %v, want %v", what, err, want)
			}
			if v.State != Idle.String() || v.MessageKey != key {
				t.Fatalf("%s: view %s %s %q, want %s", what, v.State, v.MessageKey, v.Message, key)
			}
		}
		accepted := func(what, c string) {
			t.Helper()
			r.waitState(Idle)
			if err := r.e.Scan(c); err != nil {
				t.Fatalf("%s: scan: %v", what, err)
			}
			r.waitState(Accepting)
			r.e.Cancel()
			r.e.Handler().Event(context.Background(), acceptor.Event{Kind: acceptor.Disabled})
			r.waitState(Idle)
		}
		spent := func(nonce string) bool {
			used, err := j.NonceUsed(nonce)
			if err != nil {
				t.Fatal(err)
			}
			return used
		}

		// 1970, offline: the expiry cannot be checked; refused with its own reason, unspent.
		refused("1970 offline", codeA, qrpay.ErrClockUntrusted, i18n.KeyQRClockUntrusted)
		if spent("nonceAAAA") {
			t.Fatal("a code refused for want of a time was spent")
		}
		// 1970, a ledger that sends no time: refused the same way.
		az.set(false, time.Time{})
		refused("1970 old ledger", codeA, qrpay.ErrClockUntrusted, i18n.KeyQRClockUntrusted)
		// 1970, the ledger's signed time says the code is expired: refused as expired.
		az.set(false, real.Add(6*time.Minute))
		refused("1970 expired by the ledger", codeA, qrpay.ErrExpired, i18n.KeyQRExpired)
		if spent("nonceAAAA") {
			t.Fatal("an expired code was spent")
		}
		// 1970, the ledger's time says it is valid: the session opens, the nonce is spent and
		// the journal's time is anchored to the ledger's.
		az.set(false, real)
		accepted("1970 valid by the ledger", codeA)
		if !spent("nonceAAAA") {
			t.Fatal("nonce not spent")
		}
		if got := j.MonoNow(); got.Before(real) {
			t.Fatalf("journal time %s not anchored by the ledger's %s", got, real)
		}
		refused("1970 replay", codeA, qrpay.ErrReplayed, i18n.KeyQRNonceUsed)

		// The clock jumps far forward (no NTP): past the build and every event, so it is
		// trusted, and every code of the real time is expired by it; no ledger is asked.
		wall.Set(real.Add(400 * 24 * time.Hour))
		asked := az.asked
		refused("forward jump", code("alice", real.Add(5*time.Minute), "nonceBBBB"), qrpay.ErrExpired, i18n.KeyQRExpired)
		if az.asked != asked {
			t.Fatal("the ledger was asked about a code the trusted clock refused")
		}
		accepted("forward jump, a code of that time", code("alice", wall.Now().Add(5*time.Minute), "nonceCCCC"))

		// Back to the real time: behind what the journal saw, so not trusted; the ledger's
		// time decides, and the code used in 1970 stays spent.
		wall.Set(real.Add(2 * time.Minute))
		az.set(false, real.Add(2*time.Minute))
		refused("jump back replay", codeA, qrpay.ErrReplayed, i18n.KeyQRNonceUsed)
		az.set(true, time.Time{})
		refused("jump back offline", code("alice", real.Add(5*time.Minute), "nonceDDDD"), qrpay.ErrClockUntrusted, i18n.KeyQRClockUntrusted)
		az.set(false, real.Add(2*time.Minute))
		accepted("jump back valid by the ledger", code("alice", real.Add(5*time.Minute), "nonceDDDD"))
		if got := j.MonoNow(); got.After(real.Add(time.Hour)) {
			t.Fatalf("the forward jump moved the journal's time to %s", got)
		}
		// Every refusal was counted, none journaled.
		if n := r.health.Counters()["qr_refused"]; n != 7 {
			t.Fatalf("qr_refused counter %d", n)
		}
	})
}
