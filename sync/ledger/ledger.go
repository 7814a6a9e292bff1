package ledger

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/kioskd/kioskd/sync/mqttc"
	"github.com/kioskd/kioskd/sync/wire"
)

// Config configures a Ledger.
type Config struct {
	// MQTT is the broker connection: Brokers, TLS, ClientID (unique per instance), Username,
	// Password, timeouts. The Ledger sets OnConnect itself; Workers defaults to 16 and
	// QueueDepth to 8192.
	MQTT mqttc.Config
	// Store holds the money. The caller opens and closes it; several Ledgers may share one.
	Store Store
	// Signer signs acks and authz answers (sync/CONTRACT.md §9); its KID names the key in the
	// kiosks' configuration.
	Signer wire.Signer
	// ShareGroup is the shared-subscription group for top-ups (default "ledger").
	ShareGroup string
	// PlainTopupSubscription subscribes to kiosk/+/up/topup directly instead of through
	// $share/<group>/: for a broker without shared subscriptions, with a single instance
	// (several instances would each receive, and race to apply, every top-up; the Store
	// still credits each once).
	PlainTopupSubscription bool
	// HTTPAddr is where Run serves the HTTP API and fleet page; empty serves nothing.
	// Use a loopback address unless a reverse proxy with authentication is in front: the
	// API shows balances.
	HTTPAddr string
	// Limits are what authz answers.
	Limits Limits
	// WalletKeys verify the wallet-signed QR code every top-up and authz request carries
	// (kid → Ed25519 public key, the same keys the kiosks list). Without them every top-up is
	// held and every authz denied: the ledger credits only what a wallet proved.
	WalletKeys map[string]ed25519.PublicKey
	// Policy is what each top-up is checked against, with per-kiosk overrides (DESIGN.md §11).
	Policy Fleet
	// Operators maps operator names to the bearer tokens that authenticate their decisions
	// on held top-ups and suspense records through the HTTP API. Empty: no decision can be
	// made over HTTP.
	Operators map[string]string
	// Names maps accounts to display names (masked before they leave the ledger).
	Names map[string]string
	// RequireKnownAccount denies authz for accounts not in Names. Off by default: the
	// reference ledger has no account registry and treats every well-formed account id as
	// an open account (it is created on its first credit).
	RequireKnownAccount bool
	// Deny maps accounts to a denial reason (tests, and blocking an account by hand).
	Deny map[string]string
	// PublishTimeout bounds each ack or authz publish (default 5 s).
	PublishTimeout time.Duration
	// BatchSize bounds the top-ups applied in one store transaction when the Store is a
	// BatchStore (PGStore): group commit (default 64; 1 applies each top-up on its own, as
	// with BoltStore). A batch is whatever arrived while the previous ones were being
	// applied, so a lone top-up is applied at once and a backlog in few transactions.
	BatchSize int
	// BatchWorkers is how many batches may be in the store at once (default 4): the others
	// gather top-ups meanwhile. Keep it at or below the store's connection pool.
	BatchWorkers int
	// Now is the clock for the daily limit and the fleet view (default time.Now). The Store
	// dates credits with its own clock (Options.Now); give both the same one.
	Now func() time.Time
	// Logger; nil discards.
	Logger *slog.Logger
}

// Limits bound what authz allows. Both are in minor units of Currency.
type Limits struct {
	// Currency of the limits (default "CNY"); credits in other currencies do not count.
	Currency string
	// DailyMinor is the most an account may receive per UTC day (default 1 000 000).
	DailyMinor int64
	// PerTopupMaxMinor caps one top-up (default 500 000).
	PerTopupMaxMinor int64
}

// Authz denial reasons.
const (
	ReasonDenied         = "account_blocked" // default reason for a Deny entry with an empty reason
	ReasonUnknownAccount = "unknown_account"
	ReasonLimitReached   = "daily_limit_reached"
	ReasonBadRequest     = "invalid_request"
)

// ErrConfig reports an unusable Config.
var ErrConfig = errors.New("ledger: bad config")

// Ledger is the reference ledger service: it consumes top-ups and authz requests from
// kiosks, answers them signed, and keeps the fleet view.
type Ledger struct {
	cfg   Config
	log   *slog.Logger
	store Store
	now   func() time.Time

	fleet *fleet
	stats stats

	mu       sync.Mutex
	client   *mqttc.Client
	httpAddr string
	running  bool

	ready     chan struct{}
	readyOnce sync.Once

	// Group commit (BatchStore): handleTopup queues to batchq while batching is set; the
	// batch workers apply and answer; acks are published on goroutines bounded by pubSem
	// and tracked by pubs, so neither a handler nor a batch worker waits for a PUBACK.
	batchq   []chan topupReq // one per batch worker; a kiosk's top-ups go to one of them
	batching atomic.Bool
	pubSem   chan struct{}
	pubs     sync.WaitGroup
}

// topupReq is a top-up waiting for its batch.
type topupReq struct {
	kiosk string
	t     wire.Topup
	c     Checks
}

// New validates cfg and returns a Ledger; Run starts it.
func New(cfg Config) (*Ledger, error) {
	if cfg.Store == nil {
		return nil, fmt.Errorf("%w: no store", ErrConfig)
	}
	if cfg.Signer.KID == "" || len(cfg.Signer.Key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%w: signer needs a kid and an Ed25519 private key", ErrConfig)
	}
	if cfg.ShareGroup == "" {
		cfg.ShareGroup = "ledger"
	}
	if strings.ContainsAny(cfg.ShareGroup, "/+#") {
		return nil, fmt.Errorf("%w: share group %q", ErrConfig, cfg.ShareGroup)
	}
	if cfg.Limits.Currency == "" {
		cfg.Limits.Currency = "CNY"
	}
	if cfg.Limits.DailyMinor == 0 {
		cfg.Limits.DailyMinor = 1_000_000
	}
	if cfg.Limits.PerTopupMaxMinor == 0 {
		cfg.Limits.PerTopupMaxMinor = 500_000
	}
	if cfg.Limits.DailyMinor < 0 || cfg.Limits.PerTopupMaxMinor < 0 {
		return nil, fmt.Errorf("%w: negative limit", ErrConfig)
	}
	if err := cfg.Policy.check(); err != nil {
		return nil, err
	}
	for kid, k := range cfg.WalletKeys {
		if kid == "" || len(k) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: wallet key %q: want an Ed25519 public key", ErrConfig, kid)
		}
	}
	for name, tok := range cfg.Operators {
		if name == "" || len(tok) < 16 {
			return nil, fmt.Errorf("%w: operator %q needs a token of at least 16 characters", ErrConfig, name)
		}
	}
	if cfg.PublishTimeout <= 0 {
		cfg.PublishTimeout = 5 * time.Second
	}
	// Each worker spends most of a top-up waiting: for the store, then for the broker's
	// PUBACK of the signed ack. 16 keep the store's pool busy (the pool, not the workers,
	// bounds the database's concurrency) and the queue deep enough for a fleet's burst after
	// a broker restart. A message dropped from a full queue is safe (the kiosk publishes it
	// again) but counted: ledgerd_mqtt_dropped_messages_total. The queue does not block
	// instead of dropping: paho hands messages over on the goroutine that also reads the
	// PUBACKs of the ledger's own acks, so a blocked hand-over would stall the workers
	// waiting for them.
	if cfg.MQTT.Workers == 0 {
		cfg.MQTT.Workers = 16
	}
	if cfg.MQTT.QueueDepth == 0 {
		cfg.MQTT.QueueDepth = 8192
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 64
	}
	if cfg.BatchWorkers == 0 {
		cfg.BatchWorkers = 4
	}
	if cfg.BatchSize < 0 || cfg.BatchWorkers < 0 {
		return nil, fmt.Errorf("%w: negative batch size or workers", ErrConfig)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MQTT.Logger == nil {
		cfg.MQTT.Logger = logger
	}
	l := &Ledger{
		cfg:   cfg,
		log:   logger.With("component", "ledger"),
		store: cfg.Store,
		now:   cfg.Now,
		fleet: newFleet(),
		ready: make(chan struct{}),
	}
	if _, ok := cfg.Store.(BatchStore); ok && cfg.BatchSize > 1 {
		// Each worker's queue takes its share of the handler queue: a handler blocks on a
		// full one, and while it does every other worker's kiosks wait behind it.
		depth := max(2*cfg.BatchSize, cfg.MQTT.QueueDepth/cfg.BatchWorkers)
		for range cfg.BatchWorkers {
			l.batchq = append(l.batchq, make(chan topupReq, depth))
		}
		// Acks in flight at once: two rounds of every worker's batches, so a worker applies
		// its next batch while the broker acknowledges the acks of its last one. With one
		// batch's worth (BatchSize) shared by every worker, the workers spent more time
		// waiting for the broker's PUBACKs than for the database (make loadtest). The
		// bound stays: the broker handles one connection's publishes in order, and acks
		// queued past PublishTimeout would be counted lost while the workers went on.
		l.pubSem = make(chan struct{}, 2*cfg.BatchSize*cfg.BatchWorkers)
	}
	return l, nil
}

// Ready is closed once the Ledger has connected and made its subscriptions the first time.
func (l *Ledger) Ready() <-chan struct{} { return l.ready }

// HTTPAddr returns the address the HTTP server listens on, once Run has bound it.
func (l *Ledger) HTTPAddr() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.httpAddr
}

// Run connects to the broker and serves until ctx ends; it returns nil on cancellation and
// leaves no goroutine behind. A Ledger runs once. A broker that is down is retried; a Run that cannot bind its
// HTTP address fails at once.
func (l *Ledger) Run(ctx context.Context) error {
	l.mu.Lock()
	if l.running {
		l.mu.Unlock()
		return errors.New("ledger: already running")
	}
	l.running = true
	l.mu.Unlock()

	var wg sync.WaitGroup
	var srv *http.Server
	if l.cfg.HTTPAddr != "" {
		ln, err := net.Listen("tcp", l.cfg.HTTPAddr)
		if err != nil {
			return fmt.Errorf("ledger: http listen: %w", err)
		}
		l.mu.Lock()
		l.httpAddr = ln.Addr().String()
		l.mu.Unlock()
		srv = &http.Server{Handler: l.Handler(), ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(l.log.Handler(), slog.LevelDebug)}
		wg.Go(func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				l.log.Error("ledger: http server", "err", err)
			}
		})
		l.log.Info("ledger: http listening", "addr", ln.Addr().String())
	}

	var batchers sync.WaitGroup
	stopBatching := func() {
		if l.batchq == nil {
			return
		}
		// Called once no handler runs any more (the client is closed): the workers finish
		// the queued top-ups (their acks fail to publish, and the kiosks send them again).
		l.batching.Store(false)
		for _, q := range l.batchq {
			close(q)
		}
		batchers.Wait()
		l.pubs.Wait()
	}
	if l.batchq != nil {
		bs := l.store.(BatchStore)
		for _, q := range l.batchq {
			batchers.Go(func() { l.runBatches(bs, q) })
		}
		l.batching.Store(true)
	}

	mc := l.cfg.MQTT
	mc.OnConnect = l.subscribe
	client, err := mqttc.Dial(mc)
	if err != nil {
		stopBatching()
		if srv != nil {
			srv.Close()
			wg.Wait()
		}
		return fmt.Errorf("ledger: mqtt: %w", err)
	}
	l.mu.Lock()
	l.client = client
	l.mu.Unlock()
	l.log.Info("ledger: started", "brokers", mc.Brokers, "client_id", mc.ClientID, "kid", l.cfg.Signer.KID)

	<-ctx.Done()

	client.Close(250 * time.Millisecond)
	stopBatching()
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
		}
		cancel()
		wg.Wait()
	}
	l.log.Info("ledger: stopped")
	return nil
}

func (l *Ledger) topupFilter() string {
	plain := wire.Topic("+", wire.UpTopup)
	if l.cfg.PlainTopupSubscription {
		return plain
	}
	return "$share/" + l.cfg.ShareGroup + "/" + plain
}

// subscribe runs after every (re)connect: the session is clean, so the broker forgot
// everything.
func (l *Ledger) subscribe(c *mqttc.Client) {
	// OnConnect may run before Dial has returned to Run: handlers publish through c.
	l.mu.Lock()
	l.client = c
	l.mu.Unlock()
	subs := []struct {
		filter string
		h      mqttc.Handler
	}{
		{l.topupFilter(), l.handleTopup},
		{wire.Topic("+", wire.UpAuthz), l.handleAuthz},
		{wire.Topic("+", wire.UpStatus), l.handleStatus},
		{wire.Topic("+", wire.UpHeartbeat), l.handleHeartbeat},
		{wire.Topic("+", wire.UpAlarm), l.handleAlarm},
		{wire.Topic("+", wire.UpCmdResult), l.handleCmdResult},
		// Plain, not shared: every instance may store a collection, the store keeps one per
		// collection_id, and each answers the same ack.
		{wire.Topic("+", wire.UpCollection), l.handleCollection},
	}
	for _, s := range subs {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := c.Subscribe(ctx, s.filter, 1, s.h)
		cancel()
		if err != nil {
			// The next reconnect tries again; without these subscriptions the ledger is
			// deaf, so say it loudly.
			l.log.Error("ledger: subscribe failed", "filter", s.filter, "err", err)
			return
		}
	}
	l.log.Info("ledger: subscribed", "topups", l.topupFilter())
	l.readyOnce.Do(func() { close(l.ready) })
}

// seer is a Store that answers a top-up it already holds with the same content from a plain
// read, without a write transaction (PGStore.Seen). ok is false for anything else.
type seer interface {
	Seen(t wire.Topup) (res Result, ok bool, err error)
}

// parse splits the topic and decodes the payload, counting what it refuses.
func (l *Ledger) parse(topic string, payload []byte, want string, v any) (kiosk string, ok bool) {
	kiosk, suffix, err := wire.ParseTopic(topic)
	if err != nil || suffix != want {
		l.stats.BadTopics.Add(1)
		l.log.Warn("ledger: security: message on an unexpected topic", "topic", topic)
		return "", false
	}
	if err := wire.Decode(payload, v); err != nil {
		if errors.Is(err, wire.ErrTooLarge) {
			l.stats.Oversized.Add(1)
		}
		l.stats.Rejected.Add(1)
		l.log.Warn("ledger: payload refused", "topic", topic, "bytes", len(payload), "err", err)
		return "", false
	}
	return kiosk, true
}

func (l *Ledger) handleTopup(topic string, payload []byte) {
	var t wire.Topup
	kiosk, ok := l.parse(topic, payload, wire.UpTopup, &t)
	if !ok {
		return
	}
	if err := t.Validate(); err != nil {
		l.stats.Rejected.Add(1)
		l.log.Warn("ledger: top-up refused", "topic", topic, "topup_id", t.TopupID, "err", err)
		return
	}
	if t.KioskID != kiosk {
		// A kiosk publishing another kiosk's top-up: with the production ACL this cannot
		// reach us, so it is either a misconfigured broker or an attack. No ack: an ack is
		// what makes a kiosk forget a top-up.
		l.stats.BadTopics.Add(1)
		l.log.Warn("ledger: security: top-up kiosk_id differs from its topic", "topic", topic, "kiosk_id", t.KioskID, "topup_id", t.TopupID)
		return
	}
	if l.batching.Load() {
		// Group commit: a batch worker applies it with the others that arrived meanwhile and
		// answers it once their transaction committed. Blocks while the batch queue is full
		// (the handler queue then fills, and what it drops the kiosks send again).
		// One worker per kiosk: the kiosk's top-ups in flight share a batch instead of
		// two batches of this ledger waiting for each other on the kiosk's epoch row.
		h := fnv.New32a()
		_, _ = h.Write([]byte(kiosk))
		l.batchq[h.Sum32()%uint32(len(l.batchq))] <- topupReq{kiosk: kiosk, t: t, c: l.checks(&t)}
		return
	}
	var res Result
	var err error
	seen := false
	if sr, ok := l.store.(seer); ok {
		// A retry of a top-up the store holds with the same content is answered from a
		// plain read: no write transaction, no policy checks (they ran at the first
		// delivery, and their outcome is stored). Anything else, an error of the read
		// included, takes the full path below, which decides again inside its transaction.
		var serr error
		res, seen, serr = sr.Seen(t)
		if serr != nil {
			l.log.Debug("ledger: duplicate pre-check failed; applying", "topup_id", t.TopupID, "err", serr)
		}
	}
	if !seen {
		res, err = l.store.Apply(t, l.checks(&t))
	}
	l.publishSigned(kiosk, wire.DownAck, l.topupAck(kiosk, t, res, err))
}

// runBatches is a batch worker: it takes the top-ups queued (at least one, at most
// BatchSize, without waiting for more), applies them in one transaction, and answers each
// after the commit, publishing without waiting for the PUBACKs.
func (l *Ledger) runBatches(bs BatchStore, q chan topupReq) {
	reqs := make([]topupReq, 0, l.cfg.BatchSize)
	items := make([]BatchItem, 0, l.cfg.BatchSize)
	for first := range q {
		reqs = append(reqs[:0], first)
	fill:
		for len(reqs) < l.cfg.BatchSize {
			select {
			case r, ok := <-q:
				if !ok {
					break fill
				}
				reqs = append(reqs, r)
			default:
				break fill
			}
		}
		items = items[:0]
		for _, r := range reqs {
			items = append(items, BatchItem{Topup: r.t, Checks: r.c})
		}
		out := bs.ApplyBatch(items)
		for i, r := range reqs {
			ack := l.topupAck(r.kiosk, r.t, out[i].Result, out[i].Err)
			l.pubSem <- struct{}{}
			l.pubs.Go(func() {
				defer func() { <-l.pubSem }()
				l.publishSigned(r.kiosk, wire.DownAck, ack)
			})
		}
	}
}

// topupAck counts and logs what the store did with a top-up and returns the ack to send.
func (l *Ledger) topupAck(kiosk string, t wire.Topup, res Result, err error) wire.Ack {
	ack := wire.Ack{V: wire.Version, TopupID: t.TopupID, AmountMinor: t.AmountMinor, Currency: t.Currency}
	if err != nil {
		// Nothing was credited; the kiosk retries with the same topup_id.
		l.stats.StoreErrors.Add(1)
		l.stats.RetryLater.Add(1)
		l.log.Error("ledger: apply failed", "topup_id", t.TopupID, "err", err)
		ack.Status = wire.AckRetryLater
	} else {
		ack.Status, ack.LedgerRef, ack.AckedThroughSeq = res.Status, res.LedgerRef, res.Watermark
		if res.NewEpoch {
			l.log.Warn("ledger: alarm: new journal epoch for kiosk", "kiosk", kiosk, "topup_id", t.TopupID)
		}
		switch res.Status {
		case wire.AckCredited:
			l.stats.Credited.Add(1)
			l.log.Info("ledger: credited", "topup_id", t.TopupID, "account", t.Account, "amount_minor", t.AmountMinor,
				"currency", t.Currency, "ledger_ref", res.LedgerRef, "watermark", res.Watermark, "suspense", res.Suspense)
		case wire.AckHeld:
			l.stats.Held.Add(1)
			ack.Reason = res.Reason
			l.log.Warn("ledger: security: top-up held for review", "topup_id", t.TopupID, "reason", res.Reason,
				"account", t.Account, "amount_minor", t.AmountMinor, "currency", t.Currency)
		case wire.AckDuplicate:
			l.stats.Duplicates.Add(1)
			l.log.Debug("ledger: duplicate", "topup_id", t.TopupID, "ledger_ref", res.LedgerRef)
		case wire.AckConflict:
			l.stats.Conflicts.Add(1)
			l.log.Error("ledger: conflict: same topup_id, different content", "topup_id", t.TopupID,
				"credited_minor", res.AmountMinor, "received_minor", t.AmountMinor, "ledger_ref", res.LedgerRef)
		}
	}
	return ack
}

func (l *Ledger) handleAuthz(topic string, payload []byte) {
	var r wire.AuthzRequest
	kiosk, ok := l.parse(topic, payload, wire.UpAuthz, &r)
	if !ok {
		return
	}
	resp, answer := l.authorize(kiosk, r)
	if !answer {
		return
	}
	if resp.Status == wire.AuthzOK {
		l.stats.AuthzOK.Add(1)
	} else {
		l.stats.AuthzDenied.Add(1)
	}
	l.log.Info("ledger: authz", "kiosk", kiosk, "req_id", r.ReqID, "status", resp.Status, "reason", resp.Reason, "remaining_minor", resp.RemainingMinor)
	l.publishSigned(kiosk, wire.DownAuthz, resp)
}

// authorize decides an authz request. answer is false when no answer should be sent: for a
// request without a usable req_id, or when the store cannot say what was credited today
// (the kiosk then falls back to its offline limits, as when the ledger is unreachable).
func (l *Ledger) authorize(kiosk string, r wire.AuthzRequest) (resp wire.AuthzResponse, answer bool) {
	// Every answer carries the ledger's signed time: a kiosk with an untrusted clock checks
	// the code's expiry against it.
	resp = wire.AuthzResponse{V: wire.Version, ReqID: r.ReqID, Status: wire.AuthzDenied, Now: l.now().UTC()}
	if err := r.Validate(); err != nil {
		l.stats.Rejected.Add(1)
		if r.ReqID == "" || len(r.ReqID) > 64 || !utf8.ValidString(r.ReqID) {
			return resp, false
		}
		resp.Reason = ReasonBadRequest
		return resp, true
	}
	// No proof, no answer about the account: without it any kiosk key could look up names
	// and limits of every account.
	if reason, err := l.checkAuthzProof(kiosk, r); err != nil {
		l.stats.StoreErrors.Add(1)
		l.log.Error("ledger: authz: store", "req_id", r.ReqID, "err", err)
		return resp, false
	} else if reason != "" {
		resp.Reason = reason
		return resp, true
	}
	name, known := l.cfg.Names[r.Account]
	resp.NameMasked = MaskAccount(r.Account)
	if known && name != "" {
		resp.NameMasked = MaskName(name)
	}
	if reason, denied := l.cfg.Deny[r.Account]; denied {
		if reason == "" {
			reason = ReasonDenied
		}
		resp.Reason = reason
		return resp, true
	}
	if l.cfg.RequireKnownAccount && !known {
		resp.Reason = ReasonUnknownAccount
		return resp, true
	}
	day := l.now().UTC().Format(time.DateOnly)
	today, err := l.store.DailyCredited(r.Account, day)
	if err != nil {
		l.stats.StoreErrors.Add(1)
		l.log.Error("ledger: authz: store", "req_id", r.ReqID, "err", err)
		return resp, false
	}
	remaining := l.cfg.Limits.DailyMinor - today[l.cfg.Limits.Currency]
	remaining = min(remaining, l.cfg.Policy.effective(kiosk, l.cfg.Limits).MaxTopupMinor)
	if remaining <= 0 {
		resp.Reason = ReasonLimitReached
		return resp, true
	}
	resp.Status, resp.RemainingMinor = wire.AuthzOK, remaining
	return resp, true
}

// checks runs the policy checks that need no stored state and says what the store must
// check in the same transaction as the credit.
func (l *Ledger) checks(t *wire.Topup) Checks {
	p := l.cfg.Policy.effective(t.KioskID, l.cfg.Limits)
	pr, hold := p.checkTopup(l.cfg.WalletKeys, t)
	c := Checks{Hold: hold, QRNonce: pr.Nonce, KioskDailyNotes: p.DailyNotes, KioskDailyMinor: p.DailyCashInMinor,
		StrictEpochs: p.StrictEpochs,
		// A follow-up carries the code of the session it follows; the store still checks
		// that its notes settle open suspense records of that top-up.
		QRSharedWith: t.FollowsTopupID}
	// The kiosk's day is the day of the code's expiry: signed by the wallet, so a kiosk key
	// cannot spread forged cash-in over invented dates, and an offline top-up still counts
	// for the day it happened. Without a proof the top-up is held anyway.
	if !pr.Expires.IsZero() {
		c.Day = pr.Expires.UTC().Format(time.DateOnly)
	} else {
		c.Day = l.now().UTC().Format(time.DateOnly)
	}
	return c
}

// checkAuthzProof returns why an authz request has no valid proof ("" when it has one): the
// code must verify, name the account, be unexpired now (an authz is online, give or take the
// tolerance), and not have opened a top-up already.
func (l *Ledger) checkAuthzProof(kiosk string, r wire.AuthzRequest) (string, error) {
	pr, reason := verifyQR(l.cfg.WalletKeys, r.QR, r.Account)
	switch {
	case reason == HoldQRMissing:
		return ReasonNoProof, nil
	case reason != "":
		return ReasonBadProof, nil
	}
	tol := time.Duration(l.cfg.Policy.effective(kiosk, l.cfg.Limits).QRTolerance)
	if !l.now().Before(pr.Expires.Add(tol)) {
		return ReasonProofExpired, nil
	}
	owner, err := l.store.QRNonceOwner(pr.Nonce)
	if err != nil {
		return "", err
	}
	if owner != "" {
		return ReasonProofUsed, nil
	}
	return "", nil
}

func (l *Ledger) publishSigned(kiosk, suffix string, payload any) {
	raw, err := l.cfg.Signer.Seal(payload)
	if err != nil {
		l.stats.PublishErrors.Add(1)
		l.log.Error("ledger: seal", "err", err)
		return
	}
	l.mu.Lock()
	c := l.client
	l.mu.Unlock()
	if c == nil {
		l.stats.PublishErrors.Add(1)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.PublishTimeout)
	defer cancel()
	topic := wire.Topic(kiosk, suffix)
	if err := c.Publish(ctx, topic, 1, false, raw); err != nil {
		// The kiosk asks again; the store answers the same way the second time.
		l.stats.PublishErrors.Add(1)
		l.log.Warn("ledger: publish failed", "topic", topic, "err", err)
		return
	}
	l.stats.Published.Add(1)
}

func (l *Ledger) handleStatus(topic string, payload []byte) {
	var s wire.Status
	if kiosk, ok := l.parse(topic, payload, wire.UpStatus, &s); ok {
		l.fleet.status(kiosk, s, l.now())
	}
}

func (l *Ledger) handleHeartbeat(topic string, payload []byte) {
	var h wire.Heartbeat
	if kiosk, ok := l.parse(topic, payload, wire.UpHeartbeat, &h); ok {
		l.fleet.heartbeat(kiosk, h, l.now())
	}
}

func (l *Ledger) handleAlarm(topic string, payload []byte) {
	var a wire.Alarm
	kiosk, ok := l.parse(topic, payload, wire.UpAlarm, &a)
	if !ok {
		return
	}
	if a.AlarmID == "" || a.Kind == "" {
		l.stats.Rejected.Add(1)
		l.log.Warn("ledger: alarm without alarm_id or kind", "topic", topic)
		return
	}
	l.log.Info("ledger: alarm", "kiosk", kiosk, "alarm_id", a.AlarmID, "kind", a.Kind, "severity", a.Severity, "cleared", a.Cleared)
	l.fleet.alarm(kiosk, a, l.now())
}

func (l *Ledger) handleCmdResult(topic string, payload []byte) {
	var r wire.CmdResult
	kiosk, ok := l.parse(topic, payload, wire.UpCmdResult, &r)
	if !ok {
		return
	}
	if r.CmdID == "" {
		l.stats.Rejected.Add(1)
		return
	}
	l.log.Info("ledger: command result", "kiosk", kiosk, "cmd_id", r.CmdID, "status", r.Status, "reason", r.Reason)
	l.fleet.cmdResult(kiosk, r, l.now())
}

// MaskAccount masks an account id for display on a kiosk screen: "ab***yz" for ids of six
// characters or more, else the first character and "***".
func MaskAccount(id string) string {
	r := []rune(id)
	switch {
	case len(r) == 0:
		return ""
	case len(r) >= 6:
		return string(r[:2]) + "***" + string(r[len(r)-2:])
	default:
		return string(r[:1]) + "***"
	}
}

// MaskName masks a display name: first and last character kept, the rest starred ("张*丰",
// "J**n"); a two-character name keeps its first ("张*").
func MaskName(name string) string {
	r := []rune(strings.TrimSpace(name))
	switch len(r) {
	case 0:
		return ""
	case 1:
		return "*"
	case 2:
		return string(r[0]) + "*"
	default:
		return string(r[0]) + strings.Repeat("*", len(r)-2) + string(r[len(r)-1])
	}
}

// Stats are the ledger's counters since start.
type Stats struct {
	Credited      uint64 `json:"credited"`
	Duplicates    uint64 `json:"duplicates"`
	Conflicts     uint64 `json:"conflicts"`
	Held          uint64 `json:"held"`
	RetryLater    uint64 `json:"retry_later"`
	Rejected      uint64 `json:"rejected_payloads"`
	Oversized     uint64 `json:"oversized_payloads"`
	BadTopics     uint64 `json:"bad_topics"`
	AuthzOK       uint64 `json:"authz_ok"`
	AuthzDenied   uint64 `json:"authz_denied"`
	Published     uint64 `json:"published"`
	PublishErrors uint64 `json:"publish_errors"`
	StoreErrors   uint64 `json:"store_errors"`
	Unauthorized  uint64 `json:"unauthorized_requests"`
	Dropped       uint64 `json:"dropped_messages"`
	MQTTConnected bool   `json:"mqtt_connected"`
}

type stats struct {
	Credited, Duplicates, Conflicts, Held, RetryLater, Rejected, Oversized, BadTopics atomic.Uint64
	AuthzOK, AuthzDenied, Published, PublishErrors, StoreErrors, Unauthorized         atomic.Uint64
}

// Stats returns a snapshot of the counters.
func (l *Ledger) Stats() Stats {
	s := &l.stats
	out := Stats{
		Credited: s.Credited.Load(), Duplicates: s.Duplicates.Load(), Conflicts: s.Conflicts.Load(), Held: s.Held.Load(),
		RetryLater: s.RetryLater.Load(), Rejected: s.Rejected.Load(), Oversized: s.Oversized.Load(),
		BadTopics: s.BadTopics.Load(), AuthzOK: s.AuthzOK.Load(), AuthzDenied: s.AuthzDenied.Load(),
		Published: s.Published.Load(), PublishErrors: s.PublishErrors.Load(), StoreErrors: s.StoreErrors.Load(),
		Unauthorized: s.Unauthorized.Load(),
	}
	l.mu.Lock()
	c := l.client
	l.mu.Unlock()
	if c != nil {
		out.Dropped = c.Dropped()
		out.MQTTConnected = c.Connected()
	}
	return out
}
