// Package broker runs an in-process MQTT broker (github.com/mochi-mqtt/server/v2) for the demo
// and for tests, so that kioskd and the reference ledger can talk over a real MQTT 3.1.1/5
// connection on one machine with no external service (sync/CONTRACT.md; `make demo` and the tests).
//
// It is not the production broker: production uses mosquitto or a clustered broker with TLS
// client certificates (client id = username = certificate CN = kiosk id). The optional
// username/password table and topic ACL here model the production rule so that tests exercise
// it:
//
//   - a kiosk (any username that is a valid kiosk id and not a ledger user) may publish only to
//     kiosk/<its id>/up/# and subscribe only to kiosk/<its id>/down/#, and must use its
//     username as its client id (so it cannot take over another kiosk's session);
//   - a ledger user may subscribe to kiosk/+/up/# (including the shared subscription
//     $share/<group>/kiosk/+/up/...) and publish to kiosk/+/down/#;
//   - anyone else may do nothing.
//
// Shared subscriptions: mochi implements $share/<group>/<filter> independently of the
// protocol version, so MQTT 3.1.1 clients (paho.mqtt.golang) get them too; each matching
// message goes to exactly one member of the group (TestSharedSubscription311 checks this).
//
// Start on a fixed address right after Close works: Close closes the listening socket and
// every client connection before it returns, and Go listeners set SO_REUSEADDR, so tests can
// stop and start a broker on the same port to simulate a broker restart. The broker keeps
// nothing across a restart (no persistence hook): retained messages and sessions are lost,
// which is what a restarted non-persistent broker does.
//
// mochi's own log lines are forwarded to the configured slog.Logger at debug level.
package broker
