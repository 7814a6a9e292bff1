package id003

import (
	"bytes"
	"errors"
	"testing"
)

func TestEncodeTable(t *testing.T) {
	for _, tc := range frameTable {
		got, err := Encode(tc.cmd, tc.data...)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !bytes.Equal(got, tc.wire) {
			t.Errorf("%s: Encode = % X, want % X", tc.name, got, tc.wire)
		}
	}
}

func TestEncodeTooLong(t *testing.T) {
	if _, err := Encode(0x88, make([]byte, MaxDataLen)...); err != nil {
		t.Fatalf("max data: %v", err)
	}
	if _, err := Encode(0x88, make([]byte, MaxDataLen+1)...); !errors.Is(err, ErrTooLong) {
		t.Fatalf("over max data: err = %v, want ErrTooLong", err)
	}
}

func TestDecodeTable(t *testing.T) {
	for _, tc := range frameTable {
		// A frame followed by the start of the next one decodes the same.
		in := append(append([]byte(nil), tc.wire...), 0xFC, 0x05)
		f, n, err := Decode(in)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if n != len(tc.wire) || f.Cmd != tc.cmd || !bytes.Equal(f.Data, tc.data) {
			t.Errorf("%s: Decode = %v (%d bytes), want %02X % X (%d bytes)", tc.name, f, n, tc.cmd, tc.data, len(tc.wire))
		}
	}
}

func TestDecodeMalformedTwins(t *testing.T) {
	for _, tc := range frameTable {
		if _, _, err := Decode(badCRC(tc.wire)); !errors.Is(err, ErrBadCRC) {
			t.Errorf("%s bad CRC: err = %v, want ErrBadCRC", tc.name, err)
		}
		if _, _, err := Decode(wrongLNG(tc.wire)); !errors.Is(err, ErrIncomplete) {
			t.Errorf("%s wrong LNG: err = %v, want ErrIncomplete", tc.name, err)
		}
		if _, _, err := Decode(append(wrongLNG(tc.wire), 0x00)); !errors.Is(err, ErrBadCRC) {
			t.Errorf("%s wrong LNG with a byte after: err = %v, want ErrBadCRC", tc.name, err)
		}
		if _, _, err := Decode(truncated(tc.wire)); !errors.Is(err, ErrIncomplete) {
			t.Errorf("%s truncated: err = %v, want ErrIncomplete", tc.name, err)
		}
		if _, _, err := Decode(garbageBefore(tc.wire)); !errors.Is(err, ErrNoSync) {
			t.Errorf("%s garbage before: err = %v, want ErrNoSync", tc.name, err)
		}
	}
	for _, in := range [][]byte{{0xFC, 0x00}, {0xFC, 0x04, 0x11, 0x00}, {0xFC, 0x01}} {
		if _, _, err := Decode(in); !errors.Is(err, ErrBadLength) {
			t.Errorf("Decode(% X): err = %v, want ErrBadLength", in, err)
		}
	}
}

// streamOfTwins interleaves every good frame with its malformed twins and returns the stream
// and the good frames that must come out of it, in order.
func streamOfTwins() (stream []byte, want []Frame) {
	for _, tc := range frameTable {
		stream = append(stream, badCRC(tc.wire)...)
		stream = append(stream, truncated(tc.wire)...)
		stream = append(stream, wrongLNG(tc.wire)...)
		stream = append(stream, garbageBefore(tc.wire)...)
		want = append(want, Frame{Cmd: tc.cmd, Data: tc.data})
		stream = append(stream, tc.wire...)
		want = append(want, Frame{Cmd: tc.cmd, Data: tc.data})
	}
	return stream, want
}

func drain(t testing.TB, d *Decoder) (out []Frame) {
	for {
		f, err := d.Next()
		switch {
		case err == nil:
			out = append(out, f)
		case errors.Is(err, ErrIncomplete):
			return out
		case errors.Is(err, ErrBadCRC), errors.Is(err, ErrBadLength):
		default:
			t.Fatalf("Next: unexpected error %v", err)
		}
	}
}

func TestDecoderResyncEveryChunkSize(t *testing.T) {
	stream, want := streamOfTwins()
	for size := 1; size <= len(stream); size += max(1, size/3) {
		var d Decoder
		var got []Frame
		for i := 0; i < len(stream); i += size {
			d.Feed(stream[i:min(i+size, len(stream))])
			got = append(got, drain(t, &d)...)
		}
		if len(got) != len(want) {
			t.Fatalf("chunk %d: got %d frames, want %d: %v", size, len(got), len(want), got)
		}
		for i := range want {
			if got[i].Cmd != want[i].Cmd || !bytes.Equal(got[i].Data, want[i].Data) {
				t.Fatalf("chunk %d: frame %d = %v, want %v", size, i, got[i], want[i])
			}
		}
		st := d.Stats()
		if st.Frames != uint64(len(want)) || st.BadCRC < uint64(len(frameTable)) || st.GarbageBytes == 0 || st.BadLength == 0 {
			t.Fatalf("chunk %d: stats %+v", size, st)
		}
		if d.Buffered() != 0 {
			t.Fatalf("chunk %d: %d bytes left buffered", size, d.Buffered())
		}
	}
}

func TestDecoderReset(t *testing.T) {
	var d Decoder
	d.Feed([]byte{0xFC, 0x20, 0x11}) // the start of a long frame that will never finish
	if _, err := d.Next(); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("err = %v", err)
	}
	d.Reset()
	d.Feed(frameTable[0].wire)
	f, err := d.Next()
	if err != nil || f.Cmd != CmdStatusRequest {
		t.Fatalf("after Reset: %v %v", f, err)
	}
}

// FuzzDecode checks that no input makes the decoder panic, that what it accepts re-encodes to
// the same bytes, and that the streaming decoder finds the same frames whatever the chunking.
func FuzzDecode(f *testing.F) {
	for _, tc := range frameTable {
		f.Add(tc.wire, uint8(1))
		f.Add(badCRC(tc.wire), uint8(2))
		f.Add(wrongLNG(tc.wire), uint8(3))
		f.Add(garbageBefore(tc.wire), uint8(5))
	}
	stream, _ := streamOfTwins()
	f.Add(stream, uint8(7))
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		fr, n, err := Decode(in)
		if err == nil {
			if n < MinFrameLen || n > len(in) || n > MaxFrameLen {
				t.Fatalf("Decode consumed %d of %d bytes", n, len(in))
			}
			re, err := Encode(fr.Cmd, fr.Data...)
			if err != nil || !bytes.Equal(re, in[:n]) {
				t.Fatalf("re-encode = % X (%v), want % X", re, err, in[:n])
			}
		}
		var whole Decoder
		whole.Feed(in)
		all := drain(t, &whole)
		var pieces Decoder
		var got []Frame
		size := int(chunk%16) + 1
		for i := 0; i < len(in); i += size {
			pieces.Feed(in[i:min(i+size, len(in))])
			got = append(got, drain(t, &pieces)...)
		}
		if len(got) != len(all) {
			t.Fatalf("chunked decode found %d frames, whole decode %d", len(got), len(all))
		}
		for i := range all {
			// The payload parser of the one reply with structured data must hold too.
			if entries, err := ParseCurrencyTable(all[i].Data); err == nil {
				for _, e := range entries {
					if n, ok := e.Note(); ok && n.ValueMinor <= 0 {
						t.Fatalf("entry %+v gives value %d", e, n.ValueMinor)
					}
				}
			}
			re, _ := Encode(all[i].Cmd, all[i].Data...)
			if !bytes.Contains(in, re) {
				t.Fatalf("frame %v is not in the input", all[i])
			}
			if got[i].Cmd != all[i].Cmd || !bytes.Equal(got[i].Data, all[i].Data) {
				t.Fatalf("frame %d: chunked %v, whole %v", i, got[i], all[i])
			}
		}
		if whole.Buffered() > MaxFrameLen {
			t.Fatalf("decoder holds %d bytes, more than one frame", whole.Buffered())
		}
	})
}

func BenchmarkEncode(b *testing.B) {
	buf := make([]byte, 0, 16)
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = AppendFrame(buf[:0], CmdSetDenoms, []byte{0xF8, 0xFF})
	}
}

func BenchmarkDecode(b *testing.B) {
	wire := frameTable[6].wire // escrow 0x63
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Decode(wire); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecoderStream(b *testing.B) {
	wire := frameTable[6].wire
	var d Decoder
	b.ReportAllocs()
	for b.Loop() {
		d.Feed(wire)
		if _, err := d.Next(); err != nil {
			b.Fatal(err)
		}
	}
}
