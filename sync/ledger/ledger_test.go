package ledger

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kioskd/kioskd/sync/broker"
	"github.com/kioskd/kioskd/sync/mqttc"
	"github.com/kioskd/kioskd/sync/wire"
)

const wait = 10 * time.Second

// testKey is the ledger signing key every test uses; kiosks verify with testRing.
var (
	testPub, testPriv, _ = ed25519.GenerateKey(nil)
	testRing             = wire.Keyring{"ledger-test": testPub}
	testSigner           = wire.Signer{KID: "ledger-test", Key: testPriv}
)

func startBroker(t testing.TB) *broker.Broker {
	t.Helper()
	b, err := broker.Start(t.Context(), broker.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// runLedger starts a Ledger on the broker and waits until it is subscribed. stop ends it
// and waits for Run to return; it also runs at cleanup.
func runLedger(t testing.TB, b *broker.Broker, store Store, id string, mutate func(*Config)) (l *Ledger, stop func()) {
	t.Helper()
	cfg := Config{
		MQTT:       mqttc.Config{Brokers: []string{b.URL()}, ClientID: id, MaxReconnectInterval: 500 * time.Millisecond},
		Store:      store,
		Signer:     testSigner,
		WalletKeys: testWallet,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- l.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-errc:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(wait):
				t.Error("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	select {
	case <-l.Ready():
	case err := <-errc:
		t.Fatalf("Run: %v", err)
	case <-time.After(wait):
		t.Fatal("ledger not ready")
	}
	return l, stop
}

// kiosk is a test kiosk: it publishes top-ups and authz requests, and verifies every signed
// answer with the ledger's public key.
type kiosk struct {
	t     testing.TB
	id    string
	c     *mqttc.Client
	acks  chan wire.Ack
	authz chan wire.AuthzResponse
}

func newKiosk(t testing.TB, b *broker.Broker, id string) *kiosk {
	t.Helper()
	c, err := mqttc.Dial(mqttc.Config{Brokers: []string{b.URL()}, ClientID: id})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(0) })
	k := &kiosk{t: t, id: id, c: c, acks: make(chan wire.Ack, 1000), authz: make(chan wire.AuthzResponse, 100)}
	if err := c.WaitConnected(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	err = c.Subscribe(ctxT(t), wire.Topic(id, "down/#"), 1, func(topic string, p []byte) {
		switch {
		case strings.HasSuffix(topic, wire.DownAck):
			var a wire.Ack
			if _, err := testRing.Open(p, &a); err != nil {
				t.Errorf("%s: ack does not verify: %v", id, err)
				return
			}
			if err := a.Validate(); err != nil {
				t.Errorf("%s: invalid ack: %v", id, err)
			}
			k.acks <- a
		case strings.HasSuffix(topic, wire.DownAuthz):
			var r wire.AuthzResponse
			if _, err := testRing.Open(p, &r); err != nil {
				t.Errorf("%s: authz does not verify: %v", id, err)
				return
			}
			if err := r.Validate(); err != nil {
				t.Errorf("%s: invalid authz: %v", id, err)
			}
			k.authz <- r
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	t.Cleanup(cancel)
	return ctx
}

func (k *kiosk) publish(suffix string, v any) {
	k.t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		k.t.Fatal(err)
	}
	k.publishRaw(wire.Topic(k.id, suffix), raw)
}

func (k *kiosk) publishRaw(topic string, raw []byte) {
	k.t.Helper()
	if err := k.c.Publish(ctxT(k.t), topic, 1, false, raw); err != nil {
		k.t.Fatal(err)
	}
}

func (k *kiosk) ack() wire.Ack {
	k.t.Helper()
	select {
	case a := <-k.acks:
		return a
	case <-time.After(wait):
		k.t.Fatalf("%s: no ack", k.id)
		return wire.Ack{}
	}
}

func (k *kiosk) noAck() {
	k.t.Helper()
	select {
	case a := <-k.acks:
		k.t.Errorf("%s: unexpected ack %+v", k.id, a)
	default:
	}
}

func (k *kiosk) topup(tp wire.Topup, want string) wire.Ack {
	k.t.Helper()
	k.publish(wire.UpTopup, tp)
	a := k.ack()
	if a.TopupID != tp.TopupID || a.Status != want {
		k.t.Fatalf("ack %+v, want %s for %s", a, want, tp.TopupID)
	}
	return a
}

func TestTopupCreditedOnceAndAckedSigned(t *testing.T) {
	b := startBroker(t)
	store := openStore(t, "", nil)
	l, _ := runLedger(t, b, store, "ledger-1", nil)
	k := newKiosk(t, b, "K1")

	tp := topup("K1", 0xabc, 1, "alice_01", 15000)
	a1 := k.topup(tp, wire.AckCredited)
	if a1.AmountMinor != 15000 || a1.Currency != "CNY" || a1.LedgerRef == "" || a1.AckedThroughSeq != 1 || a1.V != 1 {
		t.Errorf("credited ack: %+v", a1)
	}
	a2 := k.topup(tp, wire.AckDuplicate)
	if a2.LedgerRef != a1.LedgerRef || a2.AmountMinor != 15000 || a2.AckedThroughSeq != 1 {
		t.Errorf("duplicate ack: %+v", a2)
	}
	conflicting := topup("K1", 0xabc, 1, "alice_01", 25000)
	a3 := k.topup(conflicting, wire.AckConflict)
	if a3.AmountMinor != 25000 || a3.LedgerRef != a1.LedgerRef {
		t.Errorf("conflict ack must echo the received amount: %+v", a3)
	}
	info, err := store.Account("alice_01")
	if err != nil || info.Balances["CNY"] != 15000 || info.TopupCount != 1 {
		t.Errorf("account: %+v %v", info, err)
	}
	// The kiosk can see an ack before the ledger's Publish has its PUBACK and counts it.
	waitFor(t, "3 publishes counted", func() bool { return l.Stats().Published == 3 })
	st := l.Stats()
	if st.Credited != 1 || st.Duplicates != 1 || st.Conflicts != 1 || !st.MQTTConnected {
		t.Errorf("stats: %+v", st)
	}
}

func TestDuplicateDeliveriesInFlight(t *testing.T) {
	// The same top-up delivered twice at once (a retry racing the first delivery) on a
	// ledger with several workers: one credit, one duplicate.
	b := startBroker(t)
	store := openStore(t, "", nil)
	runLedger(t, b, store, "ledger-1", func(c *Config) { c.MQTT.Workers = 4 })
	k := newKiosk(t, b, "K1")
	tp := topup("K1", 1, 1, "bob", 5000)
	for range 5 {
		k.publish(wire.UpTopup, tp)
	}
	got := map[string]int{}
	for range 5 {
		got[k.ack().Status]++
	}
	if got[wire.AckCredited] != 1 || got[wire.AckDuplicate] != 4 {
		t.Errorf("statuses %v", got)
	}
	if info, _ := store.Account("bob"); info.Balances["CNY"] != 5000 {
		t.Errorf("balance %d", info.Balances["CNY"])
	}
}

func TestTopupOnAnotherKiosksTopicRefused(t *testing.T) {
	b := startBroker(t)
	store := openStore(t, "", nil)
	l, _ := runLedger(t, b, store, "ledger-1", func(c *Config) { c.MQTT.Workers = 1 })
	victim := newKiosk(t, b, "K1")
	attacker := newKiosk(t, b, "K2")

	attacker.publish(wire.UpTopup, topup("K1", 1, 1, "mallory", 10000)) // K1's top-up on K2's topic
	// The marker from the same client is handled after the forged one (one worker, one
	// publisher, in order), so once its ack is here the forged one has been dealt with.
	attacker.topup(topup("K2", 1, 1, "mallory", 100), wire.AckCredited)
	victim.noAck()
	attacker.noAck()
	if _, err := store.Topup(wire.TopupID("K1", 1, 1)); !errors.Is(err, ErrNotFound) {
		t.Errorf("forged top-up stored: %v", err)
	}
	if info, _ := store.Account("mallory"); info.Balances["CNY"] != 100 {
		t.Errorf("mallory balance %d", info.Balances["CNY"])
	}
	if st := l.Stats(); st.BadTopics != 1 || st.Credited != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestWatermarkThroughAcks(t *testing.T) {
	b := startBroker(t)
	store := openStore(t, "", nil)
	runLedger(t, b, store, "ledger-1", nil)
	k := newKiosk(t, b, "K1")
	for _, step := range []struct {
		epoch, seq, want uint64
	}{{5, 1, 1}, {5, 2, 2}, {5, 4, 2}, {5, 3, 4}, {6, 1, 1}, {6, 3, 1}, {5, 5, 5}} {
		a := k.topup(topup("K1", step.epoch, step.seq, "alice", 100), wire.AckCredited)
		if a.AckedThroughSeq != step.want {
			t.Errorf("epoch %d seq %d: acked_through_seq %d, want %d", step.epoch, step.seq, a.AckedThroughSeq, step.want)
		}
	}
	if a := k.topup(topup("K1", 5, 2, "alice", 100), wire.AckDuplicate); a.AckedThroughSeq != 5 {
		t.Errorf("duplicate: acked_through_seq %d", a.AckedThroughSeq)
	}
}

func TestMalformedPayloadsCountedNoPanic(t *testing.T) {
	b := startBroker(t)
	store := openStore(t, "", nil)
	l, _ := runLedger(t, b, store, "ledger-1", func(c *Config) { c.MQTT.Workers = 1 })
	k := newKiosk(t, b, "K1")

	valid, _ := json.Marshal(topup("K1", 1, 9, "alice", 100))
	missing := strings.Replace(string(valid), `"account":"alice",`, "", 1)
	for _, p := range []string{
		`{not json`,
		`[]`,
		`null`,
		`{"v":1}`,
		missing,
		strings.Replace(string(valid), `"v":1`, `"v":2`, 1),
		strings.Replace(string(valid), `"amount_minor":100`, `"amount_minor":-100`, 1),
		strings.Replace(string(valid), `"amount_minor":100`, `"amount_minor":"100"`, 1),
		strings.Replace(string(valid), `"amount_minor":100`, `"amount_minor":1e400`, 1),
		string(valid) + `{}`,
		`{"v":1,"amount_minor":` + strings.Repeat("9", wire.MaxPayload) + `}`, // oversized
	} {
		k.publishRaw(wire.Topic("K1", wire.UpTopup), []byte(p))
	}
	k.publishRaw("kiosk/K.1/up/topup", valid) // kiosk id with a character ids cannot have
	// One publisher, one subscription, one worker: the marker is handled after all of them.
	k.topup(topup("K1", 1, 1, "alice", 100), wire.AckCredited)
	k.noAck()
	// The other handlers, called directly: their subscriptions are not ordered with the
	// top-up one.
	for _, h := range []func(string, []byte){l.handleAuthz, l.handleStatus, l.handleHeartbeat, l.handleAlarm, l.handleCmdResult} {
		h("kiosk/K1/up/whatever", []byte(`{"v":`)) // wrong suffix for every handler: bad topic
	}
	for topic, h := range map[string]func(string, []byte){
		wire.Topic("K1", wire.UpAuthz): l.handleAuthz, wire.Topic("K1", wire.UpStatus): l.handleStatus,
		wire.Topic("K1", wire.UpHeartbeat): l.handleHeartbeat, wire.Topic("K1", wire.UpAlarm): l.handleAlarm,
		wire.Topic("K1", wire.UpCmdResult): l.handleCmdResult,
	} {
		h(topic, []byte(`{"v":`))
	}
	if st := l.Stats(); st.Rejected != 16 || st.Oversized != 1 || st.BadTopics != 6 || st.Credited != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestTwoInstancesShareTheLoad(t *testing.T) {
	b := startBroker(t)
	store := openStore(t, "", nil)
	la, _ := runLedger(t, b, store, "ledger-a", nil)
	lb, _ := runLedger(t, b, store, "ledger-b", nil)
	var kiosks []*kiosk
	for i := range 4 {
		kiosks = append(kiosks, newKiosk(t, b, fmt.Sprintf("K%d", i)))
	}
	const n = 200
	for i := range n {
		k := kiosks[i%4]
		k.publish(wire.UpTopup, topup(k.id, 1, uint64(i/4+1), "acct", 100))
	}
	statuses := map[string]int{}
	seen := map[string]bool{}
	for i := range n {
		a := kiosks[i%4].ack()
		statuses[a.Status]++
		if seen[a.TopupID] {
			t.Errorf("%s acked twice", a.TopupID)
		}
		seen[a.TopupID] = true
	}
	if statuses[wire.AckCredited] != n {
		t.Errorf("statuses %v", statuses)
	}
	sa, sb := la.Stats(), lb.Stats()
	if sa.Credited+sb.Credited != n || sa.Credited == 0 || sb.Credited == 0 {
		t.Errorf("split a=%d b=%d", sa.Credited, sb.Credited)
	}
	if info, _ := store.Account("acct"); info.Balances["CNY"] != n*100 {
		t.Errorf("balance %d", info.Balances["CNY"])
	}
	for _, k := range kiosks {
		if w, _ := store.Watermark(k.id, 1); w != n/4 {
			t.Errorf("%s watermark %d", k.id, w)
		}
	}
}

func TestPlainSubscription(t *testing.T) {
	b := startBroker(t)
	store := openStore(t, "", nil)
	runLedger(t, b, store, "ledger-1", func(c *Config) { c.PlainTopupSubscription = true })
	k := newKiosk(t, b, "K1")
	k.topup(topup("K1", 1, 1, "alice", 100), wire.AckCredited)
}

func TestRestartOnSameStore(t *testing.T) {
	b := startBroker(t)
	path := filepath.Join(t.TempDir(), "ledger.db")
	store, err := OpenBolt(path, Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_, stop := runLedger(t, b, store, "ledger-1", nil)
	k := newKiosk(t, b, "K1")
	tp := topup("K1", 1, 1, "alice", 100)
	a1 := k.topup(tp, wire.AckCredited)
	stop()
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}

	store2 := openStore(t, path, nil)
	runLedger(t, b, store2, "ledger-1", nil)
	a2 := k.topup(tp, wire.AckDuplicate)
	if a2.LedgerRef != a1.LedgerRef {
		t.Errorf("ledger_ref %s → %s", a1.LedgerRef, a2.LedgerRef)
	}
	k.topup(topup("K1", 1, 1, "alice", 999), wire.AckConflict)
}

// failingStore fails every credit, as a full disk or a lost database would.
type failingStore struct{ *BoltStore }

func (failingStore) Apply(wire.Topup, Checks) (Result, error) {
	return Result{}, errors.New("disk on fire")
}

func TestStoreFailureAnswersRetryLater(t *testing.T) {
	b := startBroker(t)
	store := openStore(t, "", nil)
	l, _ := runLedger(t, b, failingStore{store}, "ledger-1", nil)
	k := newKiosk(t, b, "K1")
	a := k.topup(topup("K1", 1, 1, "alice", 100), wire.AckRetryLater)
	if a.LedgerRef != "" || a.AckedThroughSeq != 0 || a.AmountMinor != 100 {
		t.Errorf("retry_later ack %+v", a)
	}
	if _, err := store.Account("alice"); !errors.Is(err, ErrNotFound) {
		t.Error("credited despite the failure")
	}
	if st := l.Stats(); st.StoreErrors != 1 || st.RetryLater != 1 || st.Credited != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestAuthz(t *testing.T) {
	b := startBroker(t)
	clk := &fakeClock{t: t0}
	store := openStore(t, "", clk.Now)
	runLedger(t, b, store, "ledger-1", func(c *Config) {
		c.Now = clk.Now
		c.Limits = Limits{Currency: "CNY", DailyMinor: 100_000, PerTopupMaxMinor: 60_000}
		c.Names = map[string]string{"zhang_san_feng": "张三丰", "known": "Jo"}
		c.Deny = map[string]string{"blocked_1": "", "fraud_2": "fraud_suspected"}
	})
	k := newKiosk(t, b, "K1")
	asked := 0
	ask := func(account string) wire.AuthzResponse {
		t.Helper()
		asked++
		nonce := fmt.Sprintf("authz%04d", asked)
		req := wire.AuthzRequest{V: 1, ReqID: "r-" + account, Account: account, QRNonce: nonce, QR: qrFor(account, nonce, clk.Now().Add(5*time.Minute))}
		k.publish(wire.UpAuthz, req)
		select {
		case r := <-k.authz:
			if r.ReqID != req.ReqID {
				t.Fatalf("answer for %q, asked %q", r.ReqID, req.ReqID)
			}
			return r
		case <-time.After(wait):
			t.Fatalf("no authz answer for %s", account)
			return wire.AuthzResponse{}
		}
	}
	check := func(account, status, reason string, remaining int64, name string) {
		t.Helper()
		r := ask(account)
		if r.Status != status || r.Reason != reason || r.RemainingMinor != remaining || r.NameMasked != name {
			t.Errorf("%s: %+v, want %s/%s/%d/%s", account, r, status, reason, remaining, name)
		}
		// Every answer carries the ledger's signed time (a kiosk with an untrusted clock
		// checks the code's expiry against it).
		if !r.Now.Equal(clk.Now().UTC()) {
			t.Errorf("%s: now %s, want the ledger's clock %s", account, r.Now, clk.Now())
		}
	}
	check("zhang_san_feng", wire.AuthzOK, "", 60_000, "张*丰") // capped by the per-top-up max
	check("abcdefyz", wire.AuthzOK, "", 60_000, "ab***yz")   // unknown: opened on first use
	check("blocked_1", wire.AuthzDenied, ReasonDenied, 0, "bl***_1")
	check("fraud_2", wire.AuthzDenied, "fraud_suspected", 0, "fr***_2")

	// Credits today reduce what is left; yesterday's do not count.
	clk.Set(t0.Add(-24 * time.Hour))
	k.topup(topup("K1", 1, 1, "known", 50_000), wire.AckCredited)
	clk.Set(t0)
	k.topup(topup("K1", 1, 2, "known", 40_000), wire.AckCredited)
	k.topup(topup("K1", 1, 4, "known", 30_000), wire.AckCredited)
	check("known", wire.AuthzOK, "", 30_000, "J*")
	k.topup(topup("K1", 1, 3, "known", 30_000), wire.AckCredited)
	check("known", wire.AuthzDenied, ReasonLimitReached, 0, "J*")
	clk.Set(t0.Add(24 * time.Hour))
	check("known", wire.AuthzOK, "", 60_000, "J*")

	// A malformed request with a usable req_id gets an answer; without one, none.
	k.publish(wire.UpAuthz, wire.AuthzRequest{V: 1, ReqID: "bad", Account: "no spaces"})
	if r := <-k.authz; r.ReqID != "bad" || r.Status != wire.AuthzDenied || r.Reason != ReasonBadRequest {
		t.Errorf("bad request: %+v", r)
	}
}

func TestAuthzRequireKnownAccount(t *testing.T) {
	l, err := New(Config{Store: openStore(t, "", nil), Signer: testSigner, RequireKnownAccount: true,
		Names: map[string]string{"known": "Known Person"}, WalletKeys: testWallet})
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour)
	if r, ok := l.authorize("K1", wire.AuthzRequest{V: 1, ReqID: "1", Account: "stranger", QR: qrFor("stranger", "nonce0001", exp)}); !ok || r.Status != wire.AuthzDenied || r.Reason != ReasonUnknownAccount {
		t.Errorf("stranger: %+v", r)
	}
	if r, ok := l.authorize("K1", wire.AuthzRequest{V: 1, ReqID: "2", Account: "known", QR: qrFor("known", "nonce0002", exp)}); !ok || r.Status != wire.AuthzOK || r.RemainingMinor != 500_000 || r.NameMasked != "K**********n" {
		t.Errorf("known: %+v", r)
	}
	if _, ok := l.authorize("K1", wire.AuthzRequest{V: 1, Account: "known"}); ok {
		t.Error("answered a request without req_id")
	}
}

func TestNewConfigErrors(t *testing.T) {
	s := openStore(t, "", nil)
	for name, cfg := range map[string]Config{
		"no store":         {Signer: testSigner},
		"no key":           {Store: s, Signer: wire.Signer{KID: "x"}},
		"no kid":           {Store: s, Signer: wire.Signer{Key: testPriv}},
		"bad group":        {Store: s, Signer: testSigner, ShareGroup: "a/b"},
		"neg limits":       {Store: s, Signer: testSigner, Limits: Limits{DailyMinor: -1}},
		"short wallet key": {Store: s, Signer: testSigner, WalletKeys: map[string]ed25519.PublicKey{"w1": testWalletPub[:8]}},
		"bad policy":       {Store: s, Signer: testSigner, Policy: Fleet{Policy: Policy{Denominations: map[string][]int64{"CNY": {-5}}}}},
		"short token":      {Store: s, Signer: testSigner, Operators: map[string]string{"olga": "1234"}},
	} {
		if _, err := New(cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestMasking(t *testing.T) {
	for in, want := range map[string]string{"abcdefyz": "ab***yz", "abcdef": "ab***ef", "abcde": "a***", "a": "a***", "": ""} {
		if got := MaskAccount(in); got != want {
			t.Errorf("MaskAccount(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{"张三丰": "张*丰", "张三": "张*", "Z": "*", "John Smith": "J********h", " ": ""} {
		if got := MaskName(in); got != want {
			t.Errorf("MaskName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestUnderProductionACL(t *testing.T) {
	// Ready means every subscription was granted: the ledger's filters fit the ACL rule.
	b, err := broker.Start(t.Context(), broker.Config{
		Users: map[string]string{"ledger": "lpw", "K1": "k1pw"}, ACL: true, LedgerUsers: []string{"ledger"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	store := openStore(t, "", nil)
	runLedger(t, b, store, "ledger-a", func(c *Config) { c.MQTT.Username, c.MQTT.Password = "ledger", "lpw" })
	c, err := mqttc.Dial(mqttc.Config{Brokers: []string{b.URL()}, ClientID: "K1", Username: "K1", Password: "k1pw"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(0) })
	if err := c.WaitConnected(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	acks := make(chan wire.Ack, 1)
	if err := c.Subscribe(ctxT(t), "kiosk/K1/down/ack", 1, func(_ string, p []byte) {
		var a wire.Ack
		if _, err := testRing.Open(p, &a); err == nil {
			acks <- a
		}
	}); err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(topup("K1", 1, 1, "alice", 100))
	if err := c.Publish(ctxT(t), "kiosk/K1/up/topup", 1, false, raw); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-acks:
		if a.Status != wire.AckCredited {
			t.Errorf("ack %+v", a)
		}
	case <-time.After(wait):
		t.Fatal("no ack through the ACL broker")
	}
}

func TestSurvivesBrokerRestart(t *testing.T) {
	b, err := broker.Start(t.Context(), broker.Config{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	addr := b.Addr()
	store := openStore(t, "", nil)
	l, _ := runLedger(t, b, store, "ledger-1", nil)
	k := newKiosk(t, b, "K1")
	tp := topup("K1", 1, 1, "alice", 100)
	k.topup(tp, wire.AckCredited)

	b.Close()
	b2, err := broker.Start(t.Context(), broker.Config{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b2.Close() })
	// The ledger re-subscribes in OnConnect; a fresh kiosk connection retries the top-up
	// (its outbox kept it) until the ledger answers.
	k2 := newKiosk(t, b2, "K1b")
	tp2 := topup("K1b", 1, 1, "alice", 100)
	waitFor(t, "the ledger to reconnect", func() bool { return l.Stats().MQTTConnected })
	var a wire.Ack
	for a.Status == "" {
		k2.publish(wire.UpTopup, tp2)
		select {
		case a = <-k2.acks:
		case <-time.After(100 * time.Millisecond): // the kiosk's own retry interval
		}
	}
	// Two retries may both have reached the ledger; their acks can arrive in either order.
	if a.Status != wire.AckCredited && a.Status != wire.AckDuplicate {
		t.Errorf("after restart: %+v", a)
	}
	if info, _ := store.Account("alice"); info.Balances["CNY"] != 200 {
		t.Errorf("balance %d", info.Balances["CNY"])
	}
}
