// Package pulsesim emulates a pulse-output bill acceptor (see devices/acceptor/pulse) for
// tests and for the hw-sim rig. It owns two periph gpiotest pins: the credit line it drives
// (give CreditPin to pulse.Config.Credit) and the inhibit input it reads (InhibitPin for
// pulse.Config.Inhibit). Edges go through the pin's EdgesChan, so the driver's
// WaitForEdge sees them exactly when the emulator makes them; the emulator waits with
// package time, so under testing/synctest a whole train takes no real time and every edge
// lands at a known instant.
//
// # Behaviour
//
//   - InsertNote refuses at once with ErrInhibited while the inhibit input is at its inhibit
//     level (a real unit does not draw the note in), unless IgnoreInhibit. Otherwise the note
//     travels for Transit, goes into the cassette, and its train goes out: N pulses of
//     Shape.Width separated by Shape.Gap, with optional contact bounce. InsertNote returns
//     when the train is over. A unit checks its inhibit only when a note is offered: an
//     inhibit that comes during transit or during the train does not stop it.
//   - Noise, StuckLine and Waveform put glitches, a stuck line or any raw waveform on the line
//     (never counted as notes).
//   - One waveform at a time: a second call while the line is busy gets ErrBusy.
//
// # Money ground truth
//
// Cassette lists every note that went into the cassette with its pulse count and value
// (from Config.Notes; zero for a count the table does not know). A note is in the cassette
// from its first pulse on; a train cut short by its context stays there with Complete false
// and Emitted telling how many pulses went out. State is a JSON-ready snapshot for the
// control panel.
package pulsesim
