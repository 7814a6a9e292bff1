package sspsim

import (
	"github.com/kioskd/kioskd/devices/acceptor/ssp"
	"github.com/kioskd/kioskd/hw-sim/internal/notepath"
)

// InsertNote puts a note of channel into the bezel. The unit draws it in only when it is
// idle and enabled; a note of an inhibited or unknown channel is drawn in and then rejected.
// From the next poll the unit reports READ 0, then READ channel (escrow) or REJECTING.
func (s *Sim) InsertNote(channel byte) error {
	s.u.Lock()
	defer s.u.Unlock()
	switch {
	case s.u.CassetteOut():
		return ErrCassetteOut
	case s.jam != 0 || s.pathOpen || s.failCode != 0:
		return ErrFault
	case s.u.Path != nil || s.mode != modeIdle || s.pollAckDue != nil:
		return ErrBusy
	case s.u.CassetteFull():
		return ErrCassetteFull
	case !s.enabled:
		return ErrDisabled
	}
	s.u.Insert(channel)
	s.mode = modeReading
	s.log.Info("note inserted", "channel", channel)
	return nil
}

// Jam jams the note path until ClearJam: SAFE JAM (the note is out of the customer's reach)
// when safe, else UNSAFE JAM. The unit reports it on every poll.
func (s *Sim) Jam(safe bool) {
	s.u.Lock()
	defer s.u.Unlock()
	s.jam = ssp.EvUnsafeJam
	if safe {
		s.jam = ssp.EvSafeJam
	}
}

// ClearJam is the technician clearing the jam: a note past the point of no return is pushed
// into the cashbox and counted (never credited); any other note is taken out.
func (s *Sim) ClearJam() {
	s.u.Lock()
	defer s.u.Unlock()
	if s.jam == 0 {
		return
	}
	// While the unit starts, the note in the path is the one it is about to clear.
	if s.mode != modeReset && s.mode != modeClearing && s.u.ClearPath(true) {
		s.mode = modeIdle
	}
	s.jam = 0
}

// OpenNotePath opens or closes the note path (NOTE PATH OPEN on every poll, protocol 6+).
func (s *Sim) OpenNotePath(open bool) {
	s.u.Lock()
	defer s.u.Unlock()
	s.pathOpen = open
}

// Cheat reports FRAUD ATTEMPT with the channel of the note in the path (0 when none), and
// rejects that note (reject code 0x0E, strim attempt).
func (s *Sim) Cheat() {
	s.u.Lock()
	defer s.u.Unlock()
	var ch byte
	if p := s.u.Path; p != nil && !p.InStacker && s.mode != modeReset && s.mode != modeClearing {
		ch = p.Code
		if s.mode != modeRejecting && s.mode != modeRejected {
			s.rejectLocked(ssp.RejectStrimAttempt)
		}
	}
	s.queue = append(s.queue, ssp.Event{Code: ssp.EvFraudAttempt, Data: []byte{ch}})
}

// Fail makes the unit answer every command but SYNC and RESET with the generic response
// code (default 0xF6 SOFTWARE ERROR) until RESET or a power cycle. SSP has no failure event
// for validators: a failed unit shows itself by refusing commands.
func (s *Sim) Fail(code byte) {
	s.u.Lock()
	defer s.u.Unlock()
	if code == 0 {
		code = ssp.RespSoftwareError
	}
	s.failCode = code
}

// PowerCycle cuts the power and restores it. The unit forgets the link (the host must SYNC,
// set the protocol version and negotiate keys again), comes up disabled, reports SLAVE RESET
// on the next poll and, with a note in the path, NOTE CLEARED FROM FRONT (InAcceptor: the
// note is given back, never counted) or NOTE CLEARED INTO CASHBOX (InStacker: stacked and
// counted without a credit) on the poll after. Auto reports where the note physically is:
// before the poll that accepted it, the acceptor; from then until its credit, the stacker; a
// credited note is already in the cashbox and nothing is cleared. NoNote fails with ErrBusy
// while a note is in the path; InAcceptor and InStacker fail with ErrNoNote when none is.
func (s *Sim) PowerCycle(where Where) error {
	s.u.Lock()
	defer s.u.Unlock()
	now := s.whereLocked()
	if s.mode == modeReset || s.mode == modeClearing {
		now = s.clearing // still starting: the note, if any, has not been cleared yet
	}
	where, err := s.u.PowerCutPlace(where, now)
	if err != nil {
		return err
	}
	s.powerLocked(where)
	return nil
}

// PowerCycleWithNote cuts and restores the power as if a note of channel had been at where
// (InAcceptor or InStacker), for tests of a host's recovery. It fails with ErrBusy when a
// note is really in the path.
func (s *Sim) PowerCycleWithNote(where Where, channel byte) error {
	s.u.Lock()
	defer s.u.Unlock()
	busy := s.whereLocked() != NoNote || (s.mode == modeClearing && s.clearing != NoNote)
	if err := s.u.PowerCutWithNote(where, channel, busy); err != nil {
		return err
	}
	s.powerLocked(where)
	return nil
}

// SwapUnit replaces the unit with another one of serial number serial: a fresh unit (power
// cycle, counters at zero) on the same port, with the same dataset and fixed key. It fails
// with ErrBusy while a note is in the path.
func (s *Sim) SwapUnit(serial uint32) error {
	s.u.Lock()
	defer s.u.Unlock()
	if s.whereLocked() != NoNote {
		return ErrBusy
	}
	s.serial = serial
	s.counters = ssp.Counters{}
	s.powerLocked(NoNote)
	s.log.Warn("unit swapped", "serial", serial)
	return nil
}

// InjectFault queues a link fault; each queued fault applies to one reply, in order.
func (s *Sim) InjectFault(f Fault) { s.link.Inject(f) }

// Cassette returns every note that went into a cashbox, oldest first.
func (s *Sim) Cassette() []StackedNote {
	s.u.Lock()
	defer s.u.Unlock()
	log := s.u.Cassette()
	out := make([]StackedNote, len(log))
	for i, n := range log {
		out[i] = StackedNote{Channel: n.Code, ValueMinor: n.ValueMinor, Currency: n.Currency, At: n.At,
			Reported: s.extra[i].reported, Acked: n.Acked, Via: n.Via, Cassette: n.Cassette, Serial: s.extra[i].serial}
	}
	return out
}

// Counters returns the unit's note activity counters, as GET COUNTERS would.
func (s *Sim) Counters() ssp.Counters {
	s.u.Lock()
	defer s.u.Unlock()
	return s.counters
}

// Snapshot is the emulator's state for a control panel.
type Snapshot struct {
	Mode            string       `json:"mode"`
	Serial          uint32       `json:"serial"`
	Enabled         bool         `json:"enabled"`
	EnabledChannels []int        `json:"enabled_channels"`
	Protocol        int          `json:"protocol"`
	Encrypted       bool         `json:"encrypted"`
	Counter         uint32       `json:"counter,omitempty"`
	AckPending      bool         `json:"ack_pending,omitempty"`
	NoteInPath      int          `json:"note_in_path,omitempty"`
	NoteInStacker   bool         `json:"note_in_stacker,omitempty"`
	NotePathOpen    bool         `json:"note_path_open,omitempty"`
	LastReject      int          `json:"last_reject"`
	Counters        ssp.Counters `json:"counters"`
	notepath.Panel
}

// State returns a snapshot of the unit.
func (s *Sim) State() Snapshot {
	s.u.Lock()
	defer s.u.Unlock()
	snap := Snapshot{
		Mode: s.mode.String(), Serial: s.serial, Enabled: s.enabled, EnabledChannels: []int{},
		Protocol: int(s.protocol), Encrypted: s.cipher != nil, Counter: s.count,
		AckPending: s.pollAckDue != nil, NotePathOpen: s.pathOpen, LastReject: int(s.lastReject),
		Counters: s.counters, Panel: s.u.Panel(s.link, "", ""),
	}
	// SSP's own failure (refused commands) and jams (safe, unsafe).
	snap.Failure = int(s.failCode)
	for c := 1; c <= ssp.MaxChannel; c++ {
		if ssp.ChannelEnabled(s.inhibits, c) {
			snap.EnabledChannels = append(snap.EnabledChannels, c)
		}
	}
	if p := s.u.Path; p != nil {
		snap.NoteInPath, snap.NoteInStacker = int(p.Code), p.InStacker
	}
	switch s.jam {
	case ssp.EvSafeJam:
		snap.Jam = "safe"
	case ssp.EvUnsafeJam:
		snap.Jam = "unsafe"
	}
	return snap
}
