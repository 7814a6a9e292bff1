// Package ccnet drives bill validators that speak CashCode's CCNET protocol (CashCode SM,
// MSM, FLS and later CPI units, and the clones that copy it) over an io.ReadWriter, normally
// a serial port at 9600 8N1 (see devices/serialport).
//
// # Protocol
//
// The host (the "Controller") polls; the unit only ever answers. A frame is
// 02 ADR LNG CMD DATA CRCL CRCH: ADR is the unit's address (0x03 for a bill validator), LNG
// the length of the whole frame (6..250; a longer frame has LNG 0 and its length in the two
// bytes after CMD, high byte first), and the CRC is CRC-16/KERMIT over 02..last data byte,
// sent low byte first (frame.go). The host sends POLL (0x33) every PollInterval and the unit
// answers with its state, some states with one data byte (ESCROW, STACKED and RETURNED with
// the bill type 0..23, REJECTING with a reason, FAILURE with a code, BUSY with a time).
// Commands are answered by ACK (0x00), by data, or by ILLEGAL COMMAND (0x30). The host
// acknowledges every reply other than ACK and NAK with ACK; a reply that arrives damaged is
// answered with NAK (0xFF), on which the unit sends it again, and a unit that received a
// damaged command answers NAK, on which the host sends the command again.
//
// # Sources
//
// CashCode's "CCNET protocol description" is not public. The facts used here are those of
// the project's PROTOCOLS.md, checked against public peer code that quotes it (state and
// reject tables, the 10 s escrow and HOLD time, "credit recovery" after POWER UP WITH BILL IN
// STACKER, the states in which IDENTIFICATION and GET BILL TABLE are legal, the timing
// constants) and against frames published in several projects (POLL 02 03 06 33 DA 81,
// RESET 02 03 06 30 41 B3, ACK 02 03 06 00 C2 82). The report of the change that added this
// package lists what is verified and what is not. Two things are not verifiable from public
// material and are handled so that either answer is safe: whether a unit repeats an
// unacknowledged STACKED, and the sign of the bill table's exponent byte (bit 7 set is read
// as a negative power of ten).
//
// # Money
//
// Every bill type is enabled with its escrow bit set, so each note stops in escrow: ESCROW
// goes to Handler.Escrow once per escrow episode (again on every poll while the answer is
// Hold) and the decision becomes STACK, RETURN or HOLD. One HOLD keeps a note for 10 s; the
// driver re-sends it every HoldRefresh (5 s) while the handler keeps answering Hold.
//
// STACKED (0x81 + bill type) is the credit point. CCNET has no credit acknowledgement other
// than the host's ACK of the POLL reply that carries STACKED, so that ACK is withheld until
// Handler.Credited returned nil: every other reply is acknowledged as soon as it arrives,
// STACKED only after the credit is journaled. What the unit does without the ACK decides
// what that buys:
//
//   - A unit that repeats an unacknowledged STACKED on the next POLL (the MDB-style link
//     layer CCNET is modelled on; the emulator's default) keeps reporting the credit until
//     it is journaled, across host crashes: the guarantee is the same as ID-003's VEND VALID.
//     A new Run finds the unit in STACKED and calls Credited with the bill type the unit
//     reports (unlike ID-003, the denomination is known after a restart); the caller
//     recognises a credit it journaled before and returns nil.
//   - A unit that reports STACKED once whatever the host does moves on. The driver then
//     keeps the credit in memory and calls Credited again before every POLL until it
//     returns nil. Nothing is lost while the process lives; if the process dies first, the
//     note is in the cassette without a journal record, and only the cassette count at
//     collection settles it (PROTOCOLS.md invariant 3's uncertain item).
//
// Consecutive STACKED answers for one bill type are one credit: repeats (the unit did not
// get the ACK, or got it late because journaling took longer than the unit's 10 ms wait)
// are acknowledged again without a second Credited. A second note cannot reach the cassette
// without an ESCROW answer and a STACK from this driver in between, so two notes never look
// like one.
//
// After POWER UP WITH BILL IN STACKER (0x12, reported as PowerUpNoteInStacker) and RESET,
// the CCNET description says the unit reports STACKED for that note once INITIALIZE is over
// ("credit recovery"); the driver passes it to Credited like any other credit. A caller that
// resolves the power-up report from its journal must expect that Credited and match it to
// the note it already marked uncertain instead of counting it twice.
//
// # Start-up
//
// Run first polls and touches nothing while a note is in the path or a credit is
// unacknowledged: ESCROW goes to the handler, STACKED is credited as above, ACCEPTING,
// STACKING, RETURNING and the rest are polled until they resolve. Only the power-up states
// (0x10, 0x11, 0x12, reported as PowerUp, PowerUpNoteInAcceptor, PowerUpNoteInStacker with
// the note if this process knows it) and FAILURE get a RESET. Then, where the unit answers
// them (power up, initialize, disabled, the failure states), GET STATUS, IDENTIFICATION
// (part number and serial into Info, the asset number in Identification and in the
// Identified event) and GET BILL TABLE are read once per Run (a table that differs from the
// configured one is reported as a ProtocolError event; the configured table is used; the
// Identified event comes after all three, so Info is complete when it arrives), then
// SET SECURITY (several models refuse it; that is only logged) and ENABLE BILL TYPES with an
// empty enable mask: the unit is left inhibited. Call Enable to take notes. A unit found
// enabled is inhibited first and identified once it reports DISABLED. A unit that powers up
// again while Run is active is reset and reconfigured the same way and, again, left
// inhibited.
//
// # Timing
//
// The description gives the unit 10 ms to answer, at most 5 ms between the bytes of a frame,
// 10 ms (20 ms recommended) of bus silence before a command, and the host a poll period of
// 100-200 ms. ReplyTimeout (100 ms), InterByteTimeout (50 ms), CommandGap (20 ms) and
// PollInterval (200 ms) keep those shapes with room for USB serial adapters. ACK and NAK go
// out at once. BUSY (0x1B + YH) is not a fact about a note: it gives no event and the next
// POLL waits YH × 100 ms.
//
// # Port lifetime and goroutines
//
// Run owns the port while it runs. It starts one reader goroutine that decodes frames
// (resynchronising on 0x02 after garbage, reassembling frames split across reads, dropping
// frames with a bad CRC or an impossible length, and a partial frame after more silence
// than InterByteTimeout) and hands them to the poll loop; everything written to the port is
// written by the poll loop, so Enable, Inhibit and Reset are requests to that loop. A Read
// that returns (0, nil), which is how a serial port reports its read timeout, means nothing
// yet; any Read error ends Run with that error. When ctx ends, Run inhibits the unit (best
// effort, bounded by ShutdownTimeout), then, if the port is an io.Closer, closes it, which is
// what releases the reader blocked in Read, and waits for the reader. So after Run returns
// the port is closed and nothing is left running; to run again, open the port again and make
// a new Driver.
//
// # Errors
//
// A reply that does not come within its timeout makes the driver send the command again; a
// damaged one makes it send NAK; together at most MaxRetries times. When a POLL fails that
// way the driver reports CommLost once, polls every LostPollInterval, and reports
// CommRestored when the unit answers again. ILLEGAL COMMAND is reported as a ProtocolError
// event and returned as acceptor.ErrRefused. No input makes the driver panic.
package ccnet
