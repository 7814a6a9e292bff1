package sim

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kioskd/kioskd/kiosk/journal"
)

// openFullable opens a journal as the simulation does, with the file bbolt writes through.
func openFullable(t *testing.T, path string) (*journal.Journal, *os.File) {
	t.Helper()
	var file *os.File
	j, err := journal.Open(path, journal.Options{KioskID: kioskID, Currency: currency, NoSync: true, LockTimeout: 100 * time.Millisecond,
		InitialMmapSize: simMmapSize,
		OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, perm)
			if err == nil {
				file = f
			}
			return f, err
		}})
	if err != nil {
		t.Fatal(err)
	}
	return j, file
}

func record(j *journal.Journal, what string, size int) error {
	return j.Record(journal.EvAlarm, map[string]any{"alarm": "disk_full_test", "detail": what + strings.Repeat("x", size)})
}

// TestDiskFullJournal: under the disk-full fault every commit fails (ENOSPC from pwrite, or
// bbolt's grow for a commit that needs a larger file) and rolls back, reads go on, and once
// the space is freed the same open journal writes and grows again, verifies, and the file
// holds exactly the commits that succeeded.
func TestDiskFullJournal(t *testing.T) {
	if !diskFullSupported {
		t.Skip("the disk-full fault needs Linux (/dev/full, dup3)")
	}
	path := filepath.Join(t.TempDir(), "journal.db")
	j, file := openFullable(t, path)
	defer j.Close()
	for i := range 20 {
		if err := record(j, "before", i*100); err != nil {
			t.Fatal(err)
		}
	}
	before, err := j.Verify()
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	d, err := fill(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := record(j, "full", 10); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("a small commit on a full disk: %v, want ENOSPC", err)
	}
	// A commit past the file's high water takes bbolt's grow path: it fails before writing.
	if err := record(j, "full-large", 4<<20); err == nil {
		t.Fatal("a 4 MiB commit on a full disk succeeded")
	}
	for i := range 50 {
		if err := record(j, "full", i); err == nil {
			t.Fatalf("commit %d on a full disk succeeded", i)
		}
	}
	// Reads go through the memory map of the real file.
	during, err := j.Verify()
	if err != nil {
		t.Fatalf("verify while the disk is full: %v", err)
	}
	if during.Events != before.Events || during.Head != before.Head {
		t.Fatalf("failed commits changed the journal: %+v, before %+v", during, before)
	}
	if st2, err := os.Stat(path); err != nil || st2.Size() != st.Size() {
		t.Fatalf("file size %v (%v), before %d", st2.Size(), err, st.Size())
	}
	if err := d.free(); err != nil {
		t.Fatal(err)
	}
	if err := record(j, "freed", 10); err != nil {
		t.Fatalf("a commit after the space was freed: %v", err)
	}
	if err := record(j, "freed-large", 4<<20); err != nil {
		t.Fatalf("a commit growing the file after the space was freed: %v", err)
	}
	after, err := j.Verify()
	if err != nil {
		t.Fatal(err)
	}
	if after.Events != before.Events+2 {
		t.Fatalf("%d events after, %d before: want exactly the two commits after the space was freed", after.Events, before.Events)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j2, err := journal.Open(path, journal.Options{KioskID: kioskID, Currency: currency, NoSync: true})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer j2.Close()
	again, err := j2.Verify()
	if err != nil || again.Events != after.Events || again.Head != after.Head {
		t.Fatalf("reopened: %+v (%v), want %+v", again, err, after)
	}
}

// TestDiskFullHostDies: a host that dies while the disk is full leaves the file consistent
// and unlocked once its journal is closed and the duplicate released (the next host opens
// it), and a storage fault that closed the journal's descriptor meanwhile is not undone by
// the freeing (the descriptor number may belong to another file by then).
func TestDiskFullHostDies(t *testing.T) {
	if !diskFullSupported {
		t.Skip("the disk-full fault needs Linux (/dev/full, dup3)")
	}
	path := filepath.Join(t.TempDir(), "journal.db")
	j, file := openFullable(t, path)
	if err := record(j, "before", 10); err != nil {
		t.Fatal(err)
	}
	want, err := j.Verify()
	if err != nil {
		t.Fatal(err)
	}
	d, err := fill(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := record(j, "full", 10); err == nil {
		t.Fatal("a commit on a full disk succeeded")
	}
	// The storage fault: the descriptor is closed under bbolt.
	file.Close()
	if err := d.free(); err != nil {
		t.Fatalf("free after the descriptor was closed: %v", err)
	}
	j.Close()
	j2, file2 := openFullable(t, path)
	got, err := j2.Verify()
	if err != nil || got.Events != want.Events || got.Head != want.Head {
		t.Fatalf("after the host died on a full disk: %+v (%v), want %+v", got, err, want)
	}
	if err := record(j2, "next host", 10); err != nil {
		t.Fatal(err)
	}
	want, err = j2.Verify()
	if err != nil {
		t.Fatal(err)
	}
	// This host dies with the disk still full: once its journal is closed and the duplicate
	// released, the lock is gone and the next host opens the file.
	d, err = fill(file2)
	if err != nil {
		t.Fatal(err)
	}
	if err := record(j2, "full", 10); err == nil {
		t.Fatal("a commit on a full disk succeeded")
	}
	j2.Close()
	d.release()
	j3, _ := openFullable(t, path)
	defer j3.Close()
	got, err = j3.Verify()
	if err != nil || got.Events != want.Events || got.Head != want.Head {
		t.Fatalf("after the second host died on a full disk: %+v (%v), want %+v", got, err, want)
	}
}
