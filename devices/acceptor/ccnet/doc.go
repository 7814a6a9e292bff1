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
// acknowledges every reply other than ACK and NAK with ACK (except one that may be a late
// answer: see Late answers); a reply that arrives damaged is
// answered with NAK (0xFF), on which the unit sends it again, and a unit that received a
// damaged command answers NAK, on which the host sends the command again.
//
// # Sources
//
// CashCode's "CCNET protocol description" is not public. The facts used here (Device facts
// below) were gathered from public manuals and checked against public peer code that quotes
// the description (state and
// reject tables, the 10 s escrow and HOLD time, "credit recovery" after POWER UP WITH BILL IN
// STACKER, the states in which IDENTIFICATION and GET BILL TABLE are legal, the timing
// constants) and against frames published in several projects (POLL 02 03 06 33 DA 81,
// RESET 02 03 06 30 41 B3, ACK 02 03 06 00 C2 82). The report of the change that added this
// package lists what is verified and what is not. Two things are not verifiable from public
// material and are handled so that either answer is safe: whether a unit repeats an
// unacknowledged STACKED, and the sign of the bill table's exponent byte (bit 7 set is read
// as a negative power of ten).
//
// # Device facts
//
// protocol.go and status.go hold the same facts as code.
//
//	link          9600 baud, 8 data bits, no parity, 1 stop bit (8N1)
//	frame         02 ADR LNG CMD DATA CRCL CRCH; ADR 0x03 = bill validator; LNG = length of
//	              the whole frame (6..250), or 0 with the length in two bytes after CMD
//	check         CRC-16/KERMIT over 02..last data byte, low byte first
//	              (the check value of "123456789" is 0x2189)
//	link control  ACK = CMD 0x00, NAK = CMD 0xFF (either way); ILLEGAL COMMAND = 0x30
//	poll          POLL 0x33, every 100-200 ms (default 200 ms); the unit answers within
//	              10 ms, at most 5 ms between bytes; 10 ms (20 recommended) of silence
//	              before each command
//	escrow        ESCROW 0x80 + bill type (0..23); host answers STACK 0x35, RETURN 0x36 or
//	              HOLD 0x38 (10 s more in escrow)
//	credit point  STACKED 0x81 + bill type; the host's ACK of that POLL reply follows only
//	              once the credit is journaled
//	power-up      0x10 POWER UP: nothing in the path
//	witnesses     0x11 POWER UP WITH BILL IN VALIDATOR: RESET returns the note
//	              0x12 POWER UP WITH BILL IN STACKER: RESET stacks it, and STACKED follows
//	              once INITIALIZE is over ("credit recovery")
//	commands      RESET 0x30, GET STATUS 0x31, SET SECURITY 0x32 (3-byte mask),
//	              ENABLE BILL TYPES 0x34 (3-byte enable mask + 3-byte escrow mask,
//	              big-endian: bill type n is byte 2-n/8, bit n%8), IDENTIFICATION 0x37
//	              (15 ASCII part number, 12 ASCII serial, 7-byte asset number),
//	              GET BILL TABLE 0x41 (24 entries of 5 bytes: value, 3 ASCII country,
//	              exponent)
//
// States: 0x10-0x12 as above, 0x13 INITIALIZE, 0x14 IDLING, 0x15 ACCEPTING, 0x17 STACKING,
// 0x18 RETURNING, 0x19 DISABLED, 0x1A HOLDING, 0x1B BUSY + time, 0x1C REJECTING + reason,
// 0x41 CASSETTE FULL, 0x42 CASSETTE OUT, 0x43 VALIDATOR JAMMED, 0x44 CASSETTE JAMMED,
// 0x45 CHEATED, 0x46 PAUSE, 0x47 FAILURE + code, 0x80 ESCROW, 0x81 STACKED, 0x82 RETURNED
// (each + bill type).
//
// Reject reasons (the data byte of REJECTING): 0x60 insertion, 0x61 magnetic, 0x62 bill
// remaining in head, 0x63 multiplying (compensation factor, a counterfeit check, not
// "several notes"), 0x64 conveying, 0x65 identification, 0x66 verification, 0x67 optic,
// 0x68 inhibit, 0x69 capacitance, 0x6A operation, 0x6C length, 0x6D UV, 0x92-0x95 barcode
// (unreadable, length, start sequence, stop sequence); RejectReason maps them to the
// shared model, RejectName describes them.
//
// Failure codes (the data byte of FAILURE): 0x50 stack (drop cassette) motor, 0x51
// transport motor speed, 0x52 transport motor, 0x53 aligning motor, 0x54 initial cassette
// status, 0x55 optic canal, 0x56 magnetic (inductive) canal, 0x5F capacitance canal.
// FailureName describes them.
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
//     collection settles it (an uncertain item: see kiosk/journal's package documentation).
//
// Consecutive STACKED answers for one bill type are one credit: repeats (the unit did not
// get the ACK, or got it late because journaling took longer than the unit's 10 ms wait)
// are acknowledged again without a second Credited. A second note cannot reach the cassette
// without an ESCROW answer and a STACK from this driver in between, so two notes never look
// like one.
//
// The Stacked event (the unit has finished the note) follows the credit only when the unit
// moves on from STACKED to a state of its own, not at the first STACKED: a unit that powers
// up (or is reset) from STACKED may not have taken the ACK in, and reports the same note
// again. A caller that records the note finished on Stacked would count that report twice.
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
// the note if this process knows it) and FAILURE get a RESET (a Handler that implements
// acceptor.PowerUpRecorder gets the power-up report through PowerUp, on every poll until it
// returned nil, and only then is the unit reset; Reset answers acceptor.ErrNotRecorded
// meanwhile). Then, where the unit answers
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
//
// # Late answers
//
// CCNET frames carry no sequence number, and the host's ACK acknowledges the unit's last
// reply: the answer to the last command the host sent. An answer that comes after
// ReplyTimeout (a loaded host, a slow adapter) arrives after the command was sent again, and
// nothing tells it from the answer to the re-sent command. ACKing it would acknowledge the
// re-sent command's answer unseen, and when that is STACKED the unit takes the ACK as the
// credit acknowledgement and moves on before anything is journaled. So the driver counts
// the answers it may still be owed (every attempt that got none in time, by kind: POLL
// answers, and the ACK or data answers of the other commands) and ACKs an ordinary reply
// only while none is owed. A late frame that arrives settles one owed answer of its kind; a
// reply that can only answer the command just sent (an ACK or data reply while no answer of
// that kind is owed, or a POLL answer while no POLL answer is owed) settles the other kind,
// since the unit answers in order; while a POLL answer is owed and the unit is quiet, GET
// STATUS is sent to settle it. Two ACKs are always safe and always sent: the credit ACK of
// STACKED (Credited returned nil before it), and the ACK of RETURNED (the unit's answer to a
// re-sent POLL is RETURNED again, or a state STACKED cannot follow without an ESCROW and a
// STACK from this driver). A late STACKED is not dropped as stale: it goes to the credit
// logic like a POLL answer (without the ACK), so a unit that reports STACKED once still has
// it credited, and one that repeats it sees the repeat as the same credit.
package ccnet
