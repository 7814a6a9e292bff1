package daemon

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"
)

// TestSuperviseBackoff: a device that cannot be opened is retried after a doubling wait
// capped at RetryMax; one that worked for a while is retried at once after it is lost; one
// that fails as soon as it is opened keeps backing off.
func TestSuperviseBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &System{log: slog.New(slog.DiscardHandler), opts: Options{RetryMin: time.Second, RetryMax: 8 * time.Second}}
		ctx, cancel := context.WithCancel(context.Background())
		// The script: each step says whether the attempt opens the device and how long it
		// then works before failing.
		type step struct {
			opened bool
			works  time.Duration
		}
		script := []step{{}, {}, {}, {}, {}, {}, // absent: 1 2 4 8 8 8
			{true, time.Minute}, {}, {}, // worked a minute, lost: 1, then absent: 2 4
			{true, 0}, {true, 0}, {true, 0}, // flapping: 8 8 8
		}
		want := []time.Duration{1, 2, 4, 8, 8, 8, 1, 2, 4, 8, 8, 8}
		var gaps []time.Duration
		var last time.Time
		n := 0
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.superviseDevice(ctx, "test", func(ctx context.Context) (bool, error) {
				now := time.Now()
				if n > 0 {
					gaps = append(gaps, now.Sub(last))
				}
				if n == len(script) {
					cancel()
					return false, ctx.Err()
				}
				st := script[n]
				n++
				time.Sleep(st.works)
				last = time.Now()
				return st.opened, errors.New("gone")
			})
		}()
		<-done
		if len(gaps) != len(want) {
			t.Fatalf("gaps %v, want %d", gaps, len(want))
		}
		for i := range want {
			if gaps[i] != want[i]*time.Second {
				t.Fatalf("gap %d is %v, want %v (all: %v)", i, gaps[i], want[i]*time.Second, gaps)
			}
		}
	})
}
