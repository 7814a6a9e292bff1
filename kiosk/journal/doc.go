// Package journal is the kiosk's durable record of money: a bbolt file holding an append-only,
// hash-chained log of events plus the views derived from it (sessions, open stack intents,
// cassette counters, the outbox of top-ups to sync, receipts, used QR nonces, uncertain items).
//
// Every operation that touches money is one bbolt read-write transaction that appends its
// event(s) to the chain AND updates the views, so a crash (power cut, kill -9) leaves either
// all of it or none of it (DESIGN.md §4 and §5). Callers act on the outside world (ACK the
// acceptor, print, publish) only after the method returned nil, i.e. after bbolt's fsync.
//
// Identifiers (DESIGN.md §3):
//   - journal_epoch: random 64-bit value chosen when the file is created, never changed.
//   - event seq: NextSequence of the events bucket, in the event's own transaction.
//   - top-up seq: NextSequence of the top-ups bucket, allocated in the SessionClosed
//     transaction, so top-up seqs are contiguous (1, 2, 3, ...) per journal; the ledger's
//     watermark relies on that.
//   - receipt_no: NextSequence of the receipts bucket in the same transaction: gapless, one per
//     top-up.
//
// Nothing is ordered by wall-clock time: a kiosk may boot in 1970. Times recorded in events
// are informative only.
//
// The hash chain: each event stores h = SHA-256(prev_h || seq (8 bytes big-endian) || type ||
// 0x00 || data), and the meta bucket stores the head. Verify walks the chain; any edit,
// deletion or reordering of events breaks it. The views are not chained: Verify rebuilds the
// money views from the events and compares them.
package journal
