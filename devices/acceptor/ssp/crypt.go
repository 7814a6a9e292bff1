package ssp

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"math/bits"

	"github.com/kioskd/kioskd/devices/crc16"
)

// eSSP: the encryption layer. An encrypted packet is carried in the DATA of an ordinary
// frame as STEX followed by AES-128-ECB ciphertext of
//
//	eLENGTH (1) | eCOUNT (4, little-endian) | eDATA (eLENGTH) | ePACKING (random) | eCRCL eCRCH
//
// padded so the plaintext is a whole number of 16-byte blocks; the eCRC is CRC-16/CMS over
// eLENGTH..ePACKING, low byte first. The 128-bit key is the 64-bit fixed key in bytes 0..7
// and the 64-bit negotiated key in bytes 8..15, each little-endian.
const (
	// STEX starts an encrypted block inside the DATA of a frame.
	STEX byte = 0x7E
	// DefaultFixedKey is the fixed key every ITL unit ships with. It is public knowledge, so
	// it protects nothing; the driver refuses it unless Config.AllowDefaultKey is set.
	DefaultFixedKey uint64 = 0x0123456701234567
	// MaxSealedData is the most command or reply bytes one encrypted packet can carry: the
	// frame's 255 DATA bytes less STEX leave 15 blocks (240 bytes), less 7 bytes of header
	// and CRC.
	MaxSealedData = 15*aes.BlockSize - sealOverhead
	sealOverhead  = 1 + 4 + 2
)

// Errors of the encryption layer.
var (
	// ErrNotEncrypted: the DATA does not start with STEX.
	ErrNotEncrypted = errors.New("ssp: not an encrypted packet")
	// ErrBadBlock: the ciphertext is empty or not a whole number of AES blocks.
	ErrBadBlock = errors.New("ssp: encrypted block length is not a multiple of 16")
	// ErrBadECRC: the decrypted block's CRC does not match (wrong key, or damage the outer
	// CRC did not catch).
	ErrBadECRC = errors.New("ssp: bad CRC inside the encrypted block (wrong key?)")
	// ErrBadELength: eLENGTH does not fit in the decrypted block.
	ErrBadELength = errors.New("ssp: eLENGTH does not fit the encrypted block")
	// ErrBadCount: the packet counter is not the one expected; the packet is dropped.
	ErrBadCount = errors.New("ssp: encrypted packet counter mismatch")
	// ErrSealTooLong: more data than one encrypted packet can carry.
	ErrSealTooLong = errors.New("ssp: data too long for one encrypted packet")
)

// Key is an eSSP AES-128 key.
type Key [16]byte

// MakeKey builds the AES key from the fixed and the negotiated halves.
func MakeKey(fixed, negotiated uint64) Key {
	var k Key
	binary.LittleEndian.PutUint64(k[0:8], fixed)
	binary.LittleEndian.PutUint64(k[8:16], negotiated)
	return k
}

// Cipher seals and opens eSSP packets under one key. It holds no counter: the caller owns
// the count (see the package documentation for how it advances).
type Cipher struct {
	block cipher.Block
}

// NewCipher returns a Cipher for k.
func NewCipher(k Key) *Cipher {
	b, err := aes.NewCipher(k[:])
	if err != nil {
		panic(err) // a 16-byte key is always valid
	}
	return &Cipher{block: b}
}

// Seal appends STEX and the encrypted packet for data with count to dst. pad supplies the
// random packing bytes (nil means crypto/rand).
func (c *Cipher) Seal(dst []byte, count uint32, data []byte, pad io.Reader) ([]byte, error) {
	if len(data) > MaxSealedData {
		return dst, fmt.Errorf("ssp: seal %d bytes: %w", len(data), ErrSealTooLong)
	}
	n := sealOverhead + len(data)
	if r := n % aes.BlockSize; r != 0 {
		n += aes.BlockSize - r
	}
	// Built in place in dst, so nothing is allocated besides dst's own growth.
	dst = append(dst, STEX)
	start := len(dst)
	dst = append(dst, byte(len(data)))
	dst = binary.LittleEndian.AppendUint32(dst, count)
	dst = append(dst, data...)
	if np := n - sealOverhead - len(data); np > 0 {
		if pad == nil {
			pad = rand.Reader
		}
		dst = append(dst, make([]byte, np)...)
		if _, err := io.ReadFull(pad, dst[len(dst)-np:]); err != nil {
			return dst[:start-1], fmt.Errorf("ssp: seal: packing: %w", err)
		}
	}
	crc := crc16.CMS(dst[start:])
	dst = append(dst, byte(crc), byte(crc>>8))
	for i := start; i < len(dst); i += aes.BlockSize {
		c.block.Encrypt(dst[i:i+aes.BlockSize], dst[i:i+aes.BlockSize])
	}
	return dst, nil
}

// Open decrypts the DATA of a frame (STEX + ciphertext), checks its CRC and that its counter
// is want, and returns the data it carries and the counter it had. On ErrBadCount the data
// is still returned, for diagnostics only: a packet with the wrong counter must be dropped.
func (c *Cipher) Open(payload []byte, want uint32) (data []byte, count uint32, err error) {
	if len(payload) == 0 || payload[0] != STEX {
		return nil, 0, ErrNotEncrypted
	}
	ct := payload[1:]
	if len(ct) == 0 || len(ct)%aes.BlockSize != 0 {
		return nil, 0, fmt.Errorf("ssp: open %d bytes: %w", len(ct), ErrBadBlock)
	}
	p := make([]byte, len(ct))
	for i := 0; i < len(ct); i += aes.BlockSize {
		c.block.Decrypt(p[i:i+aes.BlockSize], ct[i:i+aes.BlockSize])
	}
	crc := crc16.CMS(p[:len(p)-2])
	if p[len(p)-2] != byte(crc) || p[len(p)-1] != byte(crc>>8) {
		return nil, 0, ErrBadECRC
	}
	elen := int(p[0])
	if sealOverhead+elen > len(p) {
		return nil, 0, fmt.Errorf("ssp: eLENGTH %d in %d bytes: %w", elen, len(p), ErrBadELength)
	}
	count = binary.LittleEndian.Uint32(p[1:5])
	data = p[5 : 5+elen]
	if count != want {
		return data, count, fmt.Errorf("ssp: counter %d, expected %d: %w", count, want, ErrBadCount)
	}
	return data, count, nil
}

// Key exchange (Diffie-Hellman): the host sends a prime GENERATOR and a prime MODULUS, then
// its intermediate key GENERATOR^hostRandom mod MODULUS; the unit answers with its own
// intermediate key, and both compute the other's intermediate key ^ own random mod MODULUS.
// All three values travel as 8 little-endian bytes.

// DefaultPrimeBits is the size of the primes the driver generates. The fields are 64 bits
// wide, but ITL's reference implementation keeps every value below 2^31 and multiplies two
// residues in 64-bit integers; a unit doing the same would compute a different key from a
// larger modulus. See the package documentation.
const DefaultPrimeBits = 31

// ModExp returns base^exp mod m (m > 0), exactly.
func ModExp(base, exp, m uint64) uint64 {
	if m == 1 {
		return 0
	}
	result := uint64(1)
	base %= m
	for exp > 0 {
		if exp&1 != 0 {
			result = mulMod(result, base, m)
		}
		base = mulMod(base, base, m)
		exp >>= 1
	}
	return result
}

func mulMod(a, b, m uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	_, rem := bits.Div64(hi%m, lo, m)
	return rem
}

// IsPrime reports whether n is prime (Baillie-PSW through math/big, exact below 2^64).
func IsPrime(n uint64) bool {
	return new(big.Int).SetUint64(n).ProbablyPrime(20)
}

// RandomPrime returns a random prime of exactly nbits bits (16 <= nbits <= 64) read from r
// (nil means crypto/rand).
func RandomPrime(r io.Reader, nbits int) (uint64, error) {
	if nbits < 16 || nbits > 64 {
		return 0, fmt.Errorf("ssp: prime of %d bits: want 16..64", nbits)
	}
	if r == nil {
		r = rand.Reader
	}
	p, err := rand.Prime(r, nbits)
	if err != nil {
		return 0, fmt.Errorf("ssp: prime: %w", err)
	}
	return p.Uint64(), nil
}

// RandomBelow returns a uniformly random value in [2, n-2] read from r (nil means
// crypto/rand), for a Diffie-Hellman exponent. n must be at least 5.
func RandomBelow(r io.Reader, n uint64) (uint64, error) {
	if n < 5 {
		return 0, fmt.Errorf("ssp: random exponent below %d", n)
	}
	if r == nil {
		r = rand.Reader
	}
	v, err := rand.Int(r, new(big.Int).SetUint64(n-3))
	if err != nil {
		return 0, fmt.Errorf("ssp: random exponent: %w", err)
	}
	return v.Uint64() + 2, nil
}

// KeyExchange is the host's side of one key negotiation.
type KeyExchange struct {
	Generator, Modulus uint64
	random             uint64
}

// NewKeyExchange picks a generator and a modulus (two distinct primes of nbits bits, the
// generator the smaller) and the host's secret exponent.
func NewKeyExchange(r io.Reader, nbits int) (*KeyExchange, error) {
	g, err := RandomPrime(r, nbits)
	if err != nil {
		return nil, err
	}
	var m uint64
	for m = g; m == g; {
		if m, err = RandomPrime(r, nbits); err != nil {
			return nil, err
		}
	}
	if g > m {
		g, m = m, g
	}
	x, err := RandomBelow(r, m)
	if err != nil {
		return nil, err
	}
	return &KeyExchange{Generator: g, Modulus: m, random: x}, nil
}

// HostInter is the host's intermediate key, sent with REQUEST KEY EXCHANGE.
func (k *KeyExchange) HostInter() uint64 { return ModExp(k.Generator, k.random, k.Modulus) }

// Key returns the negotiated half of the key from the unit's intermediate key.
func (k *KeyExchange) Key(slaveInter uint64) uint64 { return ModExp(slaveInter, k.random, k.Modulus) }
