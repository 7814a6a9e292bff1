package daemon

import (
	"fmt"
	"io/fs"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kioskd/kioskd/devices/scanner/hidscan"
	"github.com/kioskd/kioskd/hw-sim/hidsim"
	"github.com/kioskd/kioskd/kiosk/session"
)

// fakeHID is a USB HID scanner that the test plugs and unplugs: while unplugged its by-id
// path does not exist; unplugging an open device fails its read with ENODEV, as evdev does.
type fakeHID struct {
	mu      sync.Mutex
	path    string
	plugged bool
	dev     *fakeHIDDev
	opened  []string
}

func (f *fakeHID) open(path string) (HIDDevice, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.opened = append(f.opened, path)
	if path != f.path || !f.plugged {
		return nil, fmt.Errorf("hidscan: open %s: %w", path, fs.ErrNotExist)
	}
	f.dev = &fakeHIDDev{events: make(chan []hidscan.Event, 16), gone: make(chan struct{}), closed: make(chan struct{}), kick: make(chan struct{}, 1)}
	return f.dev, nil
}

func (f *fakeHID) plug() {
	f.mu.Lock()
	f.plugged = true
	f.mu.Unlock()
}

func (f *fakeHID) unplug() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.plugged = false
	if f.dev != nil {
		close(f.dev.gone)
		f.dev = nil
	}
}

func (f *fakeHID) typeCode(t *testing.T, code string) {
	t.Helper()
	strokes, err := hidsim.Strokes(code, "enter")
	if err != nil {
		t.Fatal(err)
	}
	var evs []hidscan.Event
	for _, s := range strokes {
		evs = append(evs, hidscan.Event{Type: hidscan.EvKey, Code: s.Code, Value: s.Value}, hidscan.Event{Type: hidscan.EvSyn})
	}
	f.mu.Lock()
	d := f.dev
	f.mu.Unlock()
	if d == nil {
		t.Fatal("typing on a scanner that is not open")
	}
	d.events <- evs
}

type fakeHIDDev struct {
	events    chan []hidscan.Event
	gone      chan struct{}
	closed    chan struct{}
	closeOnce sync.Once
	kick      chan struct{}
	mu        sync.Mutex
	deadline  time.Time
	pending   []hidscan.Event
}

func (d *fakeHIDDev) Name() string { return "fake scanner" }

func (d *fakeHIDDev) Close() error {
	d.closeOnce.Do(func() { close(d.closed) })
	return nil
}

func (d *fakeHIDDev) SetReadDeadline(t time.Time) error {
	d.mu.Lock()
	d.deadline = t
	d.mu.Unlock()
	select {
	case d.kick <- struct{}{}:
	default:
	}
	return nil
}

func (d *fakeHIDDev) ReadEvents(buf []hidscan.Event) (int, error) {
	for {
		d.mu.Lock()
		if len(d.pending) > 0 {
			// The kernel keeps what does not fit for the next read.
			n := copy(buf, d.pending)
			d.pending = d.pending[n:]
			d.mu.Unlock()
			return n, nil
		}
		dl := d.deadline
		d.mu.Unlock()
		var timeout <-chan time.Time
		if !dl.IsZero() {
			w := time.Until(dl)
			if w <= 0 {
				return 0, os.ErrDeadlineExceeded
			}
			tm := time.NewTimer(w)
			defer tm.Stop()
			timeout = tm.C
		}
		select {
		case evs := <-d.events:
			d.mu.Lock()
			d.pending = append(d.pending, evs...)
			d.mu.Unlock()
			continue
		case <-d.gone:
			return 0, syscall.ENODEV
		case <-d.closed:
			return 0, os.ErrClosed
		case <-timeout:
			return 0, os.ErrDeadlineExceeded
		case <-d.kick:
		}
	}
}

// TestHIDScannerLostAndBack: a HID scanner named by its by-id name is looked for until it is
// plugged, found again after an unplug, and its codes start sessions.
func TestHIDScannerLostAndBack(t *testing.T) {
	k := newKit(t)
	hid := &fakeHID{path: "/dev/input/by-id/usb-Test_Scanner-event-kbd"}
	k.cfg.Scanner.Port = ""
	k.cfg.Scanner.HID.Device = "usb-Test_Scanner-event-kbd"
	if err := k.cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	k.options.OpenHID = hid.open
	k.accDev.plug()
	k.prnDev.plug()
	r := k.start()
	r.conds.waitActive(t, condScanner) // absent at start
	hid.plug()
	r.conds.waitCleared(t, condScanner)
	hid.unplug()
	r.conds.waitActive(t, condScanner)
	hid.plug()
	r.conds.waitCleared(t, condScanner)
	e := r.s.Engine()
	waitView(t, e, "idle", func(v session.View) bool { return v.State == session.Idle.String() })
	hid.typeCode(t, k.payload("erin"))
	waitView(t, e, "accepting after a scan", func(v session.View) bool { return v.State == session.Accepting.String() })
	hid.mu.Lock()
	defer hid.mu.Unlock()
	for _, p := range hid.opened {
		if p != hid.path {
			t.Fatalf("opened %q, want the by-id path %q", p, hid.path)
		}
	}
	if len(hid.opened) < 3 {
		t.Fatalf("opened %d times, want retries", len(hid.opened))
	}
}
