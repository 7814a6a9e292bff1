package journal

import (
	"encoding/binary"
	"fmt"
	"os"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// Time the kiosk cannot trust.
//
// A kiosk may boot in 1970 (no RTC battery), and its clock may jump forward and back (a bad
// NTP answer, a technician). Two different questions need a time:
//
//   - May this code's expiry be checked against the wall clock? ClockTrusted: only when the
//     kernel says the clock is synchronised, or the clock is later than both the journal's
//     newest event and the build. Otherwise the engine checks the expiry against the ledger's
//     signed time (the authz answer) or refuses the code.
//   - When may a used nonce be forgotten? Never by the wall clock: a forward jump would
//     forget every nonce, and the jump back would make their codes valid again. Used nonces
//     are pruned against MonoNow, a time that only a trusted source sets (AnchorTime: the
//     ledger's signed time, or the wall clock while the kernel says it is synchronised) and
//     that otherwise advances with the monotonic clock, which no clock change moves. It is
//     kept in the journal (meta "mono_time") with every used nonce, so it survives restarts;
//     time while the kiosk is off is not counted, so MonoNow lags real time and never leads
//     it (given truthful anchors). A nonce is pruned only when its code expired more than
//     NonceMargin before MonoNow and it was used more than NonceRetention of MonoNow ago: a
//     code is then long dead by real time, whatever the wall clock says.
//
// TrustedNow (the archive's age rule) is a separate, coarser notion: the highest of the newest
// event's time, the trusted time recorded with the last used nonce, and the wall clock when
// it is past both and the build.

var kMono = []byte("mono_time")

// loadMono reads the anchored time kept by the last used nonce.
func (j *Journal) loadMono() {
	_ = j.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bMeta).Get(kMono); len(v) == 8 && btoi(v) != 0 {
			j.monoBase = time.Unix(0, int64(btoi(v))).UTC()
			j.monoAt = j.mono()
		}
		return nil
	})
}

// MonoNow is the journal-anchored monotonic time (see the comment at the top of nonce.go):
// the last trusted time plus the monotonic time elapsed since; zero while no trusted time was
// ever known to this journal.
func (j *Journal) MonoNow() time.Time {
	j.monoMu.Lock()
	defer j.monoMu.Unlock()
	return j.monoNowLocked()
}

func (j *Journal) monoNowLocked() time.Time {
	if j.monoBase.IsZero() {
		return time.Time{}
	}
	return j.monoBase.Add(j.mono() - j.monoAt)
}

// AnchorTime tells the journal a time from a trusted source: the ledger's signed time, or the
// wall clock while the kernel says it is synchronised. MonoNow never goes back: an anchor
// behind it is ignored. The anchor is written with the next used nonce.
func (j *Journal) AnchorTime(t time.Time) {
	if !t.After(BuildTime) {
		return // a 1970 or pre-build time is no anchor, whoever says it
	}
	j.monoMu.Lock()
	defer j.monoMu.Unlock()
	if t.After(j.monoNowLocked()) {
		j.monoBase, j.monoAt = t.UTC(), j.mono()
	}
}

var kTrusted = []byte("trusted_time")

// NonceMargin and NonceRetention govern pruning of used nonces (see above).
var (
	NonceMargin    = time.Hour
	NonceRetention = 30 * 24 * time.Hour
)

// BuildTime is the earliest plausible wall-clock time: the build's commit time when the
// binary records one, else the date this rule was written. A clock before it is wrong.
var BuildTime = buildTime()

func buildTime() time.Time {
	t := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.time" {
				if v, err := time.Parse(time.RFC3339, s.Value); err == nil && v.After(t) {
					t = v
				}
			}
		}
	}
	return t
}

// ClockSynced reports whether the kernel considers the system clock synchronised (NTP or
// PTP steering it: adjtimex without STA_UNSYNC and not in TIME_ERROR). Replaceable in tests.
//
// systemd's ProtectClock= (in kioskd's unit) refuses adjtimex even to read; then the flag
// file systemd-timesyncd creates at its first synchronisation since boot
// (timesyncFlag, on tmpfs) says it.
var ClockSynced = func() bool {
	var tx unix.Timex // Modes 0: read only
	state, err := unix.Adjtimex(&tx)
	if err != nil {
		_, ferr := os.Stat(timesyncFlag)
		return ferr == nil
	}
	return state != unix.TIME_ERROR && tx.Status&unix.STA_UNSYNC == 0
}

const timesyncFlag = "/run/systemd/timesync/synchronized"

// ClockTrusted reports whether now (the wall clock) can be used to check a QR code's expiry
// locally: the clock is synchronised, or it is later than both the journal's newest event
// and BuildTime. When it is false the engine must not check expiry against now: it asks the
// ledger for its signed time (authz) or refuses the code (qrpay.ErrClockUntrusted).
func (j *Journal) ClockTrusted(now time.Time) bool {
	if ClockSynced() {
		return true
	}
	if !now.After(BuildTime) {
		return false
	}
	var newest time.Time
	_ = j.db.View(func(tx *bolt.Tx) error {
		newest = highWater(tx)
		return nil
	})
	return now.After(newest)
}

// highWater is the latest time the journal has seen: its newest event or the trusted time
// recorded with the last used nonce, whichever is later.
func highWater(tx *bolt.Tx) time.Time {
	t := newestEvent(tx)
	if s := tx.Bucket(bMeta).Get(kTrusted); len(s) == 8 {
		if v := time.Unix(0, int64(btoi(s))).UTC(); v.After(t) {
			t = v
		}
	}
	return t
}

// TrustedNow is the journal's coarse trusted time, for the archive's age rule (see the top of
// nonce.go); zero when nothing trustworthy is known yet (a new journal on a 1970 clock).
func (j *Journal) TrustedNow() time.Time {
	var t time.Time
	_ = j.db.View(func(tx *bolt.Tx) error {
		t = trustedNow(tx, j.now())
		return nil
	})
	return t
}

func newestEvent(tx *bolt.Tx) time.Time {
	k, v := tx.Bucket(bEvents).Cursor().Last()
	if k == nil {
		return time.Time{}
	}
	rec, err := decodeRecord(btoi(k), v)
	if err != nil {
		return time.Time{}
	}
	return rec.At
}

// trustedNow computes the trusted time in tx with wall as the wall clock.
func trustedNow(tx *bolt.Tx, wall time.Time) time.Time {
	t := highWater(tx)
	if wall.After(BuildTime) && wall.After(t) {
		// A wall clock past the build and past everything seen is the trusted-clock rule.
		t = wall
	}
	if !t.After(BuildTime) {
		// Only 1970 clocks so far: no time is trustworthy.
		return time.Time{}
	}
	return t.UTC()
}

// UseNonce records a QR nonce as used, with its code's expiry; a nonce seen before is
// ErrNonceUsed. Old nonces are pruned on the way under the rule at the top of nonce.go.
func (j *Journal) UseNonce(nonce string, expires time.Time) error {
	if nonce == "" {
		return fmt.Errorf("journal: empty nonce")
	}
	wall := j.now()
	if ClockSynced() {
		j.AnchorTime(wall)
	}
	mono := j.MonoNow()
	return j.update(func(w *writer) error {
		b := w.tx.Bucket(bNonces)
		if b.Get([]byte(nonce)) != nil {
			return ErrNonceUsed
		}
		if trusted := trustedNow(w.tx, wall); !trusted.IsZero() {
			if err := w.tx.Bucket(bMeta).Put(kTrusted, u64(uint64(trusted.UnixNano()))); err != nil {
				return err
			}
		}
		if !mono.IsZero() {
			if err := w.tx.Bucket(bMeta).Put(kMono, u64(uint64(mono.UnixNano()))); err != nil {
				return err
			}
			if err := pruneNonces(b, mono); err != nil {
				return err
			}
		}
		// value: expiry (Unix seconds) | MonoNow at use (Unix seconds; 0 unknown).
		v := binary.BigEndian.AppendUint64(u64(uint64(expires.Unix())), uint64(max(mono.Unix(), 0)))
		return b.Put([]byte(nonce), v)
	})
}

// pruneNonces deletes at most 64 nonces that are past both the margin and the retention,
// measured against now (MonoNow). A nonce used while no time was known (used-at 0) is dated
// by its expiry alone, which still needs the retention on top of the margin.
func pruneNonces(b *bolt.Bucket, mono time.Time) error {
	now := mono.Unix()
	margin, keep := int64(NonceMargin/time.Second), int64(NonceRetention/time.Second)
	c := b.Cursor()
	pruned := 0
	for k, v := c.First(); k != nil && pruned < 64; k, v = c.Next() {
		if len(v) < 8 {
			continue
		}
		exp := int64(btoi(v[:8]))
		used := exp // nonces from before the used-at time was kept
		if len(v) >= 16 && btoi(v[8:16]) != 0 {
			used = int64(btoi(v[8:16]))
		}
		if exp < now-margin && used < now-keep && exp < now-keep {
			if err := c.Delete(); err != nil {
				return err
			}
			pruned++
		}
	}
	return nil
}

// NonceUsed reports whether nonce was used on this kiosk.
func (j *Journal) NonceUsed(nonce string) (bool, error) {
	var used bool
	err := j.db.View(func(tx *bolt.Tx) error {
		used = tx.Bucket(bNonces).Get([]byte(nonce)) != nil
		return nil
	})
	return used, err
}
