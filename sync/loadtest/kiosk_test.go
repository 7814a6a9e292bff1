package loadtest

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/kiosk/qrpay"
	"github.com/kioskd/kioskd/sync/mqttc"
	"github.com/kioskd/kioskd/sync/uplink"
	"github.com/kioskd/kioskd/sync/wire"
)

const currency = "CNY"

// notes are the banknotes the simulated customers insert (the ledger's default CNY table).
var notes = []int64{1000, 2000, 5000, 10000}

// link is the uplink's view of the MQTT client, as kioskd's own link: the client is stored
// before the uplink subscribes through it (the first connection can come up before Dial
// returns). offline makes the uplink see no connection while the client stays connected,
// which is how the backlog phase fills the outboxes without a broker outage.
type link struct {
	c       atomic.Pointer[mqttc.Client]
	offline atomic.Bool
}

func (l *link) Publish(ctx context.Context, topic string, qos byte, retain bool, payload []byte) error {
	c := l.c.Load()
	if c == nil || l.offline.Load() {
		return uplink.ErrOffline
	}
	return c.Publish(ctx, topic, qos, retain, payload)
}

func (l *link) Subscribe(ctx context.Context, filter string, qos byte, h func(string, []byte)) error {
	c := l.c.Load()
	if c == nil {
		return uplink.ErrOffline
	}
	return c.Subscribe(ctx, filter, qos, h)
}

func (l *link) Connected() bool {
	c := l.c.Load()
	return c != nil && !l.offline.Load() && c.Connected()
}

// kiosk is one simulated kiosk: its own journal (the outbox), the real uplink, the real MQTT
// client with its own certificate. Only the cash path is simulated: a top-up is written to
// the journal as the session engine writes it (open, stack, credit, close), without devices.
type kiosk struct {
	id   string
	j    *journal.Journal
	up   *uplink.Uplink
	mc   *mqttc.Client
	link link
	rec  *recorder

	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex // one session at a time, as on a kiosk
	closed int        // top-ups closed (seq 1..closed)
	rng    *rand.Rand

	connects    atomic.Int64 // OnConnect runs finished
	connectedAt atomic.Int64 // unix nanoseconds of the last one
	credited    atomic.Int64
	held        atomic.Int64 // acks other than credited (there should be none)
}

// kioskParams are what every kiosk shares.
type kioskParams struct {
	dir         string
	brokerURL   string
	ledgerKeys  wire.Keyring
	walletKey   ed25519.PrivateKey
	accounts    int
	maxInFlight int
	rec         *recorder
}

func startKiosk(p kioskParams, id string, tlsConf *tls.Config, seed uint64) (*kiosk, error) {
	j, err := journal.Open(filepath.Join(p.dir, id+".db"), journal.Options{KioskID: id, Currency: currency,
		// No fsync: a thousand kiosks share one disk here, while in the field each has its own
		// SD card; the run measures the network, the broker and the ledger, not this disk.
		NoSync: true})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	k := &kiosk{id: id, j: j, rec: p.rec, cancel: cancel, done: make(chan struct{}), rng: rand.New(rand.NewPCG(seed, 0x6b696f736b))}
	bootID := fmt.Sprintf("%016x", seed)
	// kioskd's defaults (kiosk/config): four top-ups in flight, retries from 1 s to 5 min.
	k.up, err = uplink.New(uplink.Config{KioskID: id, Client: &k.link, Journal: j, LedgerKeys: p.ledgerKeys,
		Health: health.New(id, nil), MaxInFlight: p.maxInFlight, RetryMin: time.Second, RetryMax: 5 * time.Minute,
		Status: func() wire.Status {
			return wire.Status{V: wire.Version, State: wire.StateOnline, Version: "loadtest", BootID: bootID, At: time.Now().UTC()}
		},
		OnAck: k.onAck})
	if err != nil {
		cancel()
		_ = j.Close()
		return nil, err
	}
	offline, err := json.Marshal(wire.Status{V: wire.Version, State: wire.StateOffline, Version: "loadtest", BootID: bootID})
	if err != nil {
		cancel()
		_ = j.Close()
		return nil, err
	}
	statusTopic := wire.Topic(id, wire.UpStatus)
	k.mc, err = mqttc.Dial(mqttc.Config{Brokers: []string{p.brokerURL}, ClientID: id, Username: id, TLS: tlsConf,
		Will: &mqttc.Will{Topic: statusTopic, Payload: offline, QoS: 1, Retain: true},
		OnConnect: func(c *mqttc.Client) {
			k.link.c.Store(c)
			k.up.OnConnect(ctx)
			k.connectedAt.Store(time.Now().UnixNano())
			k.connects.Add(1)
		}})
	if err != nil {
		cancel()
		_ = j.Close()
		return nil, err
	}
	k.link.c.Store(k.mc)
	go func() {
		defer close(k.done)
		_ = k.up.Run(ctx)
	}()
	return k, nil
}

// stop ends the uplink, disconnects and closes the journal.
func (k *kiosk) stop() {
	k.cancel()
	<-k.done
	k.mc.Close(0)
	_ = k.j.Close()
}

func (k *kiosk) onAck(t journal.Topup) {
	if t.State == journal.TopupCredited {
		k.credited.Add(1)
	} else {
		k.held.Add(1)
	}
	k.rec.acked(t.TopupID)
}

// addTopup runs one customer: a wallet-signed code for a random account, one banknote
// stacked and credited, the session closed (the top-up enters the outbox). While the
// recorder measures, the top-up's latency runs from just before its close transaction.
func (k *kiosk) addTopup(p *kioskParams) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	acct := fmt.Sprintf("lt_%05d", k.rng.IntN(p.accounts))
	value := notes[k.rng.IntN(len(notes))]
	seq := uint64(k.closed + 1)
	qr := qrpay.Sign(p.walletKey, "w1", acct, time.Now().Add(time.Hour), fmt.Sprintf("%s-%d", k.id, seq))
	s, err := k.j.OpenSession(journal.OpenSessionParams{Account: acct, LimitMinor: 1 << 40, QR: qr})
	if err != nil {
		return fmt.Errorf("%s: open session: %w", k.id, err)
	}
	in, err := k.j.StackIntent(s.ID, journal.Note{ValueMinor: value})
	if err != nil {
		return fmt.Errorf("%s: stack: %w", k.id, err)
	}
	if _, err := k.j.CreditNote(in.ID, journal.Note{}, ""); err != nil {
		return fmt.Errorf("%s: credit: %w", k.id, err)
	}
	// Every session here ends in a top-up, so the journal gives it the next seq: the id is
	// known before the close, and the uplink cannot ack it before the recorder knows it.
	id := wire.TopupID(k.id, k.j.Epoch(), seq)
	k.rec.closing(id, time.Now())
	res, err := k.j.CloseSession(journal.CloseParams{SessionID: s.ID, Outcome: wire.OutcomeComplete})
	if err != nil {
		k.rec.forget(id)
		return fmt.Errorf("%s: close session: %w", k.id, err)
	}
	if res.Topup == nil || res.Topup.TopupID != id {
		k.rec.forget(id)
		return fmt.Errorf("%s: the close made top-up %+v, want %s", k.id, res.Topup, id)
	}
	k.closed++
	return nil
}

// recorder measures ack latency: from the top-up's close transaction to the journaled ack.
type recorder struct {
	mu      sync.Mutex
	on      bool
	pending map[string]time.Time
	lat     []time.Duration
	acks    atomic.Int64 // every ack applied, in every phase
}

func newRecorder() *recorder { return &recorder{pending: map[string]time.Time{}} }

// closing notes a top-up about to be closed, while measuring.
func (r *recorder) closing(id string, at time.Time) {
	r.mu.Lock()
	if r.on {
		r.pending[id] = at
	}
	r.mu.Unlock()
}

func (r *recorder) forget(id string) {
	r.mu.Lock()
	delete(r.pending, id)
	r.mu.Unlock()
}

func (r *recorder) acked(id string) {
	now := time.Now()
	r.acks.Add(1)
	r.mu.Lock()
	if at, ok := r.pending[id]; ok {
		delete(r.pending, id)
		r.lat = append(r.lat, now.Sub(at))
	}
	r.mu.Unlock()
}

// measure starts (on) or stops collecting; stopping returns the samples and how many
// measured top-ups are still unacked.
func (r *recorder) measure(on bool) (lat []time.Duration, unacked int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.on = on
	lat, unacked = r.lat, len(r.pending)
	if !on {
		r.lat, r.pending = nil, map[string]time.Time{}
	}
	return lat, unacked
}

func (r *recorder) inFlight() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pending)
}
