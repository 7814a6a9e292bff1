package journal

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

// CheckFile is the full integrity check of a journal file: bbolt's own page-level consistency
// check (every page reachable once, freelist sound) and then the hash chain and money views
// (Verify). It opens the file read-only. A badly damaged bbolt file can make bbolt panic on
// open or during the check, which is why kioskd runs CheckFile in a child process
// (CheckInChild) before it opens the journal for writing.
func CheckFile(path string) (rep VerifyReport, err error) {
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
	if errors.Is(err, bolt.ErrTimeout) {
		return VerifyReport{}, fmt.Errorf("%w: %v", ErrLocked, err)
	}
	if err != nil {
		return VerifyReport{}, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	var errs []error
	err = db.View(func(tx *bolt.Tx) error {
		for e := range tx.Check() {
			errs = append(errs, e)
			if len(errs) >= 10 {
				break
			}
		}
		return nil
	})
	db.Close()
	if err != nil {
		return VerifyReport{}, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if len(errs) > 0 {
		return VerifyReport{}, fmt.Errorf("%w: bbolt consistency: %v", ErrCorrupt, errors.Join(errs...))
	}
	j, err := Open(path, Options{ReadOnly: true, SkipVerify: true})
	if err != nil {
		return VerifyReport{}, err
	}
	defer j.Close()
	return j.Verify()
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
