package daemon

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/kiosk/config"
	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/session"
	"github.com/kioskd/kioskd/sync/mqttc"
	"github.com/kioskd/kioskd/sync/uplink"
	"github.com/kioskd/kioskd/sync/wire"
)

// group owns goroutines: Run starts each part's goroutines in a group and waits for the
// group when it stops that part.
type group struct {
	name    string
	log     *slog.Logger
	wg      sync.WaitGroup
	mu      sync.Mutex
	running map[string]int
}

func newGroup(name string, log *slog.Logger) *group {
	return &group{name: name, log: log, running: map[string]int{}}
}

// Go runs f on a goroutine of the group.
func (g *group) Go(name string, f func()) {
	g.mu.Lock()
	g.running[name]++
	g.mu.Unlock()
	g.wg.Add(1)
	go func() {
		defer func() {
			g.mu.Lock()
			if g.running[name]--; g.running[name] == 0 {
				delete(g.running, name)
			}
			g.mu.Unlock()
			g.wg.Done()
		}()
		f()
	}()
}

// Wait waits up to budget for every goroutine of the group and returns the names of those
// still running after it (none when all ended).
func (g *group) Wait(budget time.Duration) []string {
	done := make(chan struct{})
	go func() {
		g.wg.Wait()
		close(done)
	}()
	t := time.NewTimer(budget)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-t.C:
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	var names []string
	for n := range g.running {
		names = append(names, g.name+"/"+n)
	}
	slices.Sort(names)
	g.log.Error("parts did not stop within their budget", "group", g.name, "budget", budget, "running", names)
	return names
}

// mqttSettings is what New checks of the MQTT config, for the link that connects in Run.
type mqttSettings struct {
	client     mqttc.Config
	ledgerKeys wire.Keyring
	statusTop  string
	offline    []byte
}

func newMQTTSettings(cfg config.Config, version, bootID string) (*mqttSettings, error) {
	keys := wire.Keyring{}
	for kid, k := range cfg.MQTT.LedgerKeys {
		pub, err := config.DecodePublicKey(k)
		if err != nil {
			return nil, fmt.Errorf("ledger key %s: %w", kid, err)
		}
		keys[kid] = pub
	}
	tlsCfg, err := tlsConfig(cfg.MQTT)
	if err != nil {
		return nil, err
	}
	password := ""
	if cfg.MQTT.PasswordFile != "" {
		b, err := os.ReadFile(cfg.MQTT.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt password file: %w", err)
		}
		password = strings.TrimSpace(string(b))
	}
	offline, err := json.Marshal(wire.Status{V: wire.Version, State: wire.StateOffline, Version: version, BootID: bootID})
	if err != nil {
		return nil, err
	}
	topic := wire.Topic(cfg.Kiosk.ID, wire.UpStatus)
	username := cfg.MQTT.Username
	if username == "" {
		username = cfg.Kiosk.ID
	}
	return &mqttSettings{ledgerKeys: keys, statusTop: topic, offline: offline,
		client: mqttc.Config{Brokers: []string{cfg.MQTT.Broker}, ClientID: cfg.Kiosk.ID, Username: username, Password: password, TLS: tlsCfg,
			Will: &mqttc.Will{Topic: topic, Payload: offline, QoS: 1, Retain: true}}}, nil
}

// mqttLink is the uplink's connection to the broker. The uplink is built before the
// connection exists, and the first connect can complete (and call OnConnect) before Dial
// returns, so the client is published to the uplink through an atomic pointer, from both.
type mqttLink struct {
	set mqttSettings
	c   atomic.Pointer[mqttc.Client]
	// connects is signalled after every (re)connect once the uplink has handled it.
	connects chan struct{}
}

func newMQTTLink(set mqttSettings) *mqttLink {
	return &mqttLink{set: set, connects: make(chan struct{}, 1)}
}

// dial starts connecting. OnConnect runs on a goroutine the client owns (Close waits for
// it); ctx, the uplink's, ends its subscriptions when the kiosk stops.
func (l *mqttLink) dial(ctx context.Context, up *uplink.Uplink, log *slog.Logger) error {
	mc := l.set.client
	mc.Logger = log.With("component", "mqtt")
	mc.OnConnect = func(c *mqttc.Client) {
		l.c.Store(c)
		up.OnConnect(ctx)
		select {
		case l.connects <- struct{}{}:
		default:
		}
	}
	c, err := mqttc.Dial(mc)
	if err != nil {
		return fmt.Errorf("mqtt: %w", err)
	}
	l.c.Store(c)
	return nil
}

// close publishes the retained offline status (the Last Will covers a crash, not a clean
// stop) and disconnects, within budget.
func (l *mqttLink) close(budget time.Duration) {
	c := l.c.Load()
	if c == nil {
		return
	}
	quiesce := 250 * time.Millisecond
	pctx, cancel := context.WithTimeout(context.Background(), max(budget-quiesce, 0))
	_ = c.Publish(pctx, l.set.statusTop, 1, true, l.set.offline)
	cancel()
	c.Close(quiesce)
}

func (l *mqttLink) Publish(ctx context.Context, topic string, qos byte, retain bool, payload []byte) error {
	c := l.c.Load()
	if c == nil {
		return uplink.ErrOffline
	}
	return c.Publish(ctx, topic, qos, retain, payload)
}

func (l *mqttLink) Subscribe(ctx context.Context, filter string, qos byte, h func(string, []byte)) error {
	c := l.c.Load()
	if c == nil {
		return uplink.ErrOffline
	}
	return c.Subscribe(ctx, filter, qos, h)
}

func (l *mqttLink) Connected() bool {
	if l == nil {
		return false
	}
	c := l.c.Load()
	return c != nil && c.Connected()
}

// tlsConfig is the kiosk's broker TLS: only for a TLS broker URL, from the configured files.
func tlsConfig(m config.MQTT) (*tls.Config, error) {
	if !strings.HasPrefix(m.Broker, "ssl://") && !strings.HasPrefix(m.Broker, "tls://") && !strings.HasPrefix(m.Broker, "mqtts://") {
		return nil, nil
	}
	c, err := mqttc.LoadTLS(m.CAFile, m.CertFile, m.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("mqtt ca_file, cert_file, key_file: %w", err)
	}
	if c == nil {
		c = &tls.Config{MinVersion: tls.VersionTLS12} // the system's CAs, no client certificate
	}
	return c, nil
}

func kioskState(e *session.Engine, reg *health.Registry) string {
	eff, _ := reg.Worst()
	switch {
	case e != nil && e.State() == session.Maintenance:
		return wire.StateMaintenance
	case e == nil || e.State() == session.OutOfService || eff >= health.StopsService:
		return wire.StateOutOfService
	case eff == health.Degrades:
		return wire.StateDegraded
	}
	return wire.StateOnline
}

// status is the retained status the uplink publishes (ops.go).
func (s *System) status() wire.Status { return s.statusNow() }

// heartbeat is the uplink's heartbeat (ops.go).
func (s *System) heartbeat() wire.Heartbeat { return s.heartbeatNow() }

// refuseAll is the acceptor handler of the safe mode.
type refuseAll struct{ log *slog.Logger }

func (r refuseAll) Escrow(ctx context.Context, n acceptor.Note) acceptor.Decision {
	return acceptor.Return
}

// Credited refuses: without a trustworthy journal a credit cannot be recorded, so it stays
// unacknowledged at the unit for a technician.
func (r refuseAll) Credited(ctx context.Context, n acceptor.Note) error {
	r.log.Error("credit reported while the journal is unusable; left unacknowledged", "note", n.String())
	return errors.New("journal unusable")
}

func (r refuseAll) Event(ctx context.Context, e acceptor.Event) {}

// PowerUp refuses a power-up with a note in the path: its RESET would make the unit stack or
// return a note that cannot be recorded, so the unit keeps it for a technician.
func (r refuseAll) PowerUp(ctx context.Context, e acceptor.Event) error {
	if e.Kind == acceptor.PowerUp {
		return nil
	}
	r.log.Error("unit powered up with a note in its path while the journal is unusable; not reset", "event", e.String())
	return errors.New("journal unusable")
}

type staticView struct{ v session.View }

func (s *staticView) View() session.View { return s.v }
func (s *staticView) WaitView(ctx context.Context, after uint64) (session.View, bool) {
	if s.v.Seq > after {
		return s.v, true
	}
	<-ctx.Done()
	return s.v, false
}
func (s *staticView) Finish() error { return session.ErrBusy }
func (s *staticView) Cancel() error { return session.ErrBusy }
