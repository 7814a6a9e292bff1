package sim

import (
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"weak"
)

// A campaign (make sim SIM_DURATION=2h) runs tens of thousands of seeds in one process, so
// a run must leave nothing behind: no object of it reachable, no goroutine, no open file and
// no memory map of its journal. Each run once stayed reachable whole (its engine was kept
// in the process-wide crash-hook registry, and through the hook its host and run), ~100 KB
// of live heap a run, and with the campaign's GOGC a 40-minute campaign went past 20 GB.

// memSeeds is where TestSimMemory's seeds start: the range CI's simulation step runs, which
// passed (the money checks are not this test's concern; a violation is only logged).
const memSeeds = 88255457

// TestSimMemory runs several seeds, one per acceptor configuration in turn, and checks
// that after them (and a garbage collection) none of their runs, hosts, engines, journals or
// uplinks is still reachable, that no goroutine, open file or journal memory map is left,
// and that the live heap has not grown beyond a small bound. Nothing here depends on
// timing: reachability is what the collector finds, the rest is counted.
func TestSimMemory(t *testing.T) {
	runs := 10
	if testing.Short() {
		runs = 5
	}
	protos := protoList(*flagProtos)
	if len(protos) == 0 {
		t.Skip("no acceptor configuration to run (-sim.protocols is empty)")
	}
	// A first run of each configuration fills the process's one-time state (package caches,
	// the live trace file, the runtime's own goroutines) before the baseline.
	for i, p := range protos {
		runSeedSteps(t, 0, memSeeds+uint64(i), 20, p)
	}
	before := sample(t)

	var (
		mu      sync.Mutex
		tracked []tracker
	)
	watchHost = func(h *host) {
		mu.Lock()
		defer mu.Unlock()
		tracked = append(tracked,
			track("run", h.r), track("host", h), track("engine", h.e), track("journal", h.j), track("uplink", h.up))
	}
	defer func() { watchHost = nil }()
	failed := 0
	for i := range runs {
		res := runSeed(t, 0, memSeeds+uint64(len(protos)+i), protos[i%len(protos)])
		if len(res.violations) > 0 {
			failed++
			t.Logf("seed %d: violations (not this test's concern): %v", res.seed, res.violations)
		}
	}
	watchHost = nil
	after := sample(t)
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d runs (%d hosts, %d failing): before %s; after %s", runs, len(tracked)/5, failed, before, after)
	if len(tracked) == 0 {
		t.Fatal("no host was started")
	}
	alive := map[string]int{}
	for _, tr := range tracked {
		if tr.alive() {
			alive[tr.kind]++
		}
	}
	if len(alive) > 0 {
		t.Errorf("still reachable after their runs ended (of %d hosts): %v", len(tracked)/5, alive)
	}
	if after.goroutines > before.goroutines {
		t.Errorf("goroutines: %d before the runs, %d after", before.goroutines, after.goroutines)
	}
	if after.fds > before.fds {
		t.Errorf("open files: %d before the runs, %d after", before.fds, after.fds)
	}
	if after.journalMaps > 0 {
		t.Errorf("%d memory maps of a journal file left after the runs", after.journalMaps)
	}
	// The leak above was ~100 KB a run; what stays between runs otherwise is the same few
	// hundred KB of caches whichever seed ran last.
	if grow := int64(after.heap) - int64(before.heap); grow > int64(runs)*16<<10+256<<10 {
		t.Errorf("live heap grew by %d KB in %d runs (%d KB to %d KB)", grow>>10, runs, before.heap>>10, after.heap>>10)
	}
}

// tracker tells whether one object of a run is still reachable.
type tracker struct {
	kind  string
	alive func() bool
}

func track[T any](kind string, p *T) tracker {
	w := weak.Make(p)
	return tracker{kind, func() bool { return w.Value() != nil }}
}

// memSample is what a run could leave behind, counted after a garbage collection.
type memSample struct {
	heap        uint64 // live heap, bytes
	goroutines  int
	fds         int // open file descriptors (-1 where /proc is absent)
	journalMaps int // memory maps of a journal file
}

func (m memSample) String() string {
	return fmt.Sprintf("live heap %d KB, %d goroutines, %d open files, %d journal maps", m.heap>>10, m.goroutines, m.fds, m.journalMaps)
}

func sample(t *testing.T) memSample {
	t.Helper()
	// Two collections: objects with a cleanup (an os.File) are freed in the cycle after the
	// one that found them unreachable, and sync.Pool keeps a victim cache for one cycle.
	runtime.GC()
	runtime.GC()
	m := memSample{heap: liveHeap(), goroutines: runtime.NumGoroutine(), fds: -1}
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		m.fds = len(ents)
	}
	if b, err := os.ReadFile("/proc/self/maps"); err == nil {
		m.journalMaps = strings.Count(string(b), "journal.db")
	}
	return m
}

// liveHeap is the heap the last garbage collection found live (cheap: no stop of the world).
func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// procStatus reads one "kB" field of /proc/self/status (VmRSS, VmHWM), in bytes; 0 where
// /proc is absent.
func procStatus(field string) uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}

// memWatch samples a campaign's live heap (as of the last collection: reading it costs
// nothing) and resident set every interval of real time, for the summary: a long campaign
// shows whether its memory stayed flat.
type memWatch struct {
	mu                    sync.Mutex
	first, peak, firstRSS uint64
	stop                  chan struct{}
	done                  chan struct{}
}

func watchMemory(interval time.Duration) *memWatch {
	w := &memWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tk := time.NewTicker(interval)
		defer tk.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-tk.C:
				h, rss := liveHeap(), procStatus("VmRSS")
				w.mu.Lock()
				if w.first == 0 {
					w.first, w.firstRSS = h, rss
				}
				w.peak = max(w.peak, h)
				w.mu.Unlock()
			}
		}
	}()
	return w
}

// end stops the sampling and describes the campaign's memory.
func (w *memWatch) end() string {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	runtime.GC() // the heap the runs left, not the last collection's during a run
	end := liveHeap()
	mb := func(b uint64) string { return fmt.Sprintf("%.1f MB", float64(b)/(1<<20)) }
	s := "memory: live heap " + mb(end) + " at the end"
	if w.first > 0 {
		s += fmt.Sprintf(" (%s at the first sample, at most %s)", mb(w.first), mb(max(w.peak, end)))
	}
	if rss := procStatus("VmRSS"); rss > 0 {
		s += "; RSS " + mb(rss) + " at the end"
		if w.firstRSS > 0 {
			s += " (" + mb(w.firstRSS) + " at the first sample)"
		}
		s += ", peak " + mb(procStatus("VmHWM"))
	}
	return s
}
