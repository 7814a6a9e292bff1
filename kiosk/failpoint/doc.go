// Package failpoint names the points of the money protocol where the crash campaign may stop
// the process (before and after each journal commit, print, publish and ack).
//
// In the product build every Hit is an empty function the compiler removes: the crash
// machinery is not in kioskd. Built with `-tags kioskd_failpoints` (the crash harness does
// this), Hit calls the hook installed by Set. The idea is etcd's gofail, used by bbolt's tx.go,
// without the code generation.
package failpoint
