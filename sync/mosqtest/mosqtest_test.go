package mosqtest

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/kioskd/kioskd/kiosk/qrpay"

	"github.com/kioskd/kioskd/sync/ledger"
	"github.com/kioskd/kioskd/sync/mqttc"
	"github.com/kioskd/kioskd/sync/wire"
)

// TestLedgerOverMosquittoTLSACL runs the reference ledger and two kiosk clients against a real
// mosquitto with client certificates and the production ACL.
func TestLedgerOverMosquittoTLSACL(t *testing.T) {
	b := Start(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pub, priv, _ := ed25519.GenerateKey(nil)
	wpub, wpriv, _ := ed25519.GenerateKey(nil)
	store, err := ledger.OpenBolt(filepath.Join(t.TempDir(), "l.db"), ledger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	led, err := ledger.New(ledger.Config{MQTT: mqttc.Config{Brokers: []string{b.URL()}, ClientID: LedgerCN, TLS: b.ClientTLS(LedgerCN)},
		PlainTopupSubscription: true, // as deployed with mosquitto: see TestKioskCannotStarveTheLedger
		Store:                  store, Signer: wire.Signer{KID: "l1", Key: priv}, WalletKeys: map[string]ed25519.PublicKey{"w1": wpub}})
	if err != nil {
		t.Fatal(err)
	}
	lctx, lcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- led.Run(lctx) }()
	defer func() { lcancel(); <-done }()
	<-led.Ready()

	dial := func(id string) *mqttc.Client {
		c, err := mqttc.Dial(mqttc.Config{Brokers: []string{b.URL()}, ClientID: id, TLS: b.ClientTLS(id)})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.WaitConnected(ctx); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		t.Cleanup(func() { c.Close(50 * time.Millisecond) })
		return c
	}
	k1, k2 := dial("K1"), dial("K2")
	acks := make(chan []byte, 10)
	if err := k1.Subscribe(ctx, wire.Topic("K1", wire.DownAck), 1, func(_ string, p []byte) { acks <- p }); err != nil {
		t.Fatal(err)
	}
	stolen := make(chan []byte, 10)
	// K2 tries to read K1's acks: the ACL must deny it (mosquitto acknowledges the
	// subscription but delivers nothing).
	k2.Subscribe(ctx, wire.Topic("K1", wire.DownAck), 1, func(_ string, p []byte) { stolen <- p })

	now := time.Now().UTC()
	mk := func(kiosk string, seq uint64) []byte {
		tp := wire.Topup{V: 1, TopupID: wire.TopupID(kiosk, 1, seq), KioskID: kiosk, Seq: seq, Account: "alice", Currency: "CNY",
			AmountMinor: 5000, Notes: []wire.NoteLine{{ValueMinor: 5000, Count: 1}}, OpenedAt: now, ClosedAt: now, ReceiptNo: seq, Outcome: wire.OutcomeComplete,
			QR: qrpay.Sign(wpriv, "w1", "alice", now.Add(time.Minute), fmt.Sprintf("nonce%s%04d", kiosk, seq))}
		b, _ := marshal(tp)
		return b
	}
	// K2 forges a top-up on K1's topic: dropped by the broker's ACL.
	k2.Publish(ctx, wire.Topic("K1", wire.UpTopup), 1, false, mk("K1", 7))
	// K1's own top-up is credited and acked.
	if err := k1.Publish(ctx, wire.Topic("K1", wire.UpTopup), 1, false, mk("K1", 1)); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-acks:
		var a wire.Ack
		if _, err := (wire.Keyring{"l1": pub}).Open(p, &a); err != nil || a.Status != wire.AckCredited || a.TopupID != wire.TopupID("K1", 1, 1) {
			t.Fatalf("ack %+v %v", a, err)
		}
	case <-ctx.Done():
		t.Fatalf("no ack: %s", b.Logs())
	}
	if _, err := store.Topup(wire.TopupID("K1", 1, 7)); err == nil {
		t.Fatal("the forged top-up on another kiosk's topic reached the ledger")
	}
	select {
	case p := <-stolen:
		t.Fatalf("K2 read K1's ack: %s", p)
	default:
	}
}
