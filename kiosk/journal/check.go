package journal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// CheckFile is the start-up integrity check of a journal file: bbolt's page-level
// consistency check of the freelist and of the buckets that do not grow with history (meta,
// intents, outbox, cassette, nonces, uncertain items, ...), and then the check from the verified checkpoint forward that Open does
// (chain tail, live views): its cost depends on the views and the tail, not on the length of
// history. CheckFileFull is the complete check. It opens the file read-only. A badly
// damaged bbolt file can make bbolt panic on open or during the check, which is why kioskd
// runs CheckFile in a child process (CheckInChild) before it opens the journal for writing.
func CheckFile(path string) (rep VerifyReport, err error) {
	return checkFile(path, false)
}

// CheckFileFull is the complete integrity check: bbolt's check of every page, then the hash
// chain from the first event (archive segments included) and every view (Verify), and the
// checkpoint against the history. Its cost grows with history; kioskctl journal verify runs
// it, and a kiosk should run it in the background (in a child process, for the same reason as
// CheckFile) rather than before start-up.
func CheckFileFull(path string) (rep VerifyReport, err error) {
	return checkFile(path, true)
}

// CheckPages is bbolt's check of every page of the file alone (read-only): a tool that then
// runs VerifyFull on a writable journal gets CheckFileFull and a stored checkpoint.
func CheckPages(path string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: bbolt panicked: %v", ErrCorrupt, r)
		}
	}()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 10 * time.Second})
	if errors.Is(err, berrors.ErrTimeout) {
		return fmt.Errorf("%w: %v", ErrLocked, err)
	}
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	defer func() { _ = db.Close() }()
	var errs []error
	_ = db.View(func(tx *bolt.Tx) error {
		for e := range tx.Check() {
			if len(errs) < 10 {
				errs = append(errs, e)
			}
		}
		return nil
	})
	if len(errs) > 0 {
		return fmt.Errorf("%w: bbolt consistency: %v", ErrCorrupt, errors.Join(errs...))
	}
	return nil
}

func checkFile(path string, full bool) (rep VerifyReport, err error) {
	// A recoverable panic in bbolt is a failed check; a fault on the memory map is not
	// recoverable, which is what the child process is for.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: bbolt panicked: %v", ErrCorrupt, r)
		}
	}()
	if _, err := os.Stat(path); err != nil {
		return VerifyReport{}, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 10 * time.Second})
	if errors.Is(err, berrors.ErrTimeout) {
		return VerifyReport{}, fmt.Errorf("%w: %v", ErrLocked, err)
	}
	if err != nil {
		return VerifyReport{}, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	var errs []error
	collect := func(ch <-chan error) {
		for e := range ch {
			if len(errs) < 10 {
				errs = append(errs, e)
			}
		}
	}
	err = db.View(func(tx *bolt.Tx) error {
		if full {
			collect(tx.Check())
			return nil
		}
		for _, name := range allBuckets {
			if bytes.Equal(name, bEvents) || bytes.Equal(name, bSessions) || bytes.Equal(name, bTopups) || bytes.Equal(name, bReceipts) {
				// These grow with history: the pages start-up reads (the tail, live and
				// recent views) are read by the chain check, the rest by CheckFileFull.
				continue
			}
			b := tx.Bucket(name)
			if b == nil {
				return fmt.Errorf("bucket %s missing", name)
			}
			if root := b.Root(); root >= 2 {
				collect(tx.Check(bolt.WithPageId(uint64(root))))
			}
		}
		return nil
	})
	_ = db.Close()
	if err != nil {
		return VerifyReport{}, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if len(errs) > 0 {
		return VerifyReport{}, fmt.Errorf("%w: bbolt consistency: %v", ErrCorrupt, errors.Join(errs...))
	}
	if full {
		j, err := Open(path, Options{ReadOnly: true, SkipVerify: true})
		if err != nil {
			return VerifyReport{}, err
		}
		defer func() { _ = j.Close() }()
		return j.Verify()
	}
	j, err := Open(path, Options{ReadOnly: true, SkipVerify: true})
	if err != nil {
		return VerifyReport{}, err
	}
	defer func() { _ = j.Close() }()
	return j.VerifyStartup()
}

// CheckInChild runs `exe args... path` (a program that calls CheckFile and exits 0 when it
// passes; kioskd -check-journal) and reports its verdict. A crash or a timeout of the child
// is a failed check: the kiosk must not run on a file that makes bbolt panic.
func CheckInChild(ctx context.Context, exe string, args []string, path string, timeout time.Duration) error {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil // a new journal: nothing to check
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, append(append([]string{}, args...), path)...)
	// The check must not outlive its parent: an orphaned checker would hold the file's
	// lock while the next kioskd starts.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return fmt.Errorf("%w: check did not finish within %s", ErrCorrupt, timeout)
	}
	if err != nil && strings.Contains(string(out), ErrLocked.Error()) {
		return fmt.Errorf("%w: %s", ErrLocked, strings.TrimSpace(string(out)))
	}
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if len(msg) > 2000 {
			msg = msg[:2000] + "…"
		}
		return fmt.Errorf("%w: %s (%v)", ErrCorrupt, msg, err)
	}
	return nil
}
