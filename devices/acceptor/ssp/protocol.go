package ssp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/kioskd/kioskd/devices/acceptor"
)

// Host commands (the first DATA byte of a command packet). The NV9USB command table of ITL's
// SSP manual GA138 lists every one of them.
const (
	CmdReset              byte = 0x01
	CmdSetInhibits        byte = 0x02 // 1 or 2 bytes: bit 0 of the first = channel 1, 1 = enabled
	CmdDisplayOn          byte = 0x03
	CmdDisplayOff         byte = 0x04
	CmdSetupRequest       byte = 0x05
	CmdHostProtocol       byte = 0x06 // 1 byte: the protocol version the host speaks
	CmdPoll               byte = 0x07
	CmdReject             byte = 0x08 // return the note held in escrow
	CmdDisable            byte = 0x09
	CmdEnable             byte = 0x0A
	CmdGetSerial          byte = 0x0C // reply: 4 bytes, big-endian
	CmdSync               byte = 0x11
	CmdLastRejectCode     byte = 0x17 // reply: 1 byte, see RejectReason
	CmdHold               byte = 0x18 // keep the note in escrow; restarts the unit's 10 s timeout
	CmdGetFirmware        byte = 0x20
	CmdGetDataset         byte = 0x21
	CmdSetGenerator       byte = 0x4A // 8 bytes little-endian, a prime
	CmdSetModulus         byte = 0x4B // 8 bytes little-endian, a prime
	CmdRequestKeyExchange byte = 0x4C // 8 bytes little-endian; reply: 8 bytes little-endian
	CmdPollWithAck        byte = 0x56
	CmdEventAck           byte = 0x57
	CmdGetCounters        byte = 0x58
	CmdResetCounters      byte = 0x59
)

// Generic responses (the first DATA byte of every reply).
const (
	RespOK             byte = 0xF0
	RespUnknownCommand byte = 0xF2
	RespWrongParams    byte = 0xF3 // wrong number of parameters
	RespOutOfRange     byte = 0xF4 // a parameter is out of range
	RespCannotProcess  byte = 0xF5 // e.g. REJECT or HOLD with no note in escrow
	RespSoftwareError  byte = 0xF6
	RespChecksumError  byte = 0xF7 // in ITL's headers, not in the manual
	RespFail           byte = 0xF8
	RespHeaderFailure  byte = 0xF9 // in ITL's headers, not in the manual
	RespKeyNotSet      byte = 0xFA // eSSP keys not negotiated yet
)

// Sentinel errors for generic responses other than OK; a ReplyError unwraps to one of these
// and to acceptor.ErrRefused.
var (
	ErrUnknownCommand = errors.New("ssp: unit does not know the command (0xF2)")
	ErrWrongParams    = errors.New("ssp: wrong number of parameters (0xF3)")
	ErrOutOfRange     = errors.New("ssp: parameter out of range (0xF4)")
	ErrCannotProcess  = errors.New("ssp: command cannot be processed now (0xF5)")
	ErrSoftware       = errors.New("ssp: unit software error (0xF6)")
	ErrChecksum       = errors.New("ssp: unit reported a checksum error (0xF7)")
	ErrFail           = errors.New("ssp: command failed (0xF8)")
	ErrHeader         = errors.New("ssp: unit reported a header failure (0xF9)")
	ErrKeyNotSet      = errors.New("ssp: encryption key not set (0xFA)")
	ErrUnknownReply   = errors.New("ssp: unknown generic response")
)

var respErrors = map[byte]error{
	RespUnknownCommand: ErrUnknownCommand, RespWrongParams: ErrWrongParams,
	RespOutOfRange: ErrOutOfRange, RespCannotProcess: ErrCannotProcess,
	RespSoftwareError: ErrSoftware, RespChecksumError: ErrChecksum, RespFail: ErrFail,
	RespHeaderFailure: ErrHeader, RespKeyNotSet: ErrKeyNotSet,
}

// ReplyError is a generic response other than OK to a command.
type ReplyError struct {
	Cmd  byte // the command
	Code byte // the generic response
}

func (e *ReplyError) Error() string {
	return fmt.Sprintf("ssp: %s (%#02x) answered %#02x", CommandName(e.Cmd), e.Cmd, e.Code)
}

// Unwrap gives the sentinel for the response code and acceptor.ErrRefused.
func (e *ReplyError) Unwrap() []error {
	s, ok := respErrors[e.Code]
	if !ok {
		s = ErrUnknownReply
	}
	return []error{s, acceptor.ErrRefused}
}

var commandNames = map[byte]string{
	CmdReset: "reset", CmdSetInhibits: "set inhibits", CmdDisplayOn: "display on",
	CmdDisplayOff: "display off", CmdSetupRequest: "setup request",
	CmdHostProtocol: "host protocol version", CmdPoll: "poll", CmdReject: "reject",
	CmdDisable: "disable", CmdEnable: "enable", CmdGetSerial: "get serial number",
	CmdSync: "sync", CmdLastRejectCode: "last reject code", CmdHold: "hold",
	CmdGetFirmware: "get firmware version", CmdGetDataset: "get dataset version",
	CmdSetGenerator: "set generator", CmdSetModulus: "set modulus",
	CmdRequestKeyExchange: "request key exchange", CmdPollWithAck: "poll with ack",
	CmdEventAck: "event ack", CmdGetCounters: "get counters", CmdResetCounters: "reset counters",
}

// CommandName names a command byte for logs.
func CommandName(cmd byte) string {
	if s, ok := commandNames[cmd]; ok {
		return s
	}
	return fmt.Sprintf("command %#02x", cmd)
}

// Poll events (banknote validator, protocol versions 4..8).
const (
	EvSlaveReset      byte = 0xF1
	EvRead            byte = 0xEF // + channel; 0 = reading, >0 = note in escrow
	EvNoteCredit      byte = 0xEE // + channel: the credit point
	EvRejecting       byte = 0xED
	EvRejected        byte = 0xEC
	EvStacking        byte = 0xCC
	EvStacked         byte = 0xEB
	EvSafeJam         byte = 0xEA
	EvUnsafeJam       byte = 0xE9
	EvDisabled        byte = 0xE8
	EvStackerFull     byte = 0xE7
	EvFraudAttempt    byte = 0xE6 // + channel (0 = unknown)
	EvBarcodeValidate byte = 0xE5
	EvCashboxReplaced byte = 0xE4
	EvCashboxRemoved  byte = 0xE3
	EvClearedCashbox  byte = 0xE2 // + channel: at power-up a note went into the cashbox
	EvClearedFront    byte = 0xE1 // + channel: at power-up a note was given back at the front
	EvNotePathOpen    byte = 0xE0 // protocol 6+
	EvBarcodeAck      byte = 0xD1
	EvInitialising    byte = 0xB6 // only with POLL WITH ACK
	EvChannelDisable  byte = 0xB5 // protocol 7+: every channel inhibited
)

// eventDataLen is the number of data bytes after each event code a banknote validator sends.
// Events of payout devices (country blocks of variable length) and SMART Currency's 7-byte
// READ/CREDIT are not here: a reply carrying one cannot be parsed past it.
var eventDataLen = map[byte]int{
	EvSlaveReset: 0, EvRead: 1, EvNoteCredit: 1, EvRejecting: 0, EvRejected: 0,
	EvStacking: 0, EvStacked: 0, EvSafeJam: 0, EvUnsafeJam: 0, EvDisabled: 0,
	EvStackerFull: 0, EvFraudAttempt: 1, EvBarcodeValidate: 0, EvCashboxReplaced: 0,
	EvCashboxRemoved: 0, EvClearedCashbox: 1, EvClearedFront: 1, EvNotePathOpen: 0,
	EvBarcodeAck: 0, EvInitialising: 0, EvChannelDisable: 0,
}

var eventNames = map[byte]string{
	EvSlaveReset: "slave reset", EvRead: "read", EvNoteCredit: "note credit",
	EvRejecting: "rejecting", EvRejected: "rejected", EvStacking: "stacking",
	EvStacked: "stacked", EvSafeJam: "safe jam", EvUnsafeJam: "unsafe jam",
	EvDisabled: "disabled", EvStackerFull: "stacker full", EvFraudAttempt: "fraud attempt",
	EvBarcodeValidate: "bar code ticket validated", EvCashboxReplaced: "cashbox replaced",
	EvCashboxRemoved: "cashbox removed", EvClearedCashbox: "note cleared into cashbox",
	EvClearedFront: "note cleared from front", EvNotePathOpen: "note path open",
	EvBarcodeAck: "bar code ticket acknowledge", EvInitialising: "initialising",
	EvChannelDisable: "channel disable",
}

// EventName names a poll event code ("unknown event 0x.." for others).
func EventName(code byte) string {
	if s, ok := eventNames[code]; ok {
		return s
	}
	return fmt.Sprintf("unknown event %#02x", code)
}

// Event is one entry of a poll reply.
type Event struct {
	Code byte
	Data []byte // as many bytes as the event carries (see eventDataLen)
}

// Channel is the event's channel byte, 0 when it carries none.
func (e Event) Channel() byte {
	if len(e.Data) == 1 {
		return e.Data[0]
	}
	return 0
}

func (e Event) String() string {
	if len(e.Data) == 0 {
		return EventName(e.Code)
	}
	return fmt.Sprintf("%s % X", EventName(e.Code), e.Data)
}

// NeedsAck reports whether a unit polled with POLL WITH ACK repeats this event until EVENT
// ACK: NOTE CREDIT, NOTE CLEARED INTO CASHBOX and FRAUD ATTEMPT per GA138; NOTE CLEARED FROM
// FRONT is included because the manual does not say and an extra EVENT ACK is harmless (the
// unit answers COMMAND CANNOT BE PROCESSED).
func (e Event) NeedsAck() bool {
	switch e.Code {
	case EvNoteCredit, EvClearedCashbox, EvClearedFront, EvFraudAttempt:
		return true
	}
	return false
}

// Errors of the event parser.
var (
	// ErrUnknownEvent: an event code whose length this package does not know; the events
	// before it are returned, the rest of the reply cannot be read.
	ErrUnknownEvent = errors.New("ssp: unknown poll event")
	// ErrTruncatedEvent: the reply ends inside an event's data.
	ErrTruncatedEvent = errors.New("ssp: poll event truncated")
)

// ParseEvents parses the events of a poll reply (the reply DATA after the OK byte), oldest
// first. On an unknown or truncated event it returns the events before it and an error.
func ParseEvents(b []byte) ([]Event, error) {
	var out []Event
	for i := 0; i < len(b); {
		code := b[i]
		n, ok := eventDataLen[code]
		if !ok {
			return out, fmt.Errorf("ssp: event %#02x at byte %d: %w", code, i, ErrUnknownEvent)
		}
		if i+1+n > len(b) {
			return out, fmt.Errorf("ssp: %s at byte %d: %w", EventName(code), i, ErrTruncatedEvent)
		}
		e := Event{Code: code}
		if n > 0 {
			e.Data = append([]byte(nil), b[i+1:i+1+n]...)
		}
		out = append(out, e)
		i += 1 + n
	}
	return out, nil
}

// AppendEvents appends the wire form of events, the inverse of ParseEvents.
func AppendEvents(dst []byte, events ...Event) []byte {
	for _, e := range events {
		dst = append(dst, e.Code)
		dst = append(dst, e.Data...)
	}
	return dst
}

// Reject codes (the reply to LAST REJECT CODE), from the reject code table of GA138.
const (
	RejectNoteAccepted   byte = 0x00
	RejectLengthFail     byte = 0x01
	RejectAverageFail    byte = 0x02
	RejectCoastlineFail  byte = 0x03
	RejectGraphFail      byte = 0x04
	RejectBuriedFail     byte = 0x05
	RejectChannelInhibit byte = 0x06 // inhibited in the dataset
	RejectSecondNote     byte = 0x07
	RejectByHost         byte = 0x08
	RejectCrossChannel   byte = 0x09
	RejectRearSensor     byte = 0x0A
	RejectTooLong        byte = 0x0B
	RejectDisabledByHost byte = 0x0C // the channel is inhibited by SET INHIBITS
	RejectSlowMech       byte = 0x0D
	RejectStrimAttempt   byte = 0x0E
	RejectFraudChannel   byte = 0x0F
	RejectNoNotes        byte = 0x10
	RejectPeakDetect     byte = 0x11
	RejectTwisted        byte = 0x12
	RejectEscrowTimeout  byte = 0x13 // nothing from the host for 10 s with a note in escrow
	RejectBarcodeScan    byte = 0x14
	RejectNoCamActivate  byte = 0x15
	RejectSlotFail1      byte = 0x16
	RejectSlotFail2      byte = 0x17
	RejectLensOversample byte = 0x18
	RejectWidthDetect    byte = 0x19
	RejectShortNote      byte = 0x1A
	RejectPayoutNote     byte = 0x1B
	RejectDoubleNote     byte = 0x1C
	RejectUnableToStack  byte = 0x1D
	RejectCreditCard     byte = 0x1F
)

type rejectInfo struct {
	name   string
	reason acceptor.RejectReason
}

var rejectCodes = map[byte]rejectInfo{
	RejectNoteAccepted:   {"note accepted", acceptor.RejectUnknown},
	RejectLengthFail:     {"length fail", acceptor.RejectLength},
	RejectAverageFail:    {"average fail", acceptor.RejectDenomination},
	RejectCoastlineFail:  {"coastline fail", acceptor.RejectDenomination},
	RejectGraphFail:      {"graph fail", acceptor.RejectDenomination},
	RejectBuriedFail:     {"buried fail", acceptor.RejectDenomination},
	RejectChannelInhibit: {"channel inhibit", acceptor.RejectInhibited},
	RejectSecondNote:     {"second note detected", acceptor.RejectMultiple},
	RejectByHost:         {"reject by host", acceptor.RejectHostReturn},
	RejectCrossChannel:   {"cross channel detected", acceptor.RejectDenomination},
	RejectRearSensor:     {"rear sensor error", acceptor.RejectConveying},
	RejectTooLong:        {"note too long", acceptor.RejectLength},
	RejectDisabledByHost: {"disabled by host", acceptor.RejectInhibited},
	RejectSlowMech:       {"slow mech", acceptor.RejectConveying},
	RejectStrimAttempt:   {"strim attempt", acceptor.RejectCounterfeit},
	RejectFraudChannel:   {"fraud channel", acceptor.RejectCounterfeit},
	RejectNoNotes:        {"no notes detected", acceptor.RejectInsertion},
	RejectPeakDetect:     {"peak detect fail", acceptor.RejectDenomination},
	RejectTwisted:        {"twisted note", acceptor.RejectInsertion},
	RejectEscrowTimeout:  {"escrow time-out", acceptor.RejectTimeout},
	RejectBarcodeScan:    {"bar code scan fail", acceptor.RejectDenomination},
	RejectNoCamActivate:  {"no cam activate", acceptor.RejectConveying},
	RejectSlotFail1:      {"slot fail 1", acceptor.RejectDenomination},
	RejectSlotFail2:      {"slot fail 2", acceptor.RejectDenomination},
	RejectLensOversample: {"lens oversample", acceptor.RejectConveying},
	RejectWidthDetect:    {"width detection fail", acceptor.RejectLength},
	RejectShortNote:      {"short note", acceptor.RejectLength},
	RejectPayoutNote:     {"payout note", acceptor.RejectOperation},
	RejectDoubleNote:     {"double note detected", acceptor.RejectMultiple},
	RejectUnableToStack:  {"unable to stack", acceptor.RejectConveying},
	RejectCreditCard:     {"credit card detected", acceptor.RejectInsertion},
}

// RejectReason maps a reject code to the neutral model; an unlisted code gives
// RejectUnknown.
func RejectReason(code byte) acceptor.RejectReason { return rejectCodes[code].reason }

// RejectName names a reject code for technicians.
func RejectName(code byte) string {
	if r, ok := rejectCodes[code]; ok {
		return r.name
	}
	return fmt.Sprintf("reject code %#02x", code)
}

// Unit types (first byte of the SETUP REQUEST reply).
const (
	UnitValidator   byte = 0x00
	UnitSmartHopper byte = 0x03
	UnitSmartPayout byte = 0x06
	UnitNV11        byte = 0x07
)

// UnitTypeName names a unit type.
func UnitTypeName(t byte) string {
	switch t {
	case UnitValidator:
		return "banknote validator"
	case UnitSmartHopper:
		return "SMART Hopper"
	case UnitSmartPayout:
		return "SMART Payout"
	case UnitNV11:
		return "NV11"
	}
	return fmt.Sprintf("unit type %#02x", t)
}

// Channel is one entry of a validator's channel table.
type Channel struct {
	Number   int    // 1-based
	Value    uint32 // face value in the dataset's own units: major units × ValueMultiplier
	Currency string // ISO 4217 from the expanded section (protocol 6+), else the unit's country
}

// Setup is the parsed reply to SETUP REQUEST of a banknote validator.
type Setup struct {
	UnitType        byte
	Firmware        string // 4 ASCII characters, "0380" = 3.80
	Country         string // the dataset's country/currency code
	ValueMultiplier uint32 // 0 on datasets whose values are only in the expanded section
	ProtocolVersion byte
	// RealValueMultiplier turns a channel value into minor units (100 for 5.00 EUR = 500).
	RealValueMultiplier uint32
	Channels            []Channel
	Security            []byte // obsolete per-channel security bytes
}

// ErrBadSetup: the SETUP REQUEST reply is shorter than its channel count says, or is not a
// validator's.
var ErrBadSetup = errors.New("ssp: malformed setup request reply")

// ParseSetup parses the data of a SETUP REQUEST reply (after the OK byte). Layout per GA138:
// unit type (1), firmware (4 ASCII), country (3 ASCII), value multiplier (3, big-endian),
// channel count n (1), n channel values, n security bytes, real value multiplier (3,
// big-endian), protocol version (1), and from protocol 6 on n 3-byte currency codes and n
// 4-byte little-endian channel values.
func ParseSetup(b []byte) (Setup, error) {
	if len(b) < 12 {
		return Setup{}, fmt.Errorf("ssp: setup reply of %d bytes: %w", len(b), ErrBadSetup)
	}
	s := Setup{
		UnitType:        b[0],
		Firmware:        printable(b[1:5]),
		Country:         printable(b[5:8]),
		ValueMultiplier: be24(b[8:11]),
	}
	if s.UnitType != UnitValidator && s.UnitType != UnitNV11 {
		return s, fmt.Errorf("ssp: setup reply from a %s: %w", UnitTypeName(s.UnitType), ErrBadSetup)
	}
	n := int(b[11])
	if n > 24 || len(b) < 16+2*n {
		return s, fmt.Errorf("ssp: setup reply of %d bytes for %d channels: %w", len(b), n, ErrBadSetup)
	}
	values := b[12 : 12+n]
	s.Security = append([]byte(nil), b[12+n:12+2*n]...)
	s.RealValueMultiplier = be24(b[12+2*n : 15+2*n])
	s.ProtocolVersion = b[15+2*n]
	expanded := s.ProtocolVersion >= 6
	if expanded && len(b) < 16+9*n {
		return s, fmt.Errorf("ssp: protocol %d setup reply of %d bytes lacks the expanded section for %d channels: %w",
			s.ProtocolVersion, len(b), n, ErrBadSetup)
	}
	for i := 0; i < n; i++ {
		c := Channel{Number: i + 1, Value: uint32(values[i]) * s.ValueMultiplier, Currency: s.Country}
		if expanded {
			off := 16 + 2*n + 3*i
			c.Currency = printable(b[off : off+3])
			c.Value = binary.LittleEndian.Uint32(b[16+5*n+4*i:])
		}
		s.Channels = append(s.Channels, c)
	}
	return s, nil
}

// Note converts channel c to the neutral model; ok is false for an empty channel or a value
// that overflows.
func (s Setup) Note(c Channel) (n acceptor.Note, ok bool) {
	n.Code = c.Number
	v := int64(c.Value) * int64(s.RealValueMultiplier)
	if v <= 0 || len(c.Currency) != 3 {
		return n, false
	}
	n.ValueMinor, n.Currency = v, c.Currency
	return n, true
}

// Denominations returns the unit's channel table in the neutral model; channels that
// convert to nothing are left out.
func (s Setup) Denominations() acceptor.Denominations {
	d := acceptor.Denominations{}
	for _, c := range s.Channels {
		if n, ok := s.Note(c); ok {
			d[c.Number] = n
		}
	}
	return d
}

// AppendSetup appends the wire form of s (without the OK byte), the inverse of ParseSetup:
// the expanded section is written when ProtocolVersion >= 6. Channel values are written in
// the one-byte section as Value / ValueMultiplier when that fits, else 0.
func AppendSetup(dst []byte, s Setup) []byte {
	dst = append(dst, s.UnitType)
	dst = append(dst, fixedASCII(s.Firmware, 4)...)
	dst = append(dst, fixedASCII(s.Country, 3)...)
	dst = appendBE24(dst, s.ValueMultiplier)
	n := len(s.Channels)
	dst = append(dst, byte(n))
	for _, c := range s.Channels {
		v := uint32(0)
		if s.ValueMultiplier > 0 && c.Value%s.ValueMultiplier == 0 && c.Value/s.ValueMultiplier <= 255 {
			v = c.Value / s.ValueMultiplier
		}
		dst = append(dst, byte(v))
	}
	for i := 0; i < n; i++ {
		sec := byte(0)
		if i < len(s.Security) {
			sec = s.Security[i]
		}
		dst = append(dst, sec)
	}
	dst = appendBE24(dst, s.RealValueMultiplier)
	dst = append(dst, s.ProtocolVersion)
	if s.ProtocolVersion >= 6 {
		for _, c := range s.Channels {
			dst = append(dst, fixedASCII(c.Currency, 3)...)
		}
		for _, c := range s.Channels {
			dst = binary.LittleEndian.AppendUint32(dst, c.Value)
		}
	}
	return dst
}

func be24(b []byte) uint32 { return uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2]) }

func appendBE24(dst []byte, v uint32) []byte { return append(dst, byte(v>>16), byte(v>>8), byte(v)) }

func fixedASCII(s string, n int) []byte {
	b := make([]byte, n)
	copy(b, s)
	return b
}

func printable(b []byte) string {
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7E {
			return -1
		}
		return r
	}, string(b)))
}

// Counters are the unit's note activity counters (GET COUNTERS). They survive power cycles
// and wrap at 2^32; they are an independent witness for recovery and cash collection.
type Counters struct {
	Stacked     uint32 `json:"stacked"`
	Stored      uint32 `json:"stored"`
	Dispensed   uint32 `json:"dispensed"`
	Transferred uint32 `json:"transferred"` // from the payout store to the stacker
	Rejected    uint32 `json:"rejected"`
}

// ErrBadCounters: the GET COUNTERS reply is malformed.
var ErrBadCounters = errors.New("ssp: malformed get counters reply")

// ParseCounters parses the data of a GET COUNTERS reply (after the OK byte): a count of
// counters and that many 4-byte little-endian values, in the order of Counters. Counters a
// unit does not send stay zero; extra ones are ignored.
func ParseCounters(b []byte) (Counters, error) {
	if len(b) < 1 || len(b) < 1+4*int(b[0]) {
		return Counters{}, fmt.Errorf("ssp: counters reply of %d bytes: %w", len(b), ErrBadCounters)
	}
	var v [5]uint32
	for i := 0; i < int(b[0]) && i < len(v); i++ {
		v[i] = binary.LittleEndian.Uint32(b[1+4*i:])
	}
	return Counters{Stacked: v[0], Stored: v[1], Dispensed: v[2], Transferred: v[3], Rejected: v[4]}, nil
}

// AppendCounters appends the wire form of c (without the OK byte).
func AppendCounters(dst []byte, c Counters) []byte {
	dst = append(dst, 5)
	for _, v := range []uint32{c.Stacked, c.Stored, c.Dispensed, c.Transferred, c.Rejected} {
		dst = binary.LittleEndian.AppendUint32(dst, v)
	}
	return dst
}

// MaxChannel is the highest channel SET INHIBITS can address with its two bytes.
const MaxChannel = 16

// InhibitMask returns the two SET INHIBITS bytes that enable exactly channels.
func InhibitMask(channels []int) ([2]byte, error) {
	var m uint16
	for _, c := range channels {
		if c < 1 || c > MaxChannel {
			return [2]byte{}, fmt.Errorf("ssp: channel %d outside 1..%d", c, MaxChannel)
		}
		m |= 1 << (c - 1)
	}
	return [2]byte{byte(m), byte(m >> 8)}, nil
}

// ChannelEnabled reports whether the SET INHIBITS bytes mask enable channel c.
func ChannelEnabled(mask [2]byte, c int) bool {
	if c < 1 || c > MaxChannel {
		return false
	}
	m := uint16(mask[0]) | uint16(mask[1])<<8
	return m&(1<<(c-1)) != 0
}
