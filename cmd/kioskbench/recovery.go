package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/sync/wire"
)

// buildJournal writes a realistic journal of at least events events: sessions of one to five
// notes (intent, credit, stacked each), closed, printed and acked. It is built without fsync
// (the content is what a kiosk would have after a few years, not how fast it got there).
func buildJournal(path string, events uint64) error {
	j, err := journal.Open(path, journal.Options{KioskID: "BENCH", Currency: "CNY", NoSync: true, SkipVerify: true})
	if err != nil {
		return err
	}
	defer func() { _ = j.Close() }()
	for n := 0; ; n++ {
		st, err := j.Stats()
		if err != nil {
			return err
		}
		if st.Events >= events {
			return nil
		}
		if err := oneSession(j, n); err != nil {
			return err
		}
	}
}

// oneSession writes the n-th session of a bench journal: one to five notes (intent, credit,
// stacked each), closed, printed and acknowledged.
func oneSession(j *journal.Journal, n int) error {
	s, err := j.OpenSession(journal.OpenSessionParams{Account: fmt.Sprintf("acct_%d", n%5000), LimitMinor: 1 << 40})
	if err != nil {
		return err
	}
	for k := range 1 + n%5 {
		in, err := j.StackIntent(s.ID, journal.Note{Code: 0x61 + k, ValueMinor: int64(100 << k)})
		if err != nil {
			return err
		}
		if _, err := j.CreditNote(in.ID, journal.Note{}, ""); err != nil {
			return err
		}
		if err := j.NoteCompleted(); err != nil {
			return err
		}
	}
	res, err := j.CloseSession(journal.CloseParams{SessionID: s.ID, Outcome: wire.OutcomeComplete})
	if err != nil {
		return err
	}
	_, _ = j.MarkPrint(res.Topup.Seq, journal.PrintStarted, "")
	_, _ = j.MarkPrint(res.Topup.Seq, journal.PrintDone, "")
	w, _ := res.Topup.Wire()
	_, err = j.ApplyAck(wire.Ack{V: 1, TopupID: w.TopupID, Status: wire.AckCredited, AmountMinor: w.AmountMinor, Currency: "CNY"})
	return err
}

// recovery measures what start-up cost before checkpoints: open the journal and run the full
// check (hash chain from the first event, every view rebuilt and compared).
func recovery(b *testing.B, path string) {
	st, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	var events uint64
	b.ResetTimer()
	for b.Loop() {
		j, err := journal.Open(path, journal.Options{SkipVerify: true})
		if err != nil {
			b.Fatal(err)
		}
		rep, err := j.Verify()
		if err != nil {
			b.Fatal(err)
		}
		events = rep.Events
		_ = j.Close()
	}
	b.ReportMetric(float64(st.Size())/(1<<20), "MiB")
	b.ReportMetric(float64(events), "events")
}

// startup measures what kioskd's start-up costs with a checkpoint: the check in the child
// (bbolt's check of the buckets that do not grow with history, then the chain and views from
// the checkpoint) and Open (the same check from the checkpoint). The caller has opened the
// journal once, which stored the checkpoint.
func startup(b *testing.B, path string) {
	for b.Loop() {
		if _, err := journal.CheckFile(path); err != nil {
			b.Fatal(err)
		}
		j, err := journal.Open(path, journal.Options{})
		if err != nil {
			b.Fatal(err)
		}
		_ = j.Close()
	}
}

// prepareCheckpoint opens the journal once for writing, which leaves a checkpoint at its
// head (a full check the first time), and returns how long that took.
func prepareCheckpoint(path string) (time.Duration, error) {
	t0 := time.Now()
	j, err := journal.Open(path, journal.Options{})
	if err != nil {
		return 0, err
	}
	d := time.Since(t0)
	return d, j.Close()
}

// backgroundVerify times one VerifyFull (the daemon's background check).
func backgroundVerify(path string) (time.Duration, error) {
	j, err := journal.Open(path, journal.Options{})
	if err != nil {
		return 0, err
	}
	defer func() { _ = j.Close() }()
	t0 := time.Now()
	_, err = j.VerifyFull(context.Background())
	return time.Since(t0), err
}

// yearResult is the footprint after simulated traffic.
type yearResult struct {
	Events, HotEvents                      uint64
	HotBytes, HotBytesCompacted, ArchBytes int64
	Segments                               int
	Built                                  time.Duration
}

// simulateYear writes days of perDay sessions (as buildJournal's), with a clock that moves
// through the day, and once a week stores a checkpoint and archives history older than
// keep; at the end it reopens the journal (which compacts it when mostly free) and reports
// the sizes.
func simulateYear(dir string, days, perDay int, keep time.Duration) (yearResult, error) {
	var res yearResult
	t0 := time.Now()
	path := filepath.Join(dir, fmt.Sprintf("year-%d-%d.db", days, perDay))
	os.Remove(path)
	clk := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	now := func() time.Time { return clk }
	j, err := journal.Open(path, journal.Options{KioskID: "BENCH", Currency: "CNY", NoSync: true, Now: now})
	if err != nil {
		return res, err
	}
	n := 0
	for d := range days {
		day := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC).Add(time.Duration(d) * 24 * time.Hour)
		for i := range perDay {
			clk = day.Add(time.Duration(i) * 12 * time.Hour / time.Duration(perDay))
			if err := oneSession(j, n); err != nil {
				_ = j.Close()
				return res, err
			}
			n++
		}
		if d%7 == 6 {
			if _, err := j.Checkpoint(); err != nil {
				_ = j.Close()
				return res, err
			}
			if _, err := j.Archive(context.Background(), journal.ArchiveOptions{OlderThan: keep}); err != nil {
				_ = j.Close()
				return res, err
			}
		}
	}
	st, err := j.Stats()
	if err != nil {
		_ = j.Close()
		return res, err
	}
	res.Events = st.Events
	res.HotBytes = j.Size()
	segs, err := j.Segments()
	if err != nil {
		_ = j.Close()
		return res, err
	}
	res.Segments = len(segs)
	var archived uint64
	for _, s := range segs {
		res.ArchBytes += s.Bytes
		archived += s.Last - s.First + 1
	}
	res.HotEvents = res.Events - archived
	_ = j.Close()
	// Compact whatever the free share, so the figure is the live data's size to compare
	// the running file with.
	j, err = journal.Open(path, journal.Options{Now: now, CompactFreeFraction: 1e-9})
	if err != nil {
		return res, err
	}
	res.HotBytesCompacted = j.Size()
	res.Built = time.Since(t0)
	return res, j.Close()
}

// bigJournal returns a journal of at least events events under dir, building it once.
func bigJournal(dir string, events uint64) (string, error) {
	path := filepath.Join(dir, fmt.Sprintf("journal-%d.db", events))
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	tmp := path + ".building"
	os.Remove(tmp)
	if err := buildJournal(tmp, events); err != nil {
		return "", err
	}
	return path, os.Rename(tmp, path)
}
