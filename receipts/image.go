package receipts

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"os"
	"sync"

	qrcode "github.com/skip2/go-qrcode"
	"golang.org/x/image/font"
	"golang.org/x/image/font/opentype"
	"golang.org/x/image/math/fixed"
)

// The image renderer draws the same lines as RenderESCPOS (build) on a bitmap as wide as the
// print head, one character cell per column, the way the printer's own font A does: a Latin
// character is one cell (12 dots on a 58 or 80 mm head), a Chinese one two cells, a double
// size line twice as wide and high. What it draws is pure black and white, which is what a
// thermal head prints, so the PNG preview and the raster receipt (RenderRaster) are the same
// picture.

// Head widths in dots at 203 dpi.
const (
	dots58 = 384
	dots80 = 576
)

// Vertical metrics in dots: the font A cell is 24 dots high and the default line spacing
// (ESC 2) is 30 dots.
const (
	cellHeight  = 24
	lineSpacing = 30
	topMargin   = 12
	feedMargin  = 48 // blank paper after the last line, before the cut
)

// FontPaths are where LoadFont("") looks for a font with Chinese characters, in order: the
// Debian packages fonts-wqy-microhei, fonts-noto-cjk and fonts-wqy-zenhei.
var FontPaths = []string{
	"/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
	"/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
	"/usr/share/fonts/opentype/noto/NotoSansCJKsc-Regular.otf",
	"/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
}

// ErrNoFont is returned when no font is configured and none of FontPaths exists.
var ErrNoFont = errors.New("receipts: no CJK font found (install fonts-wqy-microhei or fonts-noto-cjk)")

// FindFont returns the first of FontPaths that exists.
func FindFont() (string, error) {
	for _, p := range FontPaths {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", ErrNoFont
}

// Font is a parsed TrueType or OpenType font (or the first font of a collection) used to draw
// receipts. It is safe for concurrent use: each rendering makes its own face.
type Font struct {
	path string
	f    *opentype.Font
}

// Path is the file the font was loaded from.
func (f *Font) Path() string { return f.path }

var (
	fontMu    sync.Mutex
	fontCache = map[string]*Font{}
)

// LoadFont loads the font at path; an empty path searches FontPaths. Fonts are parsed once
// per path and kept: a CJK font file is 5-20 MB.
func LoadFont(path string) (*Font, error) {
	if path == "" {
		p, err := FindFont()
		if err != nil {
			return nil, err
		}
		path = p
	}
	fontMu.Lock()
	defer fontMu.Unlock()
	if f, ok := fontCache[path]; ok {
		return f, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("receipts: font: %w", err)
	}
	of, err := parseFont(data)
	if err != nil {
		// Some fonts (wqy-microhei.ttc among them) have tables that do not start on a
		// four-byte boundary, which the parser refuses: copy the first font's tables into an
		// aligned single font and parse that.
		if fixed, ferr := realign(data); ferr == nil {
			of, err = parseFont(fixed)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("receipts: font %s: %w", path, err)
	}
	f := &Font{path: path, f: of}
	fontCache[path] = f
	return f, nil
}

func parseFont(data []byte) (*opentype.Font, error) {
	if !bytes.HasPrefix(data, []byte("ttcf")) {
		return opentype.Parse(data)
	}
	c, err := opentype.ParseCollection(data)
	if err != nil {
		return nil, err
	}
	return c.Font(0)
}

var errFontFile = errors.New("not a TrueType/OpenType file")

// realign rebuilds the first font of a font file (or collection) as a single font whose
// tables start on four-byte boundaries, as the OpenType specification asks.
func realign(data []byte) ([]byte, error) {
	u32 := func(o int) (uint32, bool) {
		if o < 0 || o+4 > len(data) {
			return 0, false
		}
		return uint32(data[o])<<24 | uint32(data[o+1])<<16 | uint32(data[o+2])<<8 | uint32(data[o+3]), true
	}
	base := 0
	if bytes.HasPrefix(data, []byte("ttcf")) {
		o, ok := u32(12) // offset of the first font's table directory
		if !ok {
			return nil, errFontFile
		}
		base = int(o)
	}
	if base < 0 || base+12 > len(data) {
		return nil, errFontFile
	}
	n := int(data[base+4])<<8 | int(data[base+5])
	if n == 0 || n > 256 || base+12+16*n > len(data) {
		return nil, errFontFile
	}
	head := 12 + 16*n
	out := make([]byte, head, len(data))
	copy(out, data[base:base+head])
	for i := 0; i < n; i++ {
		rec := base + 12 + 16*i
		off, _ := u32(rec + 8)
		length, _ := u32(rec + 12)
		if uint64(off)+uint64(length) > uint64(len(data)) {
			return nil, errFontFile
		}
		for len(out)%4 != 0 {
			out = append(out, 0)
		}
		newOff := uint32(len(out))
		out = append(out, data[off:off+length]...)
		r := 12 + 16*i
		out[r+8], out[r+9], out[r+10], out[r+11] = byte(newOff>>24), byte(newOff>>16), byte(newOff>>8), byte(newOff)
	}
	return out, nil
}

// Dots is the print head width in dots: Profile.Dots, else 384 for 58 mm paper (up to 32
// columns) and 576 for 80 mm.
func (p Profile) dots() int {
	if p.Dots > 0 {
		return p.Dots
	}
	if p.Columns <= 32 {
		return dots58
	}
	return dots80
}

// placed is a line with its position on the bitmap.
type placed struct {
	line
	y, h int
	qr   [][]bool // kindQR: the module matrix, without quiet zone
	mod  int      // kindQR: module size in dots
}

// geometry is where things go on the bitmap.
type geometry struct {
	width, cell, margin int
	rows                []placed
	height              int
}

// place lays the lines out vertically. It needs no font, so it is tested on its own.
func place(lines []line, p Profile) (geometry, error) {
	g := geometry{width: p.dots()}
	g.cell = g.width / p.Columns
	if g.cell < 8 {
		return g, fmt.Errorf("%w %q: %d dots are too few for %d columns", ErrProfile, p.Name, g.width, p.Columns)
	}
	g.margin = (g.width - g.cell*p.Columns) / 2
	y := topMargin
	for _, l := range lines {
		pl := placed{line: l, y: y, h: lineSpacing}
		if l.big {
			pl.h = 2 * lineSpacing
		}
		if l.kind == kindQR {
			if !p.QR && !p.Raster {
				continue // the text renderer prints no QR on such a printer, nor do we
			}
			q, err := qrcode.New(l.text, qrcode.Medium)
			if err != nil {
				return g, fmt.Errorf("receipts: QR: %w", err)
			}
			q.DisableBorder = true // the blank lines and margins around it are the quiet zone
			pl.qr = q.Bitmap()
			pl.mod = int(qrModule(p))
			for pl.mod > 1 && len(pl.qr)*pl.mod > g.width-8*pl.mod {
				pl.mod--
			}
			pl.h = len(pl.qr) * pl.mod
		}
		g.rows = append(g.rows, pl)
		y += pl.h
	}
	g.height = y + feedMargin
	return g, nil
}

// RenderImage draws the receipt as the printer prints it: a black and white bitmap as wide
// as the head (Profile.Dots). Chinese text is drawn with f when the receipt is Chinese and
// the profile prints Chinese (its own font, or Raster); otherwise the picture shows the
// English fallback RenderESCPOS sends.
func RenderImage(r Receipt, p Profile, f *Font) (*image.Gray, error) {
	if f == nil {
		return nil, ErrNoFont
	}
	lines, _, err := layout(&r, p)
	if err != nil {
		return nil, err
	}
	return drawLines(lines, p, f)
}

// drawLines draws laid-out lines (receipts and collection slips alike).
func drawLines(lines []line, p Profile, f *Font) (*image.Gray, error) {
	g, err := place(lines, p)
	if err != nil {
		return nil, err
	}
	face, err := opentype.NewFace(f.f, &opentype.FaceOptions{Size: 22, DPI: 72, Hinting: font.HintingFull})
	if err != nil {
		return nil, fmt.Errorf("receipts: font face: %w", err)
	}
	defer face.Close()

	img := image.NewGray(image.Rect(0, 0, g.width, g.height))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	for _, row := range g.rows {
		if row.kind == kindQR {
			drawQR(img, row, g.width)
			continue
		}
		drawText(img, face, g, row)
	}
	threshold(img)
	return img, nil
}

// drawText draws a text line: on a strip of one line at normal size, then copied (doubled in
// both directions for a big line, the way the printer scales font A).
func drawText(img *image.Gray, face font.Face, g geometry, row placed) {
	text := row.text
	if row.inverse {
		text = " " + text + " "
	}
	cols := textWidth(text)
	strip := image.NewGray(image.Rect(0, 0, max(cols, 1)*g.cell, lineSpacing))
	bg, fg := image.White, image.Black
	if row.inverse {
		bg, fg = image.Black, image.White
	}
	draw.Draw(strip, strip.Bounds(), bg, image.Point{}, draw.Src)
	m := face.Metrics()
	// Center the font's ascent+descent in the 24-dot cell, then leave the line gap below.
	baseline := (cellHeight-(m.Ascent+m.Descent).Ceil())/2 + m.Ascent.Ceil()
	d := &font.Drawer{Dst: strip, Src: fg, Face: face}
	x := 0
	for _, r := range text {
		w := runeWidth(r) * g.cell
		if r != ' ' {
			adv, ok := face.GlyphAdvance(r)
			if !ok {
				r = '?'
				adv, _ = face.GlyphAdvance(r)
			}
			bold := boolInt(row.bold)
			if adv.Ceil()+bold <= w {
				gx := fixed.I(x) + (fixed.I(w)-adv)/2
				for dx := 0; dx <= bold; dx++ {
					d.Dot = fixed.Point26_6{X: gx + fixed.I(dx), Y: fixed.I(baseline)}
					d.DrawString(string(r))
				}
			} else {
				squeeze(strip, face, r, adv, x, w, baseline, bold, fg, bg)
			}
		}
		x += w
	}
	scale := 1
	if row.big {
		scale = 2
	}
	width := strip.Bounds().Dx() * scale
	x0 := g.margin
	switch row.align {
	case alignCenter:
		x0 = (g.width - width) / 2
	case alignRight:
		x0 = g.width - g.margin - width
	}
	for sy := 0; sy < lineSpacing*scale; sy++ {
		for sx := 0; sx < width; sx++ {
			X, Y := x0+sx, row.y+sy
			if X < 0 || X >= g.width {
				continue
			}
			img.SetGray(X, Y, strip.GrayAt(sx/scale, sy/scale))
		}
	}
}

// squeeze draws a glyph wider than its cell (a proportional font's W or M in a one-column
// cell) narrowed to the cell, the way a printer's own fixed-pitch font A is: drawn on its own,
// then each dot column of the cell takes the darkest of the source columns it covers, so no
// stroke is lost.
func squeeze(dst *image.Gray, face font.Face, r rune, adv fixed.Int26_6, x, w, baseline, bold int, fg, bg image.Image) {
	sw := adv.Ceil() + bold + 1
	tmp := image.NewGray(image.Rect(0, 0, sw, dst.Bounds().Dy()))
	draw.Draw(tmp, tmp.Bounds(), bg, image.Point{}, draw.Src)
	d := &font.Drawer{Dst: tmp, Src: fg, Face: face}
	for dx := 0; dx <= bold; dx++ {
		d.Dot = fixed.Point26_6{X: fixed.I(dx), Y: fixed.I(baseline)}
		d.DrawString(string(r))
	}
	// Ink is dark on a normal line and light on an inverse one.
	inverse := bg == image.Black
	for y := 0; y < tmp.Bounds().Dy(); y++ {
		for cx := 0; cx < w; cx++ {
			from, to := cx*sw/w, max((cx+1)*sw/w, cx*sw/w+1)
			v := tmp.GrayAt(from, y).Y
			for sx := from + 1; sx < to; sx++ {
				c := tmp.GrayAt(sx, y).Y
				if inverse && c > v || !inverse && c < v {
					v = c
				}
			}
			dst.SetGray(x+cx, y, color.Gray{Y: v})
		}
	}
}

func drawQR(img *image.Gray, row placed, width int) {
	size := len(row.qr) * row.mod
	x0 := (width - size) / 2
	for y, r := range row.qr {
		for x, on := range r {
			if !on {
				continue
			}
			rect := image.Rect(x0+x*row.mod, row.y+y*row.mod, x0+(x+1)*row.mod, row.y+(y+1)*row.mod)
			draw.Draw(img, rect, image.Black, image.Point{}, draw.Src)
		}
	}
}

// threshold makes the picture what a thermal head prints: each dot black or white.
func threshold(img *image.Gray) {
	for i, v := range img.Pix {
		if v < 128 {
			img.Pix[i] = 0
		} else {
			img.Pix[i] = 255
		}
	}
}

func boolInt(v bool) int {
	if v {
		return 1
	}
	return 0
}

// RenderPNG is RenderImage encoded as a PNG (1 bit per dot): the preview of a receipt that a
// person can check, drawn from the same layout as the printed one.
func RenderPNG(r Receipt, p Profile, f *Font) ([]byte, error) {
	img, err := RenderImage(r, p, f)
	if err != nil {
		return nil, err
	}
	pal := image.NewPaletted(img.Bounds(), color.Palette{color.Black, color.White})
	for i, v := range img.Pix {
		if v != 0 {
			pal.Pix[i] = 1
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, pal); err != nil {
		return nil, fmt.Errorf("receipts: PNG: %w", err)
	}
	return b.Bytes(), nil
}
