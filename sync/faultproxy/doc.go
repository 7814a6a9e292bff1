// Package faultproxy is a TCP proxy that injects network faults, for tests of the MQTT link
// between a kiosk, the broker and the ledger (sync/CONTRACT.md §5 and kiosk/journal's money
// invariants: nothing is lost or credited twice across broker restarts, network partitions,
// duplicate and reordered deliveries).
//
// A Proxy listens on one address and forwards every accepted connection to one upstream
// address. Faults are set at run time, from any goroutine, per direction (Up: client to
// upstream, Down: upstream to client) or for Both:
//
//   - Delay(d, jitter): every chunk is held d plus a uniform [0, jitter) before it is
//     written. Order within a connection is kept (a later chunk never overtakes an earlier
//     one), as on a real TCP path whose latency varies.
//   - Drop(p) and Duplicate(p): a chunk is discarded, or written twice, with probability p.
//     Inside a TCP stream this corrupts the application framing, which is what a broken
//     middlebox does: the peers must notice (MQTT parse errors, missing acks, keepalive) and
//     reconnect. When a chunk happens to hold whole MQTT packets, the packets are lost or
//     delivered twice with the framing intact.
//   - Blackhole(on): bytes are read and discarded, new connections are accepted but carry
//     nothing, and a close (FIN or reset) is not passed on while the direction is
//     blackholed: a silent partition, which only a keepalive detects. When the blackhole is
//     lifted, a close that was held back is passed on.
//   - Throttle(bytes per second): the direction's writes, summed over every connection, are
//     paced to the rate (a shared link).
//   - CutAll(): every current connection is reset (RST to both peers).
//   - Refuse(on): the listening socket is closed, so new connections are refused
//     (ECONNREFUSED): the network is down. Existing connections are left alone; CutAll
//     them too for a full outage.
//
// Determinism: decisions come from a PCG generator seeded with Config.Seed, one stream per
// connection and direction. The k-th chunk read on the n-th accepted connection in a
// direction gets the same drop, duplicate and jitter decisions for the same seed, whatever
// the other connections do. Where the chunk boundaries fall still depends on the kernel and
// the peers' write pattern, so a whole run is reproducible only as far as the traffic is.
//
// A chunk is what one read from a socket returns (at most Config.ChunkSize bytes).
package faultproxy
