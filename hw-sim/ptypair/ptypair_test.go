package ptypair

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"
	"time"
)

func TestRoundTripBinary(t *testing.T) {
	p, err := Open()
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	defer p.Close()
	peer, err := os.OpenFile(p.Path(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	// Every byte value, including CR, LF, ^C and XON/XOFF, must pass untouched both ways.
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	go func() { p.Write(all) }()
	got := make([]byte, 256)
	if _, err := io.ReadFull(peer, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, all) {
		t.Fatalf("master->slave mangled bytes: %x", got)
	}
	go func() { peer.Write(all) }()
	if _, err := io.ReadFull(p, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, all) {
		t.Fatalf("slave->master mangled bytes: %x", got)
	}
}

// TestMasterDeadline checks the master honours read deadlines, so an emulator can stop
// without closing its pty.
func TestMasterDeadline(t *testing.T) {
	p, err := Open()
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	defer p.Close()
	if err := p.Master.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	_, err = p.Master.Read(make([]byte, 1))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read with a passed deadline: %v", err)
	}
}
