package ledger

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/sync/wire"
)

// TestJournalFollowUpCreditedAgainstSuspense runs the kiosk journal's own top-ups through the
// store with the checks the ledger makes: a session closed with its last note in transit
// (one uncertain item, a suspense record), then the follow-up the journal made when the unit
// reported that note's credit. The follow-up is credited, with the same wallet code, and
// closes the suspense record: the note is in the balance once and nothing is left to settle.
func TestJournalFollowUpCreditedAgainstSuspense(t *testing.T) {
	j, err := journal.Open(filepath.Join(t.TempDir(), "j.db"), journal.Options{KioskID: "K9", Currency: "CNY",
		Now: func() time.Time { return t0.Add(time.Minute) }})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	s, err := j.OpenSession(journal.OpenSessionParams{Account: "bob", LimitMinor: 50000, QR: qrFor("bob", "nonce-e2e-1", t0.Add(time.Hour)), QRNonce: "nonce-e2e-1"})
	if err != nil {
		t.Fatal(err)
	}
	in, _ := j.StackIntent(s.ID, journal.Note{Code: 0x62, ValueMinor: 5000})
	if _, err := j.CreditNote(in.ID, journal.Note{}, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := j.StackIntent(s.ID, journal.Note{Code: 0x63, ValueMinor: 10000}); err != nil {
		t.Fatal(err)
	}
	closed, err := j.CloseSession(journal.CloseParams{SessionID: s.ID, Outcome: wire.OutcomeInterrupted})
	if err != nil {
		t.Fatal(err)
	}
	late, err := j.CreditAfterClose(journal.Note{Code: 0x63, ValueMinor: 10000}, "")
	if err != nil || late.Kind != journal.FollowUp {
		t.Fatalf("late credit = %+v, %v", late, err)
	}

	st := openStore(t, "", nil)
	apply := func(tp journal.Topup, want string) Result {
		t.Helper()
		w, err := tp.Wire()
		if err != nil {
			t.Fatal(err)
		}
		// What Ledger.checks gives the store: the verified code's nonce, shared with the
		// top-up a follow-up follows.
		pr, reason := verifyQR(testWallet, w.QR, w.Account)
		if reason != "" {
			t.Fatalf("%s: proof %s", tp.TopupID, reason)
		}
		r, err := st.Apply(w, Checks{QRNonce: pr.Nonce, QRSharedWith: w.FollowsTopupID})
		if err != nil || r.Status != want {
			t.Fatalf("%s: %+v, %v; want %s", tp.TopupID, r, err, want)
		}
		return r
	}
	apply(*closed.Topup, wire.AckCredited)
	if sus, _ := st.Suspense(); len(sus) != 1 || sus[0].ValueMinor != 10000 {
		t.Fatalf("suspense after the original = %+v", sus)
	}
	r := apply(*late.Topup, wire.AckCredited)
	if r.Balance != 15000 {
		t.Fatalf("balance %d after the follow-up, want both notes", r.Balance)
	}
	if sus, _ := st.Suspense(); len(sus) != 0 {
		t.Fatalf("suspense after the follow-up = %+v, want the record closed", sus)
	}
	// Redelivery of the follow-up changes nothing.
	apply(*late.Topup, wire.AckDuplicate)
	if a, _ := st.Account("bob"); a.Balances["CNY"] != 15000 {
		t.Fatalf("balance %+v", a.Balances)
	}
}
