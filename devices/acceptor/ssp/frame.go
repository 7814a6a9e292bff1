package ssp

import (
	"errors"
	"fmt"

	"github.com/kioskd/kioskd/devices/crc16"
)

// Frame layout on the wire: STX SEQ/ID LEN DATA... CRCL CRCH, where LEN counts DATA only and
// the CRC (CRC-16/CMS: poly 0x8005, init 0xFFFF) covers SEQ/ID..DATA and is sent low byte
// first. After the CRC is computed every 0x7F after the STX, CRC bytes included, is sent
// twice (byte stuffing); a lone 0x7F on the line is the start of a new frame.
const (
	// STX starts every frame, in both directions.
	STX byte = 0x7F
	// SeqFlag is bit 7 of SEQ/ID, the sequence flag.
	SeqFlag byte = 0x80
	// MaxAddress is the highest slave address the protocol allows.
	MaxAddress byte = 0x7D
	// MaxDataLen is the most DATA bytes one frame carries (LEN is one byte; 0 is not allowed).
	MaxDataLen = 255
	// MaxWireLen is the longest a frame can be on the wire: STX plus every other byte doubled.
	MaxWireLen = 1 + 2*(2+MaxDataLen+2)
)

// Errors of the frame codec.
var (
	// ErrIncomplete: the bytes end before the frame does; feed more.
	ErrIncomplete = errors.New("ssp: incomplete frame")
	// ErrNoSync: the bytes do not start with STX 0x7F.
	ErrNoSync = errors.New("ssp: frame does not start with 0x7F")
	// ErrBadCRC: the CRC does not match the frame.
	ErrBadCRC = errors.New("ssp: bad CRC")
	// ErrBadHeader: LEN is zero or the address is above MaxAddress.
	ErrBadHeader = errors.New("ssp: impossible frame header")
	// ErrResync: a lone 0x7F inside the frame; the sender started a new frame there.
	ErrResync = errors.New("ssp: lone STX inside a frame")
	// ErrTooLong: Encode was given more data than a frame can carry, or no data at all.
	ErrTooLong = errors.New("ssp: frame data must be 1..255 bytes")
	// ErrBadAddress: Encode was given an address above MaxAddress.
	ErrBadAddress = errors.New("ssp: address above 0x7D")
)

// Frame is one SSP packet: who it is for, its sequence flag, and its DATA (a command or a
// reply, or an eSSP encrypted block starting with STEX 0x7E).
type Frame struct {
	Address byte // 0 for a banknote validator
	Seq     bool // the sequence flag, bit 7 of SEQ/ID
	Data    []byte
}

// SeqID is the frame's SEQ/ID byte.
func (f Frame) SeqID() byte {
	b := f.Address & 0x7F
	if f.Seq {
		b |= SeqFlag
	}
	return b
}

func (f Frame) String() string {
	return fmt.Sprintf("%02X % X", f.SeqID(), f.Data)
}

// AppendFrame appends the encoded, byte-stuffed frame to dst.
func AppendFrame(dst []byte, f Frame) ([]byte, error) {
	if len(f.Data) == 0 || len(f.Data) > MaxDataLen {
		return dst, fmt.Errorf("ssp: encode %d data bytes: %w", len(f.Data), ErrTooLong)
	}
	if f.Address > MaxAddress {
		return dst, fmt.Errorf("ssp: encode for address %#x: %w", f.Address, ErrBadAddress)
	}
	var raw [2 + MaxDataLen]byte
	raw[0], raw[1] = f.SeqID(), byte(len(f.Data))
	n := 2 + copy(raw[2:], f.Data)
	c := crc16.CMS(raw[:n])
	dst = append(dst, STX)
	dst = appendStuffed(dst, raw[:n])
	raw[0], raw[1] = byte(c), byte(c>>8)
	return appendStuffed(dst, raw[:2]), nil
}

func appendStuffed(dst, b []byte) []byte {
	for _, x := range b {
		dst = append(dst, x)
		if x == STX {
			dst = append(dst, STX)
		}
	}
	return dst
}

// Encode returns the wire bytes of f.
func Encode(f Frame) ([]byte, error) {
	return AppendFrame(make([]byte, 0, 8+len(f.Data)), f)
}

// Decode decodes the stuffed frame at the start of b and returns it with the number of wire
// bytes it occupies. On ErrBadCRC, ErrBadHeader and ErrResync n says how many bytes to drop
// before looking for the next frame (for ErrResync: up to the lone STX that starts it). On
// ErrIncomplete and ErrNoSync n is 0. The frame's Data is a copy.
func Decode(b []byte) (f Frame, n int, err error) {
	if len(b) == 0 {
		return Frame{}, 0, ErrIncomplete
	}
	if b[0] != STX {
		return Frame{}, 0, ErrNoSync
	}
	var raw [2 + MaxDataLen + 2]byte
	got, want := 0, 2 // unstuffed bytes after STX; want grows once LEN is known
	i := 1
	for got < want {
		if i >= len(b) {
			return Frame{}, 0, ErrIncomplete
		}
		x := b[i]
		if x == STX {
			if i+1 >= len(b) {
				return Frame{}, 0, ErrIncomplete
			}
			if b[i+1] != STX {
				return Frame{}, i, fmt.Errorf("ssp: lone STX at byte %d: %w", i, ErrResync)
			}
			i++ // the stuffed twin
		}
		i++
		raw[got] = x
		got++
		if got == 2 {
			seqID, lng := raw[0], int(raw[1])
			if lng == 0 || seqID&0x7F > MaxAddress {
				return Frame{}, i, fmt.Errorf("ssp: header %02X %02X: %w", seqID, lng, ErrBadHeader)
			}
			want = 2 + lng + 2
		}
	}
	lng := int(raw[1])
	c := crc16.CMS(raw[:2+lng])
	if raw[2+lng] != byte(c) || raw[3+lng] != byte(c>>8) {
		// A copy, so that raw stays on the stack on the good path.
		bad := append([]byte(nil), raw[:4+lng]...)
		return Frame{}, i, fmt.Errorf("ssp: frame % X: CRC %02X%02X, computed %04X: %w",
			bad[:2+lng], bad[3+lng], bad[2+lng], c, ErrBadCRC)
	}
	f.Address = raw[0] & 0x7F
	f.Seq = raw[0]&SeqFlag != 0
	f.Data = append([]byte(nil), raw[2:2+lng]...)
	return f, i, nil
}

// DecoderStats counts what a Decoder threw away.
type DecoderStats struct {
	Frames       uint64 // good frames returned
	GarbageBytes uint64 // bytes skipped while looking for STX, or dropped with a broken frame
	BadCRC       uint64 // frames dropped for a bad CRC
	BadHeader    uint64 // frames dropped for LEN 0 or an impossible address
	Resyncs      uint64 // partial frames abandoned at a lone STX
}

// Decoder reassembles frames from a byte stream that may split frames across reads, carry
// garbage between them, or corrupt them. It un-stuffs, and it restarts on a lone STX inside a
// frame, as an SSP slave does. The zero value is ready to use. A Decoder is not safe for
// concurrent use.
type Decoder struct {
	buf   []byte
	stats DecoderStats
}

// Feed appends bytes received from the port.
func (d *Decoder) Feed(p []byte) { d.buf = append(d.buf, p...) }

// Reset drops any partial frame.
func (d *Decoder) Reset() { d.buf = d.buf[:0] }

// Buffered returns how many bytes wait for the rest of their frame.
func (d *Decoder) Buffered() int { return len(d.buf) }

// Stats returns the running counts.
func (d *Decoder) Stats() DecoderStats { return d.stats }

// Dropped returns the running totals of bytes skipped and of broken frames dropped, the two
// counts a driver's link statistics carry.
func (d *Decoder) Dropped() (garbageBytes, badFrames uint64) {
	st := d.stats
	return st.GarbageBytes, st.BadCRC + st.BadHeader + st.Resyncs
}

// Next returns the next good frame. ErrIncomplete means more bytes are needed. ErrBadCRC,
// ErrBadHeader and ErrResync report a broken frame that was dropped (the decoder has moved
// on), so a caller can count it; call Next again for the bytes that follow.
func (d *Decoder) Next() (Frame, error) {
	i := 0
	for i < len(d.buf) && d.buf[i] != STX {
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
		if len(d.buf) > MaxWireLen {
			// Cannot happen with a well-formed stream (Decode finishes or fails within
			// MaxWireLen bytes); kept as a bound on memory.
			d.stats.GarbageBytes++
			d.consume(1)
		}
		return Frame{}, ErrIncomplete
	case errors.Is(err, ErrResync):
		d.stats.Resyncs++
		d.stats.GarbageBytes += uint64(n)
		d.consume(n)
		return Frame{}, err
	default:
		// A bad CRC or header: drop only the STX, since the real frame may start inside the
		// broken one (a truncated frame followed by a good one). A stuffed 0x7F 0x7F met on
		// the way is rejected at once as an impossible header.
		if errors.Is(err, ErrBadCRC) {
			d.stats.BadCRC++
		} else {
			d.stats.BadHeader++
		}
		d.stats.GarbageBytes++
		d.consume(1)
		return Frame{}, err
	}
}

func (d *Decoder) consume(n int) {
	m := copy(d.buf, d.buf[n:])
	d.buf = d.buf[:m]
}
