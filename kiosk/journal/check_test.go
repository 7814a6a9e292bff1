package journal

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestCheckFile damages a journal at the page level (not through bbolt) and expects the
// full check to refuse it, without the test process panicking.
func TestCheckFile(t *testing.T) {
	j, path := openTest(t)
	s := mustSession(t, j, 50000)
	for range 20 {
		credit(t, j, s.ID, 1000)
	}
	j.Close()
	if _, err := CheckFile(path); err != nil {
		t.Fatalf("sound file refused: %v", err)
	}
	st, _ := os.Stat(path)
	f, _ := os.OpenFile(path, os.O_RDWR, 0)
	// Scribble over the middle of the file: branch/leaf pages.
	junk := make([]byte, 4096)
	for i := range junk {
		junk[i] = byte(i*7 + 3)
	}
	// Every page after the two meta pages: the tree, the freelist; bbolt may well panic
	// reading this, which is the point of checking in a child.
	for off := int64(2 * 4096); off < st.Size(); off += 4096 {
		f.WriteAt(junk, off)
	}
	f.Close()
	exe, _ := os.Executable()
	err := CheckInChild(context.Background(), "/usr/bin/env", []string{"KIOSKD_CHECK_CHILD=1", "KIOSKD_CHECK_PATH=" + path, exe, "-test.run=^TestCheckChildHelper$", "--"}, path, time.Minute)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("damaged journal passed the check in a child: %v", err)
	}
	if _, err := exec.LookPath("true"); err == nil {
		if err := CheckInChild(context.Background(), "true", nil, path, time.Minute); err != nil {
			t.Fatalf("a passing child reported failure: %v", err)
		}
	}
}

// TestCheckChildHelper is the child side of TestCheckFile.
func TestCheckChildHelper(t *testing.T) {
	if os.Getenv("KIOSKD_CHECK_CHILD") != "1" {
		t.Skip("helper for TestCheckFile")
	}
	if _, err := CheckFile(os.Getenv("KIOSKD_CHECK_PATH")); err != nil {
		os.Exit(1)
	}
	os.Exit(0)
}
