package fleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/kioskd/kioskd/sync/mqttc"
	"github.com/kioskd/kioskd/sync/wire"
)

// Config configures a Fleet.
type Config struct {
	Store Store
	// Signer signs down/cmd with the ops key (never the ledger's ack key).
	Signer wire.Signer
	// CommandTTL is expires_at - issued_at of every command (default 10 min).
	CommandTTL time.Duration
	// StaleAfter: a kiosk whose last heartbeat is older is "stale" (default 3 min).
	StaleAfter time.Duration
	// StuckAfter: a kiosk whose session sat outside idle longer is "stuck" (default 7 min).
	StuckAfter time.Duration
	// IdleAfter: a kiosk without a top-up for longer is "idle" (default 3 days).
	IdleAfter time.Duration
	// Notifier, if set, is told about raised, cleared and acknowledged alarms.
	Notifier *Notifier
	// Publish, if set, replaces the MQTT client for down/cmd (tests; another transport).
	Publish func(ctx context.Context, topic string, payload []byte) error
	Now     func() time.Time
	Logger  *slog.Logger
}

// Fleet applies the kiosks' operations messages to the Store and sends commands. Its methods
// are safe for concurrent use; state changes are serialized by one mutex (one console
// instance per store).
type Fleet struct {
	cfg   Config
	store Store
	now   func() time.Time
	log   *slog.Logger
	m     *metrics

	mu     sync.Mutex
	client *mqttc.Client
}

// Errors.
var (
	ErrConfig  = errors.New("fleet: bad config")
	ErrRequest = errors.New("fleet: bad request")
	ErrOffline = errors.New("fleet: not connected to the broker")
)

// New returns a Fleet.
func New(cfg Config) (*Fleet, error) {
	if cfg.Store == nil {
		return nil, fmt.Errorf("%w: no store", ErrConfig)
	}
	if cfg.CommandTTL == 0 {
		cfg.CommandTTL = 10 * time.Minute
	}
	if cfg.CommandTTL < 0 || cfg.CommandTTL > wire.MaxCommandTTL {
		return nil, fmt.Errorf("%w: command TTL %s (at most %s)", ErrConfig, cfg.CommandTTL, wire.MaxCommandTTL)
	}
	if cfg.StaleAfter <= 0 {
		cfg.StaleAfter = 3 * time.Minute
	}
	if cfg.StuckAfter <= 0 {
		cfg.StuckAfter = 7 * time.Minute
	}
	if cfg.IdleAfter <= 0 {
		cfg.IdleAfter = 72 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	f := &Fleet{cfg: cfg, store: cfg.Store, now: cfg.Now, log: cfg.Logger.With("component", "fleet")}
	f.m = newMetrics(f)
	if cfg.Notifier != nil {
		open, err := cfg.Store.Alarms("", true)
		if err != nil {
			return nil, err
		}
		cfg.Notifier.Resume(open)
	}
	return f, nil
}

// Subscriptions are the topic filters fleetd reads (the broker ACL lets fleetd read up/#).
var Subscriptions = []string{
	wire.Topic("+", wire.UpStatus), wire.Topic("+", wire.UpHeartbeat),
	wire.Topic("+", wire.UpAlarm), wire.Topic("+", wire.UpCmdResult),
}

// OnConnect subscribes c to the operations topics; use it as mqttc.Config.OnConnect. It also
// makes c the client that SendCommand publishes on.
func (f *Fleet) OnConnect(c *mqttc.Client) {
	f.mu.Lock()
	f.client = c
	f.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, filter := range Subscriptions {
		if err := c.Subscribe(ctx, filter, 1, f.Handle); err != nil {
			f.log.Error("fleet: subscribe", "filter", filter, "err", err)
		}
	}
	f.log.Info("fleet: subscribed", "filters", Subscriptions)
}

// Handle applies one message. A malformed payload is logged and counted, never fatal.
func (f *Fleet) Handle(topic string, payload []byte) {
	kiosk, suffix, err := wire.ParseTopic(topic)
	if err != nil {
		f.m.messages.WithLabelValues("unknown", "bad_topic").Inc()
		f.log.Warn("fleet: bad topic", "topic", topic)
		return
	}
	name := strings.TrimPrefix(suffix, "up/")
	err = f.handle(kiosk, suffix, payload)
	switch {
	case err == nil:
		f.m.messages.WithLabelValues(name, "ok").Inc()
	case errors.Is(err, ErrRequest):
		f.m.messages.WithLabelValues(name, "invalid").Inc()
		f.log.Warn("fleet: refused payload", "topic", topic, "err", err)
	default:
		f.m.messages.WithLabelValues(name, "store_error").Inc()
		f.log.Error("fleet: store", "topic", topic, "err", err)
	}
}

type validator interface{ Validate() error }

func decode(payload []byte, v validator) error {
	if err := wire.Decode(payload, v); err != nil {
		return fmt.Errorf("%w: %v", ErrRequest, err)
	}
	if err := v.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrRequest, err)
	}
	return nil
}

func (f *Fleet) handle(kiosk, suffix string, payload []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now().UTC()
	switch suffix {
	case wire.UpStatus:
		var s wire.Status
		if err := decode(payload, &s); err != nil {
			return err
		}
		return f.applyStatus(kiosk, s, now)
	case wire.UpHeartbeat:
		var h wire.Heartbeat
		if err := decode(payload, &h); err != nil {
			return err
		}
		return f.applyHeartbeat(kiosk, h, now)
	case wire.UpAlarm:
		var a wire.Alarm
		if err := decode(payload, &a); err != nil {
			return err
		}
		return f.applyAlarm(kiosk, a, now)
	case wire.UpCmdResult:
		var r wire.CmdResult
		if err := decode(payload, &r); err != nil {
			return err
		}
		return f.applyResult(kiosk, r, now)
	}
	return fmt.Errorf("%w: topic %s", ErrRequest, suffix)
}

func (f *Fleet) kiosk(id string, now time.Time) (KioskRecord, error) {
	k, err := f.store.Kiosk(id)
	if errors.Is(err, ErrNotFound) {
		return KioskRecord{KioskID: id, FirstSeen: now}, nil
	}
	return k, err
}

// applyStatus keeps the latest status and reconciles the condition alarms, and the alarms
// raised on up/alarm, with the status's open conditions. The Last Will (offline) cannot know
// the conditions, so it leaves them.
func (f *Fleet) applyStatus(id string, s wire.Status, now time.Time) error {
	k, err := f.kiosk(id, now)
	if err != nil {
		return err
	}
	// Several statuses may be in flight; an older one arriving late must not win. The Last
	// Will carries no time and always applies.
	if k.Status != nil && !s.At.IsZero() && !k.Status.At.IsZero() && s.At.Before(k.Status.At) {
		return nil
	}
	k.Status, k.StatusAt = &s, now
	if err := f.store.PutKiosk(k); err != nil {
		return err
	}
	if s.State == wire.StateOffline {
		return nil
	}
	open := map[string]wire.Condition{}
	for _, c := range s.Conditions {
		open["cond:"+c.Kind] = c
	}
	existing, err := f.store.Alarms(id, true)
	if err != nil {
		return err
	}
	for _, a := range existing {
		if a.Source == SourceAlarm {
			// Every alarm a kiosk raises is one of its conditions, and the status lists them
			// all. fleetd's session with the broker is clean: a clear sent while it was away
			// is lost, and the next status (the retained one at the latest) is what tells.
			// Only a status newer than the raise speaks for the alarm.
			if _, still := open["cond:"+a.Kind]; !still && !s.At.IsZero() && s.At.After(a.RaisedAt) {
				if err := f.clear(a, s.At); err != nil {
					return err
				}
			}
			continue
		}
		if a.Source != SourceCondition {
			continue
		}
		if _, still := open[a.AlarmID]; !still {
			if err := f.clear(a, now); err != nil {
				return err
			}
		}
	}
	for aid, c := range open {
		since := c.Since
		if since.IsZero() {
			since = now
		}
		if err := f.raise(AlarmRecord{KioskID: id, AlarmID: aid, Kind: c.Kind, Severity: c.Severity, Actor: c.Actor,
			Detail: c.Detail, Source: SourceCondition, RaisedAt: since}, now); err != nil {
			return err
		}
	}
	return nil
}

// raise opens an alarm, or refreshes an open one (severity, actor and text may change while
// it stands; the acknowledgement stays). An already open alarm is not raised twice.
func (f *Fleet) raise(a AlarmRecord, now time.Time) error {
	old, err := f.store.Alarm(a.KioskID, a.AlarmID)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	a.Open = true
	if err == nil && old.Open {
		a.RaisedAt, a.AckedBy, a.AckedAt = old.RaisedAt, old.AckedBy, old.AckedAt
		if a == old {
			return nil
		}
		return f.store.PutAlarm(a, Event{})
	}
	if err := f.store.PutAlarm(a, Event{At: now, KioskID: a.KioskID, What: EventRaised, AlarmID: a.AlarmID,
		By: a.Actor, Detail: a.Kind + ": " + a.Detail}); err != nil {
		return err
	}
	f.log.Info("fleet: alarm raised", "kiosk", a.KioskID, "alarm_id", a.AlarmID, "kind", a.Kind, "severity", a.Severity, "actor", a.Actor)
	if f.cfg.Notifier != nil {
		f.cfg.Notifier.Raised(a)
	}
	return nil
}

func (f *Fleet) clear(a AlarmRecord, at time.Time) error {
	a.Open, a.ClearedAt = false, at
	if err := f.store.PutAlarm(a, Event{At: at, KioskID: a.KioskID, What: EventCleared, AlarmID: a.AlarmID, Detail: a.Kind}); err != nil {
		return err
	}
	f.log.Info("fleet: alarm cleared", "kiosk", a.KioskID, "alarm_id", a.AlarmID, "kind", a.Kind)
	if f.cfg.Notifier != nil {
		f.cfg.Notifier.Cleared(a)
	}
	return nil
}

func (f *Fleet) applyAlarm(id string, m wire.Alarm, now time.Time) error {
	if m.IsCleared() {
		a, err := f.store.Alarm(id, m.AlarmID)
		if errors.Is(err, ErrNotFound) || (err == nil && !a.Open) {
			return nil // a clear for an alarm we never saw open (or a repeated clear)
		}
		if err != nil {
			return err
		}
		at := m.ClearedAt
		if at.IsZero() {
			at = now
		}
		return f.clear(a, at)
	}
	at := m.RaisedAt
	if at.IsZero() {
		at = m.At
	}
	if at.IsZero() {
		at = now
	}
	return f.raise(AlarmRecord{KioskID: id, AlarmID: m.AlarmID, Kind: m.Kind, Severity: m.Severity, Actor: m.Actor,
		Detail: m.Text(), Source: SourceAlarm, RaisedAt: at}, now)
}

const (
	fillEvery      = 10 * time.Minute
	maxFillSamples = 1008 // a week at one sample per fillEvery
)

func (f *Fleet) applyHeartbeat(id string, h wire.Heartbeat, now time.Time) error {
	k, err := f.kiosk(id, now)
	if err != nil {
		return err
	}
	k.Heartbeat, k.HeartbeatAt = &h, now
	if h.SessionState != k.SessionState || k.SessionSince.IsZero() {
		k.SessionState, k.SessionSince = h.SessionState, now
	}
	if c := h.CassetteFill(); c != nil {
		n := len(k.Fill)
		switch {
		case n > 0 && c.FillRatio < k.Fill[n-1].Ratio:
			// The cassette was emptied (a collection): the old trend says nothing any more.
			k.Fill = []FillSample{{At: now, Ratio: c.FillRatio}}
		case n == 0 || now.Sub(k.Fill[n-1].At) >= fillEvery:
			k.Fill = append(k.Fill, FillSample{At: now, Ratio: c.FillRatio})
			if len(k.Fill) > maxFillSamples {
				k.Fill = k.Fill[len(k.Fill)-maxFillSamples:]
			}
		}
	}
	return f.store.PutKiosk(k)
}

func (f *Fleet) applyResult(id string, r wire.CmdResult, now time.Time) error {
	c, err := f.store.Command(r.CmdID)
	if errors.Is(err, ErrNotFound) {
		f.log.Warn("fleet: result for a command this console did not send", "kiosk", id, "cmd_id", r.CmdID)
		return nil
	}
	if err != nil {
		return err
	}
	if c.Command.KioskID != id {
		// Only the kiosk the command went to may answer it (the broker binds topics to kiosks).
		return fmt.Errorf("%w: cmd_result for %s from kiosk %s", ErrRequest, c.Command.KioskID, id)
	}
	c.Results = append(c.Results, ResultRecord{Status: r.Status, Reason: r.Reason, At: now})
	if len(c.Results) > 50 {
		c.Results = c.Results[len(c.Results)-50:]
	}
	c.Status, c.Reason = r.Status, r.Reason
	f.m.results.WithLabelValues(r.Status).Inc()
	return f.store.PutCommand(c, Event{At: now, KioskID: id, What: EventResult, CmdID: r.CmdID, Detail: c.Command.Kind + ": " + r.Status + " " + r.Reason})
}

// Acknowledge records that operator has seen an open alarm (who and when; it stays open
// until its cause clears).
func (f *Fleet) Acknowledge(kioskID, alarmID, operator string) (AlarmRecord, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, err := f.store.Alarm(kioskID, alarmID)
	if err != nil {
		return a, err
	}
	if !a.Open {
		return a, fmt.Errorf("%w: alarm %s is cleared", ErrRequest, alarmID)
	}
	if a.AckedBy != "" {
		return a, nil // acknowledged before: keep the first who and when
	}
	now := f.now().UTC()
	a.AckedBy, a.AckedAt = operator, now
	if err := f.store.PutAlarm(a, Event{At: now, KioskID: kioskID, What: EventAcked, AlarmID: alarmID, By: operator, Detail: a.Kind}); err != nil {
		return a, err
	}
	f.log.Info("fleet: alarm acknowledged", "kiosk", kioskID, "alarm_id", alarmID, "operator", operator)
	if f.cfg.Notifier != nil {
		f.cfg.Notifier.Acked(a)
	}
	return a, nil
}

// NewCmdID returns a random cmd_id (128 bits, hex).
func NewCmdID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// BuildCommand makes a command payload for kiosk, checked by wire.Command.Validate.
func (f *Fleet) BuildCommand(kioskID, kind string, args json.RawMessage) (wire.Command, error) {
	now := f.now().UTC().Truncate(time.Second)
	c := wire.Command{V: wire.Version, CmdID: NewCmdID(), KioskID: kioskID, IssuedAt: now, ExpiresAt: now.Add(f.cfg.CommandTTL), Kind: kind, Args: args}
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("%w: %v", ErrRequest, err)
	}
	return c, nil
}

// SendCommand signs a command with the ops key, records it, and publishes it on the kiosk's
// down/cmd (QoS 1, not retained: a retained command would replay to every new session).
// The record is written before the publish, so a result can never arrive for an unknown
// command; a failed publish is recorded as such.
func (f *Fleet) SendCommand(ctx context.Context, kioskID, kind string, args json.RawMessage, operator string) (CommandRecord, error) {
	if !wire.ValidKioskID(kioskID) {
		return CommandRecord{}, fmt.Errorf("%w: kiosk id", ErrRequest)
	}
	cmd, err := f.BuildCommand(kioskID, kind, args)
	if err != nil {
		return CommandRecord{}, err
	}
	env, err := f.cfg.Signer.Seal(cmd)
	if err != nil {
		return CommandRecord{}, err
	}
	f.mu.Lock()
	client := f.client
	rec := CommandRecord{Command: cmd, SentBy: operator, SentAt: cmd.IssuedAt, Status: "sent"}
	err = f.store.PutCommand(rec, Event{At: cmd.IssuedAt, KioskID: kioskID, What: EventCommand, CmdID: cmd.CmdID, By: operator, Detail: kind})
	f.mu.Unlock()
	if err != nil {
		return rec, err
	}
	// The PUBACK wait is bounded: an operator gets an answer, and the record says failed.
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	switch {
	case f.cfg.Publish != nil:
		err = f.cfg.Publish(ctx, wire.Topic(kioskID, wire.DownCmd), env)
	case client == nil:
		err = ErrOffline
	default:
		err = client.Publish(ctx, wire.Topic(kioskID, wire.DownCmd), 1, false, env)
	}
	result := "published"
	if err != nil {
		result = "publish_failed"
		f.mu.Lock()
		rec.Status, rec.Reason = "publish_failed", err.Error()
		if perr := f.store.PutCommand(rec, Event{}); perr != nil {
			f.log.Error("fleet: store", "err", perr)
		}
		f.mu.Unlock()
	}
	f.m.commands.WithLabelValues(kind, result).Inc()
	f.log.Info("fleet: command", "kiosk", kioskID, "cmd_id", cmd.CmdID, "kind", kind, "operator", operator, "result", result, "err", err)
	return rec, err
}

// Rebuild re-derives the condition alarms from the stored statuses: after a store loss, the
// retained statuses the broker sends on subscribe do the same.
func (f *Fleet) Rebuild() error {
	ks, err := f.store.Kiosks()
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now().UTC()
	for _, k := range ks {
		if k.Status == nil || k.Status.State == wire.StateOffline {
			continue
		}
		if err := f.applyStatus(k.KioskID, *k.Status, now); err != nil {
			return err
		}
	}
	return nil
}
