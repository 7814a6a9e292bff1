package receipts

import (
	"bytes"
	"errors"
	"fmt"
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
}

// Ready-made profiles for common roll printers.
var (
	Generic58 = Profile{Name: "generic-58mm", Columns: 32, QR: true, Cut: CutPartial}
	Generic80 = Profile{Name: "generic-80mm", Columns: 48, QR: true, Cut: CutPartial}
	Chinese58 = Profile{Name: "chinese-58mm", Columns: 32, Chinese: true, QR: true, Cut: CutPartial}
	Chinese80 = Profile{Name: "chinese-80mm", Columns: 48, Chinese: true, QR: true, Cut: CutPartial}
)

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
func RenderESCPOS(r Receipt, p Profile) ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	chinese := r.Lang == LangZH && p.Chinese
	lb := &labelsEN
	clean := cleanASCII
	if chinese {
		lb = &labelsZH
		clean = cleanUnicode
	} else if r.LocationLatin != "" {
		r.Location = r.LocationLatin
	} else if mostlyUnprintable(r.Location) {
		r.Location = "" // left out rather than printed as a row of '?'
	}
	lines := build(&r, p.Columns, p.Columns/2, lb, clean)

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
	switch p.Cut {
	case CutPartial:
		b.Write([]byte{gs, 'V', 66, cutFeed})
	case CutFull:
		b.Write([]byte{gs, 'V', 65, cutFeed})
	case CutNone:
		b.Write([]byte{esc, 'd', 4})
	}
	return b.Bytes(), nil
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
