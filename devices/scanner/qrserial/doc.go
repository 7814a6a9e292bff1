// Package qrserial reads a serial line QR scanner (RS-232 or USB CDC-ACM, PROTOCOLS.md "QR
// scanners"): one code per line, terminated by CR, CR LF or LF. It applies an inter-character
// timeout so a partial line from a noisy cable is never glued to the next scan, caps the
// length, rejects control and non-ASCII bytes (a wallet payload is printable ASCII, DESIGN.md
// §6), and reports every rejected line through Config.OnError. Codes are not logged: a wallet
// payload is a short-lived bearer credential.
//
// Port lifetime: the Scanner never closes its port; its owner does, which is also what
// releases a blocked read on a port that has neither read deadlines nor a read timeout. Run
// uses read deadlines where the port has them (net.Conn, pollable *os.File), and treats the
// (0, nil) that a serial port opened with a read timeout returns as "nothing yet".
//
// HID keyboard-wedge scanners are not handled here (they need evdev with an exclusive grab).
package qrserial
