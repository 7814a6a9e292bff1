package ccnet

import (
	"errors"
	"fmt"

	"github.com/kioskd/kioskd/devices/crc16"
)

// Frame layout:
//
//	short:    02 ADR LNG CMD DATA... CRCL CRCH            LNG = whole frame, 6..250
//	extended: 02 ADR 00  CMD LNGH LNGL DATA... CRCL CRCH  LNGH:LNGL = whole frame, > 250
//
// A frame longer than 250 bytes carries LNG 0 and its real length in the two bytes after
// CMD, high byte first (the layout of CashCode's own host SDK, as ported in public code).
// The CRC is CRC-16/KERMIT over SYNC..last data byte (the extended length included), sent
// low byte first.
const (
	// Sync is the first byte of every frame, in both directions.
	Sync byte = 0x02
	// MinFrameLen is the length of a frame without data.
	MinFrameLen = 6
	// MaxShortFrameLen is the longest frame LNG can express; longer frames use the
	// extended form.
	MaxShortFrameLen = 250
	// MaxFrameLen is the longest frame the extended length can express.
	MaxFrameLen = 0xFFFF
	// extOverhead is the size of an extended frame without data.
	extOverhead = MinFrameLen + 2
	// MaxDataLen is the most data bytes (after CMD) one frame can carry.
	MaxDataLen = MaxFrameLen - extOverhead
)

// Peripheral addresses (the ADR byte). The host writes the address of the unit it talks to
// and the unit answers with its own.
const (
	AddrBillToBill    byte = 0x01
	AddrCoinChanger   byte = 0x02
	AddrBillValidator byte = 0x03
	AddrCardReader    byte = 0x04
)

// Errors of the frame codec.
var (
	// ErrIncomplete: the bytes end before the frame does; feed more.
	ErrIncomplete = errors.New("ccnet: incomplete frame")
	// ErrNoSync: the bytes do not start with the sync byte 0x02.
	ErrNoSync = errors.New("ccnet: frame does not start with 0x02")
	// ErrBadLength: the declared length is impossible (below 6, 251..255, an extended length
	// that would fit the short form, or above the decoder's limit).
	ErrBadLength = errors.New("ccnet: impossible frame length")
	// ErrBadCRC: the CRC does not match the frame.
	ErrBadCRC = errors.New("ccnet: bad CRC")
	// ErrTooLong: Encode was given more data than a frame can carry.
	ErrTooLong = errors.New("ccnet: data too long for one frame")
)

// Frame is one decoded CCNET message. For a host command Cmd is the command byte; for a
// unit's reply it is the first byte of the reply (the state for a POLL answer, 0x00 for ACK,
// 0xFF for NAK, 0x30 for ILLEGAL COMMAND, the first data byte for data replies), so Payload
// gives the reply's whole content.
type Frame struct {
	Addr byte
	Cmd  byte
	Data []byte
}

func (f Frame) String() string {
	if len(f.Data) == 0 {
		return fmt.Sprintf("@%d %02X", f.Addr, f.Cmd)
	}
	return fmt.Sprintf("@%d %02X % X", f.Addr, f.Cmd, f.Data)
}

// Payload returns CMD followed by the data: the content of a unit's data reply.
func (f Frame) Payload() []byte {
	p := make([]byte, 0, 1+len(f.Data))
	return append(append(p, f.Cmd), f.Data...)
}

// AppendFrame appends the encoded frame to dst, in the short form when it fits and in the
// extended form otherwise.
func AppendFrame(dst []byte, addr, cmd byte, data []byte) ([]byte, error) {
	if len(data) > MaxDataLen {
		return dst, fmt.Errorf("ccnet: encode %02X with %d data bytes: %w", cmd, len(data), ErrTooLong)
	}
	start := len(dst)
	if n := MinFrameLen + len(data); n <= MaxShortFrameLen {
		dst = append(dst, Sync, addr, byte(n), cmd)
	} else {
		n += 2
		dst = append(dst, Sync, addr, 0, cmd, byte(n>>8), byte(n))
	}
	dst = append(dst, data...)
	c := crc16.Kermit(dst[start:])
	return append(dst, byte(c), byte(c>>8)), nil
}

// Encode returns the frame for addr, cmd and data.
func Encode(addr, cmd byte, data ...byte) ([]byte, error) {
	return AppendFrame(make([]byte, 0, MinFrameLen+len(data)+2), addr, cmd, data)
}

// frameLen reads the declared length at the start of b: n is the whole frame length and hdr
// the bytes before the data. need > 0 means more bytes are needed to know.
func frameLen(b []byte, limit int) (n, hdr, need int, err error) {
	if len(b) < 3 {
		return 0, 0, 3, nil
	}
	lng := int(b[2])
	switch {
	case lng == 0:
		if len(b) < 6 {
			return 0, 0, 6, nil
		}
		n = int(b[4])<<8 | int(b[5])
		if n <= MaxShortFrameLen || n > limit {
			return 0, 0, 0, fmt.Errorf("ccnet: extended length %d: %w", n, ErrBadLength)
		}
		return n, 6, 0, nil
	case lng < MinFrameLen || lng > MaxShortFrameLen || lng > limit:
		return 0, 0, 0, fmt.Errorf("ccnet: LNG %d: %w", lng, ErrBadLength)
	}
	return lng, 4, 0, nil
}

// Decode decodes the frame at the start of b. It returns the frame and the number of bytes
// the frame occupies. On ErrBadCRC n is the declared length, so a caller may skip it; on any
// other error n is 0. The frame's Data is a copy.
func Decode(b []byte) (f Frame, n int, err error) {
	return decode(b, MaxFrameLen)
}

func decode(b []byte, limit int) (f Frame, n int, err error) {
	if len(b) == 0 {
		return Frame{}, 0, ErrIncomplete
	}
	if b[0] != Sync {
		return Frame{}, 0, ErrNoSync
	}
	n, hdr, need, err := frameLen(b, limit)
	if err != nil {
		return Frame{}, 0, err
	}
	if need > 0 || len(b) < n {
		return Frame{}, 0, ErrIncomplete
	}
	want := crc16.Kermit(b[:n-2])
	got := uint16(b[n-2]) | uint16(b[n-1])<<8
	if got != want {
		return Frame{}, n, fmt.Errorf("ccnet: frame % X: CRC %04X, computed %04X: %w", b[:min(n, 16)], got, want, ErrBadCRC)
	}
	f.Addr, f.Cmd = b[1], b[3]
	if n-2 > hdr {
		f.Data = append([]byte(nil), b[hdr:n-2]...)
	}
	return f, n, nil
}

// DecoderStats counts what a Decoder threw away.
type DecoderStats struct {
	Frames       uint64 // good frames returned
	GarbageBytes uint64 // bytes skipped while looking for a sync byte
	BadCRC       uint64 // frames dropped for a bad CRC
	BadLength    uint64 // sync bytes dropped because the length after them was impossible
}

// Decoder reassembles frames from a byte stream that may split frames across reads, carry
// garbage between them, or corrupt them. It resynchronises on the next 0x02 after anything
// it cannot use. The zero value is ready to use. A Decoder is not safe for concurrent use.
type Decoder struct {
	// Limit is the longest frame accepted (0 means MaxFrameLen). A longer declared length
	// is taken for line noise at once instead of waiting for bytes that will not come; a
	// host that never asks for long replies sets it low.
	Limit int

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

// Next returns the next good frame. ErrIncomplete means more bytes are needed. ErrBadCRC and
// ErrBadLength report a broken frame that was dropped (the decoder has already moved on), so
// a caller can count it or react at once; call Next again for the bytes that follow. Bytes
// before a sync byte are skipped silently and counted.
func (d *Decoder) Next() (Frame, error) {
	i := 0
	for i < len(d.buf) && d.buf[i] != Sync {
		i++
	}
	if i > 0 {
		d.stats.GarbageBytes += uint64(i)
		d.consume(i)
	}
	limit := d.Limit
	if limit <= 0 || limit > MaxFrameLen {
		limit = MaxFrameLen
	}
	f, n, err := decode(d.buf, limit)
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
