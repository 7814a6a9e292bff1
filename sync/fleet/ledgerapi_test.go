package fleet

import (
	"context"
	"crypto/ed25519"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/kioskd/kioskd/sync/ledger"
	"github.com/kioskd/kioskd/sync/wire"
)

// TestRecentTopupsFromRealLedger reads the reference ledger's own HTTP API (no MQTT needed):
// the client's idea of /api/kiosks and /api/topups is the ledger's.
func TestRecentTopupsFromRealLedger(t *testing.T) {
	store, err := ledger.OpenBolt(filepath.Join(t.TempDir(), "ledger.db"), ledger.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	at := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	for seq := uint64(1); seq <= 4; seq++ {
		tp := wire.Topup{V: 1, TopupID: wire.TopupID("K1", 0xabc, seq), KioskID: "K1", Seq: seq, Account: "demo_alice", Currency: "CNY",
			AmountMinor: 10000, Notes: []wire.NoteLine{{ValueMinor: 10000, Count: 1}}, OpenedAt: at, ClosedAt: at, ReceiptNo: 100 + seq, Outcome: wire.OutcomeComplete}
		if _, err := store.Apply(tp, ledger.Checks{Day: "2026-12-01"}); err != nil {
			t.Fatal(err)
		}
	}
	_, key, _ := ed25519.GenerateKey(nil)
	l, err := ledger.New(ledger.Config{Store: store, Signer: wire.Signer{KID: "l1", Key: key}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(l.Handler())
	defer srv.Close()
	got, err := (&LedgerClient{Base: srv.URL}).RecentTopups(context.Background(), "K1", 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Seq != 4 || got[2].Seq != 2 || got[0].ReceiptNo != 104 || got[0].AmountMinor != 10000 || got[0].Account != "de***ce" || got[0].LedgerRef == "" {
		t.Fatalf("recent top-ups %+v", got)
	}
	if none, err := (&LedgerClient{Base: srv.URL}).RecentTopups(context.Background(), "K2", 3); err != nil || len(none) != 0 {
		t.Errorf("unknown kiosk: %+v %v", none, err)
	}
}
