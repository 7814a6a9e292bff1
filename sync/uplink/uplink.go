// Package uplink is the kiosk side of the MQTT contract (sync/CONTRACT.md): it drains the
// journal's outbox of top-ups to the ledger, applies the ledger's signed acks, asks the
// ledger for authorizations, and publishes status, heartbeats and alarms. It also hears
// signed remote commands (down/cmd) for whoever handles them (kiosk/remote) and publishes
// their results (up/cmd_result).
//
// Alarms are the life of persistent health conditions: one alarm_id per condition, raised
// once while it stands and cleared when its cause goes. One-off events are not alarms; the
// health registry counts them for the heartbeat.
//
// Without a journal (a kiosk whose journal failed its check) the uplink only reports: it
// publishes status, heartbeats and alarms, and takes neither acks nor commands.
//
// The outbox lives in the journal, never in the MQTT client: an entry leaves it only when a
// credited or duplicate ack, signed by a ledger key and matching the top-up's amount and
// currency, has been journaled. Until then the top-up is republished with the same topup_id
// and the same payload bytes, several in flight at a time, forever: after a capped
// exponential backoff with jitter when the publish failed (Backoff), and, when the broker
// PUBACKed it, after a few ack round trips, backing off per entry (AckWait), so a slow
// ledger is not buried under duplicates of what it has queued; when several are overdue, one
// is published again at a time, and an ack restarts the others' wait (an ack that answers
// such a retry makes the others due at once: the ledger lost them). A reconnect makes every
// pending entry due at once, so a kiosk that was offline for days catches up as soon as the
// broker is back, as fast as the window allows: one in flight after the reconnect, one more
// per ack up to MaxInFlight, halved by an ack for a top-up that had to be sent again (see
// adjustWindow).
package uplink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/kioskd/kioskd/kiosk/failpoint"
	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/sync/wire"
)

// Client is the MQTT client the uplink needs (sync/mqttc provides it).
type Client interface {
	// Publish sends and, for QoS 1, waits for the broker's PUBACK, bounded by ctx.
	Publish(ctx context.Context, topic string, qos byte, retain bool, payload []byte) error
	// Subscribe adds a subscription; h must not block for long.
	Subscribe(ctx context.Context, filter string, qos byte, h func(topic string, payload []byte)) error
	Connected() bool
}

// Config wires an Uplink.
type Config struct {
	KioskID string
	Client  Client
	// Journal holds the outbox. Nil runs a report-only uplink (safe mode): status,
	// heartbeats and alarms, no outbox, no acks, no commands.
	Journal    *journal.Journal
	LedgerKeys wire.Keyring
	Health     *health.Registry
	// OnCommand, when set, gets every down/cmd payload as received (the signed envelope):
	// the handler verifies it. It must not block for long.
	OnCommand func(payload []byte)
	// MaxInFlight bounds the top-ups published and not yet acked at once. Default 4. After
	// a (re)connect or SyncNow the uplink starts with one in flight and opens up to this
	// as the acks come (see adjustWindow).
	MaxInFlight int
	// RetryMin and RetryMax bound the backoff between publishes of one top-up.
	RetryMin, RetryMax time.Duration
	// PublishTimeout bounds one publish (waiting for PUBACK). Default 10 s.
	PublishTimeout time.Duration
	// OnAck is called after an ack changed a top-up in the journal.
	OnAck func(journal.Topup)
	// Heartbeat, when set, is published every HeartbeatEvery.
	Heartbeat      func() wire.Heartbeat
	HeartbeatEvery time.Duration
	// Status returns the status to publish (retained) on connect and on SetState.
	Status func() wire.Status
	Now    func() time.Time
	// Jitter returns a value in [0,1); default math/rand/v2.
	Jitter func() float64
	Logger *slog.Logger
}

// Errors.
var (
	// ErrOffline is returned by Authorize when the broker is not connected.
	ErrOffline = errors.New("uplink: not connected")
)

type entry struct {
	attempts int
	nextTry  time.Time
	inFlight bool
	stopped  bool
	// follows is the seq of the top-up a follow-up top-up follows (0: none): it is sent only
	// once that one has left the outbox, because the ledger credits a follow-up only against
	// the suspense record its original creates.
	follows uint64
	// sentAt is when the last publish of the top-up started: the ack's round trip is
	// measured from it.
	sentAt time.Time
	// firstSentAt is when its first publish on this connection started: the smoothed round
	// trip (AckWait) is sampled from it (see handleAck).
	firstSentAt time.Time
	// sends counts the publishes the broker PUBACKed since firstSentAt was reset.
	sends int
	// awaitingAck: the broker PUBACKed the last publish and the ledger's ack has not come;
	// nextTry is then when to stop waiting for it (see drain and handleAck).
	awaitingAck bool
	// deferred: its ack was overdue and another overdue top-up was published again first
	// (one at a time, see drain). It no longer holds a place in the window: counted, the
	// deferred entries filled a window closed down to one, the retry never fit, and the
	// outbox stood still.
	deferred bool
}

// sendAgain makes e due at now as a top-up not yet sent: no ack awaited, and the round trip
// sampled from its next publish (one measured across an outage would be the outage's length).
func (e *entry) sendAgain(now time.Time) {
	e.nextTry = now
	e.awaitingAck, e.deferred = false, false
	e.firstSentAt, e.sends = time.Time{}, 0
}

// Uplink drains the outbox.
type Uplink struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	entries map[uint64]*entry
	authz   map[string]chan wire.AuthzResponse
	alarms  []wire.Alarm
	results []wire.CmdResult
	resMu   sync.Mutex
	dropped int
	rtt     time.Duration
	// srtt is the smoothed ack round trip (see AckWait).
	srtt time.Duration
	// window is how many top-ups may be in flight now, 1..MaxInFlight (see adjustWindow).
	window  int
	conns   uint64
	lastAck time.Time
	wake    chan struct{}
	runCtx  context.Context
	tasks   sync.WaitGroup
	reqN    uint64
	// box is the in-memory copy of the outbox (see drain).
	box       map[uint64]journal.Topup
	boxLoaded time.Time
	boxDirty  bool
	// gone, while a reload reads the journal, collects the seqs that acks removed from
	// the outbox meanwhile: the reload may have read them before the ack was journaled,
	// and installing that stale copy published them again (a duplicate for the ledger).
	gone map[uint64]struct{}

	// colls are the collection records waiting for the ledger (collection.go).
	colls      map[string]*collState
	collDirty  bool
	collLoaded bool

	// counters for diagnostics and benchmarks
	published, acks, rejectedAcks uint64
}

// New returns an uplink; call Run.
func New(cfg Config) (*Uplink, error) {
	if cfg.Client == nil || cfg.Health == nil || !wire.ValidKioskID(cfg.KioskID) {
		return nil, errors.New("uplink: kiosk id, client and health are required")
	}
	if cfg.Journal != nil && len(cfg.LedgerKeys) == 0 {
		return nil, errors.New("uplink: at least one ledger key is required to accept acks")
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 4
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = time.Second
	}
	if cfg.RetryMax < cfg.RetryMin {
		cfg.RetryMax = 5 * time.Minute
	}
	if cfg.PublishTimeout <= 0 {
		cfg.PublishTimeout = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Jitter == nil {
		cfg.Jitter = rand.Float64
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Uplink{cfg: cfg, log: cfg.Logger.With("component", "uplink"), entries: map[uint64]*entry{},
		authz: map[string]chan wire.AuthzResponse{}, wake: make(chan struct{}, 1), window: 1}, nil
}

// Kick tells the uplink the outbox changed (a new top-up) and makes it look now.
func (u *Uplink) Kick() {
	u.mu.Lock()
	u.boxDirty = true
	u.collDirty = true
	u.mu.Unlock()
	u.wakeup()
}

func (u *Uplink) wakeup() {
	select {
	case u.wake <- struct{}{}:
	default:
	}
}

// Backoff returns the wait before attempt n+1 of a top-up: RetryMin·2^(n-1), capped at
// RetryMax, scaled by a jitter factor in [0.5, 1) so a fleet coming back online does not
// retry in lockstep.
func (u *Uplink) Backoff(attempts int) time.Duration {
	d := u.cfg.RetryMin
	for i := 1; i < attempts && d < u.cfg.RetryMax; i++ {
		d *= 2
	}
	d = min(d, u.cfg.RetryMax)
	return time.Duration(float64(d) * (0.5 + u.cfg.Jitter()/2))
}

// ackRTTFactor: after the broker's PUBACK, the first retry waits at least this many ack round
// trips. Under load the ack round trip is mostly queueing at the ledger; a retry sooner than
// that only adds a duplicate to the queue it is waiting in.
const ackRTTFactor = 4

// AckWait returns the wait for the ledger's ack after the broker PUBACKed attempt n of a
// top-up, before it is published again: max(RetryMin, ackRTTFactor · smoothed ack round
// trip) · 2^(n-1), capped at RetryMax, scaled by a jitter factor in [1, 1.5) (never below
// the base, so never sooner than a few round trips), and again capped at RetryMax.
func (u *Uplink) AckWait(attempts int) time.Duration {
	u.mu.Lock()
	srtt := u.srtt
	u.mu.Unlock()
	return u.ackWait(attempts, srtt)
}

func (u *Uplink) ackWait(attempts int, srtt time.Duration) time.Duration {
	d := max(u.cfg.RetryMin, ackRTTFactor*srtt)
	for i := 1; i < attempts && d < u.cfg.RetryMax; i++ {
		d *= 2
	}
	d = min(d, u.cfg.RetryMax)
	return min(time.Duration(float64(d)*(1+u.cfg.Jitter()/2)), u.cfg.RetryMax)
}

// adjustWindow opens or closes the in-flight window when an ack arrives (u.mu held), the
// way TCP's congestion window moves: each ack opens it by one, up to MaxInFlight; an ack for
// a top-up that was sent more than once on this connection halves it, down to one. After a
// (re)connect or SyncNow it starts at one.
//
// A kiosk alone opens to MaxInFlight after a few acks. A fleet that reconnects at once (a
// broker restart) or is told to sync at once would otherwise put MaxInFlight top-ups each
// into the ledgers' queue before any ack told how long that queue is: every one of them
// waiting longer than AckWait was sent again, a duplicate in the same queue (a third of a
// thousand kiosks' drain was duplicates, make loadtest). Starting at one, the first acks set
// the round trip (srtt) before the queue fills, and a kiosk whose top-ups still had to be
// sent again keeps fewer in flight.
func (u *Uplink) adjustWindow(resent bool) {
	if resent {
		u.window = max(u.window/2, 1)
	} else {
		u.window = min(u.window+1, u.cfg.MaxInFlight)
	}
}

// OnConnect must be called after every (re)connect: it subscribes to the kiosk's down
// topics, publishes the retained status, and makes every pending top-up due now.
func (u *Uplink) OnConnect(ctx context.Context) {
	id := u.cfg.KioskID
	subs := map[string]func(string, []byte){}
	if u.cfg.Journal != nil {
		subs[wire.Topic(id, wire.DownAck)] = u.handleAck
		subs[wire.Topic(id, wire.DownCollectionAck)] = u.handleCollectionAck
		subs[wire.Topic(id, wire.DownAuthz)] = u.handleAuthz
		if u.cfg.OnCommand != nil {
			subs[wire.Topic(id, wire.DownCmd)] = func(_ string, p []byte) { u.cfg.OnCommand(p) }
		}
	}
	for topic, h := range subs {
		u.subscribe(ctx, topic, h)
	}
	u.mu.Lock()
	if u.conns++; u.conns > 1 {
		u.cfg.Health.Count("mqtt_reconnects", 1)
	}
	// The whole fleet reconnects at once after a broker restart: each kiosk starts with
	// one top-up in flight (adjustWindow).
	u.window = 1
	now := u.cfg.Now()
	for _, e := range u.entries {
		// What the last connection delivered may be lost with it: everything is sent again.
		e.sendAgain(now)
	}
	for _, st := range u.colls {
		st.nextTry = now
	}
	u.mu.Unlock()
	u.PublishStatus(ctx)
	u.Kick()
}

// subscribe retries a refused or lost subscription while the connection lasts: without it
// the kiosk would hear no ack on a connection that looks healthy. A subscription that keeps
// failing is alarmed (the outbox keeps everything meanwhile).
func (u *Uplink) subscribe(ctx context.Context, topic string, h func(string, []byte)) {
	wait := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		sctx, cancel := context.WithTimeout(ctx, u.cfg.PublishTimeout)
		err := u.cfg.Client.Subscribe(sctx, topic, 1, h)
		cancel()
		if err == nil {
			u.cfg.Health.Clear("mqtt_subscribe")
			return
		}
		u.log.Warn("subscribe failed", "topic", topic, "attempt", attempt, "err", err)
		if attempt == 3 {
			u.cfg.Health.Set("mqtt_subscribe", health.Warning, health.Engineer, health.Degrades,
				fmt.Sprintf("cannot subscribe to %s: %v", topic, err))
		}
		if !u.cfg.Client.Connected() {
			return // the next connection subscribes again
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(wait*2, 30*time.Second)
	}
}

// PublishStatus publishes the retained status now (best effort).
func (u *Uplink) PublishStatus(ctx context.Context) {
	if u.cfg.Status == nil || !u.cfg.Client.Connected() {
		return
	}
	st := u.cfg.Status()
	st.V = wire.Version
	b, err := marshal(st)
	if err != nil {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, u.cfg.PublishTimeout)
	defer cancel()
	if err := u.cfg.Client.Publish(pctx, wire.Topic(u.cfg.KioskID, wire.UpStatus), 1, true, b); err != nil {
		u.log.Warn("status publish failed", "err", err)
	}
}

// Run drains the outbox until ctx ends; it returns nil on cancellation after its publishes
// finished.
func (u *Uplink) Run(ctx context.Context) error {
	u.mu.Lock()
	u.runCtx = ctx
	u.mu.Unlock()
	defer u.tasks.Wait()
	var hbNext time.Time
	if u.cfg.Heartbeat != nil && u.cfg.HeartbeatEvery > 0 {
		hbNext = u.cfg.Now().Add(u.cfg.HeartbeatEvery)
	}
	for {
		next := u.drain(ctx)
		next = min(next, u.drainCollections(ctx, u.cfg.Client.Connected()))
		if !hbNext.IsZero() {
			if now := u.cfg.Now(); !now.Before(hbNext) {
				u.sendHeartbeat(ctx)
				hbNext = now.Add(u.cfg.HeartbeatEvery)
			}
			next = min(next, hbNext.Sub(u.cfg.Now()))
		}
		u.checkConflicts()
		u.flushAlarms(ctx)
		u.flushResults(ctx)
		t := time.NewTimer(max(next, time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-u.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// outboxRefresh bounds how long the in-memory copy of the outbox may go without a reload
// from the journal (new top-ups also trigger one through Kick).
const outboxRefresh = 30 * time.Second

// drain publishes what is due and returns when to look again. It works on an in-memory copy
// of the outbox, reloaded from the journal when a top-up was added (Kick), after a reconnect,
// and every outboxRefresh: reading and decoding the whole outbox at every wake-up made a long
// catch-up quadratic.
func (u *Uplink) drain(ctx context.Context) time.Duration {
	next := time.Minute
	if u.cfg.Journal == nil {
		return next
	}
	u.mu.Lock()
	reload := u.boxDirty || u.box == nil || u.cfg.Now().Sub(u.boxLoaded) >= outboxRefresh
	u.boxDirty = false
	if reload {
		u.gone = map[uint64]struct{}{}
	}
	u.mu.Unlock()
	if reload {
		box, err := u.cfg.Journal.Outbox()
		if err != nil {
			u.log.Error("reading the outbox", "err", err)
			u.mu.Lock()
			u.boxDirty = true
			u.gone = nil
			u.mu.Unlock()
			return 5 * time.Second
		}
		m := make(map[uint64]journal.Topup, len(box))
		for _, t := range box {
			m[t.Seq] = t
		}
		u.mu.Lock()
		for seq := range u.gone {
			delete(m, seq)
		}
		u.box, u.boxLoaded, u.gone = m, u.cfg.Now(), nil
		u.mu.Unlock()
	}
	connected := u.cfg.Client.Connected()
	u.mu.Lock()
	defer u.mu.Unlock()
	now := u.cfg.Now()
	// In flight: publishing, or published and waiting for the ledger's ack (until the entry's
	// retry is due). MaxInFlight bounds both, so a slow ledger is not flooded with retries.
	inFlight := 0
	for seq, e := range u.entries {
		if _, ok := u.box[seq]; !ok && !e.inFlight {
			delete(u.entries, seq)
			continue
		}
		if e.inFlight || (e.attempts > 0 && now.Before(e.nextTry) && !e.deferred) {
			inFlight++
		}
	}
	seqs := make([]uint64, 0, len(u.box))
	for seq := range u.box {
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	// Of the top-ups whose ack is overdue, one is published again per pass: the one sent
	// the fewest times (the oldest of those). The others wait one more AckWait. Under a
	// fleet-wide backlog every ack is late by the ledger's queue, not lost:
	// publishing every overdue top-up again put a duplicate of each into that queue, a third
	// of the drain's work. One at a time still finds a lost one, and the rotation by
	// attempts means a top-up the ledger never answers does not starve the others.
	if connected {
		var retry *entry
		for _, seq := range seqs {
			e := u.entries[seq]
			if e == nil || !e.awaitingAck || e.inFlight || e.nextTry.After(now) || u.box[seq].State == journal.TopupConflict {
				continue
			}
			if retry == nil || e.attempts < retry.attempts {
				retry = e
			}
		}
		for _, seq := range seqs {
			e := u.entries[seq]
			if e == nil || e == retry || !e.awaitingAck || e.inFlight || e.nextTry.After(now) {
				continue
			}
			// Not counted in flight, as before its wait ran out: a top-up the ledger never
			// answers must not hold a place in the window for ever.
			e.nextTry = now.Add(u.ackWait(e.attempts, u.srtt))
			e.deferred = true
		}
	}
	for _, seq := range seqs {
		t := u.box[seq]
		e := u.entries[seq]
		if e == nil {
			e = &entry{nextTry: now, follows: followsSeq(t)}
			u.entries[seq] = e
		}
		e.stopped = t.State == journal.TopupConflict
		if e.stopped || e.inFlight {
			continue
		}
		if orig, waiting := u.box[e.follows]; e.follows != 0 && waiting && orig.State != journal.TopupConflict {
			continue // its original is not acked yet; the ack's wake-up brings it back here
		}
		if wait := e.nextTry.Sub(now); wait > 0 {
			next = min(next, wait)
			continue
		}
		if !connected || inFlight >= u.window {
			continue
		}
		e.inFlight = true
		inFlight++
		u.tasks.Add(1)
		go u.publish(ctx, t)
	}
	return next
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// followsSeq returns the seq of the top-up t follows, 0 when t is no follow-up (or names
// another journal's top-up, which cannot be in this outbox).
func followsSeq(t journal.Topup) uint64 {
	w, err := t.Wire()
	if err != nil || w.FollowsTopupID == "" {
		return 0
	}
	_, _, seq, err := wire.ParseTopupID(w.FollowsTopupID)
	if err != nil {
		return 0
	}
	return seq
}

func (u *Uplink) publish(ctx context.Context, t journal.Topup) {
	defer u.tasks.Done()
	pctx, cancel := context.WithTimeout(ctx, u.cfg.PublishTimeout)
	u.mu.Lock()
	if e := u.entries[t.Seq]; e != nil {
		e.sentAt = u.cfg.Now()
		if e.firstSentAt.IsZero() {
			e.firstSentAt = e.sentAt
		}
	}
	u.mu.Unlock()
	failpoint.Hit("before-publish")
	err := u.cfg.Client.Publish(pctx, wire.Topic(u.cfg.KioskID, wire.UpTopup), 1, false, t.Payload)
	cancel()
	failpoint.Hit("after-publish")
	u.mu.Lock()
	if e := u.entries[t.Seq]; e != nil {
		e.inFlight = false
		e.attempts++
		e.awaitingAck, e.deferred = err == nil, false
		if err == nil {
			e.sends++
			// After a PUBACK the ledger has it (or will: it may be queued at the broker or
			// the ledger); the ack should follow. If it does not within a few ack round
			// trips, backing off per entry, publish again: the ledger answers duplicate.
			e.nextTry = u.cfg.Now().Add(u.ackWait(e.attempts, u.srtt))
		} else {
			e.nextTry = u.cfg.Now().Add(u.Backoff(e.attempts))
		}
	}
	if err == nil {
		u.published++
	}
	u.mu.Unlock()
	if err != nil {
		u.log.Info("top-up publish failed; will retry", "topup", t.TopupID, "err", err)
	} else {
		u.log.Debug("top-up published", "topup", t.TopupID)
	}
	u.wakeup()
}

// handleAck verifies and applies a down/ack.
func (u *Uplink) handleAck(topic string, payload []byte) {
	var a wire.Ack
	kid, err := u.cfg.LedgerKeys.Open(payload, &a)
	if err == nil {
		err = a.Validate()
	}
	if err != nil {
		u.rejectAck(fmt.Sprintf("ack refused (kid %q): %v", kid, err))
		return
	}
	failpoint.Hit("before-apply-ack")
	res, err := u.cfg.Journal.ApplyAck(a)
	failpoint.Hit("after-apply-ack")
	switch {
	case errors.Is(err, journal.ErrUnknownTopup):
		u.rejectAck(fmt.Sprintf("ack for a top-up this kiosk does not hold: %s", a.TopupID))
		return
	case errors.Is(err, journal.ErrAckMismatch):
		u.rejectAck(err.Error())
		return
	case err != nil:
		u.log.Error("applying ack", "topup", a.TopupID, "err", err)
		return
	}
	if res.Gap != "" {
		u.cfg.Health.Event("ledger_gap", health.Critical, health.Engineer, res.Gap)
	}
	u.mu.Lock()
	u.acks++
	u.lastAck = u.cfg.Now()
	// answeredRetry: the ack is for a top-up that was published again after its ack was
	// overdue, so the ledger answers and what it was sent before may have been lost.
	answeredRetry := false
	if e := u.entries[res.Topup.Seq]; e != nil && !e.sentAt.IsZero() && res.Changed {
		answeredRetry = e.sends > 1
		u.rtt = max(u.lastAck.Sub(e.sentAt), 0)
		// The smoothed round trip is sampled from the first publish (on this connection):
		// the ack of a retried top-up cannot tell which publish it answers, and the first
		// is the safe guess, never shorter than the truth. Sampling only top-ups published
		// once (Karn's rule) starved the estimate exactly when it mattered: under load
		// nearly every ack comes after a retry, so the estimate stayed at the idle round
		// trip and every top-up was retried again and again. Smoothed like TCP's (RFC
		// 6298, alpha 1/8), but a rise is taken at once: a ledger that slows down must not
		// be flooded with retries while the average catches up.
		if sample := max(u.lastAck.Sub(e.firstSentAt), 0); !e.firstSentAt.IsZero() {
			if u.srtt == 0 || sample > u.srtt {
				u.srtt = sample
			} else {
				u.srtt += (sample - u.srtt) / 8
			}
		}
		u.adjustWindow(e.sends > 1)
	}
	switch a.Status {
	case wire.AckCredited, wire.AckDuplicate, wire.AckHeld:
		delete(u.box, res.Topup.Seq)
		if u.gone != nil {
			u.gone[res.Topup.Seq] = struct{}{}
		}
	case wire.AckConflict:
		if t, ok := u.box[res.Topup.Seq]; ok {
			t.State = journal.TopupConflict
			u.box[res.Topup.Seq] = t
		}
	}
	if e := u.entries[res.Topup.Seq]; e != nil {
		e.awaitingAck, e.deferred = false, false
		switch a.Status {
		case wire.AckRetryLater:
			e.nextTry = u.cfg.Now().Add(u.Backoff(e.attempts + 1))
		case wire.AckConflict:
			e.stopped = true
		case wire.AckCredited, wire.AckDuplicate, wire.AckHeld:
			e.attempts = 0 // no longer waiting for an ack
			e.nextTry = u.cfg.Now()
		}
	}
	if res.Changed && (a.Status == wire.AckCredited || a.Status == wire.AckDuplicate || a.Status == wire.AckHeld) {
		// The ledger is working through this kiosk's top-ups: the others it has are behind
		// this one in its queue, so their wait for an ack starts again from now (as TCP
		// restarts its retransmission timer when an ACK brings news). But when the ack
		// answers a retry, the ledger is there and the first publishes went unanswered (a
		// ledger restart loses what it had queued): the top-ups deferred behind that retry
		// are due now, as TCP's fast retransmit resends at once, or they would wait one
		// AckWait each, and after an outage AckWait is the outage's length (up to RetryMax).
		now := u.cfg.Now()
		for seq, e := range u.entries {
			if seq == res.Topup.Seq || !e.awaitingAck || e.inFlight {
				continue
			}
			if answeredRetry && e.deferred {
				e.nextTry = now
			} else {
				e.nextTry = later(e.nextTry, now.Add(u.ackWait(e.attempts, u.srtt)))
			}
		}
	}
	u.mu.Unlock()
	if a.Status == wire.AckConflict && res.Changed {
		u.cfg.Health.Event("topup_conflict", health.Critical, health.Engineer,
			fmt.Sprintf("ledger holds %s with different content; retries stopped", a.TopupID))
	}
	if a.Status == wire.AckHeld && res.Changed {
		// Not an alarm for the kiosk's staff: the ledger raised it for ops, who decide.
		u.log.Warn("ledger held a top-up for review", "topup", a.TopupID, "reason", a.Reason)
	}
	if res.Changed {
		u.log.Info("ack applied", "topup", a.TopupID, "status", a.Status, "ledger_ref", a.LedgerRef)
		if u.cfg.OnAck != nil {
			u.cfg.OnAck(res.Topup)
		}
	}
	u.wakeup()
}

func (u *Uplink) rejectAck(why string) {
	u.mu.Lock()
	u.rejectedAcks++
	u.mu.Unlock()
	u.log.Warn("ignoring ack", "why", why)
	u.cfg.Health.Event("bad_ack", health.Warning, health.Engineer, why)
}

// Authorize asks the ledger about an account (up/authz → signed down/authz). qr is the whole
// wallet-signed code the customer showed: the ledger answers only for an account it proves.
func (u *Uplink) Authorize(ctx context.Context, account, nonce, qr string) (wire.AuthzResponse, error) {
	if !u.cfg.Client.Connected() {
		return wire.AuthzResponse{}, ErrOffline
	}
	u.mu.Lock()
	u.reqN++
	id := fmt.Sprintf("%s-%d-%d", u.cfg.KioskID, u.cfg.Now().UnixNano(), u.reqN)
	ch := make(chan wire.AuthzResponse, 1)
	u.authz[id] = ch
	u.mu.Unlock()
	defer func() {
		u.mu.Lock()
		delete(u.authz, id)
		u.mu.Unlock()
	}()
	b, err := marshal(wire.AuthzRequest{V: wire.Version, ReqID: id, Account: account, QRNonce: nonce, QR: qr})
	if err != nil {
		return wire.AuthzResponse{}, err
	}
	if err := u.cfg.Client.Publish(ctx, wire.Topic(u.cfg.KioskID, wire.UpAuthz), 1, false, b); err != nil {
		return wire.AuthzResponse{}, fmt.Errorf("uplink: authz request: %w", err)
	}
	select {
	case r := <-ch:
		return r, nil
	case <-ctx.Done():
		return wire.AuthzResponse{}, fmt.Errorf("uplink: authz: %w", ctx.Err())
	}
}

func (u *Uplink) handleAuthz(topic string, payload []byte) {
	var r wire.AuthzResponse
	kid, err := u.cfg.LedgerKeys.Open(payload, &r)
	if err == nil {
		err = r.Validate()
	}
	if err != nil {
		u.log.Warn("ignoring authz response", "kid", kid, "err", err)
		u.cfg.Health.Event("bad_authz", health.Warning, health.Engineer, err.Error())
		return
	}
	u.mu.Lock()
	ch := u.authz[r.ReqID]
	u.mu.Unlock()
	if ch == nil {
		u.log.Info("authz response for no pending request", "req_id", r.ReqID)
		return
	}
	select {
	case ch <- r:
	default:
	}
}

// maxAlarmQueue bounds the alarms kept while offline; alarms are also in the journal.
const maxAlarmQueue = 256

// Alarm queues the raise or the clear of a persistent condition for up/alarm (QoS 1). Events
// (counted in the heartbeat instead) and updates of a raised condition (the retained status
// carries the new detail) are not alarms and are ignored. Safe to call from a health
// listener: it never blocks.
func (u *Uplink) Alarm(c health.Condition) {
	if c.Event || c.Updated {
		return
	}
	a := AlarmOf(c)
	u.mu.Lock()
	if len(u.alarms) >= maxAlarmQueue {
		u.alarms = u.alarms[1:]
		u.dropped++
	}
	u.alarms = append(u.alarms, a)
	u.mu.Unlock()
	u.wakeup()
}

// AlarmOf is the up/alarm message of a condition's raise or clear.
func AlarmOf(c health.Condition) wire.Alarm {
	a := wire.Alarm{V: wire.Version, AlarmID: c.ID, Kind: c.Kind, Severity: string(c.Severity), Actor: string(c.Actor),
		At: c.Since, Details: c.Detail, Detail: c.Detail, Cleared: c.Cleared, State: wire.AlarmRaised, RaisedAt: c.RaisedAt}
	if a.RaisedAt.IsZero() {
		a.RaisedAt = c.Since
	}
	if c.Cleared {
		a.State, a.ClearedAt = wire.AlarmCleared, c.Since
	}
	return a
}

// ConditionsOf is the status's list of open conditions.
func ConditionsOf(active []health.Condition) []wire.Condition {
	out := make([]wire.Condition, 0, len(active))
	for _, c := range active {
		out = append(out, wire.Condition{Kind: c.Kind, Severity: string(c.Severity), Actor: string(c.Actor), Since: c.RaisedAt, Detail: c.Detail})
	}
	return out
}

// checkConflicts keeps the topup_conflict condition raised while the outbox holds a top-up
// the ledger answered with a conflict (retries stopped: operations must decide).
func (u *Uplink) checkConflicts() {
	u.mu.Lock()
	n := 0
	for _, e := range u.entries {
		if e.stopped {
			n++
		}
	}
	u.mu.Unlock()
	if n == 0 {
		u.cfg.Health.Clear("topup_conflict")
		return
	}
	u.cfg.Health.Set("topup_conflict", health.Critical, health.Ops, health.Degrades,
		fmt.Sprintf("%d top-up(s) held by the ledger with different content; retries stopped", n))
}

// maxResultQueue bounds the command results kept while offline.
const maxResultQueue = 256

// CommandResult queues a command result for up/cmd_result (QoS 1), in order. It never
// blocks.
func (u *Uplink) CommandResult(r wire.CmdResult) {
	r.V = wire.Version
	u.mu.Lock()
	if len(u.results) >= maxResultQueue {
		u.results = u.results[1:]
	}
	u.results = append(u.results, r)
	u.mu.Unlock()
	u.wakeup()
}

func (u *Uplink) flushResults(ctx context.Context) {
	if !u.cfg.Client.Connected() {
		return
	}
	// Run and DrainResults both flush: one at a time, so no result goes out twice.
	u.resMu.Lock()
	defer u.resMu.Unlock()
	for {
		u.mu.Lock()
		if len(u.results) == 0 {
			u.mu.Unlock()
			return
		}
		r := u.results[0]
		u.mu.Unlock()
		b, err := marshal(r)
		if err != nil {
			return
		}
		pctx, cancel := context.WithTimeout(ctx, u.cfg.PublishTimeout)
		err = u.cfg.Client.Publish(pctx, wire.Topic(u.cfg.KioskID, wire.UpCmdResult), 1, false, b)
		cancel()
		if err != nil {
			return
		}
		u.mu.Lock()
		if len(u.results) > 0 && u.results[0] == r {
			u.results = u.results[1:]
		}
		u.mu.Unlock()
	}
}

// SyncNow makes every pending top-up due now (the sync_now command).
func (u *Uplink) SyncNow() {
	u.mu.Lock()
	u.window = 1 // as after a reconnect: the fleet may have been told at once
	now := u.cfg.Now()
	for _, e := range u.entries {
		if !e.inFlight {
			e.sendAgain(now)
		}
	}
	u.mu.Unlock()
	u.Kick()
}

// RTT is the round trip of the last ack: from the start of the top-up's publish to the
// ledger's ack (0 before the first).
func (u *Uplink) RTT() time.Duration {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.rtt
}

func (u *Uplink) flushAlarms(ctx context.Context) {
	if !u.cfg.Client.Connected() {
		return
	}
	for {
		u.mu.Lock()
		if len(u.alarms) == 0 {
			u.mu.Unlock()
			return
		}
		a := u.alarms[0]
		u.mu.Unlock()
		b, err := marshal(a)
		if err != nil {
			return
		}
		pctx, cancel := context.WithTimeout(ctx, u.cfg.PublishTimeout)
		err = u.cfg.Client.Publish(pctx, wire.Topic(u.cfg.KioskID, wire.UpAlarm), 1, false, b)
		cancel()
		if err != nil {
			return
		}
		u.mu.Lock()
		if len(u.alarms) > 0 && u.alarms[0].AlarmID == a.AlarmID && u.alarms[0].State == a.State {
			u.alarms = u.alarms[1:]
		}
		u.mu.Unlock()
	}
}

func (u *Uplink) sendHeartbeat(ctx context.Context) {
	if !u.cfg.Client.Connected() {
		return
	}
	hb := u.cfg.Heartbeat()
	hb.V = wire.Version
	b, err := marshal(hb)
	if err != nil {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, u.cfg.PublishTimeout)
	defer cancel()
	_ = u.cfg.Client.Publish(pctx, wire.Topic(u.cfg.KioskID, wire.UpHeartbeat), 0, false, b)
}

// Stats is the uplink's view for heartbeats and diagnostics.
type Stats struct {
	Published    uint64    `json:"published"`
	Acks         uint64    `json:"acks"`
	RejectedAcks uint64    `json:"rejected_acks"`
	LastAck      time.Time `json:"last_ack,omitzero"`
	InFlight     int       `json:"in_flight"`
	AlarmsQueued int       `json:"alarms_queued"`
	AlarmsLost   int       `json:"alarms_dropped"`
	RTTMs        int64     `json:"rtt_ms"`
}

// Stats returns counters.
func (u *Uplink) Stats() Stats {
	u.mu.Lock()
	defer u.mu.Unlock()
	s := Stats{Published: u.published, Acks: u.acks, RejectedAcks: u.rejectedAcks, LastAck: u.lastAck, AlarmsQueued: len(u.alarms), AlarmsLost: u.dropped, RTTMs: u.rtt.Milliseconds()}
	for _, e := range u.entries {
		if e.inFlight {
			s.InFlight++
		}
	}
	return s
}

// Flush publishes what the outbox holds and waits until it is empty (every top-up acked, or
// stopped by a conflict), or ctx ends. It is for a graceful stop: the entries stay in the
// journal either way.
func (u *Uplink) Flush(ctx context.Context) error {
	if u.cfg.Journal == nil {
		return nil
	}
	for {
		box, err := u.cfg.Journal.Outbox()
		if err != nil {
			return err
		}
		pending := 0
		u.mu.Lock()
		for _, t := range box {
			if t.State != journal.TopupConflict {
				pending++
				if e := u.entries[t.Seq]; e != nil && !e.inFlight {
					e.nextTry = u.cfg.Now() // no backoff while stopping
				}
			}
		}
		u.mu.Unlock()
		if pending == 0 {
			return nil
		}
		u.Kick()
		select {
		case <-ctx.Done():
			return fmt.Errorf("uplink: flush: %d top-up(s) not acked: %w", pending, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// DrainResults publishes the queued command results now and returns when none is left, or
// with ctx's error (before a reboot, which would lose them).
func (u *Uplink) DrainResults(ctx context.Context) error {
	for {
		u.flushResults(ctx)
		u.mu.Lock()
		n := len(u.results)
		u.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("uplink: %d command result(s) not published: %w", n, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
