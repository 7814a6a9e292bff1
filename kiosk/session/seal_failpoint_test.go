//go:build kioskd_failpoints

package session

import (
	"context"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/kiosk/journal"
)

// sealFailsRig is an engine whose disk fills up right after the stack intent's commit, so
// the intent is journaled and its seal is not. The customer has scanned and is inserting.
func sealFailsRig(t *testing.T) (*rig, *brokenDisk, acceptor.Handler) {
	t.Helper()
	disk := &brokenDisk{}
	j, err := journal.Open(filepath.Join(t.TempDir(), "j.db"), journal.Options{KioskID: "K1", Currency: "CNY", OpenFile: disk.open})
	if err != nil {
		t.Fatal(err)
	}
	r := diskRig(t, j)
	SetCrashHook(r.e, func(point string) {
		if point == "after-stack-intent" {
			disk.fill(t)
		}
	})
	t.Cleanup(func() { SetCrashHook(r.e, nil) })
	r.start()
	t.Cleanup(r.stop)
	h := r.e.Handler()
	ctx := context.Background()
	h.Event(ctx, acceptor.Event{Kind: acceptor.Disabled})
	r.waitState(Idle)
	if err := r.e.Scan(code("ida", time.Now().Add(time.Minute), "nonceseal01")); err != nil {
		t.Fatal(err)
	}
	r.waitState(Accepting)
	if d := h.Escrow(ctx, note(0x62)); d != acceptor.Return {
		t.Fatalf("escrow with the intent unsealed: %v, want the note sent back", d)
	}
	if !r.health.Has("journal_failure") {
		t.Fatalf("conditions %+v, want the journal failure", r.health.Active())
	}
	return r, disk, h
}

// finishEmpty ends the session (the customer presses finish, unless the journal failure
// already closes it), lets the close and the receipt run, and returns what the close left:
// the open intents, the uncertain items and the cassette.
func finishEmpty(t *testing.T, r *rig, h acceptor.Handler) ([]journal.Intent, []journal.Uncertain, journal.Cassette) {
	t.Helper()
	if r.e.State() == Accepting {
		if err := r.e.Finish(); err != nil {
			t.Fatal(err)
		}
	}
	h.Event(context.Background(), acceptor.Event{Kind: acceptor.Disabled})
	time.Sleep(5 * time.Minute)
	synctest.Wait()
	if st := r.e.State(); st != Idle {
		t.Fatalf("state %v five minutes after the finish, want idle", st)
	}
	in, err := r.j.OpenIntents()
	if err != nil {
		t.Fatal(err)
	}
	u, err := r.j.UncertainItems()
	if err != nil {
		t.Fatal(err)
	}
	c, err := r.j.Cassette()
	if err != nil {
		t.Fatal(err)
	}
	return in, u, c
}

// TestSentBackNoteSettledReturned: the stack intent was journaled, its seal failed, so the
// note went back. The journal works again before the unit reports the note returned: the
// intent is settled as returned, and the session closes with nothing credited, nothing
// uncertain, nothing in the cassette.
func TestSentBackNoteSettledReturned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, disk, h := sealFailsRig(t)
		disk.free(t)
		h.Event(context.Background(), acceptor.Event{Kind: acceptor.Returned})
		in, u, c := finishEmpty(t, r, h)
		if len(in) != 0 || len(u) != 0 || c.Count != 0 {
			t.Fatalf("open intents %+v, uncertain %+v, cassette %+v: want the intent settled returned", in, u, c)
		}
		if ob, _ := r.j.Outbox(); len(ob) != 0 {
			t.Fatalf("outbox %+v: the returned note was credited", ob)
		}
	})
}

// TestSentBackNoteUncertainWhileJournalFails: the same, but the journal still fails when
// the unit reports the note returned, so nothing can settle the intent then. It is not
// credited; once the journal works, the close makes it an uncertain item for the cash
// count (a note the unit may hold), never a credit.
func TestSentBackNoteUncertainWhileJournalFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, disk, h := sealFailsRig(t)
		h.Event(context.Background(), acceptor.Event{Kind: acceptor.Returned})
		synctest.Wait()
		disk.free(t)
		in, u, c := finishEmpty(t, r, h)
		if len(in) != 0 || len(u) != 1 || u[0].ValueMinor != 5000 || c.Count != 0 {
			t.Fatalf("open intents %+v, uncertain %+v, cassette %+v: want one uncertain item of 5000", in, u, c)
		}
		// The session's top-up credits nothing and carries the item to the ledger's suspense.
		if ob, _ := r.j.Outbox(); len(ob) != 1 || ob[0].AmountMinor != 0 {
			t.Fatalf("outbox %+v: want one top-up of 0 for the session", ob)
		}
	})
}
