package journal

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kioskd/kioskd/sync/wire"
	bolt "go.etcd.io/bbolt"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time { c.t = c.t.Add(time.Second); return c.t }

func openTest(t *testing.T) (*Journal, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "journal.db")
	clk := &fakeClock{t: time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)}
	j, err := Open(path, Options{KioskID: "K1", Currency: "CNY", Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return j, path
}

func mustSession(t *testing.T, j *Journal, limit int64) Session {
	t.Helper()
	s, err := j.OpenSession(OpenSessionParams{Account: "acc_1", AccountMasked: "ac***_1", LimitMinor: limit})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func credit(t *testing.T, j *Journal, sid uint64, v int64) CreditResult {
	t.Helper()
	in, err := j.StackIntent(sid, Note{Code: 0x62, ValueMinor: v})
	if err != nil {
		t.Fatal(err)
	}
	res, err := j.CreditNote(in.ID, Note{}, "")
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestEpochStableAcrossReopen(t *testing.T) {
	j, path := openTest(t)
	e := j.Epoch()
	j.Close()
	j2, err := Open(path, Options{KioskID: "K1", Currency: "CNY"})
	if err != nil {
		t.Fatal(err)
	}
	defer j2.Close()
	if j2.Epoch() != e {
		t.Fatalf("epoch changed on reopen: %x -> %x", e, j2.Epoch())
	}
	// A new file gets a new epoch, so ids never repeat after an SD card swap.
	j3, _ := openTest(t)
	if j3.Epoch() == e {
		t.Fatal("two journals share an epoch")
	}
}

func TestWrongKioskRefused(t *testing.T) {
	j, path := openTest(t)
	j.Close()
	if _, err := Open(path, Options{KioskID: "K2", Currency: "CNY"}); !errors.Is(err, ErrWrongKiosk) {
		t.Fatalf("err = %v, want ErrWrongKiosk", err)
	}
}

func TestSessionCloseBuildsTopup(t *testing.T) {
	j, _ := openTest(t)
	s := mustSession(t, j, 20000)
	credit(t, j, s.ID, 10000)
	r := credit(t, j, s.ID, 5000)
	if r.Session.TotalMinor != 15000 || r.Session.RemainingMinor() != 5000 {
		t.Fatalf("session after two notes: %+v", r.Session)
	}
	// A third note over the limit cannot even be intended.
	if _, err := j.StackIntent(s.ID, Note{ValueMinor: 10000}); err == nil {
		t.Fatal("stack intent over the limit accepted")
	}
	res, err := j.CloseSession(CloseParams{SessionID: s.ID, Outcome: wire.OutcomeComplete})
	if err != nil {
		t.Fatal(err)
	}
	tp := res.Topup
	if tp == nil || tp.Seq != 1 || tp.ReceiptNo != 1 || tp.AmountMinor != 15000 {
		t.Fatalf("topup = %+v", tp)
	}
	w, err := tp.Wire()
	if err != nil {
		t.Fatal(err)
	}
	if w.TopupID != wire.TopupID("K1", j.Epoch(), 1) || len(w.Notes) != 2 || w.Notes[0].ValueMinor != 10000 {
		t.Fatalf("wire topup = %+v", w)
	}
	if err := w.Validate(); err != nil {
		t.Fatal(err)
	}
	ob, _ := j.Outbox()
	if len(ob) != 1 || ob[0].TopupID != w.TopupID {
		t.Fatalf("outbox = %+v", ob)
	}
	c, _ := j.Cassette()
	if c.Count != 2 || c.ValueMinor != 15000 || c.ByValue[10000] != 1 {
		t.Fatalf("cassette = %+v", c)
	}
	// Second session: seq and receipt number continue without gaps, even after a cancelled
	// session in between.
	s2 := mustSession(t, j, 1000)
	if res, err := j.CloseSession(CloseParams{SessionID: s2.ID, Outcome: wire.OutcomeComplete}); err != nil || res.Topup != nil {
		t.Fatalf("empty session close = %+v %v", res, err)
	}
	s3 := mustSession(t, j, 1000)
	credit(t, j, s3.ID, 1000)
	res3, err := j.CloseSession(CloseParams{SessionID: s3.ID, Outcome: wire.OutcomeComplete})
	if err != nil || res3.Topup.Seq != 2 || res3.Topup.ReceiptNo != 2 {
		t.Fatalf("third close = %+v %v", res3.Topup, err)
	}
	if _, err := j.Verify(); err != nil {
		t.Fatal(err)
	}
}

func TestOneOpenSession(t *testing.T) {
	j, _ := openTest(t)
	mustSession(t, j, 100)
	if _, err := j.OpenSession(OpenSessionParams{Account: "b", LimitMinor: 1}); !errors.Is(err, ErrSessionOpen) {
		t.Fatalf("err = %v", err)
	}
}

func TestCreditReReportAfterRestart(t *testing.T) {
	j, _ := openTest(t)
	s := mustSession(t, j, 50000)
	credit(t, j, s.ID, 10000)
	// The unit repeats VEND VALID because our ACK was lost in a crash: recognised, not counted.
	got, err := j.CreditWithoutIntent(Note{}, "vend valid after restart")
	if err != nil || got != Repeat {
		t.Fatalf("re-report = %v %v", got, err)
	}
	cur, _, _ := j.CurrentSession()
	if cur.TotalMinor != 10000 {
		t.Fatalf("re-report counted: total %d", cur.TotalMinor)
	}
	// After a new intent, a credit without intent cannot be a repeat any more.
	in, _ := j.StackIntent(s.ID, Note{ValueMinor: 5000})
	if _, err := j.CreditNote(in.ID, Note{}, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := j.StackIntent(s.ID, Note{ValueMinor: 5000}); err != nil {
		t.Fatal(err)
	}
	if got, _ := j.CreditWithoutIntent(Note{ValueMinor: 5000}, ""); got != Unexpected {
		t.Fatalf("credit after a newer intent classified %v", got)
	}
	u, _ := j.UncertainItems()
	if len(u) != 1 || u[0].ValueMinor != 5000 || u[0].SessionID != s.ID {
		t.Fatalf("uncertain = %+v", u)
	}
	if _, err := j.Verify(); err != nil {
		t.Fatal(err)
	}
}

func TestResolveIntents(t *testing.T) {
	j, _ := openTest(t)
	s := mustSession(t, j, 50000)
	a, _ := j.StackIntent(s.ID, Note{ValueMinor: 10000})
	if _, err := j.ResolveIntent(a.ID, ResolvedReturned, "power up with note in acceptor"); err != nil {
		t.Fatal(err)
	}
	b, _ := j.StackIntent(s.ID, Note{ValueMinor: 5000})
	sess, err := j.ResolveIntent(b.ID, ResolvedStacked, "power up with note in stacker")
	if err != nil || sess.TotalMinor != 5000 {
		t.Fatalf("stacked resolution: %+v %v", sess, err)
	}
	c, _ := j.StackIntent(s.ID, Note{ValueMinor: 2000})
	sess, err = j.ResolveIntent(c.ID, ResolvedUncertain, "unit idle after restart")
	if err != nil || len(sess.Uncertain) != 1 || sess.RemainingMinor() != 45000 {
		t.Fatalf("uncertain resolution: %+v %v", sess, err)
	}
	if _, err := j.ResolveIntent(c.ID, ResolvedReturned, ""); !errors.Is(err, ErrNoIntent) {
		t.Fatalf("second resolution: %v", err)
	}
	d, _ := j.StackIntent(s.ID, Note{ValueMinor: 1000})
	res, err := j.CloseSession(CloseParams{SessionID: s.ID, Outcome: wire.OutcomeInterrupted, UnresolvedReason: "crash"})
	if err != nil {
		t.Fatal(err)
	}
	w, _ := res.Topup.Wire()
	if w.AmountMinor != 5000 || len(w.Uncertain) != 2 || w.Outcome != wire.OutcomeInterrupted {
		t.Fatalf("interrupted topup = %+v (intent %d)", w, d.ID)
	}
	if in, _ := j.OpenIntents(); len(in) != 0 {
		t.Fatalf("intents left open: %+v", in)
	}
	if _, err := j.Verify(); err != nil {
		t.Fatal(err)
	}
}

func TestApplyAck(t *testing.T) {
	j, _ := openTest(t)
	s := mustSession(t, j, 50000)
	credit(t, j, s.ID, 10000)
	res, _ := j.CloseSession(CloseParams{SessionID: s.ID, Outcome: wire.OutcomeComplete})
	id := res.Topup.TopupID
	// Wrong amount: ignored.
	if _, err := j.ApplyAck(wire.Ack{V: 1, TopupID: id, Status: wire.AckCredited, AmountMinor: 9999, Currency: "CNY"}); !errors.Is(err, ErrAckMismatch) {
		t.Fatalf("mismatch: %v", err)
	}
	// Unknown top-up (other epoch).
	if _, err := j.ApplyAck(wire.Ack{V: 1, TopupID: wire.TopupID("K1", j.Epoch()+1, 1), Status: wire.AckCredited}); !errors.Is(err, ErrUnknownTopup) {
		t.Fatalf("unknown: %v", err)
	}
	if _, err := j.ApplyAck(wire.Ack{V: 1, TopupID: wire.TopupID("K1", j.Epoch(), 7), Status: wire.AckCredited}); !errors.Is(err, ErrUnknownTopup) {
		t.Fatalf("unknown seq: %v", err)
	}
	if ob, _ := j.Outbox(); len(ob) != 1 {
		t.Fatal("bad acks removed the outbox entry")
	}
	r, err := j.ApplyAck(wire.Ack{V: 1, TopupID: id, Status: wire.AckCredited, AmountMinor: 10000, Currency: "CNY", LedgerRef: "L1", AckedThroughSeq: 1})
	if err != nil || !r.Changed || r.Gap != "" || r.Topup.State != TopupCredited {
		t.Fatalf("ack: %+v %v", r, err)
	}
	r, err = j.ApplyAck(wire.Ack{V: 1, TopupID: id, Status: wire.AckDuplicate, AmountMinor: 10000, Currency: "CNY", LedgerRef: "L1"})
	if err != nil || r.Changed {
		t.Fatalf("repeated ack changed state: %+v %v", r, err)
	}
	if ob, _ := j.Outbox(); len(ob) != 0 {
		t.Fatalf("outbox after ack: %+v", ob)
	}
	// A watermark beyond what we closed is a gap.
	s2 := mustSession(t, j, 50000)
	credit(t, j, s2.ID, 1000)
	res2, _ := j.CloseSession(CloseParams{SessionID: s2.ID, Outcome: wire.OutcomeComplete})
	r, _ = j.ApplyAck(wire.Ack{V: 1, TopupID: res2.Topup.TopupID, Status: wire.AckConflict, AmountMinor: 1000, Currency: "CNY", AckedThroughSeq: 5})
	if r.Gap == "" || r.Topup.State != TopupConflict {
		t.Fatalf("conflict with gap: %+v", r)
	}
	if ob, _ := j.Outbox(); len(ob) != 1 || ob[0].State != TopupConflict {
		t.Fatalf("conflict must stay in the outbox, stopped: %+v", ob)
	}
	if _, err := j.Verify(); err != nil {
		t.Fatal(err)
	}
}

func TestNonceReplay(t *testing.T) {
	j, _ := openTest(t)
	exp := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	if err := j.UseNonce("abcdefgh", exp); err != nil {
		t.Fatal(err)
	}
	if err := j.UseNonce("abcdefgh", exp); !errors.Is(err, ErrNonceUsed) {
		t.Fatalf("replay: %v", err)
	}
}

func TestPrintStates(t *testing.T) {
	j, _ := openTest(t)
	s := mustSession(t, j, 50000)
	credit(t, j, s.ID, 10000)
	res, _ := j.CloseSession(CloseParams{SessionID: s.ID, Outcome: wire.OutcomeComplete})
	if u, _ := j.Unprinted(); len(u) != 1 || u[0].PrintState != PrintNone {
		t.Fatalf("unprinted = %+v", u)
	}
	if _, err := j.MarkPrint(res.Topup.Seq, PrintStarted, ""); err != nil {
		t.Fatal(err)
	}
	if u, _ := j.Unprinted(); len(u) != 1 || u[0].PrintState != PrintStarted || u[0].Prints != 1 {
		t.Fatalf("unprinted after start = %+v", u)
	}
	j.MarkPrint(res.Topup.Seq, PrintDone, "")
	if u, _ := j.Unprinted(); len(u) != 0 {
		t.Fatalf("printed receipt still unprinted: %+v", u)
	}
}

// tamper rewrites the raw file through bbolt and expects Verify (and Open) to refuse it.
func TestVerifyDetectsTampering(t *testing.T) {
	for name, edit := range map[string]func(tx *bolt.Tx) error{
		"edited credit amount": func(tx *bolt.Tx) error {
			return editEvent(tx, EvNoteCredited, func(r *Record) {
				r.Data = bytes.Replace(r.Data, []byte(`"value_minor":10000`), []byte(`"value_minor":20000`), 1)
			})
		},
		"edited credit with recomputed own hash": func(tx *bolt.Tx) error {
			return editEvent(tx, EvNoteCredited, func(r *Record) {
				r.Data = bytes.Replace(r.Data, []byte(`"value_minor":10000`), []byte(`"value_minor":20000`), 1)
				// An attacker who recomputes this event's hash still breaks the next link.
				r.Hash = "00"
			})
		},
		"deleted event": func(tx *bolt.Tx) error {
			return tx.Bucket(bEvents).Delete(u64(3))
		},
		"deleted last event": func(tx *bolt.Tx) error {
			return tx.Bucket(bEvents).Delete(u64(tx.Bucket(bEvents).Sequence()))
		},
		"edited session total": func(tx *bolt.Tx) error {
			b := tx.Bucket(bSessions)
			k, v := b.Cursor().First()
			var s Session
			json.Unmarshal(v, &s)
			s.TotalMinor += 100
			nv, _ := json.Marshal(s)
			return b.Put(k, nv)
		},
		"removed outbox entry": func(tx *bolt.Tx) error {
			return tx.Bucket(bOutbox).Delete(u64(1))
		},
		"edited cassette": func(tx *bolt.Tx) error {
			return tx.Bucket(bCassette).Put(kCassette, []byte(`{"count":0,"value_minor":0}`))
		},
	} {
		t.Run(name, func(t *testing.T) {
			j, path := openTest(t)
			s := mustSession(t, j, 50000)
			credit(t, j, s.ID, 10000)
			j.CloseSession(CloseParams{SessionID: s.ID, Outcome: wire.OutcomeComplete})
			j.Close()
			db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Update(edit); err != nil {
				t.Fatal(err)
			}
			db.Close()
			_, err = Open(path, Options{KioskID: "K1", Currency: "CNY"})
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("tampered journal opened: %v", err)
			}
		})
	}
}

func editEvent(tx *bolt.Tx, typ string, fn func(*Record)) error {
	b := tx.Bucket(bEvents)
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		r, _ := decodeRecord(btoi(k), v)
		if r.Type == typ {
			r.Data = append(json.RawMessage(nil), r.Data...)
			fn(&r)
			h := r.hash
			if r.Hash != hex.EncodeToString(r.hash) {
				h, _ = hex.DecodeString(fmt.Sprintf("%064s", r.Hash))
			}
			return b.Put(k, encodeRecord(r.Type, r.At, h, r.Data))
		}
	}
	return errors.New("no such event")
}

func TestExport(t *testing.T) {
	j, _ := openTest(t)
	s := mustSession(t, j, 50000)
	credit(t, j, s.ID, 10000)
	var buf bytes.Buffer
	if err := j.ExportJSONL(&buf); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 4 || !strings.Contains(lines[3], EvNoteCredited) {
		t.Fatalf("export = %q", lines)
	}
}
