package pulse

import (
	"errors"
	"fmt"
	"time"
)

// Defaults for Timing fields left zero. They fit the units named in doc.go (pulses of
// 50-120 ms, gaps of 100-200 ms); configure each unit to its own figures.
const (
	DefaultDebounce = 5 * time.Millisecond
	DefaultMinWidth = 20 * time.Millisecond
	DefaultMaxWidth = 150 * time.Millisecond
	DefaultMaxGap   = 300 * time.Millisecond
)

// ErrBadTiming is returned for a Timing whose limits contradict each other.
var ErrBadTiming = errors.New("pulse: inconsistent timing")

// Timing says what a valid pulse train looks like on the credit line.
type Timing struct {
	// Debounce is how long a level must hold before the decoder believes it (default
	// DefaultDebounce; negative disables it). A change that reverts sooner is noise: an active
	// blip is counted as a glitch, an idle blip inside a pulse (a dropout) is ignored.
	Debounce time.Duration
	// MinWidth is the shortest valid pulse (default DefaultMinWidth); shorter active periods
	// are glitches. A pulse exactly MinWidth wide is valid.
	MinWidth time.Duration
	// MaxWidth is the longest valid pulse (default DefaultMaxWidth). A line active for longer
	// is stuck (or the unit is in another output mode): the decoder reports a jam as soon as
	// the line has been active for longer than MaxWidth. A pulse exactly MaxWidth wide is valid.
	MaxWidth time.Duration
	// MaxGap is the longest idle time between two pulses of one train (default
	// DefaultMaxGap); once the line has been idle for longer than MaxGap after a pulse the
	// train is over. A gap of exactly MaxGap keeps the train open.
	MaxGap time.Duration
}

func (t Timing) withDefaults() Timing {
	if t.Debounce == 0 {
		t.Debounce = DefaultDebounce
	}
	if t.MinWidth == 0 {
		t.MinWidth = DefaultMinWidth
	}
	if t.MaxWidth == 0 {
		t.MaxWidth = DefaultMaxWidth
	}
	if t.MaxGap == 0 {
		t.MaxGap = DefaultMaxGap
	}
	return t
}

// debounce is the effective debounce time (a negative Debounce disables it).
func (t Timing) debounce() time.Duration { return max(t.Debounce, 0) }

func (t Timing) check() error {
	switch {
	case t.MinWidth < 0 || t.MaxWidth < 0 || t.MaxGap < 0:
		return fmt.Errorf("%w: negative duration in %+v", ErrBadTiming, t)
	case t.MinWidth <= t.debounce():
		return fmt.Errorf("%w: MinWidth %v must exceed Debounce %v", ErrBadTiming, t.MinWidth, t.Debounce)
	case t.MaxWidth < t.MinWidth:
		return fmt.Errorf("%w: MaxWidth %v is below MinWidth %v", ErrBadTiming, t.MaxWidth, t.MinWidth)
	case t.MaxGap <= t.debounce():
		return fmt.Errorf("%w: MaxGap %v must exceed Debounce %v", ErrBadTiming, t.MaxGap, t.Debounce)
	}
	return nil
}

// OutputKind classifies what the decoder found.
type OutputKind int

const (
	_ OutputKind = iota
	// OutPulse is a valid pulse: Train and Count say which, Start and End when.
	OutPulse
	// OutTrainEnd closes a train of Count pulses: the line stayed idle for longer than MaxGap
	// after the last pulse, or a stuck line interrupted it (Interrupted).
	OutTrainEnd
	// OutGlitch is an active period shorter than MinWidth (or than Debounce): noise.
	OutGlitch
	// OutJam: the line has been active for longer than MaxWidth since Start.
	OutJam
	// OutJamCleared: the line went idle at End after a jam that began at Start.
	OutJamCleared
	// OutMissed: the line was reported at the level it already had, so at least two changes
	// went unseen (a pulse or a glitch too short for the reader). Train is the open train,
	// if any; Suspect is set when a pulse or a train was in progress, whose count the missed
	// changes may have cut short.
	OutMissed
)

var outputNames = [...]string{OutPulse: "pulse", OutTrainEnd: "train_end", OutGlitch: "glitch",
	OutJam: "jam", OutJamCleared: "jam_cleared", OutMissed: "missed"}

func (k OutputKind) String() string {
	if k > 0 && int(k) < len(outputNames) {
		return outputNames[k]
	}
	return fmt.Sprintf("OutputKind(%d)", int(k))
}

// Output is one fact the decoder established.
type Output struct {
	Kind OutputKind
	// Train numbers the train (1 for the first this decoder saw); zero when no train is
	// concerned.
	Train uint64
	// Count is the pulses in the train so far (OutPulse) or in all (OutTrainEnd).
	Count int
	// Start and End bound the active period (OutPulse, OutGlitch, OutJamCleared; OutJam has
	// only Start) or the train (OutTrainEnd: first pulse start, last pulse end).
	Start, End time.Time
	// Interrupted marks a train ended by a stuck line rather than by a gap.
	Interrupted bool
	// Suspect marks a train during which the reader missed changes of the line
	// (OutMissed): its count may be short. On OutMissed: a pulse or train was in progress.
	Suspect bool
}

// DecoderStats counts what a decoder saw.
type DecoderStats struct {
	Pulses     uint64 // valid pulses
	Trains     uint64 // trains ended (including interrupted ones)
	Glitches   uint64 // active periods too short to be pulses
	Dropouts   uint64 // idle blips inside an active period, shorter than Debounce
	LongPulses uint64 // active periods longer than MaxWidth (each reported as a jam)
	Missed     uint64 // reports of a level the line already had
}

// Decoder turns timestamped level changes of the credit line into pulses and trains. It
// is a pure state machine: it never reads a clock, so the same edges always give the same
// outputs. Feed it every change with Edge and let time pass with Advance; Deadline says
// when Advance must next be called for the outputs to come on time. A Decoder is not safe
// for concurrent use.
type Decoder struct {
	t Timing

	last    time.Time // latest time seen; earlier timestamps are taken as this one
	active  bool      // the believed (debounced) level
	since   time.Time // when the believed level began
	pending bool      // a change to !active seen at pendAt, not yet believed
	pendAt  time.Time
	jammed  bool

	train   uint64 // number of the open or last train
	open    bool
	count   int
	first   time.Time // start of the open train's first pulse
	lastEnd time.Time // end of the open train's last pulse
	suspect bool      // changes went unseen during the open train
	// periodMissed: changes went unseen during the current active period (or the change
	// pending towards it); if that period turns out to be a pulse, its train is suspect.
	periodMissed bool

	st DecoderStats
}

// NewDecoder returns a decoder with the line idle. Zero Timing fields take the defaults.
func NewDecoder(t Timing) (*Decoder, error) {
	t = t.withDefaults()
	if err := t.check(); err != nil {
		return nil, err
	}
	return &Decoder{t: t}, nil
}

// Timing returns the timing in use, defaults applied (a disabled debounce stays negative,
// so the result can be given to NewDecoder again).
func (d *Decoder) Timing() Timing { return d.t }

// Stats returns the counters.
func (d *Decoder) Stats() DecoderStats { return d.st }

// Busy reports whether a pulse or train is in progress: the line is (or may be) active, or
// a train has not ended yet.
func (d *Decoder) Busy() bool { return d.pending || d.active || d.open }

// Jammed reports whether the line is active for longer than MaxWidth right now.
func (d *Decoder) Jammed() bool { return d.jammed }

// Open returns the number and pulse count of the train in progress, if any.
func (d *Decoder) Open() (train uint64, count int, ok bool) { return d.train, d.count, d.open }

// Edge records that the line was seen at the given level (active or idle) at time at, and
// appends to out what that establishes. A timestamp earlier than one already seen is taken
// as the latest one.
func (d *Decoder) Edge(active bool, at time.Time, out []Output) []Output {
	at = d.clamp(at)
	out = d.advance(at, out)
	if active == (d.active != d.pending) {
		d.st.Missed++
		o := Output{Kind: OutMissed, Start: at, End: at, Suspect: d.Busy()}
		if d.open {
			d.suspect = true
			o.Train = d.train
		}
		if d.active || d.pending {
			d.periodMissed = true
		}
		return append(out, o)
	}
	if d.pending {
		// The line went back before the change was believed: noise.
		d.pending = false
		if d.active {
			d.st.Dropouts++
			return out
		}
		d.periodMissed = false
		d.st.Glitches++
		return append(out, Output{Kind: OutGlitch, Start: d.pendAt, End: at})
	}
	d.pending, d.pendAt = true, at
	return d.advance(at, out)
}

// Advance lets time pass until now and appends what that establishes: a change believed
// after Debounce, a train ended by its gap, a jam.
func (d *Decoder) Advance(now time.Time, out []Output) []Output {
	return d.advance(d.clamp(now), out)
}

// Deadline returns the earliest time at which Advance would establish something, if there
// is one.
func (d *Decoder) Deadline() (time.Time, bool) {
	var dl time.Time
	ok := false
	consider := func(t time.Time) {
		if !ok || t.Before(dl) {
			dl, ok = t, true
		}
	}
	if d.pending {
		consider(d.pendAt.Add(d.t.debounce()))
	}
	// "Longer than" limits fire one nanosecond after the limit itself.
	if end, ok := d.trainEnd(); ok {
		consider(end.Add(time.Nanosecond))
	}
	if lim, ok := d.jamAt(); ok {
		consider(lim.Add(time.Nanosecond))
	}
	return dl, ok
}

func (d *Decoder) clamp(t time.Time) time.Time {
	if t.Before(d.last) {
		return d.last
	}
	d.last = t
	return t
}

// trainEnd is the last instant the open train may still continue. A change to active
// pending at or before it holds the train open until that change is believed or dismissed.
func (d *Decoder) trainEnd() (time.Time, bool) {
	if !d.open || d.active {
		return time.Time{}, false
	}
	end := d.lastEnd.Add(d.t.MaxGap)
	if d.pending && !d.pendAt.After(end) {
		return time.Time{}, false
	}
	return end, true
}

// jamAt is the last instant the line may stay active before it counts as stuck.
func (d *Decoder) jamAt() (time.Time, bool) {
	if !d.active || d.jammed {
		return time.Time{}, false
	}
	lim := d.since.Add(d.t.MaxWidth)
	if d.pending && !d.pendAt.After(lim) {
		return time.Time{}, false
	}
	return lim, true
}

// advance applies, in time order, every timed transition due by now. A train end or a jam
// due before a pending change is believed always comes first: its limit lies before the
// pending change (else it would be blocked by it), hence before its confirmation.
func (d *Decoder) advance(now time.Time, out []Output) []Output {
	for {
		if end, ok := d.trainEnd(); ok && now.After(end) {
			out = d.endTrain(out, false)
			continue
		}
		if lim, ok := d.jamAt(); ok && now.After(lim) {
			d.jammed = true
			out = append(out, Output{Kind: OutJam, Start: d.since})
			if d.open {
				out = d.endTrain(out, true)
			}
			continue
		}
		if d.pending && !now.Before(d.pendAt.Add(d.t.debounce())) {
			out = d.believe(out)
			continue
		}
		return out
	}
}

func (d *Decoder) endTrain(out []Output, interrupted bool) []Output {
	d.open = false
	d.st.Trains++
	return append(out, Output{Kind: OutTrainEnd, Train: d.train, Count: d.count, Start: d.first,
		End: d.lastEnd, Interrupted: interrupted, Suspect: d.suspect})
}

// believe makes the pending change the line's level.
func (d *Decoder) believe(out []Output) []Output {
	at := d.pendAt
	d.pending = false
	if !d.active {
		d.active, d.since, d.jammed = true, at, false
		return out
	}
	start := d.since
	d.active, d.since = false, at
	width := at.Sub(start)
	missed := d.periodMissed
	d.periodMissed = false
	switch {
	case d.jammed || width > d.t.MaxWidth:
		// width > MaxWidth without a jam cannot happen (advance reports the jam first); kept
		// so that no path credits an over-long pulse.
		if !d.jammed {
			out = append(out, Output{Kind: OutJam, Start: start})
			if d.open {
				out = d.endTrain(out, true)
			}
		}
		d.jammed = false
		d.st.LongPulses++
		return append(out, Output{Kind: OutJamCleared, Start: start, End: at})
	case width < d.t.MinWidth:
		d.st.Glitches++
		return append(out, Output{Kind: OutGlitch, Start: start, End: at})
	}
	if !d.open {
		d.open, d.count, d.first, d.suspect = true, 0, start, false
		d.train++
	}
	d.count++
	d.lastEnd = at
	if missed {
		d.suspect = true
	}
	d.st.Pulses++
	return append(out, Output{Kind: OutPulse, Train: d.train, Count: d.count, Start: start, End: at})
}

// Edge is one observation of the credit line for Decode.
type Edge struct {
	Active bool
	At     time.Time
}

// Train is one pulse train found by Decode.
type Train struct {
	N           uint64
	Pulses      int
	Start, End  time.Time
	Interrupted bool
	Suspect     bool
}

// Decode runs edges through a new Decoder, then lets enough time pass for every train to
// end, and returns the trains and the counters. It is the decoder as a pure function, for
// tests and offline analysis of recorded line traces.
func Decode(t Timing, edges []Edge) ([]Train, DecoderStats, error) {
	d, err := NewDecoder(t)
	if err != nil {
		return nil, DecoderStats{}, err
	}
	var trains []Train
	var out []Output
	collect := func() {
		for _, o := range out {
			if o.Kind == OutTrainEnd {
				trains = append(trains, Train{N: o.Train, Pulses: o.Count, Start: o.Start, End: o.End,
					Interrupted: o.Interrupted, Suspect: o.Suspect})
			}
		}
		out = out[:0]
	}
	for _, e := range edges {
		out = d.Edge(e.Active, e.At, out)
		collect()
	}
	// A line left active ends in a jam; the train before it ends either way.
	for {
		dl, ok := d.Deadline()
		if !ok {
			break
		}
		out = d.Advance(dl, out)
		collect()
	}
	return trains, d.Stats(), nil
}
