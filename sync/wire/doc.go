// Package wire is the MQTT contract between a kiosk and the central ledger: topic names,
// JSON payloads, identifiers and the signed envelope. Both ends (sync/uplink on the kiosk and
// sync/ledger centrally) use this package, so the contract lives in one place in code.
//
// The contract in prose, for the team that implements the ledger side, is sync/CONTRACT.md
// in this repository: what each topic carries, what each ack status means, what the ledger
// and the kiosk each promise about money, and which parts are implemented today and which are
// agreed but not yet sent by the kiosk. A change to a payload here changes that document in
// the same commit.
//
// Decoding is strict about what matters and lenient about what does not: unknown fields are
// ignored (a newer peer may add some), a missing required field or a wrong "v" is an error, and
// payloads larger than MaxPayload are refused before parsing.
package wire
