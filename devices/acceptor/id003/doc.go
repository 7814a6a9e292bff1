// Package id003 drives bill acceptors that speak JCM's ID-003 protocol (JCM UBA, iVIZION,
// WBA and the many clones that copy it) over an io.ReadWriter, normally a serial port at
// 9600 8E1 (see devices/serialport).
//
// # Protocol
//
// The host polls; the unit only ever answers. A frame is FC LNG CMD DATA CRCL CRCH, where LNG
// is the length of the whole frame and the CRC is CRC-16/KERMIT over FC..last data byte, sent
// low byte first (frame.go). The host sends STATUS REQUEST (0x11) every PollInterval and the
// unit answers with its status (IDLING, ACCEPTING, ESCROW + code, STACKING, VEND VALID, ...).
// Operation commands (RESET, STACK-1, RETURN, HOLD) are answered by ACK 0x50; setting
// commands (0xC0..0xC5) by an echo of the command; requests (0x88 version, 0x8A currency
// table) by the command byte and data. The host's own ACK to VEND VALID gets no answer. The
// JCM specification itself is not public: the facts below were gathered from public
// manuals and peer implementations and checked against each other; the ones no public
// source confirms are marked unverified.
//
// # Device facts
//
// protocol.go and status.go hold the same facts as code.
//
//	link          9600 baud, 8 data bits, even parity, 1 stop bit (8E1)
//	frame         FC LNG CMD DATA CRCL CRCH, LNG = length of the whole frame (5..255)
//	check         CRC-16/KERMIT over FC..last data byte, low byte first
//	              (the check value of "123456789" is 0x2189)
//	poll          STATUS REQUEST 0x11, every 100-300 ms (default 200 ms)
//	escrow        ESCROW 0x13 + escrow code (0x61..0x70, one per denomination);
//	              host answers STACK-1 0x41 (STACK-2 0x42), RETURN 0x43 or HOLD 0x44
//	credit point  VEND VALID 0x15; the host's ACK 0x50 follows only once the credit is
//	              journaled (unverified: whether every unit repeats VEND VALID until ACKed;
//	              implementations behave as if it does)
//	power-up      0x40 POWER UP: nothing in the path
//	witnesses     0x41 POWER UP WITH BILL IN ACCEPTOR: a note is in the transport
//	              0x42 POWER UP WITH BILL IN STACKER: a note reached the stacker
//	settings      0xC0 denominations (2-byte bitmap, bit set = denomination DISABLED),
//	              0xC1 security, 0xC2 communication mode (0 = polling), 0xC3 inhibit
//	              (1 inhibit, 0 accept), 0xC4 direction, 0xC5 optional functions;
//	              each answered by an echo of the command
//	requests      0x88 version (ASCII), 0x8A currency table (4 bytes an entry: escrow code,
//	              JCM country code, value, exponent)
//	start-up      after power-up the unit wants RESET, then the settings, then uninhibit
//	              (unverified: the unit's own escrow timeout)
//
// Statuses: 0x11 IDLING, 0x12 ACCEPTING, 0x13 ESCROW, 0x14 STACKING, 0x15 VEND VALID,
// 0x16 STACKED, 0x17 REJECTING + reason, 0x18 RETURNING, 0x19 HOLDING, 0x1A DISABLED
// (inhibit), 0x1B INITIALIZE, 0x40-0x42 as above, 0x43 STACKER FULL, 0x44 STACKER OPEN
// (cassette out), 0x45 ACCEPTOR JAM, 0x46 STACKER JAM, 0x47 PAUSE, 0x48 CHEATED, 0x49
// FAILURE + code, 0x4A COMM ERROR, 0x4B INVALID COMMAND.
//
// Reject reasons (the data byte of REJECTING): 0x71 insertion, 0x72 magnetic, 0x73
// remaining bill in head, 0x74 multiplying, 0x75 conveying, 0x76 denomination assessing,
// 0x77 photo pattern, 0x78 photo level, 0x79 inhibit, 0x7B operation, 0x7C remaining bill
// in stacker, 0x7D length, 0x7E photo pattern 2, 0x7F true-bill check (counterfeit);
// RejectReason maps them to the shared model, any other code to RejectUnknown.
//
// Failure codes (the data byte of FAILURE, from peer implementations; not every unit
// reports every one): 0xA2 stack motor, 0xA5 transport motor speed, 0xA6 transport motor,
// 0xA7 aligning motor, 0xA8 solenoid, 0xA9 PB unit, 0xAB cash box not ready, 0xAC optical
// sensor, 0xAD magnetic sensor, 0xAF validator head removed, 0xB0 boot ROM, 0xB1 external
// ROM, 0xB2 RAM, 0xB3 external ROM writing. FailureName describes them.
//
// # Money
//
// ESCROW goes to Handler.Escrow once per escrow episode (again after a Hold) and the decision
// becomes STACK-1, RETURN or HOLD. VEND VALID is the credit point: Handler.Credited is called
// and the unit gets its ACK only when Credited returned nil, so the unit keeps repeating VEND
// VALID until the credit is journaled. The note passed to Credited is the one of the escrow
// this process saw; after a host restart in the middle of a note it is Note{} and the caller
// resolves it from its journal.
//
// # Start-up
//
// Run first asks the unit what it is doing and touches nothing while a note is in the path:
// ESCROW goes to the handler, VEND VALID is credited as above, STACKING, RETURNING and
// ACCEPTING are polled until they resolve. Only the power-up statuses (0x40, 0x41, 0x42,
// reported as PowerUp, PowerUpNoteInAcceptor, PowerUpNoteInStacker with the note if this
// process knows it) and FAILURE get a RESET. A Handler that implements
// acceptor.PowerUpRecorder gets the power-up report through PowerUp, on every poll until it
// returned nil; only then is the unit reset (and Reset answers acceptor.ErrNotRecorded
// meanwhile), so the unit never forgets a note the host has not recorded. Then the settings are sent (denomination
// bitmap, security, polling mode, inhibit), the version and currency table are read once for
// Info (a currency table that differs from the configured one is reported as a ProtocolError
// event; the configured table is used), and the unit is left inhibited: call Enable to take
// notes. A unit that powers up again while Run is active is reset and reconfigured the same
// way and, again, left inhibited.
//
// # Port lifetime and goroutines
//
// Run owns the port while it runs. It starts one reader goroutine that decodes frames
// (resynchronising on 0xFC after garbage, reassembling frames split across reads, dropping
// frames with a bad CRC or an impossible LNG, and a partial frame after more silence than
// InterByteTimeout, 50 ms by default: a unit sends a frame without pauses, so what follows
// a longer one can only be the start of another) and hands them to the poll loop; everything
// written to the port is written by the poll loop, so Enable, Inhibit and Reset are requests
// to that loop. A Read that returns (0, nil), which is how a serial port reports its read
// timeout, means nothing yet; any Read error ends Run with that error. When ctx ends, Run
// inhibits the unit (best effort, bounded by ShutdownTimeout), then, if the port is an
// io.Closer, closes it, which is what releases the reader blocked in Read, and waits for the
// reader. So after Run returns the port is closed and nothing is left running; to run again,
// open the port again and make a new Driver. A port that is not an io.Closer cannot be
// released: the reader then exits on its next Read, and Run does not wait for it.
//
// # Errors
//
// A reply that does not come within ReplyTimeout, or comes damaged, makes the driver send the
// same command again, up to MaxRetries times; when a STATUS REQUEST fails that way the driver
// reports CommLost once, polls every LostPollInterval, and reports CommRestored when the unit
// answers again. COMM ERROR (0x4A) and INVALID COMMAND (0x4B) replies are reported as
// ProtocolError events. No input makes the driver panic.
package id003
