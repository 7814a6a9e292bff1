//go:build linux

package sim

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// A disk that is full, below bbolt, without a write hook: bbolt holds the journal as an
// *os.File (journal.Options.OpenFile) and writes it with pwrite, so the fault swaps what that
// descriptor number refers to. fill keeps a duplicate of the journal's open file description
// and puts one of /dev/full in its place (dup3): every pwrite then fails with ENOSPC, fstat
// reports a size of 0, so a commit that needs the file to grow fails in bbolt's grow before
// it writes anything, and a read through the descriptor fails (write-only), where a real
// full disk would still read: bbolt reads only through its memory map once open, and the
// map stays on the real file. free puts the duplicate back: the space is freed, and the
// process goes on with the same descriptor, as a daemon does when an operator frees space.
//
// A commit that fails under it rolls back in memory (the meta page is the last write of a
// commit and is never reached), and the pages it did write before the swap, if any, are
// pages no committed transaction uses. The one thing that must not happen under the swap is
// a new memory map: bbolt maps the file again when a commit's pages pass the end of the
// current map, and a map of the descriptor would then fail (the map is gone, every later
// read faults). The simulation opens its journals with a map far larger than they grow
// (simMmapSize) and fills the disk only while the journal is well within it
// (diskFullHeadroom); no transaction of the kiosk comes near the rest.
//
// The swaps run inside the descriptor's SyscallConn().Control, which holds the os.File
// open for the duration: a descriptor number the journal has closed (a storage fault, a
// dead host) may already belong to another file of this process (another run), and is
// never touched.
type fullDisk struct {
	f     *os.File // the journal's file as bbolt holds it
	saved int      // duplicate of the journal's own open file description; -1 once released
}

const diskFullSupported = true

// fill makes f's descriptor refer to /dev/full.
func fill(f *os.File) (*fullDisk, error) {
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	defer full.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	d := &fullDisk{f: f, saved: -1}
	var derr error
	cerr := rc.Control(func(fd uintptr) {
		saved, err := unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			derr = fmt.Errorf("dup journal descriptor: %w", err)
			return
		}
		if err := unix.Dup3(int(full.Fd()), int(fd), unix.O_CLOEXEC); err != nil {
			unix.Close(saved)
			derr = fmt.Errorf("dup3 /dev/full: %w", err)
			return
		}
		d.saved = saved
	})
	if err := errors.Join(cerr, derr); err != nil {
		return nil, err
	}
	return d, nil
}

// free puts the journal's own file back under its descriptor (space freed) and releases the
// duplicate. When the journal's file was closed meanwhile there is nothing to put back.
func (d *fullDisk) free() error {
	if d.saved < 0 {
		return nil
	}
	var derr error
	if rc, err := d.f.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) {
			derr = unix.Dup3(d.saved, int(fd), unix.O_CLOEXEC)
		})
	}
	d.release()
	return derr
}

// release closes the duplicate: with the journal's descriptor closed too, the file's lock
// (flock, held by the open file description) goes with it, as the next host needs.
func (d *fullDisk) release() {
	if d.saved >= 0 {
		unix.Close(d.saved)
		d.saved = -1
	}
}
