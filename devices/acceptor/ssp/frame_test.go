package ssp

import (
	"bytes"
	"errors"
	"testing"
)

func TestEncodeTable(t *testing.T) {
	for _, tc := range frameTable {
		got, err := Encode(tc.frame)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !bytes.Equal(got, tc.wire) {
			t.Errorf("%s: Encode = % X, want % X", tc.name, got, tc.wire)
		}
	}
}

func TestEncodeLimits(t *testing.T) {
	if _, err := Encode(Frame{Data: make([]byte, MaxDataLen)}); err != nil {
		t.Fatalf("max data: %v", err)
	}
	for _, f := range []Frame{{Data: make([]byte, MaxDataLen+1)}, {Data: nil}} {
		if _, err := Encode(f); !errors.Is(err, ErrTooLong) {
			t.Errorf("%d data bytes: err = %v, want ErrTooLong", len(f.Data), err)
		}
	}
	if _, err := Encode(Frame{Address: 0x7E, Data: []byte{1}}); !errors.Is(err, ErrBadAddress) {
		t.Errorf("address 0x7E: err = %v", err)
	}
	// The longest possible frame: every byte after STX stuffed.
	all := bytes.Repeat([]byte{STX}, MaxDataLen)
	w, err := Encode(Frame{Data: all})
	if err != nil || len(w) > MaxWireLen || len(w) < 1+2*(1+MaxDataLen) {
		t.Fatalf("all-0x7F frame: %d bytes, %v", len(w), err)
	}
	f, n, err := Decode(w)
	if err != nil || n != len(w) || !bytes.Equal(f.Data, all) {
		t.Fatalf("decode all-0x7F frame: %v %d", err, n)
	}
}

func TestDecodeTable(t *testing.T) {
	for _, tc := range frameTable {
		// A frame followed by the start of the next one decodes the same.
		in := append(append([]byte(nil), tc.wire...), STX, 0x80)
		f, n, err := Decode(in)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if n != len(tc.wire) || f.SeqID() != tc.frame.SeqID() || !bytes.Equal(f.Data, tc.frame.Data) {
			t.Errorf("%s: Decode = %v (%d bytes), want %v (%d bytes)", tc.name, f, n, tc.frame, len(tc.wire))
		}
	}
}

func TestDecodeMalformedTwins(t *testing.T) {
	for _, tc := range frameTable {
		if _, _, err := Decode(badCRC(tc.wire)); !errors.Is(err, ErrBadCRC) {
			t.Errorf("%s bad CRC: err = %v, want ErrBadCRC", tc.name, err)
		}
		if _, _, err := Decode(truncated(tc.wire)); !errors.Is(err, ErrIncomplete) {
			t.Errorf("%s truncated: err = %v, want ErrIncomplete", tc.name, err)
		}
		if _, _, err := Decode(garbageBefore(tc.wire)); !errors.Is(err, ErrNoSync) {
			t.Errorf("%s garbage before: err = %v, want ErrNoSync", tc.name, err)
		}
		in := append(interrupted(tc.wire), tc.wire...)
		if _, n, err := Decode(in); !errors.Is(err, ErrResync) || n != len(tc.wire)/2 {
			t.Errorf("%s interrupted: err = %v, n = %d, want ErrResync at %d", tc.name, err, n, len(tc.wire)/2)
		}
	}
	for _, in := range [][]byte{
		{STX, 0x80, 0x00},       // LEN 0
		{STX, 0x7E, 0x01, 0x07}, // address 0x7E
		{STX, 0x7F, 0x7F, 0x01}, // stuffed 0x7F as SEQ/ID: address 0x7F
	} {
		if _, _, err := Decode(in); !errors.Is(err, ErrBadHeader) {
			t.Errorf("Decode(% X): err = %v, want ErrBadHeader", in, err)
		}
	}
	// A lone STX as the second byte restarts: the first one was noise.
	if _, n, err := Decode([]byte{STX, STX, 0x80, 0x01}); !errors.Is(err, ErrResync) || n != 1 {
		t.Errorf("7F 7F 80: n=%d err=%v", n, err)
	}
	// A lone STX at the end of the buffer may be half of a stuffed pair: wait.
	if _, _, err := Decode([]byte{STX, 0x80, 0x03, 0x02, STX}); !errors.Is(err, ErrIncomplete) {
		t.Errorf("trailing STX: %v", err)
	}
}

// streamOfTwins interleaves every good frame with its malformed twins and returns the stream
// and the frames that must come out of it, in order.
func streamOfTwins() (stream []byte, want []Frame) {
	for _, tc := range frameTable {
		stream = append(stream, badCRC(tc.wire)...)
		stream = append(stream, interrupted(tc.wire)...)
		stream = append(stream, garbageBefore(tc.wire)...)
		want = append(want, tc.frame)
		stream = append(stream, tc.wire...)
		want = append(want, tc.frame)
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
		case errors.Is(err, ErrBadCRC), errors.Is(err, ErrBadHeader), errors.Is(err, ErrResync):
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
			if got[i].SeqID() != want[i].SeqID() || !bytes.Equal(got[i].Data, want[i].Data) {
				t.Fatalf("chunk %d: frame %d = %v, want %v", size, i, got[i], want[i])
			}
		}
		st := d.Stats()
		if st.Frames != uint64(len(want)) || st.BadCRC < uint64(len(frameTable)) || st.GarbageBytes == 0 || st.Resyncs == 0 {
			t.Fatalf("chunk %d: stats %+v", size, st)
		}
		if d.Buffered() != 0 {
			t.Fatalf("chunk %d: %d bytes left buffered", size, d.Buffered())
		}
	}
}

func TestDecoderReset(t *testing.T) {
	var d Decoder
	d.Feed([]byte{STX, 0x80, 0x20, 0x07}) // the start of a long frame that never finishes
	if _, err := d.Next(); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("err = %v", err)
	}
	d.Reset()
	d.Feed(frameTable[0].wire)
	f, err := d.Next()
	if err != nil || f.Data[0] != CmdSync {
		t.Fatalf("after Reset: %v %v", f, err)
	}
}

// FuzzDecode checks that no input makes the decoder panic, that what it accepts re-encodes to
// exactly the bytes it consumed (stuffing is canonical), and that the streaming decoder finds
// the same frames whatever the chunking.
func FuzzDecode(f *testing.F) {
	for _, tc := range frameTable {
		f.Add(tc.wire, uint8(1))
		f.Add(badCRC(tc.wire), uint8(2))
		f.Add(garbageBefore(tc.wire), uint8(5))
		f.Add(append(interrupted(tc.wire), tc.wire...), uint8(3))
	}
	stream, _ := streamOfTwins()
	f.Add(stream, uint8(7))
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		fr, n, err := Decode(in)
		if err == nil {
			if n < 6 || n > len(in) || n > MaxWireLen {
				t.Fatalf("Decode consumed %d of %d bytes", n, len(in))
			}
			re, err := Encode(fr)
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
			re, _ := Encode(all[i])
			if !bytes.Contains(in, re) {
				t.Fatalf("frame %v is not in the input", all[i])
			}
			if got[i].SeqID() != all[i].SeqID() || !bytes.Equal(got[i].Data, all[i].Data) {
				t.Fatalf("frame %d: chunked %v, whole %v", i, got[i], all[i])
			}
		}
		if whole.Buffered() > MaxWireLen {
			t.Fatalf("decoder holds %d bytes, more than one frame", whole.Buffered())
		}
	})
}

func BenchmarkEncode(b *testing.B) {
	buf := make([]byte, 0, 16)
	f := Frame{Seq: true, Data: []byte{CmdSetInhibits, 0x7F, 0x00}}
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = AppendFrame(buf[:0], f)
	}
}

func BenchmarkDecode(b *testing.B) {
	wire := frameTable[5].wire // credit + stacked
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Decode(wire); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecoderStream(b *testing.B) {
	wire := frameTable[5].wire
	var d Decoder
	b.ReportAllocs()
	for b.Loop() {
		d.Feed(wire)
		if _, err := d.Next(); err != nil {
			b.Fatal(err)
		}
	}
}
