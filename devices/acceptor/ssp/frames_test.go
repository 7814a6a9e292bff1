package ssp

// The annotated frame table shared by the encoder, decoder, streaming and fuzz tests. The
// frames marked GA138 are the packet examples of ITL's SSP manual (GA138_2_2_2129A),
// byte for byte, so they pin the CRC parameters, the byte order and the SEQ/ID layout
// independently of our encoder. ITL publishes no example with a stuffed byte; the stuffed
// frames below follow the rule of the manual ("if 0x7F appears in the data ... replaced by
// 0x7F 0x7F; byte stuffing is done after the CRC is calculated, the CRC itself can be byte
// stuffed"), which ITL's reference host code applies to every byte after the STX.

type tableFrame struct {
	name  string
	frame Frame
	wire  []byte
}

var frameTable = []tableFrame{
	{
		name:  "sync (GA138)",
		frame: Frame{Seq: true, Data: []byte{CmdSync}},
		wire: []byte{
			0x7F,       // STX
			0x80,       // SEQ/ID: sequence flag set, address 0
			0x01,       // LEN: one data byte
			0x11,       // SYNC
			0x65, 0x82, // CRC 0x8265 over 80 01 11, low byte first
		},
	},
	{
		name:  "ok reply (GA138)",
		frame: Frame{Seq: true, Data: []byte{RespOK}},
		wire:  []byte{0x7F, 0x80, 0x01, 0xF0 /* OK */, 0x23, 0x80},
	},
	{
		name:  "sync, flag clear",
		frame: Frame{Seq: false, Data: []byte{CmdSync}},
		wire:  []byte{0x7F, 0x00 /* flag clear */, 0x01, 0x11, 0x66, 0x08},
	},
	{
		name:  "poll (GA138)",
		frame: Frame{Seq: true, Data: []byte{CmdPoll}},
		wire:  []byte{0x7F, 0x80, 0x01, 0x07, 0x12, 0x02},
	},
	{
		name:  "poll reply: slave reset, disabled (GA138)",
		frame: Frame{Seq: true, Data: []byte{RespOK, EvSlaveReset, EvDisabled}},
		wire:  []byte{0x7F, 0x80, 0x03, 0xF0, 0xF1 /* SLAVE RESET */, 0xE8 /* DISABLED */, 0xBF, 0x8C},
	},
	{
		name:  "poll reply: credit channel 1, stacked (GA138)",
		frame: Frame{Seq: true, Data: []byte{RespOK, EvNoteCredit, 0x01, EvStacked}},
		wire:  []byte{0x7F, 0x80, 0x04, 0xF0, 0xEE, 0x01 /* channel 1 */, 0xEB, 0xB9, 0x48},
	},
	{
		name:  "poll with ack reply: stacking, credit channel 1 (GA138)",
		frame: Frame{Seq: true, Data: []byte{RespOK, EvStacking, EvNoteCredit, 0x01}},
		wire:  []byte{0x7F, 0x80, 0x04, 0xF0, 0xCC, 0xEE, 0x01, 0x62, 0xAA},
	},
	{
		name:  "get serial reply 01873452 (GA138)",
		frame: Frame{Seq: true, Data: []byte{RespOK, 0x00, 0x1C, 0x96, 0x2C}},
		wire:  []byte{0x7F, 0x80, 0x05, 0xF0, 0x00, 0x1C, 0x96, 0x2C /* big-endian */, 0xD4, 0x97},
	},
	{
		name:  "set inhibits channels 1-3 (GA138)",
		frame: Frame{Seq: true, Data: []byte{CmdSetInhibits, 0x07, 0x00}},
		wire:  []byte{0x7F, 0x80, 0x03, 0x02, 0x07 /* channels 1..3 */, 0x00, 0x2B, 0xB6},
	},
	{
		name:  "host protocol version 8 (GA138)",
		frame: Frame{Seq: true, Data: []byte{CmdHostProtocol, 0x08}},
		wire:  []byte{0x7F, 0x80, 0x02, 0x06, 0x08, 0x03, 0x94},
	},
	{
		name:  "request key exchange 0x6DEE29CC879 (GA138)",
		frame: Frame{Seq: true, Data: []byte{CmdRequestKeyExchange, 0x79, 0xC8, 0x9C, 0xE2, 0xDE, 0x06, 0x00, 0x00}},
		wire:  []byte{0x7F, 0x80, 0x09, 0x4C, 0x79, 0xC8, 0x9C, 0xE2, 0xDE, 0x06, 0x00, 0x00 /* little-endian */, 0x9D, 0x52},
	},
	{
		name:  "last reject code reply: reject by host (GA138)",
		frame: Frame{Seq: true, Data: []byte{RespOK, RejectByHost}},
		wire:  []byte{0x7F, 0x80, 0x02, 0xF0, 0x08, 0x0C, 0x20},
	},
	{
		name:  "get counters reply (GA138)",
		frame: Frame{Seq: true, Data: []byte{RespOK, 0x05, 0x11, 0, 0, 0, 0x28, 0, 0, 0, 0x23, 0, 0, 0, 0x0A, 0, 0, 0, 0x10, 0, 0, 0}},
		wire: []byte{0x7F, 0x80, 0x16, 0xF0,
			0x05,                   // five counters
			0x11, 0x00, 0x00, 0x00, // stacked 17
			0x28, 0x00, 0x00, 0x00, // stored 40
			0x23, 0x00, 0x00, 0x00, // dispensed 35
			0x0A, 0x00, 0x00, 0x00, // transferred 10
			0x10, 0x00, 0x00, 0x00, // rejected 16
			0x72, 0xB7},
	},
	{
		name:  "hopper address 0x10 get counters (GA138)",
		frame: Frame{Address: 0x10, Seq: true, Data: []byte{CmdGetCounters}},
		wire:  []byte{0x7F, 0x90 /* flag + address 0x10 */, 0x01, 0x58, 0x93, 0x82},
	},
	{
		name:  "stuffed data: set inhibits channels 1-7",
		frame: Frame{Seq: true, Data: []byte{CmdSetInhibits, 0x7F, 0x00}},
		wire:  []byte{0x7F, 0x80, 0x03, 0x02, 0x7F, 0x7F /* 0x7F doubled */, 0x00, 0x2E, 0x26},
	},
	{
		name:  "stuffed CRC: set inhibits channels 10, 11, 14, 15",
		frame: Frame{Seq: false, Data: []byte{CmdSetInhibits, 0x00, 0x66}},
		wire:  []byte{0x7F, 0x00, 0x03, 0x02, 0x00, 0x66, 0x7F, 0x7F /* CRC low 0x7F doubled */, 0x99},
	},
	{
		name:  "stuffed data and CRC: host protocol version 0xE8",
		frame: Frame{Seq: false, Data: []byte{CmdHostProtocol, 0xE8}},
		wire:  []byte{0x7F, 0x00, 0x02, 0x06, 0xE8, 0x7F, 0x7F, 0x96},
	},
}

// badCRC flips the high CRC byte (never into 0x7F, which would change the stuffing).
func badCRC(w []byte) []byte {
	b := append([]byte(nil), w...)
	b[len(b)-1] ^= 0x5A
	if b[len(b)-1] == STX {
		b[len(b)-1] ^= 0x01
	}
	return b
}

// truncated loses the last byte.
func truncated(w []byte) []byte { return append([]byte(nil), w[:len(w)-1]...) }

// garbageBefore puts line noise in front, including a lone STX followed by noise.
func garbageBefore(w []byte) []byte {
	return append([]byte{0x00, 0x13, 0xFF, 0x7F, 0x55, 0xAA}, w...)
}

// interrupted is the first half of a frame cut short by the start of the next one: the
// receiver must drop it at the lone STX.
func interrupted(w []byte) []byte {
	return append([]byte(nil), w[:len(w)/2]...)
}
