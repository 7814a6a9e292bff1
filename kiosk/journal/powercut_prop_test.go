package journal

import (
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/kioskd/kioskd/kiosk/journal/journaltest"

	"github.com/kioskd/kioskd/sync/wire"
)

// TestPowerCutsAnywhere runs random journal operations and, at random points, loses the last
// committed transaction (as a power cut on lying storage does), reopens, and checks the file
// still opens and verifies.
func TestPowerCutsAnywhere(t *testing.T) {
	rounds := 200
	if testing.Short() {
		rounds = 60
	}
	rng := rand.New(rand.NewPCG(1, 2))
	path := filepath.Join(t.TempDir(), "j.db")
	open := func() *Journal {
		j, err := Open(path, Options{KioskID: "K1", Currency: "CNY"})
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		return j
	}
	j := open()
	for i := range rounds {
		s, ok, err := j.CurrentSession()
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case !ok:
			j.OpenSession(OpenSessionParams{Account: "a", LimitMinor: 1 << 40})
		default:
			in, _ := j.OpenIntents()
			switch {
			case len(in) > 0 && rng.IntN(2) == 0:
				j.CreditNote(in[0].ID, Note{}, "")
			case len(in) > 0:
				j.ResolveIntent(in[0].ID, ResolvedReturned, "x")
			case rng.IntN(4) == 0:
				res, err := j.CloseSession(CloseParams{SessionID: s.ID, Outcome: wire.OutcomeComplete})
				if err == nil && res.Topup != nil {
					j.MarkPrint(res.Topup.Seq, PrintStarted, "")
					if rng.IntN(2) == 0 {
						w, _ := res.Topup.Wire()
						j.ApplyAck(wire.Ack{V: 1, TopupID: w.TopupID, Status: wire.AckCredited, AmountMinor: w.AmountMinor, Currency: "CNY"})
					}
				}
			case rng.IntN(3) == 0:
				j.NoteCompleted()
			default:
				j.StackIntent(s.ID, Note{Code: 1, ValueMinor: 100})
			}
		}
		if rng.IntN(5) == 0 {
			j.Close()
			if err := journaltest.DropLastCommit(path); err != nil {
				t.Logf("round %d: %v", i, err)
			}
			j = open()
			if _, err := j.Verify(); err != nil {
				t.Fatalf("round %d: after a lost commit: %v", i, err)
			}
		}
	}
	j.Close()
}
