package hidsim_test

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kioskd/kioskd/devices/scanner/hidscan"
	"github.com/kioskd/kioskd/hw-sim/hidsim"
)

// TestStrokes: Shift wraps exactly the shifted characters; the suffix key comes last; what a
// US keyboard cannot type is refused.
func TestStrokes(t *testing.T) {
	got, err := hidsim.Strokes("aA1!", "enter")
	if err != nil {
		t.Fatal(err)
	}
	want := []hidsim.Stroke{{30, 1}, {30, 0}, {42, 1}, {30, 1}, {30, 0}, {42, 0}, {2, 1}, {2, 0}, {42, 1}, {2, 1}, {2, 0}, {42, 0}, {28, 1}, {28, 0}}
	if len(got) != len(want) {
		t.Fatalf("strokes %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("stroke %d is %v, want %v (all %v)", i, got[i], want[i], got)
		}
	}
	if s, _ := hidsim.Strokes("x", "tab"); s[len(s)-1].Code != 15 {
		t.Errorf("tab suffix: %v", s)
	}
	if s, _ := hidsim.Strokes("x", "none"); len(s) != 2 {
		t.Errorf("no suffix: %v", s)
	}
	for _, bad := range []string{"é", "a\tb", "\r"} {
		if _, err := hidsim.Strokes(bad, "enter"); err == nil {
			t.Errorf("Strokes(%q) accepted", bad)
		}
	}
	if _, err := hidsim.Strokes("x", "Enter"); err == nil {
		t.Error("unknown suffix accepted")
	}
}

// requireUinput skips where no virtual keyboard can be made (no /dev/uinput in a container,
// or no write access to it). uinput is a kernel interface, not a service CI installs, so
// this is a skip everywhere: the driver's logic is covered without it by hidscan's tests.
func requireUinput(t *testing.T) {
	t.Helper()
	if err := hidsim.Available(); err != nil {
		t.Skipf("no virtual keyboard here (%v): needs %s writable (modprobe uinput; root or group input)", err, hidsim.UinputPath)
	}
}

// TestTypedThroughUinput: a wallet code typed on a virtual keyboard reaches the driver
// through the kernel's evdev path, the grab makes the keyboard the driver's alone, and
// destroying the keyboard ends the driver's Run like an unplug.
func TestTypedThroughUinput(t *testing.T) {
	requireUinput(t)
	kb, err := hidsim.NewKeyboard("kioskd test scanner")
	if err != nil {
		t.Fatal(err)
	}
	destroyed := false
	t.Cleanup(func() {
		if !destroyed {
			kb.Close()
		}
	})
	dev, err := hidscan.Open(kb.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	if dev.Name() != "kioskd test scanner" {
		t.Errorf("device name %q", dev.Name())
	}
	if second, err := hidscan.Open(kb.Path()); !errors.Is(err, syscall.EBUSY) {
		if second != nil {
			second.Close()
		}
		t.Fatalf("a second grab: %v, want EBUSY", err)
	}

	codes := make(chan string, 4)
	var rejected []error
	sc := hidscan.New(dev, hidscan.Config{OnError: func(err error) { rejected = append(rejected, err) }})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- sc.Run(ctx, func(c string) { codes <- c }) }()

	const wallet = "IMW1.acct-42.1767225600.Zx9_Qk-w.k1.SGVsbG8sIFdvcmxkIQ"
	all := printableASCII()
	for _, code := range []string{wallet, all} {
		if err := kb.Type(code, "enter"); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-codes:
			if got != code {
				t.Fatalf("read %q, typed %q", got, code)
			}
		case err := <-done:
			t.Fatalf("Run ended: %v", err)
		case <-ctx.Done():
			t.Fatalf("code %q not read", code)
		}
	}
	if err := kb.Close(); err != nil {
		t.Fatal(err)
	}
	destroyed = true
	select {
	case err := <-done:
		if err == nil || !errors.Is(err, syscall.ENODEV) {
			t.Fatalf("Run after unplug: %v, want ENODEV", err)
		}
	case <-ctx.Done():
		t.Fatal("Run did not end when the keyboard was destroyed")
	}
	if len(rejected) != 0 {
		t.Errorf("rejected lines: %v", rejected)
	}
}

func printableASCII() string {
	var sb strings.Builder
	for c := byte(0x20); c <= 0x7e; c++ {
		sb.WriteByte(c)
	}
	return sb.String()
}
