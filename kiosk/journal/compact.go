package journal

import (
	"fmt"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
)

// Getting the hot file small again.
//
// bbolt never shrinks its file: pages freed by Archive go to the freelist and are reused by
// later commits, but the file keeps its high-water size. That high water is about the live
// data plus one archive run's freed pages (the append-only buckets are written at full pages,
// journal.go), so a kiosk that archives regularly does not need this to stay small. When at least
// Options.CompactFreeFraction of the file is free (default 0.5, after a large archive run),
// Open rewrites it: bbolt's Compact copies every bucket (keys, values and sequence counters)
// into <journal>.compact, which is fsynced and atomically renamed over the journal, and the
// directory is fsynced; then the journal is reopened. A crash before the rename leaves the
// original untouched (the stale .compact is removed at the next attempt); after it, the
// compacted file is complete. This runs at Open only, before any other user of the file,
// while this process holds the lock of the original file.

// compactMinBytes: smaller files are not worth a rewrite.
const compactMinBytes = 4 << 20

// freeFraction returns the share of the file's pages that are free.
func freeFraction(db *bolt.DB) (float64, int64) {
	var size int64
	_ = db.View(func(tx *bolt.Tx) error { size = tx.Size(); return nil })
	st := db.Stats()
	ps := int64(db.Info().PageSize)
	if size <= 0 || ps <= 0 {
		return 0, size
	}
	return float64(int64(st.FreePageN+st.PendingPageN)*ps) / float64(size), size
}

// maybeCompact rewrites the file when it is mostly free pages and returns the database to
// use from then on (the same one when nothing was done).
func (j *Journal) maybeCompact(opts Options, bopts *bolt.Options) error {
	frac := opts.CompactFreeFraction
	if frac == 0 {
		frac = 0.5
	}
	if frac < 0 || opts.ReadOnly {
		return nil
	}
	free, size := freeFraction(j.db)
	if size < compactMinBytes || free < frac {
		return nil
	}
	dst := j.path + ".compact"
	os.Remove(dst)
	// The copy is written without fsync per transaction and synced once at the end.
	out, err := bolt.Open(dst, 0o600, &bolt.Options{NoSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return fmt.Errorf("journal: compact: %w", err)
	}
	err = bolt.Compact(out, j.db, 16<<20)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(dst, j.path)
	}
	if err != nil {
		os.Remove(dst)
		return fmt.Errorf("journal: compact: %w", err)
	}
	if d, err := os.Open(filepath.Dir(j.path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	_ = j.db.Close()
	db, err := bolt.Open(j.path, 0o600, bopts)
	if err != nil {
		return fmt.Errorf("journal: reopen after compaction: %w", err)
	}
	j.db = db
	after, _ := freeFraction(db)
	var newSize int64
	_ = db.View(func(tx *bolt.Tx) error { newSize = tx.Size(); return nil })
	j.log.Info("journal compacted", "path", j.path, "before_bytes", size, "free_fraction", free, "after_bytes", newSize, "after_free", after)
	return nil
}
