// Package sspsim emulates an ITL banknote validator speaking SSP / eSSP (an NV9USB-class
// unit) byte for byte, for tests and for the hw-sim binary, which puts it behind a
// pseudo-terminal (hw-sim/ptypair) so the daemon drives it with its real serial code. It
// follows the facts of devices/acceptor/ssp (ITL's SSP manual GA138) and reuses that
// package's frame codec, eSSP cipher and tables; it never imports the driver's logic.
//
// # Link
//
// Every reply echoes the packet's SEQ/ID. A packet with the same sequence flag as the one
// before is not executed: the unit repeats its last reply (so a reply the host lost is
// recovered by re-sending the same bytes). SYNC is always executed and makes the flag of the
// next packet "clear". A packet with a bad CRC, for another address, or (eSSP) that does not
// decrypt or carries the wrong counter, is not answered. With keys negotiated the counter
// advances once per exchange: the reply carries the command's counter plus one, and so must
// the next command (ITL's reference host code works this way). Encryption is optional by
// default: general commands work in clear, POLL WITH ACK and EVENT ACK only encrypted (as on
// an NV9USB; PlainPollWithAck lifts that); EncryptionRequired answers everything but SYNC
// and the key exchange KEY NOT SET until keys exist; EncryptionUnsupported does not know
// the key exchange. SET GENERATOR and SET MODULUS must be primes (else 0xF4); the emulator
// computes the Diffie-Hellman values exactly, whatever their size.
//
// # Timing: one step per poll
//
// The unit advances only when polled, so a test knows exactly what each poll returns:
//
//	power-up          SLAVE RESET (+ INITIALISING with POLL WITH ACK); with a note in the
//	                  path, NOTE CLEARED FROM FRONT / INTO CASHBOX + channel on the next poll
//	InsertNote        READ 0 one poll, then READ channel (escrow) once, or REJECTING
//	escrow            the next POLL accepts the note: STACKING; REJECT returns it; HOLD (or
//	                  any other command) restarts the 10 s timeout; nothing for 10 s rejects
//	                  it (LAST REJECT CODE 0x13)
//	STACKING          then NOTE CREDIT + channel and STACKED (POLL); with POLL WITH ACK,
//	                  STACKING + NOTE CREDIT repeated until EVENT ACK, then STACKED
//	REJECTING         one poll, then REJECTED once; LAST REJECT CODE gives the reason
//
// So a clean note costs, from InsertNote: READ 0, READ channel, STACKING, NOTE CREDIT +
// STACKED: four polls. Conditions are reported on every poll while they last: DISABLED
// (after CHANNEL DISABLE once, when enabled with every channel inhibited, protocol 7+),
// SAFE / UNSAFE JAM, CASHBOX REMOVED, NOTE PATH OPEN (protocol 6+), STACKER FULL; the
// transaction is frozen while the note path is jammed, open or without its cashbox.
// CASHBOX REPLACED and FRAUD ATTEMPT are reported once. With POLL WITH ACK a reply carrying
// NOTE CREDIT, NOTE CLEARED INTO CASHBOX or FRAUD ATTEMPT is repeated, and the unit frozen,
// until EVENT ACK; a plain POLL reports such a reply once more and moves on.
//
// # Choices where the public material is silent
//
//   - DISABLED is repeated on every poll (the manual's table says "repeat: no"; hosts in the
//     field see it on every poll). STACKER FULL is repeated while full.
//   - A note of a channel the host inhibited is read and rejected with 0x0C (disabled by
//     host); one the dataset does not know with 0x02. A disabled unit does not draw notes
//     in (InsertNote fails with ErrDisabled).
//   - Fail makes the unit answer commands with a generic error: SSP validators have no
//     failure event.
//   - Channel values in SETUP REQUEST are ValueMinor / 100 with a real value multiplier of
//     100, so any currency's minor units come back exactly; the one-byte value section is
//     filled when the values allow it.
//   - A unit powered up from scratch speaks protocol 4 until HOST PROTOCOL VERSION.
//
// # Money ground truth
//
// Cassette lists every note that went into a cashbox. A note enters it when the unit first
// reports its NOTE CREDIT (Reported; Acked once EVENT ACK came, POLL WITH ACK only), when
// the unit clears it into the cashbox at power-up (Via "power_up_recovery", reported as NOTE
// CLEARED INTO CASHBOX, never credited), or when a safe jam past the point of no return is
// cleared (Via "jam_cleared"). From the poll that accepted it the note is "in the stacker":
// a power cycle then clears it into the cashbox. Before that it is "in the acceptor": a power
// cycle gives it back at the front and it is never counted. Counters mirror GET COUNTERS.
//
// # Link faults
//
// InjectFault queues faults that each spoil one reply: a bad CRC, no reply (the command is
// still carried out, and the reply is repeated on a re-send), garbage before the frame, a
// reply split in two writes, a slow reply, or (eSSP) a wrong counter in the next encrypted
// reply.
//
// Config.Line (linespeed.SSP, 9600 8N2) makes Serve take the host's bytes and send its
// replies at the line's speed instead of a pty's, so a host's timeouts meet real character
// times.
//
// The note path, the cassette log and the link are shared with the other acceptor emulators
// (hw-sim/internal/notepath); this package keeps the protocol's framing and status tables.
package sspsim
