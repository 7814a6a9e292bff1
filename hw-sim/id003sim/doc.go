// Package id003sim emulates a JCM ID-003 bill acceptor byte for byte, for tests and for the
// hw-sim binary, which puts it behind a pseudo-terminal (hw-sim/ptypair) so the daemon drives
// it with its real serial code. It follows the same facts as devices/acceptor/id003 (the
// Device facts of that package's documentation) and reuses that package's frame codec and constants; it never
// imports the driver's logic.
//
// # Timing: one step per STATUS REQUEST
//
// The unit advances only when polled, so a test knows exactly what each poll returns. After a
// status is reported the transaction moves one step:
//
//	power-up         0x40/0x41/0x42 on every poll until RESET (ACK)
//	after RESET      INITIALIZE (0x1B) 1 poll, then DISABLED (0x1A) or IDLING (0x11)
//	InsertNote       ACCEPTING (0x12) 1 poll, then ESCROW (0x13 code), or REJECTING 1 poll
//	ESCROW           every poll until STACK / RETURN / HOLD, or the escrow timeout
//	STACK-1/2 (ACK)  STACKING (0x14) 1 poll, then VEND VALID (0x15) on every poll until the
//	                 host's ACK, then STACKED (0x16) 1 poll, then IDLING/DISABLED
//	RETURN (ACK)     RETURNING (0x18) 1 poll, then IDLING/DISABLED
//	HOLD (ACK)       HOLDING (0x19) on every poll until STACK / RETURN / another HOLD
//	REJECTING        0x17 + reason 1 poll, then IDLING/DISABLED
//	escrow timeout   checked at each poll in ESCROW/HOLDING: RETURNING 1 poll, then idle
//
// So a clean note costs, from InsertNote: ACCEPTING, ESCROW (host sends STACK), STACKING,
// VEND VALID (host ACKs), STACKED, IDLING: five polls and two commands.
//
// Faults reported ahead of the transaction, which is frozen while they last: FAILURE and
// CHEATED until RESET; ACCEPTOR/STACKER JAM until ClearJam (then INITIALIZE); STACKER OPEN
// until ReplaceCassette (then INITIALIZE); PAUSE while on. STACKER FULL is reported when idle
// once the cassette holds CassetteCapacity notes, or when forced.
//
// # Choices where the public material is silent
//
//   - Escrow timeout: DefaultEscrowTimeout (10 s), restarted by each HOLD. Not verified
//     against a JCM specification.
//   - An inhibited unit does not draw a note in (InsertNote fails with ErrInhibited); an
//     enabled unit draws in a note of a disabled denomination and rejects it with 0x79, and
//     a note it does not recognise with 0x76.
//   - Settings are accepted and echoed in every state, and a wrong data length is answered
//     by INVALID COMMAND; so are operation commands outside ESCROW/HOLDING. A host frame with
//     a bad CRC is answered by COMM ERROR (0x4A); line noise is ignored. The host's ACK is
//     never answered.
//   - Power-up and RESET leave the unit inhibited; a power cycle also forgets the settings.
//
// # Money ground truth
//
// Cassette lists every note that went into a cassette. A note enters the cassette when the
// unit first reports VEND VALID for it (Acked becomes true when the host ACKs). From the STACK
// command on the note is "in the stacker": a power cycle then reports 0x42 and RESET counts
// it (Via "power_up_recovery", Acked false) unless it is already there, which is the case
// during an unacknowledged VEND VALID (the unit also reports 0x42 then: hosts must treat
// 0x42 as "a note you may not have credited went into the cassette"). A note before STACK is
// "in the acceptor": 0x41, and RESET gives it back, never counted.
//
// # Link faults
//
// InjectFault queues faults that each spoil one reply: a bad CRC, no reply (the command is
// still carried out), garbage before the frame, a reply split in two writes, or a slow reply.
package id003sim
