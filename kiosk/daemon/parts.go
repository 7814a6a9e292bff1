package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/devices/acceptor/registry"
	"github.com/kioskd/kioskd/devices/serialport"
	"github.com/kioskd/kioskd/kiosk/config"
	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/kiosk/session"
	"github.com/kioskd/kioskd/kiosk/ui"
	"github.com/kioskd/kioskd/sync/mqttc"
	"github.com/kioskd/kioskd/sync/uplink"
	"github.com/kioskd/kioskd/sync/wire"
)

// acceptorSlot holds the running driver; the engine commands it through the slot, so a
// driver restarted on a new port is picked up without rewiring.
type acceptorSlot struct {
	mu  sync.Mutex
	drv acceptor.Acceptor
}

func newAcceptorSlot() *acceptorSlot { return &acceptorSlot{} }

func (s *acceptorSlot) get() acceptor.Acceptor {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.drv
}

func (s *acceptorSlot) set(d acceptor.Acceptor) {
	s.mu.Lock()
	s.drv = d
	s.mu.Unlock()
}

func (s *acceptorSlot) Enable(ctx context.Context, codes []int) error {
	d := s.get()
	if d == nil {
		return acceptor.ErrNotRunning
	}
	return d.Enable(ctx, codes)
}

func (s *acceptorSlot) Inhibit(ctx context.Context) error {
	d := s.get()
	if d == nil {
		// No driver, no port: nothing can be accepted.
		return nil
	}
	// A driver that stopped inhibited the unit on its way out (acceptor.Acceptor.Run).
	if err := d.Inhibit(ctx); err != nil && !errors.Is(err, acceptor.ErrNotRunning) {
		return err
	}
	return nil
}

// StackedCount passes the unit's stacked counter through, when its driver has one.
func (s *acceptorSlot) StackedCount(ctx context.Context) (uint64, error) {
	sc, ok := s.get().(acceptor.StackCounter)
	if !ok {
		return 0, errors.New("acceptor: no stacked counter")
	}
	return sc.StackedCount(ctx)
}

func (s *acceptorSlot) Info() acceptor.Info {
	if d := s.get(); d != nil {
		return d.Info()
	}
	return acceptor.Info{}
}

// newDriver builds the acceptor driver named in the config (see acceptorDriver).
func newDriver(cfg config.Config, port serialport.Port, denoms acceptor.Denominations, log *slog.Logger) (acceptor.Acceptor, error) {
	d, err := configuredDriver(cfg, denoms)
	if err != nil {
		return nil, err
	}
	return d.build(port, log)
}

func portMode(driver string) (serialport.Mode, error) {
	d, err := registry.Lookup(driver)
	if err != nil {
		return serialport.Mode{}, err
	}
	if !d.Serial {
		return serialport.Mode{}, fmt.Errorf("acceptor driver %q has no serial port", driver)
	}
	return d.Mode, nil
}

// runAcceptor keeps a driver running on the acceptor port, reopening the port after a
// failure. The driver inhibits the unit when its Run ends.
func runAcceptor(ctx context.Context, cfg config.Config, denoms acceptor.Denominations, slot *acceptorSlot, h acceptor.Handler, reg *health.Registry, log *slog.Logger) {
	log = log.With("component", "acceptor", "driver", cfg.Acceptor.Driver)
	mode, err := portMode(cfg.Acceptor.Driver)
	if err != nil {
		reg.Set("acceptor_port", health.Critical, health.Engineer, health.StopsService, err.Error())
		return
	}
	backoff := time.Second
	for ctx.Err() == nil {
		port, err := serialport.Open(cfg.Acceptor.Port, mode)
		if err != nil {
			log.Error("cannot open the acceptor port", "port", cfg.Acceptor.Port, "err", err)
			reg.Set("acceptor_port", health.Critical, health.Engineer, health.StopsService, "bill acceptor port: "+err.Error())
			if !sleepCtx(ctx, backoff) {
				return
			}
			backoff = min(backoff*2, 30*time.Second)
			continue
		}
		reg.Clear("acceptor_port")
		backoff = time.Second
		drv, err := newDriver(cfg, port, denoms, log)
		if err != nil {
			port.Close()
			reg.Set("acceptor_port", health.Critical, health.Engineer, health.StopsService, err.Error())
			return
		}
		slot.set(drv)
		err = drv.Run(ctx, h)
		slot.set(nil)
		port.Close()
		if ctx.Err() != nil {
			return
		}
		log.Error("acceptor driver stopped; reopening the port", "err", err)
		if !sleepCtx(ctx, time.Second) {
			return
		}
	}
}

// lazyClient lets the uplink be built before the MQTT client exists.
type lazyClient struct {
	mu sync.Mutex
	c  *mqttc.Client
}

func (l *lazyClient) set(c *mqttc.Client) { l.mu.Lock(); l.c = c; l.mu.Unlock() }

func (l *lazyClient) get() *mqttc.Client { l.mu.Lock(); defer l.mu.Unlock(); return l.c }

func (l *lazyClient) Publish(ctx context.Context, topic string, qos byte, retain bool, payload []byte) error {
	c := l.get()
	if c == nil {
		return uplink.ErrOffline
	}
	return c.Publish(ctx, topic, qos, retain, payload)
}

func (l *lazyClient) Subscribe(ctx context.Context, filter string, qos byte, h func(string, []byte)) error {
	c := l.get()
	if c == nil {
		return uplink.ErrOffline
	}
	return c.Subscribe(ctx, filter, qos, h)
}

func (l *lazyClient) Connected() bool {
	c := l.get()
	return c != nil && c.Connected()
}

func jsonBytes(v any) ([]byte, error) { return json.Marshal(v) }

func kioskState(e *session.Engine, reg *health.Registry) string {
	eff, _ := reg.Worst()
	switch {
	case e == nil || e.State() == session.OutOfService || eff >= health.StopsService:
		return wire.StateOutOfService
	case eff == health.Degrades:
		return wire.StateDegraded
	}
	return wire.StateOnline
}

func status(e *session.Engine, reg *health.Registry, version, bootID string, cfg config.Config) wire.Status {
	return wire.Status{V: wire.Version, State: kioskState(e, reg), Version: version, ConfigVersion: cfg.Version, BootID: bootID, At: time.Now().UTC()}
}

var started = time.Now()

func heartbeat(j *journal.Journal, reg *health.Registry, e *session.Engine) wire.Heartbeat {
	hb := wire.Heartbeat{V: wire.Version, UptimeS: int64(time.Since(started).Seconds()), Devices: map[string]string{}, At: time.Now().UTC()}
	if st, err := j.Stats(); err == nil {
		hb.OutboxDepth = st.OutboxDepth
		if !st.OldestUnsent.IsZero() {
			hb.OldestUnackedS = int64(time.Since(st.OldestUnsent).Seconds())
		}
		hb.JournalBytes = st.SizeBytes
		hb.JournalEvents, hb.JournalHead = st.Events, st.Head
		hb.UncertainItems = st.Uncertain
	}
	if c, err := j.Cassette(); err == nil {
		hb.CassetteNotes = c.Count
	}
	var fs syscall.Statfs_t
	if syscall.Statfs(dirOf(j.Path()), &fs) == nil {
		hb.DiskFreeBytes = int64(fs.Bavail) * int64(fs.Bsize)
	}
	for _, c := range reg.Active() {
		hb.Devices[c.Kind] = string(c.Severity)
	}
	if e != nil {
		hb.SessionState = e.State().String()
	}
	return hb
}

func diag(j *journal.Journal, reg *health.Registry, e *session.Engine, up *uplink.Uplink, acc *acceptorSlot, mqttUp func() bool) any {
	d := map[string]any{"mqtt_connected": mqttUp(), "conditions": reg.Active(), "acceptor": acc.Info(), "state": e.State().String()}
	if st, err := j.Stats(); err == nil {
		d["journal"] = st
	}
	if c, err := j.Cassette(); err == nil {
		d["cassette"] = c
	}
	if u, err := j.UncertainItems(); err == nil {
		d["uncertain"] = u
	}
	if up != nil {
		d["uplink"] = up.Stats()
	}
	d["journal_epoch"] = fmt.Sprintf("%016x", j.Epoch())
	return d
}

// safeMode runs when the journal failed its check: the acceptor is driven only to keep it
// inhibited (every note is returned, no credit is acknowledged), and the screen and API say
// the kiosk is out of service.
func safeMode(ctx context.Context, cfg config.Config, opts Options, log *slog.Logger, reg *health.Registry, denoms acceptor.Denominations, cause error) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	slot := newAcceptorSlot()
	wg.Add(1)
	go func() {
		defer wg.Done()
		runAcceptor(ctx, cfg, denoms, slot, refuseAll{log: log}, reg, log)
	}()
	ln, err := net.Listen("tcp", cfg.HTTP.Listen)
	if err != nil {
		return fmt.Errorf("http listen %s: %w", cfg.HTTP.Listen, err)
	}
	_, reasons := reg.Worst()
	oos := &staticView{v: session.View{Seq: 1, State: session.OutOfService.String(), Currency: cfg.Kiosk.Currency, Reasons: reasons, Notes: []journal.NoteLine{},
		Message: "This kiosk is out of service.", MessageKind: "error"}}
	srv := &http.Server{Handler: ui.Handler(ui.Config{Engine: oos, Diag: func() any {
		return map[string]any{"conditions": reg.Active(), "journal_error": cause.Error()}
	}}), ReadHeaderTimeout: 5 * time.Second}
	wg.Add(1)
	go func() {
		defer wg.Done()
		srv.Serve(ln)
	}()
	if opts.Ready != nil {
		opts.Ready(ln.Addr().String())
	}
	<-ctx.Done()
	sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
	srv.Shutdown(sctx)
	scancel()
	return nil
}

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
