package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Rule is one notification hook: alarms that match go to URL as a JSON POST.
type Rule struct {
	Name string `json:"name"`
	URL  string `json:"url"`
	// MinSeverity: info (default), warning or critical.
	MinSeverity string `json:"min_severity,omitempty"`
	// Actors and Kinds restrict the rule when not empty.
	Actors []string `json:"actors,omitempty"`
	Kinds  []string `json:"kinds,omitempty"`
	// Repeat re-sends an open, unacknowledged alarm this often (0: never).
	Repeat Duration `json:"repeat,omitempty"`
}

// Duration is a time.Duration that reads "15m" in JSON.
type Duration time.Duration

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (r Rule) matches(a AlarmRecord) bool {
	if severityRank(a.Severity) < severityRank(r.MinSeverity) {
		return false
	}
	if len(r.Actors) > 0 && !slices.Contains(r.Actors, a.Actor) {
		return false
	}
	return len(r.Kinds) == 0 || slices.Contains(r.Kinds, a.Kind)
}

// Notification events.
const (
	NotifyRaised  = "raised"
	NotifyRepeat  = "repeat"
	NotifyCleared = "all_clear"
)

// Notification is the JSON body a webhook receives.
type Notification struct {
	Rule      string    `json:"rule"`
	Event     string    `json:"event"`
	KioskID   string    `json:"kiosk_id"`
	AlarmID   string    `json:"alarm_id"`
	Kind      string    `json:"kind"`
	Severity  string    `json:"severity"`
	Actor     string    `json:"actor"`
	Detail    string    `json:"detail,omitempty"`
	RaisedAt  time.Time `json:"raised_at"`
	ClearedAt time.Time `json:"cleared_at,omitzero"`
	AckedBy   string    `json:"acked_by,omitempty"`
	SentAt    time.Time `json:"sent_at"`
}

// Notifier delivers alarm notifications to webhooks: once per raised alarm and rule (a
// repeated raise of a standing alarm is not news), again every Repeat while it stands
// unacknowledged, and an "all clear" when it clears. Deliveries run on one goroutine in
// order, with a timeout; a failed delivery is logged and counted, not retried (the repeat is
// the retry). The deduplication state is in memory and rebuilt from the store's open alarms
// at start (Resume), so a restart neither repeats an announcement nor loses an all clear.
type Notifier struct {
	rules  []Rule
	client *http.Client
	now    func() time.Time
	log    *slog.Logger
	count  func(rule, event, result string)

	mu   sync.Mutex
	sent map[string]*sentState // rule \x00 kiosk \x00 alarm_id
	q    chan Notification
	done chan struct{}
	wg   sync.WaitGroup
}

type sentState struct {
	alarm AlarmRecord
	last  time.Time
}

// NewNotifier checks the rules and starts the delivery goroutine (Close stops it).
func NewNotifier(rules []Rule, client *http.Client, now func() time.Time, log *slog.Logger) (*Notifier, error) {
	for _, r := range rules {
		if r.Name == "" || r.URL == "" {
			return nil, fmt.Errorf("%w: webhook rule needs a name and a url", ErrConfig)
		}
		if r.MinSeverity != "" && severityRank(r.MinSeverity) == 0 {
			return nil, fmt.Errorf("%w: rule %s: severity %q", ErrConfig, r.Name, r.MinSeverity)
		}
		if r.Repeat < 0 {
			return nil, fmt.Errorf("%w: rule %s: negative repeat", ErrConfig, r.Name)
		}
	}
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := &Notifier{rules: rules, client: client, now: now, log: log, count: func(string, string, string) {},
		sent: map[string]*sentState{}, q: make(chan Notification, 1024), done: make(chan struct{})}
	n.wg.Go(n.deliver)
	return n, nil
}

// CountWith makes the Notifier count deliveries in f's metrics.
func (n *Notifier) CountWith(f *Fleet) {
	n.count = func(rule, event, result string) { f.m.webhooks.WithLabelValues(rule, event, result).Inc() }
}

// Close stops deliveries (the queue is dropped).
func (n *Notifier) Close() {
	close(n.done)
	n.wg.Wait()
}

func (n *Notifier) enqueue(r Rule, event string, a AlarmRecord) {
	msg := Notification{Rule: r.Name, Event: event, KioskID: a.KioskID, AlarmID: a.AlarmID, Kind: a.Kind, Severity: a.Severity,
		Actor: a.Actor, Detail: a.Detail, RaisedAt: a.RaisedAt, ClearedAt: a.ClearedAt, AckedBy: a.AckedBy, SentAt: n.now().UTC()}
	select {
	case n.q <- msg:
	default:
		n.count(r.Name, event, "dropped")
		n.log.Error("fleet: webhook queue full", "rule", r.Name, "kiosk", a.KioskID, "alarm_id", a.AlarmID)
	}
}

// Raised announces a newly raised alarm to every matching rule, once.
func (n *Notifier) Raised(a AlarmRecord) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, r := range n.rules {
		if !r.matches(a) {
			continue
		}
		k := joinKey(r.Name, a.KioskID, a.AlarmID)
		if _, dup := n.sent[k]; dup {
			continue
		}
		n.sent[k] = &sentState{alarm: a, last: n.now()}
		n.enqueue(r, NotifyRaised, a)
	}
}

// Resume takes over the open alarms a previous run announced (they were open in the store,
// so they were announced when raised): they get their repeats and their all clear, without
// being announced again. New calls it with the store's open alarms.
func (n *Notifier) Resume(open []AlarmRecord) {
	n.mu.Lock()
	defer n.mu.Unlock()
	now := n.now()
	for _, a := range open {
		for _, r := range n.rules {
			if r.matches(a) {
				n.sent[joinKey(r.Name, a.KioskID, a.AlarmID)] = &sentState{alarm: a, last: now}
			}
		}
	}
}

// Acked stops the repeats of an alarm.
func (n *Notifier) Acked(a AlarmRecord) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, r := range n.rules {
		if s := n.sent[joinKey(r.Name, a.KioskID, a.AlarmID)]; s != nil {
			s.alarm = a
		}
	}
}

// Cleared sends the all clear for an alarm that was announced, and forgets it.
func (n *Notifier) Cleared(a AlarmRecord) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, r := range n.rules {
		k := joinKey(r.Name, a.KioskID, a.AlarmID)
		if _, ok := n.sent[k]; ok {
			delete(n.sent, k)
			n.enqueue(r, NotifyCleared, a)
		}
	}
}

// Tick sends the repeats that are due; fleetd calls it every few seconds.
func (n *Notifier) Tick() {
	n.mu.Lock()
	defer n.mu.Unlock()
	now := n.now()
	for _, r := range n.rules {
		if r.Repeat <= 0 {
			continue
		}
		for k, s := range n.sent {
			if s.alarm.AckedBy != "" || k != joinKey(r.Name, s.alarm.KioskID, s.alarm.AlarmID) {
				continue
			}
			if now.Sub(s.last) >= time.Duration(r.Repeat) {
				s.last = now
				n.enqueue(r, NotifyRepeat, s.alarm)
			}
		}
	}
}

func (n *Notifier) deliver() {
	for {
		select {
		case <-n.done:
			return
		case msg := <-n.q:
			n.post(msg)
		}
	}
}

func (n *Notifier) post(msg Notification) {
	var url string
	for _, r := range n.rules {
		if r.Name == msg.Rule {
			url = r.URL
		}
	}
	body, _ := json.Marshal(msg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() {
		select {
		case <-n.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err == nil {
		req.Header.Set("Content-Type", "application/json")
		var resp *http.Response
		resp, err = n.client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode/100 != 2 {
				err = fmt.Errorf("status %s", resp.Status)
			}
		}
	}
	if err != nil {
		n.count(msg.Rule, msg.Event, "error")
		n.log.Warn("fleet: webhook", "rule", msg.Rule, "event", msg.Event, "kiosk", msg.KioskID, "alarm_id", msg.AlarmID, "err", err)
		return
	}
	n.count(msg.Rule, msg.Event, "ok")
}
