package serialport

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kioskd/kioskd/hw-sim/ptypair"
)

func openPair(t *testing.T, m Mode) (*ptypair.Pair, Port) {
	t.Helper()
	pair, err := ptypair.Open()
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { pair.Close() })
	port, err := Open(pair.Path(), m)
	if err != nil {
		t.Fatalf("Open(%s, %v): %v", pair.Path(), m, err)
	}
	t.Cleanup(func() { port.Close() })
	return pair, port
}

// readFull reads len(b) bytes, treating (0, nil) as a read timeout, failing after 10 s.
func readFull(t *testing.T, r io.Reader, b []byte) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for got := 0; got < len(b); {
		if time.Now().After(deadline) {
			t.Fatalf("read %d of %d bytes in 10 s", got, len(b))
		}
		n, err := r.Read(b[got:])
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		got += n
	}
}

func TestEveryByteBothWays8E1(t *testing.T) {
	pair, port := openPair(t, ID003)
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	errc := make(chan error, 1)
	go func() { _, err := pair.Write(all); errc <- err }()
	got := make([]byte, 256)
	readFull(t, port, got)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, all) {
		t.Fatalf("emulator→daemon mangled bytes: % X", got)
	}
	go func() { _, err := port.Write(all); errc <- err }()
	got = make([]byte, 256)
	readFull(t, pair, got)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, all) {
		t.Fatalf("daemon→emulator mangled bytes: % X", got)
	}
}

func TestReadTimeoutReturnsNothingYet(t *testing.T) {
	_, port := openPair(t, Mode{Baud: 9600, DataBits: 8, Parity: EvenParity, StopBits: 1, ReadTimeout: 20 * time.Millisecond})
	n, err := port.Read(make([]byte, 8))
	if n != 0 || err != nil {
		t.Fatalf("Read with no data = (%d, %v), want (0, nil) after the read timeout", n, err)
	}
}

func TestCloseReleasesBlockedRead(t *testing.T) {
	for _, timeout := range []time.Duration{0, time.Hour} {
		_, port := openPair(t, Mode{Baud: 9600, DataBits: 8, Parity: EvenParity, StopBits: 1, ReadTimeout: timeout})
		errc := make(chan error, 1)
		go func() {
			for {
				n, err := port.Read(make([]byte, 8))
				if err != nil || n > 0 {
					errc <- err
					return
				}
			}
		}()
		if err := port.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		select {
		case err := <-errc:
			if !errors.Is(err, ErrClosed) {
				t.Fatalf("timeout %v: Read after Close = %v, want ErrClosed", timeout, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("timeout %v: Close did not release the blocked Read", timeout)
		}
	}
}

func TestModes(t *testing.T) {
	for _, m := range []Mode{ID003, SSP, CCNET, Printer, Scanner} {
		if err := m.Validate(); err != nil {
			t.Errorf("preset %v: %v", m, err)
		}
	}
	if ID003.String() != "9600 8E1" || SSP.String() != "9600 8N2" || CCNET.String() != "9600 8N1" {
		t.Errorf("presets: %v %v %v", ID003, SSP, CCNET)
	}
	for _, m := range []Mode{{}, {Baud: 9600, DataBits: 9, StopBits: 1}, {Baud: 9600, DataBits: 8, StopBits: 3},
		{Baud: 9600, DataBits: 8, StopBits: 1, Parity: 7}, {Baud: 9600, DataBits: 8, StopBits: 1, ReadTimeout: -1}} {
		if _, err := Open("/dev/null", m); !errors.Is(err, ErrBadMode) {
			t.Errorf("Open with %+v: %v, want ErrBadMode", m, err)
		}
	}
	if _, err := Open("/nonexistent/tty", ID003); err == nil {
		t.Error("Open of a missing device succeeded")
	}
	for _, m := range []Mode{SSP, CCNET} {
		_, port := openPair(t, m)
		if err := port.ResetInputBuffer(); err != nil {
			t.Errorf("%v: ResetInputBuffer: %v", m, err)
		}
	}
}

// TestExclusive: a port in use is refused to a second opener, even to root (which the tty's
// exclusive mode alone would let in), before the opener touches its settings; once closed it
// opens again.
func TestExclusive(t *testing.T) {
	pair, port := openPair(t, ID003)
	before, err := unix.IoctlGetTermios(int(pair.Master.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(pair.Path(), ID003); !errors.Is(err, ErrBusy) {
		t.Fatalf("second Open while in use: %v, want ErrBusy", err)
	}
	// A refused opener of another mode must not have reconfigured the line.
	if _, err := Open(pair.Path(), Mode{Baud: 115200, DataBits: 7, StopBits: 2}); !errors.Is(err, ErrBusy) {
		t.Fatalf("second Open (other mode): %v, want ErrBusy", err)
	}
	if after, err := unix.IoctlGetTermios(int(pair.Master.Fd()), unix.TCGETS); err != nil || *after != *before {
		t.Fatalf("a refused opener changed the line settings: %+v → %+v (%v)", before, after, err)
	}
	fd, err := unix.Open(pair.Path(), unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
	if err == nil {
		// Root gets past TIOCEXCL; check that the flag is set on the tty.
		excl, gerr := unix.IoctlGetInt(fd, unix.TIOCGEXCL)
		unix.Close(fd)
		if gerr == nil && excl == 0 {
			t.Fatal("tty not in exclusive mode while the port is open")
		}
	} else if !errors.Is(err, unix.EBUSY) {
		t.Fatalf("plain open of a port in use: %v, want EBUSY or success as root", err)
	}
	if err := port.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := Open(pair.Path(), ID003)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	again.Close()
}
