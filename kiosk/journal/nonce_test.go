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

// monoClock is an injected monotonic clock: it moves only when the test says time passed.
type monoClock struct{ d time.Duration }

func (m *monoClock) Mono() time.Duration { return m.d }

// Boot at 1970, then the real time, jumps forward by more than the retention and back: a used
// code is refused all along, no clock reading un-spends it, and only time that really passed
// (the monotonic clock after a trusted anchor) lets it go.
func TestNonceSurvivesClockJumps(t *testing.T) {
	fixedClockState(t, false)
	clk := &stepClock{t: time.Unix(100, 0).UTC()}
	mono := &monoClock{}
	path := filepath.Join(t.TempDir(), "j.db")
	j, err := Open(path, Options{KioskID: "K1", Currency: "CNY", Now: clk.Now, Mono: mono.Mono})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { j.Close() }()
	real := time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)
	expA := real.Add(5 * time.Minute)
	spent := func(what, nonce string, exp time.Time) {
		t.Helper()
		if err := j.UseNonce(nonce, exp); !errors.Is(err, ErrNonceUsed) {
			t.Fatalf("%s: replay of %s: %v", what, nonce, err)
		}
	}

	// 1970: nothing to trust; the code is spent anyway.
	if j.ClockTrusted(clk.t) || !j.TrustedNow().IsZero() || !j.MonoNow().IsZero() {
		t.Fatal("a 1970 clock is trusted")
	}
	if err := j.UseNonce("nonceA", expA); err != nil {
		t.Fatal(err)
	}
	j.AnchorTime(clk.t) // a 1970 anchor is no anchor
	if !j.MonoNow().IsZero() {
		t.Fatal("a 1970 time anchored the journal")
	}
	// The clock is set right, without NTP: good enough to check expiries, not to anchor.
	clk.t = real
	if !j.ClockTrusted(clk.t) {
		t.Fatal("a clock after the build and the newest event is not trusted")
	}
	spent("real time", "nonceA", expA)

	// Forward far beyond the retention, unsynchronised: another code is used; A stays.
	clk.t = real.Add(NonceRetention + 400*24*time.Hour)
	if err := j.UseNonce("nonceB", clk.t.Add(5*time.Minute)); err != nil {
		t.Fatal(err)
	}
	spent("forward jump", "nonceA", expA)
	if !j.MonoNow().IsZero() {
		t.Fatal("an unsynchronised forward jump anchored the journal")
	}
	// Back to the real time: A is valid again by the wall clock, and still spent; the clock
	// is behind what the journal saw, so it is not trusted for expiries.
	clk.t = real.Add(2 * time.Minute)
	if j.ClockTrusted(clk.t) {
		t.Fatal("a clock behind the newest event is trusted")
	}
	spent("jump back", "nonceA", expA)

	// The ledger's signed time anchors the journal; time passes only on the monotonic clock.
	j.AnchorTime(real.Add(time.Minute))
	if got := j.MonoNow(); !got.Equal(real.Add(time.Minute)) {
		t.Fatalf("anchored MonoNow = %s", got)
	}
	j.AnchorTime(real) // behind: ignored
	mono.d += time.Hour
	if got := j.MonoNow(); !got.Equal(real.Add(61 * time.Minute)) {
		t.Fatalf("MonoNow after an hour = %s", got)
	}
	// Wall clock jumps (forward, back, 1970) move nothing.
	for _, w := range []time.Time{real.Add(1000 * 24 * time.Hour), time.Unix(0, 0), real.Add(-48 * time.Hour)} {
		clk.t = w
		if err := j.UseNonce("nonce-"+w.Format("20060102"), w.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		spent("jump to "+w.String(), "nonceA", expA)
		if got := j.MonoNow(); !got.Equal(real.Add(61 * time.Minute)) {
			t.Fatalf("a wall clock jump to %s moved MonoNow to %s", w, got)
		}
	}

	// A restart on a 1970 clock with a new monotonic clock: the anchored time comes back from
	// the journal, not from the wall clock.
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	clk.t, mono.d = time.Unix(50, 0).UTC(), 0
	if j, err = Open(path, Options{Now: clk.Now, Mono: mono.Mono}); err != nil {
		t.Fatal(err)
	}
	if got := j.MonoNow(); !got.Equal(real.Add(61 * time.Minute)) {
		t.Fatalf("MonoNow after a restart = %s", got)
	}
	spent("restart", "nonceA", expA)

	// A synchronised clock is trusted even behind the newest event, and anchors.
	ClockSynced = func() bool { return true }
	if !j.ClockTrusted(real.Add(2 * time.Hour)) {
		t.Fatal("a synchronised clock is not trusted")
	}
	ClockSynced = func() bool { return false }

	// Real time passes (monotonic): A goes once its code expired long ago AND the retention
	// passed, whatever the wall clock says.
	mono.d += NonceRetention
	if err := j.UseNonce("nonceC", real.Add(NonceRetention+2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if used, _ := j.NonceUsed("nonceA"); used {
		t.Fatal("nonce A kept past its expiry and the retention")
	}
	if used, _ := j.NonceUsed("nonceC"); !used {
		t.Fatal("nonce C not recorded")
	}
}

// A synchronised wall clock anchors the journal's time at a used nonce.
func TestNonceSyncedClockAnchors(t *testing.T) {
	fixedClockState(t, true)
	now := time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)
	clk := &stepClock{t: now}
	mono := &monoClock{}
	j, err := Open(filepath.Join(t.TempDir(), "j.db"), Options{KioskID: "K1", Currency: "CNY", Now: clk.Now, Mono: mono.Mono})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if err := j.UseNonce("n1", now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := j.MonoNow(); !got.Equal(now) {
		t.Fatalf("MonoNow = %s, want the synchronised clock %s", got, now)
	}
	// A synchronised clock that NTP steps back does not move the anchored time back.
	clk.t = now.Add(-time.Hour)
	if err := j.UseNonce("n2", now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := j.MonoNow(); !got.Equal(now) {
		t.Fatalf("MonoNow went back to %s", got)
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
