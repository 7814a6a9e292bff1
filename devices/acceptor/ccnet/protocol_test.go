package ccnet

import (
	"strings"
	"testing"

	"github.com/kioskd/kioskd/devices/acceptor"
)

func TestBillMask(t *testing.T) {
	for _, tc := range []struct {
		types []int
		want  [3]byte
	}{
		{nil, [3]byte{0, 0, 0}},
		{[]int{0}, [3]byte{0, 0, 0x01}},               // type 0 is bit 0 of the last byte
		{[]int{0, 2, 3}, [3]byte{0, 0, 0x0D}},         // the frame table's enable mask
		{[]int{7, 8}, [3]byte{0, 0x01, 0x80}},         // last of byte 2, first of byte 1
		{[]int{16, 23}, [3]byte{0x81, 0, 0}},          // byte 0 holds types 16..23
		{[]int{23, 0, 23}, [3]byte{0x80, 0x00, 0x01}}, // duplicates are harmless
	} {
		got, err := BillMask(tc.types)
		if err != nil || got != tc.want {
			t.Errorf("BillMask(%v) = % X, %v; want % X", tc.types, got, err, tc.want)
		}
		for ty := range NumBillTypes {
			want := false
			for _, e := range tc.types {
				want = want || e == ty
			}
			if TypeSet(got, ty) != want {
				t.Errorf("TypeSet(% X, %d) != %v", got, ty, want)
			}
		}
	}
	if got := MaskTypes([3]byte{0x80, 0x01, 0x05}); len(got) != 4 || got[0] != 0 || got[1] != 2 || got[2] != 8 || got[3] != 23 {
		t.Errorf("MaskTypes = %v", got)
	}
	for _, bad := range []int{-1, 24, 100} {
		if _, err := BillMask([]int{bad}); err == nil {
			t.Errorf("BillMask(%d) accepted", bad)
		}
		if TypeSet(AllTypes, bad) {
			t.Errorf("TypeSet(all, %d)", bad)
		}
	}
}

func TestBillEntries(t *testing.T) {
	entry := func(v byte, c string, e byte) BillEntry {
		be := BillEntry{Value: v, Exponent: e}
		copy(be.Country[:], c)
		return be
	}
	for _, tc := range []struct {
		note  acceptor.Note
		entry BillEntry
	}{
		{acceptor.Note{Code: 2, ValueMinor: 1000, Currency: "RUB"}, entry(1, "RUS", 1)},    // 10 RUB
		{acceptor.Note{Code: 5, ValueMinor: 50000, Currency: "RUB"}, entry(5, "RUS", 2)},   // 500 RUB
		{acceptor.Note{Code: 0, ValueMinor: 500, Currency: "EUR"}, entry(5, "EUR", 0)},     // 5 EUR (observed: 05 'EUR' 00)
		{acceptor.Note{Code: 1, ValueMinor: 10000, Currency: "CNY"}, entry(1, "CHN", 2)},   // 100 CNY
		{acceptor.Note{Code: 3, ValueMinor: 50, Currency: "USD"}, entry(5, "USA", 0x81)},   // 0.50 USD: bit 7 = decimal places
		{acceptor.Note{Code: 4, ValueMinor: 200000, Currency: "VND"}, entry(2, "VNM", 5)},  // 200 000 VND, no minor unit
		{acceptor.Note{Code: 6, ValueMinor: 25000, Currency: "KZT"}, entry(25, "KAZ", 1)},  // 250 KZT
		{acceptor.Note{Code: 7, ValueMinor: 2000000, Currency: "QAR"}, entry(2, "QAT", 4)}, // 20 000 QAR (sic)
		{acceptor.Note{Code: 23, ValueMinor: 100000, Currency: "UZS"}, entry(1, "UZB", 3)}, // 1 000 UZS
		{acceptor.Note{Code: 9, ValueMinor: 12500, Currency: "UAH"}, entry(125, "UKR", 0)}, // 125 UAH
		{acceptor.Note{Code: 8, ValueMinor: 100, Currency: "GBP"}, entry(1, "GBR", 0)},     // 1 GBP
		{acceptor.Note{Code: 10, ValueMinor: 1, Currency: "EUR"}, entry(1, "EUR", 0x82)},   // 0.01 EUR
		{acceptor.Note{Code: 11, ValueMinor: 20000, Currency: "CHF"}, entry(2, "CHE", 2)},  // 200 CHF
	} {
		e, err := EntryFor(tc.note)
		if err != nil || e != tc.entry {
			t.Errorf("EntryFor(%v) = %v, %v; want %v", tc.note, e, err, tc.entry)
		}
		n, ok := tc.entry.Note(tc.note.Code)
		if !ok || n != tc.note {
			t.Errorf("%v.Note() = %v, %v; want %v", tc.entry, n, ok, tc.note)
		}
	}
	// EntryFor writes the fewest significant digits; a unit may write more.
	if n, ok := entry(250, "KAZ", 0).Note(6); !ok || n.ValueMinor != 25000 {
		t.Errorf("250×10^0 KAZ = %v %v", n, ok)
	}
	// Letters that name a listed currency are taken as that currency.
	if n, ok := entry(1, "RUB", 2).Note(0); !ok || n.Currency != "RUB" || n.ValueMinor != 10000 {
		t.Errorf("currency letters: %v %v", n, ok)
	}
	for _, bad := range []BillEntry{
		entry(1, "XYZ", 0),    // unknown country
		entry(0, "RUS", 0),    // no value
		entry(5, "VNM", 0x81), // 0.5 VND: below the minor unit
		entry(5, "RUS", 0x7F), // 5 × 10^127
		{},                    // unused
	} {
		if _, ok := bad.Note(0); ok {
			t.Errorf("%v converted", bad)
		}
	}
	for _, bad := range []acceptor.Note{
		{Code: 1, ValueMinor: 25700, Currency: "RUB"}, // 257: too many significant digits
		{Code: 1, ValueMinor: 100, Currency: "XXX"},   // no country known
		{Code: 1, ValueMinor: 0, Currency: "RUB"},
	} {
		if _, err := EntryFor(bad); err == nil {
			t.Errorf("EntryFor(%v) accepted", bad)
		}
	}
	if (BillEntry{}).Used() || !entry(1, "RUS", 0).Used() {
		t.Error("Used")
	}
}

func TestBillTablePayload(t *testing.T) {
	entries := []BillEntry{{Value: 1, Country: [3]byte{'R', 'U', 'S'}, Exponent: 1}, {}, {Value: 5, Country: [3]byte{'R', 'U', 'S'}, Exponent: 2}}
	wire := AppendBillTable(nil, entries)
	if len(wire) != NumBillTypes*BillEntryLen {
		t.Fatalf("%d bytes", len(wire))
	}
	got, err := ParseBillTable(wire)
	if err != nil || len(got) != NumBillTypes || got[0] != entries[0] || got[1].Used() || got[2] != entries[2] || got[23].Used() {
		t.Fatalf("ParseBillTable = %v, %v", got, err)
	}
	for _, bad := range [][]byte{make([]byte, 7), make([]byte, 125)} {
		if _, err := ParseBillTable(bad); err == nil {
			t.Errorf("%d-byte table parsed", len(bad))
		}
	}
}

func TestIdentificationAndStatus(t *testing.T) {
	id, err := ParseIdentification(identWire[3 : len(identWire)-2])
	if err != nil {
		t.Fatal(err)
	}
	if id.PartNumber != "SM-CN2715" || id.SerialNumber != "41A012345678" || id.AssetNumber != [7]byte{1, 2, 3, 4, 5, 6, 7} {
		t.Fatalf("identification %+v", id)
	}
	if s := id.String(); !strings.Contains(s, "SM-CN2715") || !strings.Contains(s, "01020304050607") {
		t.Errorf("String = %q", s)
	}
	if re := AppendIdentification(nil, id); string(re) != string(identWire[3:len(identWire)-2]) {
		t.Errorf("AppendIdentification = % X", re)
	}
	// Later firmware appends versions: ignored. Control characters are dropped.
	long := append(append([]byte("AB\x00CD\x07         "), "SERIAL      "...), make([]byte, 7+40)...)
	if id, err := ParseIdentification(long); err != nil || id.PartNumber != "ABCD" || id.SerialNumber != "SERIAL" {
		t.Errorf("long identification: %+v %v", id, err)
	}
	if _, err := ParseIdentification(make([]byte, IdentificationLen-1)); err == nil {
		t.Error("short identification parsed")
	}
	st, err := ParseStatus([]byte{0x00, 0x00, 0x0D, 0x80, 0x00, 0x01, 0xAA, 0xBB, 0xCC})
	if err != nil || MaskTypes(st.Enabled)[1] != 2 || !TypeSet(st.Security, 23) || !TypeSet(st.Security, 0) {
		t.Errorf("ParseStatus = %+v, %v", st, err)
	}
	if _, err := ParseStatus([]byte{1, 2, 3}); err == nil {
		t.Error("short status parsed")
	}
}

func TestRejectAndFailureCodes(t *testing.T) {
	// Every reject code of the CCNET description, from the public tables that quote it.
	want := map[byte]acceptor.RejectReason{
		0x60: acceptor.RejectInsertion, 0x61: acceptor.RejectMagnetic,
		0x62: acceptor.RejectRemainingInHead, 0x63: acceptor.RejectCounterfeit,
		0x64: acceptor.RejectConveying, 0x65: acceptor.RejectDenomination,
		0x66: acceptor.RejectCounterfeit, 0x67: acceptor.RejectPhotoPattern,
		0x68: acceptor.RejectInhibited, 0x69: acceptor.RejectCounterfeit,
		0x6A: acceptor.RejectOperation, 0x6C: acceptor.RejectLength,
		0x6D: acceptor.RejectCounterfeit, 0x92: acceptor.RejectDenomination,
		0x93: acceptor.RejectDenomination, 0x94: acceptor.RejectDenomination,
		0x95: acceptor.RejectDenomination,
	}
	for code, r := range want {
		if RejectReason(code) != r {
			t.Errorf("RejectReason(%#x) = %v, want %v", code, RejectReason(code), r)
		}
		if strings.HasPrefix(RejectName(code), "reject code") {
			t.Errorf("RejectName(%#x) = %q has no name", code, RejectName(code))
		}
	}
	for _, code := range []byte{0x00, 0x6B, 0x6E, 0x71, 0x96} {
		if RejectReason(code) != acceptor.RejectUnknown || !strings.HasPrefix(RejectName(code), "reject code") {
			t.Errorf("undocumented %#x: %v %q", code, RejectReason(code), RejectName(code))
		}
	}
	for code, s := range map[byte]string{
		0x50: "stack", 0x51: "speed", 0x52: "transport motor", 0x53: "aligning",
		0x54: "cassette status", 0x55: "optic", 0x56: "magnetic", 0x5F: "capacitance",
	} {
		if !strings.Contains(FailureName(code), s) {
			t.Errorf("FailureName(%#x) = %q", code, FailureName(code))
		}
	}
	if FailureName(0x99) != "failure code 0x99" {
		t.Errorf("FailureName(0x99) = %q", FailureName(0x99))
	}
}

func TestStatusNames(t *testing.T) {
	for st, name := range map[byte]string{
		StPowerUp: "power_up", StPowerUpBillInValidator: "power_up_bill_in_validator",
		StPowerUpBillInStacker: "power_up_bill_in_stacker", StInitialize: "initialize",
		StIdling: "idling", StAccepting: "accepting", StStacking: "stacking",
		StReturning: "returning", StDisabled: "disabled", StHolding: "holding", StBusy: "busy",
		StRejecting: "rejecting", StCassetteFull: "cassette_full", StCassetteOut: "cassette_out",
		StValidatorJammed: "validator_jammed", StCassetteJammed: "cassette_jammed",
		StCheated: "cheated", StPause: "pause", StFailure: "failure", StEscrow: "escrow",
		StStacked: "stacked", StReturned: "returned", 0x16: "unknown", 0x30: "unknown",
	} {
		if StatusName(st) != name {
			t.Errorf("StatusName(%#x) = %q, want %q", st, StatusName(st), name)
		}
	}
	if unitState(200).String() != "unitState(200)" {
		t.Error("out-of-range state name")
	}
}
