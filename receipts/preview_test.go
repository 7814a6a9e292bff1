package receipts_test

import (
	"bytes"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kioskd/kioskd/hw-sim/escpossim"
	"github.com/kioskd/kioskd/receipts"
)

// requireServices is set in CI: a missing font or tool fails instead of skipping.
func requireServices() bool { return os.Getenv("KIOSKD_REQUIRE_SERVICES") != "" }

// cjkFont loads the default CJK font or skips (fails under KIOSKD_REQUIRE_SERVICES).
func cjkFont(t *testing.T) *receipts.Font {
	t.Helper()
	f, err := receipts.LoadFont("")
	if err != nil {
		if requireServices() {
			t.Fatalf("a CJK font is required (KIOSKD_REQUIRE_SERVICES is set): %v", err)
		}
		t.Skipf("no CJK font installed (apt-get install fonts-wqy-microhei): %v", err)
	}
	return f
}

// previewFixtures are a credited, a pending and an under-review receipt, in both languages,
// on a text printer and on a raster one.
func previewFixtures() map[string]struct {
	r receipts.Receipt
	p receipts.Profile
} {
	out := map[string]struct {
		r receipts.Receipt
		p receipts.Profile
	}{}
	for _, f := range fixtures() {
		switch f.name {
		case "en_credited", "en_pending_80mm", "interrupted_uncertain", "zh_pending", "zh_on_generic", "copy":
			out[f.name] = struct {
				r receipts.Receipt
				p receipts.Profile
			}{f.r, f.profile}
		}
	}
	zh := out["zh_pending"].r
	credited := zh
	credited.Status = receipts.StatusCredited
	out["zh_credited_raster58"] = struct {
		r receipts.Receipt
		p receipts.Profile
	}{credited, receipts.Raster58}
	review := out["interrupted_uncertain"].r
	review.Lang = receipts.LangZH
	review.Uncertain = append([]receipts.UncertainItem(nil), review.Uncertain...) // not the fixture's array
	review.Uncertain[0].Reason = "断电前已收纳，未见入账"
	out["zh_under_review_presenter"] = struct {
		r receipts.Receipt
		p receipts.Profile
	}{review, receipts.KioskPresenter80}
	return out
}

// TestPreviewPNG writes every preview as a test artifact (go test -artifacts keeps them;
// the path is logged), checks its size against the layout, and reads the QR code back with
// zbarimg where it is installed.
func TestPreviewPNG(t *testing.T) {
	font := cjkFont(t)
	dir := t.ArtifactDir()
	zbar, zerr := exec.LookPath("zbarimg")
	if zerr != nil {
		if requireServices() {
			t.Fatal("zbarimg is required (KIOSKD_REQUIRE_SERVICES is set): apt-get install zbar-tools")
		}
		t.Log("zbarimg not installed (apt-get install zbar-tools): QR codes are not decoded back")
	}
	for name, fx := range previewFixtures() {
		t.Run(name, func(t *testing.T) {
			b, err := receipts.RenderPNG(fx.r, fx.p, font)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, name+".png")
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("preview: %s", path)
			img, err := png.Decode(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			wantW := 384
			if fx.p.Columns > 32 {
				wantW = 576
			}
			if w := img.Bounds().Dx(); w != wantW {
				t.Errorf("width %d dots, want %d", w, wantW)
			}
			// Every text line of the layout is at least one 30-dot row.
			lines := bytes.Count(receipts.RenderText(fx.r, fx.p.Columns), []byte("\n"))
			if h := img.Bounds().Dy(); h < lines*30 {
				t.Errorf("height %d dots for %d lines", h, lines)
			}
			if zerr == nil {
				out, err := exec.Command(zbar, "--quiet", "--raw", "-Sdisable", "-Sqrcode.enable", path).Output()
				if err != nil {
					t.Fatalf("zbarimg found no QR code in %s: %v", path, err)
				}
				if got := strings.TrimSpace(string(out)); got != fx.r.TopupID {
					t.Errorf("QR decodes to %q, want the topup_id %q", got, fx.r.TopupID)
				}
			}
		})
	}
}

// TestPreviewDeterministic: the same receipt gives the same picture, byte for byte (no
// clock, no map order, no environment).
func TestPreviewDeterministic(t *testing.T) {
	font := cjkFont(t)
	fx := previewFixtures()["zh_pending"]
	a, err := receipts.RenderPNG(fx.r, fx.p, font)
	if err != nil {
		t.Fatal(err)
	}
	b, err := receipts.RenderPNG(fx.r, fx.p, font)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Error("two renderings differ")
	}
}

// TestRasterReceipt sends a Chinese receipt as a raster image to the emulated printer: it
// arrives as images as wide as the head, as high as the preview, then the cut.
func TestRasterReceipt(t *testing.T) {
	font := cjkFont(t)
	for name, fx := range previewFixtures() {
		if !fx.p.Raster {
			continue
		}
		t.Run(name, func(t *testing.T) {
			b, err := receipts.Render(fx.r, fx.p, font)
			if err != nil {
				t.Fatal(err)
			}
			img, err := receipts.RenderImage(fx.r, fx.p, font)
			if err != nil {
				t.Fatal(err)
			}
			docs := escpossim.Decode(b)
			if len(docs) == 0 || !docs[0].Cut {
				t.Fatalf("no cut document: %+v", docs)
			}
			d := docs[0]
			if d.Text != "" || len(d.QR) != 0 {
				t.Errorf("a raster receipt sent text %q or QR %v", d.Text, d.QR)
			}
			height := 0
			for _, im := range d.Images {
				if im.WidthDots != img.Bounds().Dx() {
					t.Errorf("image %d dots wide, want %d", im.WidthDots, img.Bounds().Dx())
				}
				height += im.HeightDots
			}
			if height != img.Bounds().Dy() {
				t.Errorf("images add up to %d dot rows, want %d", height, img.Bounds().Dy())
			}
			if fx.p.Present != nil && !d.Presented {
				t.Error("presenter profile: receipt not presented")
			}
		})
	}
	// Without a font a raster profile is an error, never a receipt with '?' for Chinese.
	if _, err := receipts.Render(previewFixtures()["zh_pending"].r, receipts.Raster58, nil); err == nil {
		t.Error("raster without a font: no error")
	}
}
