// Package pulse reads bill acceptors whose only output is a train of pulses on one GPIO
// line: N pulses per note, N set per denomination in the unit (for example 1 pulse per
// 10 CNY). Such units are the cheap end of the market and the pulse mode of many serial
// ones (ITL NV9/NV10 "pulse stream" on Vend 1, CashCode isolated pulse interface, and the
// coin-mech style clones). The host may drive one inhibit input. Pins are periph.io
// gpio.PinIn / gpio.PinOut; in the kiosk they come from sensors.OpenPin (host.Init +
// gpioreg.ByName), in tests from gpiotest or hw-sim/pulsesim.
//
// # Device facts
//
//	link          one GPIO input (the credit line), optionally one GPIO output (inhibit);
//	              no serial link, no framing, no check
//	signal        N pulses per note, N set per denomination in the unit; pulses about
//	              30-100 ms wide, gaps about 100 ms (defaults: a pulse is 20-150 ms
//	              active, a train ends after 300 ms idle, 5 ms debounce)
//	escrow        none: a note is in the cassette before the host hears of it
//	credit point  the end of the pulse train
//	power-up      none: the unit reports nothing about a note in transit, so the host
//	witnesses     journals the count pulse by pulse (PulseRecorder) and recovery works
//	              from that record
//	rejects       none reported: a refused note comes back without a pulse
//	failures      only what the host infers: a line held active longer than the widest
//	              pulse (AcceptorJam), a train matching no denomination, a train cut
//	              short, pulses while inhibited (ProtocolError, credited as uncertain)
//
// Public manuals agree on the shape and show why every level and limit is configurable: ITL
// NV4 pulses 100 ms low with 200 ms high between them (open-collector outputs, active low,
// the host provides the pull-up); ITL NV9/NV10 inhibit inputs are held high inside the unit
// and must be pulled low to accept; CashCode's isolated pulse interface accepts while +3..24
// V is applied to its inhibit input and refuses with none; MEI coin outputs are 100 ms ±10%,
// and their manuals advise debouncing in software. No manual states the time between the
// inhibit going on and the last train of a note already drawn in; InhibitGrace is a guess
// (5 s by default) to be measured per unit.
//
// # Decoding
//
// A reader goroutine waits for edges (WaitForEdge with a timeout of EdgePoll, so it sees
// Run end promptly) and stamps each with the time it returned, then reads the level, since a
// pin reports that an edge happened but not which. It hands the stamped edges to Run's
// goroutine through a buffer, so a handler that takes a while to journal a pulse delays
// the decoding but not the measurement. At each timeout it also reads the level: a change
// that no edge announced within two polls is passed on all the same and counted in
// Stats.Unseen (a pin whose edge detection does not work). The Decoder (a pure state machine, also offered as
// the function Decode) debounces the line (a level must hold for Timing.Debounce), measures
// each active period and each gap, and says:
//
//   - active shorter than MinWidth: a glitch, counted in Stats and otherwise ignored;
//   - active MinWidth..MaxWidth (both inclusive): a pulse of the open train, or the first of
//     a new one;
//   - active longer than MaxWidth: a jam, reported as soon as the limit is passed, cleared
//     when the line goes idle; such a pulse never counts;
//   - idle for longer than MaxGap after a pulse: the train is over.
//
// # What the handler sees
//
// Run first reports Identified (the pins and levels), leaves the unit inhibited and
// reports Disabled once InhibitGrace has passed. Then, per note:
//
//  1. every valid pulse: PulseRecorder.Pulse(ctx, train, count), if the handler implements
//     it, before anything else is done with the pulse;
//  2. the first pulse of a train: Event Accepting (after a ProtocolError "pulses while
//     inhibited" if the train began while the unit had been inhibited for longer than
//     InhibitGrace: the note is in the cassette, so it is still credited);
//  3. the end of the train: Handler.Credited with the note for that pulse count, then Event
//     Stacked (Code = pulse count), then Idle, or Disabled while inhibited.
//
// A train whose note is not certain is still credited, never dropped: Credited gets
// Note{Code: pulse count, ValueMinor: 0}, after a ProtocolError (Code = pulse count) that
// says why. That happens when the count matches no denomination, when a stuck line cut the
// train short, when the reader missed changes of the line during the train, and when the
// train began as Run started (it may be the tail of a train the previous process saw the
// start of). The caller records such a credit as an uncertain item, settled at cash
// collection; it must not look the code up in a table.
//
// The unit cannot be told to hold a note, so Credited cannot be refused: when it fails, the
// driver reports Failure, inhibits the unit and calls it again every RetryInterval until it
// succeeds (Enable is refused with ErrCreditOwed meanwhile). When Pulse fails the driver
// reports Failure and inhibits the unit, and goes on counting: the pulses are money already
// in the cassette. In both cases the caller decides when to Enable again.
//
// A line active for longer than MaxWidth gives AcceptorJam (interrupting any open train, which
// is then credited as uncertain); the line going idle again gives Idle or Disabled.
//
// The handler is called from Run's goroutine, one call at a time; it must not call Enable,
// Inhibit or Reset from inside a call (they are served by that same goroutine): start a
// goroutine, or let its own control loop do it.
//
// # Escrowless units and the session limit
//
// Info().Escrowless is true and Handler.Escrow is never called. Enable cannot choose
// denominations: any non-empty list of known codes lifts the inhibit for every note the
// unit takes. The session engine must therefore keep the unit inhibited whenever the largest
// configured note would take the session over its remaining limit, and after Inhibit wait for
// Disabled (InhibitGrace later) before it closes a session, since a note drawn in just
// before the inhibit shows up only when its train starts.
//
// # Shutdown and goroutines
//
// When ctx ends, Run inhibits the unit, keeps decoding a train already on the line until it
// ends and is credited or ShutdownTimeout passes (the handler gets a context that is not
// cancelled), then stops the reader and waits for it. A train cut off by the end of Run is
// lost to the driver, but its pulses were offered to PulseRecorder: that journal is the
// evidence recovery works from. A note whose pulses reached no journal at all (the process
// down, the journal failing, its record lost at a power cut) is covered by the caller's
// record of the inhibit line: the session engine journals the unit enabled before Enable and
// inhibited only after Disabled, and a restart that finds it enabled records an uncertain
// item. A unit with no inhibit line wired takes notes whenever it is powered, also while
// the host restarts: its line is never at rest, and every start records one such item. After Run returns nothing it started is left running.
package pulse
