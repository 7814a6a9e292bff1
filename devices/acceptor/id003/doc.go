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
// facts used here are those of the project's shared PROTOCOLS.md, checked against public
// peer implementations where the JCM specification itself is not public; see the report of
// the change that added this package for what is verified and what is not.
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
// process knows it) and FAILURE get a RESET. Then the settings are sent (denomination
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
