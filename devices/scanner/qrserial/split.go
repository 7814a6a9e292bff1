package qrserial

import (
	"errors"
	"fmt"
)

// Errors reported through Config.OnError (wrapped with detail; test with errors.Is).
var (
	// ErrTooLong: the line exceeded Config.MaxLen; it was discarded up to its terminator.
	ErrTooLong = errors.New("qrserial: code too long")
	// ErrBadByte: the line held a control, DEL or non-ASCII byte; it was discarded.
	ErrBadByte = errors.New("qrserial: non-printable byte in code")
	// ErrIncomplete: bytes arrived but no terminator within the inter-character timeout.
	ErrIncomplete = errors.New("qrserial: incomplete code abandoned")
)

// ErrNotWritable is returned by the trigger methods when the port cannot be written.
var ErrNotWritable = errors.New("qrserial: port is not writable")

// splitter turns bytes into codes and errors. It knows nothing of time or I/O, so it can be
// fuzzed; the caller tells it when the inter-character timeout has expired.
type splitter struct {
	max     int
	buf     []byte
	bad     error // the line is being discarded for this reason
	badLen  int   // bytes seen on the discarded line
	afterCR bool  // the last byte was CR: an LF right after it belongs to the same terminator
}

// result of one step: a code, or an error, or neither.
type result struct {
	code string
	err  error
}

func (s *splitter) pending() bool { return len(s.buf) > 0 || s.bad != nil }

// push consumes one byte; ok says whether r holds something.
func (s *splitter) push(b byte) (r result, ok bool) {
	if b == '\n' && s.afterCR {
		s.afterCR = false
		return result{}, false
	}
	s.afterCR = b == '\r'
	if b == '\r' || b == '\n' {
		return s.endLine()
	}
	if s.bad != nil {
		s.badLen++
		return result{}, false
	}
	switch {
	case b < 0x20 || b > 0x7e:
		s.bad = fmt.Errorf("%w: %#02x at offset %d", ErrBadByte, b, len(s.buf))
		s.badLen = len(s.buf) + 1
		s.buf = s.buf[:0]
	case len(s.buf) >= s.max:
		s.bad = fmt.Errorf("%w: over %d bytes", ErrTooLong, s.max)
		s.badLen = len(s.buf) + 1
		s.buf = s.buf[:0]
	default:
		s.buf = append(s.buf, b)
	}
	return result{}, false
}

func (s *splitter) endLine() (result, bool) {
	if s.bad != nil {
		err := fmt.Errorf("%w (line of %d bytes discarded)", s.bad, s.badLen)
		s.bad, s.badLen = nil, 0
		return result{err: err}, true
	}
	if len(s.buf) == 0 {
		return result{}, false // an empty line: a lone terminator is not a scan
	}
	code := string(s.buf)
	s.buf = s.buf[:0]
	return result{code: code}, true
}

// abandon drops an unfinished line after the inter-character timeout.
func (s *splitter) abandon() (result, bool) {
	s.afterCR = false
	if s.bad != nil {
		return s.endLine() // the line's own error says more than "incomplete"
	}
	if len(s.buf) == 0 {
		return result{}, false
	}
	err := fmt.Errorf("%w: %d bytes without a terminator", ErrIncomplete, len(s.buf))
	s.buf = s.buf[:0]
	return result{err: err}, true
}
