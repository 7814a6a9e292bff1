// Package journal is the kiosk's durable record of money: a bbolt file holding an append-only,
// hash-chained log of events plus the views derived from it (sessions, open stack intents,
// cassette counters, the outbox of top-ups to sync, receipts, used QR nonces, uncertain items,
// the printer's cut account, the acceptor's counter baseline).
//
// # What the journal guarantees
//
// The money invariants of the kiosk rest on this package:
//
//  1. Every note the acceptor reports at its credit point is committed here before the host
//     acknowledges it to the unit, shows it or counts it anywhere.
//  2. Every credited note is in exactly one top-up; the top-up is credited by the ledger at
//     most once (its topup_id is the idempotency key) and printed on exactly one original
//     receipt, any other print of it saying COPY.
//  3. A note whose fate is unknown after a crash is never dropped and never credited on a
//     guess: the unit's own evidence (its power-up report, its stacked counter) settles it,
//     and what stays unknown becomes exactly one uncertain item, settled at cash collection.
//  4. No stack intent takes a session over its limit: the limit counts the notes in transit.
//  5. The log is append-only and chained; Verify (and VerifyFull) detects any edit, deletion
//     or reordering, and any view that disagrees with the events; Open checks what changed
//     since the last verified checkpoint.
//
// # Transactions
//
// Every operation that touches money is one bbolt read-write transaction that appends its
// event(s) to the chain AND updates the views, so a crash (power cut, kill -9) leaves either
// all of it or none of it. Callers act on the outside world (ACK the acceptor, print,
// publish) only after the method returned nil, i.e. after bbolt's fsync.
//
// The storage may also lie: an SD card can acknowledge an fsync and lose the write at a power
// cut. bbolt's two alternating meta pages bound the damage to the LAST committed transaction,
// so every protocol below is built so that losing its last commit loses no money: the
// evidence a later step needs is committed in an earlier transaction than the step that
// could be lost (NoteCompleted, the two commits of a print start). The test-only package
// journaltest produces exactly that state.
//
// # The journal protocol per note
//
// With escrow (ID-003, SSP, CCNET):
//
//  1. The unit holds a note in escrow. If it fits the session's remaining limit, StackIntent
//     commits the intent (the note now counts against the limit); only then does the host
//     send the stack command. Otherwise RefuseNote records the return.
//  2. At the credit point, CreditNote commits the credit, the session total, the cassette
//     counters and the intent's removal in one transaction; only then is the unit ACKed. The
//     unit's reported value wins over the intent's (Mismatch, for an alarm).
//  3. When the unit reports the note stacked (or is back at rest), NoteCompleted records it
//     in its own transaction: from then on the unit cannot re-report that credit.
//
// After a restart:
//
//   - A credit report with no open intent is a repeat of the last credit (its ACK was lost)
//     while that credit is neither superseded by a newer intent nor completed:
//     CreditWithoutIntent answers Repeat (ACK, count nothing). Otherwise it is Unexpected:
//     the note is in the cassette, so it is counted there and becomes an uncertain item.
//   - A credit report with no open intent that is not a repeat, for the note of the most
//     recent stack intent, which a session closed with as its uncertain item (the unit's
//     link was down, or the journal refused the credit, longer than the engine waits), is
//     that note's late credit: CreditAfterClose resolves the item, counts the note in the
//     cassette and credits it by a follow-up top-up of the same account and wallet code
//     (follows_topup_id the session's top-up; its own seq, outbox entry and receipt).
//   - A note in the stacker at power-up with no open intent is the last credit if that is
//     not yet completed; else the note of the newest uncertain item, made of the most recent
//     stack intent when its session closed, is credited by a follow-up top-up as a late
//     credit is; else it is a note whose intent was lost: an uncertain item
//     (StackerAtPowerUp). The caller resets the unit only after it returned nil.
//   - Evidence that no earlier commit backs (that uncertain item, an Unexpected credit) is
//     followed by a second small commit before the method returns, so that a power cut
//     that loses the last commit after the unit was reset or ACKed cannot take it. A credit
//     of an open intent is sealed by the caller (Seal) before the driver ACKs it: once
//     ACKed, the unit may finish the note and draw in the next one, and a lost credit would
//     leave the intent to be settled from a power-up report about the next note. A stack
//     intent is sealed too, before the unit is told to stack: a unit may finish a note whose
//     credit went unacknowledged (ID-003 after a VEND VALID), and a lost intent would leave
//     nothing to say that note went in.
//   - An open intent is settled by ResolveIntent from the unit's evidence: stacked (credited
//     then, to the intent's session), returned (frees the limit) or uncertain. A stacked
//     resolution from a power-up report is sealed (Seal) before the unit is reset.
//   - ReconcileDeviceCounter compares the unit's stacked counter with the baseline taken at
//     the last reconciliation: notes the unit stacked beyond what the journal credited or
//     holds as uncertain (a lost intent commit) become uncertain items, at most MaxLostNotes;
//     StackedWitness lets recovery decide the one note in transit from the same counter.
//     An uncertain item of a credit nobody announced (InCassette) is in the cassette count
//     already and never explains a counter move. A move while a customer's session is open,
//     when only other sessions' items could explain it, becomes one item of unknown value on
//     the open session: the counter cannot tell an old uncertain note from this customer's
//     note whose intent a power cut took, and the collection count settles a spare item.
//
// Escrowless pulse acceptors cannot refuse a note: RecordPulse journals each pulse before the
// driver acts on it, CreditDirect credits the complete train (over the limit if need be: the
// money is in the box), and PulseUncertain turns a train cut short into an uncertain item.
//
// Such a unit takes a note by itself whenever its inhibit line is released, and a note can
// reach the cassette with no pulse on disk: the process is down (a crash, and the restart
// after it, during which the kernel keeps the line released), the journal refuses writes
// (the driver owes the credit, which dies with the process), or a power cut takes the last
// commit, the note's only pulse. The journal therefore keeps the line's state (PulseLine,
// pulse.go): PulseEnabling commits "enabled" and seals it before the line is released, so
// it is never the commit a power cut takes; PulseInhibited commits "inhibited" only once the
// unit reported it is at rest behind the inhibit (after the driver's grace for a note drawn
// in just before it), so a process whose storage failed while the unit was enabled leaves
// "enabled"; and at start-up PulseLineUncertain turns an enabled line into one uncertain item
// of unknown value, on the interrupted session, at most one per enabled stretch. This does
// not depend on what stopped the previous process: a power cut and a storage fault leave no
// evidence in the journal beyond the state itself, and after a plain crash on the same boot
// the line stayed released until the next process inhibited it, so the pulse records are
// not the whole truth either. The price is one item per restart that found the unit enabled,
// settled at cash collection; an extra item of unknown value that proves to be no note is
// safe, a missing one is not.
//
// # Sessions, top-ups and receipts
//
// OpenSession starts the only open session. CloseSession, in one transaction, turns intents
// still open into uncertain items of the session, and then either cancels a session that took
// nothing, or writes SessionClosed, the top-up with its contiguous seq, its outbox entry and
// the receipt record with its gapless number. A session open at a crash is closed at start-up
// as interrupted with what was credited.
//
// ApplyAck applies a verified ledger ack: credited/duplicate remove the outbox entry (once);
// conflict stops retries and keeps the entry for a technician; an ack whose amount or
// currency differs changes nothing. The ledger's watermark is checked against the journal:
// a ledger holding more top-ups than this journal ever closed means a lost local commit.
//
// A receipt is printed with MarkPrintStart before the first byte goes to the printer and
// MarkPrint after. Whether a receipt whose print was interrupted is out is decided by the
// printer's cut counter, under the rule documented in printcuts.go: one physical cut is never
// counted for two receipts. ReconcileCuts gives, at start-up, the verdict on every
// unfinished receipt: printed (do not print again), not printed (print the original) or
// unknown (print a COPY).
//
// # Cash collection
//
// A cash collection is one procedure with a journaled step per fact (collection.go), so that
// a crash at any point resumes it at the journaled step and it makes exactly one record and
// one reset of the cassette counters:
//
//  1. StartCollection (collection_started): collection number n, id
//     <kiosk_id>-<epoch>-C<n>; the period starts after the previous collection's cassette-out.
//     Starting again while one is open returns the open one.
//  2. CollectionCassetteOut (collection_cassette_out): the cassette counters per denomination
//     (what the journal expects in the cassette), the unit's stacked counter (its last
//     baseline) and the unsettled uncertain items (each with the top-up it belongs to) are
//     frozen into the collection.
//  3. CountCollection (collection_counted): the collector's count per denomination, entered
//     again to correct it.
//  4. RecordCollection (collection_recorded), ONE transaction: the record (wire.Collection:
//     expected, counted, differences, unit counter, uncertain items) is final and enters the
//     collection outbox; the cassette counters drop by what was expected (the only event
//     that takes notes out of them, replayed by Verify); the period's uncertain items are
//     settled at this collection (Uncertain.Collection); the unit-counter baseline is moved
//     by the same amount so the witness reads the same difference. A crash before it leaves
//     none of this, after it all of it; asked again, it changes nothing.
//  5. CollectionSlipStart / CollectionSlipDone (collection_slip_print, collection_slip_done):
//     the slip is printed between two commits; an interrupted print is printed again as a
//     COPY.
//  6. CollectionCassetteIn (collection_cassette_in), then EndCollection (collection_ended)
//     once the slip was printed or tried: service resumes.
//
// Before the cassette came out the procedure may be aborted (collection_aborted). The record
// leaves the outbox on the ledger's signed ack (ApplyCollectionAck, collection_acked).
//
// # Identifiers
//
//   - journal_epoch: random 64-bit value chosen when the file is created, never changed; a
//     replaced card or restored backup is a new journal with a new epoch.
//   - event seq: NextSequence of the events bucket, in the event's own transaction. Ids of
//     sessions, intents and uncertain items are the seq of the event that created them.
//   - top-up seq: NextSequence of the top-ups bucket, allocated in the SessionClosed
//     transaction, so top-up seqs are contiguous (1, 2, 3, ...) per journal; the ledger's
//     watermark relies on that. topup_id is kiosk id, epoch (16 hex digits) and seq.
//   - receipt_no: NextSequence of the receipts bucket in the same transaction: gapless, one
//     per top-up.
//
// Nothing is ordered by wall-clock time: a kiosk may boot in 1970. Times recorded in events
// are informative only.
//
// # Events and the hash chain
//
// Each event kind has one payload struct (events.go) used to write it and to read it back;
// its JSON is part of the chain and never changes for events already written. Each event
// stores h = SHA-256(prev_h || seq (8 bytes big-endian) || type || 0x00 || data), and the
// meta bucket stores the head. Verify walks the chain; any edit, deletion or reordering of
// events breaks it. The views are not chained: Verify rebuilds the money views from the
// events and compares them.
//
// # Files
//
// journal.go (file, chain, Verify), events.go (event kinds), session.go, credit.go (intents,
// credits, cassette), followup.go (credits reported after the session closed),
// uncertain.go, pulse.go, devicecounter.go, outbox.go (top-ups and acks), collection.go (cash
// collection),
// receipt.go and printcuts.go (printing), nonce.go (used QR nonces, trusted time), stats.go,
// verify.go (replay), checkpoint.go (verified checkpoint, start-up check, VerifyFull),
// archive.go (sealed history segments), compact.go (shrinking the hot file), check.go (the
// integrity check in a child process).
//
// # Start-up, growth and time
//
// Start-up checks the chain and the live views from the last verified checkpoint, not from
// the first event; the full check runs in the background (VerifyFull) and catches an edit of
// history before the checkpoint (checkpoint.go). Settled history older than a configured age
// moves to gzip segments next to the file, chained to the hot file by an anchor, and the hot
// file is compacted at open when mostly free (archive.go, compact.go). A running kiosk is
// never restarted for that: the append-only buckets (events and the session, top-up and
// receipt views, whose keys only grow) fill their pages, and the pages an archive run frees
// are reused by the commits that follow, so the running file stays within about twice its
// compacted size (TestHotFileStaysNearItsCompactedSize). Used QR nonces are
// kept by their code's expiry against a journal-anchored monotonic time (MonoNow: set only by
// the ledger's signed time or a synchronised clock, advanced by the monotonic clock), which no
// wall-clock jump moves (nonce.go).
package journal
