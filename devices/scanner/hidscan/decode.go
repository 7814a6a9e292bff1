package hidscan

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Event is one input event as evdev reports it (struct input_event). Time is the kernel's
// timestamp of the event; the zero Time means unknown (the reader's clock is used then).
type Event struct {
	Time  time.Time
	Type  uint16
	Code  uint16
	Value int32
}

// Suffix is the key a scanner sends after each code.
type Suffix string

// The suffixes a scanner can be set to (scanner.hid.suffix).
const (
	SuffixEnter Suffix = "enter" // Enter or keypad Enter: the factory setting of most scanners
	SuffixTab   Suffix = "tab"
	SuffixNone  Suffix = "none" // no suffix: the inter-character timeout ends a code
)

// Suffixes lists the valid suffix names, for configuration checks.
var Suffixes = []Suffix{SuffixEnter, SuffixTab, SuffixNone}

// ParseSuffix reads a suffix name; "" is SuffixEnter.
func ParseSuffix(s string) (Suffix, error) {
	switch Suffix(s) {
	case "", SuffixEnter:
		return SuffixEnter, nil
	case SuffixTab, SuffixNone:
		return Suffix(s), nil
	}
	names := make([]string, len(Suffixes))
	for i, x := range Suffixes {
		names[i] = string(x)
	}
	return "", fmt.Errorf("unknown suffix %q (known: %s)", s, strings.Join(names, ", "))
}

// Errors reported through Config.OnError (wrapped with detail; test with errors.Is).
var (
	// ErrTooLong: the line exceeded Config.MaxLen; it was discarded up to its suffix.
	ErrTooLong = errors.New("hidscan: code too long")
	// ErrBadKey: a key the US layout does not map to a printable character, or one typed
	// with Ctrl, Alt or Meta held; the line was discarded.
	ErrBadKey = errors.New("hidscan: key that is not a printable character")
	// ErrDropped: the kernel dropped input events (SYN_DROPPED); the line was discarded.
	ErrDropped = errors.New("hidscan: input events lost")
	// ErrIncomplete: keys arrived but no suffix within the inter-character timeout.
	ErrIncomplete = errors.New("hidscan: incomplete code abandoned")
)

// result of one step: a code, or an error, or neither.
type result struct {
	code string
	err  error
}

// Modifier keys other than Shift: a character typed with one of them held is not that
// character.
const (
	modCtrlL = 1 << iota
	modCtrlR
	modAltL
	modAltR
	modMetaL
	modMetaR
)

var modKeys = map[uint16]int{KeyLeftCtrl: modCtrlL, KeyRightCtrl: modCtrlR, KeyLeftAlt: modAltL,
	KeyRightAlt: modAltR, KeyLeftMeta: modMetaL, KeyRightMeta: modMetaR}

// decoder turns key events into codes and errors. It knows nothing of time or I/O, so it
// can be fuzzed; the caller tells it when the inter-character timeout has expired.
type decoder struct {
	max            int
	suffix         Suffix
	lshift, rshift bool
	caps           bool
	mods           int
	buf            []byte
	bad            error // the line is being discarded for this reason
	badLen         int   // keys seen on the discarded line
}

func newDecoder(max int, suffix Suffix) *decoder { return &decoder{max: max, suffix: suffix} }

func (d *decoder) pending() bool { return len(d.buf) > 0 || d.bad != nil }

func (d *decoder) isSuffix(code uint16) bool {
	switch d.suffix {
	case SuffixEnter:
		return code == KeyEnter || code == KeyKPEnter
	case SuffixTab:
		return code == KeyTab
	}
	return false
}

// spoil discards the line for err (the first reason wins).
func (d *decoder) spoil(err error) {
	if d.bad == nil {
		d.bad = err
		d.badLen = len(d.buf)
		d.buf = d.buf[:0]
	}
	d.badLen++
}

// event consumes one input event; ok says whether r holds something.
func (d *decoder) event(e Event) (r result, ok bool) {
	switch e.Type {
	case EvSyn:
		if e.Code == SynDropped {
			// What was lost may be keys of this line, or a Shift release: the line cannot be
			// trusted, and the modifiers are assumed released (a scanner holds none between
			// codes).
			d.lshift, d.rshift, d.mods = false, false, 0
			d.spoil(ErrDropped)
			d.badLen-- // the drop is not a key
		}
		return result{}, false
	case EvKey:
	default:
		return result{}, false // EV_MSC scan codes, EV_LED, EV_REP settings
	}
	if e.Value != 0 && e.Value != 1 {
		return result{}, false // autorepeat: the kernel's, not the scanner's
	}
	press := e.Value == 1
	switch e.Code {
	case KeyLeftShift:
		d.lshift = press
		return result{}, false
	case KeyRightShift:
		d.rshift = press
		return result{}, false
	case KeyCapsLock:
		if press {
			d.caps = !d.caps
		}
		return result{}, false
	}
	if m, isMod := modKeys[e.Code]; isMod {
		if press {
			d.mods |= m
		} else {
			d.mods &^= m
		}
		return result{}, false
	}
	if !press {
		return result{}, false
	}
	if d.isSuffix(e.Code) {
		return d.endLine()
	}
	k, mapped := usLayout[e.Code]
	switch {
	case d.bad != nil:
		d.badLen++
	case !mapped:
		d.spoil(fmt.Errorf("%w: key code %d at offset %d", ErrBadKey, e.Code, len(d.buf)))
	case d.mods != 0:
		d.spoil(fmt.Errorf("%w: key code %d with Ctrl, Alt or Meta at offset %d", ErrBadKey, e.Code, len(d.buf)))
	case len(d.buf) >= d.max:
		d.spoil(fmt.Errorf("%w: over %d characters", ErrTooLong, d.max))
	default:
		shifted := d.lshift || d.rshift
		if k.letter && d.caps {
			shifted = !shifted
		}
		c := k.plain
		if shifted {
			c = k.shifted
		}
		d.buf = append(d.buf, c)
	}
	return result{}, false
}

func (d *decoder) endLine() (result, bool) {
	if d.bad != nil {
		err := fmt.Errorf("%w (line of %d keys discarded)", d.bad, d.badLen)
		d.bad, d.badLen = nil, 0
		return result{err: err}, true
	}
	if len(d.buf) == 0 {
		return result{}, false // a lone suffix is not a scan
	}
	code := string(d.buf)
	d.buf = d.buf[:0]
	return result{code: code}, true
}

// abandon ends an unfinished line after the inter-character timeout: with SuffixNone that is
// how a code ends, otherwise the line was cut.
func (d *decoder) abandon() (result, bool) {
	if d.bad != nil || d.suffix == SuffixNone {
		return d.endLine()
	}
	if len(d.buf) == 0 {
		return result{}, false
	}
	err := fmt.Errorf("%w: %d characters without a suffix", ErrIncomplete, len(d.buf))
	d.buf = d.buf[:0]
	return result{err: err}, true
}
