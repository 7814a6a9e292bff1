package qrserial

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// splitAll feeds in to a splitter, with the inter-character timeout expiring before each
// offset in timeoutAt and at the end.
func splitAll(in []byte, max int, timeoutAt map[int]bool) (codes []string, errs []error) {
	s := splitter{max: max}
	collect := func(r result, ok bool) {
		if !ok {
			return
		}
		if r.err != nil {
			errs = append(errs, r.err)
		} else {
			codes = append(codes, r.code)
		}
	}
	for i, b := range in {
		if timeoutAt[i] {
			collect(s.abandon())
		}
		collect(s.push(b))
	}
	collect(s.abandon())
	return codes, errs
}

func TestSplitter(t *testing.T) {
	cases := []struct {
		name    string
		in      string
		timeout []int // abandon before these offsets
		codes   []string
		errs    []error
	}{
		{"CR LF", "ABC\r\nDEF\r\n", nil, []string{"ABC", "DEF"}, nil},
		{"CR", "ABC\rDEF\r", nil, []string{"ABC", "DEF"}, nil},
		{"LF", "ABC\nDEF\n", nil, []string{"ABC", "DEF"}, nil},
		{"empty lines ignored", "\r\n\r\n\n\rA\r\r\n", nil, []string{"A"}, nil},
		{"LF CR is two terminators", "A\n\rB\n", nil, []string{"A", "B"}, nil},
		{"control byte", "AB\x07CD\r\nOK\r\n", nil, []string{"OK"}, []error{ErrBadByte}},
		{"tab", "A\tB\r\n", nil, nil, []error{ErrBadByte}},
		{"non-ASCII", "h\xc3\xa9llo\r\nOK\n", nil, []string{"OK"}, []error{ErrBadByte}},
		{"DEL", "A\x7f\r", nil, nil, []error{ErrBadByte}},
		{"too long", strings.Repeat("x", 9) + "\r\nfits\r\n", nil, []string{"fits"}, []error{ErrTooLong}},
		{"exactly max", strings.Repeat("x", 8) + "\r\n", nil, []string{strings.Repeat("x", 8)}, nil},
		{"partial then timeout", "garb" + "GOOD\r\n", []int{4}, []string{"GOOD"}, []error{ErrIncomplete}},
		{"bad partial then timeout", "\x00\xff" + "GOOD\r\n", []int{2}, []string{"GOOD"}, []error{ErrBadByte}},
		{"unterminated at end", "ABC", nil, nil, []error{ErrIncomplete}},
		{"CR, pause, LF", "A\r" + "\nB\n", []int{2}, []string{"A", "B"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tmo := map[int]bool{}
			for _, i := range c.timeout {
				tmo[i] = true
			}
			codes, errs := splitAll([]byte(c.in), 8, tmo)
			if strings.Join(codes, "|") != strings.Join(c.codes, "|") {
				t.Errorf("codes = %q, want %q", codes, c.codes)
			}
			if len(errs) != len(c.errs) {
				t.Fatalf("errors = %v, want %v", errs, c.errs)
			}
			for i := range errs {
				if !errors.Is(errs[i], c.errs[i]) {
					t.Errorf("error %d = %v, want %v", i, errs[i], c.errs[i])
				}
			}
		})
	}
}

// FuzzSplit: never panics; every code is 1..max printable ASCII bytes; every input byte is
// accounted for; clean input splits exactly as bytes.Split would.
func FuzzSplit(f *testing.F) {
	f.Add([]byte("IMW1.acct.1767225600.abcdefgh.k1.sig\r\n"), uint8(0))
	f.Add([]byte("ABC\rDEF\nGHI\r\n\r\n"), uint8(3))
	f.Add([]byte("\x00\xff\x1b\r\nOK\r\n"), uint8(1))
	f.Add(bytes.Repeat([]byte("x"), 600), uint8(200))
	f.Fuzz(func(t *testing.T, in []byte, tmo uint8) {
		const max = 64
		timeouts := map[int]bool{}
		if tmo != 0 {
			for i := int(tmo); i < len(in); i += int(tmo) {
				timeouts[i] = true
			}
		}
		codes, _ := splitAll(in, max, timeouts)
		for _, c := range codes {
			if len(c) == 0 || len(c) > max {
				t.Fatalf("code of %d bytes", len(c))
			}
			for i := 0; i < len(c); i++ {
				if c[i] < 0x20 || c[i] > 0x7e {
					t.Fatalf("code %q has byte %#x", c, c[i])
				}
			}
			if !bytes.Contains(in, []byte(c)) {
				t.Fatalf("code %q is not in the input", c)
			}
		}
		if len(timeouts) > 0 {
			return
		}
		// Without timeouts and with only printable bytes and terminators, the codes are the
		// non-empty lines (those that fit).
		clean := true
		for _, b := range in {
			if (b < 0x20 || b > 0x7e) && b != '\r' && b != '\n' {
				clean = false
			}
		}
		if !clean {
			return
		}
		var want []string
		lines := bytes.FieldsFunc(in, func(r rune) bool { return r == '\r' || r == '\n' })
		for i, l := range lines {
			last := i == len(lines)-1 && !bytes.HasSuffix(in, []byte("\r")) && !bytes.HasSuffix(in, []byte("\n"))
			if len(l) <= max && !last {
				want = append(want, string(l))
			}
		}
		if strings.Join(codes, "\x00") != strings.Join(want, "\x00") {
			t.Fatalf("codes %q, want %q", codes, want)
		}
	})
}
