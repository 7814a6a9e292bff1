package ledger_test

// Scale-out tests: several Ledger instances share one PostgreSQL store and one broker (the
// in-process sync/broker, shared subscription $share/ledger/...), fed by real kiosks
// (journal outbox + uplink over mqttc, as sync/netfault's rig). Instances are killed and
// the database restarted mid-stream; at the end every top-up of every journal is credited
// exactly once and the balances are the sums.

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/kiosk/qrpay"
	"github.com/kioskd/kioskd/sync/broker"
	"github.com/kioskd/kioskd/sync/faultproxy"
	"github.com/kioskd/kioskd/sync/ledger"
	"github.com/kioskd/kioskd/sync/ledger/pgtest"
	"github.com/kioskd/kioskd/sync/mqttc"
	"github.com/kioskd/kioskd/sync/uplink"
	"github.com/kioskd/kioskd/sync/wire"
)

const (
	soWait     = 30 * time.Second
	soCurrency = "CNY"
)

var (
	soLedgerPub, soLedgerPriv, _ = ed25519.GenerateKey(nil)
	soRing                       = wire.Keyring{"scale": soLedgerPub}
	soWalletPub, soWalletPriv, _ = ed25519.GenerateKey(nil)
	soAccounts                   = []string{"alice", "bob_2", "carol-3"}
)

func soAmount(n int) int64 { return int64(100 * (1 + n%17)) }

// soPolicy admits soAmount's values as banknotes and sets no daily bound: these tests are
// about delivery and exactly-once, not policy.
func soPolicy() ledger.Fleet {
	var denoms []int64
	for n := range 17 {
		denoms = append(denoms, soAmount(n))
	}
	return ledger.Fleet{Policy: ledger.Policy{Denominations: map[string][]int64{soCurrency: denoms}, DailyNotes: -1}}
}

func soLogger(t testing.TB) *slog.Logger {
	var w io.Writer = io.Discard
	if os.Getenv("LEDGER_SCALE_V") != "" {
		w = os.Stderr
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo})).With("test", t.Name())
}

// instance is one Ledger with its own connection pool, linked to the broker through a
// proxy so it can be cut off without an MQTT DISCONNECT.
type instance struct {
	name   string
	l      *ledger.Ledger
	store  *ledger.PGStore
	proxy  *faultproxy.Proxy
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

func startInstance(t *testing.T, brokerAddr, dsn, name string) *instance {
	t.Helper()
	store, err := ledger.OpenPostgres(t.Context(), dsn, ledger.PGOptions{OpTimeout: 3 * time.Second, Logger: soLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	proxy, err := faultproxy.Start(ctx, faultproxy.Config{Upstream: brokerAddr, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.New(ledger.Config{
		MQTT: mqttc.Config{Brokers: []string{"tcp://" + proxy.Addr()}, ClientID: name, KeepAlive: 2 * time.Second,
			ConnectTimeout: 2 * time.Second, MaxReconnectInterval: 500 * time.Millisecond},
		Store: store, Signer: wire.Signer{KID: "scale", Key: soLedgerPriv}, PublishTimeout: 2 * time.Second,
		WalletKeys: map[string]ed25519.PublicKey{"w1": soWalletPub}, Policy: soPolicy(),
		Logger: soLogger(t).With("side", name)})
	if err != nil {
		t.Fatal(err)
	}
	in := &instance{name: name, l: l, store: store, proxy: proxy, cancel: cancel, done: make(chan error, 1)}
	go func() { in.done <- l.Run(ctx) }()
	t.Cleanup(func() { in.stop(t) })
	select {
	case <-l.Ready():
	case err := <-in.done:
		t.Fatalf("%s: Run: %v", name, err)
	case <-time.After(soWait):
		t.Fatalf("%s: not subscribed", name)
	}
	return in
}

// kill ends the instance abruptly: its broker connection is cut (no DISCONNECT, and no
// reconnect), its database connections are closed whatever they were doing, then it is
// cancelled. Acks it had not published are lost; the kiosks must retry.
func (in *instance) kill(t *testing.T) {
	t.Helper()
	in.once.Do(func() {
		in.proxy.Refuse(true)
		in.proxy.CutAll()
		in.store.Close()
		in.cancel()
		select {
		case <-in.done:
		case <-time.After(soWait):
			t.Errorf("%s: Run did not return after the kill", in.name)
		}
		in.proxy.Close()
	})
}

func (in *instance) stop(t *testing.T) {
	in.once.Do(func() {
		in.cancel()
		select {
		case err := <-in.done:
			if err != nil {
				t.Errorf("%s: Run: %v", in.name, err)
			}
		case <-time.After(soWait):
			t.Errorf("%s: Run did not return after cancel", in.name)
		}
		in.store.Close()
		in.proxy.Close()
	})
}

// lazyClient lets the uplink exist before the MQTT client whose OnConnect calls it.
type lazyClient struct{ c atomic.Pointer[mqttc.Client] }

func (l *lazyClient) Publish(ctx context.Context, topic string, qos byte, retain bool, payload []byte) error {
	c := l.c.Load()
	if c == nil {
		return uplink.ErrOffline
	}
	return c.Publish(ctx, topic, qos, retain, payload)
}

func (l *lazyClient) Subscribe(ctx context.Context, f string, qos byte, h func(string, []byte)) error {
	c := l.c.Load()
	if c == nil {
		return uplink.ErrOffline
	}
	return c.Subscribe(ctx, f, qos, h)
}

func (l *lazyClient) Connected() bool { c := l.c.Load(); return c != nil && c.Connected() }

// soKiosk is a kiosk: a journal whose outbox the uplink delivers until acked.
type soKiosk struct {
	id     string
	j      *journal.Journal
	up     *uplink.Uplink
	mc     *mqttc.Client
	closed int
	acked  atomic.Int64
}

func startKiosk(t *testing.T, brokerURL, id string) *soKiosk {
	t.Helper()
	k := &soKiosk{id: id}
	var err error
	if k.j, err = journal.Open(filepath.Join(t.TempDir(), "journal.db"), journal.Options{KioskID: id, Currency: soCurrency}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	lc := &lazyClient{}
	k.up, err = uplink.New(uplink.Config{KioskID: id, Client: lc, Journal: k.j, LedgerKeys: soRing, Health: health.New(id, nil),
		MaxInFlight: 8, RetryMin: 200 * time.Millisecond, RetryMax: time.Second, PublishTimeout: 2 * time.Second,
		OnAck:  func(journal.Topup) { k.acked.Add(1) },
		Logger: soLogger(t).With("side", id)})
	if err != nil {
		t.Fatal(err)
	}
	k.mc, err = mqttc.Dial(mqttc.Config{Brokers: []string{brokerURL}, ClientID: id, KeepAlive: 2 * time.Second,
		ConnectTimeout: 2 * time.Second, MaxReconnectInterval: 500 * time.Millisecond,
		// The client is stored before the uplink subscribes through it: the first connection
		// may come up before Dial returns.
		OnConnect: func(c *mqttc.Client) { lc.c.Store(c); k.up.OnConnect(ctx) }})
	if err != nil {
		t.Fatal(err)
	}
	lc.c.Store(k.mc)
	done := make(chan error, 1)
	go func() { done <- k.up.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(soWait):
			t.Errorf("%s: uplink did not stop", id)
		}
		k.mc.Close(0)
		k.j.Close()
	})
	wctx, wcancel := context.WithTimeout(ctx, soWait)
	defer wcancel()
	if err := k.mc.WaitConnected(wctx); err != nil {
		t.Fatal(err)
	}
	return k
}

// add closes n one-note top-ups, each with its own wallet code, and kicks the uplink.
func (k *soKiosk) add(t *testing.T, n int) {
	t.Helper()
	for range n {
		i := k.closed
		acct := soAccounts[i%len(soAccounts)]
		qr := qrpay.Sign(soWalletPriv, "w1", acct, time.Now().Add(24*time.Hour), fmt.Sprintf("%s-%06d", k.id, i))
		s, err := k.j.OpenSession(journal.OpenSessionParams{Account: acct, LimitMinor: 1 << 40, QR: qr})
		if err != nil {
			t.Fatalf("open session: %v", err)
		}
		if _, err := k.j.CreditDirect(s.ID, journal.Note{ValueMinor: soAmount(i)}, ""); err != nil {
			t.Fatalf("credit: %v", err)
		}
		if _, err := k.j.CloseSession(journal.CloseParams{SessionID: s.ID, Outcome: wire.OutcomeComplete}); err != nil {
			t.Fatalf("close session: %v", err)
		}
		k.closed++
	}
	k.up.Kick()
}

func (k *soKiosk) outbox(t *testing.T) int {
	ob, err := k.j.Outbox()
	if err != nil {
		t.Errorf("%s outbox: %v", k.id, err)
		return -1
	}
	return len(ob)
}

// waitFor polls cond until it holds, failing after d: the kiosks and ledgers run on real
// time (reconnects, retry backoff), so the test waits for outcomes, never for durations.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	waitForMsg(t, d, func() string { return what }, cond)
}

func waitForMsg(t *testing.T, d time.Duration, what func() string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// heldBy counts the top-ups the store holds (credited or held) for the kiosks' journals.
func heldBy(store ledger.Store, ks []*soKiosk) int {
	infos, err := store.Kiosks()
	if err != nil {
		return 0
	}
	n := 0
	for _, info := range infos {
		for _, k := range ks {
			if info.KioskID != k.id {
				continue
			}
			for _, e := range info.Epochs {
				if uint64(e.Epoch) == k.j.Epoch() {
					n += int(e.Topups)
				}
			}
		}
	}
	return n
}

// catchUp waits until every kiosk applied an ack for each top-up it closed.
func catchUp(t *testing.T, ks []*soKiosk, ins []*instance) {
	t.Helper()
	what := func() string {
		var b strings.Builder
		b.WriteString("every kiosk's outbox to drain:")
		for _, k := range ks {
			fmt.Fprintf(&b, " %s closed=%d acked=%d outbox=%d connected=%v uplink=%+v;", k.id, k.closed, k.acked.Load(),
				k.outbox(t), k.mc.Connected(), k.up.Stats())
		}
		for _, in := range ins {
			fmt.Fprintf(&b, " %s %+v;", in.name, in.l.Stats())
		}
		return b.String()
	}
	waitForMsg(t, 90*time.Second, what, func() bool {
		for _, k := range ks {
			if int(k.acked.Load()) < k.closed || k.outbox(t) != 0 {
				return false
			}
		}
		return true
	})
}

// checkExactlyOnce asserts the end state: the store holds every journal top-up once, with
// the journal's content and the ledger_ref the kiosk recorded; each balance is the sum of
// its account's top-ups and its credit count their number; the watermarks are complete;
// and the instances together credited each top-up once.
func checkExactlyOnce(t *testing.T, store ledger.Store, ks []*soKiosk, ins []*instance) {
	t.Helper()
	want := map[string]int64{}
	count := map[string]int{}
	total := 0
	for _, k := range ks {
		for seq := uint64(1); seq <= uint64(k.closed); seq++ {
			jt, ok, err := k.j.Topup(seq)
			if err != nil || !ok {
				t.Fatalf("%s top-up %d: %v %v", k.id, seq, ok, err)
			}
			if jt.State != journal.TopupCredited {
				t.Errorf("%s: state %q", jt.TopupID, jt.State)
			}
			wt, err := jt.Wire()
			if err != nil {
				t.Fatal(err)
			}
			rec, err := store.Topup(jt.TopupID)
			if err != nil {
				t.Errorf("lost: %s: %v", jt.TopupID, err)
				continue
			}
			if rec.ContentHash != wt.ContentHash() || rec.AmountMinor != jt.AmountMinor || rec.Account != jt.Account ||
				rec.LedgerRef != jt.LedgerRef || rec.Conflicts != 0 {
				t.Errorf("%s: ledger %+v, journal %+v", jt.TopupID, rec, jt)
			}
			want[jt.Account] += jt.AmountMinor
			count[jt.Account]++
			total++
		}
		if w, err := store.Watermark(k.id, k.j.Epoch()); err != nil || w != uint64(k.closed) {
			t.Errorf("%s watermark %d (%v), want %d", k.id, w, err, k.closed)
		}
	}
	for acct, sum := range want {
		info, err := store.Account(acct)
		if err != nil || info.Balances[soCurrency] != sum || info.TopupCount != count[acct] {
			t.Errorf("account %s: balance %d from %d credits, want %d from %d (%v)",
				acct, info.Balances[soCurrency], info.TopupCount, sum, count[acct], err)
		}
	}
	if n := heldBy(store, ks); n != total {
		t.Errorf("the store counts %d top-ups for the journals, want %d", n, total)
	}
	credited := uint64(0)
	for _, in := range ins {
		credited += in.l.Stats().Credited
	}
	if credited != uint64(total) {
		t.Errorf("the instances credited %d times for %d top-ups", credited, total)
	}
}

func startBrokerT(t *testing.T) *broker.Broker {
	t.Helper()
	b, err := broker.Start(t.Context(), broker.Config{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func hostPort(url string) string {
	_, hp, _ := strings.Cut(url, "://")
	return hp
}

// TestScaleOutKillInstanceMidStream: three ledgers share the load of three kiosks; one
// dies abruptly while top-ups are in flight. The survivors answer the kiosks' retries.
func TestScaleOutKillInstanceMidStream(t *testing.T) {
	dsn := pgtest.Shared(t).NewDSN(t)
	b := startBrokerT(t)
	var ins []*instance
	for i := range 3 {
		ins = append(ins, startInstance(t, hostPort(b.URL()), dsn, fmt.Sprintf("ledger-%d", i)))
	}
	var ks []*soKiosk
	for i := range 3 {
		ks = append(ks, startKiosk(t, b.URL(), fmt.Sprintf("K%d", i+1)))
	}
	const perKiosk = 60
	for _, k := range ks {
		k.add(t, perKiosk/2)
	}
	waitFor(t, soWait, "the first credits", func() bool { return ins[0].l.Stats().Credited > 0 && heldBy(ins[1].store, ks) >= 20 })
	ins[0].kill(t)
	for _, k := range ks {
		k.add(t, perKiosk/2)
	}
	catchUp(t, ks, ins)
	checkExactlyOnce(t, ins[1].store, ks, ins)
	if ins[1].l.Stats().Credited == 0 && ins[2].l.Stats().Credited == 0 {
		t.Error("no survivor credited anything")
	}
}

// TestScaleOutPostgresRestart: the database goes away mid-stream (the ledgers answer
// retry_later, or nothing), the kiosks keep retrying, and once it is back everything is
// credited once.
func TestScaleOutPostgresRestart(t *testing.T) {
	srv := pgtest.Start(t)
	if !srv.CanRestart() {
		t.Skip("KIOSKD_TEST_PG_DSN names an external server: cannot restart it")
	}
	dsn := srv.NewDSN(t)
	b := startBrokerT(t)
	ins := []*instance{startInstance(t, hostPort(b.URL()), dsn, "ledger-a"), startInstance(t, hostPort(b.URL()), dsn, "ledger-b")}
	ks := []*soKiosk{startKiosk(t, b.URL(), "K1"), startKiosk(t, b.URL(), "K2")}
	for _, k := range ks {
		k.add(t, 20)
	}
	waitFor(t, soWait, "the first credits", func() bool { return heldBy(ins[0].store, ks) >= 10 })
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, k := range ks {
		k.add(t, 20)
	}
	retryLater := func() uint64 { return ins[0].l.Stats().RetryLater + ins[1].l.Stats().RetryLater }
	waitFor(t, soWait, "a retry_later while the database is down", func() bool { return retryLater() > 0 })
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	catchUp(t, ks, ins)
	checkExactlyOnce(t, ins[0].store, ks, ins)
	t.Logf("retry_later answers during the outage: %d", retryLater())
}
