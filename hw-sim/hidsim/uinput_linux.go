//go:build linux

package hidsim

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// UinputPath is the kernel's virtual input device interface.
const UinputPath = "/dev/uinput"

// ioctl numbers of linux/uinput.h (generic encoding: dir<<30 | size<<16 | 'U'<<8 | nr).
const (
	uiSetEvBit   = 1<<30 | 4<<16 | 'U'<<8 | 100 // UI_SET_EVBIT: _IOW('U', 100, int)
	uiSetKeyBit  = 1<<30 | 4<<16 | 'U'<<8 | 101 // UI_SET_KEYBIT: _IOW('U', 101, int)
	uiDevSetup   = 1<<30 | 92<<16 | 'U'<<8 | 3  // UI_DEV_SETUP: _IOW('U', 3, struct uinput_setup)
	uiDevCreate  = 'U'<<8 | 1                   // UI_DEV_CREATE: _IO('U', 1)
	uiDevDestroy = 'U'<<8 | 2                   // UI_DEV_DESTROY: _IO('U', 2)
	evKey        = 0x01
	evSyn        = 0x00
)

// uiGetSysname is UI_GET_SYSNAME(len): _IOC(_IOC_READ, 'U', 44, len).
func uiGetSysname(n int) uint { return 2<<30 | uint(n)<<16 | 'U'<<8 | 44 }

// Available says whether a virtual keyboard can be made here, and if not, why.
func Available() error {
	f, err := os.OpenFile(UinputPath, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	return f.Close()
}

// Keyboard is a virtual USB keyboard-wedge scanner made through /dev/uinput.
type Keyboard struct {
	f    *os.File
	path string
}

// NewKeyboard creates the virtual keyboard named name and waits until its event node
// (/dev/input/eventN) exists.
func NewKeyboard(name string) (*Keyboard, error) {
	f, err := os.OpenFile(UinputPath, os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("hidsim: %w", err)
	}
	k := &Keyboard{f: f}
	if err := k.create(name); err != nil {
		f.Close()
		return nil, fmt.Errorf("hidsim: %w", err)
	}
	return k, nil
}

func (k *Keyboard) create(name string) error {
	fd := int(k.f.Fd())
	if err := unix.IoctlSetInt(fd, uiSetEvBit, evKey); err != nil {
		return fmt.Errorf("UI_SET_EVBIT: %w", err)
	}
	for _, code := range Keys() {
		if err := unix.IoctlSetInt(fd, uiSetKeyBit, int(code)); err != nil {
			return fmt.Errorf("UI_SET_KEYBIT %d: %w", code, err)
		}
	}
	// struct uinput_setup: struct input_id (bustype, vendor, product, version: u16 each),
	// char name[80], u32 ff_effects_max.
	var setup [92]byte
	ne := binary.NativeEndian
	ne.PutUint16(setup[0:], 0x03) // BUS_USB
	ne.PutUint16(setup[2:], 0x0c2e)
	ne.PutUint16(setup[4:], 0x0b61)
	ne.PutUint16(setup[6:], 1)
	copy(setup[8:87], name)
	if err := ioctlPtr(uintptr(fd), uiDevSetup, unsafe.Pointer(&setup[0])); err != nil {
		return fmt.Errorf("UI_DEV_SETUP: %w", err)
	}
	if err := ioctlPtr(uintptr(fd), uiDevCreate, nil); err != nil {
		return fmt.Errorf("UI_DEV_CREATE: %w", err)
	}
	var sys [64]byte
	if err := ioctlPtr(uintptr(fd), uiGetSysname(len(sys)), unsafe.Pointer(&sys[0])); err != nil {
		_ = ioctlPtr(uintptr(fd), uiDevDestroy, nil)
		return fmt.Errorf("UI_GET_SYSNAME: %w", err)
	}
	dir := filepath.Join("/sys/devices/virtual/input", unix.ByteSliceToString(sys[:]))
	// udev makes the node and sets its group and mode after the kernel announced it: wait,
	// bounded, until it can be opened.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if p := eventNode(dir); p != "" {
			if f, err := os.Open(p); err == nil {
				f.Close()
				k.path = p
				return nil
			}
		}
		if time.Now().After(deadline) {
			_ = ioctlPtr(uintptr(fd), uiDevDestroy, nil)
			return errors.New("the virtual keyboard's event node did not appear in /dev/input")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// eventNode finds the /dev/input/eventN of the input device whose sysfs directory is dir.
func eventNode(dir string) string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return ""
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "event") {
			return "/dev/input/" + e.Name()
		}
	}
	return ""
}

func ioctlPtr(fd uintptr, req uint, p unsafe.Pointer) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, uintptr(req), uintptr(p))
	if errno != 0 {
		return errno
	}
	return nil
}

// Path is the keyboard's event node, for the driver to open.
func (k *Keyboard) Path() string { return k.path }

// Type types code and its suffix ("enter", "tab", "none").
func (k *Keyboard) Type(code, suffix string) error {
	strokes, err := Strokes(code, suffix)
	if err != nil {
		return err
	}
	return k.Send(strokes)
}

// Send writes key events, each followed by a SYN_REPORT as a real keyboard reports them.
func (k *Keyboard) Send(strokes []Stroke) error {
	size := 2*int(unsafe.Sizeof(uintptr(0))) + 8 // struct input_event; the kernel stamps the time
	buf := make([]byte, 0, 2*size*len(strokes))
	put := func(typ, code uint16, value int32) {
		ev := make([]byte, size)
		off := size - 8
		binary.NativeEndian.PutUint16(ev[off:], typ)
		binary.NativeEndian.PutUint16(ev[off+2:], code)
		binary.NativeEndian.PutUint32(ev[off+4:], uint32(value))
		buf = append(buf, ev...)
	}
	for _, s := range strokes {
		put(evKey, s.Code, s.Value)
		put(evSyn, 0, 0)
	}
	if _, err := k.f.Write(buf); err != nil {
		return fmt.Errorf("hidsim: write: %w", err)
	}
	return nil
}

// Close destroys the virtual keyboard: to its reader, the scanner was unplugged.
func (k *Keyboard) Close() error {
	err := ioctlPtr(k.f.Fd(), uiDevDestroy, nil)
	if cerr := k.f.Close(); err == nil {
		err = cerr
	}
	return err
}
