package escpos_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"go.bug.st/serial"

	"github.com/kioskd/kioskd/devices/printer/escpos"
	"github.com/kioskd/kioskd/hw-sim/escpossim"
	"github.com/kioskd/kioskd/hw-sim/ptypair"
	"github.com/kioskd/kioskd/receipts"
)

func sampleReceipt() receipts.Receipt {
	return receipts.Receipt{
		KioskID:   "KSK-0042",
		Location:  "上海虹桥火车站 西候车厅",
		Time:      time.Date(2025, 3, 14, 1, 26, 53, 0, time.UTC),
		TZ:        time.FixedZone("CST", 8*3600),
		Account:   "****5678",
		Currency:  "CNY",
		Notes:     []receipts.NoteLine{{ValueMinor: 10000, Count: 2}, {ValueMinor: 2000, Count: 1}},
		Total:     22000,
		TopupID:   "KSK-0042-00000000cafef00d-7",
		ReceiptNo: 42,
		Status:    receipts.StatusPending,
		Outcome:   receipts.OutcomeComplete,
		Hotline:   "400-820-8820",
		Lang:      receipts.LangZH,
	}
}

func checkReceiptDoc(t *testing.T, docs []escpossim.Document, r receipts.Receipt) {
	t.Helper()
	if len(docs) != 1 {
		t.Fatalf("%d documents, want 1", len(docs))
	}
	d := docs[0]
	if !d.Cut || d.Incomplete {
		t.Errorf("cut %v incomplete %v", d.Cut, d.Incomplete)
	}
	for _, want := range []string{"CNY 220.00", r.TopupID, fmt.Sprintf("%08d", r.ReceiptNo), "上海虹桥火车站", "处理中 PENDING"} {
		if !strings.Contains(d.Text, want) {
			t.Errorf("printed text lacks %q:\n%s", want, d.Text)
		}
	}
	if len(d.QR) != 1 || d.QR[0] != r.TopupID {
		t.Errorf("QR = %q", d.QR)
	}
}

// TestReceiptOverPipe: render, print with the driver, decode in the emulator.
func TestReceiptOverPipe(t *testing.T) {
	r := sampleReceipt()
	data, err := receipts.RenderESCPOS(r, receipts.Chinese58)
	if err != nil {
		t.Fatal(err)
	}
	rg := newRig(t, escpos.Config{})
	if err := rg.p.Print(context.Background(), data); err != nil {
		t.Fatal(err)
	}
	checkReceiptDoc(t, rg.sim.Documents(), r)
}

// ptyPrinter serves an emulated printer on a new pseudo-terminal until the test ends.
func ptyPrinter(t *testing.T, cfg escpossim.Config) (*ptypair.Pair, *escpossim.Sim) {
	t.Helper()
	pair, err := ptypair.Open()
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	sim := escpossim.New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sim.Serve(ctx, pair.Master) }()
	t.Cleanup(func() {
		// Closing the pair (its owner's job) releases Serve wherever it waits.
		cancel()
		pair.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return pair, sim
}

// TestReceiptOverPTY prints through a real pseudo-terminal opened with the serial library the
// daemon uses (9600 8N1, read timeout: reads return (0, nil) while the printer is quiet).
func TestReceiptOverPTY(t *testing.T) {
	pair, sim := ptyPrinter(t, escpossim.Config{})

	port, err := serial.Open(pair.Path(), &serial.Mode{BaudRate: 9600, DataBits: 8, Parity: serial.NoParity, StopBits: serial.OneStopBit})
	if err != nil {
		t.Skipf("serial open %s: %v", pair.Path(), err)
	}
	defer port.Close()
	if err := port.SetReadTimeout(50 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	p := escpos.New(port, escpos.Config{ReplyTimeout: 2 * time.Second})

	r := sampleReceipt()
	data, err := receipts.RenderESCPOS(r, receipts.Chinese58)
	if err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	if err := p.Print(ctx2, data); err != nil {
		t.Fatal(err)
	}
	checkReceiptDoc(t, sim.Documents(), r)

	sim.SetPaperOut(true)
	err = p.Print(ctx2, data)
	if !errors.Is(err, escpos.ErrPaperOut) {
		t.Fatalf("print on empty roll: %v", err)
	}
	if n := len(sim.Documents()); n != 1 {
		t.Errorf("%d documents after a refused print", n)
	}
}

// TestRasterReceiptNearEnd: a kiosk presenter printer without a Chinese font, its roll near
// the end, prints a Chinese receipt sent as raster images: it arrives whole (images as wide as
// the head adding up to the preview's height), cut and presented, and the status reports the
// near end without stopping.
func TestRasterReceiptNearEnd(t *testing.T) {
	font, err := receipts.LoadFont("")
	if err != nil {
		if os.Getenv("KIOSKD_REQUIRE_SERVICES") != "" {
			t.Fatalf("a CJK font is required (KIOSKD_REQUIRE_SERVICES is set): %v", err)
		}
		t.Skipf("no CJK font installed (apt-get install fonts-wqy-microhei): %v", err)
	}
	r := sampleReceipt()
	p := receipts.KioskPresenter80
	data, err := receipts.Render(r, p, font)
	if err != nil {
		t.Fatal(err)
	}
	img, err := receipts.RenderImage(r, p, font)
	if err != nil {
		t.Fatal(err)
	}
	rg := newRig(t, escpos.Config{})
	rg.sim.SetNearEnd(true)
	if err := rg.p.Print(context.Background(), data); err != nil {
		t.Fatal(err)
	}
	docs := rg.sim.Documents()
	if len(docs) != 1 || !docs[0].Cut || docs[0].Incomplete || !docs[0].Presented {
		t.Fatalf("documents: %+v", docs)
	}
	h := 0
	for _, im := range docs[0].Images {
		if im.WidthDots != img.Bounds().Dx() {
			t.Errorf("image %d dots wide, want %d", im.WidthDots, img.Bounds().Dx())
		}
		h += im.HeightDots
	}
	if h != img.Bounds().Dy() {
		t.Errorf("%d dot rows arrived, want %d", h, img.Bounds().Dy())
	}
	st, err := rg.p.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !st.Ready() || !st.NearEnd() {
		t.Errorf("status %v: want ready with paper near end", st)
	}
}
