// Package fleet is the operations console behind fleetd: it reads the kiosks' operations
// messages (sync/CONTRACT.md §7: retained up/status with its open conditions, up/heartbeat,
// up/alarm, up/cmd_result), keeps them durably in a Store (BoltStore; the interface leaves
// room for PostgreSQL), and lets operators see and run the fleet.
//
// Alarms have a life: raised once while their cause stands (by an up/alarm, or as the
// condition "cond:<kind>" of a status), acknowledged by an operator (who and when, kept),
// cleared when the cause goes away; every step is a line of durable history. Because a
// status lists every open condition, the alarm picture can be rebuilt from the retained
// statuses alone; the Last Will (offline) leaves the conditions as they were.
//
// Commands are built and checked with wire.Command.Validate, signed with the OPS key (never
// the ledger's ack key), recorded before they are published on down/cmd (QoS 1, not
// retained), and matched with their up/cmd_result.
//
// The pages (html/template) are the overview (counts per state, who must act, stale
// heartbeats, stuck sessions, idle kiosks), a page per kiosk (conditions, heartbeat figures,
// cassette fill and days to full from the fill trend, uncertain items, outbox lag, recent
// top-ups from ledgerd's HTTP API, commands, history), acknowledgement, and a command form
// with a confirmation step. They update themselves by fetching their live part. Webhooks
// (Notifier) announce a raised alarm once per rule, repeat it while it stands
// unacknowledged, and send an all clear. Prometheus metrics are on /metrics.
package fleet
