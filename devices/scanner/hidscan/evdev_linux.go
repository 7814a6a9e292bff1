//go:build linux

package hidscan

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioctl numbers of the evdev interface (linux/input.h), in the generic encoding that arm,
// arm64, x86 and riscv share: dir<<30 | size<<16 | type<<8 | nr.
const (
	iocWrite = 1
	iocRead  = 2

	evioCGrab = iocWrite<<30 | 4<<16 | 'E'<<8 | 0x90 // EVIOCGRAB: _IOW('E', 0x90, int)
)

// evioCGName is EVIOCGNAME(len): _IOC(_IOC_READ, 'E', 0x06, len).
func evioCGName(n int) uint { return iocRead<<30 | uint(n)<<16 | 'E'<<8 | 0x06 }

// evioCGBit is EVIOCGBIT(ev, len): _IOC(_IOC_READ, 'E', 0x20+ev, len).
func evioCGBit(ev, n int) uint { return iocRead<<30 | uint(n)<<16 | 'E'<<8 | uint(0x20+ev) }

// wordSize is the size of the kernel's long: struct input_event starts with a struct timeval
// of two longs (8 bytes each on 64-bit kernels, 4 on 32-bit ARM), then type u16, code u16 and
// value s32.
const wordSize = int(unsafe.Sizeof(uintptr(0)))

// EventSize is the size of one struct input_event on this platform.
const EventSize = 2*wordSize + 8

// EventDevice is an evdev node opened and grabbed by Open.
type EventDevice struct {
	f    *os.File
	name string
	raw  []byte
}

// ResolvePath turns scanner.hid.device into a path: an absolute path is used as it is, a bare
// name is looked up in /dev/input/by-id (udev's stable names, such as
// "usb-Honeywell_Imaging___Mobility_1900-event-kbd").
func ResolvePath(device string) string {
	if strings.HasPrefix(device, "/") {
		return device
	}
	return "/dev/input/by-id/" + device
}

// Open opens the event device at path (see ResolvePath) read-only, checks that it reports
// keys, and grabs it exclusively: from then on its key presses reach only this process, until
// Close. It fails with an error wrapping unix.EBUSY when another process holds the grab.
func Open(path string) (*EventDevice, error) {
	// Read-only is enough to read and to grab; the unit's device policy allows no more.
	f, err := os.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("hidscan: %w", err)
	}
	d := &EventDevice{f: f, raw: make([]byte, 64*EventSize)}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("hidscan: %s: %w", path, err)
	}
	var ioErr error
	cerr := rc.Control(func(fd uintptr) {
		var bits [4]byte
		if ioErr = ioctlPtr(fd, evioCGBit(0, len(bits)), unsafe.Pointer(&bits[0])); ioErr != nil {
			ioErr = fmt.Errorf("not an input event device: %w", ioErr)
			return
		}
		if bits[0]&(1<<EvKey) == 0 {
			ioErr = errors.New("the device reports no keys: not a keyboard-wedge scanner")
			return
		}
		var name [256]byte
		if ioctlPtr(fd, evioCGName(len(name)), unsafe.Pointer(&name[0])) == nil {
			d.name = unix.ByteSliceToString(name[:])
		}
		if err := unix.IoctlSetInt(int(fd), evioCGrab, 1); err != nil {
			ioErr = fmt.Errorf("exclusive grab: %w", err)
		}
	})
	if cerr == nil {
		cerr = ioErr
	}
	if cerr != nil {
		f.Close()
		return nil, fmt.Errorf("hidscan: %s: %w", path, cerr)
	}
	return d, nil
}

func ioctlPtr(fd uintptr, req uint, p unsafe.Pointer) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, uintptr(req), uintptr(p))
	if errno != 0 {
		return errno
	}
	return nil
}

// Name is the name the device reports (EVIOCGNAME), for the log.
func (d *EventDevice) Name() string { return d.name }

// ReadEvents reads the events the kernel has, at least one (Device).
func (d *EventDevice) ReadEvents(buf []Event) (int, error) {
	want := min(len(buf), len(d.raw)/EventSize) * EventSize
	if want == 0 {
		return 0, nil
	}
	n, err := d.f.Read(d.raw[:want])
	// evdev returns whole events only.
	k := n / EventSize
	for i := range k {
		buf[i] = decodeEvent(d.raw[i*EventSize : (i+1)*EventSize])
	}
	return k, err
}

func decodeEvent(b []byte) Event {
	ne := binary.NativeEndian
	var sec, usec int64
	if wordSize == 8 {
		sec, usec = int64(ne.Uint64(b[0:])), int64(ne.Uint64(b[8:]))
	} else {
		sec, usec = int64(ne.Uint32(b[0:])), int64(ne.Uint32(b[4:]))
	}
	off := 2 * wordSize
	e := Event{Type: ne.Uint16(b[off:]), Code: ne.Uint16(b[off+2:]), Value: int32(ne.Uint32(b[off+4:]))}
	if sec != 0 || usec != 0 {
		e.Time = time.Unix(sec, usec*1000)
	}
	return e
}

// SetReadDeadline (Device): the event node is pollable, so deadlines work.
func (d *EventDevice) SetReadDeadline(t time.Time) error { return d.f.SetReadDeadline(t) }

// Close releases the grab and the device, and a read blocked on it.
func (d *EventDevice) Close() error { return d.f.Close() }
