//go:build kioskd_failpoints

package daemon

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/kioskd/kioskd/kiosk/failpoint"
)

// This file is the crash campaign's part of kioskd; only a build with the kioskd_failpoints
// tag has it (the product has no way to kill itself on request).
//
// KIOSKD_TEST_CRASH_AT names a failpoint where the process kills itself with SIGKILL: "point"
// or "point:N" for the N-th time it is reached. Any value also makes SIGUSR2 a crash between
// two journal commits (the harness's random power cut); "none" arms only that.
const crashEnv = "KIOSKD_TEST_CRASH_AT"

// armCrashPoints installs the failpoint hook and the SIGUSR2 handler for this System. Before
// the process kills itself it freezes the journal (journal.Freeze): a failpoint runs outside
// any transaction, but another goroutine may be in the middle of a commit, and the harness
// may then simulate a power cut that drops the last commit, which is only sound between
// commits.
func (s *System) armCrashPoints(ctx context.Context, g *group) {
	spec := os.Getenv(crashEnv)
	if spec == "" {
		return
	}
	freeze := s.j.Freeze
	log := s.log
	point, nth := spec, 1
	if i := strings.LastIndexByte(spec, ':'); i > 0 {
		fmt.Sscanf(spec[i+1:], "%d", &nth)
		point = spec[:i]
	}
	var mu sync.Mutex
	seen := 0
	failpoint.Set(func(p string) {
		if p != point {
			return
		}
		mu.Lock()
		seen++
		n := seen
		mu.Unlock()
		if n == nth {
			log.Warn("crash point reached: SIGKILL", "point", p, "n", n)
			freeze()
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // never continue past the crash point
		}
	})
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGUSR2)
	g.Go("sigusr2", func() {
		defer signal.Stop(ch)
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
		log.Warn("crash signal: SIGKILL between commits")
		freeze()
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	})
}

func (s *System) disarmCrashPoints() { failpoint.Set(nil) }
