package crc16

import "testing"

func TestCheckValues(t *testing.T) {
	check := []byte("123456789")
	for _, tc := range []struct {
		name string
		f    func([]byte) uint16
		want uint16
	}{
		{"KERMIT", Kermit, 0x2189},
		{"CMS", CMS, 0xAEE7},
		{"XMODEM", XModem, 0x31C3},
	} {
		if got := tc.f(check); got != tc.want {
			t.Errorf("%s(123456789) = %#04x, want %#04x", tc.name, got, tc.want)
		}
	}
}

// TestBitwiseReference recomputes each CRC bit by bit, independently of the tables.
func TestBitwiseReference(t *testing.T) {
	inputs := [][]byte{nil, {0}, {0xFC, 0x05, 0x11}, []byte("kioskd journal"), {0x7F, 0x80, 0x01, 0xF0}}
	for _, in := range inputs {
		if got, want := Kermit(in), bitReflected(in, 0x8408, 0); got != want {
			t.Errorf("Kermit(%x) = %#04x, bitwise %#04x", in, got, want)
		}
		if got, want := CMS(in), bitMSB(in, 0x8005, 0xFFFF); got != want {
			t.Errorf("CMS(%x) = %#04x, bitwise %#04x", in, got, want)
		}
		if got, want := XModem(in), bitMSB(in, 0x1021, 0); got != want {
			t.Errorf("XModem(%x) = %#04x, bitwise %#04x", in, got, want)
		}
	}
}

func bitReflected(b []byte, rpoly, c uint16) uint16 {
	for _, x := range b {
		c ^= uint16(x)
		for range 8 {
			if c&1 != 0 {
				c = c>>1 ^ rpoly
			} else {
				c >>= 1
			}
		}
	}
	return c
}

func bitMSB(b []byte, poly, c uint16) uint16 {
	for _, x := range b {
		c ^= uint16(x) << 8
		for range 8 {
			if c&0x8000 != 0 {
				c = c<<1 ^ poly
			} else {
				c <<= 1
			}
		}
	}
	return c
}

func BenchmarkKermit64(b *testing.B) {
	buf := make([]byte, 64)
	b.SetBytes(64)
	for b.Loop() {
		Kermit(buf)
	}
}
