// Package hidsim emulates a USB HID keyboard-wedge QR scanner: it turns a code into the key
// presses a scanner set to the US layout types (Strokes), and, where the kernel offers
// /dev/uinput, creates a virtual keyboard that types them (Keyboard), so the HID driver
// (devices/scanner/hidscan) reads them through the real evdev path, grab included.
//
// Its key table is written from the US keyboard, not taken from the driver, so a wrong entry
// in either shows up as a test failure.
package hidsim

import "fmt"

// Stroke is one key event: a key code of linux/input-event-codes.h and 1 (press) or 0
// (release).
type Stroke struct {
	Code  uint16
	Value int32
}

// Key codes hidsim types.
const (
	keyTab       = 15
	keyEnter     = 28
	keyLeftShift = 42
)

type usChar struct {
	code  uint16
	shift bool
}

// usChars: what key, with or without Shift, types each printable ASCII character on a US
// keyboard.
var usChars = map[byte]usChar{}

func init() {
	add := func(code uint16, plain, shifted byte) {
		usChars[plain] = usChar{code, false}
		usChars[shifted] = usChar{code, true}
	}
	// KEY_1 is 2 ... KEY_0 is 11.
	for i, c := range []byte("1234567890") {
		add(uint16(2+i), c, "!@#$%^&*()"[i])
	}
	add(12, '-', '_')
	add(13, '=', '+')
	add(26, '[', '{')
	add(27, ']', '}')
	add(39, ';', ':')
	add(40, '\'', '"')
	add(41, '`', '~')
	add(43, '\\', '|')
	add(51, ',', '<')
	add(52, '.', '>')
	add(53, '/', '?')
	letters := map[byte]uint16{'q': 16, 'w': 17, 'e': 18, 'r': 19, 't': 20, 'y': 21, 'u': 22, 'i': 23, 'o': 24, 'p': 25,
		'a': 30, 's': 31, 'd': 32, 'f': 33, 'g': 34, 'h': 35, 'j': 36, 'k': 37, 'l': 38,
		'z': 44, 'x': 45, 'c': 46, 'v': 47, 'b': 48, 'n': 49, 'm': 50}
	for c, code := range letters {
		add(code, c, c-'a'+'A')
	}
	usChars[' '] = usChar{57, false}
}

// Suffix keys: "enter" (the default), "tab", "none".
func suffixKey(suffix string) (code uint16, ok bool, err error) {
	switch suffix {
	case "", "enter":
		return keyEnter, true, nil
	case "tab":
		return keyTab, true, nil
	case "none":
		return 0, false, nil
	}
	return 0, false, fmt.Errorf("hidsim: unknown suffix %q", suffix)
}

// Strokes returns the key events a scanner types for code followed by suffix: each character
// pressed and released, wrapped in Shift where it needs it, as scanners do.
func Strokes(code, suffix string) ([]Stroke, error) {
	var out []Stroke
	for i := 0; i < len(code); i++ {
		k, ok := usChars[code[i]]
		if !ok {
			return nil, fmt.Errorf("hidsim: %q at offset %d cannot be typed on a US keyboard", code[i], i)
		}
		if k.shift {
			out = append(out, Stroke{keyLeftShift, 1})
		}
		out = append(out, Stroke{k.code, 1}, Stroke{k.code, 0})
		if k.shift {
			out = append(out, Stroke{keyLeftShift, 0})
		}
	}
	sk, ok, err := suffixKey(suffix)
	if err != nil {
		return nil, err
	}
	if ok {
		out = append(out, Stroke{sk, 1}, Stroke{sk, 0})
	}
	return out, nil
}

// Keys lists every key code Strokes may use: a virtual keyboard must declare them.
func Keys() []uint16 {
	seen := map[uint16]bool{keyTab: true, keyEnter: true, keyLeftShift: true}
	for _, k := range usChars {
		seen[k.code] = true
	}
	out := make([]uint16, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	return out
}
