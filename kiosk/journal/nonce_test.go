package journal

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// fixedClockState pins the package's clock inputs for a test.
func fixedClockState(t *testing.T, synced bool) {
	t.Helper()
	oldSynced, oldBuild := ClockSynced, BuildTime
	ClockSynced = func() bool { return synced }
	BuildTime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	t.Cleanup(func() { ClockSynced, BuildTime = oldSynced, oldBuild })
}

// Boot at 1970, then the real time, then a forward jump of two days and back: a used code is
// refused all along, and no clock reading un-spends it.
func TestNonceSurvivesClockJumps(t *testing.T) {
	fixedClockState(t, false)
	clk := &stepClock{t: time.Unix(100, 0).UTC()}
	j, err := Open(filepath.Join(t.TempDir(), "j.db"), Options{KioskID: "K1", Currency: "CNY", Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	real := time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)
	expA := real.Add(5 * time.Minute)

	// 1970: nothing to trust; the code is spent anyway.
	if j.ClockTrusted(clk.t) || !j.TrustedNow().IsZero() {
		t.Fatal("a 1970 clock is trusted")
	}
	if err := j.UseNonce("nonceA", expA); err != nil {
		t.Fatal(err)
	}
	// The clock is set right.
	clk.t = real
	if !j.ClockTrusted(clk.t) {
		t.Fatal("a clock after the build and the newest event is not trusted")
	}
	if err := j.UseNonce("nonceA", expA); !errors.Is(err, ErrNonceUsed) {
		t.Fatalf("replay at the real time: %v", err)
	}
	// Forward two days: another code is used (this is when the old rule pruned A).
	clk.t = real.Add(48 * time.Hour)
	if err := j.UseNonce("nonceB", clk.t.Add(5*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := j.UseNonce("nonceA", expA); !errors.Is(err, ErrNonceUsed) {
		t.Fatalf("replay after the forward jump: %v", err)
	}
	// Back to the real time: A is valid again by the wall clock, and still spent.
	clk.t = real.Add(2 * time.Minute)
	if j.ClockTrusted(clk.t) {
		t.Fatal("a clock behind the newest event is trusted")
	}
	if got := j.TrustedNow(); !got.Equal(real.Add(48 * time.Hour)) {
		t.Fatalf("trusted time went back to %s", got)
	}
	if err := j.UseNonce("nonceA", expA); !errors.Is(err, ErrNonceUsed) {
		t.Fatalf("replay after the clock was set back: %v", err)
	}
	if used, _ := j.NonceUsed("nonceA"); !used {
		t.Fatal("nonce A was pruned")
	}
	// A synchronised clock is trusted even behind the newest event.
	ClockSynced = func() bool { return true }
	if !j.ClockTrusted(clk.t) {
		t.Fatal("a synchronised clock is not trusted")
	}
	ClockSynced = func() bool { return false }

	// Pruning happens once the code is long expired AND the retention passed in trusted time.
	clk.t = real.Add(NonceRetention + 47*time.Hour)
	if err := j.UseNonce("nonceC", clk.t.Add(5*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if used, _ := j.NonceUsed("nonceA"); used {
		t.Fatal("nonce A kept past the retention")
	}
	if used, _ := j.NonceUsed("nonceB"); !used {
		t.Fatal("nonce B pruned before its retention (it was used at the jumped time)")
	}
}

// A nonce from the old value format (expiry only) is still recognised and pruned by its
// expiry.
func TestNonceOldFormat(t *testing.T) {
	fixedClockState(t, true)
	now := time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)
	clk := &stepClock{t: now}
	path := filepath.Join(t.TempDir(), "j.db")
	j, err := Open(path, Options{KioskID: "K1", Currency: "CNY", Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if err := j.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bNonces).Put([]byte("old"), u64(uint64(now.Add(-NonceRetention-2*time.Hour).Unix())))
	}); err != nil {
		t.Fatal(err)
	}
	if err := j.UseNonce("old", now); !errors.Is(err, ErrNonceUsed) {
		t.Fatalf("old-format nonce: %v", err)
	}
	if err := j.UseNonce("new", now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if used, _ := j.NonceUsed("old"); used {
		t.Fatal("old-format nonce past retention not pruned")
	}
}
