package mosqtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kioskd/kioskd/kiosk/qrpay"
	"github.com/kioskd/kioskd/sync/ledger"
	"github.com/kioskd/kioskd/sync/mqttc"
	"github.com/kioskd/kioskd/sync/wire"
)

// Attacks on the shipped broker configuration (deploy/mosquitto) with certificates made by
// deploy/dev-pki.sh, by someone who holds one kiosk's certificate (DESIGN.md §11).

func (b *Broker) addr() string { return fmt.Sprintf("127.0.0.1:%d", b.Port) }

// connect connects as cn (with cn's certificate) using clientID, failing the test if refused.
func connect(t *testing.T, b *Broker, cn, clientID string) *rawClient {
	t.Helper()
	c, err := rawConnect(t, b.addr(), b.ClientTLS(cn), clientID)
	if err != nil {
		t.Fatalf("%s as %q: %v\n%s", cn, clientID, err, b.Logs())
	}
	return c
}

// expectFirst reads the next delivery and fails unless it is the marker: anything before it
// got through the ACL.
func expectFirst(t *testing.T, c *rawClient, topic, marker string) {
	t.Helper()
	m := c.next()
	if m.Topic != topic || string(m.Payload) != marker {
		t.Fatalf("received %s %q before the marker %s %q: the ACL let it through", m.Topic, m.Payload, topic, marker)
	}
}

func TestShippedConfigDirectives(t *testing.T) {
	raw, err := os.ReadFile(ShippedConf())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && !strings.HasPrefix(f[0], "#") {
			got[f[0]] = f[1]
		}
	}
	for k, v := range map[string]string{"use_identity_as_username": "true", "use_username_as_clientid": "true",
		"require_certificate": "true", "allow_anonymous": "false", "persistence": "true",
		"message_size_limit": strconv.Itoa(wire.MaxPayload)} {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	// Room for the largest legitimate payload plus topic and header, not much more.
	if n, _ := strconv.Atoi(got["max_packet_size"]); n <= wire.MaxPayload || n > wire.MaxPayload+4096 {
		t.Errorf("max_packet_size %d: want a little above %d", n, wire.MaxPayload)
	}
	for _, k := range []string{"crlfile", "acl_file", "cafile"} {
		if got[k] == "" {
			t.Errorf("no %s", k)
		}
	}
}

func TestRenderConfNeedsEachDirectiveOnce(t *testing.T) {
	if _, err := RenderConf([]byte("listener 1\nlistener 2\n"), map[string]string{"listener": "3"}); err == nil {
		t.Error("two listeners accepted")
	}
	if _, err := RenderConf([]byte("# crlfile x\n"), map[string]string{"crlfile": "y"}); err == nil {
		t.Error("a commented-out directive counted")
	}
	out, err := RenderConf([]byte("a 1\ncafile /etc/x # c\n"), map[string]string{"cafile": "/tmp/ca.pem"})
	if err != nil || string(out) != "a 1\ncafile /tmp/ca.pem\n" {
		t.Errorf("%q %v", out, err)
	}
}

func TestBrokerRefusesWhoItCannotIdentify(t *testing.T) {
	b := Start(t, Options{})
	if _, err := rawConnect(t, b.addr(), b.NoCertTLS(), "K1"); !errors.Is(err, errRefused) {
		t.Errorf("no client certificate: %v", err)
	}
	// A certificate from another CA, even with the ledger's CN.
	if _, err := rawConnect(t, b.addr(), b.ForeignTLS(LedgerCN), LedgerCN); !errors.Is(err, errRefused) {
		t.Errorf("foreign CA: %v", err)
	}
	// A stolen kiosk's certificate, once revoked, no longer connects; others still do.
	stolen := b.ClientTLS("K9")
	connect(t, b, "K9", "K9")
	b.Revoke("K9")
	if _, err := rawConnect(t, b.addr(), stolen, "K9"); !errors.Is(err, errRefused) {
		t.Errorf("revoked certificate: %v", err)
	}
	connect(t, b, "K1", "K1")
}

func TestClientIDTakeoverRefused(t *testing.T) {
	b := Start(t, Options{})
	led := connect(t, b, LedgerCN, LedgerCN)
	k1 := connect(t, b, "K1", "K1")
	// The attacker's connection is accepted, but under its own identity: the sessions it
	// names stay connected.
	for i := range 3 {
		connect(t, b, "K3", LedgerCN)
		connect(t, b, "K3", "K1")
		if err := led.ping(); err != nil {
			t.Fatalf("attempt %d: the ledger was disconnected: %v", i, err)
		}
		if err := k1.ping(); err != nil {
			t.Fatalf("attempt %d: K1 was disconnected: %v", i, err)
		}
	}
	// And posing as the ledger gives no ledger rights.
	fake := connect(t, b, "K3", LedgerCN)
	fake.subscribe("kiosk/+/up/#")
	fake.subscribe("kiosk/K3/down/#")
	if err := k1.publish(wire.Topic("K1", wire.UpTopup), []byte(`{"secret":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := led.publish(wire.Topic("K3", wire.DownAck), []byte("marker")); err != nil {
		t.Fatal(err)
	}
	expectFirst(t, fake, wire.Topic("K3", wire.DownAck), "marker")
}

func TestACLConfinesKiosksLedgerAndConsole(t *testing.T) {
	b := Start(t, Options{})
	led := connect(t, b, LedgerCN, "any")
	fleet := connect(t, b, FleetCN, "any")
	k1, k2 := connect(t, b, "K1", "K1"), connect(t, b, "K2", "K2")
	led.subscribe("kiosk/+/up/#")
	k1.subscribe("kiosk/K1/down/#")
	k2.subscribe("kiosk/K2/down/#")
	// K1 also tries to read K2's traffic both ways.
	k1.subscribe("kiosk/K2/down/#")
	k1.subscribe("kiosk/K2/up/#")
	k1.subscribe("kiosk/+/up/#")

	pub := func(c *rawClient, topic, payload string) {
		t.Helper()
		if err := c.publish(topic, []byte(payload)); err != nil {
			t.Fatalf("publish %s: %v", topic, err)
		}
	}
	// Cross-kiosk publish: K2 posts a top-up as K1.
	pub(k2, wire.Topic("K1", wire.UpTopup), "forged by K2")
	pub(k2, wire.Topic("K2", wire.UpHeartbeat), "marker-up")
	expectFirst(t, led, wire.Topic("K2", wire.UpHeartbeat), "marker-up")
	// K1 read only its own: the ledger's answer to K2 and K2's heartbeat did not reach it.
	pub(led, wire.Topic("K2", wire.DownAck), "ack for K2")
	expectFirst(t, k2, wire.Topic("K2", wire.DownAck), "ack for K2")
	pub(led, wire.Topic("K1", wire.DownAck), "marker-k1")
	expectFirst(t, k1, wire.Topic("K1", wire.DownAck), "marker-k1")

	// A kiosk publishing down/: a forged ack to itself or to another, a forged command.
	pub(k1, wire.Topic("K1", wire.DownAck), "forged ack")
	pub(k1, wire.Topic("K2", wire.DownAck), "forged ack")
	pub(k1, wire.Topic("K2", wire.DownCmd), "forged cmd")
	// The ledger sends no commands, the console no acks.
	pub(led, wire.Topic("K2", wire.DownCmd), "ledger cmd")
	pub(fleet, wire.Topic("K2", wire.DownAck), "console ack")
	pub(fleet, wire.Topic("K2", wire.DownCmd), "marker-cmd")
	expectFirst(t, k2, wire.Topic("K2", wire.DownCmd), "marker-cmd")
	pub(led, wire.Topic("K1", wire.DownAuthz), "marker-authz")
	expectFirst(t, k1, wire.Topic("K1", wire.DownAuthz), "marker-authz")

	// The console reads the fleet.
	fleet.subscribe("kiosk/+/up/#")
	pub(k1, wire.Topic("K1", wire.UpStatus), "online")
	expectFirst(t, fleet, wire.Topic("K1", wire.UpStatus), "online")
}

// mosquitto 2.0's acl_file does not check subscriptions, only deliveries. A kiosk can
// therefore join a shared subscription whose group it knows ("$share/ledger/..."): the broker
// then hands it its round-robin share of the top-ups and the ACL drops them, so the ledgers
// never see them (measured here: 2 of 6 lost with two ledgers and one thief). Kiosks retry
// until acked, so no money is lost, but a stolen key could starve the ledger. With mosquitto
// the ledger therefore subscribes without a share (ledgerd -plain-topup-subscription), as here:
// every top-up reaches it whatever a kiosk subscribes to.
func TestKioskCannotStarveTheLedger(t *testing.T) {
	b := Start(t, Options{})
	led := connect(t, b, LedgerCN, "x")
	k1, thief := connect(t, b, "K1", "K1"), connect(t, b, "K2", "K2")
	led.subscribe(wire.Topic("+", wire.UpTopup))
	thief.subscribe(wire.LedgerTopupShare)
	thief.subscribe("$share/x/kiosk/+/up/topup")
	thief.subscribe("kiosk/+/up/topup")
	thief.subscribe("#")
	const n = 6
	for i := range n {
		if err := k1.publish(wire.Topic("K1", wire.UpTopup), fmt.Appendf(nil, "topup-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		expectFirst(t, led, wire.Topic("K1", wire.UpTopup), fmt.Sprintf("topup-%d", i))
	}
	// And the thief got none of them.
	if err := led.publish(wire.Topic("K2", wire.DownAck), []byte("marker")); err != nil {
		t.Fatal(err)
	}
	expectFirst(t, thief, wire.Topic("K2", wire.DownAck), "marker")
}

func TestOversizedPublishRefused(t *testing.T) {
	b := Start(t, Options{})
	led := connect(t, b, LedgerCN, LedgerCN)
	led.subscribe("kiosk/+/up/#")
	topic := wire.Topic("K1", wire.UpTopup)

	// The largest payload the ledger parses gets through.
	k1 := connect(t, b, "K1", "K1")
	max := bytes.Repeat([]byte("a"), wire.MaxPayload)
	if err := k1.publish(topic, max); err != nil {
		t.Fatal(err)
	}
	if m := led.next(); len(m.Payload) != wire.MaxPayload {
		t.Fatalf("got %d bytes, want %d", len(m.Payload), wire.MaxPayload)
	}
	// One byte more is dropped.
	if err := k1.publish0(topic, append(max, 'b')); err != nil {
		t.Fatal(err)
	}
	if err := k1.publish(topic, []byte("marker-1")); err != nil {
		t.Fatal(err)
	}
	expectFirst(t, led, topic, "marker-1")
	// Ten megabytes: the broker hangs up before reading it all.
	err := k1.publish0(topic, bytes.Repeat([]byte("x"), 10<<20))
	if err == nil {
		err = k1.ping()
	}
	if err == nil {
		t.Fatal("a 10 MB publish was accepted")
	}
	k1 = connect(t, b, "K1", "K1")
	if err := k1.publish(topic, []byte("marker-2")); err != nil {
		t.Fatal(err)
	}
	expectFirst(t, led, topic, "marker-2")
}

// Forged top-ups through the real broker to the reference ledger: never credited, held.
func TestForgedTopupsOverRealBroker(t *testing.T) {
	b := Start(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lpub, lpriv, _ := ed25519.GenerateKey(nil)
	wpub, wpriv, _ := ed25519.GenerateKey(nil)
	_, otherWallet, _ := ed25519.GenerateKey(nil)
	store, err := ledger.OpenBolt(filepath.Join(t.TempDir(), "l.db"), ledger.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	strict := true
	led, err := ledger.New(ledger.Config{MQTT: mqttc.Config{Brokers: []string{b.URL()}, ClientID: LedgerCN, TLS: b.ClientTLS(LedgerCN)},
		PlainTopupSubscription: true, // see TestKioskCannotStarveTheLedger
		Store:                  store, Signer: wire.Signer{KID: "l1", Key: lpriv}, WalletKeys: map[string]ed25519.PublicKey{"w1": wpub},
		Policy: ledger.Fleet{Kiosks: map[string]ledger.Override{"K1": {StrictEpochs: &strict}}}})
	if err != nil {
		t.Fatal(err)
	}
	lctx, lcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- led.Run(lctx) }()
	defer func() { lcancel(); <-done }()
	select {
	case <-led.Ready():
	case <-ctx.Done():
		t.Fatalf("ledger not ready: %s", b.Logs())
	}

	k1, k2 := connect(t, b, "K1", "K1"), connect(t, b, "K2", "K2")
	k1.subscribe(wire.Topic("K1", "down/#"))
	k2.subscribe(wire.Topic("K2", "down/#"))
	ring := wire.Keyring{"l1": lpub}
	send := func(k *rawClient, tp wire.Topup) wire.Ack {
		t.Helper()
		raw, _ := json.Marshal(tp)
		if err := k.publish(wire.Topic(tp.KioskID, wire.UpTopup), raw); err != nil {
			t.Fatal(err)
		}
		m := k.next()
		var a wire.Ack
		if _, err := ring.Open(m.Payload, &a); err != nil || a.TopupID != tp.TopupID {
			t.Fatalf("ack on %s: %+v %v", m.Topic, a, err)
		}
		return a
	}
	now := time.Now().UTC()
	seq := uint64(0)
	mk := func(kiosk string, epoch uint64, account string, notes ...wire.NoteLine) wire.Topup {
		seq++
		tp := wire.Topup{V: 1, TopupID: wire.TopupID(kiosk, epoch, seq), KioskID: kiosk, Seq: seq, Account: account,
			Currency: "CNY", Notes: notes, OpenedAt: now, ClosedAt: now, ReceiptNo: seq, Outcome: wire.OutcomeComplete,
			QR: qrpay.Sign(wpriv, "w1", account, now.Add(5*time.Minute), fmt.Sprintf("nonce%04d", seq))}
		for _, n := range notes {
			tp.AmountMinor += n.ValueMinor * n.Count
		}
		return tp
	}

	// The 100,000,000.00 CNY mint of the first attack, as it was sent (no proof).
	mint := mk("K1", 0xbadbad, "mallory", wire.NoteLine{ValueMinor: 100_000_000, Count: 100})
	mint.QR = ""
	if a := send(k1, mint); a.Status != wire.AckHeld || a.Reason != ledger.HoldQRMissing {
		t.Errorf("mint: %+v", a)
	}
	// K2 is not strict: a genuine top-up is credited (and its new epoch alarmed).
	genuine := mk("K2", 1, "alice", wire.NoteLine{ValueMinor: 10000, Count: 2})
	if a := send(k2, genuine); a.Status != wire.AckCredited {
		t.Fatalf("genuine: %+v", a)
	}
	for name, tc := range map[string]struct {
		tp     wire.Topup
		reason string
	}{
		"bad proof": {func() wire.Topup {
			tp := mk("K2", 1, "mallory", wire.NoteLine{ValueMinor: 10000, Count: 1})
			tp.QR = qrpay.Sign(otherWallet, "w1", "mallory", now.Add(time.Minute), "forged01")
			return tp
		}(), ledger.HoldQRInvalid},
		"reused proof": {func() wire.Topup {
			tp := mk("K2", 1, "alice", wire.NoteLine{ValueMinor: 10000, Count: 2})
			tp.QR = genuine.QR
			return tp
		}(), ledger.HoldQRReused},
		"no such note":      {mk("K2", 1, "mallory", wire.NoteLine{ValueMinor: 300, Count: 1}), ledger.HoldDenomination},
		"over the maximum":  {mk("K2", 1, "mallory", wire.NoteLine{ValueMinor: 10000, Count: 60}), ledger.HoldOverMax},
		"mint with a proof": {mk("K2", 1, "mallory", wire.NoteLine{ValueMinor: 100_000_000, Count: 100}), ledger.HoldOverMax},
		"unknown epoch (strict)": {mk("K1", 0xfeed, "mallory", wire.NoteLine{ValueMinor: 10000, Count: 1}),
			ledger.HoldUnknownEpoch},
	} {
		k := k2
		if tc.tp.KioskID == "K1" {
			k = k1
		}
		if a := send(k, tc.tp); a.Status != wire.AckHeld || a.Reason != tc.reason {
			t.Errorf("%s: %+v, want held %s", name, a, tc.reason)
		}
	}
	if _, err := store.Account("mallory"); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("mallory was credited: %v", err)
	}
	if info, err := store.Account("alice"); err != nil || info.Balances["CNY"] != 20000 {
		t.Errorf("alice %+v %v", info, err)
	}
	held, err := store.Held(ledger.HeldOpen)
	if err != nil || len(held) != 7 {
		t.Errorf("%d held, want 7: %v", len(held), err)
	}

	// Authz without a proof says nothing about the account.
	req, _ := json.Marshal(wire.AuthzRequest{V: 1, ReqID: "r1", Account: "alice"})
	if err := k1.publish(wire.Topic("K1", wire.UpAuthz), req); err != nil {
		t.Fatal(err)
	}
	var r wire.AuthzResponse
	if _, err := ring.Open(k1.next().Payload, &r); err != nil || r.Status != wire.AuthzDenied || r.Reason != ledger.ReasonNoProof || r.NameMasked != "" {
		t.Errorf("authz without proof: %+v %v", r, err)
	}
}
