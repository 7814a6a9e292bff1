package daemon

import (
	"context"
	"crypto/ed25519"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kioskd/kioskd/hw-sim/scannersim"
	"github.com/kioskd/kioskd/hw-sim/walletsim"
	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/kiosk/session"
)

// countingHandler counts the log lines kioskd writes (and passes them on).
type countingHandler struct {
	slog.Handler
	n *atomic.Int64
}

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	h.n.Add(1)
	return h.Handler.Handle(ctx, r)
}

func (h countingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return countingHandler{h.Handler.WithAttrs(as), h.n}
}

func (h countingHandler) WithGroup(g string) slog.Handler {
	return countingHandler{h.Handler.WithGroup(g), h.n}
}

// Untrusted input costs nothing durable: 10,000 forged wallet codes and 1 MiB of random bytes
// on the serial scanner cost no journal write and a bounded number of log lines (counted, and
// summarised at most once a minute per kind), and a real customer is served in the middle of
// the flood.
func TestForgedCodeFloodAndScannerNoise(t *testing.T) {
	forged, noise := 10_000, 1<<20
	if testing.Short() {
		forged, noise = 1_000, 1<<17
	}
	k := newKit(t)
	var lines atomic.Int64
	k.options.Logger = slog.New(countingHandler{k.options.Logger.Handler(), &lines})
	k.cfg.Scanner.Port = k.scnDev.path
	// Room for the whole flood: the emulator writes it as fast as the pty takes it.
	k.scn = scannersim.New(scannersim.Config{QueueLen: forged + noise/4096 + 16})
	k.accDev.plug()
	k.prnDev.plug()
	k.scnDev.plug()
	r := k.start()
	e := r.s.Engine()
	j := r.s.j

	// One customer before the flood: what a top-up costs in writes and log lines.
	customer := func(account string, receipts int) {
		t.Helper()
		// A code is read in idle and while the last result is shown (done).
		waitView(t, e, "idle", func(v session.View) bool {
			return v.State == session.Idle.String() || v.State == session.Done.String()
		})
		if err := k.scn.Scan(k.payload(account)); err != nil {
			t.Fatal(err)
		}
		waitView(t, e, "accepting", func(v session.View) bool { return v.State == session.Accepting.String() })
		insertWhenEnabled(t, k.acc, 0x63)
		waitView(t, e, "note credited", func(v session.View) bool { return v.TotalMinor == 1000 })
		if err := e.Finish(); err != nil {
			t.Fatalf("finish: %v", err)
		}
		waitFor(t, "the receipt", func() bool { return len(k.prn.Documents()) >= receipts })
	}
	// The journal's events from seq on, by type: what a failure here says was written.
	written := func(from uint64) map[string]int {
		m := map[string]int{}
		_ = j.Events(from, func(r journal.Record) bool { m[r.Type]++; return true })
		return m
	}
	seq := func() uint64 {
		st, err := j.Stats()
		if err != nil {
			t.Fatal(err)
		}
		return st.Events + 1
	}
	customer("first", 1)
	io0, lines0, seq0 := j.IOStats(), lines.Load(), seq()
	customer("second", 2)
	perCustomer, linesPerCustomer := j.IOStats().Commits-io0.Commits, lines.Load()-lines0
	oneCustomer := written(seq0)
	if perCustomer == 0 {
		t.Fatal("a top-up cost no journal commit: the counter does not count")
	}

	// The flood: half the forged codes and noise, a real customer, the rest (while that
	// customer's session is open), and a second real customer whose receipt marks the end.
	_, wrong, _ := ed25519.GenerateKey(nil)
	forge := func(n int) {
		for range n {
			if err := k.scn.Scan(walletsim.Sign(wrong, "w1", "mallory", time.Now().Add(time.Minute), walletsim.NewNonce())); err != nil {
				t.Fatal(err)
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	spray := func(n int) {
		chunk := make([]byte, 4096)
		for range n / len(chunk) {
			for i := range chunk {
				chunk[i] = byte(rng.Uint32())
			}
			if err := k.scn.ScanRaw(chunk); err != nil {
				t.Fatal(err)
			}
		}
		if err := k.scn.ScanRaw([]byte("\r\n")); err != nil { // end the last noisy line
			t.Fatal(err)
		}
	}
	io1, lines1, seq1 := j.IOStats(), lines.Load(), seq()
	forge(forged / 2)
	spray(noise / 2)
	customer("during_flood", 3)
	forge(forged / 2)
	spray(noise / 2)
	customer("after_flood", 4)
	io2, lines2 := j.IOStats(), lines.Load()

	commits, logged := io2.Commits-io1.Commits, lines2-lines1
	t.Logf("flood: %d forged codes, %d bytes of noise, 2 customers: %d journal commits (%d per customer), %d page writes, %d log lines (%d per customer)",
		forged, noise, commits, perCustomer, io2.PageWrites-io1.PageWrites, logged, linesPerCustomer)
	// The customers' writes and a small constant: a loaded machine may see a device
	// condition raised and cleared meanwhile (an alarm each), never a write per code or line.
	if commits > 2*perCustomer+4 {
		t.Errorf("the flood cost %d journal commits, 2 customers cost %d; events written %v, one customer's %v",
			commits, 2*perCustomer, written(seq1), oneCustomer)
	}
	// A summary line per kind and minute, whatever the volume.
	if limit := 2*linesPerCustomer + 20; logged > limit {
		t.Errorf("the flood wrote %d log lines, limit %d", logged, limit)
	}
	c := r.s.Health().Counters()
	if c["qr_refused"]+c["scan_ignored"] < uint64(forged) {
		t.Errorf("counters %v do not account for %d forged codes", c, forged)
	}
	if c["scanner_line_refused"] == 0 {
		t.Errorf("counters %v: no noisy line counted", c)
	}
	if st, err := j.Stats(); err != nil || st.LastTopupSeq != 4 {
		t.Fatalf("top-ups %+v, %v", st, err)
	}
}

// waitFor polls cond until it holds (the emulators have no notification for it).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(testWait)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}
