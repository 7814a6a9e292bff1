// Package daemon assembles kioskd from its parts: the journal, the acceptor driver on its
// serial port, the receipt printer, the QR scanner, the session engine, the MQTT uplink and
// the customer screen. cmd/kioskd runs it as a process; the demo and tests run it in-process.
//
// # Built, then started
//
// New builds the whole System in dependency order, on one goroutine, and starts nothing:
// health registry → journal → device slots (empty holders the engine commands) → engine →
// uplink → the uplink's MQTT link → customer screen. Every part is complete when the next one
// is built from it, so no callback can ever see a part that does not exist yet. Run then
// starts the goroutines in the same order (engine, uplink, MQTT connection, device
// supervisors, which open the ports, then the screen), each owned by a named group that Run
// waits for before it returns, and stops them in the reverse order.
//
// The one cycle, the engine asking the ledger through the uplink while the uplink hands acks to
// the engine, is closed in New before Run: the engine gets an uplinkPort that New binds to the
// uplink right after building it, and nothing calls it before Run starts the engine.
//
// # Start-up and money
//
// The journal is opened and verified first. A journal locked by another process (a second
// kioskd) is waited for at most journal.lock_wait and is then a fatal error: New fails
// before any device port is opened. A journal that fails its check puts the kiosk in a safe
// mode that keeps the acceptor inhibited and says so on the screen, instead of running on a
// damaged record.
//
// # Stop
//
// A stop parks the kiosk (the note in transit ends at the credit point or back at the
// front; an open session is closed), flushes the outbox, closes the customer screen, stops
// the engine (which leaves the unit inhibited), then the devices (each driver inhibits its
// unit before its port closes), the uplink and the MQTT connection, and closes the journal.
// Each phase has its own bound; StopBudget is their sum, and deploy/kioskd.service gives
// systemd's TimeoutStopSec the same value.
//
// # Devices come back
//
// Every device port is owned by a supervisor that reopens it after it is lost (unplugged,
// port error, absent at start), with a capped exponential backoff, and hands the new driver
// to the engine through a slot. Each device's condition clears when it works again.
package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/devices/acceptor/registry"
	"github.com/kioskd/kioskd/devices/sensors"
	"github.com/kioskd/kioskd/devices/serialport"
	"github.com/kioskd/kioskd/kiosk/config"
	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/kiosk/qrpay"
	"github.com/kioskd/kioskd/kiosk/session"
	"github.com/kioskd/kioskd/kiosk/ui"
	"github.com/kioskd/kioskd/sync/uplink"
	"github.com/kioskd/kioskd/sync/wire"
)

// Options are the process-level settings that are not in the config file.
type Options struct {
	Version string
	Logger  *slog.Logger
	// Ready, when set, is called once everything is started and the HTTP server listens,
	// with its address.
	Ready func(httpAddr string)
	// OpenPin opens GPIO pins (pulse acceptor, sensors); nil uses the board's.
	OpenPin PinOpener
	// OpenPort opens a serial device; nil uses serialport.Open (exclusive use).
	OpenPort func(path string, m serialport.Mode) (serialport.Port, error)
	// OpenHID opens a HID keyboard-wedge scanner's event device (scanner.hid.device,
	// resolved); nil uses hidscan.Open (exclusive grab).
	OpenHID func(path string) (HIDDevice, error)
	// CheckJournal, when set, checks the journal file before it is opened for writing
	// (kioskd runs the check in a child process: a damaged bbolt file can crash its reader).
	// lockWait is what is left of journal.lock_wait: the check must give up waiting for the
	// file's lock after it, with an error wrapping journal.ErrLocked.
	CheckJournal func(ctx context.Context, path string, lockWait time.Duration) error
	// Notifier, when set, is told of slow start-up stages before Ready (EXTEND_TIMEOUT_USEC=,
	// STATUS=starting: ...; startup.go), so systemd's TimeoutStartSec does not kill a
	// start-up that is checking an old journal.
	Notifier Notifier
	// RetryMin and RetryMax bound the backoff between attempts to reopen a lost device.
	// Defaults 1 s and 30 s.
	RetryMin, RetryMax time.Duration
	// PrinterCheck is how often the printer's status is read while it is idle: it finds a
	// printer that was unplugged, or that works again. Default 5 s.
	PrinterCheck time.Duration
	// Reboot reboots the machine for the remote reboot command; nil runs RebootCommand
	// (default "systemctl reboot"). Tests inject it: they never reboot.
	Reboot        func(ctx context.Context) error
	RebootCommand []string
	// Restart ends kioskd for the remote restart_service command; nil stops Run cleanly, and
	// the service manager (Restart=always) starts it again.
	Restart func()
}

func (o *Options) defaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.OpenPin == nil {
		o.OpenPin = sensors.OpenPin
	}
	if o.OpenPort == nil {
		o.OpenPort = serialport.Open
	}
	if o.OpenHID == nil {
		o.OpenHID = openHID
	}
	if o.RetryMin <= 0 {
		o.RetryMin = time.Second
	}
	if o.RetryMax < o.RetryMin {
		o.RetryMax = max(30*time.Second, o.RetryMin)
	}
	if o.PrinterCheck <= 0 {
		o.PrinterCheck = 5 * time.Second
	}
}

// The bounds of the stop phases after the park (session.shutdown_grace). StopBudget adds
// them up; each is the most its phase may take, not what it usually takes.
const (
	// flushBudget: publish what the outbox holds and wait for the acks.
	flushBudget = 2 * time.Second
	// httpBudget: close the customer screen (long polls are cancelled first).
	httpBudget = 2 * time.Second
	// engineBudget: the engine leaves the unit inhibited on its way out (it waits up to 3 s
	// for the driver to confirm).
	engineBudget = 4 * time.Second
	// deviceBudget: each driver inhibits its unit (1 s) and waits for its reader (1 s)
	// before its port closes; the supervisors stop in parallel.
	deviceBudget = 3 * time.Second
	// uplinkBudget: the uplink's publishes in flight end with their context.
	uplinkBudget = time.Second
	// mqttBudget: the retained offline status (1 s) and the DISCONNECT (250 ms).
	mqttBudget = 1500 * time.Millisecond
	// journalBudget: the last commit and the file's close.
	journalBudget = 500 * time.Millisecond
)

// StopBudget is the longest a stop of a kiosk configured with cfg takes, from the stop
// signal to Run's return: the sum of its phases' bounds. The service manager must allow at
// least this much before it kills the process (deploy/kioskd.service, TimeoutStopSec).
func StopBudget(cfg config.Config) time.Duration {
	return cfg.Session.ShutdownGrace.D() + flushBudget + httpBudget + engineBudget + deviceBudget +
		uplinkBudget + mqttBudget + journalBudget
}

// System is a built kiosk: New builds it, Run runs it once.
type System struct {
	cfg    config.Config
	opts   Options
	log    *slog.Logger
	bootID string
	start  time.Time
	reg    *health.Registry
	denoms acceptor.Denominations

	// tamper is true while the tamper switch is triggered (the sign-off check reads it).
	tamper atomic.Bool

	// j is nil in safe mode; safe is then why.
	j    *journal.Journal
	safe error

	engine *session.Engine // nil in safe mode
	up     *uplink.Uplink  // nil without a broker
	link   *mqttLink       // the uplink's connection; nil without a broker

	acc      *acceptorSlot
	newAcc   func(port serialport.Port, log *slog.Logger) (acceptor.Acceptor, error)
	accMode  serialport.Mode
	printer  *printerSlot // nil when no printer is configured
	handler  acceptor.Handler
	ln       net.Listener
	srv      *http.Server
	httpStop context.CancelFunc
	httpCtx  context.Context

	// statusKick wakes the status watcher on a health change.
	statusKick chan struct{}
	// ops: status since, event log limits, remote commands (ops.go).
	ops opsState
	ran atomic.Bool
	// sens is the switches' live state and scan the scanner test's tap (service.go).
	sens sensorLive
	scan scanTap
	// menu is the service menu's address and page token once it listens; menuLn its
	// listener, opened with the customer screen's (listen) so that the screen links to it.
	menu   menuInfo
	menuLn net.Listener
	// metricsLn is the /metrics listener (metrics.go); nil when it is off.
	metricsLn net.Listener
}

// New builds a kiosk from cfg: it opens the journal (waiting at most journal.lock_wait for
// its lock) and the HTTP listener, and builds every part. It starts nothing and opens no
// device port. A journal locked by another process is an error wrapping journal.ErrLocked.
// A System that Run never runs must be released with Close.
func New(ctx context.Context, cfg config.Config, opts Options) (*System, error) {
	opts.defaults()
	s := &System{cfg: cfg, opts: opts, bootID: randomHex(4), start: time.Now(), statusKick: make(chan struct{}, 1)}
	s.ops.restart = make(chan struct{})
	s.log = opts.Logger.With("kiosk", cfg.Kiosk.ID)
	s.reg = health.New(s.bootID, nil)
	s.denoms = acceptor.Denominations{}
	for _, d := range cfg.Acceptor.Denominations {
		s.denoms[d.Code] = acceptor.Note{Code: d.Code, ValueMinor: d.ValueMinor, Currency: cfg.Kiosk.Currency}
	}
	// Everything the config can get wrong is refused here, before the journal is touched.
	walletKeys := qrpay.Keys{}
	for kid, k := range cfg.Wallet.Keys {
		pub, err := config.DecodePublicKey(k)
		if err != nil {
			return nil, fmt.Errorf("wallet key %s: %w", kid, err)
		}
		walletKeys[kid] = pub
	}
	if err := s.buildAcceptorFactory(); err != nil {
		return nil, err
	}
	var pcfg *printerConfig
	if cfg.Printer.Enabled {
		var err error
		if pcfg, err = newPrinterConfig(cfg); err != nil {
			return nil, err
		}
	}
	var mqttCfg *mqttSettings
	if cfg.MQTT.Broker != "" {
		var err error
		if mqttCfg, err = newMQTTSettings(cfg, opts.Version, s.bootID); err != nil {
			return nil, err
		}
	}
	s.log.Info("kioskd starting", "version", opts.Version, "boot_id", s.bootID)

	// 1. The journal.
	j, err := s.openJournal(ctx)
	switch {
	case errors.Is(err, journal.ErrLocked):
		s.log.Error("journal locked by another process; not starting", "path", cfg.Journal.Path, "err", err)
		return nil, err
	case err != nil && ctx.Err() != nil:
		return nil, ctx.Err()
	case err != nil:
		// Never run on a journal that fails its check: stay out of service with the
		// acceptor inhibited, and keep the file untouched for forensics.
		s.log.Error("journal unusable; kiosk out of service", "path", cfg.Journal.Path, "err", err)
		s.reg.Set("journal_corrupt", health.Critical, health.Engineer, health.StopsService, err.Error())
		s.safe = err
		s.acc = newAcceptorSlot()
		s.handler = refuseAll{log: s.log}
		if err := s.buildSafeUplink(mqttCfg); err != nil {
			return nil, err
		}
		if err := s.listen(); err != nil {
			return nil, err
		}
		return s, nil
	}
	s.j = j
	if err := j.Record(journal.EvBoot, map[string]any{"boot_id": s.bootID, "version": opts.Version}); err != nil {
		_ = j.Close()
		return nil, fmt.Errorf("journal: %w", err)
	}

	// 2. Device slots: what the engine commands; their supervisors fill them in Run.
	s.acc = newAcceptorSlot()
	var printer session.Printer
	if pcfg != nil {
		s.printer = newPrinterSlot(*pcfg, cfg, s.log)
		printer = s.printer
	}

	// 3. The engine.
	var port *uplinkPort
	ecfg := session.Config{Journal: j, Acceptor: s.acc, Denominations: s.denoms, Printer: printer,
		Health: s.reg, WalletKeys: walletKeys, SignOffCheck: s.signOffCheck,
		Limits: session.Limits{SessionMax: cfg.Limits.SessionMaxMinor, OfflineSessionMax: cfg.Limits.OfflineSessionMaxMinor, OfflineTotalMax: cfg.Limits.OfflineTotalMaxMinor},
		Timing: session.Timing{AuthzTimeout: cfg.Session.AuthzTimeout.D(), IdleTimeout: cfg.Session.IdleTimeout.D(), AcceptTimeout: cfg.Session.AcceptTimeout.D(),
			SettleTimeout: cfg.Session.SettleTimeout.D(), AckWait: cfg.Session.AckWait.D(), ResultDisplay: cfg.Session.ResultDisplay.D(),
			RecoveryTimeout: cfg.Acceptor.RecoveryTimeout.D()},
		Logger: s.log, Escrowless: registry.Escrowless(cfg.Acceptor.Driver),
		// A pulse unit with no inhibit line wired cannot be stopped (devices/acceptor/pulse).
		NoInhibitLine: registry.Escrowless(cfg.Acceptor.Driver) && cfg.Acceptor.Pulse.InhibitPin == ""}
	if mqttCfg != nil {
		port = &uplinkPort{}
		ecfg.Authorizer, ecfg.Uplink = port, port
	}
	if s.engine, err = session.New(ecfg); err != nil {
		_ = j.Close()
		return nil, err
	}
	s.handler = s.engine.Handler()

	// 4. The uplink, built from the engine, and its MQTT link (which connects in Run).
	if mqttCfg != nil {
		s.link = newMQTTLink(*mqttCfg)
		s.up, err = uplink.New(uplink.Config{KioskID: cfg.Kiosk.ID, Client: s.link, Journal: j, LedgerKeys: mqttCfg.ledgerKeys, Health: s.reg,
			MaxInFlight: cfg.MQTT.MaxInFlight, RetryMin: cfg.MQTT.RetryMin.D(), RetryMax: cfg.MQTT.RetryMax.D(),
			OnAck: s.engine.TopupAcked, OnCommand: s.onCommand,
			HeartbeatEvery: cfg.MQTT.Heartbeat.D(), Heartbeat: s.heartbeat, Status: s.status,
			Logger: s.log})
		if err != nil {
			_ = j.Close()
			return nil, err
		}
		port.up = s.up
		if err := s.buildRemote(); err != nil {
			_ = j.Close()
			return nil, err
		}
	}

	// 5. Conditions go to the engine, the uplink, the log and the journal.
	s.reg.Listen(s.onCondition)

	// 6. The customer screen.
	if err := s.listen(); err != nil {
		_ = j.Close()
		return nil, err
	}
	return s, nil
}

// listen opens the HTTP listener and builds the server (it serves in Run).
func (s *System) listen() error {
	ln, err := net.Listen("tcp", s.cfg.HTTP.Listen)
	if err != nil {
		return fmt.Errorf("http listen %s: %w", s.cfg.HTTP.Listen, err)
	}
	s.ln = ln
	s.listenServiceMenu()
	s.listenMetrics()
	// Long polls (WaitView) end when the screen closes, not when their client gives up.
	s.httpCtx, s.httpStop = context.WithCancel(context.Background())
	var h http.Handler
	if s.safe != nil {
		_, reasons := s.reg.Worst()
		oos := &staticView{v: session.View{Seq: 1, State: session.OutOfService.String(), Currency: s.cfg.Kiosk.Currency, Reasons: reasons, Notes: []journal.NoteLine{},
			Message: "This kiosk is out of service.", MessageKind: "error"}}
		h = ui.Handler(s.uiConfig(oos))
	} else {
		h = ui.Handler(s.uiConfig(s.engine))
	}
	s.srv = &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second,
		BaseContext: func(net.Listener) context.Context { return s.httpCtx }}
	return nil
}

// uiConfig is the customer screen's configuration. Diagnostics are not on the customer
// port (any page the kiosk's browser loads can reach it): technicians use their own socket.
func (s *System) uiConfig(e ui.Engine) ui.Config {
	port := 0
	if a, ok := s.ln.Addr().(*net.TCPAddr); ok {
		port = a.Port
	}
	c := ui.Config{Engine: e, Logger: s.log, Language: s.cfg.Kiosk.Language, KioskID: s.cfg.Kiosk.ID,
		Hotline: s.cfg.Kiosk.Hotline, Port: port}
	if s.menuLn != nil {
		c.ServiceURL = fmt.Sprintf("http://127.0.0.1:%d/", s.menuLn.Addr().(*net.TCPAddr).Port)
		c.ServiceOpen = s.doorOpen
		c.ServiceGesture = s.cfg.ServiceMenu.Gesture
	}
	return c
}

// Addr is the customer screen's address.
func (s *System) Addr() string { return s.ln.Addr().String() }

// Health is the kiosk's condition registry.
func (s *System) Health() *health.Registry { return s.reg }

// Engine is the session engine; nil in safe mode.
func (s *System) Engine() *session.Engine { return s.engine }

// SafeMode reports why the kiosk runs in safe mode (its journal failed its check), or nil.
func (s *System) SafeMode() error { return s.safe }

// StopBudget is StopBudget of the System's config.
func (s *System) StopBudget() time.Duration { return StopBudget(s.cfg) }

// Close releases what New acquired, for a System that is not run.
func (s *System) Close() error {
	if !s.ran.CompareAndSwap(false, true) {
		return errors.New("daemon: Close after Run")
	}
	s.httpStop()
	s.ln.Close()
	if s.menuLn != nil {
		s.menuLn.Close()
	}
	if s.metricsLn != nil {
		s.metricsLn.Close()
	}
	if s.j != nil {
		return s.j.Close()
	}
	return nil
}

// Run starts the kiosk and runs it until ctx ends (success: it returns nil) or the engine
// fails; then it stops everything it started, within StopBudget, and returns. A System runs
// once.
func (s *System) Run(ctx context.Context) error {
	if !s.ran.CompareAndSwap(false, true) {
		return errors.New("daemon: System already run or closed")
	}
	if s.safe != nil {
		return s.runSafe(ctx)
	}
	log := s.log
	// Each group has its own context so the stop can end them one after the other: the
	// engine must still reach the acceptor when it inhibits it on its way out, and the
	// uplink must still be connected while the outbox is flushed.
	engines := newGroup("engine", log)
	devices := newGroup("devices", log)
	links := newGroup("uplink", log)
	controls := newGroup("control", log)
	engineCtx, stopEngine := context.WithCancel(context.WithoutCancel(ctx))
	deviceCtx, stopDevices := context.WithCancel(context.WithoutCancel(ctx))
	linkCtx, stopLinks := context.WithCancel(context.WithoutCancel(ctx))
	defer func() { stopEngine(); stopDevices(); stopLinks() }()
	s.armCrashPoints(linkCtx, links)

	// The engine first: the acceptor may report a note as soon as its driver runs.
	engineDone := make(chan error, 1)
	engines.Go("engine", func() { engineDone <- s.engine.Run(engineCtx) })
	if s.up != nil {
		links.Go("uplink", func() {
			if err := s.up.Run(linkCtx); err != nil {
				log.Error("uplink stopped", "err", err)
			}
		})
		links.Go("status", func() { s.watchStatus(linkCtx) })
		s.startRemote(linkCtx, links)
		if err := s.link.dial(linkCtx, s.up, log); err != nil {
			// Only a broker address the client cannot parse gets here. Not fatal: the
			// outbox keeps everything and the kiosk serves within its offline limits.
			log.Error("mqtt", "err", err)
			s.reg.Set("mqtt_config", health.Critical, health.Engineer, health.Degrades, err.Error())
		}
	}
	s.startDevices(deviceCtx, devices)
	// The technicians' socket, once the parts it reports on run.
	ctlSrv := s.startControl(controls)
	// Metrics last: they read what the other parts report. They stop first, in parallel
	// with the rest of the stop (a scrape during the stop reads a journal about to close).
	metrics := newGroup("metrics", log)
	metricsCtx, stopMetrics := context.WithCancel(context.WithoutCancel(ctx))
	defer stopMetrics()
	s.startMetrics(metricsCtx, metrics)
	httpDone := make(chan struct{})
	go func() {
		defer close(httpDone)
		if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server", "err", err)
		}
	}()
	log.Info("customer screen listening", "url", "http://"+s.Addr()+"/")
	if s.opts.Ready != nil {
		s.opts.Ready(s.Addr())
	}

	var runErr error
	engineRunning := true
	select {
	case <-ctx.Done():
	case <-s.restartRequested():
		log.Warn("stopping for a restart asked by a remote command")
	case runErr = <-engineDone:
		engineRunning = false
		log.Error("session engine stopped; stopping the kiosk", "err", runErr)
	}

	// The stop, phase by phase (StopBudget).
	stopped := time.Now()
	stopMetrics()
	var stuck []string
	if engineRunning {
		grace := s.cfg.Session.ShutdownGrace.D()
		log.Info("stopping: parking the kiosk", "grace", grace)
		gctx, cancel := context.WithTimeout(context.Background(), grace)
		if err := s.engine.Shutdown(gctx); err != nil {
			log.Warn("kiosk not parked within the grace; recovery will finish the job at the next start", "err", err)
		}
		cancel()
	}
	if s.up != nil {
		fctx, cancel := context.WithTimeout(context.Background(), flushBudget)
		if err := s.up.Flush(fctx); err != nil {
			log.Info("outbox not empty at stop; it is kept and sent after the next start", "err", err)
		}
		cancel()
	}
	// The control socket closes in the customer screen's phase and within its bound (a
	// technician's waiting request ends with it): it needs the engine, which stops next.
	ctlStopped := make(chan struct{})
	go func() { defer close(ctlStopped); stopControl(ctlSrv, httpBudget) }()
	s.stopHTTP(httpDone)
	<-ctlStopped
	stuck = append(stuck, controls.Wait(ctlWaitBudget)...)
	stuck = append(stuck, metrics.Wait(ctlWaitBudget)...)
	stopEngine()
	stuck = append(stuck, engines.Wait(engineBudget)...)
	stopDevices()
	stuck = append(stuck, devices.Wait(deviceBudget)...)
	stopLinks()
	stuck = append(stuck, links.Wait(uplinkBudget)...)
	if s.link != nil {
		s.link.close(mqttBudget)
	}
	s.disarmCrashPoints()
	if len(stuck) > 0 {
		// A goroutine that may still write is left with the journal open: the process is
		// about to exit, and the next start's recovery reads whatever it committed.
		log.Error("kioskd stopped with parts still running", "parts", stuck, "took", time.Since(stopped))
		return errors.Join(runErr, fmt.Errorf("daemon: stop: still running after their budget: %v", stuck))
	}
	if err := s.j.Close(); err != nil {
		log.Error("journal close", "err", err)
	}
	log.Info("kioskd stopped", "took", time.Since(stopped))
	return runErr
}

// stopHTTP ends the long polls and closes the customer screen within httpBudget.
func (s *System) stopHTTP(done <-chan struct{}) {
	s.httpStop()
	sctx, cancel := context.WithTimeout(context.Background(), httpBudget)
	defer cancel()
	if err := s.srv.Shutdown(sctx); err != nil {
		s.log.Warn("customer screen: connections still open at stop; closed", "err", err)
		s.srv.Close()
	}
	select {
	case <-done:
	case <-sctx.Done():
	}
}

// runSafe runs the safe mode: the acceptor is driven only to keep it inhibited (every note
// is returned, no credit is acknowledged), and the screen and API say the kiosk is out of
// service.
func (s *System) runSafe(ctx context.Context) error {
	devices := newGroup("devices", s.log)
	deviceCtx, stopDevices := context.WithCancel(context.WithoutCancel(ctx))
	defer stopDevices()
	s.startAcceptor(deviceCtx, devices)
	stopUplink := s.runSafeUplink(ctx)
	// The control socket serves what a technician needs to find out why.
	controls := newGroup("control", s.log)
	ctlSrv := s.startControl(controls)
	// Metrics in safe mode too: a kiosk out of service is what the dashboards must show.
	metrics := newGroup("metrics", s.log)
	metricsCtx, stopMetrics := context.WithCancel(context.WithoutCancel(ctx))
	defer stopMetrics()
	s.startMetrics(metricsCtx, metrics)
	httpDone := make(chan struct{})
	go func() {
		defer close(httpDone)
		_ = s.srv.Serve(s.ln)
	}()
	if s.opts.Ready != nil {
		s.opts.Ready(s.Addr())
	}
	<-ctx.Done()
	stopMetrics()
	ctlStopped := make(chan struct{})
	go func() { defer close(ctlStopped); stopControl(ctlSrv, httpBudget) }()
	s.stopHTTP(httpDone)
	<-ctlStopped
	stuck := controls.Wait(ctlWaitBudget)
	stuck = append(stuck, metrics.Wait(ctlWaitBudget)...)
	stopUplink()
	stopDevices()
	if stuck := append(stuck, devices.Wait(deviceBudget)...); len(stuck) > 0 {
		return fmt.Errorf("daemon: stop: still running after their budget: %v", stuck)
	}
	return nil
}

// Run builds a System and runs it until ctx ends. Cancellation is success.
func Run(ctx context.Context, cfg config.Config, opts Options) error {
	s, err := New(ctx, cfg, opts)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}

// onCondition is the health registry's listener.
func (s *System) onCondition(c health.Condition) {
	if c.Event {
		// One-off: counted for the heartbeat, not an alarm, not journaled one by one.
		s.onEvent(c)
		return
	}
	s.engine.HealthChanged()
	if s.up != nil {
		s.up.Alarm(c)
	}
	select {
	case s.statusKick <- struct{}{}:
	default:
	}
	lvl := slog.LevelWarn
	if c.Cleared {
		lvl = slog.LevelInfo
	}
	s.log.Log(context.Background(), lvl, "condition", "kind", c.Kind, "severity", c.Severity, "cleared", c.Cleared, "detail", c.Detail)
	if c.Updated {
		return // the same alarm with a new detail: the status says it, the journal has its raise
	}
	if err := s.j.Record(journal.EvAlarm, c); err != nil {
		s.log.Error("journal alarm", "err", err)
	}
}

// watchStatus republishes the retained status whenever what it says changes (the engine's
// state, or a condition that stops or degrades service): the status published at connect
// time is only right until the next change.
func (s *System) watchStatus(ctx context.Context) {
	published := ""
	var seq uint64
	for {
		if st := s.statusKey(); st != published && s.link.Connected() {
			s.up.PublishStatus(ctx)
			published = st
		}
		// Wait for a new view, a health change or a (re)connect, whichever comes first.
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan session.View, 1)
		go func() {
			v, _ := s.engine.WaitView(wctx, seq)
			done <- v
		}()
		var v session.View
		got := false
		select {
		case v = <-done:
			got = true
		case <-s.statusKick:
		case <-s.link.connects:
			published = "" // the connect published the status of its moment; look again
		}
		cancel()
		if !got {
			v = <-done // the waiter ends with wctx; it is owned here
		}
		seq = max(seq, v.Seq)
		if ctx.Err() != nil {
			return
		}
	}
}

// uplinkPort is the engine's way to the uplink (authorizations, and a kick when a top-up
// enters the outbox). New binds it to the uplink right after building the uplink, before Run
// starts the engine; it is only read after that.
type uplinkPort struct{ up *uplink.Uplink }

func (p *uplinkPort) Authorize(ctx context.Context, account, nonce, qr string) (wire.AuthzResponse, error) {
	return p.up.Authorize(ctx, account, nonce, qr)
}

func (p *uplinkPort) Kick() { p.up.Kick() }

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func dirOf(p string) string {
	for i := len(p) - 1; i > 0; i-- {
		if p[i] == '/' {
			return p[:i]
		}
	}
	return "."
}

// ensureDir creates the journal's directory.
func ensureDir(path string) error {
	if err := os.MkdirAll(dirOf(path), 0o700); err != nil {
		return fmt.Errorf("journal directory: %w", err)
	}
	return nil
}
