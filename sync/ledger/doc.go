// Package ledger is the reference central ledger: the consumer side of the kiosk MQTT
// contract (sync/CONTRACT.md, payloads and envelope in sync/wire). The wallet backend
// team implements the same behaviour against their own database; this package is the
// executable specification of that behaviour, and what the demo and the end-to-end tests run.
//
// # What the ledger promises a kiosk
//
// For each top-up (kiosk/<id>/up/topup, QoS 1) the ledger answers a signed ack on
// kiosk/<id>/down/ack (QoS 1, not retained):
//
//   - credited: first time this topup_id was seen; the amount is on the account.
//   - duplicate: the topup_id was credited before with the same content (wire.Topup.ContentHash:
//     money and identity, not the kiosk's clock). Nothing moves. The kiosk may forget it.
//   - conflict: the topup_id was credited before with different content. Nothing moves; the
//     ledger records the refused payload and both hashes for an operator; the kiosk alarms
//     and stops retrying.
//   - held: a check failed (see "Trust" below); the top-up is stored durably, not credited,
//     and waits for an operator; reason says which check. The kiosk may forget it.
//   - retry_later: the store failed; nothing was credited; the kiosk retries.
//
// A topup_id is credited at most once, forever: there is no expiry window, because a kiosk
// may come back after weeks offline. The store keeps every topup_id it ever credited.
//
// Ack fields: amount_minor and currency echo the received top-up (for credited and duplicate
// they are, by the content hash, the credited amount; for conflict they let the kiosk match
// the ack to its outbox entry, since it ignores an ack whose amount differs). ledger_ref is
// the stable reference assigned at the first credit ("LR" + 12 digits) and repeated in every
// later ack for the id. acked_through_seq is the kiosk's watermark for the top-up's journal
// epoch: the highest seq n such that the ledger holds every top-up 1..n of that journal
// (seqs start at 1; the seqs held above a gap are kept so the watermark jumps when the gap
// fills). It is 0 in a retry_later ack.
//
// No ack at all (the kiosk keeps retrying, and its outbox lag shows on the fleet page) for:
// a payload that is not valid JSON, is larger than wire.MaxPayload, or fails
// wire.Topup.Validate (counted as rejected_payloads); and a top-up whose kiosk_id is not the
// kiosk id in its topic (counted as bad_topics and logged as a security event: an ack is what
// makes a kiosk forget money, so the ledger answers only on the kiosk's own topic).
//
// Money rules: an interrupted top-up (outcome "interrupted", a session open at a crash) is
// credited with exactly what it carries. Its uncertain items (notes whose fate is unknown)
// become suspense records, never credits; operations settle them against the cassette
// count. Balances are per (account, currency), int64 minor units, and a credit that would
// overflow is refused (retry_later), never wrapped.
//
// # Trust (DESIGN.md §11)
//
// A kiosk's certificate proves only which kiosk is talking, and its key sits in a shop. So
// every top-up carries qr, the wallet-signed code the session was opened with, and the
// ledger checks (first failure wins, in this order):
//
//   - the proof: present (qr_missing), a well-formed code signed by a key of
//     Config.WalletKeys (qr_invalid), for the top-up's account (qr_account_mismatch), and
//     the session opened before the code expired, give or take Policy.QRTolerance
//     (qr_expired_at_open; an offline top-up arriving days later is fine);
//   - the policy (Config.Policy, per-kiosk overrides): amount within the per-top-up maximum
//     (over_max_topup), a currency with a denomination table (currency_not_accepted), every
//     note and uncertain item a banknote of it (denomination_unknown);
//   - in the store's transaction: the code's nonce not used by another top-up, ever
//     (qr_reused), the journal epoch known for the kiosk when Policy.StrictEpochs
//     (unknown_epoch), the kiosk's notes and amount on the code's day within
//     Policy.DailyNotes and DailyCashInMinor (kiosk_daily_notes, kiosk_daily_cash_in).
//
// A failure stores the top-up as held (Store.Held) and acks "held" with the reason. The
// code's nonce is spent either way. A held top-up counts for the watermark: the ledger holds
// it. A journal epoch seen for the first time is recorded as an ops alarm (Store.Alarms,
// GET /api/alarms) in any mode. Operations release (credit, overriding the checks, and making
// the epoch known) or reject held top-ups and suspense records over the HTTP API, each
// decision recorded with the operator's name, authenticated by the operator's bearer token
// (Config.Operators).
//
// # Authz
//
// kiosk/<id>/up/authz is answered on kiosk/<id>/down/authz, signed. Without a valid proof
// (qr: verifies, names the account, unexpired now give or take the tolerance, not used by a
// top-up) the answer is denied with proof_missing, proof_invalid, proof_expired or proof_used,
// and says nothing about the account. Otherwise: ok with remaining_minor =
// min(the kiosk's per-top-up maximum, Limits.DailyMinor − what the account received today (UTC)),
// or denied with a reason (account_blocked or Config.Deny's, unknown_account,
// daily_limit_reached, invalid_request). name_masked is the display name from Config.Names
// masked ("张*丰"), else the masked account id ("ab***yz"). The account's daily limit is
// checked at authz only: once the cash is in the cassette, the ledger credits it (the
// per-top-up maximum and the kiosk's daily cash-in are top-up checks, above).
//
// Reference-ledger choice: there is no account registry. Any well-formed account id is an
// open account; it is created in the store on its first credit, and authz treats an unknown
// account as one with nothing credited today (set Config.RequireKnownAccount to deny accounts
// missing from Config.Names).
//
// # Delivery, scaling, restarts
//
// Top-ups arrive through the shared subscription $share/<group>/kiosk/+/up/topup, so
// several ledger instances (sharing one Store) split the load; each message goes to one
// instance. Config.PlainTopupSubscription uses kiosk/+/up/topup for a broker without
// shared subscriptions, and for mosquitto: its ACL is checked on delivery, not on subscribe,
// so a kiosk that joins a known share group is handed a share of the top-ups, which the ACL
// then drops (sync/mosqtest's TestKioskCannotStarveTheLedger). Shared subscriptions are an
// MQTT 5 feature, but mochi (the embedded broker, see sync/broker's
// TestSharedSubscription311) and mosquitto 2.0 (checked by hand with mosquitto_sub -V
// mqttv311) deliver them to MQTT 3.1.1 clients such as paho. MQTT gives
// at-least-once delivery, and a kiosk retries until it gets an ack, so every top-up may
// arrive any number of times, reordered, across ledger and broker restarts: the store's
// idempotency is what makes that safe.
//
// Status (retained), heartbeat, alarm and cmd_result messages feed the in-memory fleet view;
// the retained status comes back from the broker when the ledger reconnects.
//
// # Store
//
// Store is the interface a production database implements. BoltStore is the embedded one
// (one process: bbolt locks its file). PGStore (OpenPostgres) is the one to scale out on:
// any number of ledger processes share one PostgreSQL database; topup_id and the QR nonce
// are UNIQUE keys, and each apply (top-up, balance, suspense rows, watermark, held record,
// day totals) is one READ COMMITTED transaction under its kiosk epoch's row lock (a
// fleet's first top-ups at SERIALIZABLE aborted each other through predicate locks on small
// indexes), retried when it loses a race; operator decisions stay SERIALIZABLE. The schema is
// migrations/*.sql, embedded and applied at open under an advisory lock.
//
// Group commit: with a BatchStore (PGStore.ApplyBatch), the Ledger's handlers hand each
// valid top-up to one of Config.BatchWorkers workers (a kiosk's top-ups always to the same
// one); a worker applies whatever queued while its last batch ran, up to Config.BatchSize,
// in one transaction of two pipelined round trips, and publishes each signed ack only after
// that transaction committed, on its own goroutine, so neither a handler nor a worker waits
// for a PUBACK (up to two rounds of every worker's batches of acks in flight; only beyond
// that does a worker wait for the broker). ledgerd sets BatchSize and BatchWorkers with
// -batch-size and -batch-workers. Each top-up keeps its own outcome (credited, duplicate, conflict, held),
// decided exactly as Apply would decide it after the top-ups before it in the batch; a
// kiosk epoch another batch holds is skipped for a later round instead of waited for; a
// batch the database refuses as a whole (an overflowing balance) is applied again one
// top-up at a time; a batch whose connection or server failed is answered retry_later
// (nothing committed). Lone top-ups take the same path, so a quiet fleet's ack latency is
// two round trips. BoltStore applies each top-up on its own (its Apply is one local
// transaction already). The same store
// tests run against both (forEachStore); among them the suspense rules (suspense.go): a
// follow-up top-up's credit resolves its original's open suspense records in the same
// transaction, so an operator's release and a follow-up never both credit one note. The
// scale-out tests kill an instance mid-stream and restart the database, and cmd/ledgerd's
// kill the ledgerd process with SIGKILL.
package ledger
