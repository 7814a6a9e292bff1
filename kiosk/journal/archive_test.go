package journal

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kioskd/kioskd/sync/wire"
)

// stepClock is a clock the test moves by hand.
type stepClock struct{ t time.Time }

func (c *stepClock) Now() time.Time { return c.t }

func TestArchiveMovesSettledHistory(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "j.db")
	clk := &stepClock{t: time.Date(2026, 1, 10, 9, 0, 0, 0, time.UTC)}
	open := func() *Journal {
		j, err := Open(path, Options{KioskID: "K1", Currency: "CNY", Now: clk.Now, CheckpointEvery: 1})
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	j := open()
	// 40 days of one settled session a day, then one whose top-up is not acknowledged and one
	// not printed, both 40 days old too.
	for range 40 {
		settledSession(t, j, 1000)
		clk.t = clk.t.Add(24 * time.Hour)
	}
	s := mustSession(t, j, 50000)
	credit(t, j, s.ID, 700)
	unacked, err := j.CloseSession(CloseParams{SessionID: s.ID, Outcome: wire.OutcomeComplete})
	if err != nil {
		t.Fatal(err)
	}
	j.MarkPrint(unacked.Topup.Seq, PrintStarted, "")
	j.MarkPrint(unacked.Topup.Seq, PrintDone, "")
	for range 5 {
		settledSession(t, j, 1000)
	}
	clk.t = clk.t.Add(40 * 24 * time.Hour)
	if _, err := j.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	var before bytes.Buffer
	if err := j.ExportJSONL(&before); err != nil {
		t.Fatal(err)
	}
	stBefore, _ := j.Stats()

	rep, err := j.Archive(context.Background(), ArchiveOptions{OlderThan: 30 * 24 * time.Hour, MaxEvents: 100})
	if err != nil || rep.Events == 0 || len(rep.Segments) < 2 {
		t.Fatalf("archive %+v %v", rep, err)
	}
	// Nothing of the unacknowledged top-up's session moved: its opening event is still hot.
	last := rep.Segments[len(rep.Segments)-1].Last
	if last >= unacked.Session.ID {
		t.Fatalf("archived through %d, the unacknowledged session opened at %d", last, unacked.Session.ID)
	}
	if _, ok, _ := j.Topup(unacked.Topup.Seq); !ok {
		t.Fatal("the outbox top-up's view was archived")
	}
	if ob, _ := j.Outbox(); len(ob) != 1 {
		t.Fatalf("outbox %+v", ob)
	}
	if _, ok, _ := j.Session(1 + 1); ok {
		t.Fatal("the first session's view is still hot")
	}
	for _, sg := range rep.Segments {
		if _, err := os.Stat(filepath.Join(dir, sg.Name)); err != nil {
			t.Fatal(err)
		}
	}
	// The chain verifies across the segments; export has every event once, in order.
	full, err := j.Verify()
	if err != nil || full.Archived != rep.Events || full.Events != stBefore.Events {
		t.Fatalf("verify across segments %+v %v", full, err)
	}
	var all bytes.Buffer
	if err := j.ExportAll(&all); err != nil {
		t.Fatal(err)
	}
	if all.String() != before.String() {
		t.Fatal("export across segments differs from the export before archiving")
	}
	// Seqs go on; nothing repeats.
	res := settledSession(t, j, 3000)
	if res.Session.ID <= stBefore.Events || res.Topup.Seq != stBefore.LastTopupSeq+1 {
		t.Fatalf("after archiving: session %d topup %d", res.Session.ID, res.Topup.Seq)
	}
	j.Close()

	// Start-up and the full checks work on the archived journal.
	if _, err := CheckFile(path); err != nil {
		t.Fatal(err)
	}
	if _, err := CheckFileFull(path); err != nil {
		t.Fatal(err)
	}
	j = open()
	if _, err := j.VerifyFull(context.Background()); err != nil {
		t.Fatal(err)
	}
	if j.Currency() != "CNY" {
		t.Fatalf("currency %q", j.Currency())
	}
	j.Close()

	// A segment edited on disk is caught by the full check.
	seg := filepath.Join(dir, rep.Segments[0].Name)
	raw, _ := os.ReadFile(seg)
	raw[len(raw)/2] ^= 1
	os.WriteFile(seg, raw, 0o600)
	if _, err := CheckFileFull(path); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "segment") {
		t.Fatalf("edited segment: %v", err)
	}
	// A missing one too.
	os.Remove(seg)
	if _, err := CheckFileFull(path); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("missing segment: %v", err)
	}
}

// Nothing moves past the open session, an open intent, an unprinted receipt or an unsettled
// uncertain item, however old; nothing moves when no time is trusted.
func TestArchiveKeepsWhatIsNeeded(t *testing.T) {
	for name, tc := range map[string]func(t *testing.T, j *Journal) uint64{
		"open session": func(t *testing.T, j *Journal) uint64 {
			return mustSession(t, j, 50000).ID
		},
		"unprinted receipt": func(t *testing.T, j *Journal) uint64 {
			s := mustSession(t, j, 50000)
			credit(t, j, s.ID, 500)
			res, _ := j.CloseSession(CloseParams{SessionID: s.ID, Outcome: wire.OutcomeComplete})
			w, _ := res.Topup.Wire()
			j.ApplyAck(wire.Ack{V: 1, TopupID: w.TopupID, Status: wire.AckCredited, AmountMinor: w.AmountMinor, Currency: "CNY"})
			return s.ID
		},
		"uncertain item": func(t *testing.T, j *Journal) uint64 {
			s := mustSession(t, j, 50000)
			if _, err := j.StackIntent(s.ID, Note{Code: 1, ValueMinor: 500}); err != nil {
				t.Fatal(err)
			}
			// Closing turns the open intent into an uncertain item of the session.
			res, err := j.CloseSession(CloseParams{SessionID: s.ID, Outcome: wire.OutcomeComplete})
			if err != nil {
				t.Fatal(err)
			}
			if res.Topup != nil {
				j.MarkPrint(res.Topup.Seq, PrintStarted, "")
				j.MarkPrint(res.Topup.Seq, PrintDone, "")
				w, _ := res.Topup.Wire()
				j.ApplyAck(wire.Ack{V: 1, TopupID: w.TopupID, Status: wire.AckCredited, AmountMinor: w.AmountMinor, Currency: "CNY"})
			}
			return s.ID
		},
	} {
		t.Run(name, func(t *testing.T) {
			clk := &stepClock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
			j, err := Open(filepath.Join(t.TempDir(), "j.db"), Options{KioskID: "K1", Currency: "CNY", Now: clk.Now})
			if err != nil {
				t.Fatal(err)
			}
			defer j.Close()
			settledSession(t, j, 1000)
			keep := tc(t, j)
			clk.t = clk.t.Add(365 * 24 * time.Hour)
			if _, err := j.Checkpoint(); err != nil {
				t.Fatal(err)
			}
			rep, err := j.Archive(context.Background(), ArchiveOptions{OlderThan: 24 * time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			for _, sg := range rep.Segments {
				if sg.Last >= keep {
					t.Fatalf("archived through %d, needed from %d", sg.Last, keep)
				}
			}
			if _, err := j.Verify(); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("untrusted time", func(t *testing.T) {
		clk := &stepClock{t: time.Unix(1000, 0)}
		j, err := Open(filepath.Join(t.TempDir(), "j.db"), Options{KioskID: "K1", Currency: "CNY", Now: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		defer j.Close()
		settledSession(t, j, 1000)
		clk.t = clk.t.Add(400 * 24 * time.Hour) // still 1971
		j.Checkpoint()
		if rep, err := j.Archive(context.Background(), ArchiveOptions{OlderThan: time.Hour}); err != nil || rep.Events != 0 {
			t.Fatalf("archived on a 1971 clock: %+v %v", rep, err)
		}
	})
}

// Archiving frees most of the file; the next Open rewrites it small, and it still verifies.
func TestCompactAfterArchive(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "j.db")
	clk := &stepClock{t: time.Date(2026, 1, 10, 9, 0, 0, 0, time.UTC)}
	j, err := Open(path, Options{KioskID: "K1", Currency: "CNY", Now: clk.Now, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	// Payload-heavy sessions to pass the minimum size quickly.
	for i := range 1500 {
		s, err := j.OpenSession(OpenSessionParams{Account: "acct", LimitMinor: 1 << 40, QR: strings.Repeat("q", 2000)})
		if err != nil {
			t.Fatal(err)
		}
		credit(t, j, s.ID, 100)
		res, _ := j.CloseSession(CloseParams{SessionID: s.ID, Outcome: wire.OutcomeComplete})
		j.MarkPrint(res.Topup.Seq, PrintStarted, "")
		j.MarkPrint(res.Topup.Seq, PrintDone, "")
		w, _ := res.Topup.Wire()
		j.ApplyAck(wire.Ack{V: 1, TopupID: w.TopupID, Status: wire.AckCredited, AmountMinor: w.AmountMinor, Currency: "CNY"})
		if i%50 == 0 {
			clk.t = clk.t.Add(24 * time.Hour)
		}
	}
	clk.t = clk.t.Add(60 * 24 * time.Hour)
	j.Checkpoint()
	if _, err := j.Archive(context.Background(), ArchiveOptions{OlderThan: 30 * 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	before := j.Size()
	st, _ := j.Stats()
	j.Close()
	j, err = Open(path, Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	after := j.Size()
	if after*2 > before {
		t.Fatalf("file %d bytes before compaction, %d after", before, after)
	}
	if st2, _ := j.Stats(); st2.Events != st.Events || st2.Head != st.Head || st2.LastTopupSeq != st.LastTopupSeq {
		t.Fatalf("compaction changed the journal: %+v -> %+v", st, st2)
	}
	if _, err := j.Verify(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + ".compact"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("compaction left its copy: %v", err)
	}
	// Sequences survive compaction: the next session goes on from the counter.
	res := settledSession(t, j, 5)
	if res.Topup.Seq != st.LastTopupSeq+1 || res.Session.ID <= st.Events {
		t.Fatalf("after compaction: %+v", res)
	}
	if segs, _ := j.Segments(); len(segs) == 0 {
		t.Fatal("no segments listed")
	}
}
