package journal

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kioskd/kioskd/sync/wire"
	bolt "go.etcd.io/bbolt"
)

// settledSession runs one whole session: credited, closed, printed and acknowledged.
func settledSession(t *testing.T, j *Journal, v int64) CloseResult {
	t.Helper()
	s := mustSession(t, j, 1<<40)
	credit(t, j, s.ID, v)
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
	w, _ := res.Topup.Wire()
	if _, err := j.ApplyAck(wire.Ack{V: 1, TopupID: w.TopupID, Status: wire.AckCredited, AmountMinor: w.AmountMinor, Currency: "CNY"}); err != nil {
		t.Fatal(err)
	}
	return res
}

func openAt(t *testing.T, path string, clk *fakeClock, every int) *Journal {
	t.Helper()
	j, err := Open(path, Options{KioskID: "K1", Currency: "CNY", Now: clk.Now, CheckpointEvery: every})
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func editDB(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

// A new journal has a checkpoint from its first commit; Open advances it once the tail
// passes CheckpointEvery, and the start-up check then starts there.
func TestCheckpointAdvancesAtOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.db")
	clk := &fakeClock{t: time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)}
	j := openAt(t, path, clk, 10)
	cp, ok, err := j.LastCheckpoint()
	if err != nil || !ok || cp.Seq != 1 || cp.FullSeq != 1 {
		t.Fatalf("new journal checkpoint %+v %v %v", cp, ok, err)
	}
	for range 3 {
		settledSession(t, j, 1000)
	}
	st, _ := j.Stats()
	j.Close()

	j = openAt(t, path, clk, 10)
	cp, _, _ = j.LastCheckpoint()
	if cp.Seq != st.Events || cp.Head != st.Head || cp.FullSeq != 1 {
		t.Fatalf("checkpoint after open %+v, journal at %d %s", cp, st.Events, st.Head)
	}
	rep, err := j.VerifyStartup()
	if err != nil || rep.From != st.Events || rep.Events != st.Events || rep.Topups != 3 || rep.Sessions != 3 {
		t.Fatalf("start-up check %+v %v", rep, err)
	}
	// An open session and an open intent are carried in the checkpoint's state.
	s := mustSession(t, j, 50000)
	credit(t, j, s.ID, 500)
	if _, err := j.StackIntent(s.ID, Note{Code: 1, ValueMinor: 200}); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	j.Close()
	j = openAt(t, path, clk, 10)
	defer j.Close()
	in, _ := j.OpenIntents()
	if len(in) != 1 {
		t.Fatalf("intents %+v", in)
	}
	if _, err := j.CreditNote(in[0].ID, Note{}, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := j.CloseSession(CloseParams{SessionID: s.ID, Outcome: wire.OutcomeComplete}); err != nil {
		t.Fatal(err)
	}
	if _, err := j.VerifyStartup(); err != nil {
		t.Fatal(err)
	}
	full, err := j.VerifyFull(context.Background())
	if err != nil || full.From != 0 || full.Topups != 4 {
		t.Fatalf("full %+v %v", full, err)
	}
	cp, _, _ = j.LastCheckpoint()
	if cp.FullSeq != full.Events || cp.Seq != full.Events {
		t.Fatalf("VerifyFull left checkpoint %+v, verified %d", cp, full.Events)
	}
}

// An edit after the checkpoint fails Open; an edit of history before it passes the start-up
// check (that is the point of the checkpoint) and is caught by the full verification, and so
// is a forged checkpoint whose state was edited together with the views.
func TestCheckpointTamperBeforeAndAfter(t *testing.T) {
	build := func(t *testing.T) (string, *fakeClock) {
		path := filepath.Join(t.TempDir(), "j.db")
		clk := &fakeClock{t: time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)}
		j := openAt(t, path, clk, 5)
		settledSession(t, j, 10000)
		settledSession(t, j, 20000)
		j.Close()
		j = openAt(t, path, clk, 5) // checkpoint at the head
		settledSession(t, j, 30000) // the tail
		j.Close()
		return path, clk
	}
	t.Run("before the checkpoint", func(t *testing.T) {
		path, clk := build(t)
		editDB(t, path, func(tx *bolt.Tx) error {
			return editEvent(tx, EvNoteCredited, func(r *Record) {
				r.Data = []byte(string(r.Data[:len(r.Data)-1]) + `,"x":1}`)
			})
		})
		// Start-up does not read history before the checkpoint...
		if _, err := CheckFile(path); err != nil {
			t.Fatalf("start-up check: %v", err)
		}
		j := openAt(t, path, clk, 1000)
		// ...the background verification does.
		if _, err := j.VerifyFull(context.Background()); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("full verification passed an edited history: %v", err)
		}
		j.Close()
		if _, err := CheckFileFull(path); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("full file check passed an edited history: %v", err)
		}
	})
	t.Run("after the checkpoint", func(t *testing.T) {
		path, clk := build(t)
		editDB(t, path, func(tx *bolt.Tx) error {
			c := tx.Bucket(bEvents).Cursor()
			k, v := c.Last()
			r, _ := decodeRecord(btoi(k), v)
			return tx.Bucket(bEvents).Put(k, encodeRecord(r.Type, r.At, r.hash, append([]byte(nil), `{"x":1}`...)))
		})
		if _, err := Open(path, Options{Now: clk.Now}); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("edited tail opened: %v", err)
		}
	})
	t.Run("forged checkpoint", func(t *testing.T) {
		path, clk := build(t)
		// Add 100 to the cassette both in the view and in the checkpoint's state, with a
		// fresh digest: consistent with each other, not with the events.
		editDB(t, path, func(tx *bolt.Tx) error {
			m := tx.Bucket(bMeta)
			var cp Checkpoint
			var st replayState
			json.Unmarshal(m.Get(kCheckpoint), &cp)
			json.Unmarshal(m.Get(kCheckpointState), &st)
			st.Cassette.Count++
			st.Cassette.ValueMinor += 100
			st.Cassette.ByValue[100]++
			raw, _ := json.Marshal(st)
			sum := sha256.Sum256(raw)
			cp.ViewsDigest = hex.EncodeToString(sum[:])
			craw, _ := json.Marshal(cp)
			m.Put(kCheckpointState, raw)
			m.Put(kCheckpoint, craw)
			var c Cassette
			json.Unmarshal(tx.Bucket(bCassette).Get(kCassette), &c)
			c.Count++
			c.ValueMinor += 100
			c.ByValue[100]++
			v, _ := json.Marshal(c)
			return tx.Bucket(bCassette).Put(kCassette, v)
		})
		j := openAt(t, path, clk, 1000)
		defer j.Close()
		_, err := j.VerifyFull(context.Background())
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("forged checkpoint passed the full verification: %v", err)
		}
	})
	t.Run("checkpoint damaged", func(t *testing.T) {
		path, clk := build(t)
		editDB(t, path, func(tx *bolt.Tx) error {
			return tx.Bucket(bMeta).Put(kCheckpointState, []byte(`{"current":0}`))
		})
		if _, err := Open(path, Options{Now: clk.Now}); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("damaged checkpoint opened: %v", err)
		}
	})
}

// VerifyFull works in small transactions while the kiosk keeps writing, and stops when its
// context ends.
func TestVerifyFullConcurrentAndCancel(t *testing.T) {
	j, _ := openTest(t)
	for range 20 {
		settledSession(t, j, 1000)
	}
	old := VerifyChunk
	VerifyChunk = 7
	defer func() { VerifyChunk = old }()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 10 {
			settledSession(t, j, 2000)
		}
	}()
	rep, err := j.VerifyFull(context.Background())
	wg.Wait()
	if err != nil || rep.Events < 20*8 {
		t.Fatalf("full verification beside writes: %+v %v", rep, err)
	}
	if _, err := j.Verify(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := j.VerifyFull(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled verification: %v", err)
	}
}

// A journal written before checkpoints existed gets one full check at its first Open, which
// leaves a checkpoint; read-only opens store nothing.
func TestCheckpointMigration(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.db")
	clk := &fakeClock{t: time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)}
	j := openAt(t, path, clk, 0)
	settledSession(t, j, 1000)
	j.Close()
	editDB(t, path, func(tx *bolt.Tx) error {
		tx.Bucket(bMeta).Delete(kCheckpointState)
		return tx.Bucket(bMeta).Delete(kCheckpoint)
	})
	ro, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := ro.LastCheckpoint(); ok {
		t.Fatal("read-only open stored a checkpoint")
	}
	ro.Close()
	j = openAt(t, path, clk, 0)
	defer j.Close()
	cp, ok, _ := j.LastCheckpoint()
	st, _ := j.Stats()
	if !ok || cp.Seq != st.Events || cp.FullSeq != st.Events {
		t.Fatalf("checkpoint after migration %+v %v (events %d)", cp, ok, st.Events)
	}
}
