package ccnet

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/kioskd/kioskd/devices/acceptor"
)

// Host commands (the CMD byte of a host frame).
const (
	CmdAck             byte = 0x00 // host → unit after every reply except ACK and NAK; unit → host after a command
	CmdReset           byte = 0x30
	CmdGetStatus       byte = 0x31 // reply: 3-byte enable mask + 3-byte security mask
	CmdSetSecurity     byte = 0x32 // 3-byte mask, bit set = high security for that bill type
	CmdPoll            byte = 0x33 // reply: state byte, for some states followed by one data byte
	CmdEnableBillTypes byte = 0x34 // 3-byte enable mask + 3-byte escrow mask
	CmdStack           byte = 0x35
	CmdReturn          byte = 0x36
	CmdIdentification  byte = 0x37 // reply: 15 ASCII part number, 12 ASCII serial, 7-byte asset number
	CmdHold            byte = 0x38 // keeps the note in escrow for 10 s more
	CmdGetBillTable    byte = 0x41 // reply: 24 entries of 5 bytes
	CmdNak             byte = 0xFF // either way: the last frame arrived damaged, send it again
)

// RepIllegalCommand is the unit's reply (a frame without data) to a command it does not
// accept in its current state, or at all.
const RepIllegalCommand byte = 0x30

// Unit states (the first byte of the reply to POLL).
const (
	StPowerUp                byte = 0x10
	StPowerUpBillInValidator byte = 0x11 // RESET returns the note to the customer
	StPowerUpBillInStacker   byte = 0x12 // RESET stacks the note ("credit recovery": 0x81 follows)
	StInitialize             byte = 0x13
	StIdling                 byte = 0x14
	StAccepting              byte = 0x15
	StStacking               byte = 0x17
	StReturning              byte = 0x18
	StDisabled               byte = 0x19
	StHolding                byte = 0x1A
	StBusy                   byte = 0x1B // + YH: ask again after YH × 100 ms
	StRejecting              byte = 0x1C // + reject reason
	StCassetteFull           byte = 0x41
	StCassetteOut            byte = 0x42
	StValidatorJammed        byte = 0x43
	StCassetteJammed         byte = 0x44
	StCheated                byte = 0x45
	StPause                  byte = 0x46
	StFailure                byte = 0x47 // + failure code
	StEscrow                 byte = 0x80 // + bill type
	StStacked                byte = 0x81 // + bill type: the credit point
	StReturned               byte = 0x82 // + bill type
)

// NumBillTypes is how many bill types (0..23) the masks and the bill table cover.
const NumBillTypes = 24

// BusyUnit is the unit of BUSY's data byte.
const BusyUnit = 100 // milliseconds

// rejectReasons maps the data byte of REJECTING to the neutral model. CCNET's codes are
// finer than the model in places; the comment says what the unit means.
var rejectReasons = map[byte]acceptor.RejectReason{
	0x60: acceptor.RejectInsertion,       // insertion error
	0x61: acceptor.RejectMagnetic,        // magnetic (dielectric) error
	0x62: acceptor.RejectRemainingInHead, // a previous note remains in the head
	0x63: acceptor.RejectCounterfeit,     // compensation / multiplying-factor check failed (not "multiple notes")
	0x64: acceptor.RejectConveying,       // transport error
	0x65: acceptor.RejectDenomination,    // identification failed
	0x66: acceptor.RejectCounterfeit,     // verification failed
	0x67: acceptor.RejectPhotoPattern,    // optic sensor pattern
	0x68: acceptor.RejectInhibited,       // denomination inhibited
	0x69: acceptor.RejectCounterfeit,     // capacitance pattern
	0x6A: acceptor.RejectOperation,       // operation error
	0x6C: acceptor.RejectLength,          // length error
	0x6D: acceptor.RejectCounterfeit,     // UV properties
	0x92: acceptor.RejectDenomination,    // barcode unreadable
	0x93: acceptor.RejectDenomination,    // barcode: wrong number of characters
	0x94: acceptor.RejectDenomination,    // barcode: unknown start sequence
	0x95: acceptor.RejectDenomination,    // barcode: unknown stop sequence
}

var rejectNames = map[byte]string{
	0x60: "insertion", 0x61: "magnetic", 0x62: "bill remaining in head", 0x63: "multiplying (compensation factor)",
	0x64: "conveying", 0x65: "identification", 0x66: "verification", 0x67: "optic", 0x68: "inhibit",
	0x69: "capacitance", 0x6A: "operation", 0x6C: "length", 0x6D: "UV", 0x92: "unrecognised barcode",
	0x93: "barcode length", 0x94: "barcode start sequence", 0x95: "barcode stop sequence",
}

// RejectReason maps a CCNET reject code (data of REJECTING) to the neutral model; an
// unlisted code gives RejectUnknown.
func RejectReason(code byte) acceptor.RejectReason {
	if r, ok := rejectReasons[code]; ok {
		return r
	}
	return acceptor.RejectUnknown
}

// RejectName describes a CCNET reject code for technicians.
func RejectName(code byte) string {
	if s, ok := rejectNames[code]; ok {
		return "rejected: " + s
	}
	return fmt.Sprintf("reject code %#02x", code)
}

// failureNames names the data byte of FAILURE (0x47).
var failureNames = map[byte]string{
	0x50: "stack (drop cassette) motor failure",
	0x51: "transport motor speed failure",
	0x52: "transport motor failure",
	0x53: "aligning motor failure",
	0x54: "initial cassette status failure",
	0x55: "optic canal failure",
	0x56: "magnetic (inductive) canal failure",
	0x5F: "capacitance canal failure",
}

// FailureName describes a CCNET failure code.
func FailureName(code byte) string {
	if s, ok := failureNames[code]; ok {
		return s
	}
	return fmt.Sprintf("failure code %#02x", code)
}

// BillMask returns the 3-byte mask (as sent in ENABLE BILL TYPES, SET SECURITY and GET
// STATUS) with exactly the given bill types set: bill type n is bit n%8 of byte 2-n/8, so
// the last byte holds types 0..7.
func BillMask(types []int) ([3]byte, error) {
	var m [3]byte
	for _, t := range types {
		if t < 0 || t >= NumBillTypes {
			return [3]byte{}, fmt.Errorf("ccnet: bill type %d outside 0..%d", t, NumBillTypes-1)
		}
		m[2-t/8] |= 1 << (t % 8)
	}
	return m, nil
}

// TypeSet reports whether bill type t is set in mask m.
func TypeSet(m [3]byte, t int) bool {
	if t < 0 || t >= NumBillTypes {
		return false
	}
	return m[2-t/8]&(1<<(t%8)) != 0
}

// MaskTypes lists the bill types set in m, in increasing order.
func MaskTypes(m [3]byte) []int {
	var out []int
	for t := range NumBillTypes {
		if TypeSet(m, t) {
			out = append(out, t)
		}
	}
	return out
}

// AllTypes is the mask with every bill type set (the escrow mask the driver sends, so the
// host decides every note).
var AllTypes = [3]byte{0xFF, 0xFF, 0xFF}

// UnitStatus is the reply to GET STATUS.
type UnitStatus struct {
	Enabled  [3]byte // bill types enabled
	Security [3]byte // bill types at high security
}

// ParseStatus parses the payload of the reply to GET STATUS. Bill-to-bill units append a
// routing mask; anything after the first six bytes is ignored.
func ParseStatus(payload []byte) (UnitStatus, error) {
	if len(payload) < 6 {
		return UnitStatus{}, fmt.Errorf("ccnet: GET STATUS reply of %d bytes, want 6", len(payload))
	}
	var s UnitStatus
	copy(s.Enabled[:], payload[0:3])
	copy(s.Security[:], payload[3:6])
	return s, nil
}

// Identification is the reply to IDENTIFICATION.
type Identification struct {
	PartNumber   string  // 15 ASCII characters on the wire, model and firmware
	SerialNumber string  // 12 ASCII characters
	AssetNumber  [7]byte // binary, unique per unit
}

// Identification field sizes.
const (
	partNumberLen   = 15
	serialNumberLen = 12
	assetNumberLen  = 7
	// IdentificationLen is the size of the reply to IDENTIFICATION of a bill validator.
	IdentificationLen = partNumberLen + serialNumberLen + assetNumberLen
)

// ParseIdentification parses the payload of the reply to IDENTIFICATION. Later units
// append boot and firmware versions; they are ignored.
func ParseIdentification(payload []byte) (Identification, error) {
	if len(payload) < IdentificationLen {
		return Identification{}, fmt.Errorf("ccnet: IDENTIFICATION reply of %d bytes, want %d", len(payload), IdentificationLen)
	}
	id := Identification{
		PartNumber:   printable(payload[:partNumberLen]),
		SerialNumber: printable(payload[partNumberLen : partNumberLen+serialNumberLen]),
	}
	copy(id.AssetNumber[:], payload[partNumberLen+serialNumberLen:IdentificationLen])
	return id, nil
}

// AppendIdentification appends the wire form of id (fields padded with spaces, truncated to
// their size).
func AppendIdentification(dst []byte, id Identification) []byte {
	pad := func(s string, n int) []byte {
		b := bytes.Repeat([]byte{' '}, n)
		copy(b, s)
		return b
	}
	dst = append(dst, pad(id.PartNumber, partNumberLen)...)
	dst = append(dst, pad(id.SerialNumber, serialNumberLen)...)
	return append(dst, id.AssetNumber[:]...)
}

func (id Identification) String() string {
	return fmt.Sprintf("part %q serial %q asset %X", id.PartNumber, id.SerialNumber, id.AssetNumber[:])
}

// printable keeps the printable ASCII of b, trimmed.
func printable(b []byte) string {
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7E {
			return -1
		}
		return r
	}, string(b)))
}

// BillEntry is one entry of the bill table (reply to GET BILL TABLE): Value × 10^Exponent
// major units of Country's currency when bit 7 of Exponent is clear, Value / 10^(Exponent &
// 0x7F) when it is set. An all-zero entry is an unused bill type.
type BillEntry struct {
	Value    byte
	Country  [3]byte // three ASCII letters: ISO 3166 country ("RUS") or currency ("EUR")
	Exponent byte
}

// BillEntryLen is the size of one bill table entry.
const BillEntryLen = 5

// Used reports whether the entry describes a bill type.
func (e BillEntry) Used() bool { return e != BillEntry{} }

// Note converts the entry to the neutral model for bill type code; ok is false when the
// country or the value cannot be expressed in minor units.
func (e BillEntry) Note(code int) (n acceptor.Note, ok bool) {
	n.Code = code
	cur := CountryCurrency(string(e.Country[:]))
	digits, known := MinorDigits(cur)
	if !known || e.Value == 0 {
		return n, false
	}
	shift := digits + int(e.Exponent&0x7F)
	if e.Exponent&0x80 != 0 {
		shift = digits - int(e.Exponent&0x7F)
	}
	if shift < 0 || shift > 15 {
		return n, false
	}
	v := int64(e.Value)
	for range shift {
		v *= 10
	}
	n.ValueMinor, n.Currency = v, cur
	return n, true
}

func (e BillEntry) String() string {
	if e.Exponent&0x80 != 0 {
		return fmt.Sprintf("%d/10^%d %q", e.Value, e.Exponent&0x7F, e.Country[:])
	}
	return fmt.Sprintf("%d×10^%d %q", e.Value, e.Exponent, e.Country[:])
}

// EntryFor expresses a note as a bill table entry, the inverse of Note.
func EntryFor(n acceptor.Note) (BillEntry, error) {
	country, ok := CurrencyCountry(n.Currency)
	digits, ok2 := MinorDigits(n.Currency)
	if !ok || !ok2 || n.ValueMinor <= 0 {
		return BillEntry{}, fmt.Errorf("ccnet: note %v cannot be expressed in a bill table", n)
	}
	// Find v × 10^shift = ValueMinor with v a byte, the shift as large as possible.
	v, shift := n.ValueMinor, 0
	for v%10 == 0 {
		v /= 10
		shift++
	}
	if v > 255 {
		return BillEntry{}, fmt.Errorf("ccnet: note %v has too many significant digits", n)
	}
	var e BillEntry
	copy(e.Country[:], country)
	e.Value = byte(v)
	if exp := shift - digits; exp >= 0 {
		e.Exponent = byte(exp)
	} else {
		e.Exponent = 0x80 | byte(-exp)
	}
	return e, nil
}

// ParseBillTable parses the payload of the reply to GET BILL TABLE; entry i describes bill
// type i.
func ParseBillTable(payload []byte) ([]BillEntry, error) {
	if len(payload)%BillEntryLen != 0 || len(payload) > NumBillTypes*BillEntryLen {
		return nil, fmt.Errorf("ccnet: bill table of %d bytes is not up to %d entries of %d bytes", len(payload), NumBillTypes, BillEntryLen)
	}
	out := make([]BillEntry, 0, len(payload)/BillEntryLen)
	for i := 0; i+BillEntryLen <= len(payload); i += BillEntryLen {
		var e BillEntry
		e.Value = payload[i]
		copy(e.Country[:], payload[i+1:i+4])
		e.Exponent = payload[i+4]
		out = append(out, e)
	}
	return out, nil
}

// AppendBillTable appends the wire form of entries (one per bill type, from 0) padded with
// unused entries to NumBillTypes.
func AppendBillTable(dst []byte, entries []BillEntry) []byte {
	for i := range NumBillTypes {
		var e BillEntry
		if i < len(entries) {
			e = entries[i]
		}
		dst = append(dst, e.Value, e.Country[0], e.Country[1], e.Country[2], e.Exponent)
	}
	return dst
}

// countries maps the three letters of a bill table entry to ISO 4217. Units write an ISO
// 3166 alpha-3 country code (public peer code shows "RUS", "QAT", "VNM"); euro units write
// "EUR". Where a currency has several countries, the first listed is the one EntryFor
// writes.
var countries = []struct{ country, currency string }{
	{"RUS", "RUB"}, {"EUR", "EUR"}, {"USA", "USD"}, {"CHN", "CNY"}, {"KAZ", "KZT"},
	{"UKR", "UAH"}, {"BLR", "BYN"}, {"UZB", "UZS"}, {"KGZ", "KGS"}, {"TJK", "TJS"},
	{"MDA", "MDL"}, {"ARM", "AMD"}, {"AZE", "AZN"}, {"GEO", "GEL"}, {"MNG", "MNT"},
	{"VNM", "VND"}, {"QAT", "QAR"}, {"IND", "INR"}, {"TUR", "TRY"}, {"GBR", "GBP"},
	{"CHE", "CHF"}, {"POL", "PLN"}, {"CAN", "CAD"}, {"ISR", "ILS"}, {"DEU", "EUR"},
	{"FRA", "EUR"}, {"ITA", "EUR"}, {"ESP", "EUR"},
}

// minorDigits is ISO 4217's number of minor-unit digits for the currencies above.
var minorDigits = map[string]int{
	"RUB": 2, "EUR": 2, "USD": 2, "CNY": 2, "KZT": 2, "UAH": 2, "BYN": 2, "UZS": 2, "KGS": 2,
	"TJS": 2, "MDL": 2, "AMD": 2, "AZN": 2, "GEL": 2, "MNT": 2, "VND": 0, "QAR": 2, "INR": 2,
	"TRY": 2, "GBP": 2, "CHF": 2, "PLN": 2, "CAD": 2, "ILS": 2,
}

// CountryCurrency returns the ISO 4217 code for the three letters of a bill table entry, or
// "" when unknown. Letters that already name a listed currency are taken as that currency.
func CountryCurrency(country string) string {
	for _, c := range countries {
		if c.country == country {
			return c.currency
		}
	}
	if _, ok := minorDigits[country]; ok {
		return country
	}
	return ""
}

// CurrencyCountry returns the three letters a unit writes for an ISO 4217 code.
func CurrencyCountry(currency string) (string, bool) {
	for _, c := range countries {
		if c.currency == currency {
			return c.country, true
		}
	}
	return "", false
}

// MinorDigits returns ISO 4217's minor-unit digits for currency.
func MinorDigits(currency string) (int, bool) {
	d, ok := minorDigits[currency]
	return d, ok
}
