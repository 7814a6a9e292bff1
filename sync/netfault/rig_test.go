// Package netfault holds the network and broker fault tests of the kiosk-to-ledger link
// (kiosk/journal's money invariants, sync/CONTRACT.md §5): a real kiosk uplink (journal outbox, sync/uplink over
// sync/mqttc) and the reference ledger (sync/ledger with its bbolt store) talk through a
// real MQTT broker (the in-process sync/broker, or mosquitto through sync/mosqtest), with a
// sync/faultproxy on the kiosk's link and another on the ledger's. Each scenario injects
// faults, heals, and then checks that nothing was lost or credited twice and that the kiosk
// caught up within a bound.
//
// The package has tests only. Flags: -netfault.soak runs the long randomized soak,
// -netfault.soakfor sets its length, -netfault.seed fixes the proxies' seed (0: time-based
// for the soak, 1 for the other tests), -netfault.v streams every component's log to
// stderr (otherwise the last lines are printed when a test fails).
package netfault

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
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
	"github.com/kioskd/kioskd/sync/mosqtest"
	"github.com/kioskd/kioskd/sync/mqttc"
	"github.com/kioskd/kioskd/sync/uplink"
	"github.com/kioskd/kioskd/sync/wire"
)

var (
	soak    = flag.Bool("netfault.soak", false, "run the long randomized fault soak")
	soakFor = flag.Duration("netfault.soakfor", 2*time.Minute, "length of the soak's fault phase per broker")
	seedF   = flag.Uint64("netfault.seed", 0, "proxy seed (0: 1 for scenarios, time-based for the soak)")
	verbose = flag.Bool("netfault.v", false, "stream component logs to stderr")
)

// Timing of the rig: short enough that a partition is noticed in about three seconds.
// The keepalive is 2 s, not 1 s: mochi computes its read deadline as keepalive +
// keepalive/2 in whole seconds (mochi-mqtt/server v2.7.9 clients.go:265), so a 1 s keepalive
// gets a 1 s deadline instead of 1.5 s, while paho pings only after 1 s of silence, checked
// every 250 ms: an idle client is dropped every second or two.
const (
	keepAlive      = 2 * time.Second
	connectTimeout = 2 * time.Second // also paho's ping timeout
	reconnectMax   = 500 * time.Millisecond
	retryMin       = 200 * time.Millisecond
	retryMax       = 2 * time.Second
	publishTimeout = 2 * time.Second
	maxInFlight    = 8

	// wait bounds set-up steps that normally take milliseconds.
	wait = 15 * time.Second
)

const (
	kioskID  = "K1"
	currency = "CNY"
)

var (
	ledgerPub, ledgerPriv, _ = ed25519.GenerateKey(nil)
	ledgerSigner             = wire.Signer{KID: "netfault", Key: ledgerPriv}
	ledgerRing               = wire.Keyring{"netfault": ledgerPub}
	accounts                 = []string{"alice", "bob_2", "carol-3"}
	// The wallet that signs the customers' codes: the ledger credits only what it proves.
	walletPub, walletPriv, _ = ed25519.GenerateKey(nil)
)

// netfaultPolicy admits the rig's varying amounts (amountFor) as notes and sets no daily
// bound: the scenarios test delivery, not the ledger's policy.
func netfaultPolicy() ledger.Fleet {
	var denoms []int64
	for n := range 17 {
		denoms = append(denoms, amountFor(n))
	}
	return ledger.Fleet{Policy: ledger.Policy{Denominations: map[string][]int64{currency: denoms}, DailyNotes: -1}}
}

// amountFor gives top-up n (from 0) an amount that varies, so that a balance made of the
// wrong top-ups would not add up by chance.
func amountFor(n int) int64 { return int64(100 * (1 + n%17)) }

func seed() uint64 {
	if *seedF != 0 {
		return *seedF
	}
	return 1
}

// brokerCtl is the broker under test.
type brokerCtl interface {
	addr() string
	restart(tb testing.TB)
	close()
}

type inprocBroker struct {
	ctx  context.Context
	log  *slog.Logger
	mu   sync.Mutex
	b    *broker.Broker
	bind string
}

func startInproc(tb testing.TB, ctx context.Context, log *slog.Logger) *inprocBroker {
	tb.Helper()
	b, err := broker.Start(ctx, broker.Config{Logger: log})
	if err != nil {
		tb.Fatal(err)
	}
	return &inprocBroker{ctx: ctx, log: log, b: b, bind: b.Addr()}
}

func (ib *inprocBroker) addr() string { return ib.bind }

// restart closes the broker (every client sees its connection drop) and starts a new one on
// the same address: no session, subscription or retained message survives.
func (ib *inprocBroker) restart(tb testing.TB) {
	tb.Helper()
	ib.mu.Lock()
	defer ib.mu.Unlock()
	if err := ib.b.Close(); err != nil {
		tb.Logf("broker close: %v", err)
	}
	var err error
	for range 50 { // the port is normally free at once; tolerate a brief TIME_WAIT clash
		if ib.b, err = broker.Start(ib.ctx, broker.Config{Addr: ib.bind, Logger: ib.log}); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	tb.Fatalf("broker restart on %s: %v", ib.bind, err)
}

func (ib *inprocBroker) close() {
	ib.mu.Lock()
	defer ib.mu.Unlock()
	ib.b.Close()
}

type mosqBroker struct{ b *mosqtest.Broker }

func (m mosqBroker) addr() string          { return fmt.Sprintf("127.0.0.1:%d", m.b.PlainPort) }
func (m mosqBroker) restart(tb testing.TB) { m.b.Restart() }
func (m mosqBroker) close()                {} // mosqtest stops it at cleanup

// brokerKinds are the brokers the key scenarios run against.
var brokerKinds = []string{"inproc", "mosquitto"}

type rigOpts struct {
	broker string // "inproc" (default) or "mosquitto"
	// topups are closed in the journal before the uplink starts.
	topups int
	// offline starts the kiosk's proxy refusing connections.
	offline bool
	// syncLedger makes the ledger store fsync (benchmarks); tests skip it.
	syncLedger bool
	// seed overrides the proxies' seed (see seed()).
	seed uint64
	// chunk is the proxies' largest read (default faultproxy's 16 KiB). Paho writes each
	// MQTT packet with one write, so with big chunks a dropped or duplicated chunk is
	// usually whole packets, lost or repeated with the framing intact; chunks smaller than
	// a top-up (about 450 bytes) split packets, and then a drop corrupts the framing.
	chunk int
}

// rig is one kiosk, one broker and one reference ledger, linked through two fault proxies.
type rig struct {
	tb   testing.TB
	ctx  context.Context
	stop context.CancelFunc
	log  *slog.Logger
	ring *ringLog
	dir  string

	br brokerCtl
	kp *faultproxy.Proxy // kiosk ↔ broker
	lp *faultproxy.Proxy // ledger ↔ broker

	j        *journal.Journal
	up       *uplink.Uplink
	mc       *mqttc.Client
	upDone   chan error
	health   *health.Registry
	topupsMu sync.Mutex // serialises the sessions of the rig's top-up feeders

	storeOpts ledger.Options
	storePath string
	store     *ledger.BoltStore
	led       *ledger.Ledger
	ledStop   func()
	// ledStats accumulates the counters of stopped ledger instances.
	ledStats  ledger.Stats
	ledgerGen int

	feeders   []func() int // stopped first at close
	closeOnce sync.Once

	mu     sync.Mutex
	acked  map[string]int // OnAck calls per topup_id
	events []health.Condition
	closed int // top-ups closed by the rig
}

func newRig(tb testing.TB, o rigOpts) *rig {
	tb.Helper()
	ctx, stop := context.WithCancel(context.Background())
	r := &rig{tb: tb, ctx: ctx, stop: stop, dir: tb.TempDir(), acked: map[string]int{}}
	r.ring = newRingLog(400)
	var w io.Writer = r.ring
	if *verbose {
		w = io.MultiWriter(r.ring, os.Stderr)
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	r.log = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})).With("test", tb.Name())
	tb.Cleanup(r.close)

	switch o.broker {
	case "", "inproc":
		r.br = startInproc(tb, ctx, r.log.With("side", "broker"))
	case "mosquitto":
		r.br = mosqBroker{mosqtest.Start(tb, mosqtest.Options{Plain: true})}
	default:
		tb.Fatalf("unknown broker %q", o.broker)
	}
	sd := o.seed
	if sd == 0 {
		sd = seed()
	}
	var err error
	if r.kp, err = faultproxy.Start(ctx, faultproxy.Config{Upstream: r.br.addr(), Seed: sd, ChunkSize: o.chunk, Logger: r.log.With("side", "kiosk-link")}); err != nil {
		tb.Fatal(err)
	}
	if r.lp, err = faultproxy.Start(ctx, faultproxy.Config{Upstream: r.br.addr(), Seed: sd + 1, ChunkSize: o.chunk, Logger: r.log.With("side", "ledger-link")}); err != nil {
		tb.Fatal(err)
	}

	r.storePath = filepath.Join(r.dir, "ledger.db")
	r.storeOpts = ledger.Options{NoSync: !o.syncLedger}
	if r.store, err = ledger.OpenBolt(r.storePath, r.storeOpts); err != nil {
		tb.Fatal(err)
	}
	r.startLedger()

	if r.j, err = journal.Open(filepath.Join(r.dir, "journal.db"), journal.Options{KioskID: kioskID, Currency: currency}); err != nil {
		tb.Fatal(err)
	}
	r.addTopups(o.topups)
	if o.offline {
		if err := r.kp.Refuse(true); err != nil {
			tb.Fatal(err)
		}
	}
	r.startKiosk()
	if !o.offline {
		r.waitKioskConnected()
	}
	return r
}

// lazyClient lets the uplink exist before the MQTT client that calls its OnConnect.
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

func (r *rig) startKiosk() {
	r.health = health.New("netfault", nil)
	r.health.Listen(func(c health.Condition) {
		r.mu.Lock()
		r.events = append(r.events, c)
		r.mu.Unlock()
	})
	lc := &lazyClient{}
	var err error
	r.up, err = uplink.New(uplink.Config{KioskID: kioskID, Client: lc, Journal: r.j, LedgerKeys: ledgerRing, Health: r.health,
		MaxInFlight: maxInFlight, RetryMin: retryMin, RetryMax: retryMax, PublishTimeout: publishTimeout,
		OnAck: func(t journal.Topup) {
			r.mu.Lock()
			r.acked[t.TopupID]++
			r.mu.Unlock()
		},
		Logger: r.log.With("side", "kiosk")})
	if err != nil {
		r.tb.Fatal(err)
	}
	r.mc, err = mqttc.Dial(mqttc.Config{Brokers: []string{"tcp://" + r.kp.Addr()}, ClientID: kioskID,
		KeepAlive: keepAlive, ConnectTimeout: connectTimeout, MaxReconnectInterval: reconnectMax, WriteTimeout: connectTimeout,
		// The first connect can complete before Dial returns: the uplink must see the client
		// then, or it gives up subscribing until the next reconnect and hears no ack.
		OnConnect: func(c *mqttc.Client) { lc.c.Store(c); r.up.OnConnect(r.ctx) },
		Logger:    r.log.With("side", "kiosk-mqtt")})
	if err != nil {
		r.tb.Fatal(err)
	}
	lc.c.Store(r.mc)
	r.upDone = make(chan error, 1)
	go func() { r.upDone <- r.up.Run(r.ctx) }()
}

func (r *rig) waitKioskConnected() {
	r.tb.Helper()
	ctx, cancel := context.WithTimeout(r.ctx, wait)
	defer cancel()
	if err := r.mc.WaitConnected(ctx); err != nil {
		r.tb.Fatalf("kiosk: %v", err)
	}
}

// startLedger starts a ledger instance on the current store, through the ledger-side proxy,
// and waits until it is subscribed.
func (r *rig) startLedger() {
	r.tb.Helper()
	r.mu.Lock() // the feeder goroutine reads it for its nonces
	r.ledgerGen++
	gen := r.ledgerGen
	r.mu.Unlock()
	l, err := ledger.New(ledger.Config{
		MQTT: mqttc.Config{Brokers: []string{"tcp://" + r.lp.Addr()}, ClientID: "ledger",
			KeepAlive: keepAlive, ConnectTimeout: connectTimeout, MaxReconnectInterval: reconnectMax, WriteTimeout: connectTimeout},
		Store: r.store, Signer: ledgerSigner, PublishTimeout: publishTimeout,
		WalletKeys: map[string]ed25519.PublicKey{"w1": walletPub}, Policy: netfaultPolicy(),
		Logger: r.log.With("side", "ledger", "gen", gen)})
	if err != nil {
		r.tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(r.ctx)
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	r.led = l
	var once sync.Once
	r.ledStop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					r.tb.Errorf("ledger Run: %v", err)
				}
			case <-time.After(wait):
				r.tb.Error("ledger Run did not return after cancel")
			}
			s := l.Stats()
			r.mu.Lock()
			r.ledStats.Credited += s.Credited
			r.ledStats.Duplicates += s.Duplicates
			r.ledStats.Conflicts += s.Conflicts
			r.ledStats.RetryLater += s.RetryLater
			r.ledStats.Rejected += s.Rejected
			r.ledStats.PublishErrors += s.PublishErrors
			r.mu.Unlock()
		})
	}
	select {
	case <-l.Ready():
	case err := <-done:
		r.tb.Fatalf("ledger Run: %v", err)
	case <-time.After(wait):
		r.tb.Fatal("ledger not subscribed in time")
	}
}

// restartLedger stops the ledger, closes and reopens its store, and starts a new instance.
func (r *rig) restartLedger() {
	r.tb.Helper()
	r.ledStop()
	if err := r.store.Close(); err != nil {
		r.tb.Fatal(err)
	}
	var err error
	if r.store, err = ledger.OpenBolt(r.storePath, r.storeOpts); err != nil {
		r.tb.Fatal(err)
	}
	r.startLedger()
}

// ledgerStats sums the counters of every ledger instance so far.
func (r *rig) ledgerStats() ledger.Stats {
	s := r.led.Stats()
	r.mu.Lock()
	defer r.mu.Unlock()
	s.Credited += r.ledStats.Credited
	s.Duplicates += r.ledStats.Duplicates
	s.Conflicts += r.ledStats.Conflicts
	s.RetryLater += r.ledStats.RetryLater
	s.Rejected += r.ledStats.Rejected
	s.PublishErrors += r.ledStats.PublishErrors
	return s
}

func (r *rig) close() { r.closeOnce.Do(r.shutdown) }

func (r *rig) shutdown() {
	for _, stop := range r.feeders {
		stop()
	}
	r.stop()
	if r.upDone != nil {
		select {
		case <-r.upDone:
		case <-time.After(wait):
			r.tb.Error("uplink Run did not return after cancel")
		}
	}
	if r.mc != nil {
		r.mc.Close(0)
	}
	if r.ledStop != nil {
		r.ledStop()
	}
	if r.store != nil {
		r.store.Close()
	}
	if r.kp != nil {
		r.kp.Close()
	}
	if r.lp != nil {
		r.lp.Close()
	}
	if r.br != nil {
		r.br.close()
	}
	if r.j != nil {
		r.j.Close()
	}
	if r.tb.Failed() && !*verbose {
		r.tb.Logf("last log lines:\n%s", r.ring.String())
	}
}

// addTopups closes n one-note sessions in the journal and kicks the uplink.
func (r *rig) addTopups(n int) {
	r.tb.Helper()
	r.journalTopups(n)
	if r.up != nil {
		r.up.Kick()
	}
}

// journalTopups closes n one-note sessions in the journal, without telling the uplink.
func (r *rig) journalTopups(n int) {
	r.tb.Helper()
	r.topupsMu.Lock()
	defer r.topupsMu.Unlock()
	for range n {
		r.mu.Lock()
		i, gen := r.closed, r.ledgerGen
		r.mu.Unlock()
		acct := accounts[i%len(accounts)]
		qr := qrpay.Sign(walletPriv, "w1", acct, time.Now().Add(24*time.Hour), fmt.Sprintf("nf%06d-%d", i, gen))
		s, err := r.j.OpenSession(journal.OpenSessionParams{Account: acct, LimitMinor: 1 << 40, QR: qr})
		if err != nil {
			r.tb.Errorf("open session: %v", err)
			return
		}
		if _, err := r.j.CreditDirect(s.ID, journal.Note{ValueMinor: amountFor(i)}, ""); err != nil {
			r.tb.Errorf("credit: %v", err)
			return
		}
		if _, err := r.j.CloseSession(journal.CloseParams{SessionID: s.ID, Outcome: wire.OutcomeComplete}); err != nil {
			r.tb.Errorf("close session: %v", err)
			return
		}
		r.mu.Lock()
		r.closed++
		r.mu.Unlock()
	}
}

// feed closes a top-up every interval until the returned stop is called; stop returns how
// many it added. It stands for customers who keep depositing during the faults.
func (r *rig) feed(every time.Duration) (stop func() int) {
	done := make(chan struct{})
	var n atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				r.addTopups(1)
				n.Add(1)
			}
		}
	})
	var once sync.Once
	stop = func() int {
		once.Do(func() { close(done); wg.Wait() })
		return int(n.Load())
	}
	r.feeders = append(r.feeders, stop)
	return stop
}

// credited is how many top-ups the ledger holds for this kiosk's journal.
func (r *rig) credited() int {
	ks, err := r.store.Kiosks()
	if err != nil {
		return 0
	}
	for _, k := range ks {
		if k.KioskID == kioskID {
			for _, e := range k.Epochs {
				if uint64(e.Epoch) == r.j.Epoch() {
					return int(e.Topups)
				}
			}
		}
	}
	return 0
}

func (r *rig) outboxDepth() int {
	ob, err := r.j.Outbox()
	if err != nil {
		r.tb.Errorf("outbox: %v", err)
		return -1
	}
	return len(ob)
}

func (r *rig) ackedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.acked)
}

// waitUntil polls cond every few milliseconds until it holds, failing the test after d.
func waitUntil(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitUntil is waitUntil with the rig's state in the failure message.
func (r *rig) waitUntil(d time.Duration, what string, cond func() bool) {
	r.tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			r.tb.Fatalf("timed out after %v waiting for %s; %s", d, what, r.describe())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitProgress waits until the ledger holds at least n top-ups of the journal.
func (r *rig) waitProgress(n int, d time.Duration) {
	r.tb.Helper()
	r.waitUntil(d, fmt.Sprintf("the ledger to hold %d top-ups", n), func() bool { return r.credited() >= n })
}

// catchUp waits, up to bound, until the kiosk has applied an ack for every top-up closed
// so far and its outbox is empty, and returns how long that took from since. It polls the
// OnAck count, which is cheap, and reads the outbox only once that count is complete.
func (r *rig) catchUp(since time.Time, bound time.Duration) time.Duration {
	r.tb.Helper()
	deadline := since.Add(bound)
	trace := os.Getenv("NETFAULT_TRACE") != ""
	next := time.Now()
	for {
		r.mu.Lock()
		closed := r.closed
		r.mu.Unlock()
		if r.ackedCount() >= closed && r.outboxDepth() == 0 {
			return time.Since(since)
		}
		if time.Now().After(deadline) {
			r.tb.Fatalf("no catch-up within %v: outbox %d, acks applied %d of %d; %s", bound, r.outboxDepth(), r.ackedCount(), closed, r.describe())
		}
		if trace && time.Now().After(next) {
			next = next.Add(time.Second)
			r.tb.Logf("catch-up %v: acked %d of %d, %s", time.Since(since).Round(time.Second), r.ackedCount(), closed, r.describe())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// describe is the rig's state for a failure message.
func (r *rig) describe() string {
	us := r.up.Stats()
	ls := r.ledgerStats()
	return fmt.Sprintf("kiosk connected=%v connections=%d dropped=%d uplink=%+v; ledger=%+v held=%d; kiosk link %+v; ledger link %+v",
		r.mc.Connected(), r.mc.Connections(), r.mc.Dropped(), us, ls, r.credited(), r.kp.Stats(), r.lp.Stats())
}

// checkOpts relaxes the invariants a scenario cannot promise.
type checkOpts struct {
	// corrupting is set when the scenario corrupted byte streams: a mangled ack can then
	// reach the kiosk and be refused (and alarmed as bad_ack), which is the right outcome.
	corrupting bool
}

// check asserts the end state every scenario must reach once the faults have stopped and
// the kiosk caught up: the outbox is empty, the ledger holds exactly the journal's top-ups,
// each credited once and with the journal's content, the balances add up, the watermarks
// agree, and the kiosk applied one ack per top-up.
func (r *rig) check(o checkOpts) {
	r.tb.Helper()
	t := r.tb
	js, err := r.j.Stats()
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	n := int(js.LastTopupSeq)
	if n != closed {
		t.Fatalf("journal holds %d top-ups, the rig closed %d", n, closed)
	}
	if js.OutboxDepth != 0 {
		t.Fatalf("outbox depth %d", js.OutboxDepth)
	}
	want := map[string]int64{}
	count := map[string]int{}
	for seq := uint64(1); seq <= uint64(n); seq++ {
		jt, ok, err := r.j.Topup(seq)
		if err != nil || !ok {
			t.Fatalf("journal top-up %d: %v %v", seq, ok, err)
		}
		if jt.State != journal.TopupCredited || jt.LedgerRef == "" {
			t.Errorf("journal top-up %s: state %q, ledger_ref %q", jt.TopupID, jt.State, jt.LedgerRef)
		}
		wt, err := jt.Wire()
		if err != nil {
			t.Fatal(err)
		}
		rec, err := r.store.Topup(jt.TopupID)
		if err != nil {
			t.Errorf("ledger lacks %s: %v", jt.TopupID, err)
			continue
		}
		if rec.ContentHash != wt.ContentHash() || rec.AmountMinor != jt.AmountMinor || rec.Account != jt.Account {
			t.Errorf("ledger holds %s as %d for %s (hash %s), journal %d for %s (hash %s)", jt.TopupID,
				rec.AmountMinor, rec.Account, rec.ContentHash, jt.AmountMinor, jt.Account, wt.ContentHash())
		}
		if rec.Conflicts != 0 {
			t.Errorf("ledger saw %d conflicting deliveries of %s", rec.Conflicts, jt.TopupID)
		}
		if rec.LedgerRef != jt.LedgerRef {
			t.Errorf("%s: kiosk recorded ledger_ref %s, ledger %s", jt.TopupID, jt.LedgerRef, rec.LedgerRef)
		}
		want[jt.Account] += jt.AmountMinor
		count[jt.Account]++
	}
	// Exactly once: each account's balance is the sum of its distinct top-ups, and its
	// credit count (incremented at each credit) is the number of them.
	for acct, sum := range want {
		info, err := r.store.Account(acct)
		if err != nil {
			t.Errorf("account %s: %v", acct, err)
			continue
		}
		if info.Balances[currency] != sum || info.TopupCount != count[acct] {
			t.Errorf("account %s: balance %d from %d credits, want %d from %d", acct, info.Balances[currency], info.TopupCount, sum, count[acct])
		}
	}
	wm, err := r.store.Watermark(kioskID, r.j.Epoch())
	if err != nil || wm != uint64(n) {
		t.Errorf("ledger watermark %d (%v), want %d", wm, err, n)
	}
	ks, _ := r.store.Kiosks()
	for _, k := range ks {
		if k.KioskID != kioskID || len(k.Epochs) != 1 || k.Epochs[0].Topups != uint64(n) || len(k.Epochs[0].Above) != 0 {
			t.Errorf("ledger kiosks view %+v, want one kiosk, one epoch, %d top-ups", ks, n)
		}
	}
	if js.Watermark != uint64(n) {
		t.Errorf("kiosk's view of the ledger watermark %d, want %d", js.Watermark, n)
	}
	ls := r.ledgerStats()
	if ls.Conflicts != 0 || ls.Credited != uint64(n) {
		t.Errorf("ledger counters: %d credited (want %d), %d conflicts", ls.Credited, n, ls.Conflicts)
	}
	r.mu.Lock()
	for id, c := range r.acked {
		if c != 1 {
			t.Errorf("kiosk applied %d acks changing %s, want 1", c, id)
		}
	}
	if len(r.acked) != n {
		t.Errorf("kiosk applied acks for %d top-ups, want %d", len(r.acked), n)
	}
	var kinds []string
	for _, e := range r.events {
		kinds = append(kinds, e.Kind+": "+e.Detail)
	}
	r.mu.Unlock()
	for _, k := range kinds {
		switch {
		case strings.HasPrefix(k, "bad_ack") && o.corrupting:
		default:
			t.Errorf("kiosk alarm: %s", k)
		}
	}
	if _, err := r.j.Verify(); err != nil {
		t.Errorf("journal verify: %v", err)
	}
	us := r.up.Stats()
	t.Logf("checked: %d top-ups credited once; ledger answered %d duplicates, refused %d payloads; kiosk: %d connections, %d publishes, %d acks (%d refused)",
		n, ls.Duplicates, ls.Rejected, r.mc.Connections(), us.Published, us.Acks, us.RejectedAcks)
}

// ringLog keeps the last lines written to it.
type ringLog struct {
	mu    sync.Mutex
	lines []string
	max   int
}

func newRingLog(n int) *ringLog { return &ringLog{max: n} }

func (l *ringLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte("\n")) {
		l.lines = append(l.lines, string(line))
	}
	if over := len(l.lines) - l.max; over > 0 {
		l.lines = slices.Delete(l.lines, 0, over)
	}
	return len(p), nil
}

func (l *ringLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}
