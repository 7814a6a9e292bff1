package journal

import (
	"encoding/binary"
	"fmt"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// Time the kiosk cannot trust.
//
// A kiosk may boot in 1970 (no RTC battery), and its clock may jump forward and back (a bad
// NTP answer, a technician). Used QR nonces must survive all of that: a code spent once must
// never be accepted again while it is still valid by real time.
//
// The journal keeps a trusted time that never goes backwards: the highest of the newest
// event's time, the previous trusted time (meta), and the wall clock when ClockTrusted says
// it is good. A used nonce keeps its code's expiry and the trusted time it was used at; it
// is pruned only when the code expired more than NonceMargin before the trusted time AND it
// has been held for NonceRetention of trusted time. A forward jump raises the trusted time
// but cannot make a nonce younger than NonceRetention old, and NonceRetention is far longer
// than any code's lifetime (qrpay refuses codes valid for longer than qrpay.MaxLifetime) and
// than a plausible clock error; a backward jump changes nothing, since pruning never looks
// at the wall clock directly.

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
var ClockSynced = func() bool {
	var tx unix.Timex // Modes 0: read only
	state, err := unix.Adjtimex(&tx)
	if err != nil {
		return false
	}
	return state != unix.TIME_ERROR && tx.Status&unix.STA_UNSYNC == 0
}

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

// TrustedNow is the journal's monotonic notion of now (see the comment at the top of
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
	return j.update(func(w *writer) error {
		b := w.tx.Bucket(bNonces)
		if b.Get([]byte(nonce)) != nil {
			return ErrNonceUsed
		}
		trusted := trustedNow(w.tx, j.now())
		if !trusted.IsZero() {
			if err := w.tx.Bucket(bMeta).Put(kTrusted, u64(uint64(trusted.UnixNano()))); err != nil {
				return err
			}
			if err := pruneNonces(b, trusted); err != nil {
				return err
			}
		}
		// value: expiry (Unix seconds) | trusted time of use (Unix seconds; 0 unknown).
		v := binary.BigEndian.AppendUint64(u64(uint64(expires.Unix())), uint64(max(trusted.Unix(), 0)))
		return b.Put([]byte(nonce), v)
	})
}

// pruneNonces deletes at most 64 nonces that are past both the margin and the retention.
// A nonce used while no time was trusted (used-at 0) is dated by its expiry alone, which
// still needs the retention on top of the margin.
func pruneNonces(b *bolt.Bucket, trusted time.Time) error {
	now := trusted.Unix()
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
