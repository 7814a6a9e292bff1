package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

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
	defer j.Close()
	for n := 0; ; n++ {
		st, err := j.Stats()
		if err != nil {
			return err
		}
		if st.Events >= events {
			return nil
		}
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
		j.MarkPrint(res.Topup.Seq, journal.PrintStarted, "")
		j.MarkPrint(res.Topup.Seq, journal.PrintDone, "")
		w, _ := res.Topup.Wire()
		if _, err := j.ApplyAck(wire.Ack{V: 1, TopupID: w.TopupID, Status: wire.AckCredited, AmountMinor: w.AmountMinor, Currency: "CNY"}); err != nil {
			return err
		}
	}
}

// recovery measures what start-up costs on a journal: open it and run the full check (hash
// chain from the first event, money views rebuilt and compared). It reports the file size and
// the event count as metrics.
func recovery(b *testing.B, path string) {
	st, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	var events uint64
	b.ResetTimer()
	for b.Loop() {
		j, err := journal.Open(path, journal.Options{})
		if err != nil {
			b.Fatal(err)
		}
		s, _ := j.Stats()
		events = s.Events
		j.Close()
	}
	b.ReportMetric(float64(st.Size())/(1<<20), "MiB")
	b.ReportMetric(float64(events), "events")
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
