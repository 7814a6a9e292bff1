package pulse

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/kioskd/kioskd/devices/acceptor"
)

// loop is Run's state: the decoder, the inhibit line and every call to the handler live in
// Run's goroutine.
type loop struct {
	d     *Driver
	cfg   Config
	log   *slog.Logger
	h     acceptor.Handler
	rec   acceptor.PulseRecorder // nil when the handler does not journal pulses
	dec   *Decoder
	edges <-chan edge
	timer *time.Timer

	backlog []Output // decoded, not yet acted on (kept across a cancellation)
	owed    []owed   // trains whose credit the handler has not taken yet

	runStart time.Time

	inhibited   bool
	inhibitedAt time.Time
	settleAt    time.Time     // when a deferred Disabled falls due; zero when none
	reported    acceptor.Kind // last state reported (Idle, Disabled, Accepting, Stacked, ...)

	trainWhileInhibited bool // the open train began while inhibited, after the grace
	trainTail           bool // the open train may be the tail of one begun before Run
}

// owed is a train that ended and must be credited.
type owed struct {
	train uint64
	count int
	note  acceptor.Note
}

func (d *Driver) newLoop(h acceptor.Handler) (*loop, error) {
	dec, err := NewDecoder(d.cfg.Timing)
	if err != nil {
		return nil, fmt.Errorf("pulse: run: %w", err)
	}
	l := &loop{d: d, cfg: d.cfg, log: d.log, h: h, dec: dec, timer: time.NewTimer(time.Hour)}
	l.timer.Stop()
	l.rec, _ = h.(acceptor.PulseRecorder)
	return l, nil
}

func (l *loop) isActive(lv gpio.Level) bool { return lv == l.cfg.ActiveLevel }

// start records the line as it is and introduces the unit.
func (l *loop) start(ctx context.Context) {
	l.runStart = time.Now()
	l.inhibited, l.inhibitedAt = true, l.runStart
	if l.isActive(l.cfg.Credit.Read()) {
		// A line active at start is either a stuck line or a pulse the previous run did not
		// see finish; the decoder sorts out which.
		l.backlog = l.dec.Edge(true, l.runStart, l.backlog)
	}
	inh := "no inhibit line (the unit cannot be stopped)"
	if l.cfg.Inhibit != nil {
		inh = fmt.Sprintf("inhibit %s (inhibits at %s)", l.cfg.Inhibit, l.cfg.InhibitLevel)
	}
	l.event(ctx, acceptor.Event{Kind: acceptor.Identified,
		Detail: fmt.Sprintf("pulse acceptor: credit %s (active %s), %s", l.cfg.Credit, l.cfg.ActiveLevel, inh)})
	l.settle(ctx)
}

// run serves edges, timers and commands until ctx ends.
func (l *loop) run(ctx context.Context) {
	for ctx.Err() == nil {
		if !l.work(ctx) {
			return
		}
		timerC := l.armTimer()
		select {
		case <-ctx.Done():
			return
		case e := <-l.edges:
			l.backlog = l.dec.Edge(l.isActive(e.level), e.at, l.backlog)
		case r := <-l.d.reqs:
			r.done <- l.request(ctx, r)
		case <-timerC:
			l.tick()
		}
	}
}

// drain keeps decoding after cancellation until nothing is in progress or ctx (the shutdown
// context) ends. Commands are refused: Run is on its way out.
func (l *loop) drain(ctx context.Context) {
	for ctx.Err() == nil {
		if !l.work(ctx) {
			break
		}
		// A jammed line carries no money: only a pulse or train in progress is waited for.
		if (!l.dec.Busy() || l.dec.Jammed()) && len(l.backlog) == 0 && len(l.owed) == 0 {
			return
		}
		timerC := l.armTimer()
		select {
		case <-ctx.Done():
		case e := <-l.edges:
			l.backlog = l.dec.Edge(l.isActive(e.level), e.at, l.backlog)
		case r := <-l.d.reqs:
			r.done <- acceptor.ErrNotRunning
		case <-timerC:
			l.tick()
		}
	}
	for _, o := range l.backlog {
		if o.Kind == OutTrainEnd {
			l.log.Error("Run ended before a finished train was credited; its pulses went to the pulse journal only",
				"train", o.Train, "pulses", o.Count)
			l.d.count(func(s *Stats) { s.Lost++ })
		}
	}
	l.backlog = nil
	if train, count, open := l.dec.Open(); open {
		l.log.Error("Run ended during a pulse train; it was not credited, its pulses went to the pulse journal only",
			"train", train, "pulses", count)
		l.d.count(func(s *Stats) { s.Lost++ })
	}
	for _, o := range l.owed {
		l.log.Error("Run ended before the handler took a credit; its pulses went to the pulse journal only",
			"train", o.train, "pulses", o.count, "note", o.note.String())
		l.d.count(func(s *Stats) { s.Lost++ })
	}
	l.owed = nil
}

// armTimer sets the timer to the next decoder deadline or deferred report.
func (l *loop) armTimer() <-chan time.Time {
	next, ok := l.dec.Deadline()
	if !l.settleAt.IsZero() && (!ok || l.settleAt.Before(next)) {
		next, ok = l.settleAt, true
	}
	if !ok {
		l.timer.Stop()
		return nil
	}
	l.timer.Reset(max(time.Until(next), 0))
	return l.timer.C
}

// tick lets the decoder see time pass. Edges the reader already stamped go first, so a
// pulse that began just before a deadline is not mistaken for a gap.
func (l *loop) tick() {
	for {
		select {
		case e := <-l.edges:
			l.backlog = l.dec.Edge(l.isActive(e.level), e.at, l.backlog)
			continue
		default:
		}
		break
	}
	l.backlog = l.dec.Advance(time.Now(), l.backlog)
}

// work acts on the decoded backlog, then settles credits owed and the reported state. It
// returns false when ctx ended with work left (kept for drain).
func (l *loop) work(ctx context.Context) bool {
	l.d.count(func(s *Stats) { s.DecoderStats = l.dec.Stats() })
	for i, o := range l.backlog {
		if ctx.Err() != nil {
			l.backlog = append(l.backlog[:0], l.backlog[i:]...)
			return false
		}
		l.act(ctx, o)
	}
	l.backlog = l.backlog[:0]
	if !l.payOwed(ctx) {
		return false
	}
	if !l.settleAt.IsZero() && !time.Now().Before(l.settleAt) {
		l.settleAt = time.Time{}
	}
	l.settle(ctx)
	return true
}

func (l *loop) act(ctx context.Context, o Output) {
	switch o.Kind {
	case OutPulse:
		if o.Count == 1 {
			l.beginTrain(o)
		}
		if l.rec != nil {
			if err := l.rec.Pulse(ctx, o.Train, o.Count); err != nil {
				l.d.count(func(s *Stats) { s.PulseErrors++ })
				l.log.Error("pulse journal failed; inhibiting the unit", "train", o.Train, "pulse", o.Count, "err", err)
				l.inhibitForFault()
				l.event(ctx, acceptor.Event{Kind: acceptor.Failure,
					Detail: fmt.Sprintf("journal pulse %d of train %d: %v; unit inhibited, pulses still counted", o.Count, o.Train, err)})
			}
		}
		if o.Count == 1 {
			if l.trainWhileInhibited {
				l.d.count(func(s *Stats) { s.WhileInhibited++ })
				detail := "pulses while inhibited"
				if l.cfg.Inhibit == nil {
					detail += " (no inhibit line wired)"
				}
				l.log.Warn(detail, "train", o.Train, "inhibited_since", l.inhibitedAt)
				l.event(ctx, acceptor.Event{Kind: acceptor.ProtocolError, Detail: detail + fmt.Sprintf(" (train %d)", o.Train)})
			}
			l.event(ctx, acceptor.Event{Kind: acceptor.Accepting, Detail: fmt.Sprintf("train %d", o.Train)})
		}
	case OutTrainEnd:
		l.endTrain(ctx, o)
	case OutJam:
		l.log.Warn("credit line stuck active", "since", o.Start, "max_width", l.cfg.Timing.MaxWidth)
		l.event(ctx, acceptor.Event{Kind: acceptor.AcceptorJam,
			Detail: fmt.Sprintf("credit line active for longer than %v (stuck line or over-long pulse)", l.cfg.Timing.MaxWidth)})
	case OutJamCleared:
		l.log.Info("credit line released", "active_for", o.End.Sub(o.Start))
		// The state report that follows (Idle or Disabled) says the jam is over.
		l.reported = 0
	case OutGlitch:
		l.log.Debug("glitch on the credit line", "width", o.End.Sub(o.Start))
	case OutMissed:
		if !o.Suspect {
			l.log.Debug("credit line reported at its current level: changes went unseen")
			return
		}
		l.event(ctx, acceptor.Event{Kind: acceptor.ProtocolError,
			Detail: "credit line changed unseen during a pulse train: a pulse may have been missed"})
	}
}

func (l *loop) beginTrain(o Output) {
	l.trainWhileInhibited = l.inhibited && o.Start.Sub(l.inhibitedAt) > l.cfg.InhibitGrace
	// A pulse in progress at start begins at runStart; the next pulse of a train the previous
	// process saw begin starts no later than MaxGap after the last one it saw.
	l.trainTail = o.Start.Sub(l.runStart) <= l.cfg.Timing.MaxGap
}

// endTrain maps the train to a note and owes its credit. A train whose note is not certain
// is credited with ValueMinor 0 and Code = its pulse count, after a ProtocolError saying why.
func (l *loop) endTrain(ctx context.Context, o Output) {
	note, known := l.d.notes[o.Count]
	var why []string
	if !known {
		l.d.count(func(s *Stats) { s.Unknown++ })
		why = append(why, fmt.Sprintf("train of %d pulses matches no denomination", o.Count))
	}
	if o.Interrupted {
		why = append(why, fmt.Sprintf("train of %d pulses interrupted by a stuck credit line", o.Count))
	}
	if o.Suspect {
		why = append(why, fmt.Sprintf("changes of the credit line went unseen during the train of %d pulses", o.Count))
	}
	if l.trainTail {
		why = append(why, fmt.Sprintf("train of %d pulses began as the driver started: it may be the tail of an earlier one", o.Count))
	}
	if len(why) > 0 {
		note = acceptor.Note{Code: o.Count}
		l.d.count(func(s *Stats) { s.Uncertain++ })
		l.log.Warn("uncertain train; crediting it with no value", "train", o.Train, "pulses", o.Count, "why", why)
		l.event(ctx, acceptor.Event{Kind: acceptor.ProtocolError, Code: o.Count, Detail: strings.Join(why, "; ")})
	}
	l.owed = append(l.owed, owed{train: o.Train, count: o.Count, note: note})
}

// payOwed hands owed credits to the handler, in order, retrying each until it is taken.
// It returns false when ctx ended first.
func (l *loop) payOwed(ctx context.Context) bool {
	for len(l.owed) > 0 {
		o := l.owed[0]
		if !l.credit(ctx, o) {
			return false
		}
		l.owed = l.owed[1:]
		l.log.Info("credited", "train", o.train, "pulses", o.count, "note", o.note.String())
		l.event(ctx, acceptor.Event{Kind: acceptor.Stacked, Note: o.note, Code: o.count,
			Detail: fmt.Sprintf("train %d: %d pulses", o.train, o.count)})
	}
	return true
}

// credit calls Handler.Credited until it returns nil. The pulses are in the pulse journal
// already and the note is in the cassette, so giving up is not an option while Run lives;
// meanwhile the unit is inhibited so no further note arrives, edges wait in the reader's
// buffer with their timestamps, and commands are still served (Enable is refused).
func (l *loop) credit(ctx context.Context, o owed) bool {
	for attempt := 0; ; attempt++ {
		err := l.h.Credited(ctx, o.note)
		if err == nil {
			return true
		}
		l.d.count(func(s *Stats) { s.CreditRetries++ })
		l.log.Error("handler did not take the credit; retrying", "train", o.train, "note", o.note.String(), "attempt", attempt+1, "err", err)
		if attempt == 0 {
			l.inhibitForFault()
			l.event(ctx, acceptor.Event{Kind: acceptor.Failure, Code: o.count,
				Detail: fmt.Sprintf("journal credit of train %d (%s): %v; unit inhibited, retrying every %v", o.train, o.note, err, l.cfg.RetryInterval)})
		}
		l.timer.Reset(l.cfg.RetryInterval)
	wait:
		for {
			select {
			case <-ctx.Done():
				l.timer.Stop()
				return false
			case r := <-l.d.reqs:
				if r.kind == reqEnable {
					r.done <- ErrCreditOwed
					continue
				}
				r.done <- l.request(ctx, r)
			case <-l.timer.C:
				break wait
			}
		}
	}
}

// request carries out a command from Enable, Inhibit or Reset.
func (l *loop) request(ctx context.Context, r request) error {
	switch r.kind {
	case reqEnable:
		if err := l.driveInhibit(false); err != nil {
			return err
		}
		l.inhibited, l.settleAt = false, time.Time{}
	case reqInhibit, reqReset:
		if err := l.driveInhibit(true); err != nil {
			return err
		}
		if !l.inhibited {
			l.inhibited, l.inhibitedAt = true, time.Now()
		}
	}
	l.settle(ctx)
	return nil
}

// inhibitForFault inhibits the unit after a journal failure, without reporting Disabled
// (which would read as the fault having cleared).
func (l *loop) inhibitForFault() {
	if err := l.driveInhibit(true); err != nil {
		l.log.Error("inhibit after a journal failure failed", "err", err)
	}
	if !l.inhibited {
		l.inhibited, l.inhibitedAt = true, time.Now()
	}
}

func (l *loop) driveInhibit(on bool) error {
	if l.cfg.Inhibit == nil {
		return nil
	}
	lv := l.cfg.InhibitLevel
	if !on {
		lv = !lv
	}
	if err := l.cfg.Inhibit.Out(lv); err != nil {
		return fmt.Errorf("drive inhibit line %s %s: %w", l.cfg.Inhibit, lv, err)
	}
	return nil
}

// settle reports Idle or Disabled once nothing is in progress. Disabled waits until the
// inhibit has held for InhibitGrace, the time a note drawn in just before could still take
// to produce its train: a caller that waits for Disabled knows no note is in transit.
func (l *loop) settle(ctx context.Context) {
	if l.dec.Busy() || len(l.owed) > 0 || len(l.backlog) > 0 {
		return
	}
	if !l.inhibited {
		l.settleAt = time.Time{}
		if l.reported != acceptor.Idle {
			l.event(ctx, acceptor.Event{Kind: acceptor.Idle})
		}
		return
	}
	if due := l.inhibitedAt.Add(l.cfg.InhibitGrace); time.Now().Before(due) {
		l.settleAt = due
		return
	}
	l.settleAt = time.Time{}
	if l.reported != acceptor.Disabled {
		l.event(ctx, acceptor.Event{Kind: acceptor.Disabled})
	}
}

func (l *loop) event(ctx context.Context, e acceptor.Event) {
	switch e.Kind {
	case acceptor.Idle, acceptor.Disabled, acceptor.Accepting, acceptor.Stacked, acceptor.AcceptorJam, acceptor.Failure:
		l.reported = e.Kind
	}
	l.h.Event(ctx, e)
}
