package notepath

import "slices"

// Jam places for Unit.Jam.
const (
	JamAcceptor = 1 // the acceptor's transport (ID-003 ACCEPTOR JAM, CCNET VALIDATOR JAMMED)
	JamStacker  = 2 // the stacker (ID-003 STACKER JAM, CCNET CASSETTE JAMMED)
)

// Controls is the control API every emulated unit shares; an emulator embeds it. Each method
// takes the unit's lock.
type Controls struct{ u *Unit }

// Controls returns the unit's shared control API.
func (u *Unit) Controls() Controls { return Controls{u} }

// ForceReject makes the unit reject the next inserted note with reason.
func (c Controls) ForceReject(reason byte) {
	c.u.Lock()
	defer c.u.Unlock()
	c.u.ForcedReject = reason
}

// PullCassette takes the cassette out. It fails while a note is in the path, except while
// one is being stacked: pulled mid-stack, the pusher had the note past the point of no
// return, so it leaves inside the pulled cassette, counted by the unit but never reported as
// credited; the host sees only the cassette go.
func (c Controls) PullCassette() error {
	u := c.u
	u.Lock()
	defer u.Unlock()
	if u.out {
		return u.cfg.Errors.CassetteState
	}
	if u.Path != nil {
		if !u.Path.InStacker || u.Path.Logged >= 0 {
			return u.cfg.Errors.Busy
		}
		u.Log("cassette_pulled")
		u.Path = nil
		run(u.cfg.OnMidStack)
	}
	u.out = true
	return nil
}

// ReplaceCassette puts an empty cassette in, the next cassette number.
func (c Controls) ReplaceCassette() error {
	u := c.u
	u.Lock()
	defer u.Unlock()
	if !u.out {
		return u.cfg.Errors.CassetteState
	}
	u.out, u.full = false, false
	u.number++
	run(u.cfg.OnReplaced)
	return nil
}

// SetCassetteFull forces or clears the full report (it also comes on its own at Capacity).
func (c Controls) SetCassetteFull(full bool) {
	c.u.Lock()
	defer c.u.Unlock()
	c.u.full = full
}

// Switches are the fault switches of a unit that reports them as statuses until they are
// cleared (ID-003, CCNET); an emulator embeds it beside Controls.
type Switches struct{ u *Unit }

// Switches returns the unit's fault switches.
func (u *Unit) Switches() Switches { return Switches{u} }

// Jam jams the acceptor's transport, or the stacker when stacker is true, until ClearJam.
func (s Switches) Jam(stacker bool) {
	s.u.Lock()
	defer s.u.Unlock()
	s.u.Jam = JamAcceptor
	if stacker {
		s.u.Jam = JamStacker
	}
}

// JamOnStack arms a stacker jam for the next note the unit stacks: it jams past the point of
// no return, before its credit is reported (the kiosk makes it an uncertain item; ClearJam
// pushes it into the cassette).
func (s Switches) JamOnStack() {
	s.u.Lock()
	defer s.u.Unlock()
	s.u.jamOnStack = true
}

// ClearJam is the technician clearing the jam: a note stuck in the transport is taken out
// (never counted); one stuck in the stacker past the point of no return is pushed into the
// cassette and counted. The unit then initialises (Config.OnJamCleared).
func (s Switches) ClearJam() {
	u := s.u
	u.Lock()
	defer u.Unlock()
	if u.Jam == 0 {
		return
	}
	u.ClearPath(u.Jam == JamStacker)
	u.Jam = 0
	run(u.cfg.OnJamCleared)
}

// Pause reports PAUSE (a second note pushed in during a transaction) while on.
func (s Switches) Pause(on bool) {
	s.u.Lock()
	defer s.u.Unlock()
	s.u.Paused = on
}

// Cheat reports CHEATED until the host resets the unit.
func (s Switches) Cheat() {
	s.u.Lock()
	defer s.u.Unlock()
	s.u.Cheated = true
}

// Fail reports FAILURE with code (0: Config.DefaultFailure) until the host resets the unit.
func (s Switches) Fail(code byte) {
	s.u.Lock()
	defer s.u.Unlock()
	if code == 0 {
		code = s.u.cfg.DefaultFailure
	}
	s.u.Failure = code
}

// Halted reports whether a fault or the cassette being out stops the transaction where it is.
func (u *Unit) Halted() bool {
	return u.Failure != 0 || u.Cheated || u.Jam != 0 || u.out || u.Paused
}

// ResetFaults clears what the host's RESET clears: failure and cheat reports. Physical faults
// (jam, cassette out, pause) stay until they are cleared.
func (u *Unit) ResetFaults() { u.Failure, u.Cheated = 0, false }

// PowerFaults clears what a power cut clears: failure, cheat and pause.
func (u *Unit) PowerFaults() { u.Failure, u.Cheated, u.Paused = 0, false, false }

// CheckInsert says whether the unit draws a note in now: not while it waits for its reset
// after power-up, with the cassette out, in a fault, with a note in the path or a transaction
// going on (idle false), with the cassette full, or inhibited.
func (u *Unit) CheckInsert(poweredUp, idle, inhibited bool) error {
	e := u.cfg.Errors
	switch {
	case poweredUp:
		return e.PoweredUp
	case u.out:
		return e.CassetteOut
	case u.Failure != 0 || u.Cheated || u.Jam != 0 || u.Paused:
		return e.Fault
	case u.Path != nil || !idle:
		return e.Busy
	case u.full:
		return e.CassetteFull
	case inhibited:
		return e.Inhibited
	}
	return nil
}

// JamName is the jam for a snapshot, in the protocol's words for the two places.
func (u *Unit) JamName(acceptor, stacker string) string {
	switch u.Jam {
	case JamAcceptor:
		return acceptor
	case JamStacker:
		return stacker
	}
	return ""
}

// Cassette returns every note that went into a cassette, oldest first.
func (c Controls) Cassette() []StackedNote {
	c.u.Lock()
	defer c.u.Unlock()
	return slices.Clone(c.u.log)
}

// Panel is the part of an emulator's snapshot every unit shares; an emulator's Snapshot
// embeds it (JSON flattens it).
type Panel struct {
	CassetteIn     bool   `json:"cassette_in"`
	CassetteFull   bool   `json:"cassette_full"`
	CassetteNumber int    `json:"cassette_number"`
	CassetteCount  int    `json:"cassette_count"`
	Jam            string `json:"jam,omitempty"`
	Failure        int    `json:"failure,omitempty"`
	Cheated        bool   `json:"cheated,omitempty"`
	Paused         bool   `json:"paused,omitempty"`
	ForcedReject   int    `json:"forced_reject,omitempty"`
	PendingFaults  int    `json:"pending_faults,omitempty"`
}

// Panel returns the shared part of a snapshot; acceptorJam and stackerJam name the jams in
// the protocol's words.
func (u *Unit) Panel(l *Link, acceptorJam, stackerJam string) Panel {
	return Panel{CassetteIn: !u.out, CassetteFull: u.full, CassetteNumber: u.number, CassetteCount: u.Count(),
		Jam: u.JamName(acceptorJam, stackerJam), Failure: int(u.Failure), Cheated: u.Cheated, Paused: u.Paused,
		ForcedReject: int(u.ForcedReject), PendingFaults: l.Pending()}
}
