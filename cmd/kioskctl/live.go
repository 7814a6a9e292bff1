package main

// The commands that talk to the running kioskd over its control socket (kiosk/ctl).

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kioskd/kioskd/kiosk/ctl"
	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/i18n"
	"github.com/kioskd/kioskd/kiosk/journal"
)

const liveUsage = `
  kioskctl status | devices | conditions | counters | outbox | uncertain
  kioskctl receipt N             the stored receipt record and its text
  kioskctl maintenance on|off    on waits for a customer in session to finish
  kioskctl collect start|status|cassette-out|count V=N...|finish|cassette-in|abort   cash collection
  kioskctl reprint N             print a COPY of receipt N
  kioskctl diag bundle [-o FILE] a .tar.gz for the support team (no secrets)
  kioskctl selftest printer      print a test page, with the printer's status
  kioskctl selftest acceptor [-note]
                                 identity, firmware, denominations, conditions; with -note (in
                                 maintenance) one note is read and returned: it credits nobody
  kioskctl selftest scanner      the next code read is shown (not used for a session)
  kioskctl selftest sensors      the door, vault and tamper switches now
  kioskctl signoff CONDITION -why TEXT [-who NAME]
                                 clear a condition only a technician may clear
                                 (acceptor_fraud, acceptor_unit_swapped, acceptor_cassette_pulled_mid_stack)
  kioskctl update-gate [-prepare [-wait D]]  may an update start now? exit 0 go, 21 retry later, 1 error
common flags: -socket PATH (default $KIOSKD_SOCKET or ` + ctl.DefaultSocket + `), -json`

// liveCommands are the commands of the running kioskd.
var liveCommands = map[string]func(l *live, args []string) error{
	"status":      (*live).status,
	"devices":     (*live).devices,
	"conditions":  (*live).conditions,
	"counters":    (*live).counters,
	"outbox":      (*live).outbox,
	"uncertain":   (*live).uncertain,
	"receipt":     (*live).receipt,
	"maintenance": (*live).maintenance,
	"reprint":     (*live).reprint,
	"diag":        (*live).diag,
	"selftest":    (*live).selftest,
	"collect":     (*live).collect,
	"signoff":     (*live).signoff,
}

// live is one command against kioskd.
type live struct {
	c    *ctl.Client
	json bool
	out  io.Writer
	ctx  context.Context
	// bundle is the -o of diag bundle.
	bundle string
	// why and who are signoff's -why and -who.
	why, who string
	// note is selftest acceptor's -note.
	note bool
}

func defaultSocket() string {
	if s := os.Getenv("KIOSKD_SOCKET"); s != "" {
		return s
	}
	return ctl.DefaultSocket
}

// parseLive reads the common flags wherever they are among args and returns the other
// arguments.
func parseLive(name string, args []string, out io.Writer) (*live, []string, error) {
	l := &live{out: out, ctx: context.Background()}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	socket := fs.String("socket", defaultSocket(), "kioskd's control socket")
	fs.BoolVar(&l.json, "json", false, "print JSON")
	fs.StringVar(&l.bundle, "o", "", "output file (diag bundle)")
	fs.BoolVar(&l.note, "note", false, "take one test note, returned (selftest acceptor)")
	fs.StringVar(&l.why, "why", "", "why the condition is signed off (signoff)")
	fs.StringVar(&l.who, "who", whoDefault(), "the technician's name (signoff; the uid is added by kioskd)")
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, nil, fmt.Errorf("%s: %v", name, err)
		}
		if fs.NArg() == 0 {
			break
		}
		rest = append(rest, fs.Arg(0))
		args = fs.Args()[1:]
	}
	l.c = ctl.NewClient(*socket)
	return l, rest, nil
}

func runLive(name string, args []string, out io.Writer) error {
	l, rest, err := parseLive(name, args, out)
	if err != nil {
		return err
	}
	// A waiting request (maintenance on) ends cleanly on Ctrl-C: the kiosk keeps the
	// request (it enters maintenance once the customer finished).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	l.ctx = ctx
	return liveCommands[name](l, rest)
}

func (l *live) print(v any, human func(w io.Writer)) error {
	if l.json {
		enc := json.NewEncoder(l.out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	human(l.out)
	return nil
}

func money(v int64, cur string) string {
	if cur == "" {
		return strconv.FormatInt(v, 10)
	}
	return i18n.FormatMinor(v, cur) + " " + cur
}

func (l *live) status(args []string) error {
	var st ctl.Status
	if err := l.c.Get(l.ctx, "/v1/status", &st); err != nil {
		return err
	}
	return l.print(st, func(w io.Writer) { printStatus(w, st) })
}

func printStatus(w io.Writer, st ctl.Status) {
	e := st.Engine
	fmt.Fprintf(w, "kiosk %s  version %s  boot %s  up %s\n", st.KioskID, st.Version, st.BootID, st.Uptime)
	if st.SafeMode != "" {
		fmt.Fprintf(w, "SAFE MODE: %s\n", st.SafeMode)
	}
	fmt.Fprintf(w, "state: %s\n", e.State)
	if e.Reason != "" {
		fmt.Fprintf(w, "reason: %s\n", e.Reason)
	}
	switch {
	case e.Waiting:
		fmt.Fprintln(w, "maintenance: requested, waiting for the customer to finish")
	case e.Maintenance:
		fmt.Fprintln(w, "maintenance: on")
	}
	if e.UpdateReady {
		fmt.Fprintln(w, "update: ready")
	}
	if c := e.Collection; c != nil {
		fmt.Fprintf(w, "cash collection: %s at step %s (kioskctl collect status)\n", c.ID, c.Step)
	}
	if len(e.Conditions) > 0 {
		fmt.Fprintf(w, "stopping service: %s\n", strings.Join(e.Conditions, ", "))
	}
	if len(e.Degraded) > 0 {
		fmt.Fprintf(w, "degraded: %s\n", strings.Join(e.Degraded, ", "))
	}
	if s := e.Session; s != nil {
		fmt.Fprintf(w, "session: #%d account %s, %s inserted (limit %s)", s.ID, s.AccountMasked, money(s.TotalMinor, st.Currency), money(s.LimitMinor, st.Currency))
		if s.Uncertain > 0 {
			fmt.Fprintf(w, ", %d uncertain", s.Uncertain)
		}
		if s.Closing {
			fmt.Fprint(w, ", closing")
		}
		if s.Offline {
			fmt.Fprint(w, ", offline")
		}
		fmt.Fprintln(w)
	}
	if j := st.Journal; j != nil {
		fmt.Fprintf(w, "journal: %d events, %d bytes, head %s\n", j.Events, j.SizeBytes, short(j.Head))
		fmt.Fprintf(w, "outbox: %d top-ups waiting (%s)", j.OutboxDepth, money(j.OutboxMinor, st.Currency))
		if !j.OldestUnsent.IsZero() {
			fmt.Fprintf(w, ", oldest closed %s ago", time.Since(j.OldestUnsent).Round(time.Second))
		}
		fmt.Fprintln(w)
		fmt.Fprintf(w, "uncertain items: %d\n", j.Uncertain)
	}
}

func short(h string) string {
	if len(h) > 16 {
		return h[:16] + "…"
	}
	return h
}

func (l *live) devices(args []string) error {
	var ds []ctl.Device
	if err := l.c.Get(l.ctx, "/v1/devices", &ds); err != nil {
		return err
	}
	return l.print(ds, func(w io.Writer) {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "DEVICE\tSTATE\tDETAIL")
		for _, d := range ds {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", d.Name, d.State, d.Detail)
			for _, c := range d.Conditions {
				fmt.Fprintf(tw, "\t  %s\t%s (%s, for %s)\n", c.Kind, c.Detail, c.Severity, c.Actor)
			}
		}
		tw.Flush()
	})
}

func effect(e health.Effect) string {
	switch e {
	case health.StopsService:
		return "stops service"
	case health.Degrades:
		return "degrades"
	}
	return "-"
}

func (l *live) conditions(args []string) error {
	var cs []health.Condition
	if err := l.c.Get(l.ctx, "/v1/conditions", &cs); err != nil {
		return err
	}
	return l.print(cs, func(w io.Writer) {
		if len(cs) == 0 {
			fmt.Fprintln(w, "no active conditions")
			return
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KIND\tSEVERITY\tEFFECT\tWHO\tSINCE\tDETAIL")
		for _, c := range cs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.Kind, c.Severity, effect(c.Effect), c.Actor, c.Since.Local().Format(time.DateTime), c.Detail)
		}
		tw.Flush()
	})
}

func (l *live) counters(args []string) error {
	var c ctl.Counters
	if err := l.c.Get(l.ctx, "/v1/counters", &c); err != nil {
		return err
	}
	return l.print(c, func(w io.Writer) {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "NOTE\tCOUNT\tVALUE\t")
		for _, r := range c.ByValue {
			fmt.Fprintf(tw, "%s\t%d\t%s\t\n", money(r.ValueMinor, c.Currency), r.Count, money(r.TotalMinor, c.Currency))
		}
		fmt.Fprintf(tw, "total\t%d\t%s\t\n", c.Notes, money(c.ValueMinor, c.Currency))
		tw.Flush()
	})
}

func (l *live) outbox(args []string) error {
	var items []ctl.OutboxItem
	if err := l.c.Get(l.ctx, "/v1/outbox", &items); err != nil {
		return err
	}
	return l.print(items, func(w io.Writer) {
		if len(items) == 0 {
			fmt.Fprintln(w, "outbox empty: every top-up is acknowledged by the ledger")
			return
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TOPUP\tRECEIPT\tACCOUNT\tAMOUNT\tSTATE\tAGE")
		for _, t := range items {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", t.TopupID, t.ReceiptNo, t.AccountMask, money(t.AmountMinor, t.Currency), t.State, time.Duration(t.AgeSeconds)*time.Second)
		}
		tw.Flush()
	})
}

func (l *live) uncertain(args []string) error {
	var us []journal.Uncertain
	if err := l.c.Get(l.ctx, "/v1/uncertain", &us); err != nil {
		return err
	}
	return l.print(us, func(w io.Writer) {
		if len(us) == 0 {
			fmt.Fprintln(w, "no uncertain items")
			return
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSESSION\tVALUE\tREASON")
		for _, u := range us {
			fmt.Fprintf(tw, "%d\t%d\t%d\t%s\n", u.ID, u.SessionID, u.ValueMinor, u.Reason)
		}
		tw.Flush()
	})
}

func receiptNo(args []string, cmd string) (uint64, error) {
	if len(args) != 1 {
		return 0, fmt.Errorf("usage: kioskctl %s N", cmd)
	}
	n, err := strconv.ParseUint(args[0], 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%s: receipt number must be a positive integer, got %q", cmd, args[0])
	}
	return n, nil
}

func (l *live) receipt(args []string) error {
	no, err := receiptNo(args, "receipt")
	if err != nil {
		return err
	}
	var r ctl.Receipt
	if err := l.c.Get(l.ctx, fmt.Sprintf("/v1/receipt/%d", no), &r); err != nil {
		return err
	}
	return l.print(r, func(w io.Writer) {
		t := r.Topup
		fmt.Fprintf(w, "receipt %d  top-up %s  session %d\n", t.ReceiptNo, t.TopupID, t.SessionID)
		fmt.Fprintf(w, "account %s  amount %s  outcome %s\n", t.AccountMask, money(t.AmountMinor, t.Currency), t.Outcome)
		fmt.Fprintf(w, "ledger: %s", t.State)
		if t.LedgerRef != "" {
			fmt.Fprintf(w, " (ref %s)", t.LedgerRef)
		}
		if t.HeldReason != "" {
			fmt.Fprintf(w, " held: %s", t.HeldReason)
		}
		fmt.Fprintf(w, "\nprint: %s, %d attempt(s)\n\n", orDash(t.PrintState), t.Prints)
		_, _ = io.WriteString(w, r.Text)
	})
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (l *live) maintenance(args []string) error {
	if len(args) != 1 || (args[0] != "on" && args[0] != "off") {
		return errors.New("usage: kioskctl maintenance on|off")
	}
	on := args[0] == "on"
	var lines []ctl.Progress
	last, err := l.c.Maintenance(l.ctx, on, func(p ctl.Progress) {
		lines = append(lines, p)
		if l.json || p.Done {
			return
		}
		msg := "waiting for the customer to finish"
		if s := p.Status.Session; s != nil {
			msg += fmt.Sprintf(" (session #%d, %d minor units inserted", s.ID, s.TotalMinor) // the stream has no currency
			if s.Closing {
				msg += ", closing"
			}
			msg += ")"
		}
		fmt.Fprintf(l.out, "%s: %s\n", p.Status.State, msg)
	})
	if errors.Is(err, context.Canceled) || (err == nil && l.ctx.Err() != nil) {
		return errors.New("stopped waiting; kioskd enters maintenance once the customer has finished (kioskctl status)")
	}
	if err != nil {
		return err
	}
	return l.print(lines, func(w io.Writer) {
		if on {
			fmt.Fprintf(w, "maintenance on: the acceptor is inhibited (state %s)\n", last.Status.State)
		} else {
			fmt.Fprintf(w, "maintenance off (state %s)\n", last.Status.State)
		}
	})
}

func (l *live) reprint(args []string) error {
	no, err := receiptNo(args, "reprint")
	if err != nil {
		return err
	}
	var r ctl.Reply
	if err := l.c.Post(l.ctx, "/v1/reprint", ctl.ReprintRequest{ReceiptNo: no}, &r); err != nil {
		var se *ctl.ServerError
		if errors.As(err, &se) && se.Code == http.StatusConflict {
			return fmt.Errorf("%w (a receipt copy is printed when no customer is in session)", err)
		}
		return err
	}
	return l.print(r, func(w io.Writer) { fmt.Fprintln(w, r.Message) })
}

// whoDefault is the technician's name as the system knows it: the user sudo was run by, else
// the login name.
func whoDefault() string {
	for _, v := range []string{"SUDO_USER", "USER", "LOGNAME"} {
		if s := os.Getenv(v); s != "" {
			return s
		}
	}
	return ""
}

func (l *live) signoff(args []string) error {
	if len(args) != 1 || strings.TrimSpace(l.why) == "" {
		return errors.New("usage: kioskctl signoff CONDITION -why TEXT [-who NAME]")
	}
	var r ctl.Reply
	if err := l.c.Post(l.ctx, "/v1/signoff", ctl.SignOffRequest{Condition: args[0], Why: l.why, Who: l.who}, &r); err != nil {
		return err
	}
	return l.print(r, func(w io.Writer) { fmt.Fprintln(w, r.Message) })
}

func (l *live) selftest(args []string) error {
	if len(args) == 1 && args[0] == "acceptor" && l.note {
		fmt.Fprintln(l.out, "insert one note within 60 s: it is read and given back")
		return l.deviceTest("acceptor_note")
	}
	if len(args) == 1 && args[0] != "printer" {
		return l.deviceTest(args[0])
	}
	if len(args) != 1 {
		return errors.New("usage: kioskctl selftest printer|acceptor|scanner|sensors")
	}
	var r ctl.PrinterTest
	if err := l.c.Post(l.ctx, "/v1/selftest/printer", nil, &r); err != nil {
		return err
	}
	if err := l.print(r, func(w io.Writer) {
		fmt.Fprintf(w, "before: %s\n", r.Before)
		if r.Printed {
			fmt.Fprintln(w, "test page printed (not cut: tear it off)")
		} else {
			fmt.Fprintf(w, "test page NOT printed: %s\n", r.Error)
		}
		fmt.Fprintf(w, "after:  %s\n", r.After)
	}); err != nil {
		return err
	}
	if !r.Printed {
		return errors.New("printer self-test failed")
	}
	return nil
}

// liveJournal runs journal verify and export on the running kioskd when it answers on its
// socket and no offline option was given; handled is false otherwise (the offline commands
// run then, on the file).
func liveJournal(sub string, args []string, out io.Writer) (handled bool, err error) {
	if sub != "verify" && sub != "export" {
		return false, nil
	}
	for i := 0; i < len(args); i++ {
		a := strings.TrimLeft(args[i], "-")
		switch {
		case a == "json":
		case a == "socket" && i+1 < len(args):
			i++
		case strings.HasPrefix(a, "socket="):
		default:
			return false, nil // an offline option (-journal, ...)
		}
	}
	l, _, err := parseLive("journal "+sub, args, out)
	if err != nil {
		return true, err
	}
	if !l.c.Running() {
		return false, nil
	}
	if sub == "export" {
		return true, l.c.Export(l.ctx, out)
	}
	var v ctl.Verify
	if err := l.c.Post(l.ctx, "/v1/journal/verify", nil, &v); err != nil {
		return true, err
	}
	if err := l.print(v, func(w io.Writer) {
		if v.OK {
			r := v.Report
			fmt.Fprintf(w, "OK live journal (kioskd, one read transaction): %d events, %d sessions, %d top-ups, head %s\n", r.Events, r.Sessions, r.Topups, r.Head)
		} else {
			fmt.Fprintf(w, "FAIL live journal: %s\n", v.Error)
		}
	}); err != nil {
		return true, err
	}
	if !v.OK {
		return true, errors.New("journal verification failed")
	}
	return true, nil
}

func (l *live) deviceTest(dev string) error {
	var r ctl.SelfTest
	if err := l.c.Post(l.ctx, "/v1/selftest/"+dev, nil, &r); err != nil {
		return err
	}
	if err := l.print(r, func(w io.Writer) {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, it := range r.Items {
			fmt.Fprintf(tw, "%s:\t%s\n", it.Name, it.Value)
		}
		tw.Flush()
		if r.OK {
			fmt.Fprintf(w, "%s self-test: OK\n", dev)
		} else {
			fmt.Fprintf(w, "%s self-test: FAILED: %s\n", dev, r.Error)
		}
	}); err != nil {
		return err
	}
	if !r.OK {
		return fmt.Errorf("%s self-test failed", dev)
	}
	return nil
}
