// Package escpos drives an ESC/POS receipt printer over any io.ReadWriter (a serial port in
// production, a pipe or a pty in tests): it reads the real-time status (DLE EOT n, n = 1..4,
// bit layout under Device facts below), refuses to print on a printer that is not
// ready, writes the document in chunks, and reads the status again so the caller knows whether
// the receipt can have come out whole.
//
// The document bytes come from elsewhere (package receipts renders them); this package only
// moves bytes and interprets status.
//
// Port lifetime: the Printer never closes its port. The owner (cmd/kioskd) closes it, and that
// is what releases a read still blocked after a reply timeout on a port without read deadlines.
// Where the port supports read and write deadlines (net.Conn, pollable *os.File such as a pty
// or a tty opened with os.OpenFile) every wait is bounded by them; a serial port opened with a
// read timeout returns (0, nil) when the timeout expires, which is taken as "nothing yet"; on
// any other port a status read runs in one helper goroutine that outlives a timeout and hands
// its bytes to the next request, and a write blocks until the port accepts it or is closed.
//
// # Device facts
//
//	link        serial 8N1 at printer.baud (9600 by default); no framing, no check:
//	            commands are bytes in the print stream
//	commands    ESC @ init; ESC E n bold; GS ! n character size; ESC a n alignment;
//	            ESC t n code page; GS V m cut (GS V 66 n: feed n and cut); GS ( k QR code
//	            (fn 65 model, 67 module size, 69 error level, 80 store, 81 print);
//	            GS v 0 raster image
//	Chinese     on Chinese firmware FS & enters double-byte mode and FS . leaves it, text
//	            in GB18030; without a Chinese font the text is rasterised host-side
//	status      DLE EOT n is answered at once with one byte, even while printing:
//	            bits 1 and 4 are always 1, bits 0 and 7 always 0 (how a status byte is
//	            told from noise; an idle answer is 0x12)
//	  n = 1     printer: bit 3 off-line, bit 5 waiting for recovery, bit 6 feed button
//	  n = 2     off-line cause: bit 2 cover open, bit 3 feeding by the button, bit 5
//	            stopped by paper end, bit 6 error
//	  n = 3     error cause: bit 3 cutter error, bit 5 unrecoverable, bit 6
//	            auto-recoverable (e.g. head overheat)
//	  n = 4     paper: bits 2-3 paper near end, bits 5-6 paper end
//	profiles    kiosk printers (Custom VKP80, Pyramid, Nippon, Zebra KR403) add presenter,
//	            retract and ticket-taken status in their own dialects
//
// Dialects: kiosk printers (Custom VKP80, Nippon, Zebra KR403 ...) add presenter, retract and
// ticket-taken status in their own commands. Profile.Extra is the seam for them; only the
// generic ESC/POS profile is implemented here.
package escpos
