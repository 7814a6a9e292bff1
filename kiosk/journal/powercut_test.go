package journal

import (
	"testing"

	"github.com/kioskd/kioskd/sync/wire"
)

// TestDropLastCommit checks the power-cut simulation itself: each transaction dropped leaves
// the file exactly as it was before that transaction, and the chain still verifies.
func TestDropLastCommit(t *testing.T) {
	j, path := openTest(t)
	s := mustSession(t, j, 50000)
	credit(t, j, s.ID, 10000)
	in, err := j.StackIntent(s.ID, Note{Code: 0x62, ValueMinor: 5000})
	if err != nil {
		t.Fatal(err)
	}
	j.Close()
	a, b, err := MetaTxids(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := DropLastCommit(path); err != nil {
		t.Fatal(err)
	}
	j2, err := Open(path, Options{KioskID: "K1", Currency: "CNY"})
	if err != nil {
		t.Fatalf("reopen after a lost commit: %v (meta txids %d/%d)", err, a, b)
	}
	defer j2.Close()
	if in2, _ := j2.OpenIntents(); len(in2) != 0 {
		t.Fatalf("the lost stack intent %d is still there: %+v", in.ID, in2)
	}
	cur, ok, _ := j2.CurrentSession()
	if !ok || cur.TotalMinor != 10000 || cur.PendingMinor != 0 {
		t.Fatalf("session after the lost intent %+v", cur)
	}
	// The journal goes on from there: new events chain onto the surviving head.
	in3, err := j2.StackIntent(s.ID, Note{Code: 0x62, ValueMinor: 5000})
	if err != nil {
		t.Fatal(err)
	}
	j2.CreditNote(in3.ID, Note{}, "")
	if _, err := j2.CloseSession(CloseParams{SessionID: s.ID, Outcome: wire.OutcomeComplete}); err != nil {
		t.Fatal(err)
	}
	if _, err := j2.Verify(); err != nil {
		t.Fatal(err)
	}
}

// TestLostIntentThenStackerNote: the storage lost the stack intent of a note the unit then
// stacked; at power-up the unit reports a note in the stacker. The last credited note was
// finished, so this one is accounted for nowhere: an uncertain item, not a silent loss.
func TestLostIntentThenStackerNote(t *testing.T) {
	j, path := openTest(t)
	s := mustSession(t, j, 50000)
	credit(t, j, s.ID, 10000)
	if err := j.NoteCompleted(); err != nil {
		t.Fatal(err)
	}
	j.StackIntent(s.ID, Note{Code: 0x62, ValueMinor: 5000})
	j.Close()
	if err := DropLastCommit(path); err != nil {
		t.Fatal(err)
	}
	j2, err := Open(path, Options{KioskID: "K1", Currency: "CNY"})
	if err != nil {
		t.Fatal(err)
	}
	defer j2.Close()
	last, err := j2.StackerWithoutIntent(Note{}, "power up with bill in stacker")
	if err != nil || last {
		t.Fatalf("classified as the last credit: %v %v", last, err)
	}
	if u, _ := j2.UncertainItems(); len(u) != 1 || u[0].SessionID != s.ID {
		t.Fatalf("uncertain %+v", u)
	}
	// Whereas a note in the stacker right after its (journaled) credit is that credit.
	s2, _, _ := j2.CurrentSession()
	credit(t, j2, s2.ID, 2000)
	if last, _ := j2.StackerWithoutIntent(Note{}, "0x42"); !last {
		t.Fatal("the just-credited note was not recognised")
	}
}
