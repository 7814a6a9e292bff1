package receipts

import (
	"math"
	"testing"
)

func TestFormatMinor(t *testing.T) {
	cases := []struct {
		amount int64
		code   string
		want   string
	}{
		{0, "CNY", "0.00"},
		{5, "USD", "0.05"},
		{-5, "USD", "-0.05"},
		{37000, "CNY", "370.00"},
		{1234567, "EUR", "12,345.67"},
		{10000, "JPY", "10,000"},
		{999, "KRW", "999"},
		{1000, "KRW", "1,000"},
		{1234, "KWD", "1.234"},
		{150, "XXX", "1.50"}, // unknown: exponent 2
		{math.MaxInt64, "USD", "92,233,720,368,547,758.07"},
		{math.MinInt64, "USD", "-92,233,720,368,547,758.08"},
	}
	for _, c := range cases {
		if got := FormatMinor(c.amount, c.code); got != c.want {
			t.Errorf("FormatMinor(%d, %s) = %q, want %q", c.amount, c.code, got, c.want)
		}
	}
	if got := FormatMoney(37000, "CNY"); got != "CNY 370.00" {
		t.Errorf("FormatMoney = %q", got)
	}
	if c, ok := LookupCurrency("JPY"); !ok || c.Exponent != 0 || c.Symbol != "¥" {
		t.Errorf("JPY = %+v %v", c, ok)
	}
	if c, ok := LookupCurrency("ABC"); ok || c.Exponent != 2 || c.Symbol != "ABC" {
		t.Errorf("unknown = %+v %v", c, ok)
	}
}

func TestWrap(t *testing.T) {
	cases := []struct {
		in   string
		w    int
		want []string
	}{
		{"hello world", 5, []string{"hello", "world"}},
		{"abcdefgh", 3, []string{"abc", "def", "gh"}},
		{"上海虹桥", 5, []string{"上海", "虹桥"}},
		{"", 5, []string{""}},
		{"a  b", 10, []string{"a  b"}},
	}
	for _, c := range cases {
		got := wrap(c.in, c.w)
		if len(got) != len(c.want) {
			t.Errorf("wrap(%q, %d) = %q, want %q", c.in, c.w, got, c.want)
			continue
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("wrap(%q, %d) = %q, want %q", c.in, c.w, got, c.want)
			}
		}
	}
}
