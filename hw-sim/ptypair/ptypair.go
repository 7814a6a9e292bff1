// Package ptypair allocates the pseudo-terminals that hw-sim emulators sit behind.
//
// The emulator owns the master side; the daemon opens the slave path with its real serial code
// (go.bug.st/serial), exactly as it would open /dev/ttyUSB0. The pair keeps its own descriptor
// of the slave open for its whole life: on Linux a master read fails with EIO while no slave
// descriptor is open, and the daemon closes and reopens its port on every restart.
package ptypair

import (
	"fmt"
	"os"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// Pair is an allocated pseudo-terminal.
type Pair struct {
	// Master is the emulator's end: bytes written here are what the daemon reads.
	Master *os.File
	// hold keeps the slave open (see the package comment).
	hold *os.File
	path string
}

// Open allocates a pseudo-terminal in raw mode.
func Open() (*Pair, error) {
	m, s, err := pty.Open()
	if err != nil {
		return nil, fmt.Errorf("ptypair: open: %w", err)
	}
	if err := makeRaw(int(s.Fd())); err != nil {
		m.Close()
		s.Close()
		return nil, fmt.Errorf("ptypair: raw mode: %w", err)
	}
	// creack/pty hands the master over through Fd(), which leaves the descriptor in
	// blocking mode: deadlines then do nothing and a blocked Read can only be released by
	// closing. Re-wrap a non-blocking duplicate so the master is pollable.
	master, err := pollable(m)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("ptypair: master: %w", err)
	}
	return &Pair{Master: master, hold: s, path: s.Name()}, nil
}

func pollable(f *os.File) (*os.File, error) {
	defer f.Close()
	fd, err := unix.Dup(int(f.Fd()))
	if err != nil {
		return nil, err
	}
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, true); err != nil {
		_ = unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}

// Path is the slave device path, e.g. /dev/pts/7, for the daemon's config.
func (p *Pair) Path() string { return p.path }

// Read reads what the daemon wrote.
func (p *Pair) Read(b []byte) (int, error) { return p.Master.Read(b) }

// Write sends bytes to the daemon.
func (p *Pair) Write(b []byte) (int, error) { return p.Master.Write(b) }

// Close releases both ends; a blocked Read returns an error.
func (p *Pair) Close() error {
	err := p.Master.Close()
	if e := p.hold.Close(); err == nil {
		err = e
	}
	return err
}

// makeRaw puts the terminal in raw mode so no byte is translated, echoed or taken as a signal:
// the protocols are binary and use every byte value.
func makeRaw(fd int) error {
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return err
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	t.Cc[unix.VMIN] = 1
	t.Cc[unix.VTIME] = 0
	return unix.IoctlSetTermios(fd, unix.TCSETS, t)
}
