// Package daemon assembles kioskd from its parts: the journal, the acceptor driver on its
// serial port, the receipt printer, the QR scanner, the session engine, the MQTT uplink and
// the customer screen. cmd/kioskd runs it as a process; the demo and tests run it in-process.
//
// Start-up order matters for money: the journal is opened and verified first; if it fails
// its check the kiosk runs in a safe mode that keeps the acceptor inhibited and says so on
// the screen and to central operations, instead of running on a damaged record. Shutdown
// inhibits the acceptor before its port closes.
package daemon

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/devices/printer/escpos"
	"github.com/kioskd/kioskd/devices/scanner/qrserial"
	"github.com/kioskd/kioskd/devices/sensors"
	"github.com/kioskd/kioskd/devices/serialport"
	"github.com/kioskd/kioskd/kiosk/config"
	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/kiosk/qrpay"
	"github.com/kioskd/kioskd/kiosk/session"
	"github.com/kioskd/kioskd/kiosk/ui"
	"github.com/kioskd/kioskd/receipts"
	"github.com/kioskd/kioskd/sync/mqttc"
	"github.com/kioskd/kioskd/sync/uplink"
	"github.com/kioskd/kioskd/sync/wire"
)

// Options are the process-level settings that are not in the config file.
type Options struct {
	Version string
	Logger  *slog.Logger
	// Ready, when set, is called once the HTTP server listens, with its address.
	Ready func(httpAddr string)
	// CrashAt names a protocol point where the process kills itself with SIGKILL (crash
	// tests); "point" or "point:N" for the N-th time it is reached. Empty disables. Any
	// value also makes SIGUSR2 a crash: the process lets the commit in flight finish, then
	// kills itself (the harness's random power cut; "none" arms nothing else).
	CrashAt string
	// OpenPin opens GPIO pins (pulse acceptor, sensors); nil uses the board's.
	OpenPin PinOpener
	// CheckJournal, when set, checks the journal file before it is opened for writing
	// (kioskd runs the check in a child process: a damaged bbolt file can crash its reader).
	CheckJournal func(ctx context.Context, path string) error
}

// Run runs kioskd until ctx ends. Cancellation is success.
func Run(ctx context.Context, cfg config.Config, opts Options) error {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	bootID := randomHex(4)
	log = log.With("kiosk", cfg.Kiosk.ID)
	if opts.OpenPin == nil {
		opts.OpenPin = sensors.OpenPin
	}
	log.Info("kioskd starting", "version", opts.Version, "boot_id", bootID)
	reg := health.New(bootID, nil)

	walletKeys := qrpay.Keys{}
	for kid, k := range cfg.Wallet.Keys {
		pub, err := config.DecodePublicKey(k)
		if err != nil {
			return fmt.Errorf("wallet key %s: %w", kid, err)
		}
		walletKeys[kid] = pub
	}
	denoms := acceptor.Denominations{}
	for _, d := range cfg.Acceptor.Denominations {
		denoms[d.Code] = acceptor.Note{Code: d.Code, ValueMinor: d.ValueMinor, Currency: cfg.Kiosk.Currency}
	}

	if err := os.MkdirAll(dirOf(cfg.Journal.Path), 0o700); err != nil {
		return fmt.Errorf("journal directory: %w", err)
	}
	var jerr error
	var j *journal.Journal
	// A lock held by another process (a previous kioskd still exiting) is waited out for a
	// while; it is not damage.
	for wait := time.Duration(0); ; wait += time.Second {
		jerr = nil
		if opts.CheckJournal != nil {
			jerr = opts.CheckJournal(ctx, cfg.Journal.Path)
		}
		if jerr == nil {
			j, jerr = journal.Open(cfg.Journal.Path, journal.Options{KioskID: cfg.Kiosk.ID, Currency: cfg.Kiosk.Currency, Logger: log.With("component", "journal")})
		}
		if !errors.Is(jerr, journal.ErrLocked) || wait >= 60*time.Second || !sleepCtx(ctx, time.Second) {
			break
		}
		log.Warn("journal locked by another process; waiting", "path", cfg.Journal.Path)
	}
	if jerr != nil {
		// Never run on a journal that fails its check: stay out of service with the
		// acceptor inhibited, and keep the file untouched for forensics.
		kind := "journal_corrupt"
		if errors.Is(jerr, journal.ErrLocked) {
			kind = "journal_locked"
		}
		log.Error("journal unusable; kiosk out of service", "path", cfg.Journal.Path, "kind", kind, "err", jerr)
		reg.Set(kind, health.Critical, health.Engineer, health.StopsService, jerr.Error())
		return safeMode(ctx, cfg, opts, log, reg, denoms, jerr)
	}
	defer j.Close()
	if err := j.Record(journal.EvBoot, map[string]any{"boot_id": bootID, "version": opts.Version}); err != nil {
		return fmt.Errorf("journal: %w", err)
	}

	var wg sync.WaitGroup
	defer wg.Wait()
	// The devices, the uplink and the engine run on their own context: a stop signal first
	// parks the kiosk (Shutdown below) while they keep working, and only then are they
	// cancelled.
	stopSignal := ctx
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()

	// The acceptor: a driver on its serial port, restarted with the port on failure.
	acc := newAcceptorSlot()
	hook := crashHook(opts.CrashAt, log, j.Freeze)
	if opts.CrashAt != "" {
		crashOnSignal(ctx, log, j.Freeze)
	}

	// MQTT uplink.
	var up *uplink.Uplink
	var mc *mqttc.Client
	var engine *session.Engine
	var authz session.Authorizer
	if cfg.MQTT.Broker != "" {
		ledgerKeys := wire.Keyring{}
		for kid, k := range cfg.MQTT.LedgerKeys {
			pub, err := config.DecodePublicKey(k)
			if err != nil {
				return fmt.Errorf("ledger key %s: %w", kid, err)
			}
			ledgerKeys[kid] = pub
		}
		client := &lazyClient{}
		var err error
		up, err = uplink.New(uplink.Config{KioskID: cfg.Kiosk.ID, Client: client, Journal: j, LedgerKeys: ledgerKeys, Health: reg,
			MaxInFlight: cfg.MQTT.MaxInFlight, RetryMin: cfg.MQTT.RetryMin.D(), RetryMax: cfg.MQTT.RetryMax.D(),
			OnAck: func(t journal.Topup) {
				if engine != nil {
					engine.TopupAcked(t)
				}
			},
			HeartbeatEvery: cfg.MQTT.Heartbeat.D(),
			Heartbeat:      func() wire.Heartbeat { return heartbeat(j, reg, engine) },
			Status:         func() wire.Status { return status(engine, reg, opts.Version, bootID, cfg) },
			Logger:         log})
		if err != nil {
			return err
		}
		tlsCfg, err := tlsConfig(cfg.MQTT)
		if err != nil {
			return err
		}
		password := ""
		if cfg.MQTT.PasswordFile != "" {
			b, err := os.ReadFile(cfg.MQTT.PasswordFile)
			if err != nil {
				return fmt.Errorf("mqtt password file: %w", err)
			}
			password = strings.TrimSpace(string(b))
		}
		offline, _ := jsonBytes(wire.Status{V: wire.Version, State: wire.StateOffline, Version: opts.Version, BootID: bootID})
		mc, err = mqttc.Dial(mqttc.Config{
			Brokers:  []string{cfg.MQTT.Broker},
			ClientID: cfg.Kiosk.ID, Username: usernameOr(cfg.MQTT.Username, cfg.Kiosk.ID), Password: password,
			TLS:  tlsCfg,
			Will: &mqttc.Will{Topic: wire.Topic(cfg.Kiosk.ID, wire.UpStatus), Payload: offline, QoS: 1, Retain: true},
			OnConnect: func(c *mqttc.Client) {
				// The first connect can complete before Dial returns: without setting the
				// client here, the uplink's subscriptions would see no client, give up
				// until the next reconnect, and the kiosk would never hear an ack.
				client.set(c)
				go up.OnConnect(ctx)
			},
			Logger: log.With("component", "mqtt"),
		})
		if err != nil {
			return fmt.Errorf("mqtt: %w", err)
		}
		client.set(mc)
		authz = up
	}

	var printer session.Printer
	var printerPort io.Closer
	if cfg.Printer.Enabled {
		p, closer, err := openPrinter(cfg, log)
		if err != nil {
			log.Error("receipt printer unavailable", "port", cfg.Printer.Port, "err", err)
			reg.Set("printer", health.Warning, health.Engineer, health.Degrades, err.Error())
		} else {
			printer, printerPort = p, closer
		}
	}

	var err error
	engine, err = session.New(session.Config{Journal: j, Acceptor: acc, Denominations: denoms, Authorizer: authz, Printer: printer,
		Uplink: kicker(up), Health: reg, WalletKeys: walletKeys,
		Limits: session.Limits{SessionMax: cfg.Limits.SessionMaxMinor, OfflineSessionMax: cfg.Limits.OfflineSessionMaxMinor, OfflineTotalMax: cfg.Limits.OfflineTotalMaxMinor},
		Timing: session.Timing{AuthzTimeout: cfg.Session.AuthzTimeout.D(), IdleTimeout: cfg.Session.IdleTimeout.D(), AcceptTimeout: cfg.Session.AcceptTimeout.D(),
			SettleTimeout: cfg.Session.SettleTimeout.D(), AckWait: cfg.Session.AckWait.D(), ResultDisplay: cfg.Session.ResultDisplay.D(),
			RecoveryTimeout: cfg.Acceptor.RecoveryTimeout.D()},
		Logger: log, Hook: hook, Escrowless: cfg.Acceptor.Driver == "pulse"})
	if err != nil {
		return err
	}
	if pa, ok := printer.(*printerAdapter); ok {
		pa.hook = hook
	}
	reg.Listen(func(c health.Condition) {
		engine.HealthChanged()
		if up != nil {
			up.Alarm(c)
		}
		lvl := slog.LevelWarn
		if c.Cleared {
			lvl = slog.LevelInfo
		}
		log.Log(context.Background(), lvl, "condition", "kind", c.Kind, "severity", c.Severity, "cleared", c.Cleared, "detail", c.Detail)
		if err := j.Record(journal.EvAlarm, c); err != nil {
			log.Error("journal alarm", "err", err)
		}
	})

	// Start the acceptor driver (it reports into the engine from its own goroutine).
	wg.Add(1)
	go func() {
		defer wg.Done()
		if cfg.Acceptor.Driver == "pulse" {
			runPulseAcceptor(ctx, cfg, opts.OpenPin, denoms, acc, engine.Handler(), reg, log)
			return
		}
		runAcceptor(ctx, cfg, denoms, acc, engine.Handler(), reg, log)
	}()
	if len(cfg.Sensors) > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runSensors(ctx, cfg, opts.OpenPin, reg, log)
		}()
	}
	if cfg.Scanner.Port != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runScanner(ctx, cfg, engine, reg, log)
		}()
	}
	if up != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := up.Run(ctx); err != nil {
				log.Error("uplink stopped", "err", err)
			}
		}()
	}

	// Customer screen.
	ln, err := net.Listen("tcp", cfg.HTTP.Listen)
	if err != nil {
		return fmt.Errorf("http listen %s: %w", cfg.HTTP.Listen, err)
	}
	srv := &http.Server{Handler: ui.Handler(ui.Config{Engine: engine, Logger: log, Diag: func() any {
		return diag(j, reg, engine, up, acc, func() bool { return mc != nil && mc.Connected() })
	}}), ReadHeaderTimeout: 5 * time.Second}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server", "err", err)
		}
	}()
	log.Info("customer screen listening", "url", "http://"+ln.Addr().String()+"/")
	if opts.Ready != nil {
		opts.Ready(ln.Addr().String())
	}

	engineDone := make(chan error, 1)
	go func() { engineDone <- engine.Run(ctx) }()
	var runErr error
	select {
	case <-stopSignal.Done():
		// Graceful stop: inhibit the acceptor, let the note in transit end at the credit
		// point or back at the front, close an open session, and flush the outbox, all
		// within the grace; whatever is left is resumed by the next start's recovery.
		grace := cfg.Session.ShutdownGrace.D()
		log.Info("stopping: parking the kiosk", "grace", grace)
		gctx, gcancel := context.WithTimeout(context.Background(), grace)
		if err := engine.Shutdown(gctx); err != nil {
			log.Warn("kiosk not parked within the grace; recovery will finish the job at the next start", "err", err)
		}
		if up != nil {
			if err := up.Flush(gctx); err != nil {
				log.Info("outbox not empty at stop; it is kept and sent after the next start", "err", err)
			}
		}
		gcancel()
		cancel()
		runErr = <-engineDone
	case runErr = <-engineDone:
	}
	cancel()
	sctx, scancel := context.WithTimeout(context.Background(), 3*time.Second)
	srv.Shutdown(sctx)
	scancel()
	if mc != nil {
		if b, err := jsonBytes(wire.Status{V: wire.Version, State: wire.StateOffline, Version: opts.Version, BootID: bootID}); err == nil {
			pctx, pcancel := context.WithTimeout(context.Background(), time.Second)
			_ = mc.Publish(pctx, wire.Topic(cfg.Kiosk.ID, wire.UpStatus), 1, true, b)
			pcancel()
		}
		defer mc.Close(250 * time.Millisecond)
	}
	if printerPort != nil {
		defer printerPort.Close()
	}
	log.Info("kioskd stopped")
	return runErr
}

func usernameOr(u, id string) string {
	if u != "" {
		return u
	}
	return id
}

func kicker(up *uplink.Uplink) session.Kicker {
	if up == nil {
		return nil
	}
	return up
}

func dirOf(p string) string {
	if i := strings.LastIndexByte(p, '/'); i > 0 {
		return p[:i]
	}
	return "."
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func tlsConfig(m config.MQTT) (*tls.Config, error) {
	if !strings.HasPrefix(m.Broker, "ssl://") && !strings.HasPrefix(m.Broker, "tls://") && !strings.HasPrefix(m.Broker, "mqtts://") {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if m.CAFile != "" {
		pem, err := os.ReadFile(m.CAFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("mqtt ca_file %s: no certificate found", m.CAFile)
		}
		c.RootCAs = pool
	}
	if m.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(m.CertFile, m.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// crashHook returns the engine hook for crash tests. Before it kills the process it
// freezes the journal (journal.Freeze): the hook runs outside any transaction, but another
// goroutine may be in the middle of a commit, and the harness may then simulate a power cut
// that drops the last commit, which is only sound between commits.
func crashHook(spec string, log *slog.Logger, freeze func()) func(string) {
	if spec == "" {
		return nil
	}
	point, nth := spec, 1
	if i := strings.LastIndexByte(spec, ':'); i > 0 {
		fmt.Sscanf(spec[i+1:], "%d", &nth)
		point = spec[:i]
	}
	var mu sync.Mutex
	seen := 0
	return func(p string) {
		if p != point {
			return
		}
		mu.Lock()
		seen++
		n := seen
		mu.Unlock()
		if n == nth {
			log.Warn("crash point reached: SIGKILL", "point", p, "n", n)
			freeze()
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // never continue past the crash point
		}
	}
}

// crashOnSignal makes SIGUSR2 a crash between two journal commits (crash tests only).
func crashOnSignal(ctx context.Context, log *slog.Logger, freeze func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGUSR2)
	go func() {
		select {
		case <-ch:
		case <-ctx.Done():
			signal.Stop(ch)
			return
		}
		log.Warn("crash signal: SIGKILL between commits")
		freeze()
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
	}()
}

// openPrinter opens the printer port and wraps the driver for the engine.
func openPrinter(cfg config.Config, log *slog.Logger) (*printerAdapter, io.Closer, error) {
	mode := serialport.Printer
	if cfg.Printer.Baud > 0 {
		mode.Baud = cfg.Printer.Baud
	}
	port, err := serialport.Open(cfg.Printer.Port, mode)
	if err != nil {
		return nil, nil, err
	}
	// Replies the printer sent to a previous process (a status it asked for just before it
	// died) must not be read as answers to ours.
	port.ResetInputBuffer()
	prof, err := printerProfile(cfg.Printer.Profile)
	if err != nil {
		port.Close()
		return nil, nil, err
	}
	p := escpos.New(port, escpos.Config{Profile: escpos.Generic, Logger: log.With("component", "printer")})
	return &printerAdapter{p: p, profile: prof, cfg: cfg, log: log}, port, nil
}

func printerProfile(name string) (receipts.Profile, error) {
	switch name {
	case "", "generic80":
		return receipts.Generic80, nil
	case "generic58":
		return receipts.Generic58, nil
	case "chinese80":
		return receipts.Chinese80, nil
	}
	return receipts.Profile{}, fmt.Errorf("unknown printer profile %q", name)
}

// printerAdapter renders a session receipt and sends it to the ESC/POS printer.
type printerAdapter struct {
	p       *escpos.Printer
	profile receipts.Profile
	cfg     config.Config
	log     *slog.Logger
	hook    func(string)
}

func (a *printerAdapter) PrintReceipt(ctx context.Context, r session.Receipt) error {
	data, err := receipts.RenderESCPOS(toReceipt(a.cfg, r), a.profile)
	if err != nil {
		return fmt.Errorf("%w: render: %v", session.ErrNotPrinted, err)
	}
	err = a.p.Print(ctx, data)
	var pe *escpos.PrintError
	if errors.As(err, &pe) && pe.Written == 0 {
		return fmt.Errorf("%w: %v", session.ErrNotPrinted, err)
	}
	return err
}

// CutCount reads the printer's autocutter counter (session.CutCounter).
func (a *printerAdapter) CutCount(ctx context.Context) (uint64, error) { return a.p.CutCount(ctx) }

func toReceipt(cfg config.Config, r session.Receipt) receipts.Receipt {
	rc := receipts.Receipt{KioskID: cfg.Kiosk.ID, Location: cfg.Kiosk.Location, Time: r.LocalTime, TZ: cfg.Location(),
		Account: r.Topup.AccountMask, Currency: r.Topup.Currency, Total: r.Topup.AmountMinor, TopupID: r.Topup.TopupID,
		ReceiptNo: r.Topup.ReceiptNo, Status: receipts.Status(r.Status), Outcome: receipts.Outcome(r.Topup.Outcome),
		Hotline: cfg.Kiosk.Hotline, Copy: r.Copy, Lang: receipts.Lang(cfg.Kiosk.Language)}
	for _, n := range r.Notes {
		rc.Notes = append(rc.Notes, receipts.NoteLine{ValueMinor: n.ValueMinor, Count: n.Count})
	}
	for _, u := range r.Uncertain {
		rc.Uncertain = append(rc.Uncertain, receipts.UncertainItem{ValueMinor: u.ValueMinor, Reason: u.Reason})
	}
	return rc
}

// runScanner reads wallet codes from the scanner port, reopening it after failures.
func runScanner(ctx context.Context, cfg config.Config, e *session.Engine, reg *health.Registry, log *slog.Logger) {
	log = log.With("component", "scanner")
	for ctx.Err() == nil {
		mode := serialport.Scanner
		if cfg.Scanner.Baud > 0 {
			mode.Baud = cfg.Scanner.Baud
		}
		port, err := serialport.Open(cfg.Scanner.Port, mode)
		if err != nil {
			reg.Set("scanner", health.Critical, health.Engineer, health.StopsService, "QR scanner: "+err.Error())
			if !sleepCtx(ctx, 2*time.Second) {
				return
			}
			continue
		}
		reg.Clear("scanner")
		sc := qrserial.New(port, qrserial.Config{Logger: log, OnError: func(err error) {
			log.Warn("scanner input refused", "err", err)
		}})
		done := make(chan struct{})
		go func() {
			select {
			case <-ctx.Done():
			case <-done:
			}
			port.Close()
		}()
		err = sc.Run(ctx, func(code string) {
			if err := e.Scan(code); err != nil {
				log.Info("scan refused", "err", err)
			}
		})
		close(done)
		if ctx.Err() != nil {
			return
		}
		log.Warn("scanner port failed; reopening", "err", err)
		if !sleepCtx(ctx, time.Second) {
			return
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
