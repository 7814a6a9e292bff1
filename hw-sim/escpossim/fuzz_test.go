package escpossim

import (
	"reflect"
	"testing"
)

// FuzzDecode: the decoder never panics, keeps its bounds, and gives the same documents
// whether the stream arrives whole or cut in two anywhere.
func FuzzDecode(f *testing.F) {
	for _, fr := range frames {
		f.Add(fr.in, uint16(len(fr.in)/2))
	}
	f.Fuzz(func(t *testing.T, in []byte, split uint16) {
		whole := Decode(in)
		if len(whole) > decodeMaxDocs {
			t.Fatalf("%d documents", len(whole))
		}
		for _, d := range whole {
			if len(d.Lines) > maxDocLines || len(d.QR) > maxDocQR || len(d.Images) > maxDocImages {
				t.Fatalf("bounds exceeded: %d lines %d QR %d images", len(d.Lines), len(d.QR), len(d.Images))
			}
			for _, l := range d.Lines {
				if len(l.Text) > 4*maxLineBytes {
					t.Fatalf("line of %d bytes", len(l.Text))
				}
			}
		}
		cut := int(split) % (len(in) + 1)
		dec := newDecoder()
		dec.write(in[:cut])
		dec.write(in[cut:])
		dec.flushLine(false)
		if dec.doc != nil {
			dec.closeDoc(false)
		}
		if got := dec.snapshot(false); !reflect.DeepEqual(got, whole) {
			t.Fatalf("split at %d decodes differently", cut)
		}
	})
}
