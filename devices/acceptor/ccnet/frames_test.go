package ccnet

// The annotated frame table shared by the encoder, decoder, streaming and fuzz tests. Every
// frame is written out byte by byte; the CRCs are CRC-16/KERMIT over 02..last data byte,
// sent low byte first. POLL (02 03 06 33 DA 81), RESET (02 03 06 30 41 B3) and ACK
// (02 03 06 00 C2 82) are the frames published in several public CCNET projects, so they pin
// the CRC parameters and the byte order independently of our own encoder; the others were
// computed with a separate implementation.
//
// Each frame has malformed twins, built by the helpers below the table: bad CRC, wrong LNG,
// truncated, garbage before.

type tableFrame struct {
	name string
	addr byte
	cmd  byte
	data []byte
	wire []byte
}

var identWire = append(append([]byte{
	0x02, 0x03,
	0x27, // LNG 39: 6 + 33 data bytes (the reply's 34 bytes are CMD + 33)
},
	"SM-CN2715      41A012345678"...), // 15-byte part number, 12-byte serial
	0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, // 7-byte asset number
	0x80, 0x80, // CRC 0x8080
)

// extWire is an extended frame: 251 data bytes make the frame 259 bytes long, more than
// LNG can say.
var extWire = func() []byte {
	b := []byte{
		0x02, 0x03,
		0x00,       // LNG 0: the length follows CMD
		0x60,       // CMD (REQUEST STATISTICS has long replies)
		0x01, 0x03, // length 0x0103 = 259, high byte first
	}
	for i := range 251 {
		b = append(b, byte(i))
	}
	return append(b, 0x0A, 0x1F) // CRC 0x1F0A over everything before, the length bytes included
}()

var frameTable = []tableFrame{
	{
		name: "poll",
		addr: AddrBillValidator, cmd: CmdPoll,
		wire: []byte{
			0x02,       // SYNC
			0x03,       // ADR: bill validator
			0x06,       // LNG: whole frame, 6 bytes
			0x33,       // CMD: POLL
			0xDA, 0x81, // CRC 0x81DA, low byte first
		},
	},
	{
		name: "reset (and, from the unit, ILLEGAL COMMAND: the same bytes)",
		addr: AddrBillValidator, cmd: CmdReset,
		wire: []byte{0x02, 0x03, 0x06, 0x30 /* RESET */, 0x41, 0xB3},
	},
	{
		name: "ack",
		addr: AddrBillValidator, cmd: CmdAck,
		wire: []byte{0x02, 0x03, 0x06, 0x00 /* ACK */, 0xC2, 0x82},
	},
	{
		name: "nak",
		addr: AddrBillValidator, cmd: CmdNak,
		wire: []byte{0x02, 0x03, 0x06, 0xFF /* NAK */, 0xBA, 0x8D},
	},
	{
		name: "poll to a bill-to-bill unit",
		addr: AddrBillToBill, cmd: CmdPoll,
		wire: []byte{0x02, 0x01 /* ADR 1 */, 0x06, 0x33, 0x62, 0x34},
	},
	{
		name: "enable bill types 0, 2, 3 with escrow",
		addr: AddrBillValidator, cmd: CmdEnableBillTypes,
		data: []byte{0x00, 0x00, 0x0D, 0xFF, 0xFF, 0xFF},
		wire: []byte{
			0x02, 0x03,
			0x0C,             // LNG 12: six data bytes
			0x34,             // ENABLE BILL TYPES
			0x00, 0x00, 0x0D, // enable: byte 2 holds types 0..7, 0x0D = types 0, 2, 3
			0xFF, 0xFF, 0xFF, // escrow for every type
			0xD3, 0xB1, // CRC 0xB1D3
		},
	},
	{
		name: "idling",
		addr: AddrBillValidator, cmd: StIdling,
		wire: []byte{0x02, 0x03, 0x06, 0x14 /* IDLING */, 0x67, 0xD4},
	},
	{
		name: "escrow type 2",
		addr: AddrBillValidator, cmd: StEscrow,
		data: []byte{0x02},
		wire: []byte{
			0x02, 0x03, 0x07,
			0x80,       // ESCROW POSITION
			0x02,       // bill type 2
			0x9E, 0x10, // CRC 0x109E
		},
	},
	{
		name: "stacked type 2",
		addr: AddrBillValidator, cmd: StStacked,
		data: []byte{0x02},
		wire: []byte{0x02, 0x03, 0x07, 0x81 /* BILL STACKED */, 0x02, 0x46, 0x09},
	},
	{
		name: "rejecting 0x68",
		addr: AddrBillValidator, cmd: StRejecting,
		data: []byte{0x68},
		wire: []byte{0x02, 0x03, 0x07, 0x1C /* REJECTING */, 0x68 /* inhibit */, 0x3F, 0x6C},
	},
	{
		name: "failure 0x50",
		addr: AddrBillValidator, cmd: StFailure,
		data: []byte{0x50},
		wire: []byte{0x02, 0x03, 0x07, 0x47 /* FAILURE */, 0x50 /* stack motor */, 0xAB, 0xE6},
	},
	{
		name: "identification reply",
		addr: AddrBillValidator, cmd: 'S',
		data: identWire[4 : len(identWire)-2],
		wire: identWire,
	},
	{
		name: "bill table reply (two entries)",
		addr: AddrBillValidator, cmd: 0x01,
		data: []byte{'C', 'H', 'N', 0x01, 0x05, 'C', 'H', 'N', 0x00},
		wire: []byte{
			0x02, 0x03, 0x0F, // LNG 15: ten payload bytes
			0x01, 'C', 'H', 'N', 0x01, // type 0: 1 × 10^1 CNY
			0x05, 'C', 'H', 'N', 0x00, // type 1: 5 × 10^0 CNY
			0x16, 0x88, // CRC 0x8816
		},
	},
	{
		name: "extended length",
		addr: AddrBillValidator, cmd: 0x60,
		data: extWire[6 : len(extWire)-2],
		wire: extWire,
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
	if b[2] == 0 {
		b[5]++
	} else {
		b[2]++
	}
	return b
}

// truncated loses the last byte.
func truncated(w []byte) []byte { return append([]byte(nil), w[:len(w)-1]...) }

// garbageBefore puts line noise, including a stray sync byte with an impossible LNG, in front.
func garbageBefore(w []byte) []byte {
	return append([]byte{0x00, 0x14, 0xFF, 0x02, 0x03, 0x01, 0x55}, w...)
}
