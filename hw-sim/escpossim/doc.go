// Package escpossim emulates an ESC/POS receipt printer at the byte level, for tests and the
// hw-sim demo: it consumes the byte stream a driver sends, decodes it into documents (text
// lines with loose attributes, Chinese double-byte text, QR payloads, raster images, cuts), and
// answers the real-time status request DLE EOT n with the bit layout in the Device facts of
// devices/printer/escpos: fixed bits 1 and 4 set (idle answer 0x12), then cover open, paper end,
// paper near end and cutter error as set through the control API. Paper near end (SetNearEnd)
// is a warning only: the printer keeps printing, as a real one does until the roll runs out.
//
// Raster images (GS v 0) are recorded by their size in dots, so a test can check that a
// receipt sent as an image arrived whole. A presenter printer's commands after the cut
// (Custom's GS e 3 m, present the receipt, and GS e 4, retract it if not taken) mark the
// document Presented and Retract.
//
// Paper out, cover open and cutter error stop a real printer. What it does with data that keeps
// arriving differs between models (most buffer it and print it after recovery, some print it
// twice). The emulator discards it and marks the document Incomplete, which is the safe
// reading for the kiosk: a receipt that was interrupted is never assumed printed, and nothing
// appears on paper later that the kiosk did not decide to print again (as a COPY, if the
// original may have come out). DLE EOT is answered in every state, as on real printers.
//
// The decoder parses commands by a table of their lengths, so an unknown or unsupported
// command costs at most its own bytes; data blocks (raster images, downloaded graphics, 2D
// symbols) are skipped by their declared size without being buffered, so a huge declared
// length costs no memory.
package escpossim
