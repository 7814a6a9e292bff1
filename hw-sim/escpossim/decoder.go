package escpossim

import (
	"strings"
	"time"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/simplifiedchinese"
)

// Align is a line's justification (ESC a).
type Align string

// Alignments.
const (
	AlignLeft   Align = "left"
	AlignCenter Align = "center"
	AlignRight  Align = "right"
)

// Line is one printed line. Attributes are noted loosely: Bold if any character was bold, the
// largest character size used, the alignment in force when the line began.
type Line struct {
	Text    string `json:"text"`
	Align   Align  `json:"align"`
	Bold    bool   `json:"bold,omitempty"`
	Inverse bool   `json:"inverse,omitempty"` // GS B: white on black
	Width   int    `json:"width"`             // character width multiplier, 1..8
	Height  int    `json:"height"`            // character height multiplier, 1..8
}

// Image is a raster image (GS v 0, ESC *, GS *), recorded by size only.
type Image struct {
	WidthDots  int `json:"width_dots"`
	HeightDots int `json:"height_dots"`
}

// Document is what came out between two cuts.
type Document struct {
	Lines  []Line   `json:"lines"`
	Text   string   `json:"text"` // the lines' text joined by "\n", trailing blank lines dropped
	QR     []string `json:"qr"`   // payloads of the QR codes printed, in order
	Images []Image  `json:"images,omitempty"`
	// Cut is true when the document ended with a cut; the last document may still be open.
	Cut bool `json:"cut"`
	// Presented is true when a presenter was told to push the receipt out after its cut
	// (Custom GS e 3 m), Retract when it was told to pull it back if not taken (GS e 4).
	Presented bool `json:"presented,omitempty"`
	Retract   bool `json:"retract,omitempty"`
	// Incomplete is true when output for this document was discarded because the printer was
	// stopped (paper out, cover open, cutter error) or a limit was reached.
	Incomplete bool      `json:"incomplete,omitempty"`
	Started    time.Time `json:"started"`
	Ended      time.Time `json:"ended,omitzero"`
}

// Bounds that keep a long-running emulator (and the fuzzer) in fixed memory.
const (
	maxLineBytes  = 4096
	maxDocLines   = 4096
	maxDocQR      = 64
	maxDocImages  = 64
	maxSymbolData = 8192 // a QR symbol holds at most 7089 characters
	maxUntil      = 1024
	decodeMaxDocs = 1024
)

type parseMode uint8

const (
	modeText   parseMode = iota
	modeArgs             // collecting a command's fixed parameters
	modeSkip             // skipping a data block by its declared length
	modeGather           // collecting a data block we need (GS ( k), up to a cap
	modeUntil            // skipping up to and including a terminator byte
)

// decoder is a push parser: bytes go in one at a time (or a skipped block at once), so it
// works the same on a whole buffer and on a serial stream cut anywhere.
type decoder struct {
	now      func() time.Time
	printing func() bool    // false while the printer is stopped: output is discarded
	status   func(n byte)   // DLE EOT n was received
	counter  func(n uint16) // GS g 2 for maintenance counter n was received
	cuts     uint64         // autocutter operations (the printer's own maintenance counter)
	maxDocs  int

	// parser
	mode       parseMode
	need       int
	args       []byte
	argBuf     [16]byte
	then       func(a []byte)
	skip       uint64
	afterSkip  func()
	gather     []byte
	gatherLeft int
	gatherOver bool
	gatherThen func(data []byte, truncated bool)
	untilTerm  byte
	untilLeft  int

	// print modes
	align    Align
	bold     bool
	wmul     int
	hmul     int
	inverse  bool
	chinese  bool
	codePage byte

	// current line
	raw        []byte // undecoded bytes of the current segment
	rawChinese bool   // the mode raw was received in
	lineText   strings.Builder
	line       Line
	lineOpen   bool

	// documents
	doc    *Document
	docs   []Document
	symbol []byte // QR symbol storage (GS ( k fn 80)
}

func newDecoder() *decoder {
	d := &decoder{
		now:      func() time.Time { return time.Time{} },
		printing: func() bool { return true },
		status:   func(byte) {},
		maxDocs:  decodeMaxDocs,
	}
	d.reset()
	return d
}

// reset puts the print modes back to power-on defaults (ESC @ and power cycle).
func (d *decoder) reset() {
	d.align, d.bold, d.wmul, d.hmul, d.inverse, d.chinese, d.codePage = AlignLeft, false, 1, 1, false, false, 0
	d.raw = d.raw[:0]
	d.lineText.Reset()
	d.lineOpen = false
}

// Decode decodes a whole ESC/POS byte stream into documents, as a printer with paper would
// print it. The last document has Cut false if the stream did not end with a cut. It never
// fails: unknown commands are skipped, truncated input ends the last document.
func Decode(b []byte) []Document {
	d := newDecoder()
	d.write(b)
	d.flushLine(false)
	if d.doc != nil {
		d.closeDoc(false)
	}
	return d.snapshot(false)
}

// write feeds bytes to the parser.
func (d *decoder) write(p []byte) {
	for len(p) > 0 {
		if d.mode == modeSkip {
			n := uint64(len(p))
			if n > d.skip {
				n = d.skip
			}
			d.skip -= n
			p = p[n:]
			if d.skip == 0 {
				d.mode = modeText
				if f := d.afterSkip; f != nil {
					d.afterSkip = nil
					f()
				}
			}
			continue
		}
		d.feed(p[0])
		p = p[1:]
	}
}

func (d *decoder) feed(b byte) {
	switch d.mode {
	case modeText:
		d.text(b)
	case modeArgs:
		d.args = append(d.args, b)
		if len(d.args) == d.need {
			d.mode = modeText
			f := d.then
			d.then = nil
			f(d.args)
		}
	case modeGather:
		if len(d.gather) < maxSymbolData {
			d.gather = append(d.gather, b)
		} else {
			d.gatherOver = true
		}
		d.gatherLeft--
		if d.gatherLeft == 0 {
			d.mode = modeText
			f := d.gatherThen
			d.gatherThen = nil
			f(d.gather, d.gatherOver)
		}
	case modeUntil:
		d.untilLeft--
		if b == d.untilTerm || d.untilLeft <= 0 {
			d.mode = modeText
		}
	case modeSkip: // write handles skips in bulk; kept so that feed alone is complete
		d.write([]byte{b})
	}
}

// want collects n parameter bytes, then calls f with them. f must read what it needs before
// it calls want again (the buffer is reused).
func (d *decoder) want(n int, f func(a []byte)) {
	d.mode, d.need, d.args, d.then = modeArgs, n, d.argBuf[:0], f
}

// skipN skips a data block of n bytes, then calls after (may be nil).
func (d *decoder) skipN(n uint64, after func()) {
	if n == 0 {
		d.mode = modeText
		if after != nil {
			after()
		}
		return
	}
	d.mode, d.skip, d.afterSkip = modeSkip, n, after
}

func (d *decoder) gatherN(n int, f func(data []byte, truncated bool)) {
	if n == 0 {
		f(nil, false)
		return
	}
	d.mode, d.gather, d.gatherLeft, d.gatherOver, d.gatherThen = modeGather, d.gather[:0], n, false, f
}

func (d *decoder) until(term byte, max int) {
	d.mode, d.untilTerm, d.untilLeft = modeUntil, term, max
}

func nop([]byte) {}

func le16(lo, hi byte) int { return int(lo) | int(hi)<<8 }

// text handles a byte outside any command.
func (d *decoder) text(b byte) {
	switch b {
	case 0x0a: // LF: print the line and feed
		d.flushLine(true)
	case 0x0d: // CR: ignored with auto line feed off, the default
	case 0x09: // HT: tab stops are not modelled; a space keeps words apart
		d.putText(' ')
	case 0x0c: // FF: in standard mode, prints what is pending
		d.flushLine(false)
	case 0x10:
		d.want(1, d.dle)
	case 0x1b:
		d.want(1, d.esc)
	case 0x1c:
		d.want(1, d.fs)
	case 0x1d:
		d.want(1, d.gs)
	default:
		if b < 0x20 || b == 0x7f {
			return // other control codes (CAN, BEL, ...) are ignored
		}
		d.putText(b)
	}
}

// unknown handles the byte after a prefix that names no command we know: a control byte is
// taken as the start of something new (so a stray ESC does not swallow the next command),
// anything else as the command's own byte.
func (d *decoder) unknown(x byte) {
	if x < 0x20 {
		d.text(x)
	}
}

func (d *decoder) dle(a []byte) {
	switch a[0] {
	case 0x04: // DLE EOT n: real-time status
		d.want(1, func(a []byte) {
			n := a[0]
			if n == 7 || n == 8 { // ink / consumables variants carry one more byte
				d.want(1, nop)
				return
			}
			d.status(n)
		})
	case 0x05: // DLE ENQ n
		d.want(1, nop)
	case 0x14: // DLE DC4 fn ...
		d.want(1, func(a []byte) {
			switch a[0] {
			case 1, 2:
				d.want(2, nop)
			case 7:
				d.want(1, nop)
			case 8:
				d.want(7, nop)
			}
		})
	default:
		d.unknown(a[0])
	}
}

func (d *decoder) esc(a []byte) {
	switch x := a[0]; x {
	case '@':
		d.flushSegment()
		d.reset() // the print buffer is cleared, not printed
	case 'a':
		d.want(1, func(a []byte) {
			switch a[0] {
			case 0, '0':
				d.align = AlignLeft
			case 1, '1':
				d.align = AlignCenter
			case 2, '2':
				d.align = AlignRight
			}
		})
	case 'E':
		d.want(1, func(a []byte) { d.bold = a[0]&1 == 1 })
	case '!': // print mode: bit 3 emphasised, bit 4 double height, bit 5 double width
		d.want(1, func(a []byte) {
			d.bold = a[0]&0x08 != 0
			d.hmul, d.wmul = 1, 1
			if a[0]&0x10 != 0 {
				d.hmul = 2
			}
			if a[0]&0x20 != 0 {
				d.wmul = 2
			}
		})
	case 't':
		d.want(1, func(a []byte) {
			d.flushSegment()
			d.codePage = a[0]
		})
	case 'd': // print and feed n lines
		d.want(1, func(a []byte) {
			n := int(a[0])
			if n == 0 {
				d.flushLine(false)
				return
			}
			d.flushLine(true)
			for i := 1; i < n; i++ {
				d.flushLine(true)
			}
		})
	case 'J': // print and feed n dots
		d.want(1, func([]byte) { d.flushLine(false) })
	case 'i', 'm': // legacy full / partial cut
		d.cut()
	case '*': // bit image: m nL nH, then nL+256nH columns of 1 or 3 bytes
		d.want(3, func(a []byte) {
			cols := le16(a[1], a[2])
			per := 1
			if a[0] == 32 || a[0] == 33 {
				per = 3
			}
			d.image(cols, per*8)
			d.skipN(uint64(cols*per), nil)
		})
	case '&': // user-defined characters: y c1 c2, then per character x and y*x bytes
		d.want(3, func(a []byte) {
			y, c1, c2 := int(a[0]), int(a[1]), int(a[2])
			d.userChars(y, c2-c1+1)
		})
	case 'D': // tab positions, NUL-terminated
		d.until(0, 33)
	case '(': // ESC ( fn pL pH data
		d.want(3, func(a []byte) { d.skipN(uint64(le16(a[1], a[2])), nil) })
	case '$', '\\':
		d.want(2, nop)
	case 'c':
		d.want(2, nop)
	case 'p':
		d.want(3, nop)
	case 'W':
		d.want(8, nop)
	case ' ', '%', '-', '3', '=', '?', 'G', 'M', 'R', 'T', 'U', 'V', 'e', 'r', 'u', '{', 'K':
		d.want(1, nop)
	case '2', '<', 'L', 'S', 'v', 0x0c:
		// no parameters
	default:
		d.unknown(x)
	}
}

// userChars skips ESC & definitions: count characters, each x (one byte) then y*x bytes.
func (d *decoder) userChars(y, count int) {
	if count <= 0 {
		return
	}
	d.want(1, func(a []byte) {
		x := int(a[0])
		d.skipN(uint64(y*x), func() { d.userChars(y, count-1) })
	})
}

func (d *decoder) fs(a []byte) {
	switch x := a[0]; x {
	case '&': // enter Chinese (double-byte) mode
		d.flushSegment()
		d.chinese = true
	case '.': // leave Chinese mode
		d.flushSegment()
		d.chinese = false
	case '!', '-', 'C', 'W':
		d.want(1, nop)
	case 'S', 'p':
		d.want(2, nop)
	case '2': // define a user double-byte character: c1 c2 and 72 bytes
		d.want(2, func([]byte) { d.skipN(72, nil) })
	case 'q': // define NV bit images: n, then per image xL xH yL yH and x*y*8 bytes
		d.want(1, func(a []byte) { d.nvImages(int(a[0])) })
	case '(':
		d.want(3, func(a []byte) { d.skipN(uint64(le16(a[1], a[2])), nil) })
	default:
		d.unknown(x)
	}
}

func (d *decoder) nvImages(n int) {
	if n <= 0 {
		return
	}
	d.want(4, func(a []byte) {
		x, y := le16(a[0], a[1]), le16(a[2], a[3])
		d.skipN(uint64(x)*uint64(y)*8, func() { d.nvImages(n - 1) })
	})
}

func (d *decoder) gs(a []byte) {
	switch x := a[0]; x {
	case '!': // character size: bits 4-6 width-1, bits 0-2 height-1
		d.want(1, func(a []byte) {
			d.wmul = int(a[0]>>4&7) + 1
			d.hmul = int(a[0]&7) + 1
		})
	case 'B':
		d.want(1, func(a []byte) { d.inverse = a[0]&1 == 1 })
	case 'V': // cut: m, and n for the feed-and-cut forms
		d.want(1, func(a []byte) {
			switch a[0] {
			case 65, 66, 97, 98, 103, 104:
				d.want(1, func([]byte) { d.cut() })
			default:
				d.cut()
			}
		})
	case 'e': // Custom presenter (ejector) commands: GS e n, and m steps for n = 3
		d.want(1, func(a []byte) {
			switch a[0] {
			case 3:
				d.want(1, func([]byte) { d.presenter(func(doc *Document) { doc.Presented = true }) })
			case 4:
				d.presenter(func(doc *Document) { doc.Retract = true })
			}
		})
	case '(': // GS ( fn pL pH data
		d.want(3, func(a []byte) {
			fn, n := a[0], le16(a[1], a[2])
			if fn == 'k' {
				d.gatherN(n, d.symbolCmd)
				return
			}
			d.skipN(uint64(n), nil)
		})
	case '8': // GS 8 fn p1 p2 p3 p4 data: the 32-bit-length form of GS ( L / GS ( k
		d.want(5, func(a []byte) {
			n := uint64(a[1]) | uint64(a[2])<<8 | uint64(a[3])<<16 | uint64(a[4])<<24
			d.skipN(n, nil)
		})
	case 'v': // GS v 0 m xL xH yL yH data: raster image, x bytes wide, y dots high
		d.want(1, func(a []byte) {
			if a[0] != '0' {
				d.unknown(a[0])
				return
			}
			d.want(5, func(a []byte) {
				xb, y := le16(a[1], a[2]), le16(a[3], a[4])
				d.image(xb*8, y)
				d.skipN(uint64(xb)*uint64(y), nil)
			})
		})
	case '*': // GS * x y data: downloaded bit image, x*8 dots wide, y*8 dots high
		d.want(2, func(a []byte) { d.skipN(uint64(a[0])*uint64(a[1])*8, nil) })
	case 'k': // barcode: m 0..6 NUL-terminated, m 65.. with a length byte
		d.want(1, func(a []byte) {
			if a[0] <= 6 {
				d.until(0, 256)
				return
			}
			d.want(1, func(a []byte) { d.skipN(uint64(a[0]), nil) })
		})
	case 'C': // counter printing (older models)
		d.want(1, func(a []byte) {
			switch a[0] {
			case '0', '2':
				d.want(2, nop)
			case '1':
				d.want(6, nop)
			case ';':
				d.until(';', 64)
			}
		})
	case 'g':
		d.want(1, func(a []byte) {
			switch a[0] {
			case '0':
				d.want(3, nop)
			case '2': // GS g 2 m nL nH: transmit maintenance counter
				d.want(3, func(a []byte) {
					if d.counter != nil {
						d.counter(uint16(le16(a[1], a[2])))
					}
				})
			}
		})
	case 'z':
		d.want(1, func(a []byte) {
			if a[0] == '0' {
				d.want(2, nop)
			}
		})
	case '$', 'L', 'P', 'W', '\\':
		d.want(2, nop)
	case '^':
		d.want(3, nop)
	case '/', 'E', 'H', 'I', 'T', 'a', 'b', 'f', 'h', 'j', 'r', 'w':
		d.want(1, nop)
	case ':', 'c':
		// no parameters
	default:
		d.unknown(x)
	}
}

// symbolCmd handles the data of GS ( k: cn fn and the function's parameters.
func (d *decoder) symbolCmd(data []byte, truncated bool) {
	if len(data) < 2 || data[0] != 49 { // 49 = QR; other symbologies are accepted and ignored
		return
	}
	switch data[1] {
	case 80: // store: m=48 then the payload
		if truncated || len(data) < 3 {
			d.symbol = nil // too large for any QR symbol: a printer refuses it
			return
		}
		d.symbol = append(d.symbol[:0], data[3:]...)
	case 81: // print the stored symbol
		if d.symbol == nil {
			return
		}
		d.flushLine(false)
		if !d.printing() {
			d.discarded()
			return
		}
		doc := d.openDoc()
		if len(doc.QR) >= maxDocQR {
			doc.Incomplete = true
			return
		}
		doc.QR = append(doc.QR, string(d.symbol))
	}
}

func (d *decoder) image(wDots, hDots int) {
	d.flushLine(false)
	if !d.printing() {
		d.discarded()
		return
	}
	doc := d.openDoc()
	if len(doc.Images) >= maxDocImages {
		doc.Incomplete = true
		return
	}
	doc.Images = append(doc.Images, Image{WidthDots: wDots, HeightDots: hDots})
}

// putText adds a printable byte to the current line.
func (d *decoder) putText(b byte) {
	if !d.printing() {
		d.discarded()
		return
	}
	if !d.lineOpen {
		d.lineOpen = true
		d.line = Line{Align: d.align, Width: d.wmul, Height: d.hmul}
	}
	if len(d.raw) == 0 {
		d.rawChinese = d.chinese
	}
	if d.lineText.Len()+len(d.raw) >= maxLineBytes {
		return
	}
	d.raw = append(d.raw, b)
	d.line.Bold = d.line.Bold || d.bold
	d.line.Inverse = d.line.Inverse || d.inverse
	d.line.Width = max(d.line.Width, d.wmul)
	d.line.Height = max(d.line.Height, d.hmul)
}

// flushSegment decodes the bytes received in one character mode.
func (d *decoder) flushSegment() {
	if len(d.raw) == 0 {
		return
	}
	var dec *encoding.Decoder
	if d.rawChinese {
		dec = simplifiedchinese.GB18030.NewDecoder()
	} else if cm := codePages[d.codePage]; cm != nil {
		dec = cm.NewDecoder()
	}
	if dec == nil {
		for _, c := range d.raw {
			if c < 0x80 {
				d.lineText.WriteByte(c)
			} else {
				d.lineText.WriteByte('?')
			}
		}
	} else if s, err := dec.Bytes(d.raw); err == nil {
		d.lineText.Write(s)
	} else {
		d.lineText.WriteString(strings.Repeat("?", len(d.raw)))
	}
	d.raw = d.raw[:0]
}

// codePages maps ESC t n to the tables we can show; others print '?' for bytes above 0x7F.
var codePages = map[byte]*charmap.Charmap{
	0:  charmap.CodePage437,
	2:  charmap.CodePage850,
	3:  charmap.CodePage860,
	4:  charmap.CodePage863,
	5:  charmap.CodePage865,
	16: charmap.Windows1252,
	17: charmap.CodePage866,
	19: charmap.CodePage858,
}

// flushLine ends the current line. feed says whether a line feed was asked for: an empty line
// is recorded only then (a blank line on paper).
func (d *decoder) flushLine(feed bool) {
	d.flushSegment()
	if !d.lineOpen && !feed {
		return
	}
	if !d.printing() {
		d.discarded()
		d.lineText.Reset()
		d.lineOpen = false
		return
	}
	l := d.line
	if !d.lineOpen {
		l = Line{Align: d.align, Width: 1, Height: 1}
	}
	l.Text = d.lineText.String()
	d.lineText.Reset()
	d.lineOpen = false
	doc := d.openDoc()
	if len(doc.Lines) >= maxDocLines {
		doc.Incomplete = true
		return
	}
	doc.Lines = append(doc.Lines, l)
}

func (d *decoder) discarded() { d.openDoc().Incomplete = true }

func (d *decoder) openDoc() *Document {
	if d.doc == nil {
		d.doc = &Document{Started: d.now()}
	}
	return d.doc
}

// presenter applies a presenter command to the receipt it acts on: the one just cut, or
// the open one if the host presents before cutting.
func (d *decoder) presenter(f func(*Document)) {
	switch {
	case d.doc != nil:
		f(d.doc)
	case len(d.docs) > 0:
		f(&d.docs[len(d.docs)-1])
	}
}

func (d *decoder) cut() {
	d.flushLine(false)
	printing := d.printing()
	if !printing {
		d.discarded() // nothing is cut on a stopped printer; the document ends all the same
	} else {
		d.cuts++
	}
	d.closeDoc(printing)
}

func (d *decoder) closeDoc(cut bool) {
	doc := d.openDoc()
	doc.Cut = cut
	doc.Ended = d.now()
	if len(d.docs) >= d.maxDocs {
		copy(d.docs, d.docs[1:])
		d.docs = d.docs[:len(d.docs)-1]
	}
	d.docs = append(d.docs, *doc)
	d.doc = nil
}

// snapshot returns copies of the documents, with the open one last if withOpen.
func (d *decoder) snapshot(withOpen bool) []Document {
	out := make([]Document, 0, len(d.docs)+1)
	for _, doc := range d.docs {
		out = append(out, finish(doc))
	}
	if withOpen && d.doc != nil {
		out = append(out, finish(*d.doc))
	}
	return out
}

// finish makes an independent copy with Text filled in.
func finish(doc Document) Document {
	doc.Lines = append([]Line(nil), doc.Lines...)
	doc.QR = append([]string(nil), doc.QR...)
	if doc.Images != nil {
		doc.Images = append([]Image(nil), doc.Images...)
	}
	var b strings.Builder
	for i, l := range doc.Lines {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(l.Text)
	}
	doc.Text = strings.TrimRight(b.String(), "\n")
	return doc
}
