package ssp

import (
	"bytes"
	"errors"
	"testing"

	"github.com/kioskd/kioskd/devices/acceptor"
)

func TestParseEvents(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want []Event
		err  error
	}{
		{"empty", nil, nil, nil},
		{"reset, disabled (GA138)", []byte{0xF1, 0xE8}, []Event{{Code: EvSlaveReset}, {Code: EvDisabled}}, nil},
		{"credit 1, stacked (GA138)", []byte{0xEE, 0x01, 0xEB}, []Event{{Code: EvNoteCredit, Data: []byte{1}}, {Code: EvStacked}}, nil},
		{"read 0, read 3", []byte{0xEF, 0x00, 0xEF, 0x03}, []Event{{Code: EvRead, Data: []byte{0}}, {Code: EvRead, Data: []byte{3}}}, nil},
		{"cleared, fraud", []byte{0xE1, 0x00, 0xE2, 0x02, 0xE6, 0x02}, []Event{
			{Code: EvClearedFront, Data: []byte{0}}, {Code: EvClearedCashbox, Data: []byte{2}}, {Code: EvFraudAttempt, Data: []byte{2}}}, nil},
		{"unknown stops the parse", []byte{0xEB, 0xDA, 0x01, 0xEE, 0x01}, []Event{{Code: EvStacked}}, ErrUnknownEvent},
		{"truncated", []byte{0xE8, 0xEE}, []Event{{Code: EvDisabled}}, ErrTruncatedEvent},
	} {
		got, err := ParseEvents(tc.in)
		if !errors.Is(err, tc.err) || len(got) != len(tc.want) {
			t.Fatalf("%s: %v, %v", tc.name, got, err)
		}
		for i := range got {
			if got[i].Code != tc.want[i].Code || !bytes.Equal(got[i].Data, tc.want[i].Data) {
				t.Fatalf("%s: event %d = %v, want %v", tc.name, i, got[i], tc.want[i])
			}
		}
		if tc.err == nil && !bytes.Equal(AppendEvents(nil, got...), tc.in) {
			t.Fatalf("%s: AppendEvents does not round-trip", tc.name)
		}
	}
	for code, n := range eventDataLen {
		if EventName(code) == "" || (n != 0 && n != 1) {
			t.Errorf("event %#x: name %q length %d", code, EventName(code), n)
		}
	}
}

// FuzzPollEvents: the event parser never panics, returns events that re-serialise to a
// prefix of its input, and stops only at an unknown or truncated event.
func FuzzPollEvents(f *testing.F) {
	f.Add([]byte{0xF1, 0xE8})
	f.Add([]byte{0xCC, 0xEE, 0x01})
	f.Add([]byte{0xEF, 0x00, 0xEF, 0x02, 0xED, 0xEC, 0xE9, 0xEA, 0xE7, 0xE3, 0xE4, 0xE0, 0xB5, 0xB6})
	f.Add([]byte{0xE6})
	f.Add([]byte{0xD2, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, in []byte) {
		events, err := ParseEvents(in)
		re := AppendEvents(nil, events...)
		if !bytes.HasPrefix(in, re) {
			t.Fatalf("events % X are not a prefix of % X", re, in)
		}
		switch {
		case err == nil && len(re) != len(in):
			t.Fatalf("parse stopped early without an error")
		case errors.Is(err, ErrUnknownEvent):
			if _, known := eventDataLen[in[len(re)]]; known {
				t.Fatalf("known event %#x reported unknown", in[len(re)])
			}
		case errors.Is(err, ErrTruncatedEvent):
			if len(re) >= len(in) || len(re)+1+eventDataLen[in[len(re)]] <= len(in) {
				t.Fatalf("truncation misreported at %d of %d", len(re), len(in))
			}
		case err != nil:
			t.Fatalf("unexpected error %v", err)
		}
		for _, e := range events {
			if len(e.Data) != eventDataLen[e.Code] {
				t.Fatalf("event %v with %d data bytes", e, len(e.Data))
			}
		}
	})
}

func TestParseSetupCaptures(t *testing.T) {
	// GA138's example (GBP, protocol 5). Its real value multiplier bytes read 40 00 00, which
	// is not the 100 of a GBP dataset: the example is kept for the layout, not the values.
	gbp := []byte{0x00, '0', '1', '0', '0', 'G', 'B', 'P', 0x00, 0x00, 0x01, 0x03, 0x05, 0x0A, 0x14, 0x02, 0x02, 0x02, 0x40, 0x00, 0x00, 0x05}
	s, err := ParseSetup(gbp)
	if err != nil || s.Country != "GBP" || s.Firmware != "0100" || s.ProtocolVersion != 5 || len(s.Channels) != 3 ||
		s.Channels[2].Value != 20 || s.ValueMultiplier != 1 {
		t.Fatalf("GA138 setup: %+v %v", s, err)
	}
	// A published capture of an NV9 with a EUR dataset, protocol 4: value multiplier 5 and
	// channel values 1, 2, 4, 10, 20, 40, 100 make 5..500 EUR; the real value multiplier
	// 00 00 64 (big-endian 100) makes cents.
	eur := []byte{0x00, '0', '1', '0', '9', 'E', 'U', 'R', 0x00, 0x00, 0x05, 0x07,
		0x01, 0x02, 0x04, 0x0A, 0x14, 0x28, 0x64, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
		0x00, 0x00, 0x64, 0x04}
	s, err = ParseSetup(eur)
	if err != nil {
		t.Fatal(err)
	}
	d := s.Denominations()
	for ch, minor := range map[int]int64{1: 500, 2: 1000, 3: 2000, 4: 5000, 5: 10000, 6: 20000, 7: 50000} {
		if n := d[ch]; n.ValueMinor != minor || n.Currency != "EUR" || n.Code != ch {
			t.Errorf("channel %d = %v, want %d EUR", ch, n, minor)
		}
	}
	if formatFirmware(s.Firmware) != "1.09" {
		t.Errorf("firmware %q", formatFirmware(s.Firmware))
	}
}

func TestSetupExpandedRoundTrip(t *testing.T) {
	s := Setup{
		UnitType: UnitValidator, Firmware: "0380", Country: "CNY", ValueMultiplier: 1,
		ProtocolVersion: 7, RealValueMultiplier: 100, Security: []byte{2, 2, 2},
		Channels: []Channel{{1, 1, "CNY"}, {2, 5, "CNY"}, {3, 100, "CNY"}},
	}
	b := AppendSetup(nil, s)
	want := []byte{
		0x00,               // unit type: validator
		'0', '3', '8', '0', // firmware 3.80
		'C', 'N', 'Y', // country
		0x00, 0x00, 0x01, // value multiplier, big-endian
		0x03,             // three channels
		0x01, 0x05, 0x64, // channel values × multiplier
		0x02, 0x02, 0x02, // obsolete security bytes
		0x00, 0x00, 0x64, // real value multiplier 100, big-endian
		0x07,                                        // protocol version
		'C', 'N', 'Y', 'C', 'N', 'Y', 'C', 'N', 'Y', // expanded currencies
		0x01, 0, 0, 0, 0x05, 0, 0, 0, 0x64, 0, 0, 0, // expanded values, little-endian
	}
	if !bytes.Equal(b, want) {
		t.Fatalf("AppendSetup\n got % X\nwant % X", b, want)
	}
	got, err := ParseSetup(b)
	if err != nil || len(got.Channels) != 3 || got.Channels[2] != s.Channels[2] || got.RealValueMultiplier != 100 {
		t.Fatalf("ParseSetup: %+v %v", got, err)
	}
	if n := got.Denominations()[3]; n != (acceptor.Note{Code: 3, ValueMinor: 10000, Currency: "CNY"}) {
		t.Errorf("channel 3 = %v", n)
	}
	// Values that need the expanded section (above 255) leave the one-byte section at zero.
	s.Channels[2].Value = 1000
	s.ValueMultiplier = 0
	got, err = ParseSetup(AppendSetup(nil, s))
	if err != nil || got.Channels[2].Value != 1000 {
		t.Fatalf("expanded-only value: %+v %v", got, err)
	}
	for _, bad := range [][]byte{nil, b[:11], b[:20], b[:30], append([]byte{UnitSmartHopper}, b[1:]...)} {
		if _, err := ParseSetup(bad); !errors.Is(err, ErrBadSetup) {
			t.Errorf("ParseSetup(% X): %v", bad, err)
		}
	}
}

func TestCounters(t *testing.T) {
	// GA138: 17 stacked, 40 stored, 35 dispensed, 10 transferred, 16 rejected.
	b := frameTable[12].frame.Data[1:]
	c, err := ParseCounters(b)
	if err != nil || c != (Counters{Stacked: 17, Stored: 40, Dispensed: 35, Transferred: 10, Rejected: 16}) {
		t.Fatalf("%+v %v", c, err)
	}
	if !bytes.Equal(AppendCounters(nil, c), b) {
		t.Fatal("AppendCounters does not round-trip")
	}
	for _, bad := range [][]byte{nil, {5, 1, 2, 3}} {
		if _, err := ParseCounters(bad); !errors.Is(err, ErrBadCounters) {
			t.Errorf("ParseCounters(% X): %v", bad, err)
		}
	}
	if c, err := ParseCounters([]byte{1, 9, 0, 0, 0}); err != nil || c.Stacked != 9 {
		t.Errorf("one counter: %+v %v", c, err)
	}
}

func TestRejectCodes(t *testing.T) {
	for code := byte(0); code <= 0x1F; code++ {
		_, listed := rejectCodes[code]
		if listed == (code == 0x1E) {
			t.Errorf("reject code %#x listed=%v; GA138 lists 0x00..0x1D and 0x1F", code, listed)
		}
	}
	for code, want := range map[byte]acceptor.RejectReason{
		RejectByHost: acceptor.RejectHostReturn, RejectEscrowTimeout: acceptor.RejectTimeout,
		RejectDisabledByHost: acceptor.RejectInhibited, RejectSecondNote: acceptor.RejectMultiple,
		RejectDoubleNote: acceptor.RejectMultiple, RejectLengthFail: acceptor.RejectLength,
		RejectStrimAttempt: acceptor.RejectCounterfeit, 0x1E: acceptor.RejectUnknown, 0x99: acceptor.RejectUnknown,
	} {
		if got := RejectReason(code); got != want {
			t.Errorf("RejectReason(%#x) = %v, want %v", code, got, want)
		}
	}
	if RejectName(0x13) != "escrow time-out" || RejectName(0x99) == "" {
		t.Error("reject names")
	}
}

func TestInhibitMask(t *testing.T) {
	m, err := InhibitMask([]int{1, 2, 3})
	if err != nil || m != [2]byte{0x07, 0x00} { // GA138: channels 1-3 enabled = 07 00
		t.Fatalf("% X %v", m, err)
	}
	m, _ = InhibitMask([]int{8, 9, 16})
	if m != [2]byte{0x80, 0x81} || !ChannelEnabled(m, 16) || ChannelEnabled(m, 10) || ChannelEnabled(m, 0) {
		t.Fatalf("% X", m)
	}
	for _, bad := range []int{0, 17, -1} {
		if _, err := InhibitMask([]int{bad}); err == nil {
			t.Errorf("channel %d accepted", bad)
		}
	}
}

func TestReplyError(t *testing.T) {
	err := error(&ReplyError{Cmd: CmdHold, Code: RespCannotProcess})
	if !errors.Is(err, ErrCannotProcess) || !errors.Is(err, acceptor.ErrRefused) || errors.Is(err, ErrFail) {
		t.Fatalf("%v does not unwrap right", err)
	}
	if !errors.Is(&ReplyError{Cmd: CmdPoll, Code: 0xF1}, ErrUnknownReply) {
		t.Fatal("unknown code")
	}
	if err.Error() != "ssp: hold (0x18) answered 0xf5" {
		t.Fatalf("%q", err.Error())
	}
}
