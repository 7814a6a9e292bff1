// Package conformance holds the one conformance suite every bill acceptor driver passes
// against its own emulator (GitHub issue 4, item 6). The suite is conformance_test.go and
// its harness harness_test.go. The driver configurations and their emulators come from the
// simulator's protocol table (hw-sim/simrig.Protocols, one row per driver of
// devices/acceptor/registry); units.go adapts them. The only other non-test code is what the
// benchmark command (cmd/kioskbench) needs: Note (bench.go), which measures a full note
// through each driver, emulator, session engine and journal (BenchmarkNote runs it per
// protocol), and PollCost. The package is imported by tests and that command only, never by
// the product's binaries (cmd/deps_test.go checks it).
//
// Each driver configuration (ID-003, CCNET, SSP plain, eSSP with a random fixed key, and the
// escrowless pulse acceptor) runs the same table of scenarios with the real pieces wired as
// the daemon wires them: the driver talks to its byte-level emulator over net.Pipe (the pulse
// driver to the pulse emulator's pins), the driver's Run reports to the real session engine
// (whose Handler is recorded by a thin wrapper), the engine journals into a real bbolt
// journal in a temporary directory, and the engine commands the driver itself. The customer
// flow goes through the engine's API (Scan of a wallet code signed as hw-sim/walletsim
// signs it, Finish) and the unit's through the emulator's control surface (the neutral
// surface of hw-sim/simrig.AcceptorSim). A host restart is simulated with the engine's
// crash hooks ("after-stack-intent", "credit-before-commit", "credit-after-commit"): the
// line is cut, the host stops answering, and a new driver and engine start on the same
// journal file.
//
// Every scenario asserts one protocol-neutral outcome: the acceptor events the engine
// received (kinds, reject reasons, in order where order matters), the journal's effects (top-ups
// and their outcomes, open intents, uncertain items, cassette counters, journal.Verify), and
// that the emulator's own cassette log, the money ground truth, agrees with the journal: every
// note in the cassette credited exactly once or recorded as an uncertain item, never lost and
// never credited without a note. A scenario that cannot apply to a protocol names the reason
// in its skip field. Everything runs inside testing/synctest bubbles, on the fake clock.
//
// The facts each scenario relies on come from the money invariants and journal protocol
// (kiosk/journal's package documentation), the session flow (kiosk/session), and the doc.go
// files of the drivers (devices/acceptor/..., each with a Device facts section) and
// emulators (hw-sim/...).
package conformance
