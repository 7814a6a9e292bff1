package svcmenu

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kioskd/kioskd/kiosk/i18n"
	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/kiosk/session"
)

// Cash collection on the menu: the screen drives the engine's collect_* procedure (kiosk/
// session collect.go) one step at a time, the same commands kioskctl sends over the control
// socket. The engine keeps the procedure in the journal, so the screen holds no state of its
// own: every answer carries where the collection stands, and a collector who comes back to
// the menu (another login, a restart) picks it up at its step.

// CashCollector is implemented by a Backend that runs cash collections (kioskd's, the same
// method as ctl.Collector): Collect runs one collect_* command, or status, of the engine.
type CashCollector interface {
	Collect(ctx context.Context, cmd session.Command) (session.Reply, error)
}

// Collection steps the page asks for (ActionRequest.Step), and the engine's commands.
var collectSteps = map[string]session.CommandKind{
	"":             session.CmdStatus,
	"status":       session.CmdStatus,
	"start":        session.CmdCollectStart,
	"cassette_out": session.CmdCollectCassetteOut,
	"count":        session.CmdCollectCount,
	"finish":       session.CmdCollectFinish,
	"cassette_in":  session.CmdCollectCassetteIn,
	"abort":        session.CmdCollectAbort,
}

// maxNoteCount bounds one denomination's count: a cassette holds a few thousand notes.
const maxNoteCount = 100000

// collectWait bounds how long a finish waits for its slip, and a cassette-in for the end of
// the procedure, before answering with the step as it stands.
const collectWait = 20 * time.Second

// CollectionView is the collection as the screen shows it.
type CollectionView struct {
	// Step is the engine's step ("" when no collection is open; started, cassette_out,
	// counted, recorded), or ended/aborted right after the step that closed it.
	Step    string `json:"step"`
	Waiting bool   `json:"waiting,omitempty"`
	ID      string `json:"id,omitempty"`
	// Text says the step and what to do next.
	Text string `json:"text"`
	// Lines are the kiosk's denominations with the expected and counted notes.
	Lines []CollectionLine `json:"lines,omitempty"`
	// Expected, Counted and Difference are the figures in words (Difference once counted).
	Expected   string `json:"expected,omitempty"`
	Counted    string `json:"counted,omitempty"`
	Difference string `json:"difference,omitempty"`
	// DifferenceMinor is counted - expected: negative is a shortage.
	DifferenceMinor int64 `json:"difference_minor"`
	// Next are the steps the collector can take now, in the screen's order.
	Next []string `json:"next,omitempty"`
	// CanCount is set while the counts can be entered (again).
	CanCount bool `json:"can_count,omitempty"`
	// Slip is the slip's state in words, once the record is made.
	Slip string `json:"slip,omitempty"`
}

// CollectionLine is one denomination on the collection screen.
type CollectionLine struct {
	ValueMinor int64  `json:"value_minor"`
	Label      string `json:"label"`
	Expected   int64  `json:"expected"`
	Counted    int64  `json:"counted"`
}

// collect takes one step of a cash collection; detail is what the audit event records.
func (s *server) collect(ctx context.Context, lang i18n.Lang, who string, req ActionRequest) (Result, string, error) {
	col, ok := s.cfg.Backend.(CashCollector)
	if !ok {
		return Result{Message: i18n.T(lang, KeyCollectionNA)}, "not available", nil
	}
	kind, ok := collectSteps[req.Step]
	if !ok {
		return Result{}, "", fmt.Errorf("unknown collection step %q", req.Step)
	}
	cmd := session.Command{Kind: kind}
	detail := "step=" + req.Step
	switch kind {
	case session.CmdStatus:
		detail = "step=status"
	case session.CmdCollectStart:
		// The collector is the login: the record and the slip name who collected.
		cmd.Operator = who
	case session.CmdCollectCount:
		// The audit keeps what was entered, a refused count too.
		detail += " " + countsText(req.Counts)
		counts, err := s.checkCounts(req.Counts)
		if err != nil {
			return Result{}, detail, err
		}
		cmd.Counts = counts
	case session.CmdCollectAbort:
		cmd.Reason = "aborted on the service menu by " + who
	}
	rep, err := col.Collect(ctx, cmd)
	if err != nil {
		return Result{}, detail, err
	}
	before := rep.Status.Collection
	switch kind {
	case session.CmdCollectFinish:
		// The slip prints on the engine once the record is made: answer with its outcome.
		rep = s.waitCollection(ctx, col, rep, func(c *session.CollectionStatus) bool { return c == nil || c.SlipDone() })
	case session.CmdCollectCassetteIn:
		rep = s.waitCollection(ctx, col, rep, func(c *session.CollectionStatus) bool { return c == nil })
	}
	view := s.collectionView(lang, rep.Status, rep.Progress == session.ProgressWaitingIdle)
	if rep.Status.Collection == nil {
		switch {
		case kind == session.CmdCollectAbort:
			view.Step, view.Text = journal.CollectAborted, i18n.T(lang, i18n.KeySvcColAborted)
		case before != nil || kind == session.CmdCollectCassetteIn:
			view.Step, view.Text = journal.CollectEnded, i18n.T(lang, i18n.KeySvcColEnded)
			view.Next = []string{"start"}
		}
	}
	res := Result{OK: true, Message: view.Text, Collection: &view}
	for _, l := range view.Lines {
		res.Rows = append(res.Rows, [2]string{l.Label, fmt.Sprintf("%s %d · %s %d", i18n.T(lang, i18n.KeySvcColExpNotes), l.Expected,
			i18n.T(lang, i18n.KeySvcColNoteCount), l.Counted)})
	}
	if view.ID != "" {
		res.Rows = append([][2]string{{i18n.T(lang, i18n.KeySvcColID), view.ID}}, res.Rows...)
	}
	for _, r := range [][2]string{{i18n.T(lang, i18n.KeySvcColExpected), view.Expected}, {i18n.T(lang, i18n.KeySvcColCountedFig), view.Counted},
		{i18n.T(lang, i18n.KeySvcColDifference), view.Difference}} {
		if r[1] != "" {
			res.Rows = append(res.Rows, r)
		}
	}
	if c := rep.Status.Collection; c != nil && len(c.Record.Uncertain) > 0 {
		res.Rows = append(res.Rows, [2]string{i18n.T(lang, i18n.KeySvcColUncertain), strconv.Itoa(len(c.Record.Uncertain))})
	}
	if view.Slip != "" {
		res.Rows = append(res.Rows, [2]string{i18n.T(lang, i18n.KeySvcColSlip), view.Slip})
	}
	detail += " -> " + view.Step
	if view.ID != "" {
		detail += " " + view.ID
	}
	if view.Difference != "" {
		detail += fmt.Sprintf(" difference %d", view.DifferenceMinor)
	}
	return res, detail, nil
}

// waitCollection asks the engine for the collection's state until done says it is there or
// collectWait passes; it returns the last answer (a failed status read keeps the one before).
func (s *server) waitCollection(ctx context.Context, col CashCollector, rep session.Reply, done func(*session.CollectionStatus) bool) session.Reply {
	ctx, cancel := context.WithTimeout(ctx, collectWait)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !done(rep.Status.Collection) {
		select {
		case <-ctx.Done():
			return rep
		case <-tick.C:
		}
		r, err := col.Collect(ctx, session.Command{Kind: session.CmdStatus})
		if err != nil {
			continue
		}
		rep = r
	}
	return rep
}

// checkCounts checks the collector's counts: each value one of the kiosk's denominations
// (when the menu knows them), once, with a count from 0 to maxNoteCount.
func (s *server) checkCounts(in []journal.NoteLine) ([]journal.NoteLine, error) {
	if len(in) == 0 {
		return nil, errors.New("no counts")
	}
	seen := map[int64]bool{}
	out := make([]journal.NoteLine, 0, len(in))
	for _, n := range in {
		if n.ValueMinor <= 0 || seen[n.ValueMinor] {
			return nil, fmt.Errorf("count of value %d", n.ValueMinor)
		}
		if len(s.cfg.Denominations) > 0 && !slices.Contains(s.cfg.Denominations, n.ValueMinor) {
			return nil, fmt.Errorf("value %d is not a denomination of this kiosk", n.ValueMinor)
		}
		if n.Count < 0 || n.Count > maxNoteCount {
			return nil, fmt.Errorf("count %d of value %d", n.Count, n.ValueMinor)
		}
		seen[n.ValueMinor] = true
		out = append(out, n)
	}
	return out, nil
}

func countsText(c []journal.NoteLine) string {
	parts := make([]string, len(c))
	for i, n := range c {
		parts[i] = fmt.Sprintf("%dx%d", n.ValueMinor, n.Count)
	}
	return strings.Join(parts, ",")
}

// collectionView puts the engine's collection in the screen's words.
func (s *server) collectionView(lang i18n.Lang, st session.Status, waiting bool) CollectionView {
	cur := s.currency()
	c := st.Collection
	v := CollectionView{}
	if c == nil {
		v.Text, v.Next = i18n.T(lang, i18n.KeySvcColNone), []string{"start"}
		return v
	}
	rec := c.Record
	if rec.Currency != "" {
		cur = rec.Currency
	}
	v.Step, v.ID = c.Step, c.ID
	v.Waiting = waiting || (c.Step == journal.CollectStarted && st.Waiting)
	expected := map[int64]int64{}
	counted := map[int64]int64{}
	for _, l := range rec.Lines {
		expected[l.ValueMinor], counted[l.ValueMinor] = l.Expected, l.Counted
	}
	var expMinor int64
	if c.Step == journal.CollectStarted {
		// Nothing is frozen before the cassette is out: the live counters say what to expect.
		if cs, err := s.cfg.Backend.Counters(); err == nil {
			for _, d := range cs.ByValue {
				expected[d.ValueMinor] = d.Count
			}
			expMinor = cs.ValueMinor
		}
	} else {
		expMinor = rec.ExpectedMinor
	}
	values := slices.Clone(s.cfg.Denominations)
	for val := range expected {
		if !slices.Contains(values, val) {
			values = append(values, val)
		}
	}
	slices.Sort(values)
	for _, val := range values {
		v.Lines = append(v.Lines, CollectionLine{ValueMinor: val, Label: i18n.FormatAmount(lang, val, cur), Expected: expected[val], Counted: counted[val]})
	}
	v.Expected = i18n.FormatAmount(lang, expMinor, cur)
	counts := c.Step == journal.CollectCounted || c.Step == journal.CollectRecorded
	if counts {
		v.Counted = i18n.FormatAmount(lang, rec.CountedMinor, cur)
		v.DifferenceMinor = rec.DifferenceMinor
		switch d := rec.DifferenceMinor; {
		case d < 0:
			v.Difference = i18n.T(lang, i18n.KeySvcColShortage, i18n.Amount(i18n.PAmount, -d, cur))
		case d > 0:
			v.Difference = i18n.T(lang, i18n.KeySvcColSurplus, i18n.Amount(i18n.PAmount, d, cur))
		default:
			v.Difference = i18n.T(lang, i18n.KeySvcColBalanced)
		}
	}
	switch c.Step {
	case journal.CollectStarted:
		v.Text, v.Next = i18n.T(lang, i18n.KeySvcColStarted), []string{"cassette_out", "abort"}
		if v.Waiting {
			v.Text, v.Next = i18n.T(lang, i18n.KeySvcColWaiting), []string{"abort"}
		}
	case journal.CollectCassetteOut:
		v.Text, v.Next, v.CanCount = i18n.T(lang, i18n.KeySvcColCassetteOut), []string{"count"}, true
	case journal.CollectCounted:
		v.Text, v.Next, v.CanCount = i18n.T(lang, i18n.KeySvcColCounted), []string{"count", "finish"}, true
	case journal.CollectRecorded:
		v.Text = i18n.T(lang, i18n.KeySvcColRecorded)
		if !c.CassetteIn {
			v.Next = []string{"cassette_in"}
		}
		switch {
		case c.SlipPrinted:
			v.Slip = i18n.T(lang, i18n.KeySvcColSlipPrinted)
		case c.SlipDetail != "":
			v.Slip = i18n.T(lang, i18n.KeySvcColSlipFailed, i18n.String(PReason, c.SlipDetail))
		default:
			v.Slip = i18n.T(lang, i18n.KeySvcColSlipWaiting)
		}
	}
	return v
}

// currency is the kiosk's currency as the counters tell it ("" when they cannot be read).
func (s *server) currency() string {
	if cs, err := s.cfg.Backend.Counters(); err == nil {
		return cs.Currency
	}
	return ""
}
