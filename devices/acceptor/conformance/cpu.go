package conformance

import (
	"syscall"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/devices/acceptor/ccnet"
	"github.com/kioskd/kioskd/devices/acceptor/id003"
	"github.com/kioskd/kioskd/devices/acceptor/ssp"
)

// statsPolls reads the poll counter of any serial driver.
func statsPolls(a acceptor.Acceptor) uint64 {
	switch d := a.(type) {
	case *id003.Driver:
		return d.Stats().Polls
	case *ccnet.Driver:
		return d.Stats().Polls
	case *ssp.Driver:
		return d.Stats().Polls
	}
	return 0
}

// cpuTime is the process's user + system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
