package receipts

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"unicode/utf8"

	"golang.org/x/text/encoding/simplifiedchinese"
)

// CutMode is how a receipt leaves the printer.
type CutMode uint8

// Cut modes.
const (
	CutPartial CutMode = iota // GS V 66 n: feed to the cutter, partial cut (leaves a tab; the usual kiosk choice)
	CutFull                   // GS V 65 n: feed to the cutter, full cut
	CutNone                   // no cutter: feed past the tear bar
)

// Profile describes what a printer model can do, as far as rendering cares. The status
// dialect (presenters, ticket-taken sensors) belongs to the driver, devices/printer/escpos.
type Profile struct {
	Name    string
	Columns int     // characters per line in font A: 32 on 58 mm paper, 42 or 48 on 80 mm
	Chinese bool    // firmware has a GB18030 font and the FS & double-byte mode
	QR      bool    // firmware prints QR codes with GS ( k
	Cut     CutMode // how to finish the receipt
	// QRModule is the QR module size in dots (1..16); 0 picks one that suits the paper width.
	QRModule int
	// Dots is the print head width in dots; 0 means 384 up to 32 columns (58 mm paper at
	// 203 dpi), else 576 (80 mm). Used by the image renderers.
	Dots int
	// Raster sends the whole receipt as one bitmap (GS v 0) drawn by RenderImage: for a
	// printer without a Chinese font that must print a Chinese receipt. Render needs a Font
	// for it.
	Raster bool
	// Present is sent after the cut on a printer with a presenter: the receipt is held in the
	// mouth for the customer and pulled back in (retracted) if not taken.
	Present []byte
}

// Ready-made profiles for common roll printers.
var (
	Generic58 = Profile{Name: "generic-58mm", Columns: 32, QR: true, Cut: CutPartial}
	Generic80 = Profile{Name: "generic-80mm", Columns: 48, QR: true, Cut: CutPartial}
	Chinese58 = Profile{Name: "chinese-58mm", Columns: 32, Chinese: true, QR: true, Cut: CutPartial}
	Chinese80 = Profile{Name: "chinese-80mm", Columns: 48, Chinese: true, QR: true, Cut: CutPartial}
	// Raster58 and Raster80 are roll printers without a Chinese font: every receipt is sent
	// as an image so Chinese prints (Render with a Font).
	Raster58 = Profile{Name: "raster-58mm", Columns: 32, QR: true, Cut: CutPartial, Raster: true}
	Raster80 = Profile{Name: "raster-80mm", Columns: 48, QR: true, Cut: CutPartial, Raster: true}
	// KioskPresenter80 is a kiosk printer with a presenter (Custom VKP80 class): 80 mm, full
	// cut, then the receipt is presented in the mouth and retracted if not taken. Its
	// firmware has no Chinese font by default, so receipts go as raster images.
	KioskPresenter80 = Profile{Name: "kiosk-presenter-80mm", Columns: 48, QR: true, Cut: CutFull,
		Raster: true, Present: PresentCustom(presentSteps, true)}
)

// presentSteps is how far the presenter pushes the receipt out, in its steps (about 22 mm
// each on Custom presenters): enough for a hand to take it, not enough to fall.
const presentSteps = 3

// PresentCustom is the Custom presenter command for a ticket already cut: GS e 3 m pushes it
// out by m steps; with retract the printer is told to pull it back in (GS e 4, ticket
// catch) once it is not taken, which the firmware does after its configured timeout.
func PresentCustom(steps byte, retract bool) []byte {
	b := []byte{gs, 'e', 3, steps}
	if retract {
		b = append(b, gs, 'e', 4)
	}
	return b
}

// ErrProfile reports a profile that cannot be rendered for.
var ErrProfile = errors.New("receipts: bad printer profile")

// Validate checks the profile's numbers.
func (p Profile) Validate() error {
	if p.Columns < 24 || p.Columns > 80 {
		return fmt.Errorf("%w %q: %d columns (want 24..80)", ErrProfile, p.Name, p.Columns)
	}
	if p.QRModule < 0 || p.QRModule > 16 {
		return fmt.Errorf("%w %q: QR module %d (want 1..16, 0 = auto)", ErrProfile, p.Name, p.QRModule)
	}
	if p.Cut > CutNone {
		return fmt.Errorf("%w %q: cut mode %d", ErrProfile, p.Name, p.Cut)
	}
	if p.Dots < 0 || p.Dots > 4096 || p.Dots != 0 && p.Dots/p.Columns < 8 {
		return fmt.Errorf("%w %q: %d dots for %d columns", ErrProfile, p.Name, p.Dots, p.Columns)
	}
	if len(p.Present) > 64 {
		return fmt.Errorf("%w %q: present command of %d bytes", ErrProfile, p.Name, len(p.Present))
	}
	return nil
}

// ESC/POS bytes used here (Device facts of devices/printer/escpos).
const (
	esc = 0x1b
	gs  = 0x1d
	fs  = 0x1c
	lf  = 0x0a
)

// maxQRData is the most bytes a version 40 QR symbol holds in byte mode at level M.
const maxQRData = 2331

// cutFeed is n of GS V 65/66 n: extra feed (in vertical motion units) after the last line so
// the text clears the cutter blade.
const cutFeed = 3

// RenderESCPOS renders the receipt as the byte stream for an ESC/POS printer: ESC @, then the
// lines with alignment, emphasis and size, the total in double size, the topup_id as a QR code
// (GS ( k, model 2, level M), then feed and cut.
//
// Chinese receipts on a profile with Chinese firmware are sent in double-byte mode (FS & ...
// FS .) encoded as GB18030. On a profile without a Chinese font the labels fall back to
// English and non-ASCII free text becomes '?' (Receipt.LocationLatin replaces the location;
// a location that is mostly non-ASCII without it is left out); the
// alternative would be to rasterise the text host-side and send it with GS v 0, which needs a
// CJK bitmap font on the kiosk and is not done here.
//
// RenderESCPOS always sends text; for a Raster profile use Render, which sends the image.
func RenderESCPOS(r Receipt, p Profile) ([]byte, error) {
	lines, chinese, err := layout(&r, p)
	if err != nil {
		return nil, err
	}
	return escposLines(lines, chinese, p)
}

// escposLines sends laid-out lines as ESC/POS text (receipts and collection slips alike).
func escposLines(lines []line, chinese bool, p Profile) ([]byte, error) {
	var b bytes.Buffer
	b.Grow(64 * len(lines))
	b.Write([]byte{esc, '@'})    // initialise: clears modes left by anyone before us
	b.Write([]byte{esc, 't', 0}) // code page PC437: we only send ASCII outside Chinese mode
	if chinese {
		b.Write([]byte{fs, '&'})
	}
	st := escState{}
	enc := simplifiedchinese.GB18030.NewEncoder()
	for _, l := range lines {
		st.set(&b, l)
		if l.kind == kindQR {
			if p.QR {
				writeQR(&b, []byte(l.text), qrModule(p))
			}
			continue
		}
		text := l.text
		if l.inverse {
			text = " " + text + " "
		}
		if chinese && !isASCII(text) {
			enc.Reset()
			gb, err := enc.Bytes([]byte(text))
			if err != nil {
				return nil, fmt.Errorf("receipts: GB18030: %w", err)
			}
			b.Write(gb)
		} else {
			b.WriteString(text)
		}
		b.WriteByte(lf)
	}
	st.set(&b, line{})
	if chinese {
		b.Write([]byte{fs, '.'})
	}
	finish(&b, p)
	return b.Bytes(), nil
}

// layout validates and builds the lines a receipt prints on p: the one layout both
// renderers (ESC/POS text, image) draw. chinese says the Chinese labels are used, which is
// when the receipt is Chinese and the printer prints Chinese (its own font, or Raster).
func layout(r *Receipt, p Profile) (lines []line, chinese bool, err error) {
	if err := p.Validate(); err != nil {
		return nil, false, err
	}
	if err := r.Validate(); err != nil {
		return nil, false, err
	}
	chinese = r.Lang == LangZH && (p.Chinese || p.Raster)
	lb := &labelsEN
	clean := cleanASCII
	switch {
	case chinese:
		lb = &labelsZH
		clean = cleanUnicode
	case p.Raster:
		clean = cleanUnicode // the font draws any script, a Chinese location included
	case r.LocationLatin != "":
		r.Location = r.LocationLatin
	case mostlyUnprintable(r.Location):
		r.Location = "" // left out rather than printed as a row of '?'
	}
	return build(r, p.Columns, p.Columns/2, lb, clean), chinese, nil
}

// finish feeds and cuts, then presents the receipt on a printer with a presenter.
func finish(b *bytes.Buffer, p Profile) {
	switch p.Cut {
	case CutPartial:
		b.Write([]byte{gs, 'V', 66, cutFeed})
	case CutFull:
		b.Write([]byte{gs, 'V', 65, cutFeed})
	case CutNone:
		b.Write([]byte{esc, 'd', 4})
	}
	b.Write(p.Present)
}

// rasterBand is the most dot rows sent in one GS v 0 command: printers buffer an image
// before printing it, and small bands fit every buffer.
const rasterBand = 128

// RenderRaster renders the receipt as RenderImage draws it and sends it as raster images:
// ESC @, GS v 0 bands of at most 128 dot rows (1 bit per dot, most significant bit first,
// black = 1), then the cut and presentation of p. For printers without a Chinese font.
func RenderRaster(r Receipt, p Profile, f *Font) ([]byte, error) {
	img, err := RenderImage(r, p, f)
	if err != nil {
		return nil, err
	}
	return rasterBytes(img, p), nil
}

// rasterBytes sends a drawn image as GS v 0 bands, then cuts and presents.
func rasterBytes(img *image.Gray, p Profile) []byte {
	w, h := img.Bounds().Dx(), img.Bounds().Dy()
	xb := (w + 7) / 8
	var b bytes.Buffer
	b.Grow(16 + xb*h + 8*(h/rasterBand+1))
	b.Write([]byte{esc, '@'})
	for y0 := 0; y0 < h; y0 += rasterBand {
		rows := min(rasterBand, h-y0)
		b.Write([]byte{gs, 'v', '0', 0, byte(xb), byte(xb >> 8), byte(rows), byte(rows >> 8)})
		for y := y0; y < y0+rows; y++ {
			row := img.Pix[y*img.Stride : y*img.Stride+w]
			for x := 0; x < xb*8; x += 8 {
				var v byte
				for bit := 0; bit < 8; bit++ {
					if x+bit < w && row[x+bit] == 0 {
						v |= 0x80 >> bit
					}
				}
				b.WriteByte(v)
			}
		}
	}
	finish(&b, p)
	return b.Bytes()
}

// Render is what the kiosk sends to its printer: RenderRaster for a Raster profile (f must be
// a loaded font), else RenderESCPOS (f is not used and may be nil).
func Render(r Receipt, p Profile, f *Font) ([]byte, error) {
	if p.Raster {
		return RenderRaster(r, p, f)
	}
	return RenderESCPOS(r, p)
}

// escState remembers the printer's current modes so each is sent only when it changes.
type escState struct {
	align            align
	bold, big, inver bool
}

func (s *escState) set(b *bytes.Buffer, l line) {
	if l.align != s.align {
		b.Write([]byte{esc, 'a', byte(l.align)})
		s.align = l.align
	}
	if l.bold != s.bold {
		b.Write([]byte{esc, 'E', boolByte(l.bold)})
		s.bold = l.bold
	}
	if l.big != s.big {
		n := byte(0)
		if l.big {
			n = 0x11 // double width (bits 4-6 = 1) and double height (bits 0-2 = 1)
		}
		b.Write([]byte{gs, '!', n})
		s.big = l.big
	}
	if l.inverse != s.inver {
		b.Write([]byte{gs, 'B', boolByte(l.inverse)})
		s.inver = l.inverse
	}
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

func qrModule(p Profile) byte {
	if p.QRModule > 0 {
		return byte(p.QRModule)
	}
	if p.Columns <= 32 {
		return 5 // a ~100-character reference is a version 6-7 symbol: ~230 dots on a 384-dot head
	}
	return 6
}

// writeQR emits GS ( k for a QR symbol: select model 2 (fn 65), module size (fn 67), error
// correction level M (fn 69), store the data (fn 80), print it (fn 81). The parameter count
// pL + 256*pH covers cn, fn and the function's own bytes.
func writeQR(b *bytes.Buffer, data []byte, module byte) {
	if len(data) > maxQRData {
		data = data[:maxQRData] // unreachable for a validated topup_id; never emit a bad length
	}
	b.Write([]byte{gs, '(', 'k', 4, 0, 49, 65, 50, 0})
	b.Write([]byte{gs, '(', 'k', 3, 0, 49, 67, module})
	b.Write([]byte{gs, '(', 'k', 3, 0, 49, 69, 49})
	n := len(data) + 3
	b.Write([]byte{gs, '(', 'k', byte(n), byte(n >> 8), 49, 80, 48})
	b.Write(data)
	b.Write([]byte{gs, '(', 'k', 3, 0, 49, 81, 48})
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// Profiles are the ready-made printer profiles, for configuration by name.
var Profiles = []Profile{Generic58, Generic80, Chinese58, Chinese80, Raster58, Raster80, KioskPresenter80}

// ProfileByName returns the ready-made profile called name (Profile.Name, e.g.
// "kiosk-presenter-80mm").
func ProfileByName(name string) (Profile, bool) {
	for _, p := range Profiles {
		if p.Name == name {
			return p, true
		}
	}
	return Profile{}, false
}
