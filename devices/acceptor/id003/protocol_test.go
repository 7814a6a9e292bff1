package id003

import (
	"errors"
	"testing"

	"github.com/kioskd/kioskd/devices/acceptor"
)

func TestDenominationBitmap(t *testing.T) {
	for _, tc := range []struct {
		codes []int
		want  [2]byte
	}{
		{nil, [2]byte{0xFF, 0xFF}},                           // nothing enabled
		{[]int{0x61}, [2]byte{0xFE, 0xFF}},                   // bit 0 of the first byte
		{[]int{0x61, 0x63}, [2]byte{0xFA, 0xFF}},             // bits 0 and 2
		{[]int{0x68, 0x69, 0x70}, [2]byte{0x7F, 0x7E}},       // last of byte 0, first and last of byte 1
		{[]int{0x61, 0x62, 0x63, 0x64}, [2]byte{0xF0, 0xFF}}, // the kiosk's usual four
	} {
		got, err := DenominationBitmap(tc.codes)
		if err != nil || got != tc.want {
			t.Errorf("DenominationBitmap(%x) = % X, %v; want % X", tc.codes, got, err, tc.want)
		}
		for c := FirstCode; c <= LastCode; c++ {
			want := false
			for _, e := range tc.codes {
				want = want || e == c
			}
			if CodeEnabled(got, byte(c)) != want {
				t.Errorf("CodeEnabled(% X, %#x) != %v", got, c, want)
			}
		}
	}
	for _, bad := range []int{0x60, 0x71, 0, -1} {
		if _, err := DenominationBitmap([]int{bad}); err == nil {
			t.Errorf("DenominationBitmap(%#x) accepted", bad)
		}
	}
}

func TestCurrencyEntries(t *testing.T) {
	for _, tc := range []struct {
		note  acceptor.Note
		entry CurrencyEntry
	}{
		{acceptor.Note{Code: 0x61, ValueMinor: 100, Currency: "CNY"}, CurrencyEntry{0x61, 0x2D, 1, 0}},
		{acceptor.Note{Code: 0x66, ValueMinor: 10000, Currency: "CNY"}, CurrencyEntry{0x66, 0x2D, 100, 0}},
		{acceptor.Note{Code: 0x67, ValueMinor: 50000, Currency: "EUR"}, CurrencyEntry{0x67, 0xE0, 50, 1}},
		{acceptor.Note{Code: 0x62, ValueMinor: 200000, Currency: "RUB"}, CurrencyEntry{0x62, 0x27, 200, 1}},
	} {
		e, err := EntryFor(tc.note)
		if err != nil || e != tc.entry {
			t.Errorf("EntryFor(%v) = %+v, %v; want %+v", tc.note, e, err, tc.entry)
		}
		n, ok := tc.entry.Note()
		if !ok || n != tc.note {
			t.Errorf("%+v.Note() = %v, %v; want %v", tc.entry, n, ok, tc.note)
		}
	}
	for _, bad := range []acceptor.Note{
		{Code: 0x61, ValueMinor: 150, Currency: "CNY"},   // 1.50: a fraction of a major unit
		{Code: 0x61, ValueMinor: 100, Currency: "XXX"},   // no JCM country code known
		{Code: 0x20, ValueMinor: 100, Currency: "CNY"},   // not an escrow code
		{Code: 0x61, ValueMinor: 25700, Currency: "CNY"}, // 257: too many significant digits
	} {
		if _, err := EntryFor(bad); err == nil {
			t.Errorf("EntryFor(%v) accepted", bad)
		}
	}
	if _, ok := (CurrencyEntry{0x61, 0x99, 1, 0}).Note(); ok {
		t.Error("an unknown country converted")
	}
	if _, err := ParseCurrencyTable([]byte{0x61, 0x2D, 1}); err == nil {
		t.Error("a partial entry parsed")
	}
	got, err := ParseCurrencyTable([]byte{0x61, 0x2D, 1, 0, 0, 0, 0, 0})
	if err != nil || len(got) != 1 {
		t.Errorf("empty slots are skipped: %v %v", got, err)
	}
	if !errors.Is(func() error { _, err := Encode(0, make([]byte, 300)...); return err }(), ErrTooLong) {
		t.Error("oversized frame encoded")
	}
}
