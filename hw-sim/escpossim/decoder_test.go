package escpossim

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

// frames is the annotated table of command streams the decoder must understand, each with
// the document it must produce. Every entry ends with text so a mis-skipped length shows up
// as garbage or a missing word.
var frames = []struct {
	name  string
	in    []byte
	text  string
	qr    []string
	imgs  int
	cut   bool
	attrs *Line // if set, the first line's attributes
}{
	{"plain", []byte("hello\nworld\n"), "hello\nworld", nil, 0, false, nil},
	{"init clears the print buffer", []byte("lost\x1b@kept\n"), "kept", nil, 0, false, nil},
	{"CR ignored", []byte("a\r\nb\r\n"), "a\nb", nil, 0, false, nil},
	{"align center", []byte("\x1ba\x01mid\n"), "mid", nil, 0, false, &Line{Text: "mid", Align: AlignCenter, Width: 1, Height: 1}},
	{"align ascii digit", []byte("\x1ba2right\n"), "right", nil, 0, false, &Line{Text: "right", Align: AlignRight, Width: 1, Height: 1}},
	{"bold", []byte("\x1bE\x01B\x1bE\x00\n"), "B", nil, 0, false, &Line{Text: "B", Align: AlignLeft, Bold: true, Width: 1, Height: 1}},
	{"GS ! double", []byte("\x1d!\x11BIG\n\x1d!\x00"), "BIG", nil, 0, false, &Line{Text: "BIG", Align: AlignLeft, Width: 2, Height: 2}},
	{"ESC ! mode", []byte("\x1b!\x38X\n"), "X", nil, 0, false, &Line{Text: "X", Align: AlignLeft, Bold: true, Width: 2, Height: 2}},
	{"GS B inverse", []byte("\x1dB\x01INV\n"), "INV", nil, 0, false, &Line{Text: "INV", Align: AlignLeft, Inverse: true, Width: 1, Height: 1}},
	{"code page 437", []byte("\x1bt\x00\x9c5\n"), "£5", nil, 0, false, nil},
	{"GB18030 in FS &", []byte("\x1c&\xba\xcf\xbc\xc6 TOTAL\x1c.\n"), "合计 TOTAL", nil, 0, false, nil},
	{"FS . mid-line", []byte("\x1c&\xd6\xd0\x1c.\x9c\n"), "中£", nil, 0, false, nil},
	{"feed lines", []byte("a\x1bd\x03b\n"), "a\n\n\nb", nil, 0, false, nil},
	{"partial cut 66 n", []byte("x\n\x1dV\x42\x03"), "x", nil, 0, true, nil},
	{"full cut 0", []byte("x\n\x1dV\x00"), "x", nil, 0, true, nil},
	{"legacy ESC i", []byte("x\n\x1bi"), "x", nil, 0, true, nil},
	{"QR store and print", []byte("\x1d(k\x04\x001A2\x00\x1d(k\x03\x001C\x05\x1d(k\x03\x001E1\x1d(k\x06\x001P0abc\x1d(k\x03\x001Q0after\n"), "after", []string{"abc"}, 0, false, nil},
	{"QR print without store", []byte("\x1d(k\x03\x001Q0t\n"), "t", nil, 0, false, nil},
	{"QR payload with control bytes", []byte("\x1d(k\x06\x001P0\n\x1d\x10\x1d(k\x03\x001Q0t\n"), "t", []string{"\n\x1d\x10"}, 0, false, nil},
	{"PDF417 ignored", []byte("\x1d(k\x05\x000P0xy\x1d(k\x03\x000Q0t\n"), "t", nil, 0, false, nil},
	{"raster GS v 0", append(append([]byte("\x1dv0\x00\x02\x00\x03\x00"), "\n\x1b\x1d\x10\x04\x01"...), "t\n"...), "t", nil, 1, false, nil},
	{"bit image ESC * 33", append(append([]byte("\x1b*\x21\x02\x00"), bytes.Repeat([]byte{0x0a}, 6)...), "t\n"...), "t", nil, 1, false, nil},
	{"GS ( L graphics skipped", []byte("\x1d(L\x04\x000p\x0a\x0at\n"), "t", nil, 0, false, nil},
	{"GS 8 L 32-bit length", []byte("\x1d8L\x02\x00\x00\x00\x0a\x0at\n"), "t", nil, 0, false, nil},
	{"barcode NUL terminated", []byte("\x1dk\x04ABC\x00t\n"), "t", nil, 0, false, nil},
	{"barcode with length", []byte("\x1dkI\x03\n\n\nt\n"), "t", nil, 0, false, nil},
	{"user chars ESC &", []byte("\x1b&\x03\x41\x42\x01\x0a\x0a\x0a\x02\x0a\x0a\x0a\x0a\x0a\x0at\n"), "t", nil, 0, false, nil},
	{"FS q NV images", []byte("\x1cq\x01\x01\x00\x01\x00\x0a\x0a\x0a\x0a\x0a\x0a\x0a\x0at\n"), "t", nil, 0, false, nil},
	{"tab positions", []byte("\x1bD\x08\x10\x00t\n"), "t", nil, 0, false, nil},
	{"drawer kick", []byte("\x1bp\x00\x19\xfat\n"), "t", nil, 0, false, nil},
	{"DLE EOT in stream", []byte("a\x10\x04\x01b\n"), "ab", nil, 0, false, nil},
	{"DLE DC4", []byte("\x10\x14\x01\x00\x05t\n"), "t", nil, 0, false, nil},
	{"unknown ESC letter", []byte("\x1b~t\n"), "t", nil, 0, false, nil},
	{"stray ESC before GS", []byte("\x1b\x1d!\x11t\n"), "t", nil, 0, false, &Line{Text: "t", Align: AlignLeft, Width: 2, Height: 2}},
	{"unknown GS letter", []byte("\x1d\xfft\n"), "t", nil, 0, false, nil},
	{"other controls ignored", []byte("a\x07\x18\x7fb\n"), "ab", nil, 0, false, nil},
}

func TestDecodeFrames(t *testing.T) {
	for _, f := range frames {
		t.Run(f.name, func(t *testing.T) {
			docs := Decode(f.in)
			if len(docs) != 1 {
				t.Fatalf("%d documents: %+v", len(docs), docs)
			}
			d := docs[0]
			if d.Text != f.text {
				t.Errorf("text = %q, want %q", d.Text, f.text)
			}
			if !reflect.DeepEqual(d.QR, f.qr) && !(len(d.QR) == 0 && len(f.qr) == 0) {
				t.Errorf("QR = %q, want %q", d.QR, f.qr)
			}
			if len(d.Images) != f.imgs {
				t.Errorf("images = %+v, want %d", d.Images, f.imgs)
			}
			if d.Cut != f.cut {
				t.Errorf("cut = %v, want %v", d.Cut, f.cut)
			}
			if f.attrs != nil && !reflect.DeepEqual(d.Lines[0], *f.attrs) {
				t.Errorf("line = %+v, want %+v", d.Lines[0], *f.attrs)
			}
		})
	}
}

// TestStreamingMatchesWhole: a serial stream arrives in arbitrary pieces; the result must not
// depend on where it was cut.
func TestStreamingMatchesWhole(t *testing.T) {
	var all []byte
	for _, f := range frames {
		all = append(all, f.in...)
		all = append(all, 0x1d, 'V', 0)
	}
	want := Decode(all)
	for _, size := range []int{1, 2, 3, 7, 64} {
		d := newDecoder()
		for i := 0; i < len(all); i += size {
			d.write(all[i:min(i+size, len(all))])
		}
		got := d.snapshot(true)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("chunks of %d: decoded differently", size)
		}
	}
	wantDocs := len(frames)
	for _, f := range frames {
		if f.cut {
			wantDocs++ // its own cut, then the separator cuts an empty document
		}
	}
	if len(want) != wantDocs {
		t.Errorf("%d documents, want %d", len(want), wantDocs)
	}
}

func TestHugeDeclaredLengths(t *testing.T) {
	for _, in := range [][]byte{
		[]byte("\x1dv0\x00\xff\xff\xff\xffabc\n"),        // 4 GB raster
		[]byte("\x1d8L\xff\xff\xff\xffabc\n"),            // 4 GB graphics
		[]byte("\x1d(k\xff\xff1P0" + "abc\n"),            // 64 KB symbol
		[]byte("\x1cq\xff\xff\xff\xff\xffabc\n"),         // 255 NV images of 4 GB
		[]byte("\x1b&\x03\x00\xff\xffabc\n"),             // user characters
		[]byte(strings.Repeat("\x1bd\xff", 100) + "x\n"), // 25 500 blank lines
	} {
		docs := Decode(in)
		for _, d := range docs {
			if strings.Contains(d.Text, "abc") {
				t.Errorf("% x: data inside a declared block was printed", in[:6])
			}
			if len(d.Lines) > maxDocLines {
				t.Errorf("%d lines kept", len(d.Lines))
			}
		}
	}
	// A symbol larger than any QR is not stored.
	big := append([]byte("\x1d(k\x13\x27"+"1P0"), bytes.Repeat([]byte("A"), 0x2713-3)...)
	big = append(big, "\x1d(k\x03\x001Q0"...)
	if d := Decode(big); len(d) != 0 && len(d[0].QR) != 0 {
		t.Errorf("oversized symbol printed: %d bytes", len(d[0].QR[0]))
	}
}

func TestDocumentBound(t *testing.T) {
	in := bytes.Repeat([]byte("x\n\x1dV\x00"), decodeMaxDocs+10)
	if n := len(Decode(in)); n != decodeMaxDocs {
		t.Errorf("%d documents kept, want %d", n, decodeMaxDocs)
	}
}

// TestPresenter: a presenter printer's GS e 3 m (present) and GS e 4 (retract if not taken)
// after the cut mark the receipt just cut, and take their parameter bytes (the text after
// them prints whole).
func TestPresenter(t *testing.T) {
	in := []byte("one\n\x1dVA\x03\x1de\x03\x03\x1de\x04two\n\x1dV\x01")
	docs := Decode(in)
	if len(docs) != 2 {
		t.Fatalf("%d documents: %+v", len(docs), docs)
	}
	if !docs[0].Presented || !docs[0].Retract || docs[0].Text != "one" {
		t.Errorf("first: %+v", docs[0])
	}
	if docs[1].Presented || docs[1].Retract || docs[1].Text != "two" {
		t.Errorf("second: %+v", docs[1])
	}
}

// TestRasterSizes: GS v 0 bands arrive as images of their declared size, and what follows
// them prints.
func TestRasterSizes(t *testing.T) {
	var in []byte
	for _, rows := range []int{128, 128, 7} {
		in = append(in, 0x1d, 'v', '0', 0, 48, 0, byte(rows), 0)
		in = append(in, make([]byte, 48*rows)...)
	}
	in = append(in, "end\n\x1dVB\x03"...)
	docs := Decode(in)
	if len(docs) != 1 || len(docs[0].Images) != 3 || !docs[0].Cut || docs[0].Text != "end" {
		t.Fatalf("%+v", docs)
	}
	h := 0
	for _, im := range docs[0].Images {
		if im.WidthDots != 384 {
			t.Errorf("width %d", im.WidthDots)
		}
		h += im.HeightDots
	}
	if h != 263 {
		t.Errorf("height %d, want 263", h)
	}
}
