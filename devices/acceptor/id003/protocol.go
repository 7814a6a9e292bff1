package id003

import (
	"fmt"

	"github.com/kioskd/kioskd/devices/acceptor"
)

// Host commands. Operation commands are answered by ACK, setting commands by an echo of
// the whole command, requests by data; the host's own ACK (to VEND VALID) gets no answer.
const (
	CmdStatusRequest byte = 0x11
	CmdAck           byte = 0x50 // host → unit after VEND VALID; unit → host after an operation command
	CmdReset         byte = 0x40
	CmdStack1        byte = 0x41
	CmdStack2        byte = 0x42
	CmdReturn        byte = 0x43
	CmdHold          byte = 0x44
	CmdWait          byte = 0x45
	CmdSetDenoms     byte = 0xC0 // 2-byte bitmap, bit set = denomination disabled
	CmdSetSecurity   byte = 0xC1 // 2-byte bitmap, bit set = high security for that denomination
	CmdSetCommMode   byte = 0xC2 // 1 byte: 0 polling, 1/2 interrupt modes
	CmdSetInhibit    byte = 0xC3 // 1 byte: 1 inhibit, 0 accept
	CmdSetDirection  byte = 0xC4
	CmdSetOptional   byte = 0xC5
	CmdVersion       byte = 0x88 // reply: 0x88 + ASCII text
	CmdCurrency      byte = 0x8A // reply: 0x8A + 4 bytes an entry (code, country, value, exponent)
)

// Unit statuses (the CMD byte of the unit's reply to STATUS REQUEST).
const (
	StIdling         byte = 0x11
	StAccepting      byte = 0x12
	StEscrow         byte = 0x13 // + escrow code 0x61..
	StStacking       byte = 0x14
	StVendValid      byte = 0x15
	StStacked        byte = 0x16
	StRejecting      byte = 0x17 // + reject reason
	StReturning      byte = 0x18
	StHolding        byte = 0x19
	StDisabled       byte = 0x1A
	StInitialize     byte = 0x1B
	StPowerUp        byte = 0x40
	StPowerUpAcc     byte = 0x41 // power up with a bill in the acceptor
	StPowerUpStk     byte = 0x42 // power up with a bill in the stacker
	StStackerFull    byte = 0x43
	StStackerOpen    byte = 0x44
	StAcceptorJam    byte = 0x45
	StStackerJam     byte = 0x46
	StPause          byte = 0x47
	StCheated        byte = 0x48
	StFailure        byte = 0x49 // + failure code
	StCommError      byte = 0x4A
	StInvalidCommand byte = 0x4B
)

// Escrow codes a unit can report; the denomination bitmap of CmdSetDenoms covers
// FirstCode..LastCode, bit 0 of the first byte being FirstCode.
const (
	FirstCode = 0x61
	LastCode  = 0x70
)

// The denomination settings that keep every note enabled and every note at standard security.
const (
	AllDenominationsEnabled = 0x0000
	StandardSecurity        = 0x0000
)

// rejectReasons maps the data byte of REJECTING to the neutral model.
var rejectReasons = map[byte]acceptor.RejectReason{
	0x71: acceptor.RejectInsertion,
	0x72: acceptor.RejectMagnetic,
	0x73: acceptor.RejectRemainingInHead,
	0x74: acceptor.RejectMultiple,
	0x75: acceptor.RejectConveying,
	0x76: acceptor.RejectDenomination,
	0x77: acceptor.RejectPhotoPattern,
	0x78: acceptor.RejectPhotoLevel,
	0x79: acceptor.RejectInhibited,
	0x7B: acceptor.RejectOperation,
	0x7C: acceptor.RejectRemainingInStacker,
	0x7D: acceptor.RejectLength,
	0x7E: acceptor.RejectPhotoPattern, // "photo pattern 2" (colour pattern on some firmware)
	0x7F: acceptor.RejectCounterfeit,
}

// RejectReason maps an ID-003 reject code (data of REJECTING) to the neutral model; an
// unlisted code gives RejectUnknown.
func RejectReason(code byte) acceptor.RejectReason {
	if r, ok := rejectReasons[code]; ok {
		return r
	}
	return acceptor.RejectUnknown
}

// failureNames names the data byte of FAILURE, for technicians. Gathered from public peer
// implementations; not every unit reports every code.
var failureNames = map[byte]string{
	0xA2: "stack motor failure",
	0xA5: "transport motor speed failure",
	0xA6: "transport motor failure",
	0xA7: "aligning motor failure",
	0xA8: "solenoid failure",
	0xA9: "PB unit failure",
	0xAB: "cash box not ready",
	0xAC: "optical sensor failure",
	0xAD: "magnetic sensor failure",
	0xAF: "validator head removed",
	0xB0: "boot ROM failure",
	0xB1: "external ROM failure",
	0xB2: "RAM failure",
	0xB3: "external ROM writing failure",
}

// FailureName describes an ID-003 failure code.
func FailureName(code byte) string {
	if s, ok := failureNames[code]; ok {
		return s
	}
	return fmt.Sprintf("failure code %#02x", code)
}

// countryCurrency maps JCM's country codes in the currency table (0x8A) to ISO 4217. Only
// codes seen in public peer implementations are listed; anything else stays unknown and the
// configured table is used as it is.
var countryCurrency = map[byte]string{
	0x01: "USD", 0x08: "CAD", 0x16: "CHF", 0x27: "RUB", 0x2D: "CNY", 0x30: "HUF",
	0x51: "KZT", 0x5C: "UAH", 0x63: "INR", 0x78: "IRR", 0x7E: "MDL", 0x86: "UZS", 0xE0: "EUR",
}

// CountryCurrency returns the ISO 4217 code for a JCM country code, or "" when unknown.
func CountryCurrency(country byte) string { return countryCurrency[country] }

// CurrencyCountry returns the JCM country code for an ISO 4217 code.
func CurrencyCountry(currency string) (byte, bool) {
	for k, v := range countryCurrency {
		if v == currency {
			return k, true
		}
	}
	return 0, false
}

// minorDigits is ISO 4217's number of minor-unit digits for the currencies above.
var minorDigits = map[string]int{
	"USD": 2, "CAD": 2, "CHF": 2, "RUB": 2, "CNY": 2, "HUF": 2, "KZT": 2, "UAH": 2,
	"INR": 2, "IRR": 2, "MDL": 2, "UZS": 2, "EUR": 2, "JPY": 0,
}

// MinorDigits returns ISO 4217's minor-unit digits for currency.
func MinorDigits(currency string) (int, bool) {
	d, ok := minorDigits[currency]
	return d, ok
}

// CurrencyEntry is one entry of the currency table (reply to CmdCurrency): the face value is
// Value × 10^Exponent major units of the country's currency.
type CurrencyEntry struct {
	Code     byte
	Country  byte
	Value    byte
	Exponent byte
}

// Note converts the entry to the neutral model; ok is false when the country or the value
// cannot be expressed in minor units.
func (e CurrencyEntry) Note() (n acceptor.Note, ok bool) {
	n.Code = int(e.Code)
	cur := CountryCurrency(e.Country)
	digits, known := MinorDigits(cur)
	if !known || e.Exponent > 12 {
		return n, false
	}
	v := int64(e.Value)
	for range int(e.Exponent) + digits {
		v *= 10
	}
	n.ValueMinor, n.Currency = v, cur
	return n, v > 0
}

// EntryFor expresses a note as a currency-table entry, the inverse of Note.
func EntryFor(n acceptor.Note) (CurrencyEntry, error) {
	country, ok := CurrencyCountry(n.Currency)
	digits, ok2 := MinorDigits(n.Currency)
	if !ok || !ok2 || n.Code < FirstCode || n.Code > LastCode || n.ValueMinor <= 0 {
		return CurrencyEntry{}, fmt.Errorf("id003: note %v cannot be expressed in a currency table", n)
	}
	major := n.ValueMinor
	for range digits {
		if major%10 != 0 {
			return CurrencyEntry{}, fmt.Errorf("id003: note %v has a fraction of a major unit", n)
		}
		major /= 10
	}
	exp := 0
	for major > 255 && major%10 == 0 {
		major /= 10
		exp++
	}
	if major > 255 {
		return CurrencyEntry{}, fmt.Errorf("id003: note %v has too many significant digits", n)
	}
	v := major
	return CurrencyEntry{Code: byte(n.Code), Country: country, Value: byte(v), Exponent: byte(exp)}, nil
}

// ParseCurrencyTable parses the data of the reply to CmdCurrency.
func ParseCurrencyTable(data []byte) ([]CurrencyEntry, error) {
	if len(data)%4 != 0 {
		return nil, fmt.Errorf("id003: currency table of %d bytes is not a whole number of 4-byte entries", len(data))
	}
	out := make([]CurrencyEntry, 0, len(data)/4)
	for i := 0; i+4 <= len(data); i += 4 {
		e := CurrencyEntry{Code: data[i], Country: data[i+1], Value: data[i+2], Exponent: data[i+3]}
		if e.Code == 0 && e.Country == 0 && e.Value == 0 {
			continue // unused slot
		}
		out = append(out, e)
	}
	return out, nil
}

// DenominationBitmap returns the two data bytes of CmdSetDenoms that enable exactly codes
// (bit set = disabled).
func DenominationBitmap(codes []int) ([2]byte, error) {
	var enabled uint16
	for _, c := range codes {
		if c < FirstCode || c > LastCode {
			return [2]byte{}, fmt.Errorf("id003: escrow code %#x outside %#x..%#x", c, FirstCode, LastCode)
		}
		enabled |= 1 << (c - FirstCode)
	}
	disabled := ^enabled
	return [2]byte{byte(disabled), byte(disabled >> 8)}, nil
}

// CodeEnabled reports whether the CmdSetDenoms bitmap b enables escrow code c.
func CodeEnabled(b [2]byte, c byte) bool {
	if c < FirstCode || c > LastCode {
		return false
	}
	bits := uint16(b[0]) | uint16(b[1])<<8
	return bits&(1<<(c-FirstCode)) == 0
}
