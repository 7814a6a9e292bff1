package uplink

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/sync/wire"
)

func (f *fakeClient) collections() []pub {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []pub
	for _, p := range f.pubs {
		if strings.HasSuffix(p.topic, wire.UpCollection) {
			out = append(out, p)
		}
	}
	return out
}

// A collection record goes out after the top-up its uncertain item belongs to has been
// acked, is resent with the same bytes until the ledger's signed ack, and a forged ack
// changes nothing.
func TestCollectionOutbox(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newURig(t, 0, 4)
		j := r.j
		s, _ := j.OpenSession(journal.OpenSessionParams{Account: "acct", LimitMinor: 100000})
		in, _ := j.StackIntent(s.ID, journal.Note{ValueMinor: 5000})
		j.CreditNote(in.ID, journal.Note{}, "")
		j.StackIntent(s.ID, journal.Note{ValueMinor: 2000}) // its note becomes uncertain
		if _, err := j.CloseSession(journal.CloseParams{SessionID: s.ID, Outcome: wire.OutcomeInterrupted}); err != nil {
			t.Fatal(err)
		}
		j.StartCollection("alice", "")
		j.CollectionCassetteOut("collector")
		j.CountCollection([]journal.NoteLine{{ValueMinor: 5000, Count: 1}, {ValueMinor: 2000, Count: 1}})
		c, err := j.RecordCollection()
		if err != nil {
			t.Fatal(err)
		}
		r.u.Kick()
		synctest.Wait()
		if n := len(r.c.collections()); n != 0 {
			t.Fatalf("collection published before its item's top-up was acked: %d", n)
		}
		tp := r.c.topups()
		var w wire.Topup
		if err := wire.Decode(tp[0].payload, &w); err != nil {
			t.Fatal(err)
		}
		r.ack(t, w.TopupID, wire.AckCredited, w.AmountMinor)
		synctest.Wait()
		ps := r.c.collections()
		if len(ps) != 1 || string(ps[0].payload) != string(c.Payload) {
			t.Fatalf("published %d collections", len(ps))
		}
		time.Sleep(2 * time.Second) // past the first backoff: sent again, same bytes
		synctest.Wait()
		if ps := r.c.collections(); len(ps) < 2 || string(ps[1].payload) != string(c.Payload) {
			t.Fatalf("no resend with the same bytes: %d", len(ps))
		}
		forged, _ := wire.Signer{KID: "l1", Key: make([]byte, 64)}.Seal(wire.CollectionAck{V: 1, CollectionID: c.ID, Status: wire.CollectionStored})
		r.c.deliver(wire.Topic("K1", wire.DownCollectionAck), forged)
		if box, _ := j.CollectionOutbox(); len(box) != 1 {
			t.Fatal("a forged ack emptied the collection outbox")
		}
		good, err := ledger.Seal(wire.CollectionAck{V: 1, CollectionID: c.ID, Status: wire.CollectionStored, LedgerRef: "CO1"})
		if err != nil {
			t.Fatal(err)
		}
		r.c.deliver(wire.Topic("K1", wire.DownCollectionAck), good)
		if box, _ := j.CollectionOutbox(); len(box) != 0 {
			t.Fatalf("outbox after the ack: %+v", box)
		}
		synctest.Wait()
		n := len(r.c.collections())
		time.Sleep(time.Hour)
		synctest.Wait()
		if got := len(r.c.collections()); got != n {
			t.Fatalf("published after the ack: %d -> %d", n, got)
		}
	})
}
