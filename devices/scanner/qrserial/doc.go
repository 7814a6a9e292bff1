// Package qrserial reads a serial line QR scanner (RS-232 or USB CDC-ACM): one code per line,
// terminated by CR, CR LF or LF. It applies an inter-character timeout so a partial line from
// a noisy cable is never glued to the next scan, caps the length, rejects control and
// non-ASCII bytes (a wallet payload is printable ASCII: sync/CONTRACT.md §10), and reports every rejected line through Config.OnError. Codes are not logged: a wallet
// payload is a short-lived bearer credential.
//
// Port lifetime: the Scanner never closes its port; its owner does, which is also what
// releases a blocked read on a port that has neither read deadlines nor a read timeout. Run
// uses read deadlines where the port has them (net.Conn, pollable *os.File), and treats the
// (0, nil) that a serial port opened with a read timeout returns as "nothing yet".
//
// # Device facts
//
//	link      RS-232 or USB CDC-ACM, usually 9600 or 115200 8N1 (scanner.baud)
//	framing   one code per line, suffix CR or CR LF (set in the scanner); no check
//	trigger   Honeywell serial trigger: SYN T CR starts a scan, SYN U CR stops it
//	failures  none reported by the scanner: a line that is too long, has control or
//	          non-ASCII bytes, or is cut by the inter-character timeout is refused here
//
// HID keyboard-wedge scanners are read by devices/scanner/hidscan (evdev, exclusive grab).
package qrserial
