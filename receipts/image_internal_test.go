package receipts

import (
	"crypto/sha256"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var updateLayout = flag.Bool("update-layout", false, "rewrite testdata/*.layout.golden")

// TestPlaceGolden pins what of the picture does not depend on the font: where each line of
// the layout goes (y, height in dots), its attributes and text, and the QR symbol's size. The
// glyphs themselves come from the installed font and are checked by eye and by zbarimg.
func TestPlaceGolden(t *testing.T) {
	r := Receipt{KioskID: "KSK-0042", Location: "上海虹桥火车站 西候车厅 5号门", Time: time.Date(2025, 3, 14, 1, 26, 53, 0, time.UTC),
		TZ: time.FixedZone("CST", 8*3600), Account: "****5678", Currency: "CNY",
		Notes: []NoteLine{{10000, 3}, {5000, 1}}, Total: 35000, TopupID: "KSK-0042-1f2e3d4c5b6a7988-19",
		ReceiptNo: 1236, Status: StatusPending, Outcome: OutcomeComplete, Hotline: "400-820-8820", Lang: LangZH}
	for _, p := range []Profile{Raster58, KioskPresenter80} {
		t.Run(p.Name, func(t *testing.T) {
			lines, chinese, err := layout(&r, p)
			if err != nil {
				t.Fatal(err)
			}
			if !chinese {
				t.Fatal("a raster profile prints Chinese")
			}
			g, err := place(lines, p)
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			fmt.Fprintf(&b, "width %d height %d cell %d margin %d\n", g.width, g.height, g.cell, g.margin)
			for _, row := range g.rows {
				attrs := ""
				for _, a := range []struct {
					on   bool
					name string
				}{{row.bold, "bold"}, {row.big, "big"}, {row.inverse, "inverse"}, {row.align == alignCenter, "center"}} {
					if a.on {
						attrs += " " + a.name
					}
				}
				if row.kind == kindQR {
					h := sha256.New()
					for _, r := range row.qr {
						for _, on := range r {
							h.Write([]byte{byte(boolInt(on))})
						}
					}
					fmt.Fprintf(&b, "y %4d h %3d QR %dx%d modules of %d dots%s: %s\n  modules sha256 %x\n", row.y, row.h, len(row.qr), len(row.qr), row.mod, attrs, row.text, h.Sum(nil))
					continue
				}
				fmt.Fprintf(&b, "y %4d h %3d%s |%s|\n", row.y, row.h, attrs, row.text)
			}
			path := filepath.Join("testdata", p.Name+".layout.golden")
			if *updateLayout {
				if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update-layout to create it)", err)
			}
			if b.String() != string(want) {
				t.Errorf("%s differs (go test -update-layout rewrites it)\n--- got ---\n%s--- want ---\n%s", path, b.String(), want)
			}
		})
	}
}

// TestRealign: a font whose tables are not on four-byte boundaries is rebuilt with aligned
// tables and the same contents; garbage is an error, not a panic.
func TestRealign(t *testing.T) {
	// A directory of two tables, the first 3 bytes long so the second starts unaligned.
	data := []byte{0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0}
	rec := func(tag string, off, n uint32) []byte {
		return append([]byte(tag), 0, 0, 0, 0, byte(off>>24), byte(off>>16), byte(off>>8), byte(off), byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	data = append(data, rec("aaaa", 44, 3)...)
	data = append(data, rec("bbbb", 47, 2)...)
	data = append(data, 'x', 'y', 'z', 'u', 'v')
	out, err := realign(data)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(out[44:47]); got != "xyz" {
		t.Errorf("first table %q", got)
	}
	off := int(out[12+16+8])<<24 | int(out[12+16+9])<<16 | int(out[12+16+10])<<8 | int(out[12+16+11])
	if off%4 != 0 || string(out[off:off+2]) != "uv" {
		t.Errorf("second table at %d: %q", off, out[off:min(off+2, len(out))])
	}
	for _, bad := range [][]byte{nil, []byte("ttcf"), data[:20], append(append([]byte{}, data[:28]...), rec("cccc", 1<<30, 4)...)} {
		if _, err := realign(bad); err == nil {
			t.Errorf("realign(%x) gave no error", bad)
		}
	}
}

// TestImageDrawsLayoutQR: in the picture, the QR symbol's dots are exactly the encoder's
// modules at the place the layout gave them (this part of the picture needs no font).
func TestImageDrawsLayoutQR(t *testing.T) {
	f, err := LoadFont("")
	if err != nil {
		if os.Getenv("KIOSKD_REQUIRE_SERVICES") != "" {
			t.Fatalf("a CJK font is required (KIOSKD_REQUIRE_SERVICES is set): %v", err)
		}
		t.Skipf("no CJK font installed (apt-get install fonts-wqy-microhei): %v", err)
	}
	r := Receipt{KioskID: "K1", Time: time.Unix(0, 0), Currency: "CNY", TopupID: "K1-abc-1",
		ReceiptNo: 1, Status: StatusCredited, Outcome: OutcomeComplete, Lang: LangZH}
	p := Raster58
	img, err := RenderImage(r, p, f)
	if err != nil {
		t.Fatal(err)
	}
	lines, _, _ := layout(&r, p)
	g, _ := place(lines, p)
	if img.Bounds().Dx() != g.width || img.Bounds().Dy() != g.height {
		t.Fatalf("image %v, layout %dx%d", img.Bounds(), g.width, g.height)
	}
	found := false
	for _, row := range g.rows {
		if row.kind != kindQR {
			continue
		}
		found = true
		x0 := (g.width - len(row.qr)*row.mod) / 2
		for y, mr := range row.qr {
			for x, on := range mr {
				px := img.GrayAt(x0+x*row.mod+row.mod/2, row.y+y*row.mod+row.mod/2).Y
				if on != (px == 0) {
					t.Fatalf("module %d,%d: on %v, pixel %d", x, y, on, px)
				}
			}
		}
	}
	if !found {
		t.Fatal("no QR row")
	}
}
