// Package crc16 implements the three 16-bit CRCs that bill acceptor protocols use.
//
// Parameters follow the Rocksoft model as catalogued by the CRC RevEng project:
//
//	KERMIT  poly 0x1021 reflected, init 0x0000, check 0x2189  (JCM ID-003, CashCode CCNET)
//	CMS     poly 0x8005 not reflected, init 0xFFFF, check 0xAEE7 (ITL SSP/eSSP)
//	XMODEM  poly 0x1021 not reflected, init 0x0000, check 0x31C3 (ccTalk CRC mode)
//
// The check value is the CRC of the ASCII bytes "123456789". Tables are built at package
// initialisation from the polynomial so there is no hand-typed table to get wrong.
package crc16

var (
	kermitTable  = reflectedTable(0x8408) // 0x1021 bit-reversed
	msbTable1021 = msbTable(0x1021)
	msbTable8005 = msbTable(0x8005)
)

func reflectedTable(rpoly uint16) *[256]uint16 {
	var t [256]uint16
	for i := range t {
		c := uint16(i)
		for range 8 {
			if c&1 != 0 {
				c = c>>1 ^ rpoly
			} else {
				c >>= 1
			}
		}
		t[i] = c
	}
	return &t
}

func msbTable(poly uint16) *[256]uint16 {
	var t [256]uint16
	for i := range t {
		c := uint16(i) << 8
		for range 8 {
			if c&0x8000 != 0 {
				c = c<<1 ^ poly
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return &t
}

// Kermit returns CRC-16/KERMIT of b. ID-003 and CCNET send it low byte first.
func Kermit(b []byte) uint16 {
	var c uint16
	for _, x := range b {
		c = c>>8 ^ kermitTable[byte(c)^x]
	}
	return c
}

// CMS returns CRC-16/CMS of b (poly 0x8005, init 0xFFFF, MSB first, no final xor).
// SSP sends it low byte first.
func CMS(b []byte) uint16 {
	c := uint16(0xFFFF)
	for _, x := range b {
		c = c<<8 ^ msbTable8005[byte(c>>8)^x]
	}
	return c
}

// XModem returns CRC-16/XMODEM of b (poly 0x1021, init 0, MSB first).
func XModem(b []byte) uint16 {
	var c uint16
	for _, x := range b {
		c = c<<8 ^ msbTable1021[byte(c>>8)^x]
	}
	return c
}
