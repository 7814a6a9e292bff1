package journal

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// testdata/v1.journal was written by the journal as it was before the typed events (every
// operation of the money protocol once, both forms of a print start, acks of both kinds,
// pulses, device counters, informative events), and testdata/v1-events.jsonl is its export
// by that same code. Neither may be regenerated: they are what kiosks in the field hold.

func copyFixture(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("testdata/v1.journal")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "v1.journal")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestOldJournalVerifies opens a journal written by the previous code: the replay, now on
// typed events, rebuilds the same money views, the export is byte for byte the old one, and
// the journal keeps working (a new session, a print) and still verifies.
func TestOldJournalVerifies(t *testing.T) {
	path := copyFixture(t)
	j, err := Open(path, Options{KioskID: "K-FIX", Currency: "CNY"})
	if err != nil {
		t.Fatalf("open old journal: %v", err)
	}
	defer j.Close()
	rep, err := j.Verify()
	if err != nil || rep.Events != 50 || rep.Sessions != 3 || rep.Topups != 2 {
		t.Fatalf("verify = %+v %v", rep, err)
	}
	var out bytes.Buffer
	if err := j.ExportJSONL(&out); err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile("testdata/v1-events.jsonl")
	if !bytes.Equal(out.Bytes(), want) {
		t.Fatalf("export of the old journal differs from the old export")
	}
	// The printer account of the old format: counter 42 after topup 1 was cut; topup 2
	// started without a reading, so it may be out (a COPY).
	if n, ok, err := j.PrinterCuts(); err != nil || !ok || n != 42 {
		t.Fatalf("printer cuts of the old journal = %d %v %v", n, ok, err)
	}
	vs, err := j.ReconcileCuts(42, true)
	if err != nil || len(vs) != 1 || vs[0].Topup.Seq != 2 || vs[0].Verdict != VerdictUnknown {
		t.Fatalf("reconcile on the old journal = %+v %v", vs, err)
	}
	s := mustSession(t, j, 10000)
	credit(t, j, s.ID, 5000)
	if _, err := j.CloseSession(CloseParams{SessionID: s.ID, Outcome: "complete"}); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Verify(); err != nil {
		t.Fatalf("old journal with new events: %v", err)
	}
}

// TestEventPayloadsByteCompatible decodes every event of the old export into its typed
// payload and encodes it again: the bytes must be the ones the old code wrote, so the
// writer (which uses the same structs) keeps the on-disk JSON of every kind.
func TestEventPayloadsByteCompatible(t *testing.T) {
	f, err := os.Open("testdata/v1-events.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	kinds := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		ev, err := r.Payload()
		if err != nil {
			t.Fatalf("event %d (%s): %v", r.Seq, r.Type, err)
		}
		if r.Type == EvAlarm {
			if ev != nil {
				t.Fatalf("alarm decoded as %T", ev)
			}
			continue
		}
		if ev == nil {
			t.Fatalf("event %d (%s) has no payload type", r.Seq, r.Type)
		}
		if ev.EventType() != r.Type {
			t.Fatalf("event %d (%s) decoded as %T", r.Seq, r.Type, ev)
		}
		kinds[r.Type] = true
		got, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		if r.Type == EvPrintStarted && bytes.Contains(r.Data, []byte(`"detail"`)) {
			// The start form without a counter reading: it now reads as cuts_known false
			// and is written with the reading fields.
			if p := ev.(*PrintStartedEvent); p.CutsKnown || p.TopupSeq == 0 || p.ReceiptNo == 0 {
				t.Fatalf("old print start read as %+v", p)
			}
			continue
		}
		if !bytes.Equal(got, r.Data) {
			t.Errorf("event %d (%s):\n old %s\n new %s", r.Seq, r.Type, r.Data, got)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	// Every kind the journal writes is in the fixture, except the one that is new.
	for _, typ := range []string{EvJournalCreated, EvBoot, EvDevice, EvSessionOpened, EvStackIntent, EvNoteCredited,
		EvNoteStacked, EvNoteRefused, EvCreditReReported, EvUnexpectedCredit, EvUncertain, EvIntentResolved,
		EvDeviceCounter, EvSessionClosed, EvSessionCancelled, EvPrintStarted, EvPrinted, EvPrintFailed,
		EvTopupAcked, EvTopupConflict, EvPulse, EvCreditedDirect} {
		if !kinds[typ] {
			t.Errorf("no %s event in the fixture", typ)
		}
	}
}

// TestRecordChecksInformativePayloads: a boot or device event must read back as its type.
func TestRecordChecksInformativePayloads(t *testing.T) {
	j, _ := openTest(t)
	if err := j.Record(EvBoot, BootEvent{BootID: "b", Version: "v"}); err != nil {
		t.Fatal(err)
	}
	if err := j.Record(EvDevice, map[string]any{"device": "acceptor", "code": "not a number"}); err == nil {
		t.Fatal("device event with a mistyped field accepted")
	}
	if err := j.Record(EvNoteCredited, NoteCreditedEvent{}); err == nil {
		t.Fatal("money event through Record accepted")
	}
	var last Record
	j.Events(1, func(r Record) bool { last = r; return true })
	ev, err := last.Payload()
	if err != nil || !reflect.DeepEqual(ev, &BootEvent{BootID: "b", Version: "v"}) {
		t.Fatalf("boot payload = %#v %v", ev, err)
	}
}
