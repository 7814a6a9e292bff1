// Package ssp drives ITL banknote validators (NV9USB, NV10USB, NV200, BV series, NV11) that
// speak SSP or its encrypted form eSSP, over an io.ReadWriter: a serial port at 9600 8N2
// (see devices/serialport, preset SSP) or the USB CDC port of an NV9USB / NV200. It follows
// ITL's SSP protocol manual GA138 (issue GA138_2_2_2129A) and, where the manual is thin,
// ITL's own reference host code. eSSP, the encrypted form, is this package with
// Config.Encrypt set (in kioskd's configuration: acceptor.ssp.encrypt).
//
// # Device facts
//
// protocol.go and events.go hold the same facts as code.
//
//	link          9600 baud, 8 data bits, no parity, 2 stop bits (8N2); USB CDC on
//	              NV9USB / NV200
//	frame         7F SEQ/ID LEN DATA CRCL CRCH; SEQ/ID bit 7 = sequence flag, bits 0-6 =
//	              address (0 = validator); LEN counts DATA only; after the CRC is
//	              computed every 0x7F after the first byte is sent twice
//	check         CRC-16 poly 0x8005, seed 0xFFFF, not reflected, over SEQ/ID..DATA, low
//	              byte first (the check value of "123456789" is 0xAEE7)
//	retry         1 s without a reply: send the same packet with the same flag; the unit
//	              repeats its last reply without executing again; SYNC 0x11 resets the flag
//	escrow        READ 0xEF + channel (> 0: in escrow); the next POLL stacks it, REJECT
//	              0x08 returns it, HOLD 0x18 keeps it (the unit returns it after 10 s
//	              without a command, reject code 0x13)
//	credit point  NOTE CREDIT 0xEE + channel; with POLL WITH ACK 0x56 it repeats in every
//	              poll until EVENT ACK 0x57, sent only once the credit is journaled
//	power-up      SLAVE RESET 0xF1, then 0xE1 NOTE CLEARED FROM FRONT (+ channel, 0 =
//	witnesses     unknown): the note went back to the customer; 0xE2 NOTE CLEARED INTO
//	              CASHBOX (+ channel): it is in the cassette; GET COUNTERS 0x58 (stacked,
//	              stored, rejected, kept across power cycles) is an independent witness
//	commands      RESET 0x01, SET INHIBITS 0x02 (bitmap, bit 0 = channel 1, 1 = enabled),
//	              SETUP REQUEST 0x05, HOST PROTOCOL VERSION 0x06, POLL 0x07, REJECT 0x08,
//	              DISABLE 0x09, ENABLE 0x0A, GET SERIAL 0x0C, SYNC 0x11, LAST REJECT CODE
//	              0x17, HOLD 0x18, SET GENERATOR 0x4A, SET MODULUS 0x4B, REQUEST KEY
//	              EXCHANGE 0x4C, POLL WITH ACK 0x56, EVENT ACK 0x57, GET COUNTERS 0x58,
//	              RESET COUNTERS 0x59
//	replies       first byte 0xF0 OK, else 0xF2 unknown command, 0xF3 wrong number of
//	              parameters, 0xF4 out of range, 0xF5 cannot process now, 0xF6 software
//	              error, 0xF7 checksum error, 0xF8 fail, 0xF9 header failure, 0xFA key not
//	              set (0xF7 and 0xF9 appear in ITL's headers, not in the manual)
//
// Poll events (several per reply, oldest first): 0xF1 SLAVE RESET, 0xEF READ, 0xEE NOTE
// CREDIT, 0xED REJECTING, 0xEC REJECTED, 0xCC STACKING, 0xEB STACKED, 0xEA SAFE JAM, 0xE9
// UNSAFE JAM, 0xE8 DISABLED, 0xE7 STACKER FULL, 0xE6 FRAUD ATTEMPT + channel, 0xE5 barcode
// validate, 0xE4 CASHBOX REPLACED, 0xE3 CASHBOX REMOVED, 0xE2 and 0xE1 as above, 0xE0 NOTE
// PATH OPEN, 0xD1 barcode ack, 0xB6 INITIALISING, 0xB5 CHANNEL DISABLE.
//
// Reject codes (LAST REJECT CODE, read after REJECTED): 0x00 note accepted, 0x01 length,
// 0x02 average, 0x03 coastline, 0x04 graph, 0x05 buried, 0x06 channel inhibited in the
// dataset, 0x07 second note, 0x08 reject by host, 0x09 cross channel, 0x0A rear sensor, 0x0B
// too long, 0x0C disabled by host, 0x0D slow mech, 0x0E strim attempt, 0x0F fraud channel,
// 0x10 no notes, 0x11 peak detect, 0x12 twisted note, 0x13 escrow timeout, 0x14 barcode
// scan, 0x15 no cam activate, 0x16-0x17 slot fail, 0x18 lens oversample, 0x19 width
// detect, 0x1A short note, 0x1B payout note, 0x1C double note, 0x1D unable to stack, 0x1F
// credit card. RejectReason maps them to the shared model.
//
// Failures the driver itself raises (Failure events; SSP has no failure code of its own):
// CodeUnitSwapped (another serial number on the line) and CodeCreditNotRecorded (a plain
// POLL credit that could not be journaled), and NOTE PATH OPEN as code 0xE0.
//
// eSSP: AES-128 with key = 64-bit fixed key (set per kiosk; the well-known default
// 0123456701234567 is refused) + 64-bit key agreed by Diffie-Hellman (SET GENERATOR, SET
// MODULUS, REQUEST KEY EXCHANGE). Encrypted DATA = 0x7E + AES(eLENGTH, 4-byte little-endian
// counter, data, random packing, eCRC) in whole 16-byte blocks; a wrong counter drops the
// packet. Details under eSSP below.
//
// # Framing
//
// A packet is STX(0x7F) SEQ/ID LEN DATA CRCL CRCH. Bit 7 of SEQ/ID is the sequence flag and
// bits 0-6 the address (0 for a validator, at most 0x7D); LEN counts DATA only; the CRC is
// CRC-16 poly 0x8005 seed 0xFFFF (devices/crc16.CMS) over SEQ/ID..DATA, low byte first.
// After the CRC is computed every 0x7F after the STX, CRC included, is sent twice; a lone
// 0x7F is the start of a new packet, and the decoder restarts there as a slave does
// (frame.go). The frame table in frames_test.go carries the manual's packet examples byte
// for byte.
//
// The host flips the sequence flag for every new packet and re-sends a packet it got no
// answer to, after ReplyTimeout (1 s, the manual's figure), byte for byte: a unit that saw
// the packet repeats its last reply instead of executing it again. SYNC resets the flag
// (SYNC goes out with it set, the next packet with it clear). The driver never sends a new
// packet while one is unanswered: after MaxRetries it reports CommLost and keeps re-sending
// that same packet every LostPollInterval, so the reply it finally gets (a poll's events, a
// REJECT's OK) is handled, once, by whoever sent it. Any re-send is a "gap": as the manual
// asks, GET SERIAL follows, to catch a unit swapped on the line.
//
// # Start-up
//
// Run first sets up the link: SYNC, with eSSP the key exchange, then HOST PROTOCOL VERSION
// 7 (6 if the unit refuses 7; 7 is the lowest that defines every event mapped here). Before
// the first poll it sends HOLD: the first POLL would stack a note the previous host process
// left in escrow, and HOLD is harmless either way. COMMAND CANNOT BE PROCESSED means no
// note is in escrow; OK means one is, of unknown channel, and it goes to Handler.Escrow as
// Note{} (the caller returns such a note, or stacks it if its journal knows better). Then
// Run polls and touches nothing while a note is in the path: credits the unit still
// reports (POLL WITH ACK repeats an unacknowledged NOTE CREDIT) go to Handler.Credited
// first. Once the path is clear it reads SETUP REQUEST (the channel table; compared with
// the configured table, which wins, a mismatch being a ProtocolError event), GET SERIAL
// (a different serial than Config.ExpectedSerial is a swap), SET INHIBITS for the
// configured channels and DISABLE, and reports Identified. Call Enable to take notes.
//
// # Money
//
// READ with a channel is a note in escrow; the next poll would stack it, so Handler.Escrow
// is asked before anything else is sent. Stack: the next poll, sent at once, stacks it.
// Return: REJECT. Hold: HOLD, re-sent every HoldInterval (3 s) while the handler keeps
// answering Hold, asked again every PollInterval. The unit returns a note in escrow after
// UnitEscrowTimeout (10 s) without a command (reject code 0x13); 3 s plus three 1 s retries
// keeps every HOLD inside it, and Config.Validate refuses settings that would not.
//
// NOTE CREDIT + channel is the credit point and goes to Handler.Credited with the note of
// its channel (SSP names the channel, so the note is known even after a host restart).
//
// With POLL WITH ACK (PollAuto uses it when the unit takes it; an NV9USB takes it only
// encrypted) the unit repeats the reply carrying the credit, and accepts no further note,
// until EVENT ACK. The driver sends EVENT ACK only after Credited returned nil; a failed
// Credited is called again on the repeated reply. A repeated reply is recognised as such
// and its events are not reported twice.
//
// With plain POLL the unit reports a credit once and forgets it. That is weaker, and the
// driver cannot make it otherwise: when Credited fails, the driver keeps the note in memory
// and calls Credited again before every poll, raises a Failure event with code
// CodeCreditNotRecorded (alarm-worthy: the unit will not report the note again), disables
// the unit and refuses Enable (ErrCreditPending) until Credited returned nil. Meanwhile it
// holds back Idle and Disabled events, which a caller takes as "all clear", and reports
// the state again once the credit is recorded. If the
// process dies first, the credit is gone from the link; GET COUNTERS (Counters) and the
// cashbox count remain as witnesses. A poll reply lost on the line is recovered by the
// re-send rule above; one dropped for a bad eSSP counter, or owed when the link is set up
// again, is lost with POLL and repeated with POLL WITH ACK. Use POLL WITH ACK (eSSP) where
// money matters.
//
// # Events
//
// A poll reply lists events oldest first. Notes' facts are reported in order: NOTE CREDIT
// (Credited), STACKED (Stacked), REJECTED (LAST REJECT CODE is read: reject by host is
// Returned, anything else Rejected with the reason mapped by RejectReason), FRAUD ATTEMPT
// (Fraud), CASHBOX REPLACED (CassetteReplaced). SLAVE RESET starts a power-up report that
// waits PowerUpSettle (2 s) and for INITIALISING to end: NOTE CLEARED FROM FRONT becomes
// PowerUpNoteInAcceptor, NOTE CLEARED INTO CASHBOX PowerUpNoteInStacker, each with the note
// of its channel (or, channel 0, the note this process knew in the path), and only when
// neither came is PowerUp reported: the model says PowerUp means an empty path, and a
// caller that resolves an open stack intent on PowerUp must not see one first. Conditions
// the unit repeats on every poll become one state, reported when it changes: READ 0
// (Accepting), STACKING (Stacking), REJECTING after the host's REJECT (Returning), SAFE and
// UNSAFE JAM (AcceptorJam, code says which), CASHBOX REMOVED (CassetteRemoved), NOTE PATH
// OPEN (Failure, code 0xE0), STACKER FULL (CassetteFull, held until the cashbox comes
// out), INITIALISING (Initializing), DISABLED and CHANNEL DISABLE (Disabled), nothing while
// enabled (Idle). An event whose length the driver does not know (a payout device's) ends
// the parse: the events before it are handled, the rest reported as a ProtocolError, and a
// POLL WITH ACK reply with such an event is never acknowledged. Generic responses other
// than OK come back as *ReplyError, which unwraps to ErrCannotProcess and friends and to
// acceptor.ErrRefused.
//
// # Unit swap
//
// GET SERIAL after a gap, a SLAVE RESET or at start-up that returns another serial number
// is reported as a Failure event with code CodeUnitSwapped and Detail "unit swapped: serial
// X -> Y"; the unit is disabled, Enable refused (ErrUnitSwapped) and Idle / Disabled held
// back until a technician calls ConfirmSwap(ctx), after which the setup is read again. The
// shared model has no kind for it yet.
//
// # eSSP
//
// With Config.Encrypt, SYNC is followed by SET GENERATOR, SET MODULUS (two random primes
// from crypto/rand, math/big) and REQUEST KEY EXCHANGE (the host's G^x mod N); the unit
// answers its own intermediate key and both compute the negotiated key. Values travel as 8
// little-endian bytes. The AES-128 key is the fixed key (Config.FixedKey) in bytes 0-7 and
// the negotiated key in bytes 8-15, both little-endian (the manual's SET FIXED KEY example
// sends 0x0123456701234567 as 67 45 23 01 ...). Every later command is sent as STEX(0x7E)
// + AES-ECB(eLENGTH, 4-byte little-endian count, data, random packing, eCRC) padded to
// whole 16-byte blocks (crypt.go). The count starts at 0 with each key and advances once
// per exchange: the reply must carry the command's count plus one, and the next command
// uses that value (ITL's reference host code works so; the manual's prose can be read as
// two steps per exchange). A reply with a bad eCRC or the wrong count, or a plain reply
// carrying data to an encrypted command (a forged event), is dropped and keys are
// negotiated again; so on KEY NOT SET (the unit reset). DefaultFixedKey, which every unit
// ships with, is refused unless AllowDefaultKey is set (simulation only). The fixed key is
// never logged.
//
// The primes are DefaultPrimeBits (31) bits wide, not 64, though the fields are 64 bits:
// ITL's reference code keeps them below 2^31 and computes x*y mod N in 64-bit integers, so
// a unit built the same way would compute another key from a larger modulus. PrimeBits
// raises the size for units known to handle it. The security rests on the fixed key; the
// negotiated half only makes each session's key different.
//
// # Port lifetime and goroutines
//
// As in devices/acceptor/id003: Run owns the port, starts one reader goroutine (which drops
// a partial frame after more silence than InterByteTimeout, 100 ms by default), and every
// write comes from the poll loop, so Enable, Inhibit, Reset, Counters and ConfirmSwap are
// requests to that loop (served once the unit is configured). A Read that returns (0, nil)
// is a serial read timeout; any Read error ends Run. When ctx ends Run finishes a packet
// still owed a reply, carries out a Stack decision not yet sent, sends DISABLE (bounded by
// ShutdownTimeout), closes the port if it is an io.Closer, and waits for the reader. No
// input makes the driver panic.
package ssp
