package ssp

import (
	"bytes"
	"crypto/aes"
	"errors"
	"math/big"
	"math/rand/v2"
	"testing"

	"github.com/kioskd/kioskd/devices/crc16"
)

// zeroes is a deterministic packing source for byte-exact tests.
type zeroes struct{}

func (zeroes) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestMakeKeyLayout(t *testing.T) {
	// GA138's SET FIXED KEY example sends 0x0123456701234567 as 67 45 23 01 67 45 23 01:
	// the fixed key travels, and sits in the AES key, little-endian.
	k := MakeKey(DefaultFixedKey, 0x1122334455667788)
	want := Key{0x67, 0x45, 0x23, 0x01, 0x67, 0x45, 0x23, 0x01, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11}
	if k != want {
		t.Fatalf("key % X, want % X", k, want)
	}
}

func TestSealLayout(t *testing.T) {
	k := MakeKey(0xA1B2C3D4E5F60718, 42)
	c := NewCipher(k)
	sealed, err := c.Seal(nil, 0x01020304, []byte{CmdPoll}, zeroes{})
	if err != nil {
		t.Fatal(err)
	}
	if sealed[0] != STEX || len(sealed) != 1+16 {
		t.Fatalf("sealed % X", sealed)
	}
	// Decrypt by hand and check every field of the layout.
	b, _ := aes.NewCipher(k[:])
	p := make([]byte, 16)
	b.Decrypt(p, sealed[1:])
	crc := crc16.CMS(p[:14])
	want := []byte{
		0x01,                   // eLENGTH: one data byte
		0x04, 0x03, 0x02, 0x01, // eCOUNT little-endian
		CmdPoll,                // eDATA
		0, 0, 0, 0, 0, 0, 0, 0, // ePACKING (zeroes here; random in use)
		byte(crc), byte(crc >> 8), // eCRC over eLENGTH..ePACKING, low byte first
	}
	if !bytes.Equal(p, want) {
		t.Fatalf("plaintext % X, want % X", p, want)
	}
	// 9 data bytes need 16 + 16: 1 + 4 + 9 + 2 = 16 exactly fits one block.
	for n, blocks := range map[int]int{0: 1, 9: 1, 10: 2, MaxSealedData: 15} {
		s, err := c.Seal(nil, 0, make([]byte, n), nil)
		if err != nil || len(s) != 1+16*blocks {
			t.Errorf("%d bytes sealed to %d (%v), want %d blocks", n, len(s), err, blocks)
		}
	}
	if _, err := c.Seal(nil, 0, make([]byte, MaxSealedData+1), nil); !errors.Is(err, ErrSealTooLong) {
		t.Errorf("over-long seal: %v", err)
	}
	// The largest sealed packet still fits one frame.
	s, _ := c.Seal(nil, 0, make([]byte, MaxSealedData), nil)
	if _, err := Encode(Frame{Data: s}); err != nil {
		t.Errorf("largest sealed packet does not fit a frame: %v", err)
	}
}

func TestSealOpen(t *testing.T) {
	c := NewCipher(MakeKey(0x1111, 0x2222))
	data := []byte{RespOK, EvNoteCredit, 0x03, EvStacked}
	s, err := c.Seal(nil, 7, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, count, err := c.Open(s, 7)
	if err != nil || count != 7 || !bytes.Equal(got, data) {
		t.Fatalf("Open = % X, %d, %v", got, count, err)
	}
	if _, count, err := c.Open(s, 8); !errors.Is(err, ErrBadCount) || count != 7 {
		t.Errorf("wrong counter: %d %v", count, err)
	}
	other := NewCipher(MakeKey(0x1111, 0x2223))
	if _, _, err := other.Open(s, 7); !errors.Is(err, ErrBadECRC) {
		t.Errorf("wrong key: %v", err)
	}
	for _, bad := range [][]byte{nil, {0x7E}, {0x7E, 1, 2, 3}, append([]byte{0xF0}, s[1:]...)} {
		if _, _, err := c.Open(bad, 7); err == nil {
			t.Errorf("Open(% X) accepted", bad)
		}
	}
	// A block whose eCRC holds but whose eLENGTH points past the end.
	b, _ := aes.NewCipher(func() []byte { k := MakeKey(0x1111, 0x2222); return k[:] }())
	p := make([]byte, 16)
	p[0] = 20
	crc := crc16.CMS(p[:14])
	p[14], p[15] = byte(crc), byte(crc>>8)
	ct := make([]byte, 16)
	b.Encrypt(ct, p)
	if _, _, err := c.Open(append([]byte{STEX}, ct...), 0); !errors.Is(err, ErrBadELength) {
		t.Errorf("eLENGTH past the end: %v", err)
	}
}

func TestModExpAndPrimes(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		b, e, m := r.Uint64(), r.Uint64(), r.Uint64()|1
		want := new(big.Int).Exp(new(big.Int).SetUint64(b), new(big.Int).SetUint64(e), new(big.Int).SetUint64(m))
		if got := ModExp(b, e, m); got != want.Uint64() {
			t.Fatalf("ModExp(%d, %d, %d) = %d, want %d", b, e, m, got, want)
		}
	}
	if ModExp(5, 0, 7) != 1 || ModExp(5, 3, 1) != 0 {
		t.Fatal("edge cases")
	}
	// GA138's examples: 982451653 (SET GENERATOR) and 1287821 (SET MODULUS) are prime.
	for _, p := range []uint64{982451653, 1287821, 2147483647, 18446744073709551557} {
		if !IsPrime(p) {
			t.Errorf("%d reported composite", p)
		}
	}
	for _, c := range []uint64{0, 1, 4, 982451653 * 3, 2147483647 * 2147483647, 561} {
		if IsPrime(c) {
			t.Errorf("%d reported prime", c)
		}
	}
	for _, bits := range []int{16, 31, 64} {
		p, err := RandomPrime(nil, bits)
		if err != nil || !IsPrime(p) || p>>(bits-1) != 1 {
			t.Errorf("RandomPrime(%d) = %d, %v", bits, p, err)
		}
	}
	if _, err := RandomPrime(nil, 8); err == nil {
		t.Error("8-bit prime accepted")
	}
}

// The unit's side of the exchange, computed independently with math/big.
func slaveSide(t *testing.T, g, m, hostInter, slaveRandom uint64) (slaveInter, key uint64) {
	t.Helper()
	bg, bm := new(big.Int).SetUint64(g), new(big.Int).SetUint64(m)
	r := new(big.Int).SetUint64(slaveRandom)
	slaveInter = new(big.Int).Exp(bg, r, bm).Uint64()
	key = new(big.Int).Exp(new(big.Int).SetUint64(hostInter), r, bm).Uint64()
	return
}

func TestKeyExchangeAgrees(t *testing.T) {
	for _, bits := range []int{DefaultPrimeBits, 64} {
		kx, err := NewKeyExchange(nil, bits)
		if err != nil {
			t.Fatal(err)
		}
		if !IsPrime(kx.Generator) || !IsPrime(kx.Modulus) || kx.Generator >= kx.Modulus {
			t.Fatalf("generator %d modulus %d", kx.Generator, kx.Modulus)
		}
		if bits == DefaultPrimeBits && kx.Modulus >= 1<<31 {
			t.Fatalf("modulus %d is not below 2^31", kx.Modulus)
		}
		slaveInter, slaveKey := slaveSide(t, kx.Generator, kx.Modulus, kx.HostInter(), 123456789)
		if hostKey := kx.Key(slaveInter); hostKey != slaveKey {
			t.Fatalf("%d bits: host key %d, unit key %d", bits, hostKey, slaveKey)
		}
	}
}

// FuzzDecrypt checks that no payload makes Open panic, that whatever it accepts carries the
// expected counter, and that a sealed packet opens to its data under the right counter only.
func FuzzDecrypt(f *testing.F) {
	c := NewCipher(MakeKey(DefaultFixedKey, 0x0102030405060708))
	for i, data := range [][]byte{{CmdPoll}, {RespOK, EvNoteCredit, 1, EvStacked}, make([]byte, MaxSealedData), nil} {
		s, _ := c.Seal(nil, uint32(i), data, zeroes{})
		f.Add(s, uint32(i), data)
		f.Add(s[:len(s)-1], uint32(i), data)
	}
	f.Add([]byte{STEX}, uint32(0), []byte{})
	f.Fuzz(func(t *testing.T, payload []byte, count uint32, data []byte) {
		got, n, err := c.Open(payload, count)
		if err == nil && (n != count || len(got) > MaxSealedData) {
			t.Fatalf("accepted counter %d (want %d), %d bytes", n, count, len(got))
		}
		if len(data) > MaxSealedData {
			return
		}
		s, err := c.Seal(nil, count, data, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, _, err = c.Open(s, count)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("round trip: % X, %v", got, err)
		}
		if _, _, err := c.Open(s, count+1); !errors.Is(err, ErrBadCount) {
			t.Fatalf("wrong counter accepted: %v", err)
		}
	})
}

func BenchmarkSealEncode(b *testing.B) {
	c := NewCipher(MakeKey(0x1234, 0x5678))
	buf := make([]byte, 0, 64)
	wire := make([]byte, 0, 64)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		buf, _ = c.Seal(buf[:0], uint32(i), []byte{CmdPoll}, zeroes{})
		wire, _ = AppendFrame(wire[:0], Frame{Seq: i&1 == 0, Data: buf})
	}
}

func BenchmarkDecodeOpen(b *testing.B) {
	c := NewCipher(MakeKey(0x1234, 0x5678))
	s, _ := c.Seal(nil, 9, []byte{RespOK, EvNoteCredit, 0x03, EvStacked}, nil)
	wire, _ := Encode(Frame{Seq: true, Data: s})
	b.ReportAllocs()
	for b.Loop() {
		f, _, err := Decode(wire)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := c.Open(f.Data, 9); err != nil {
			b.Fatal(err)
		}
	}
}
