package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kioskd/kioskd/kiosk/journal"
)

// lockPoll is how often a held journal lock is tried again while waiting for it.
const lockPoll = 50 * time.Millisecond

// openJournal opens and verifies the journal. The whole wait for the file's lock (the
// probe, the check child, the open) is bounded by journal.lock_wait together: a second
// kioskd on the same journal fails within it, with an error wrapping journal.ErrLocked.
func (s *System) openJournal(ctx context.Context) (*journal.Journal, error) {
	path := s.cfg.Journal.Path
	if err := ensureDir(path); err != nil {
		return nil, err
	}
	wait := s.cfg.Journal.LockWait.D()
	deadline := time.Now().Add(wait)
	locked := func() error {
		return fmt.Errorf("%w: %s (is another kioskd running?); gave up after journal.lock_wait %s", journal.ErrLocked, path, wait)
	}
	// Wait for the lock first, without keeping it: the common case of a second instance
	// ends here, before the check child is even started.
	f, err := lockFile(ctx, path, unix.LOCK_EX, deadline)
	if errors.Is(err, journal.ErrLocked) {
		return nil, locked()
	}
	if err != nil {
		return nil, err
	}
	if f != nil {
		f.Close()
		s.log.Debug("journal lock free", "path", path)
	}
	if s.opts.CheckJournal != nil {
		err := s.startStage("checking the journal", checkStageLimit, func() error {
			return s.opts.CheckJournal(ctx, path, max(time.Until(deadline), 0))
		})
		if errors.Is(err, journal.ErrLocked) {
			return nil, locked()
		}
		if err != nil {
			return nil, err
		}
	}
	var j *journal.Journal
	err = s.startStage("opening the journal", openStageLimit, func() error {
		var err error
		j, err = journal.Open(path, journal.Options{KioskID: s.cfg.Kiosk.ID, Currency: s.cfg.Kiosk.Currency,
			LockTimeout: max(time.Until(deadline), lockPoll), Logger: s.log.With("component", "journal")})
		return err
	})
	if errors.Is(err, journal.ErrLocked) {
		return nil, locked()
	}
	return j, err
}

// lockFile takes a flock(2) of kind how (LOCK_EX or LOCK_SH) on path, the lock bbolt uses,
// trying again every lockPoll until deadline; it returns the file holding it, or nil when
// path does not exist (nothing to wait for). A lock still held at the deadline is an error
// wrapping journal.ErrLocked.
func lockFile(ctx context.Context, path string, how int, deadline time.Time) (*os.File, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	for {
		err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("journal: lock %s: %w", path, err)
		}
		left := time.Until(deadline)
		if left <= 0 {
			f.Close()
			return nil, fmt.Errorf("%w: %s", journal.ErrLocked, path)
		}
		if !sleepCtx(ctx, min(left, lockPoll)) {
			f.Close()
			return nil, ctx.Err()
		}
	}
}

// CheckJournalFile is the body of kioskd's check child (kioskd -check-journal): it waits at
// most lockWait for a shared lock on the journal, keeps it so no writer starts meanwhile, and
// runs journal.CheckFile (whose own shared lock is compatible with it). A journal still locked
// after lockWait is an error wrapping journal.ErrLocked, which CheckInChild passes on.
func CheckJournalFile(ctx context.Context, path string, lockWait time.Duration) (journal.VerifyReport, error) {
	f, err := lockFile(ctx, path, unix.LOCK_SH, time.Now().Add(lockWait))
	if err != nil {
		return journal.VerifyReport{}, err
	}
	if f != nil {
		defer f.Close()
	}
	return journal.CheckFile(path)
}
