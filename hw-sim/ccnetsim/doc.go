// Package ccnetsim emulates a CashCode CCNET bill validator byte for byte, for tests and for
// the hw-sim binary, which puts it behind a pseudo-terminal (hw-sim/ptypair) so the daemon
// drives it with its real serial code. It follows the same facts as devices/acceptor/ccnet
// (the Device facts of that package's documentation) and reuses that
// package's frame codec, constants and payload encoders; it never imports the driver's
// logic. Its control API mirrors hw-sim/id003sim.
//
// # Timing: one step per POLL
//
// The unit advances only when polled, so a test knows exactly what each poll returns. After
// a state is reported the transaction moves one step:
//
//	power-up         0x10/0x11/0x12 on every POLL until RESET (ACK)
//	after RESET      INITIALIZE (0x13) 1 poll, then DISABLED (0x19) until ENABLE BILL TYPES
//	                 with a non-empty mask, then IDLING (0x14); after 0x12: STACKED first
//	InsertNote       ACCEPTING (0x15) 1 poll, then ESCROW (0x80 type) when the type's escrow
//	                 bit is set, STACKING when it is not, or REJECTING 1 poll
//	ESCROW           every poll until STACK / RETURN / HOLD, or the escrow timeout
//	STACK (ACK)      STACKING (0x17) 1 poll, then STACKED (0x81 type) on every poll until
//	                 the host ACKs it, then IDLING/DISABLED
//	RETURN (ACK)     RETURNING (0x18) 1 poll, then RETURNED (0x82 type) until ACKed, then idle
//	HOLD (ACK)       HOLDING (0x1A) on every poll until STACK / RETURN / another HOLD
//	REJECTING        0x1C + reason 1 poll, then IDLING/DISABLED
//	escrow timeout   checked at each poll in ESCROW/HOLDING (10 s, restarted by HOLD):
//	                 RETURNING, then RETURNED
//
// So a clean note costs, from InsertNote: ACCEPTING, ESCROW (host sends STACK), STACKING,
// STACKED (host ACKs), IDLING: four polls with a note in the path.
//
// Faults reported ahead of the transaction, which is frozen while they last: FAILURE and
// CHEATED until RESET; VALIDATOR/CASSETTE JAMMED until ClearJam (then INITIALIZE); CASSETTE
// OUT until ReplaceCassette (then INITIALIZE); PAUSE while on. CASSETTE FULL is reported
// when idle once the cassette holds CassetteCapacity notes, or when forced. Busy answers one
// POLL with BUSY.
//
// # Link layer
//
// Every reply other than ACK and NAK waits for the host's ACK; the host's NAK makes the unit
// send its last reply again without doing anything twice. A host frame with a bad CRC is
// answered by NAK; line noise and frames for other addresses are ignored; a command the unit
// does not take in its state, or with the wrong data length, is answered by ILLEGAL COMMAND
// (0x30). IDENTIFICATION and GET BILL TABLE are answered only in power up, initialize,
// disabled and the failure states 0x41..0x47, as the CCNET description says.
//
// # Choices where the public material is silent
//
//   - STACKED and RETURNED are repeated until the host's ACK (the MDB-style behaviour CCNET
//     is modelled on); Config.OneShotEvents reports them for one POLL only, the other
//     behaviour a host must survive.
//   - After RESET of a note in the stacker the unit reports STACKED for it once INITIALIZE is
//     over ("credit recovery", which the public description of state 0x12 does state);
//     Config.NoCreditRecovery stacks it silently instead.
//   - A disabled unit does not draw a note in (InsertNote fails with ErrInhibited); an enabled
//     unit draws in a note of a type that is not enabled and rejects it with 0x68 (inhibit),
//     and a note it does not know with 0x65 (identification).
//   - ENABLE BILL TYPES and SET SECURITY are taken in every state; the new masks apply to the
//     next note. RESET and a power cycle leave the unit disabled; a power cycle also forgets
//     the escrow and security masks.
//
// # Money ground truth
//
// Cassette lists every note that went into a cassette. A note enters the cassette when the
// unit first reports STACKED for it. Acked becomes true when the unit receives the host's ACK
// while its last reply is a STACKED report for it: like a real unit, the emulator cannot
// tell which reply the host meant (CCNET frames have no sequence number), so an ACK the host
// sent for an earlier, late reply counts, and the unit moves on. Acked without a journaled
// credit is therefore a host fault, never an emulator artefact. From the STACK command on the note is "in the stacker": a power cycle then reports
// 0x12 and RESET counts it (Via "power_up_recovery") unless it is already there, which is the
// case during an unacknowledged STACKED. A note before STACK is "in the validator": 0x11, and
// RESET gives it back, never counted.
//
// # Link faults
//
// InjectFault queues faults that each spoil one reply: a bad CRC, no reply (the command is
// still carried out), garbage before the frame, a reply split in two writes, or a slow reply.
//
// Config.Line (linespeed.CCNET, 9600 8N1) makes Serve take the host's bytes and send its
// replies at the line's speed instead of a pty's, so a host's timeouts meet real character
// times.
//
// The note path, the cassette log and the link are shared with the other acceptor emulators
// (hw-sim/internal/notepath); this package keeps the protocol's framing and status tables.
package ccnetsim
