package ccnet

import (
	"bytes"
	"errors"
	"testing"
)

func TestEncodeTable(t *testing.T) {
	for _, tc := range frameTable {
		got, err := Encode(tc.addr, tc.cmd, tc.data...)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !bytes.Equal(got, tc.wire) {
			t.Errorf("%s: Encode = % X, want % X", tc.name, got, tc.wire)
		}
	}
}

func TestEncodeShortAndExtendedForms(t *testing.T) {
	short, err := Encode(3, 0x60, make([]byte, MaxShortFrameLen-MinFrameLen)...)
	if err != nil || len(short) != MaxShortFrameLen || short[2] != MaxShortFrameLen {
		t.Fatalf("longest short frame: % X… (%d bytes) %v", short[:4], len(short), err)
	}
	ext, err := Encode(3, 0x60, make([]byte, MaxShortFrameLen-MinFrameLen+1)...)
	if err != nil || len(ext) != MaxShortFrameLen+3 || ext[2] != 0 || int(ext[4])<<8|int(ext[5]) != len(ext) {
		t.Fatalf("shortest extended frame: % X… (%d bytes) %v", ext[:6], len(ext), err)
	}
	for _, w := range [][]byte{short, ext} {
		if f, n, err := Decode(w); err != nil || n != len(w) || f.Cmd != 0x60 {
			t.Fatalf("Decode(%d bytes) = %v %d %v", len(w), f, n, err)
		}
	}
	if _, err := Encode(3, 0x60, make([]byte, MaxDataLen)...); err != nil {
		t.Fatalf("max data: %v", err)
	}
	if _, err := Encode(3, 0x60, make([]byte, MaxDataLen+1)...); !errors.Is(err, ErrTooLong) {
		t.Fatalf("over max data: err = %v, want ErrTooLong", err)
	}
}

func TestDecodeTable(t *testing.T) {
	for _, tc := range frameTable {
		// A frame followed by the start of the next one decodes the same.
		in := append(append([]byte(nil), tc.wire...), 0x02, 0x03)
		f, n, err := Decode(in)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if n != len(tc.wire) || f.Addr != tc.addr || f.Cmd != tc.cmd || !bytes.Equal(f.Data, tc.data) {
			t.Errorf("%s: Decode = %v (%d bytes), want @%d %02X % X (%d bytes)", tc.name, f, n, tc.addr, tc.cmd, tc.data, len(tc.wire))
		}
		if p := f.Payload(); p[0] != tc.cmd || !bytes.Equal(p[1:], tc.data) {
			t.Errorf("%s: Payload = % X", tc.name, p)
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
	for _, in := range [][]byte{
		{0x02, 0x03, 0x05},                   // shorter than the shortest frame
		{0x02, 0x03, 0x01, 0x33},             // LNG 1
		{0x02, 0x03, 251},                    // 251..255 must use the extended form
		{0x02, 0x03, 0xFF, 0x33},             // LNG 255
		{0x02, 0x03, 0x00, 0x33, 0x00, 0xFA}, // extended length 250 fits the short form
		{0x02, 0x03, 0x00, 0x33, 0x00, 0x06}, // extended length 6
	} {
		if _, _, err := Decode(in); !errors.Is(err, ErrBadLength) {
			t.Errorf("Decode(% X): err = %v, want ErrBadLength", in, err)
		}
	}
	for _, in := range [][]byte{{}, {0x02}, {0x02, 0x03}, {0x02, 0x03, 0x00, 0x60, 0x01}} {
		if _, _, err := Decode(in); !errors.Is(err, ErrIncomplete) {
			t.Errorf("Decode(% X): err = %v, want ErrIncomplete", in, err)
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
		want = append(want, Frame{Addr: tc.addr, Cmd: tc.cmd, Data: tc.data})
		stream = append(stream, tc.wire...)
		want = append(want, Frame{Addr: tc.addr, Cmd: tc.cmd, Data: tc.data})
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

func sameFrame(a, b Frame) bool {
	return a.Addr == b.Addr && a.Cmd == b.Cmd && bytes.Equal(a.Data, b.Data)
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
			if !sameFrame(got[i], want[i]) {
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
	d.Feed([]byte{0x02, 0x03, 0x20, 0x33}) // the start of a long frame that will never finish
	if _, err := d.Next(); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("err = %v", err)
	}
	d.Reset()
	d.Feed(frameTable[0].wire)
	f, err := d.Next()
	if err != nil || f.Cmd != CmdPoll {
		t.Fatalf("after Reset: %v %v", f, err)
	}
}

func TestDecoderLimit(t *testing.T) {
	// A false start announcing a 64 KiB frame would swallow the reply behind it; with a
	// limit the decoder drops it at once and finds the reply.
	noise := []byte{0x02, 0x03, 0x00, 0x33, 0xFF, 0xFF}
	d := Decoder{Limit: 512}
	d.Feed(append(noise, frameTable[7].wire...))
	got := drain(t, &d)
	if len(got) != 1 || got[0].Cmd != StEscrow {
		t.Fatalf("frames %v", got)
	}
	if d.Stats().BadLength != 1 {
		t.Fatalf("stats %+v", d.Stats())
	}
	var unlimited Decoder
	unlimited.Feed(append(noise, frameTable[7].wire...))
	if got := drain(t, &unlimited); len(got) != 0 {
		t.Fatalf("without a limit the false start waits for its 64 KiB: %v", got)
	}
	// A legitimate extended frame within the limit passes; over it, it does not.
	d.Feed(extWire)
	if got := drain(t, &d); len(got) != 1 || len(got[0].Data) != 251 {
		t.Fatalf("a 259-byte frame under a 512-byte limit: %v", got)
	}
	d = Decoder{Limit: 200}
	d.Feed(extWire)
	if got := drain(t, &d); len(got) != 0 {
		t.Fatalf("a 259-byte frame passed a 200-byte limit: %v", got)
	}
}

// FuzzDecode checks that no input makes the decoder panic, that what it accepts re-encodes to
// the same bytes, that the streaming decoder finds the same frames whatever the chunking,
// and that the payload parsers hold on whatever a frame carries.
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
			re, err := Encode(fr.Addr, fr.Cmd, fr.Data...)
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
			checkPayloadParsers(t, all[i].Payload())
			re, _ := Encode(all[i].Addr, all[i].Cmd, all[i].Data...)
			if !bytes.Contains(in, re) {
				t.Fatalf("frame %v is not in the input", all[i])
			}
			if !sameFrame(got[i], all[i]) {
				t.Fatalf("frame %d: chunked %v, whole %v", i, got[i], all[i])
			}
		}
		if whole.Buffered() > MaxFrameLen {
			t.Fatalf("decoder holds %d bytes, more than one frame", whole.Buffered())
		}
	})
}

// checkPayloadParsers runs every reply parser on p: none may panic, and what they accept
// must make sense.
func checkPayloadParsers(t *testing.T, p []byte) {
	if entries, err := ParseBillTable(p); err == nil {
		if len(entries) > NumBillTypes {
			t.Fatalf("%d bill table entries", len(entries))
		}
		for code, e := range entries {
			n, ok := e.Note(code)
			if ok && (n.ValueMinor <= 0 || n.Currency == "") {
				t.Fatalf("entry %v gives %v", e, n)
			}
			if ok {
				back, err := EntryFor(n)
				if err != nil {
					t.Fatalf("entry %v → %v does not convert back: %v", e, n, err)
				}
				if n2, ok2 := back.Note(code); !ok2 || n2 != n {
					t.Fatalf("entry %v → %v → %v → %v", e, n, back, n2)
				}
			}
		}
	}
	if id, err := ParseIdentification(p); err == nil {
		re := AppendIdentification(nil, id)
		if id2, err := ParseIdentification(re); err != nil || id2 != id {
			t.Fatalf("identification %v does not round-trip: %v %v", id, id2, err)
		}
	}
	if st, err := ParseStatus(p); err == nil && !bytes.Equal(append(st.Enabled[:], st.Security[:]...), p[:6]) {
		t.Fatalf("status %+v from % X", st, p)
	}
}

func BenchmarkEncode(b *testing.B) {
	buf := make([]byte, 0, 16)
	data := []byte{0x00, 0x00, 0x0D, 0xFF, 0xFF, 0xFF}
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = AppendFrame(buf[:0], AddrBillValidator, CmdEnableBillTypes, data)
	}
}

func BenchmarkDecode(b *testing.B) {
	wire := frameTable[7].wire // escrow type 2
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Decode(wire); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecoderStream(b *testing.B) {
	wire := frameTable[7].wire
	var d Decoder
	b.ReportAllocs()
	for b.Loop() {
		d.Feed(wire)
		if _, err := d.Next(); err != nil {
			b.Fatal(err)
		}
	}
}
