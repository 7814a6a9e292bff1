package id003

import (
	"errors"
	"fmt"

	"github.com/kioskd/kioskd/devices/crc16"
)

// Frame layout: FC LNG CMD DATA... CRCL CRCH. LNG counts the whole frame, sync and CRC
// included, so the shortest frame (no data) is 5 bytes and the longest 255.
const (
	// Sync is the first byte of every frame, in both directions.
	Sync byte = 0xFC
	// MinFrameLen is the length of a frame without data.
	MinFrameLen = 5
	// MaxFrameLen is the largest length LNG can express.
	MaxFrameLen = 255
	// MaxDataLen is the most data bytes one frame can carry.
	MaxDataLen = MaxFrameLen - MinFrameLen
)

// Errors of the frame codec.
var (
	// ErrIncomplete: the bytes end before the frame does; feed more.
	ErrIncomplete = errors.New("id003: incomplete frame")
	// ErrNoSync: the bytes do not start with the sync byte 0xFC.
	ErrNoSync = errors.New("id003: frame does not start with 0xFC")
	// ErrBadLength: LNG is shorter than the shortest possible frame.
	ErrBadLength = errors.New("id003: impossible frame length")
	// ErrBadCRC: the CRC does not match the frame.
	ErrBadCRC = errors.New("id003: bad CRC")
	// ErrTooLong: Encode was given more data than a frame can carry.
	ErrTooLong = errors.New("id003: data too long for one frame")
)

// Frame is one decoded ID-003 message: the command (host to unit) or status (unit to host)
// byte and its data.
type Frame struct {
	Cmd  byte
	Data []byte
}

func (f Frame) String() string {
	if len(f.Data) == 0 {
		return fmt.Sprintf("%02X", f.Cmd)
	}
	return fmt.Sprintf("%02X % X", f.Cmd, f.Data)
}

// AppendFrame appends the encoded frame for cmd and data to dst.
func AppendFrame(dst []byte, cmd byte, data []byte) ([]byte, error) {
	if len(data) > MaxDataLen {
		return dst, fmt.Errorf("id003: encode %02X with %d data bytes: %w", cmd, len(data), ErrTooLong)
	}
	start := len(dst)
	dst = append(dst, Sync, byte(MinFrameLen+len(data)), cmd)
	dst = append(dst, data...)
	c := crc16.Kermit(dst[start:])
	return append(dst, byte(c), byte(c>>8)), nil
}

// Encode returns the frame for cmd and data.
func Encode(cmd byte, data ...byte) ([]byte, error) {
	return AppendFrame(make([]byte, 0, MinFrameLen+len(data)), cmd, data)
}

// Decode decodes the frame at the start of b. It returns the frame and the number of bytes
// the frame occupies. On ErrBadCRC n is the declared length, so a caller may skip it; on any
// other error n is 0. The frame's Data is a copy.
func Decode(b []byte) (f Frame, n int, err error) {
	if len(b) == 0 {
		return Frame{}, 0, ErrIncomplete
	}
	if b[0] != Sync {
		return Frame{}, 0, ErrNoSync
	}
	if len(b) < 2 {
		return Frame{}, 0, ErrIncomplete
	}
	lng := int(b[1])
	if lng < MinFrameLen {
		return Frame{}, 0, fmt.Errorf("id003: LNG %d: %w", lng, ErrBadLength)
	}
	if len(b) < lng {
		return Frame{}, 0, ErrIncomplete
	}
	want := crc16.Kermit(b[:lng-2])
	got := uint16(b[lng-2]) | uint16(b[lng-1])<<8
	if got != want {
		return Frame{}, lng, fmt.Errorf("id003: frame % X: CRC %04X, computed %04X: %w", b[:lng], got, want, ErrBadCRC)
	}
	f.Cmd = b[2]
	if lng > MinFrameLen {
		f.Data = append([]byte(nil), b[3:lng-2]...)
	}
	return f, lng, nil
}

// DecoderStats counts what a Decoder threw away.
type DecoderStats struct {
	Frames       uint64 // good frames returned
	GarbageBytes uint64 // bytes skipped while looking for a sync byte
	BadCRC       uint64 // frames dropped for a bad CRC
	BadLength    uint64 // sync bytes dropped because the LNG after them was impossible
}

// Decoder reassembles frames from a byte stream that may split frames across reads, carry
// garbage between them, or corrupt them. It resynchronises on the next 0xFC after anything it
// cannot use. The zero value is ready to use. A Decoder is not safe for concurrent use.
type Decoder struct {
	buf   []byte
	stats DecoderStats
}

// Feed appends bytes received from the port.
func (d *Decoder) Feed(p []byte) { d.buf = append(d.buf, p...) }

// Reset drops any partial frame, for example when a reply timed out and whatever is buffered
// can only be the stale start of it.
func (d *Decoder) Reset() { d.buf = d.buf[:0] }

// Buffered returns how many bytes wait for the rest of their frame.
func (d *Decoder) Buffered() int { return len(d.buf) }

// Stats returns the running counts.
func (d *Decoder) Stats() DecoderStats { return d.stats }

// Dropped returns the running totals of bytes skipped and of broken frames dropped, the two
// counts a driver's link statistics carry.
func (d *Decoder) Dropped() (garbageBytes, badFrames uint64) {
	st := d.stats
	return st.GarbageBytes, st.BadCRC + st.BadLength
}

// Next returns the next good frame. ErrIncomplete means more bytes are needed. ErrBadCRC
// and ErrBadLength report a broken frame that was dropped (the decoder has already moved on
// to the next sync byte), so a caller can count it or retry at once; call Next again for the
// bytes that follow. Bytes before a sync byte are skipped silently and counted.
func (d *Decoder) Next() (Frame, error) {
	i := 0
	for i < len(d.buf) && d.buf[i] != Sync {
		i++
	}
	if i > 0 {
		d.stats.GarbageBytes += uint64(i)
		d.consume(i)
	}
	f, n, err := Decode(d.buf)
	switch {
	case err == nil:
		d.stats.Frames++
		d.consume(n)
		return f, nil
	case errors.Is(err, ErrIncomplete):
		return Frame{}, ErrIncomplete
	case errors.Is(err, ErrBadCRC):
		// Drop only the sync byte: the real frame may start inside the broken one (a
		// truncated frame followed by a good one).
		d.stats.BadCRC++
		d.consume(1)
		return Frame{}, err
	default: // ErrBadLength
		d.stats.BadLength++
		d.consume(1)
		return Frame{}, err
	}
}

func (d *Decoder) consume(n int) {
	m := copy(d.buf, d.buf[n:])
	d.buf = d.buf[:m]
}
