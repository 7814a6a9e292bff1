package journal

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/kioskd/kioskd/sync/wire"
	bolt "go.etcd.io/bbolt"
)

// simSession is one settled session as the kiosk writes it: open, 1 to 5 notes, close,
// receipt printed, top-up acknowledged.
func simSession(t *testing.T, j *Journal, n int) {
	t.Helper()
	s, err := j.OpenSession(OpenSessionParams{Account: fmt.Sprintf("acct_%d", n%500), LimitMinor: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	for k := range 1 + n%5 {
		in, err := j.StackIntent(s.ID, Note{Code: 0x61 + k, ValueMinor: int64(100 << k)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := j.CreditNote(in.ID, Note{}, ""); err != nil {
			t.Fatal(err)
		}
		if err := j.NoteCompleted(); err != nil {
			t.Fatal(err)
		}
	}
	res, err := j.CloseSession(CloseParams{SessionID: s.ID, Outcome: wire.OutcomeComplete})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.MarkPrint(res.Topup.Seq, PrintStarted, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := j.MarkPrint(res.Topup.Seq, PrintDone, ""); err != nil {
		t.Fatal(err)
	}
	w, err := res.Topup.Wire()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.ApplyAck(wire.Ack{V: 1, TopupID: w.TopupID, Status: wire.AckCredited, AmountMinor: w.AmountMinor, Currency: "CNY"}); err != nil {
		t.Fatal(err)
	}
}

// fileShape is the high-water size of a bbolt file and the leaf pages of the views.
type fileShape struct {
	size                       int64
	sessions, topups, receipts int
}

func shapeOf(t *testing.T, db *bolt.DB) fileShape {
	t.Helper()
	var s fileShape
	if err := db.View(func(tx *bolt.Tx) error {
		s.size = tx.Size()
		s.sessions = tx.Bucket(bSessions).Stats().LeafPageN
		s.topups = tx.Bucket(bTopups).Stats().LeafPageN
		s.receipts = tx.Bucket(bReceipts).Stats().LeafPageN
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return s
}

// compactedShape copies db as the compaction at Open does and returns the copy's shape.
func compactedShape(t *testing.T, db *bolt.DB) fileShape {
	t.Helper()
	out, err := bolt.Open(filepath.Join(t.TempDir(), "compacted.db"), 0o600, &bolt.Options{NoSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if err := bolt.Compact(out, db, 16<<20); err != nil {
		t.Fatal(err)
	}
	return shapeOf(t, out)
}

// TestHotFileStaysNearItsCompactedSize runs weeks of traffic with a weekly archive, without
// reopening, and checks after each archive run past the first that the running file stays
// within twice what a compaction would leave, and that the views are packed as tightly as
// the compaction packs them (they were half-empty pages: their keys only grow).
func TestHotFileStaysNearItsCompactedSize(t *testing.T) {
	const (
		days   = 42
		perDay = 20
		keep   = 14 * 24 * time.Hour
	)
	path := filepath.Join(t.TempDir(), "j.db")
	clk := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	j, err := Open(path, Options{KioskID: "K1", Currency: "CNY", NoSync: true, Now: func() time.Time { return clk }})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	n := 0
	for d := range days {
		day := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC).Add(time.Duration(d) * 24 * time.Hour)
		for i := range perDay {
			clk = day.Add(time.Duration(i) * 12 * time.Hour / perDay)
			simSession(t, j, n)
			n++
		}
		if d%7 != 6 {
			continue
		}
		rep, err := j.Archive(context.Background(), ArchiveOptions{OlderThan: keep})
		if err != nil {
			t.Fatal(err)
		}
		if d < 21 {
			continue
		}
		if rep.Events == 0 {
			t.Fatalf("day %d: nothing archived", d)
		}
		run, packed := shapeOf(t, j.db), compactedShape(t, j.db)
		t.Logf("day %d: running %d bytes, compacted %d; leaf pages sessions %d/%d topups %d/%d receipts %d/%d",
			d, run.size, packed.size, run.sessions, packed.sessions, run.topups, packed.topups, run.receipts, packed.receipts)
		if run.size > 2*packed.size {
			t.Errorf("day %d: running hot file %d bytes, more than twice its compacted size %d", d, run.size, packed.size)
		}
		for _, v := range []struct {
			name      string
			run, pack int
		}{{"sessions", run.sessions, packed.sessions}, {"topups", run.topups, packed.topups}, {"receipts", run.receipts, packed.receipts}} {
			// The views take at most three quarters more pages than the compaction leaves,
			// plus one page (a top-up grows after it is written, printed and acknowledged, and
			// the page it overflows keeps what fitted); at bbolt's default half-full split they
			// took twice as many pages.
			if 4*v.run > 7*v.pack+4 {
				t.Errorf("day %d: the %s view takes %d leaf pages, %d once compacted", d, v.name, v.run, v.pack)
			}
		}
	}
}
