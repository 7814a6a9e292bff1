// Package notepath is what the bill acceptor emulators (id003sim, ccnetsim, sspsim) share
// below their protocols: the one note between the bezel and the cassette, the cassette and
// its log (the money ground truth the tests and the crash campaign check), and the serial
// link with its injected faults and its line speed.
//
// Each emulator keeps its own framing, status tables and transaction states; it drives a
// Unit through these steps:
//
//	Insert                 a note is drawn in ("in the acceptor": a power cut gives it back)
//	Path.InStacker = true  past the point of no return (a power cut stacks and counts it)
//	Log                    the note is in the cassette: one entry of the log, never two
//	Finish                 the note left the path into the cassette (STACKER FULL may follow)
//	Drop                   the note left the path back to the customer, never counted
//
// and the physical events every unit has: jams (ClearJam), the cassette pulled (also mid-stack)
// and replaced, a power cut with or without a note (PowerCutPlace, PowerCutWithNote).
//
// The Unit's lock is the emulator's lock: the emulator holds it (Lock, Unlock) while it
// answers the host and calls the Unit's methods; the control surfaces Controls and Switches,
// which an emulator embeds to offer the control API every unit shares, take it themselves.
// A Link has its own.
package notepath

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
)

// Where says where a note was when the power went.
type Where int

const (
	// Auto: wherever the note in the path physically is (nothing, the acceptor head, the
	// stacker).
	Auto Where = iota
	// NoNote: nothing in the path.
	NoNote
	// InAcceptor: a note before the point of no return; the unit gives it back to the
	// customer when it restarts and it is never counted.
	InAcceptor
	// InStacker: a note past the point of no return; the unit finishes stacking it when it
	// restarts and it is counted, without the protocol's normal credit report.
	InStacker
)

func (w Where) String() string {
	switch w {
	case Auto:
		return "auto"
	case NoNote:
		return "none"
	case InAcceptor:
		return "in_acceptor"
	case InStacker:
		return "in_stacker"
	}
	return fmt.Sprintf("Where(%d)", int(w))
}

// StackedNote is one note that went into a cassette: the emulator's ground truth.
type StackedNote struct {
	// Code is the protocol's code for the note (escrow code, bill type).
	Code       byte      `json:"code"`
	ValueMinor int64     `json:"value_minor"`
	Currency   string    `json:"currency,omitempty"`
	At         time.Time `json:"at"`
	// Acked is true when the host acknowledged the protocol's credit report for this note.
	Acked bool `json:"acked"`
	// Via says how it got there: the protocol's normal stacking ("vend_valid", "stacked",
	// "credit"), "power_up_recovery" (stacked when the unit restarted after a power cut or
	// a fault), "jam_cleared" (pushed in when a stacker jam was cleared), "cassette_pulled"
	// (it left inside a cassette pulled mid-stack, never reported).
	Via string `json:"via"`
	// Cassette numbers the cassettes: 1 for the first, one more after each replacement.
	Cassette int `json:"cassette"`
}

// Note is the note in the path.
type Note struct {
	Code byte
	// InStacker: past the point of no return.
	InStacker bool
	// Logged is the note's index in the cassette log once it is there, else -1.
	Logged int
}

// Errors is how an emulator names the failures of its control API, so that its callers keep
// matching its own error values.
type Errors struct {
	Busy, NoNote, CassetteState error
	// For Switches.CheckInsert.
	PoweredUp, CassetteOut, CassetteFull, Fault, Inhibited error
}

// Config configures a Unit.
type Config struct {
	// Name prefixes the errors the Unit makes up (the emulator's package name).
	Name string
	// Values gives the value of a note by code, for the log.
	Values acceptor.Denominations
	// Capacity is how many notes a cassette takes before it reports full; 0 is no limit.
	Capacity int
	// Now stamps the log (default time.Now).
	Now func() time.Time
	// Logger receives "note in cassette" and the like; nil discards.
	Logger *slog.Logger
	// Errors are returned by the control steps.
	Errors Errors
	// OnLog, when set, runs for each new log entry (an emulator's own counters).
	OnLog func(i int)
	// OnMidStack runs when the cassette is pulled mid-stack: the transaction is over.
	OnMidStack func()
	// OnReplaced runs when a cassette is put in, OnJamCleared when Switches.ClearJam cleared
	// a jam (a unit typically initialises then).
	OnReplaced, OnJamCleared func()
	// DefaultFailure is the failure code Switches.Fail reports for code 0.
	DefaultFailure byte
}

// Unit is the physical part of a bill acceptor: note path and cassette.
type Unit struct {
	mu  sync.Mutex
	cfg Config
	// Path is the note between the bezel and the cassette, nil when there is none.
	Path *Note
	// ForcedReject is the reason the next inserted note is rejected with (0: none).
	ForcedReject byte
	// The fault switches of a unit that reports them as statuses (Switches): Jam is 0, or
	// JamAcceptor or JamStacker; Failure is a failure code (0: none).
	Jam     int
	Paused  bool
	Cheated bool
	Failure byte
	// jamOnStack jams the stacker when the next note goes past the point of no return
	// (Switches.JamOnStack): a fault at the one moment a test cannot hit from outside.
	jamOnStack bool

	out, full bool
	number    int
	log       []StackedNote
}

// New returns a unit with an empty path and the first cassette in.
func New(cfg Config) *Unit {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Errors.Busy == nil {
		cfg.Errors.Busy = errors.New(cfg.Name + ": a note is already in the path")
	}
	if cfg.Errors.NoNote == nil {
		cfg.Errors.NoNote = errors.New(cfg.Name + ": no note in the path")
	}
	if cfg.Errors.CassetteState == nil {
		cfg.Errors.CassetteState = errors.New(cfg.Name + ": cassette is already in that state")
	}
	return &Unit{cfg: cfg, number: 1}
}

// EnterStacker moves the note in the path past the point of no return (the emulator's stack
// step); an armed JamOnStack jams the stacker right there.
func (u *Unit) EnterStacker() {
	u.Path.InStacker = true
	if u.jamOnStack {
		u.jamOnStack = false
		u.Jam = JamStacker
	}
}

// Lock takes the unit's (the emulator's) lock.
func (u *Unit) Lock() { u.mu.Lock() }

// Unlock releases it.
func (u *Unit) Unlock() { u.mu.Unlock() }

func run(f func()) {
	if f != nil {
		f()
	}
}

// Insert puts a note of code in the path, before the point of no return.
func (u *Unit) Insert(code byte) { u.Path = &Note{Code: code, Logged: -1} }

// Log puts the note in the path into the cassette log (once: a note already there keeps its
// entry) and returns its index; -1 when the path is empty.
func (u *Unit) Log(via string) int {
	if u.Path == nil {
		return -1
	}
	return u.LogNote(u.Path, via)
}

// LogNote is Log for a note the emulator holds elsewhere.
func (u *Unit) LogNote(n *Note, via string) int {
	if n.Logged >= 0 {
		return n.Logged
	}
	v := u.cfg.Values.Lookup(int(n.Code))
	u.log = append(u.log, StackedNote{Code: n.Code, ValueMinor: v.ValueMinor, Currency: v.Currency,
		At: u.cfg.Now(), Via: via, Cassette: u.number})
	n.Logged = len(u.log) - 1
	u.cfg.Logger.Info("note in cassette", "code", n.Code, "via", via, "cassette", u.number)
	if u.cfg.OnLog != nil {
		u.cfg.OnLog(n.Logged)
	}
	return n.Logged
}

// Ack marks log entry i acknowledged by the host (i < 0 does nothing).
func (u *Unit) Ack(i int) {
	if i >= 0 && i < len(u.log) {
		u.log[i].Acked = true
	}
}

// Finish empties the path after the note went into the cassette; the cassette reports full
// once it holds Capacity notes.
func (u *Unit) Finish() {
	u.Path = nil
	if u.cfg.Capacity > 0 && u.Count() >= u.cfg.Capacity {
		u.full = true
	}
}

// Drop empties the path: the note went back to the customer (or was never there).
func (u *Unit) Drop() { u.Path = nil }

// Where is where the note in the path physically is: nowhere, the acceptor, the stacker.
func (u *Unit) Where() Where {
	switch {
	case u.Path == nil:
		return NoNote
	case u.Path.InStacker:
		return InStacker
	}
	return InAcceptor
}

// ClearPath is the technician clearing a jam: the note in the path is taken out, or, when
// pushIn and it is past the point of no return, pushed into the cassette and counted. It
// reports whether a note was in the path.
func (u *Unit) ClearPath(pushIn bool) bool {
	if u.Path == nil {
		return false
	}
	if pushIn && u.Path.InStacker {
		u.Log("jam_cleared")
	}
	u.Path = nil
	return true
}

// CassetteOut reports whether the cassette is out.
func (u *Unit) CassetteOut() bool { return u.out }

// CassetteFull reports whether the cassette reports full.
func (u *Unit) CassetteFull() bool { return u.full }

// CassetteNumber is the number of the cassette in the unit (or last in it).
func (u *Unit) CassetteNumber() int { return u.number }

// Count is how many notes the current cassette holds.
func (u *Unit) Count() int {
	c := 0
	for _, n := range u.log {
		if n.Cassette == u.number {
			c++
		}
	}
	return c
}

// Cassette returns a copy of the log, oldest first.
func (u *Unit) Cassette() []StackedNote { return slices.Clone(u.log) }

// Entry returns log entry i.
func (u *Unit) Entry(i int) StackedNote { return u.log[i] }

// PowerCutPlace settles where the note in the path was at a power cut the control API asked
// for: now is where it physically is (what Auto means). NoNote fails with Busy while a note
// is there; InAcceptor and InStacker fail with NoNote when none is, and otherwise move the
// note there (a note already in the cassette log cannot be back in the acceptor).
func (u *Unit) PowerCutPlace(where, now Where) (Where, error) {
	switch where {
	case Auto:
		return now, nil
	case NoNote:
		if now != NoNote {
			return 0, u.cfg.Errors.Busy
		}
		return NoNote, nil
	case InAcceptor, InStacker:
		if now == NoNote || u.Path == nil {
			return 0, u.cfg.Errors.NoNote
		}
		if where == InAcceptor && u.Path.Logged >= 0 {
			return 0, fmt.Errorf("%s: the note is already in the cassette: %w", u.cfg.Name, u.cfg.Errors.Busy)
		}
		u.Path.InStacker = where == InStacker
		return where, nil
	}
	return 0, fmt.Errorf("%s: power cycle: bad place %v", u.cfg.Name, where)
}

// PowerCutWithNote puts a note of code at where (InAcceptor or InStacker) as if it had been
// there when the power went, for tests of a host's recovery; busy says a note really is in
// the path (then it fails with Busy).
func (u *Unit) PowerCutWithNote(where Where, code byte, busy bool) error {
	if where != InAcceptor && where != InStacker {
		return fmt.Errorf("%s: power cycle with a note: place must be in_acceptor or in_stacker, not %v", u.cfg.Name, where)
	}
	if busy {
		return u.cfg.Errors.Busy
	}
	u.Path = &Note{Code: code, InStacker: where == InStacker, Logged: -1}
	return nil
}
