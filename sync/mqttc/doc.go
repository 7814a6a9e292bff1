// Package mqttc is the MQTT client both kioskd and ledgerd use: a thin wrapper over
// github.com/eclipse/paho.mqtt.golang (MQTT 3.1.1) that fixes the settings the kiosk contract
// needs (sync/CONTRACT.md §1) and makes the awkward parts of paho safe by construction.
//
// Settings that are not options:
//   - CleanSession is always true and the paho store is in memory. The kiosk keeps its own
//     outbox in bbolt and never trusts the MQTT client's store with money; after a reconnect
//     every subscription is re-made by Config.OnConnect, which runs after every (re)connect.
//   - Reconnection is always on and done by mqttc, not paho (whose retry is a fixed
//     interval): exponential backoff with full jitter from the first attempt after a loss
//     (uniform in [0, min(Config.MaxReconnectInterval, 0.5 s·2^n)) before attempt n), so a
//     fleet that lost its broker at once comes back spread out. The first connection is
//     tried at once, then with the same backoff, in the background: Dial never blocks, and
//     a kiosk that boots offline keeps working.
//   - Protocol version 3.1.1.
//
// Handlers never run on paho's router. Paho calls message handlers on its router goroutine
// when OrderMatters is true (its default): a handler that blocks, or that publishes at QoS 1
// and waits for the PUBACK (which the ledger does for every top-up), stalls the router and
// deadlocks the connection, because the PUBACK is read by the same pipeline. OrderMatters
// false avoids that by starting one goroutine per message, which loses ordering and leaves
// goroutines no one owns or waits for. mqttc does neither: paho's callback only hands the
// message to a bounded queue (non-blocking), and a fixed pool of Config.Workers goroutines,
// owned by the Client and stopped by Close, runs the handlers. With one worker (the default)
// handlers see messages in arrival order. If handlers fall so far behind that the queue
// (Config.QueueDepth) is full, the message is dropped, counted (Client.Dropped) and logged:
// every message in the kiosk contract is either retried by its sender until acknowledged
// (top-ups, authz, commands) or periodic (status, heartbeat), so a drop under overload costs
// a retry, never money; blocking instead would stall keepalives and the connection.
//
// Paho's own log lines go to slog at debug level. Paho's loggers are process globals, so they
// are routed once, to the logger given to SetPahoLogger, or else to the first non-nil
// Config.Logger seen by Dial.
package mqttc
