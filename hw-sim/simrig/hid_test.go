package simrig

import (
	"context"
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/kioskd/kioskd/devices/scanner/hidscan"
	"github.com/kioskd/kioskd/hw-sim/hidsim"
)

// TestHIDScannerRig: a rig with a HID scanner names its event device, and a wallet scan is
// typed there for the HID driver to read. It needs /dev/uinput, a kernel interface rather than
// a service, so it skips (saying why) wherever that is missing or not writable.
func TestHIDScannerRig(t *testing.T) {
	if err := hidsim.Available(); err != nil {
		t.Skipf("no virtual keyboard here (%v): needs %s writable (modprobe uinput; root or group input)", err, hidsim.UinputPath)
	}
	_, key, _ := ed25519.GenerateKey(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := Start(ctx, Config{HIDScanner: true, WalletKey: key, WalletKID: "w1"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	path := r.Ready().HIDScanner
	if path == "" {
		t.Fatal("Ready names no HID scanner")
	}
	dev, err := hidscan.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	codes := make(chan string, 1)
	go func() { _ = hidscan.New(dev, hidscan.Config{}).Run(ctx, func(c string) { codes <- c }) }()
	want, err := r.ScanWallet("ivy")
	if err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-codes:
		if got != want {
			t.Fatalf("read %q, scanned %q", got, want)
		}
	case <-ctx.Done():
		t.Fatal("the scan was not read from the HID scanner")
	}
}
