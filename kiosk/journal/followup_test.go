package journal

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/kioskd/kioskd/sync/wire"
	bolt "go.etcd.io/bbolt"
)

// closedWithNoteInTransit leaves j with a closed session (account acc_1, code qr) that took
// a 50 note and closed with a 100 note in transit: one uncertain item, top-up 1.
func closedWithNoteInTransit(t *testing.T, j *Journal) (Session, Topup) {
	t.Helper()
	s, err := j.OpenSession(OpenSessionParams{Account: "acc_1", AccountMasked: "ac***_1", LimitMinor: 50000, QR: "IMW1.test-code", QRNonce: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	credit(t, j, s.ID, 5000)
	if _, err := j.StackIntent(s.ID, Note{Code: 0x63, ValueMinor: 10000}); err != nil {
		t.Fatal(err)
	}
	res, err := j.CloseSession(CloseParams{SessionID: s.ID, Outcome: wire.OutcomeInterrupted, UnresolvedReason: "still in transit at session close"})
	if err != nil || res.Topup == nil || len(res.Session.Uncertain) != 1 {
		t.Fatalf("close = %+v, %v", res, err)
	}
	return res.Session, *res.Topup
}

func TestCreditAfterCloseFollowUp(t *testing.T) {
	j, path := openTest(t)
	s, orig := closedWithNoteInTransit(t, j)
	item := s.Uncertain[0]

	late, err := j.CreditAfterClose(Note{Code: 0x63, ValueMinor: 10000}, "credit report with no open intent")
	if err != nil || late.Kind != FollowUp || late.Topup == nil {
		t.Fatalf("late credit = %+v, %v", late, err)
	}
	if late.Follows.TopupID != orig.TopupID || late.Resolved.ID != item.ID || late.Credit.ValueMinor != 10000 {
		t.Fatalf("late credit = %+v", late)
	}
	// One note, one item: resolved, none left open.
	if u, _ := j.UncertainItems(); len(u) != 0 {
		t.Fatalf("uncertain items %+v", u)
	}
	u, ok, _ := j.UncertainItem(item.ID)
	if !ok || !u.Settled || u.ResolvedBy != late.Topup.TopupID {
		t.Fatalf("item %+v", u)
	}
	// The follow-up: next seq and receipt, in the outbox, linked to the original, same
	// account and code, one note, nothing uncertain.
	fu := *late.Topup
	w, err := fu.Wire()
	if err != nil || w.Validate() != nil {
		t.Fatalf("follow-up payload %s: %v", fu.Payload, err)
	}
	if fu.Seq != 2 || fu.ReceiptNo != 2 || w.FollowsTopupID != orig.TopupID || w.Account != "acc_1" || w.QR != "IMW1.test-code" ||
		w.AmountMinor != 10000 || len(w.Notes) != 1 || w.Notes[0] != (wire.NoteLine{ValueMinor: 10000, Count: 1}) ||
		len(w.Uncertain) != 0 || w.Outcome != wire.OutcomeComplete || !w.OpenedAt.Equal(s.OpenedAt) {
		t.Fatalf("follow-up %+v", w)
	}
	if ob, _ := j.Outbox(); len(ob) != 2 || ob[1].TopupID != fu.TopupID {
		t.Fatalf("outbox %+v", ob)
	}
	if r, ok, _ := j.Receipt(2); !ok || r.TopupID != fu.TopupID {
		t.Fatalf("receipt 2 = %+v", r)
	}
	if n, err := j.FollowsReceipt(fu); err != nil || n != orig.ReceiptNo {
		t.Fatalf("follows receipt %d %v", n, err)
	}
	if n, _ := j.FollowsReceipt(orig); n != 0 {
		t.Fatalf("the original follows receipt %d", n)
	}
	// The cassette counts the two physical notes once each.
	if c, _ := j.Cassette(); c.Count != 2 || c.ValueMinor != 15000 || c.ByValue[10000] != 1 {
		t.Fatalf("cassette %+v", c)
	}
	// The unit repeating the report (its ACK lost) is a repeat: nothing counted.
	if again, err := j.CreditAfterClose(Note{Code: 0x63, ValueMinor: 10000}, ""); err != nil || again.Kind != Repeat {
		t.Fatalf("repeat = %+v, %v", again, err)
	}
	// Once the unit finished it, a further report explains nothing: an unexpected credit.
	if err := j.NoteCompleted(); err != nil {
		t.Fatal(err)
	}
	if other, err := j.CreditAfterClose(Note{Code: 0x63, ValueMinor: 10000}, ""); err != nil || other.Kind != Unexpected {
		t.Fatalf("after completion = %+v, %v", other, err)
	}
	if _, err := j.Verify(); err != nil {
		t.Fatal(err)
	}
	j.Close()
	j2, err := Open(path, Options{KioskID: "K1", Currency: "CNY"})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	j2.Close()
}

// A report that names no value is the item's note.
func TestCreditAfterCloseUnnamedNote(t *testing.T) {
	j, _ := openTest(t)
	closedWithNoteInTransit(t, j)
	late, err := j.CreditAfterClose(Note{}, "")
	if err != nil || late.Kind != FollowUp || late.Topup.AmountMinor != 10000 {
		t.Fatalf("late = %+v, %v", late, err)
	}
	if _, err := j.Verify(); err != nil {
		t.Fatal(err)
	}
}

// Reports the item cannot explain keep the old behaviour: an unexpected credit, counted in
// the cassette and recorded as an uncertain item.
func TestCreditAfterCloseNoMatch(t *testing.T) {
	for name, setup := range map[string]func(t *testing.T, j *Journal){
		"other value": func(t *testing.T, j *Journal) {
			closedWithNoteInTransit(t, j)
		},
		"no closed item": func(t *testing.T, j *Journal) {
			s := mustSession(t, j, 50000)
			credit(t, j, s.ID, 5000)
			j.NoteCompleted()
		},
		"newer intent": func(t *testing.T, j *Journal) {
			closedWithNoteInTransit(t, j)
			s := mustSession(t, j, 50000)
			credit(t, j, s.ID, 10000)
			j.NoteCompleted()
		},
		"item of a pulse train": func(t *testing.T, j *Journal) {
			s := mustSession(t, j, 50000)
			if err := j.PulseUncertain(s.ID, "cut short"); err != nil {
				t.Fatal(err)
			}
			j.CloseSession(CloseParams{SessionID: s.ID, Outcome: wire.OutcomeComplete})
		},
	} {
		t.Run(name, func(t *testing.T) {
			j, _ := openTest(t)
			setup(t, j)
			before, _ := j.UncertainItems()
			c0, _ := j.Cassette()
			v := int64(10000)
			if name == "other value" {
				v = 5000
			}
			late, err := j.CreditAfterClose(Note{Code: 0x62, ValueMinor: v}, "")
			if err != nil || late.Kind != Unexpected || late.Topup != nil {
				t.Fatalf("late = %+v, %v", late, err)
			}
			if u, _ := j.UncertainItems(); len(u) != len(before)+1 {
				t.Fatalf("uncertain %+v", u)
			}
			if c, _ := j.Cassette(); c.Count != c0.Count+1 {
				t.Fatalf("cassette %+v", c)
			}
			if _, err := j.Verify(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// The counter baseline stays right: whether or not the unit's stacked counter had counted
// the note when the baseline was taken after the close, the next reconciliation finds the
// unit and the journal agreeing.
func TestCreditAfterCloseKeepsCounterBaseline(t *testing.T) {
	for _, seen := range []bool{true, false} {
		j, _ := openTest(t)
		if _, err := j.ReconcileDeviceCounter("U1", 100, 0); err != nil {
			t.Fatal(err)
		}
		closedWithNoteInTransit(t, j) // the unit counted the 50 note: 101
		atClose := uint64(101)
		if seen {
			atClose = 102
		}
		if r, err := j.ReconcileDeviceCounter("U1", atClose, 0); err != nil || r.Extra != 0 || r.Uncertain != 0 {
			t.Fatalf("seen %v: baseline at close = %+v, %v", seen, r, err)
		}
		if late, err := j.CreditAfterClose(Note{ValueMinor: 10000}, ""); err != nil || late.Kind != FollowUp {
			t.Fatalf("late = %+v, %v", late, err)
		}
		if r, err := j.ReconcileDeviceCounter("U1", 102, 0); err != nil || r.Extra != 0 || r.Uncertain != 0 {
			t.Fatalf("seen %v: next baseline = %+v, %v", seen, r, err)
		}
		if _, err := j.Verify(); err != nil {
			t.Fatal(err)
		}
		j.Close()
	}
}

func TestVerifyDetectsTamperedFollowUp(t *testing.T) {
	for name, edit := range map[string]func(tx *bolt.Tx) error{
		"edited follow-up amount": func(tx *bolt.Tx) error {
			return editEvent(tx, EvFollowUpCredit, func(r *Record) {
				r.Data = bytes.Replace(r.Data, []byte(`"amount_minor":10000`), []byte(`"amount_minor":20000`), 1)
			})
		},
		"removed follow-up outbox entry": func(tx *bolt.Tx) error {
			return tx.Bucket(bOutbox).Delete(u64(2))
		},
		"edited follow-up top-up": func(tx *bolt.Tx) error {
			var tp Topup
			if _, err := getJSON(tx, bTopups, u64(2), &tp); err != nil {
				return err
			}
			tp.AmountMinor = 20000
			b, _ := json.Marshal(tp)
			return tx.Bucket(bTopups).Put(u64(2), b)
		},
		"cassette without the late note": func(tx *bolt.Tx) error {
			return tx.Bucket(bCassette).Put(kCassette, []byte(`{"count":1,"value_minor":5000,"by_value":{"5000":1}}`))
		},
	} {
		t.Run(name, func(t *testing.T) {
			j, path := openTest(t)
			closedWithNoteInTransit(t, j)
			if late, err := j.CreditAfterClose(Note{ValueMinor: 10000}, ""); err != nil || late.Kind != FollowUp {
				t.Fatalf("late = %+v, %v", late, err)
			}
			j.Close()
			db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Update(edit); err != nil {
				t.Fatal(err)
			}
			db.Close()
			if _, err := Open(path, Options{KioskID: "K1", Currency: "CNY"}); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("tampered journal opened: %v", err)
			}
		})
	}
}

// The replay refuses a second resolution of one item: a forged second follow-up event, even
// with a correct chain, fails Verify.
func TestReplayRefusesSecondFollowUp(t *testing.T) {
	j, _ := openTest(t)
	closedWithNoteInTransit(t, j)
	if _, err := j.CreditAfterClose(Note{ValueMinor: 10000}, ""); err != nil {
		t.Fatal(err)
	}
	r := newReplay()
	var fu *FollowUpCreditEvent
	if err := j.Events(1, func(rec Record) bool {
		if err := r.apply(rec); err != nil {
			t.Fatalf("replay %d: %v", rec.Seq, err)
		}
		if rec.Type == EvFollowUpCredit {
			ev, _ := rec.Payload()
			fu = ev.(*FollowUpCreditEvent)
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	again := *fu
	again.TopupSeq = 3
	if err := r.followUp(&again); err == nil {
		t.Fatal("a second resolution of the same item replayed")
	}
}
