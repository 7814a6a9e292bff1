package hidscan

import (
	"testing"

	"github.com/kioskd/kioskd/hw-sim/hidsim"
)

// eventsFrom reads fuzz bytes as events, 4 bytes each: type selector, code, value selector,
// and a timeout marker (0xff: the inter-character timeout expires before this event).
func eventsFrom(in []byte) (evs []Event, timeouts map[int]bool) {
	types := []uint16{EvKey, EvKey, EvKey, EvSyn, EvMsc, 0x11}
	timeouts = map[int]bool{}
	for i := 0; i+4 <= len(in); i += 4 {
		e := Event{Type: types[int(in[i])%len(types)], Code: uint16(in[i+1]), Value: int32(in[i+2] % 4)}
		if e.Type == EvSyn {
			e.Code %= 4 // SYN_REPORT .. SYN_DROPPED
		}
		if in[i+3] == 0xff {
			timeouts[len(evs)] = true
		}
		evs = append(evs, e)
	}
	return evs, timeouts
}

func decodeAll(d *decoder, evs []Event, timeouts map[int]bool) (codes []string, errs []error) {
	collect := func(r result, ok bool) {
		switch {
		case !ok:
		case r.err != nil:
			errs = append(errs, r.err)
		default:
			codes = append(codes, r.code)
		}
	}
	for i, e := range evs {
		if timeouts[i] {
			collect(d.abandon())
		}
		collect(d.event(e))
	}
	collect(d.abandon())
	return codes, errs
}

// FuzzDecode: key events never make the decoder panic, and every code it reports is 1..max
// printable ASCII characters; a code typed cleanly by the emulator, after any garbage that
// ended with a suffix and released every modifier, decodes to itself.
func FuzzDecode(f *testing.F) {
	f.Add([]byte{1, 42, 1, 0, 0, 30, 1, 0, 0, 30, 0, 0, 1, 42, 0, 0, 0, 28, 1, 0}, "IMW1.k.SIG", uint8(0))
	f.Add([]byte{3, 3, 0, 0, 0, 59, 1, 0, 0, 29, 1, 0, 0, 46, 1, 0xff}, "aB!~ ", uint8(1))
	f.Add([]byte{0, 58, 1, 0, 0, 58, 0, 0, 0, 16, 2, 0}, "x", uint8(2))
	f.Fuzz(func(t *testing.T, in []byte, code string, sfx uint8) {
		const max = 64
		suffix := Suffixes[int(sfx)%len(Suffixes)]
		evs, timeouts := eventsFrom(in)
		d := newDecoder(max, suffix)
		codes, _ := decodeAll(d, evs, timeouts)
		for _, c := range codes {
			if len(c) == 0 || len(c) > max {
				t.Fatalf("code of %d characters", len(c))
			}
			for i := 0; i < len(c); i++ {
				if c[i] < 0x20 || c[i] > 0x7e {
					t.Fatalf("code %q has byte %#x", c, c[i])
				}
			}
		}
		// Round trip on the same decoder: release what the garbage may hold, switch Caps Lock
		// off, end the line, then type code as the emulator does.
		strokes, err := hidsim.Strokes(code, string(suffix))
		if err != nil || code == "" || len(code) > max {
			return
		}
		reset := []Event{}
		for _, k := range []uint16{KeyLeftShift, KeyRightShift, KeyLeftCtrl, KeyRightCtrl, KeyLeftAlt, KeyRightAlt, KeyLeftMeta, KeyRightMeta} {
			reset = append(reset, Event{Type: EvKey, Code: k, Value: 0})
		}
		if d.caps {
			reset = append(reset, Event{Type: EvKey, Code: KeyCapsLock, Value: 1}, Event{Type: EvKey, Code: KeyCapsLock, Value: 0})
		}
		decodeAll(d, reset, map[int]bool{0: true}) // the timeout ends whatever the garbage left
		var typed []Event
		for _, s := range strokes {
			typed = append(typed, Event{Type: EvKey, Code: s.Code, Value: s.Value}, Event{Type: EvSyn, Code: SynReport})
		}
		got, errs := decodeAll(d, typed, nil)
		if len(got) != 1 || got[0] != code || len(errs) != 0 {
			t.Fatalf("typed %q with suffix %s, decoded %q errs %v", code, suffix, got, errs)
		}
	})
}
