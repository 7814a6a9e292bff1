package journal

import (
	"testing"

	"github.com/kioskd/kioskd/sync/wire"
)

func TestEscrowlessCredits(t *testing.T) {
	j, _ := openTest(t)
	s := mustSession(t, j, 15000)
	for c := 1; c <= 5; c++ {
		if err := j.RecordPulse(1, c); err != nil {
			t.Fatal(err)
		}
	}
	if pt, ok, _ := j.OpenPulseTrain(); !ok || pt.Count != 5 || pt.SessionID != s.ID {
		t.Fatalf("open train %+v %v", pt, ok)
	}
	r, err := j.CreditDirect(s.ID, Note{Code: 5, ValueMinor: 10000}, "")
	if err != nil || r.Session.TotalMinor != 10000 || r.OverLimit {
		t.Fatalf("credit %+v %v", r, err)
	}
	if _, ok, _ := j.OpenPulseTrain(); ok {
		t.Fatal("credit left the pulse train open")
	}
	// The next note does not fit, but it is in the box: credited and flagged.
	r, err = j.CreditDirect(s.ID, Note{Code: 5, ValueMinor: 10000}, "")
	if err != nil || !r.OverLimit || r.Session.TotalMinor != 20000 {
		t.Fatalf("over-limit credit %+v %v", r, err)
	}
	// A train cut short: an uncertain item of unknown value on the session.
	j.RecordPulse(2, 1)
	j.RecordPulse(2, 2)
	if err := j.PulseUncertain(s.ID, "restart in the middle of a pulse train"); err != nil {
		t.Fatal(err)
	}
	res, err := j.CloseSession(CloseParams{SessionID: s.ID, Outcome: wire.OutcomeInterrupted})
	if err != nil {
		t.Fatal(err)
	}
	w, _ := res.Topup.Wire()
	if w.AmountMinor != 20000 || len(w.Uncertain) != 1 || w.Uncertain[0].ValueMinor != 0 {
		t.Fatalf("topup %+v", w)
	}
	// With no session open, a credit is kept as an uncertain item, never dropped.
	r, err = j.CreditDirect(0, Note{Code: 1, ValueMinor: 1000}, "")
	if err != nil || !r.Unexpected {
		t.Fatalf("credit without session %+v %v", r, err)
	}
	if u, _ := j.UncertainItems(); len(u) != 2 {
		t.Fatalf("uncertain %+v", u)
	}
	c, _ := j.Cassette()
	if c.Count != 3 || c.ValueMinor != 21000 {
		t.Fatalf("cassette %+v", c)
	}
	if _, err := j.Verify(); err != nil {
		t.Fatal(err)
	}
}
