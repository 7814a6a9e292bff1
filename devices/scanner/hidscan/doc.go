// Package hidscan reads a USB HID keyboard-wedge QR scanner through Linux evdev. Such a
// scanner is a keyboard to the kernel: it "types" each code as key presses and ends it with
// a suffix key (Enter by default). kioskd opens the scanner's event device
// (/dev/input/eventN, or better its stable /dev/input/by-id/...-event-kbd name) and grabs it
// exclusively (EVIOCGRAB), so the codes reach only kioskd: never the customer screen's
// browser, a console login or another program on the kiosk. Codes are not logged: a wallet
// payload is a short-lived bearer credential.
//
// Key codes become characters with the US layout, Shift and Caps Lock included: a wallet
// payload is printable ASCII (sync/CONTRACT.md §10), which every scanner can type on a US
// layout, and scanners ship set to it. A key the layout does not map (a function key, a
// non-US key), a key typed with Ctrl, Alt or Meta held (a scanner typing a control character
// or an Alt+numpad code) and events the kernel dropped (SYN_DROPPED) spoil the line, which is
// discarded up to its suffix and reported through Config.OnError, as are a line over
// Config.MaxLen and one cut by the inter-character timeout. With Suffix "none" the
// inter-character timeout ends a code instead.
//
// Device lifetime: Run returns the device's error when the scanner is unplugged (ENODEV);
// the daemon's supervisor reopens it with a backoff, by the same path, so a by-id name finds
// the scanner again in whichever USB port it is plugged back. The Scanner never closes its
// device; its owner does (which also releases the grab and a blocked read).
//
// # Device facts
//
//	link      USB HID boot keyboard, read through evdev (/dev/input/event*, group input)
//	framing   one code per line, key presses on the US layout; suffix Enter (keypad Enter
//	          too) or Tab, or none (the inter-character timeout ends the code)
//	events    struct input_event: EV_KEY press (1), release (0), autorepeat (2, ignored);
//	          EV_SYN/SYN_DROPPED when the kernel's buffer overflowed; EV_MSC scan codes ignored
//	grab      EVIOCGRAB 1 after open: exclusive; a second grab fails with EBUSY
//	timing    a scanner types a code in one burst (1-10 ms a key); 200 ms between keys
//	          means the code was cut
//	failures  none reported by the scanner: what is refused is refused here
package hidscan
