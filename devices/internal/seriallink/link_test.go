package seriallink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// A toy protocol for the tests: a frame is 0x02, a length byte n, then n payload bytes.
// A length above 8 is line noise.

var errIncomplete = errors.New("incomplete")
var errBadLength = errors.New("bad length")

type toyDecoder struct {
	buf          []byte
	garbage, bad uint64
}

func (d *toyDecoder) Feed(p []byte) { d.buf = append(d.buf, p...) }
func (d *toyDecoder) Reset()        { d.buf = d.buf[:0] }
func (d *toyDecoder) Buffered() int { return len(d.buf) }
func (d *toyDecoder) Dropped() (uint64, uint64) {
	return d.garbage, d.bad
}

func (d *toyDecoder) Next() (string, error) {
	i := bytes.IndexByte(d.buf, 0x02)
	if i < 0 {
		d.garbage += uint64(len(d.buf))
		d.buf = d.buf[:0]
		return "", errIncomplete
	}
	d.garbage += uint64(i)
	d.buf = d.buf[i:]
	if len(d.buf) < 2 {
		return "", errIncomplete
	}
	n := int(d.buf[1])
	if n > 8 {
		d.bad++
		d.buf = d.buf[1:]
		return "", errBadLength
	}
	if len(d.buf) < 2+n {
		return "", errIncomplete
	}
	f := string(d.buf[2 : 2+n])
	d.buf = d.buf[2+n:]
	return f, nil
}

func toy(payload string) []byte { return append([]byte{0x02, byte(len(payload))}, payload...) }

var errNotRunning = errors.New("toy: not running")
var errRunning = errors.New("toy: already running")

func newToyLink(port net.Conn) *Link[string, string] {
	return New[string, string](port, Config[string]{
		Name:             "toy",
		NewDecoder:       func() Decoder[string] { return &toyDecoder{} },
		Incomplete:       errIncomplete,
		InterByteTimeout: 50 * time.Millisecond,
		WriteTimeout:     time.Second,
		ShutdownTimeout:  time.Second,
		AlreadyRunning:   errRunning,
		NotRunning:       errNotRunning,
	})
}

// readFrames collects the frames the link's reader delivers through Await, the way a poll
// loop would, until n arrived or a wait of 1 s gave nothing.
func awaitAll(ctx context.Context, l *Link[string, string], n int) []string {
	var got []string
	for len(got) < n {
		f, err := l.Await(ctx, time.Second, func(string) (bool, error) { return true, nil })
		if err != nil {
			break
		}
		got = append(got, f)
	}
	return got
}

func TestInterByteTimeoutDropsTornFrame(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		host, dev := net.Pipe()
		l := newToyLink(host)
		ctx, cancel := context.WithCancel(t.Context())
		var got []string
		go func() {
			// The unit starts a frame, goes silent past the inter-byte timeout, then sends a
			// whole frame: the torn start must not swallow it.
			dev.Write([]byte{0x02, 0x05, 'a', 'b'})
			time.Sleep(80 * time.Millisecond)
			dev.Write(toy("hello"))
			// A frame split with a pause inside the timeout is still one frame.
			dev.Write([]byte{0x02, 0x03, 'x'})
			time.Sleep(30 * time.Millisecond)
			dev.Write([]byte{'y', 'z'})
		}()
		err := l.Run(ctx, Loop[string]{
			Cycle: func(ctx context.Context) time.Duration {
				got = awaitAll(ctx, l, 2)
				cancel()
				return time.Hour
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, []string{"hello", "xyz"}) {
			t.Fatalf("frames %q, want hello and xyz", got)
		}
		st := l.Stats()
		if st.Abandoned != 1 || st.GarbageBytes != 4 {
			t.Errorf("stats %+v, want one abandoned frame of 4 bytes", st)
		}
	})
}

func TestInterByteTimeoutOffKeepsWaiting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		host, dev := net.Pipe()
		l := New[string, string](host, Config[string]{
			Name: "toy", NewDecoder: func() Decoder[string] { return &toyDecoder{} }, Incomplete: errIncomplete,
			ShutdownTimeout: time.Second,
		})
		ctx, cancel := context.WithCancel(t.Context())
		var got []string
		go func() {
			dev.Write([]byte{0x02, 0x03, 'x'})
			time.Sleep(10 * time.Second)
			dev.Write([]byte{'y', 'z'})
		}()
		l.Run(ctx, Loop[string]{Cycle: func(ctx context.Context) time.Duration {
			f, err := l.Await(ctx, time.Minute, func(string) (bool, error) { return true, nil })
			got = append(got, f)
			if err != nil {
				t.Error(err)
			}
			cancel()
			return time.Hour
		}})
		if !slices.Equal(got, []string{"xyz"}) || l.Stats().Abandoned != 0 {
			t.Fatalf("frames %q stats %+v: without an inter-byte timeout a slow frame is kept", got, l.Stats())
		}
	})
}

// A damaged frame is reported only when nothing good came with it; a late frame is skipped
// by match and counted; stale frames are drained before a command.
func TestAwaitAndDrain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		host, dev := net.Pipe()
		l := newToyLink(host)
		ctx, cancel := context.WithCancel(t.Context())
		go func() {
			buf := make([]byte, 16)
			dev.Read(buf)                                        // "1"
			dev.Write(append([]byte{0x02, 0x09}, toy("one")...)) // noise, then the answer
			dev.Read(buf)                                        // "2"
			dev.Write([]byte{0x02, 0x09})                        // only noise: damaged
			dev.Write(toy("late"))                               // stale by the next command
			time.Sleep(time.Millisecond)
			dev.Read(buf) // "3"
			dev.Write(toy("other"))
			dev.Write(toy("three"))
		}()
		var got []string
		var errs []error
		l.Run(ctx, Loop[string]{Cycle: func(ctx context.Context) time.Duration {
			defer cancel()
			for _, cmd := range []string{"1", "2", "3"} {
				time.Sleep(5 * time.Millisecond)
				l.DrainStale()
				if err := l.Write([]byte(cmd)); err != nil {
					t.Fatal(err)
				}
				f, err := l.Await(ctx, time.Second, func(f string) (bool, error) { return f != "other", nil })
				got, errs = append(got, f), append(errs, err)
			}
			return time.Hour
		}})
		if !slices.Equal(got, []string{"one", "", "three"}) || errs[0] != nil || !errors.Is(errs[1], ErrDamaged) || errs[2] != nil {
			t.Fatalf("got %q errs %v", got, errs)
		}
		if st := l.Stats(); st.Unexpected != 2 || st.BadFrames != 2 {
			t.Errorf("stats %+v: want the late and the other frame unexpected, two bad lengths", st)
		}
	})
}

func TestAwaitTimesOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		host, _ := net.Pipe()
		l := newToyLink(host)
		ctx, cancel := context.WithCancel(t.Context())
		var err error
		l.Run(ctx, Loop[string]{Cycle: func(ctx context.Context) time.Duration {
			_, err = l.Await(ctx, 300*time.Millisecond, func(string) (bool, error) { return true, nil })
			cancel()
			return time.Hour
		}})
		if !errors.Is(err, ErrNoReply) || l.Stats().Timeouts != 1 {
			t.Fatalf("err %v stats %+v", err, l.Stats())
		}
	})
}

// Requests are served one at a time between cycles, never during one, in the order one
// caller made them; none is served before the loop is Ready.
func TestMailboxServesBetweenCycles(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		host, _ := net.Pipe()
		l := newToyLink(host)
		ctx, cancel := context.WithCancel(t.Context())
		var mu sync.Mutex
		var trace []string
		log := func(s string) { mu.Lock(); trace = append(trace, s); mu.Unlock() }
		inCycle := false
		ready := false
		cycles := 0
		done := make(chan struct{})
		// The requests come once the link runs (Do refuses before Run opened the
		// mailbox: the goroutine could win that race), while the first cycle is on.
		running := make(chan struct{})
		go func() {
			defer close(done)
			<-running
			for i := range 3 {
				if err := l.Do(ctx, fmt.Sprint("req", i)); err != nil {
					t.Errorf("Do: %v", err)
				}
			}
			cancel()
		}()
		err := l.Run(ctx, Loop[string]{
			Cycle: func(ctx context.Context) time.Duration {
				inCycle = true
				cycles++
				log(fmt.Sprint("cycle", cycles))
				if cycles == 1 {
					close(running)
				}
				time.Sleep(10 * time.Millisecond) // a request arriving now waits
				ready = cycles >= 2
				inCycle = false
				return 100 * time.Millisecond
			},
			Ready: func() bool { return ready },
			Serve: func(ctx context.Context, r string) error {
				if inCycle {
					t.Errorf("%s served during a cycle", r)
				}
				log(r)
				return nil
			},
		})
		<-done
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"cycle1", "cycle2", "req0", "req1", "req2"}
		if !slices.Equal(trace, want) {
			t.Fatalf("trace %v, want %v", trace, want)
		}
	})
}

// The answer of Serve reaches the caller; a request waiting while Run stops fails with the
// driver's not-running error, and so does any request after Run.
func TestMailboxStopWhileRequestWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		host, _ := net.Pipe()
		l := newToyLink(host)
		if err := l.Do(t.Context(), "before"); !errors.Is(err, errNotRunning) {
			t.Fatalf("Do before Run: %v", err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		refused := errors.New("refused")
		ready := true
		served := make(chan struct{})
		var first, waiting error
		var wg sync.WaitGroup
		started := false
		// The requests start from the loop's first cycle, so they cannot reach the mailbox
		// before Run has opened it (a goroutine started before Run may be scheduled first,
		// and would then get the not-running answer).
		requests := func() {
			wg.Go(func() {
				first = l.Do(t.Context(), "first")
				close(served)
				// The loop no longer takes requests: this one waits until Run stops.
				waiting = l.Do(t.Context(), "second")
			})
			wg.Go(func() {
				<-served
				synctest.Wait() // the second request is parked in the mailbox
				cancel()
			})
		}
		l.Run(ctx, Loop[string]{
			Cycle: func(context.Context) time.Duration {
				if !started {
					started = true
					requests()
				}
				return time.Hour
			},
			Ready: func() bool { return ready },
			Serve: func(_ context.Context, r string) error { ready = false; return refused },
		})
		wg.Wait()
		if !errors.Is(first, refused) {
			t.Errorf("first request: %v, want the loop's answer", first)
		}
		if !errors.Is(waiting, errNotRunning) {
			t.Errorf("request waiting at stop: %v, want not running", waiting)
		}
		if err := l.Do(t.Context(), "after"); !errors.Is(err, errNotRunning) {
			t.Errorf("Do after Run: %v", err)
		}
	})
}

// A Do whose ctx ends while it waits returns ctx's error and leaves the loop alone.
func TestMailboxCallerGivesUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		host, _ := net.Pipe()
		l := newToyLink(host)
		ctx, cancel := context.WithCancel(t.Context())
		dctx, dcancel := context.WithTimeout(t.Context(), time.Second)
		defer dcancel()
		var err error
		l.Run(ctx, Loop[string]{
			Cycle: func(context.Context) time.Duration {
				go func() { err = l.Do(dctx, "never served"); cancel() }()
				return time.Hour
			},
			Ready: func() bool { return false },
			Serve: func(context.Context, string) error { t.Error("served while not ready"); return nil },
		})
		synctest.Wait()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Do: %v", err)
		}
	})
}

func TestRunTwiceAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		host, _ := net.Pipe()
		l := newToyLink(host)
		ctx, cancel := context.WithCancel(t.Context())
		var second error
		l.Run(ctx, Loop[string]{Cycle: func(context.Context) time.Duration {
			second = l.Run(ctx, Loop[string]{Cycle: func(context.Context) time.Duration { return time.Hour }})
			cancel()
			return time.Hour
		}})
		if !errors.Is(second, errRunning) {
			t.Fatalf("second Run: %v", second)
		}
	})
}

// When the port fails, Run ends with the port's error, skips Shutdown (nothing can be sent)
// and leaves no goroutine behind (the synctest bubble checks).
func TestPortFailureEndsRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		host, dev := net.Pipe()
		l := newToyLink(host)
		shutdown := false
		err := l.Run(t.Context(), Loop[string]{
			Cycle: func(ctx context.Context) time.Duration {
				dev.Close()
				_, err := l.Await(ctx, time.Second, func(string) (bool, error) { return true, nil })
				if err == nil || err != l.Fatal() {
					t.Errorf("Await: %v, Fatal %v", err, l.Fatal())
				}
				return time.Millisecond
			},
			Shutdown: func(context.Context) { shutdown = true },
		})
		if err == nil || shutdown {
			t.Fatalf("Run: %v, shutdown ran: %v", err, shutdown)
		}
	})
}

// Shutdown runs when ctx ends, before the port is closed, and may still write.
func TestShutdownWritesBeforeClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		host, dev := net.Pipe()
		l := newToyLink(host)
		ctx, cancel := context.WithCancel(t.Context())
		got := make(chan []byte, 1)
		go func() {
			buf := make([]byte, 8)
			n, _ := dev.Read(buf)
			got <- buf[:n]
			dev.Read(buf) // returns once Run closed the port
			dev.Close()
		}()
		err := l.Run(ctx, Loop[string]{
			Cycle: func(context.Context) time.Duration { cancel(); return time.Hour },
			Shutdown: func(context.Context) {
				if err := l.Write([]byte("bye")); err != nil {
					t.Error(err)
				}
			},
		})
		if err != nil || string(<-got) != "bye" {
			t.Fatalf("Run %v", err)
		}
	})
}

func TestQuietKeepsTheGap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		host, dev := net.Pipe()
		go func() {
			buf := make([]byte, 8)
			for {
				if _, err := dev.Read(buf); err != nil {
					return
				}
			}
		}()
		l := newToyLink(host)
		ctx, cancel := context.WithCancel(t.Context())
		var waited time.Duration
		l.Run(ctx, Loop[string]{Cycle: func(ctx context.Context) time.Duration {
			l.Write([]byte("a"))
			start := time.Now()
			l.Quiet(ctx, 20*time.Millisecond)
			waited = time.Since(start)
			cancel()
			return time.Hour
		}})
		if waited != 20*time.Millisecond {
			t.Fatalf("Quiet waited %v, want 20ms", waited)
		}
	})
}
