package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/kioskd/kioskd/kiosk/ctl"
	"github.com/kioskd/kioskd/kiosk/i18n"
	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/kiosk/session"
)

const collectUsage = `usage:
  kioskctl collect start [OPERATOR [CASSETTE_ID]]   maintenance on (waits for a customer), then the cassette may come out
  kioskctl collect status
  kioskctl collect cassette-out                     the cassette is out (the acceptor's own report does the same)
  kioskctl collect count VALUE=COUNT ...            notes counted per denomination, VALUE in the currency (100=12 50=3)
  kioskctl collect finish                           record, print the slip, send it to the ledger, reset the counters
  kioskctl collect cassette-in                      the cassette is back (or the acceptor's report); service resumes
  kioskctl collect abort [REASON]                   only before the cassette came out`

// collect runs one step of the cash collection on the running kioskd.
func (l *live) collect(args []string) error {
	if len(args) == 0 {
		return errors.New(collectUsage)
	}
	req := ctl.CollectRequest{Action: strings.ReplaceAll(args[0], "-", "_")}
	rest := args[1:]
	switch req.Action {
	case "start":
		if len(rest) > 2 {
			return errors.New(collectUsage)
		}
		if len(rest) > 0 {
			req.Operator = rest[0]
		}
		if len(rest) > 1 {
			req.CassetteID = rest[1]
		}
		req.Wait = true
	case "count":
		if len(rest) == 0 {
			return errors.New(collectUsage)
		}
		var st ctl.Status
		if err := l.c.Get(l.ctx, "/v1/status", &st); err != nil {
			return err
		}
		counts, err := parseCounts(rest, st.Currency)
		if err != nil {
			return err
		}
		req.Counts = counts
	case "abort":
		req.Reason = strings.Join(rest, " ")
	case "status", "cassette_out", "finish", "cassette_in":
		if len(rest) != 0 {
			return errors.New(collectUsage)
		}
	default:
		return errors.New(collectUsage)
	}
	if req.Wait && !l.json {
		fmt.Fprintln(l.out, "starting the cash collection (waits for a customer in session to finish)...")
	}
	rep, err := l.c.Collect(l.ctx, req)
	if err != nil {
		return err
	}
	return l.print(rep, func(w io.Writer) { printCollection(w, rep.Status) })
}

// parseCounts reads VALUE=COUNT pairs, VALUE in major units of the currency.
func parseCounts(args []string, currency string) ([]journal.NoteLine, error) {
	exp := 2
	if c, ok := i18n.LookupCurrency(currency); ok {
		exp = c.Exponent
	}
	var out []journal.NoteLine
	for _, a := range args {
		v, n, ok := strings.Cut(a, "=")
		if !ok {
			return nil, fmt.Errorf("count %q: want VALUE=COUNT (100=12)", a)
		}
		f, err := strconv.ParseFloat(v, 64)
		minor := math.Round(f * math.Pow10(exp))
		if err != nil || f <= 0 || minor > 1e12 || math.Abs(minor-f*math.Pow10(exp)) > 1e-6 {
			return nil, fmt.Errorf("count %q: bad note value %q", a, v)
		}
		cnt, err := strconv.ParseInt(n, 10, 64)
		if err != nil || cnt < 0 {
			return nil, fmt.Errorf("count %q: bad number of notes %q", a, n)
		}
		out = append(out, journal.NoteLine{ValueMinor: int64(minor), Count: cnt})
	}
	return out, nil
}

func printCollection(w io.Writer, st session.Status) {
	c := st.Collection
	if c == nil {
		fmt.Fprintf(w, "no cash collection in progress (state %s)\n", st.State)
		return
	}
	r := c.Record
	cur := r.Currency
	fmt.Fprintf(w, "collection %s  step %s  (state %s)\n", c.ID, c.Step, st.State)
	if st.Waiting {
		fmt.Fprintln(w, "waiting for the customer in session to finish")
	}
	fmt.Fprintf(w, "cassette %s, collector %s\n", c.CassetteID, c.Operator)
	if c.Step == journal.CollectStarted {
		fmt.Fprintln(w, "next: take the cassette out")
		return
	}
	fmt.Fprintf(w, "%-12s %9s %9s %9s\n", "NOTE", "EXPECTED", "COUNTED", "DIFF")
	for _, l := range r.Lines {
		fmt.Fprintf(w, "%-12s %9d %9d %+9d\n", i18n.FormatMinor(l.ValueMinor, cur), l.Expected, l.Counted, l.Difference)
	}
	fmt.Fprintf(w, "expected %s, counted %s, difference %s\n", money(r.ExpectedMinor, cur), money(r.CountedMinor, cur), money(r.DifferenceMinor, cur))
	if u := r.UnitCounter; u != nil && u.Stacked != nil {
		fmt.Fprintf(w, "the acceptor counted %d note(s) into this cassette\n", *u.Stacked)
	}
	fmt.Fprintf(w, "uncertain items: %d\n", len(r.Uncertain))
	for _, u := range r.Uncertain {
		fmt.Fprintf(w, "  #%d %s %s: %s\n", u.ItemID, money(u.ValueMinor, cur), u.TopupID, u.Reason)
	}
	switch c.Step {
	case journal.CollectCassetteOut:
		fmt.Fprintln(w, "next: count the notes (kioskctl collect count VALUE=COUNT ...)")
	case journal.CollectCounted:
		fmt.Fprintln(w, "next: kioskctl collect finish (or count again)")
	case journal.CollectRecorded:
		slip := "printing"
		switch {
		case c.SlipPrinted:
			slip = "printed"
		case c.SlipDetail != "":
			slip = "not printed: " + c.SlipDetail
		}
		fmt.Fprintf(w, "recorded; slip %s; record %s\n", slip, c.State)
		if !c.CassetteIn {
			fmt.Fprintln(w, "next: put the cassette back in")
		}
	}
}
