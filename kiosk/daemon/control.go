package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/kioskd/kioskd/devices/scanner/hidscan"
	"github.com/kioskd/kioskd/kiosk/ctl"
	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/kiosk/session"
	"github.com/kioskd/kioskd/receipts"
)

// controlServers are the technicians' servers: the control socket and the service menu
// (either may be nil).
type controlServers struct {
	ctl *ctl.Server
	svc *http.Server
}

// startControl opens the technicians' control socket and the service menu and serves them
// in g. Neither is needed to serve customers: one that cannot be opened is logged, and the
// kiosk runs without it.
func (s *System) startControl(g *group) *controlServers {
	return &controlServers{ctl: s.startSocket(g), svc: s.startServiceMenu(g)}
}

func (s *System) startSocket(g *group) *ctl.Server {
	path := s.cfg.Control.Socket
	if path == "" {
		return nil
	}
	pol := ctl.PolicyFor(s.cfg.Control.Group)
	ln, err := ctl.Listen(path, pol)
	if err != nil && ln == nil {
		s.log.Error("control socket not available; kioskctl cannot reach this kioskd", "socket", path, "err", err)
		return nil
	}
	if err != nil {
		s.log.Warn("control socket", "err", err)
	}
	srv := ctl.NewServer(controlBackend{s}, pol, s.log)
	g.Go("control", func() {
		if err := srv.Serve(ln); err != nil {
			s.log.Error("control socket", "err", err)
		}
	})
	s.log.Info("control socket listening", "socket", path, "group", s.cfg.Control.Group)
	return srv
}

// stopControl closes the control socket within budget (it runs alongside the customer
// screen's close, in the same phase).
func stopControl(cs *controlServers, budget time.Duration) {
	if cs == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	if cs.svc != nil {
		if err := cs.svc.Shutdown(ctx); err != nil {
			cs.svc.Close()
		}
	}
	if cs.ctl != nil {
		_ = cs.ctl.Shutdown(ctx)
	}
}

// controlBackend gives the control API the kiosk's parts. In safe mode (no engine, no
// journal) it serves what exists: the status, the conditions and the devices.
type controlBackend struct{ s *System }

var errSafeMode = errors.New("the journal is not open (safe mode)")

func (b controlBackend) Status(ctx context.Context) (ctl.Status, error) {
	s := b.s
	st := ctl.Status{KioskID: s.cfg.Kiosk.ID, Currency: s.cfg.Kiosk.Currency, Version: s.opts.Version, BootID: s.bootID, Uptime: time.Since(s.start).Round(time.Second).String()}
	if s.safe != nil {
		st.SafeMode = s.safe.Error()
		_, kinds := s.reg.Worst()
		st.Engine = session.Status{State: session.OutOfService.String(), Reason: "journal unusable", Conditions: kinds}
		return st, nil
	}
	es, err := s.engine.Status(ctx)
	if err != nil {
		return st, err
	}
	st.Engine = es
	if js, err := s.j.Stats(); err == nil {
		st.Journal = &js
	}
	return st, nil
}

// deviceOf tells which device a condition concerns, by its kind's prefix.
func deviceOf(kind string) string {
	for _, d := range []string{"acceptor", "printer", "scanner"} {
		if strings.HasPrefix(kind, d) {
			return d
		}
	}
	return ""
}

func (b controlBackend) Devices(ctx context.Context) ([]ctl.Device, error) {
	s := b.s
	conds := s.reg.Active()
	mk := func(name, detail string) ctl.Device {
		d := ctl.Device{Name: name, State: "ok", Detail: detail}
		for _, c := range conds {
			if deviceOf(c.Kind) != name {
				continue
			}
			d.Conditions = append(d.Conditions, c)
			switch {
			case c.Effect >= health.StopsService:
				d.State = "failed"
			case d.State == "ok" && c.Effect == health.Degrades:
				d.State = "degraded"
			}
		}
		return d
	}
	info := s.acc.Info()
	accDetail := fmt.Sprintf("%s on %s", s.cfg.Acceptor.Driver, s.cfg.Acceptor.Port)
	if info.Model != "" || info.Serial != "" {
		accDetail += fmt.Sprintf(" (%s %s %s, firmware %s)", info.Protocol, info.Model, info.Serial, info.Firmware)
	}
	out := []ctl.Device{mk("acceptor", accDetail)}
	if s.printer == nil {
		out = append(out, ctl.Device{Name: "printer", State: "not configured"})
	} else {
		d := mk("printer", fmt.Sprintf("%s on %s", s.cfg.Printer.Profile, s.cfg.Printer.Port))
		if !s.printer.connected() {
			d.Detail += ", not connected"
			if d.State == "ok" {
				d.State = "degraded"
			}
		}
		out = append(out, d)
	}
	switch {
	case s.cfg.Scanner.Port != "":
		out = append(out, mk("scanner", "on "+s.cfg.Scanner.Port))
	case s.cfg.Scanner.HID.Device != "":
		out = append(out, mk("scanner", "USB HID on "+hidscan.ResolvePath(s.cfg.Scanner.HID.Device)))
	default:
		out = append(out, ctl.Device{Name: "scanner", State: "not configured"})
	}
	return out, nil
}

func (b controlBackend) Conditions() []health.Condition { return b.s.reg.Active() }

func (b controlBackend) Counters() (ctl.Counters, error) {
	if b.s.j == nil {
		return ctl.Counters{}, errSafeMode
	}
	c, err := b.s.j.Cassette()
	if err != nil {
		return ctl.Counters{}, err
	}
	out := ctl.Counters{Currency: b.s.cfg.Kiosk.Currency, Notes: c.Count, ValueMinor: c.ValueMinor, ByValue: []ctl.DenominationRow{}}
	for v, n := range c.ByValue {
		out.ByValue = append(out.ByValue, ctl.DenominationRow{ValueMinor: v, Count: n, TotalMinor: v * n})
	}
	slices.SortFunc(out.ByValue, func(a, b ctl.DenominationRow) int { return int(a.ValueMinor - b.ValueMinor) })
	return out, nil
}

func (b controlBackend) Outbox() ([]journal.Topup, error) {
	if b.s.j == nil {
		return nil, errSafeMode
	}
	return b.s.j.Outbox()
}

func (b controlBackend) Uncertain() ([]journal.Uncertain, error) {
	if b.s.j == nil {
		return nil, errSafeMode
	}
	return b.s.j.UncertainItems()
}

func (b controlBackend) Receipt(no uint64) (ctl.Receipt, bool, error) {
	if b.s.j == nil {
		return ctl.Receipt{}, false, errSafeMode
	}
	t, ok, err := b.s.j.Receipt(no)
	if err != nil || !ok {
		return ctl.Receipt{}, ok, err
	}
	r := ctl.Receipt{Topup: t}
	if w, err := t.Wire(); err == nil {
		sr := session.Receipt{Topup: t, Uncertain: w.Uncertain, Status: receiptStatus(t, len(w.Uncertain) > 0 && w.AmountMinor == 0), LocalTime: w.ClosedAt}
		for _, n := range w.Notes {
			sr.Notes = append(sr.Notes, journal.NoteLine{ValueMinor: n.ValueMinor, Count: n.Count})
		}
		r.Text = string(receipts.RenderText(toReceipt(b.s.cfg, sr), 42))
	}
	return r, true, nil
}

// receiptStatus is what the receipt of t says now: the journal's state of the top-up.
func receiptStatus(t journal.Topup, onlyUncertain bool) string {
	switch {
	case t.State == journal.TopupHeld:
		return session.ReceiptUnderReview
	case t.State == journal.TopupCredited:
		return session.ReceiptCredited
	case onlyUncertain:
		return session.ReceiptUnderReview
	}
	return session.ReceiptPending
}

func (b controlBackend) Verify() (journal.VerifyReport, error) {
	if b.s.j == nil {
		return journal.VerifyReport{}, fmt.Errorf("%w: %v", errSafeMode, b.s.safe)
	}
	return b.s.j.Verify()
}

func (b controlBackend) Export(w io.Writer) error {
	if b.s.j == nil {
		return errSafeMode
	}
	return b.s.j.ExportJSONL(w)
}

func (b controlBackend) Maintenance(ctx context.Context, on, wait bool) (session.Reply, error) {
	if b.s.engine == nil {
		return session.Reply{}, errSafeMode
	}
	return b.s.engine.SetMaintenance(ctx, on, wait)
}

// Collect runs a cash collection command (ctl.Collector).
func (b controlBackend) Collect(ctx context.Context, cmd session.Command) (session.Reply, error) {
	if b.s.engine == nil {
		return session.Reply{}, errSafeMode
	}
	return b.s.engine.Do(ctx, cmd)
}

func (b controlBackend) Reprint(ctx context.Context, no uint64) error {
	if b.s.engine == nil {
		return errSafeMode
	}
	if b.s.printer == nil {
		return fmt.Errorf("no receipt printer: %w", ctl.ErrUnsupported)
	}
	_, err := b.s.engine.Do(ctx, session.Command{Kind: session.CmdReprint, ReceiptNo: no})
	return err
}

func (b controlBackend) Diag(ctx context.Context) (ctl.Diag, error) {
	s := b.s
	d := ctl.Diag{At: time.Now().UTC(), Versions: map[string]string{"kioskd": s.opts.Version, "go": runtime.Version(), "config_version": fmt.Sprint(s.cfg.Version)},
		Conds: s.reg.Active(), Events: s.reg.Counters()}
	var err error
	if d.Status, err = b.Status(ctx); err != nil {
		return d, err
	}
	if d.Devices, err = b.Devices(ctx); err != nil {
		return d, err
	}
	if info := s.acc.Info(); info.Firmware != "" {
		d.Versions["acceptor_firmware"] = info.Firmware
	}
	d.Journal = d.Status.Journal
	if s.link != nil {
		d.MQTTConnected = s.link.Connected()
	}
	if s.up != nil {
		d.Uplink = s.up.Stats()
	}
	d.Config, err = ctl.RedactConfig(s.cfg)
	return d, err
}

// testPage is the printer self-test page. It is not cut: the printer's cut counter is the
// journal's evidence of which receipts came out (journal.ReconcileCuts), and a cut the
// journal cannot explain would weaken it. The technician tears the page off.
func testPage(kioskID string, at time.Time) []byte {
	var b strings.Builder
	b.WriteString("\x1b@") // ESC @: initialise
	b.WriteString("*** PRINTER SELF-TEST ***\n")
	b.WriteString("kiosk " + kioskID + "\n")
	b.WriteString(at.UTC().Format(time.RFC3339) + "\n")
	b.WriteString("0123456789 ABCDEFGHIJKLMNOPQRSTUVWXYZ\n")
	b.WriteString("not a receipt\n\n\n\n")
	return []byte(b.String())
}

func (b controlBackend) PrinterSelfTest(ctx context.Context) (ctl.PrinterTest, error) {
	ps := b.s.printer
	if ps == nil {
		return ctl.PrinterTest{}, fmt.Errorf("no receipt printer: %w", ctl.ErrUnsupported)
	}
	ps.mu.RLock()
	defer ps.mu.RUnlock()
	if ps.p == nil {
		return ctl.PrinterTest{}, errors.New("receipt printer not connected")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var res ctl.PrinterTest
	if st, err := ps.p.Status(ctx); err != nil {
		res.Before = "no answer: " + err.Error()
	} else {
		res.Before = st.String()
	}
	if err := ps.p.Print(ctx, testPage(b.s.cfg.Kiosk.ID, time.Now())); err != nil {
		res.Error = err.Error()
	} else {
		res.Printed = true
	}
	if st, err := ps.p.Status(ctx); err != nil {
		res.After = "no answer: " + err.Error()
	} else {
		res.After = st.String()
	}
	return res, nil
}

// ctlWaitBudget bounds the wait for the control server's goroutine after its Shutdown
// returned: Serve returns as soon as the listener is closed, so this is only ever used up by
// a server that is stuck.
const ctlWaitBudget = 250 * time.Millisecond
