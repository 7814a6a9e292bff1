package hidscan

// Linux input event types and codes used here (linux/input-event-codes.h).
const (
	EvSyn = 0x00
	EvKey = 0x01
	EvMsc = 0x04

	SynReport  = 0
	SynDropped = 3

	KeyTab        = 15
	KeyEnter      = 28
	KeyLeftCtrl   = 29
	KeyLeftShift  = 42
	KeyRightShift = 54
	KeyLeftAlt    = 56
	KeyCapsLock   = 58
	KeyKPEnter    = 96
	KeyRightCtrl  = 97
	KeyRightAlt   = 100
	KeyLeftMeta   = 125
	KeyRightMeta  = 126
)

// usKey is what one key types on the US layout: plain and with Shift. letter says whether
// Caps Lock swaps the two.
type usKey struct {
	plain, shifted byte
	letter         bool
}

// usLayout maps the key codes of the main block and the keypad to characters. The keypad
// types the same with or without Shift: scanners that use it (some send digits as keypad
// keys) keep Num Lock on, and none sends Shift around a keypad key.
var usLayout = buildUSLayout()

func buildUSLayout() map[uint16]usKey {
	m := map[uint16]usKey{}
	// Each row of the main block in code order, unshifted and shifted.
	rows := []struct {
		first          uint16
		plain, shifted string
	}{
		{2, "1234567890-=", "!@#$%^&*()_+"},   // KEY_1 .. KEY_EQUAL
		{16, "qwertyuiop[]", "QWERTYUIOP{}"},  // KEY_Q .. KEY_RIGHTBRACE
		{30, "asdfghjkl;'`", "ASDFGHJKL:\"~"}, // KEY_A .. KEY_GRAVE
		{43, "\\zxcvbnm,./", "|ZXCVBNM<>?"},   // KEY_BACKSLASH .. KEY_SLASH
	}
	for _, r := range rows {
		for i := 0; i < len(r.plain); i++ {
			p := r.plain[i]
			m[r.first+uint16(i)] = usKey{plain: p, shifted: r.shifted[i], letter: p >= 'a' && p <= 'z'}
		}
	}
	m[57] = usKey{plain: ' ', shifted: ' '} // KEY_SPACE
	for code, c := range map[uint16]byte{
		55: '*', 71: '7', 72: '8', 73: '9', 74: '-', 75: '4', 76: '5', 77: '6', 78: '+',
		79: '1', 80: '2', 81: '3', 82: '0', 83: '.', 98: '/', 117: '=', 121: ',',
	} { // KEY_KPASTERISK .. KEY_KPDOT, KEY_KPSLASH, KEY_KPEQUAL, KEY_KPCOMMA
		m[code] = usKey{plain: c, shifted: c}
	}
	return m
}
