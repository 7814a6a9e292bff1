package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/devices/acceptor/registry"
	"github.com/kioskd/kioskd/devices/printer/escpos"
	"github.com/kioskd/kioskd/devices/scanner/hidscan"
	"github.com/kioskd/kioskd/devices/scanner/qrserial"
	"github.com/kioskd/kioskd/devices/serialport"
	"github.com/kioskd/kioskd/kiosk/config"
	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/session"
	"github.com/kioskd/kioskd/receipts"
)

// Health condition kinds the device supervisors own: raised while the device is not usable,
// cleared as soon as it works again.
const (
	condAcceptor = "acceptor_port"
	condPrinter  = "printer_port"
	// condTamper is the tamper switch's condition (devices/sensors.Classify), latched until a
	// technician signs it off.
	condTamper  = "tamper"
	condScanner = "scanner"
	// condPrintFailed is the engine's condition for the last receipt that failed; the printer
	// supervisor clears it when the printer reports ready again.
	condPrintFailed = "printer"
)

// startDevices starts a supervisor per configured device.
func (s *System) startDevices(ctx context.Context, g *group) {
	s.startAcceptor(ctx, g)
	if s.printer != nil {
		g.Go("printer", func() { s.superviseDevice(ctx, "printer", s.printerAttempt) })
	}
	switch {
	case s.cfg.Scanner.Port != "":
		g.Go("scanner", func() { s.superviseDevice(ctx, "scanner", s.scannerAttempt) })
	case s.cfg.Scanner.HID.Device != "":
		g.Go("scanner", func() { s.superviseDevice(ctx, "scanner", s.hidScannerAttempt) })
	}
	if len(s.cfg.Sensors) > 0 {
		g.Go("sensors", func() { runSensors(ctx, s.cfg, s.opts.OpenPin, s.reg, &s.tamper, s.log, &s.sens) })
	}
}

func (s *System) startAcceptor(ctx context.Context, g *group) {
	if d, err := registry.Lookup(s.cfg.Acceptor.Driver); err == nil && !d.Serial {
		g.Go("acceptor", func() { s.superviseDevice(ctx, "acceptor", s.pulseAttempt) })
		return
	}
	g.Go("acceptor", func() { s.superviseDevice(ctx, "acceptor", s.acceptorAttempt) })
}

// superviseDevice keeps a device in use: attempt opens it and uses it until it fails or ctx
// ends. After a failure the next attempt waits a backoff that doubles from RetryMin up to
// RetryMax, and starts again from RetryMin once the device was opened and worked for longer
// than the current backoff: a device unplugged for an hour is looked for every RetryMax, one
// that drops out once is back at once, and one that fails as soon as it is opened does not
// make the kiosk reopen it in a tight loop.
func (s *System) superviseDevice(ctx context.Context, name string, attempt func(ctx context.Context) (opened bool, err error)) {
	log := s.log.With("component", name)
	wait := s.opts.RetryMin
	for {
		began := time.Now()
		opened, err := attempt(ctx)
		if ctx.Err() != nil {
			return
		}
		if opened && time.Since(began) >= wait {
			wait = s.opts.RetryMin
		}
		log.Warn("device unavailable; retrying", "err", err, "retry_in", wait)
		if !sleepCtx(ctx, wait) {
			return
		}
		wait = min(wait*2, s.opts.RetryMax)
	}
}

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

// buildAcceptorFactory checks the acceptor config and prepares the driver constructor, so
// that a config error (unknown driver, unreadable eSSP key) stops New instead of a
// supervisor retrying it forever.
func (s *System) buildAcceptorFactory() error {
	d, err := configuredDriver(s.cfg, s.denoms)
	if err != nil {
		return err
	}
	if !d.Serial {
		return nil // a unit on GPIO pins: the pulse supervisor builds it
	}
	s.accMode = d.Mode
	s.newAcc = func(p serialport.Port, log *slog.Logger) (acceptor.Acceptor, error) { return d.build(p, log) }
	return nil
}

// acceptorAttempt opens the acceptor port and runs a driver on it until the port fails.
// The driver inhibits the unit when its Run ends, and closes the port.
func (s *System) acceptorAttempt(ctx context.Context) (bool, error) {
	log := s.log.With("component", "acceptor", "driver", s.cfg.Acceptor.Driver)
	port, err := s.opts.OpenPort(s.cfg.Acceptor.Port, s.accMode)
	if err != nil {
		s.reg.Set(condAcceptor, health.Critical, health.Engineer, health.StopsService, "bill acceptor port: "+err.Error())
		return false, err
	}
	drv, err := s.newAcc(port, log)
	if err != nil {
		port.Close()
		s.reg.Set(condAcceptor, health.Critical, health.Engineer, health.StopsService, err.Error())
		return false, err
	}
	s.reg.Clear(condAcceptor)
	log.Info("acceptor port open", "port", s.cfg.Acceptor.Port)
	s.acc.set(drv)
	err = drv.Run(ctx, s.handler)
	s.acc.set(nil)
	port.Close()
	if ctx.Err() == nil {
		if err == nil {
			err = errors.New("driver stopped")
		}
		s.reg.Set(condAcceptor, health.Critical, health.Engineer, health.StopsService, "bill acceptor port: "+err.Error())
	}
	return true, err
}

// scannerAttempt opens the scanner port and reads codes until it fails.
func (s *System) scannerAttempt(ctx context.Context) (bool, error) {
	log := s.log.With("component", "scanner")
	mode := serialport.Scanner
	if s.cfg.Scanner.Baud > 0 {
		mode.Baud = s.cfg.Scanner.Baud
	}
	port, err := s.opts.OpenPort(s.cfg.Scanner.Port, mode)
	if err != nil {
		s.reg.Set(condScanner, health.Critical, health.Engineer, health.StopsService, "QR scanner: "+err.Error())
		return false, err
	}
	s.reg.Clear(condScanner)
	log.Info("scanner port open", "port", s.cfg.Scanner.Port)
	// Scanner input is untrusted and free to produce: a refused line or code is counted (the
	// heartbeat's counters) and logged at most once a minute per kind (onEvent), never
	// journaled.
	sc := qrserial.New(port, qrserial.Config{Logger: log, OnError: func(err error) {
		s.reg.Event("scanner_line_refused", health.Info, health.None, err.Error())
	}})
	// Closing the port releases a read blocked in it.
	closed := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		port.Close()
		close(closed)
	})
	err = sc.Run(ctx, s.onScan)
	if stop() {
		port.Close()
	} else {
		<-closed
	}
	if ctx.Err() == nil {
		if err == nil {
			err = errors.New("scanner stopped")
		}
		s.reg.Set(condScanner, health.Critical, health.Engineer, health.StopsService, "QR scanner: "+err.Error())
	}
	return true, err
}

// HIDDevice is an open HID scanner event device (hidscan.EventDevice, or a fake in tests).
type HIDDevice interface {
	hidscan.Device
	Name() string
	Close() error
}

func openHID(path string) (HIDDevice, error) {
	d, err := hidscan.Open(path)
	if err != nil {
		return nil, err
	}
	return d, nil
}

// hidScannerAttempt opens and grabs the HID scanner's event device and reads codes until it
// fails (unplugged: ENODEV). The by-id name is opened again on the next attempt, so the
// scanner is found in whichever USB port it comes back.
func (s *System) hidScannerAttempt(ctx context.Context) (bool, error) {
	log := s.log.With("component", "scanner")
	hc := s.cfg.Scanner.HID
	path := hidscan.ResolvePath(hc.Device)
	dev, err := s.opts.OpenHID(path)
	if err != nil {
		s.reg.Set(condScanner, health.Critical, health.Engineer, health.StopsService, "QR scanner (USB HID): "+err.Error())
		return false, err
	}
	s.reg.Clear(condScanner)
	log.Info("HID scanner open", "device", path, "name", dev.Name())
	suffix, _ := hidscan.ParseSuffix(hc.Suffix) // checked by config.Validate
	sc := hidscan.New(dev, hidscan.Config{Suffix: suffix, InterCharTimeout: hc.InterCharTimeout.D(), Logger: log,
		OnError: func(err error) { s.reg.Event("scanner_line_refused", health.Info, health.None, err.Error()) }})
	// Closing the device also releases a read that a deadline cannot (a node that is not
	// pollable); Run then sees the cancelled context and returns.
	stop := context.AfterFunc(ctx, func() { _ = dev.Close() })
	err = sc.Run(ctx, s.onScan)
	if stop() {
		_ = dev.Close() // releases the grab
	}
	if ctx.Err() == nil {
		if err == nil {
			err = errors.New("scanner stopped")
		}
		s.reg.Set(condScanner, health.Critical, health.Engineer, health.StopsService, "QR scanner (USB HID): "+err.Error())
	}
	return true, err
}

// printerConfig is what New checks of the printer config.
type printerConfig struct {
	mode    serialport.Mode
	profile receipts.Profile
	// font draws raster receipts (printers without a Chinese font): loaded once at start.
	font *receipts.Font
}

func newPrinterConfig(cfg config.Config) (*printerConfig, error) {
	mode := serialport.Printer
	if cfg.Printer.Baud > 0 {
		mode.Baud = cfg.Printer.Baud
	}
	prof, err := printerProfile(cfg.Printer.Profile)
	if err != nil {
		return nil, err
	}
	pc := &printerConfig{mode: mode, profile: prof}
	if prof.Raster {
		// A raster profile cannot print a receipt without its font: a missing font is a
		// configuration error at start, not a failed receipt per customer.
		if pc.font, err = receipts.LoadFont(cfg.Printer.FontFile); err != nil {
			return nil, fmt.Errorf("printer.font_file: %w", err)
		}
	}
	return pc, nil
}

// printerProfiles maps printer.profile names to the receipt layouts (config.PrinterProfiles
// lists the same names).
var printerProfiles = map[string]receipts.Profile{
	"": receipts.Generic80, "generic80": receipts.Generic80, "generic58": receipts.Generic58,
	"chinese80": receipts.Chinese80, "chinese58": receipts.Chinese58,
	"raster80": receipts.Raster80, "raster58": receipts.Raster58,
	"presenter80": receipts.KioskPresenter80,
}

func printerProfile(name string) (receipts.Profile, error) {
	if p, ok := printerProfiles[name]; ok {
		return p, nil
	}
	return receipts.Profile{}, fmt.Errorf("unknown printer profile %q", name)
}

// printerSlot is the engine's receipt printer (session.Printer, session.CutCounter). It
// holds the driver on the port its supervisor opened; while there is none, a receipt is
// refused as not printed (no byte sent), which the engine handles like a printer out of
// paper.
type printerSlot struct {
	set printerConfig
	cfg config.Config
	log *slog.Logger

	// mu is held for reading while a print uses p, and for writing to swap p: the supervisor
	// never closes a port under a receipt being printed.
	mu sync.RWMutex
	p  *escpos.Printer
	// check asks the supervisor to look at the printer now (a print failed on the port).
	check chan struct{}
}

func newPrinterSlot(set printerConfig, cfg config.Config, log *slog.Logger) *printerSlot {
	return &printerSlot{set: set, cfg: cfg, log: log.With("component", "printer"), check: make(chan struct{}, 1)}
}

func (s *printerSlot) swap(p *escpos.Printer) {
	s.mu.Lock()
	s.p = p
	s.mu.Unlock()
}

func (s *printerSlot) connected() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.p != nil
}

func (s *printerSlot) kick() {
	select {
	case s.check <- struct{}{}:
	default:
	}
}

func (s *printerSlot) PrintReceipt(ctx context.Context, r session.Receipt) error {
	data, err := receipts.Render(toReceipt(s.cfg, r), s.set.profile, s.set.font)
	if err != nil {
		return fmt.Errorf("%w: render: %v", session.ErrNotPrinted, err)
	}
	s.mu.RLock()
	p := s.p
	if p == nil {
		s.mu.RUnlock()
		return fmt.Errorf("%w: receipt printer not connected", session.ErrNotPrinted)
	}
	err = p.Print(ctx, data)
	s.mu.RUnlock()
	if err != nil && portFailed(err) {
		s.kick()
	}
	var pe *escpos.PrintError
	if errors.As(err, &pe) && pe.Written == 0 {
		return fmt.Errorf("%w: %v", session.ErrNotPrinted, err)
	}
	return err
}

// PrintCollectionSlip prints a cash collection slip (session.SlipPrinter), in the kiosk's
// language (a Chinese slip carries the English beside each label).
func (s *printerSlot) PrintCollectionSlip(ctx context.Context, sl session.Slip) error {
	data, err := receipts.RenderSlip(toSlip(s.cfg, sl), s.set.profile, s.set.font)
	if err != nil {
		return fmt.Errorf("%w: render: %v", session.ErrNotPrinted, err)
	}
	s.mu.RLock()
	p := s.p
	if p == nil {
		s.mu.RUnlock()
		return fmt.Errorf("%w: printer not connected", session.ErrNotPrinted)
	}
	err = p.Print(ctx, data)
	s.mu.RUnlock()
	if err != nil && portFailed(err) {
		s.kick()
	}
	return err
}

// toSlip builds the slip paper of a collection record.
func toSlip(cfg config.Config, sl session.Slip) receipts.CollectionSlip {
	r := sl.Record
	out := receipts.CollectionSlip{KioskID: cfg.Kiosk.ID, Location: cfg.Kiosk.Location, TZ: cfg.Location(), CollectionID: r.CollectionID,
		PreviousID: r.PreviousID, PeriodFrom: r.PeriodFrom, PeriodTo: r.PeriodTo, Time: r.RecordedAt, CassetteID: r.CassetteID,
		Operator: r.Operator, Currency: r.Currency, Copy: sl.Copy, Lang: receipts.ParseLang(cfg.Kiosk.Language)}
	for _, l := range r.Lines {
		out.Lines = append(out.Lines, receipts.SlipLine{ValueMinor: l.ValueMinor, Expected: l.Expected, Counted: l.Counted})
	}
	if u := r.UnitCounter; u != nil && u.Stacked != nil {
		n := *u.Stacked
		out.UnitStacked = &n
	}
	for _, u := range r.Uncertain {
		out.Uncertain = append(out.Uncertain, receipts.SlipItem{ValueMinor: u.ValueMinor, TopupID: u.TopupID, Reason: u.Reason})
	}
	return out
}

// CutCount reads the printer's autocutter counter (session.CutCounter).
func (s *printerSlot) CutCount(ctx context.Context) (uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.p == nil {
		return 0, errors.New("receipt printer not connected")
	}
	return s.p.CutCount(ctx)
}

// portFailed tells a port that failed (unplugged, closed) from a printer that did not answer,
// answered nonsense or said why it cannot print (paper, cover): the first needs the port
// reopened, the others only a later look.
func portFailed(err error) bool {
	if err == nil {
		return false
	}
	for _, e := range []error{context.Canceled, context.DeadlineExceeded, escpos.ErrTimeout, escpos.ErrBadReply,
		escpos.ErrOffline, escpos.ErrPaperOut, escpos.ErrCoverOpen, escpos.ErrCutter, escpos.ErrUnrecoverable,
		escpos.ErrPrinterError, escpos.ErrNotReady} {
		if errors.Is(err, e) {
			return false
		}
	}
	return true
}

// printerAttempt opens the printer port and watches the printer until the port fails: its
// status is read every PrinterCheck (and at once after a print failed on the port), so a
// printer unplugged while idle is noticed and one that works again clears its conditions.
func (s *System) printerAttempt(ctx context.Context) (bool, error) {
	ps := s.printer
	port, err := s.opts.OpenPort(s.cfg.Printer.Port, ps.set.mode)
	if err != nil {
		s.reg.Set(condPrinter, health.Warning, health.Engineer, health.Degrades, "receipt printer: "+err.Error())
		return false, err
	}
	// Replies the printer sent to a previous process (a status it asked for just before it
	// died) must not be read as answers to ours.
	_ = port.ResetInputBuffer()
	p := escpos.New(port, escpos.Config{Profile: escpos.Generic, Logger: ps.log})
	ps.swap(p)
	ps.log.Info("printer port open", "port", s.cfg.Printer.Port)
	defer func() {
		ps.swap(nil) // waits for a print in progress
		port.Close()
	}()
	t := time.NewTicker(s.opts.PrinterCheck)
	defer t.Stop()
	for {
		st, err := p.Status(ctx)
		switch {
		case ctx.Err() != nil:
			return true, nil
		case err != nil && portFailed(err):
			s.reg.Set(condPrinter, health.Warning, health.Engineer, health.Degrades, "receipt printer: "+err.Error())
			return true, err
		case err != nil:
			s.reg.Set(condPrinter, health.Warning, health.Engineer, health.Degrades, "receipt printer not answering: "+err.Error())
		default:
			s.reg.Clear(condPrinter)
			if st.Err() == nil {
				s.reg.Clear(condPrintFailed)
			}
		}
		select {
		case <-ctx.Done():
			return true, nil
		case <-t.C:
		case <-ps.check:
		}
	}
}

func toReceipt(cfg config.Config, r session.Receipt) receipts.Receipt {
	rc := receipts.Receipt{KioskID: cfg.Kiosk.ID, Location: cfg.Kiosk.Location, Time: r.LocalTime, TZ: cfg.Location(),
		Account: r.Topup.AccountMask, Currency: r.Topup.Currency, Total: r.Topup.AmountMinor, TopupID: r.Topup.TopupID,
		ReceiptNo: r.Topup.ReceiptNo, Status: receipts.Status(r.Status), Outcome: receipts.Outcome(r.Topup.Outcome),
		Hotline: cfg.Kiosk.Hotline, Copy: r.Copy, Lang: receipts.ParseLang(cfg.Kiosk.Language), FollowsReceiptNo: r.FollowsReceiptNo}
	for _, n := range r.Notes {
		rc.Notes = append(rc.Notes, receipts.NoteLine{ValueMinor: n.ValueMinor, Count: n.Count})
	}
	for _, u := range r.Uncertain {
		rc.Uncertain = append(rc.Uncertain, receipts.UncertainItem{ValueMinor: u.ValueMinor, Reason: u.Reason})
	}
	return rc
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

// onScan takes a code from either scanner (serial or HID). A scanner self-test in progress
// takes it first. Scanner input is untrusted and free to produce: a code the kiosk cannot
// read now (a session is open, the kiosk is busy) is counted, not logged one by one; the
// engine counts and reports the codes it refused (qr_refused).
func (s *System) onScan(code string) {
	if s.engine == nil || s.scan.take(code) {
		return
	}
	if err := s.engine.Scan(code); errors.Is(err, session.ErrBusy) || errors.Is(err, session.ErrNotRunning) {
		s.reg.Event("scan_ignored", health.Info, health.None, err.Error())
	}
}
