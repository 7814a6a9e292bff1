package ledger

import (
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/kioskd/kioskd/sync/wire"
)

// FuzzHandlers feeds arbitrary payloads to every MQTT handler (the first byte picks which),
// with a real store and no broker: nothing may panic, and nothing may be credited unless it
// is a valid top-up from the kiosk named in its topic.
func FuzzHandlers(f *testing.F) {
	valid := mustJSONf(f, topup("K1", 1, 1, "alice", 100))
	f.Add(append([]byte{0}, valid...))
	f.Add(append([]byte{0}, mustJSONf(f, topup("K2", 1, 1, "alice", 100))...))
	f.Add(append([]byte{1}, `{"v":1,"req_id":"r1","account":"alice","qr_nonce":"n"}`...))
	f.Add(append([]byte{2}, `{"v":1,"state":"online","at":"2026-01-01T00:00:00Z"}`...))
	f.Add(append([]byte{3}, `{"v":1,"outbox_depth":3,"devices":{"acceptor":"ok"}}`...))
	f.Add(append([]byte{4}, `{"v":1,"alarm_id":"a","kind":"jam","cleared":true}`...))
	f.Add(append([]byte{5}, `{"v":1,"cmd_id":"c","status":"failed","reason":"x"}`...))
	f.Add([]byte{0, '{'})
	noProof := topup("K1", 1, 2, "mallory", 100)
	noProof.QR = ""
	f.Add(append([]byte{0}, mustJSONf(f, noProof)...))

	store, err := OpenBolt(filepath.Join(f.TempDir(), "fuzz.db"), Options{Timeout: time.Second, NoSync: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { store.Close() })
	l, err := New(Config{Store: store, Signer: testSigner, WalletKeys: testWallet})
	if err != nil {
		f.Fatal(err)
	}
	handlers := []struct {
		suffix string
		h      func(string, []byte)
	}{
		{wire.UpTopup, l.handleTopup}, {wire.UpAuthz, l.handleAuthz}, {wire.UpStatus, l.handleStatus},
		{wire.UpHeartbeat, l.handleHeartbeat}, {wire.UpAlarm, l.handleAlarm}, {wire.UpCmdResult, l.handleCmdResult},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		h := handlers[int(data[0])%len(handlers)]
		before := l.Stats().Credited
		h.h(wire.Topic("K1", h.suffix), data[1:])
		if l.Stats().Credited == before {
			return
		}
		var tp wire.Topup
		if err := wire.Decode(data[1:], &tp); err != nil || tp.Validate() != nil || tp.KioskID != "K1" {
			t.Fatalf("credited an invalid or foreign top-up: %q", data)
		}
		if _, reason := verifyQR(testWallet, tp.QR, tp.Account); reason != "" {
			t.Fatalf("credited without a valid proof (%s): %q", reason, data)
		}
		rec, err := store.Topup(tp.TopupID)
		if err != nil || rec.ContentHash != tp.ContentHash() {
			t.Fatalf("credit not stored as received: %v", err)
		}
	})
}

func mustJSONf(f *testing.F, v any) []byte {
	f.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		f.Fatal(err)
	}
	return b
}
