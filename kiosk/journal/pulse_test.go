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

// TestPulseLineSurvivesTheLostLastCommit: the line's "enabled" state is sealed before the
// unit may take a note, so a power cut that takes the last commit (the seal, or a note's only
// pulse record) never takes the state with it; the start-up then records one uncertain item
// for the note that left no record (sim seed 800294), and only one per enabled stretch.
func TestPulseLineSurvivesTheLostLastCommit(t *testing.T) {
	j, path := openTest(t)
	s := mustSession(t, j, 50000)
	if err := j.PulseEnabling(s.ID, "test"); err != nil {
		t.Fatal(err)
	}
	// The power cut takes the seal: "enabled" is still there.
	j = powerCut(t, j, path)
	if pl, err := j.PulseLineState(); err != nil || !pl.Enabled || pl.SessionID != s.ID {
		t.Fatalf("after losing the seal: %+v %v, want enabled for session %d", pl, err, s.ID)
	}
	// Enabling again while enabled writes nothing (the last commit stays the sealed state's).
	if err := j.PulseEnabling(s.ID, "again"); err != nil {
		t.Fatal(err)
	}
	// A note pulses in; the power cut takes its only record.
	if err := j.RecordPulse(1, 1); err != nil {
		t.Fatal(err)
	}
	j = powerCut(t, j, path)
	if _, open, _ := j.OpenPulseTrain(); open {
		t.Fatal("the lost pulse is still journaled")
	}
	pl, err := j.PulseLineState()
	if err != nil || !pl.Enabled {
		t.Fatalf("line %+v %v, want enabled", pl, err)
	}
	// The start-up, before the unit is at rest: the item, and the stretch stays open.
	item, err := j.PulseLineUncertain(s.ID, "restart", false)
	if err != nil || item == 0 {
		t.Fatalf("item %d %v", item, err)
	}
	// A second restart before the unit came to rest records no second item for it.
	if again, err := j.PulseLineUncertain(s.ID, "restart", false); err != nil || again != 0 {
		t.Fatalf("second item %d %v", again, err)
	}
	if pl, _ := j.PulseLineState(); !pl.Enabled || pl.Uncertain != item {
		t.Fatalf("line %+v, want enabled with item %d", pl, item)
	}
	// Enabling again starts a new stretch, which a restart would count again.
	if err := j.PulseEnabling(s.ID, "new stretch"); err != nil {
		t.Fatal(err)
	}
	if pl, _ := j.PulseLineState(); !pl.Enabled || pl.Uncertain != 0 {
		t.Fatalf("line %+v, want a new enabled stretch", pl)
	}
	if changed, err := j.PulseInhibited("at rest"); err != nil || !changed {
		t.Fatalf("inhibited %v %v", changed, err)
	}
	if changed, err := j.PulseInhibited("at rest"); err != nil || changed {
		t.Fatalf("inhibited twice: %v %v", changed, err)
	}
	if item, err := j.PulseLineUncertain(s.ID, "restart", true); err != nil || item != 0 {
		t.Fatalf("item for a line at rest: %d %v", item, err)
	}
	items, _ := j.UncertainItems()
	if len(items) != 1 || items[0].ID != item || items[0].SessionID != s.ID || items[0].ValueMinor != 0 {
		t.Fatalf("uncertain items %+v, want one of unknown value on session %d", items, s.ID)
	}
	res, err := j.CloseSession(CloseParams{SessionID: s.ID, Outcome: wire.OutcomeInterrupted})
	if err != nil {
		t.Fatal(err)
	}
	if w, _ := res.Topup.Wire(); w.AmountMinor != 0 || len(w.Uncertain) != 1 {
		t.Fatalf("top-up %+v, want the uncertain item", w)
	}
	if _, err := j.Verify(); err != nil {
		t.Fatal(err)
	}
}

// TestPulseLineUncertainAtRestEndsTheStretch: the start-up that finds the unit already at
// rest behind its inhibit records the item and ends the stretch in one transaction; losing
// that commit brings the stretch back, and the next start-up records the item again.
func TestPulseLineUncertainAtRestEndsTheStretch(t *testing.T) {
	j, path := openTest(t)
	if err := j.PulseEnabling(0, "test"); err != nil {
		t.Fatal(err)
	}
	if item, err := j.PulseLineUncertain(0, "restart", true); err != nil || item == 0 {
		t.Fatalf("item %d %v", item, err)
	}
	if pl, _ := j.PulseLineState(); pl.Enabled {
		t.Fatalf("line %+v, want at rest", pl)
	}
	j = powerCut(t, j, path)
	if items, _ := j.UncertainItems(); len(items) != 0 {
		t.Fatalf("items %+v after losing their commit", items)
	}
	if item, err := j.PulseLineUncertain(0, "restart", true); err != nil || item == 0 {
		t.Fatalf("item again %d %v", item, err)
	}
	if items, _ := j.UncertainItems(); len(items) != 1 || items[0].SessionID != 0 {
		t.Fatalf("items %+v", items)
	}
}
