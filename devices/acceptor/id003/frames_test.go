package id003

// The annotated frame table shared by the encoder, decoder, streaming and fuzz tests. Every
// frame is written out byte by byte; the CRCs are CRC-16/KERMIT over FC..last data byte, sent
// low byte first. STATUS REQUEST (FC 05 11 27 56), ACK (FC 05 50 AA 05) and RESET
// (FC 05 40 2B 15) are the frames published in many public ID-003 write-ups, so they pin the
// CRC parameters and the byte order independently of our own encoder.
//
// Each frame has malformed twins, built by the helpers below the table: bad CRC, wrong LNG,
// truncated, garbage before.

type tableFrame struct {
	name string
	cmd  byte
	data []byte
	wire []byte
}

var frameTable = []tableFrame{
	{
		name: "status request",
		cmd:  CmdStatusRequest,
		wire: []byte{
			0xFC,       // sync
			0x05,       // LNG: whole frame, 5 bytes
			0x11,       // CMD: STATUS REQUEST
			0x27, 0x56, // CRC 0x5627, low byte first
		},
	},
	{
		name: "ack",
		cmd:  CmdAck,
		wire: []byte{
			0xFC, 0x05,
			0x50,       // ACK (host after VEND VALID, unit after an operation command)
			0xAA, 0x05, // CRC 0x05AA
		},
	},
	{
		name: "reset",
		cmd:  CmdReset,
		wire: []byte{0xFC, 0x05, 0x40 /* RESET */, 0x2B, 0x15},
	},
	{
		name: "stack-1",
		cmd:  CmdStack1,
		wire: []byte{0xFC, 0x05, 0x41 /* STACK-1 */, 0xA2, 0x04},
	},
	{
		name: "inhibit",
		cmd:  CmdSetInhibit,
		data: []byte{0x01},
		wire: []byte{
			0xFC, 0x06, // LNG 6: one data byte
			0xC3,       // SET INHIBIT
			0x01,       // 1 = inhibit
			0x8D, 0xC7, // CRC 0xC78D
		},
	},
	{
		name: "enable denominations",
		cmd:  CmdSetDenoms,
		data: []byte{0xF8, 0xFF},
		wire: []byte{
			0xFC, 0x07, // LNG 7: two data bytes
			0xC0,       // ENABLE/DISABLE DENOMINATIONS
			0xF8, 0xFF, // bit set = disabled: 0x61..0x63 enabled, the rest disabled
			0x9D, 0x08, // CRC 0x089D
		},
	},
	{
		name: "escrow 0x63",
		cmd:  StEscrow,
		data: []byte{0x63},
		wire: []byte{
			0xFC, 0x06,
			0x13,       // ESCROW
			0x63,       // escrow code 0x63
			0xA2, 0xD8, // CRC 0xD8A2
		},
	},
	{
		name: "rejecting 0x79",
		cmd:  StRejecting,
		data: []byte{0x79},
		wire: []byte{0xFC, 0x06, 0x17 /* REJECTING */, 0x79 /* inhibit */, 0x19, 0x00},
	},
	{
		name: "vend valid",
		cmd:  StVendValid,
		wire: []byte{0xFC, 0x05, 0x15 /* VEND VALID */, 0x03, 0x10},
	},
	{
		name: "failure 0xA2",
		cmd:  StFailure,
		data: []byte{0xA2},
		wire: []byte{0xFC, 0x06, 0x49 /* FAILURE */, 0xA2 /* stack motor */, 0xA0, 0x21},
	},
	{
		name: "version",
		cmd:  CmdVersion,
		data: []byte("i(CHN)100-SS ID003-05V310-00"),
		wire: append(append([]byte{0xFC, 0x21 /* 5 + 28 data bytes */, 0x88 /* VERSION */},
			"i(CHN)100-SS ID003-05V310-00"...), 0xA4, 0xAD),
	},
	{
		name: "currency table",
		cmd:  CmdCurrency,
		data: []byte{0x61, 0x2D, 0x01, 0x00, 0x62, 0x2D, 0x05, 0x00},
		wire: []byte{
			0xFC, 0x0D, // LNG 13: 8 data bytes
			0x8A,                   // CURRENCY ASSIGN
			0x61, 0x2D, 0x01, 0x00, // code 0x61, country 0x2D (CNY), 1 × 10^0
			0x62, 0x2D, 0x05, 0x00, // code 0x62, CNY, 5 × 10^0
			0x6C, 0xC2, // CRC 0xC26C
		},
	},
}

// badCRC flips the high CRC byte.
func badCRC(w []byte) []byte {
	b := append([]byte(nil), w...)
	b[len(b)-1] ^= 0xFF
	return b
}

// wrongLNG declares one byte more than the frame has, so the CRC lands on the wrong bytes.
func wrongLNG(w []byte) []byte {
	b := append([]byte(nil), w...)
	b[1]++
	return b
}

// truncated loses the last byte.
func truncated(w []byte) []byte { return append([]byte(nil), w[:len(w)-1]...) }

// garbageBefore puts line noise, including a stray sync byte with an impossible LNG, in front.
func garbageBefore(w []byte) []byte {
	return append([]byte{0x00, 0x13, 0xFF, 0xFC, 0x02, 0x55}, w...)
}
