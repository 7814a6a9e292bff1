package id003sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/devices/acceptor/id003"
	"github.com/kioskd/kioskd/hw-sim/internal/notepath"
	"github.com/kioskd/kioskd/hw-sim/linespeed"
)

// DefaultEscrowTimeout is how long a note waits in escrow (or after a HOLD) for STACK or
// RETURN before the emulated unit gives it back on its own. Real units use a timeout of
// about this size; JCM's exact figure is not in the public material (see doc.go).
const DefaultEscrowTimeout = 10 * time.Second

// DefaultVersion is the answer to the version request.
const DefaultVersion = "i(SIM)100-SS ID003-05V000-00 kioskd-sim"

// Errors of the control API.
var (
	ErrPoweredUp     = errors.New("id003sim: unit waits for RESET after power-up")
	ErrInhibited     = errors.New("id003sim: unit is inhibited; it does not draw the note in")
	ErrBusy          = errors.New("id003sim: a note is already in the path")
	ErrCassetteOut   = errors.New("id003sim: cassette is out")
	ErrCassetteFull  = errors.New("id003sim: cassette is full")
	ErrFault         = errors.New("id003sim: unit is in a fault state")
	ErrNoNote        = errors.New("id003sim: no note in the path")
	ErrCassetteState = errors.New("id003sim: cassette is already in that state")
)

// Config configures a Sim.
type Config struct {
	// Denominations are the escrow codes the emulated unit recognises, with their values. A
	// note of any other code is rejected with 0x76 (denomination assessing).
	Denominations acceptor.Denominations
	// EscrowTimeout is how long a note waits in escrow before the unit returns it on its own
	// (default DefaultEscrowTimeout).
	EscrowTimeout time.Duration
	// CassetteCapacity is how many notes a cassette takes before STACKER FULL; 0 is no limit.
	CassetteCapacity int
	// Version is the text answered to the version request (default DefaultVersion).
	Version string
	// Line, when on, paces Serve's port at a serial line's speed (linespeed.ID003 is the
	// unit's 9600 8E1); the zero Line leaves the port as fast as it is.
	Line linespeed.Line
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger receives the emulator's logs; nil discards them.
	Logger *slog.Logger
}

// Where says where a note was when the power went. ID-003 reports NoNote as POWER UP (0x40),
// InAcceptor as POWER UP WITH BILL IN ACCEPTOR (0x41: RESET returns the note, never counted)
// and InStacker as POWER UP WITH BILL IN STACKER (0x42: RESET stacks it and it is counted,
// without VEND VALID).
type Where = notepath.Where

// Places of a note at a power cut.
const (
	Auto       = notepath.Auto
	NoNote     = notepath.NoNote
	InAcceptor = notepath.InAcceptor
	InStacker  = notepath.InStacker
)

// StackedNote is one note that went into a cassette: the emulator's ground truth. Via is
// "vend_valid" for normal stacking (Acked when the host ACKed VEND VALID).
type StackedNote = notepath.StackedNote

// FaultKind is a link fault the emulator can inject into one reply.
type FaultKind = notepath.FaultKind

// Link faults.
const (
	FaultBadCRC  = notepath.FaultBadCRC
	FaultNoReply = notepath.FaultNoReply
	FaultGarbage = notepath.FaultGarbage
	FaultSplit   = notepath.FaultSplit
	FaultSlow    = notepath.FaultSlow
)

// Fault is one injected fault; each applies to one reply.
type Fault = notepath.Fault

// mode is the unit's transaction state, advanced one step per STATUS REQUEST.
type mode int

const (
	modePowerUp mode = iota
	modeInitialize
	modeIdle
	modeAccepting
	modeEscrow
	modeHolding
	modeStacking
	modeVendValid
	modeStacked
	modeRejecting
	modeReturning
)

// Sim emulates one ID-003 unit. Its control methods are safe to call from any goroutine.
type Sim struct {
	cfg Config
	log *slog.Logger

	link *notepath.Link
	// The control API every unit shares (ForceReject, PullCassette, ReplaceCassette,
	// SetCassetteFull, Cassette) and the fault switches (Jam, ClearJam, Pause, Cheat, Fail).
	notepath.Controls
	notepath.Switches

	u          *notepath.Unit // also the lock of everything below
	mode       mode
	powerWhere Where // what the power-up status reports
	reject     byte  // reason of the current REJECTING
	deadline   time.Time
	inhibited  bool
	denoms     [2]byte // SET DENOMINATIONS bitmap, bit set = disabled
	security   [2]byte
	commMode   byte
}

// New returns an emulated unit that has just been powered up with nothing in its path.
func New(cfg Config) *Sim {
	if cfg.EscrowTimeout <= 0 {
		cfg.EscrowTimeout = DefaultEscrowTimeout
	}
	if cfg.Version == "" {
		cfg.Version = DefaultVersion
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Sim{
		cfg:        cfg,
		log:        cfg.Logger.With("device", "id003sim"),
		link:       &notepath.Link{Name: "id003sim", Line: cfg.Line, Noise: []byte{0x00, 0x55, 0xFC, 0x02, 0xAA}},
		mode:       modePowerUp,
		powerWhere: NoNote,
		inhibited:  true,
	}
	// A cleared jam and a new cassette make the unit initialise.
	initialise := func() {
		if s.mode != modePowerUp {
			s.mode = modeInitialize
		}
	}
	s.u = notepath.New(notepath.Config{Name: "id003sim", Values: cfg.Denominations, Capacity: cfg.CassetteCapacity,
		Now: cfg.Now, Logger: s.log, DefaultFailure: 0xA2, // stack motor
		Errors: notepath.Errors{Busy: ErrBusy, NoNote: ErrNoNote, CassetteState: ErrCassetteState, PoweredUp: ErrPoweredUp,
			CassetteOut: ErrCassetteOut, CassetteFull: ErrCassetteFull, Fault: ErrFault, Inhibited: ErrInhibited},
		OnMidStack: func() { s.mode = modeIdle }, OnReplaced: initialise, OnJamCleared: initialise})
	s.Controls, s.Switches = s.u.Controls(), s.u.Switches()
	return s
}

// Serve answers the host frame by frame until ctx ends or the host hangs up (both return
// nil), or the port fails. On cancellation it releases its blocked Read with
// SetReadDeadline when the port has one, else by closing the port if it is an io.Closer.
// With Config.Line on, the port is paced at that line's speed.
func (s *Sim) Serve(ctx context.Context, port io.ReadWriter) error {
	var dec id003.Decoder
	return s.link.Serve(ctx, port, dec.Feed, func() ([]byte, bool) {
		f, err := dec.Next()
		switch {
		case errors.Is(err, id003.ErrIncomplete):
			return nil, false
		case errors.Is(err, id003.ErrBadCRC):
			return frame(id003.StCommError), true
		case err != nil:
			return nil, true // an impossible length is line noise: no answer
		}
		return s.Handle(f), true
	})
}

func frame(cmd byte, data ...byte) []byte {
	b, err := id003.Encode(cmd, data...)
	if err != nil {
		panic(err) // every reply the emulator builds fits in a frame
	}
	return b
}

// Handle answers one host frame as the unit would; nil means no answer (the host's ACK).
// Serve calls it; tests may call it directly.
func (s *Sim) Handle(f id003.Frame) []byte {
	s.u.Lock()
	defer s.u.Unlock()
	reply := s.handleLocked(f)
	s.log.Debug("exchange", "rx", f.String(), "tx", fmt.Sprintf("% X", reply))
	return reply
}

var settingLen = map[byte]int{
	id003.CmdSetDenoms: 2, id003.CmdSetSecurity: 2, id003.CmdSetCommMode: 1,
	id003.CmdSetInhibit: 1, id003.CmdSetDirection: 1, id003.CmdSetOptional: 2,
}

func (s *Sim) handleLocked(f id003.Frame) []byte {
	ack := frame(id003.CmdAck)
	invalid := frame(id003.StInvalidCommand)
	if n, ok := settingLen[f.Cmd]; ok {
		if len(f.Data) != n {
			return invalid
		}
		switch f.Cmd {
		case id003.CmdSetDenoms:
			s.denoms = [2]byte{f.Data[0], f.Data[1]}
		case id003.CmdSetSecurity:
			s.security = [2]byte{f.Data[0], f.Data[1]}
		case id003.CmdSetCommMode:
			s.commMode = f.Data[0]
		case id003.CmdSetInhibit:
			s.inhibited = f.Data[0] != 0
		}
		return frame(f.Cmd, f.Data...)
	}
	if len(f.Data) != 0 {
		return invalid
	}
	switch f.Cmd {
	case id003.CmdStatusRequest:
		s.tickLocked()
		st, arg := s.statusLocked()
		if st == id003.StVendValid {
			// Reporting VEND VALID means the note passed the point of no return: it is in
			// the cassette from now on, whatever the host does with it.
			s.u.Log("vend_valid")
		}
		s.advanceLocked()
		return frame(st, arg...)
	case id003.CmdVersion:
		return frame(id003.CmdVersion, []byte(s.cfg.Version)...)
	case id003.CmdCurrency:
		return frame(id003.CmdCurrency, s.currencyTable()...)
	case id003.CmdReset:
		s.resetLocked()
		return ack
	case id003.CmdAck:
		if s.mode == modeVendValid && !s.frozen() {
			s.u.Ack(s.u.Log("vend_valid"))
			s.mode = modeStacked
		}
		return nil // the host's ACK is never answered
	}
	inEscrow := (s.mode == modeEscrow || s.mode == modeHolding) && !s.frozen()
	switch f.Cmd {
	case id003.CmdStack1, id003.CmdStack2:
		if !inEscrow {
			return invalid
		}
		// From STACK on the note is committed to the stacker: a power cut now leaves it
		// "in the stacker" and RESET finishes stacking it.
		s.mode = modeStacking
		s.u.EnterStacker()
		return ack
	case id003.CmdReturn:
		if !inEscrow {
			return invalid
		}
		s.mode = modeReturning
		return ack
	case id003.CmdHold:
		if !inEscrow {
			return invalid
		}
		s.mode = modeHolding
		s.deadline = s.cfg.Now().Add(s.cfg.EscrowTimeout)
		return ack
	}
	return invalid
}

// frozen: a power-up report or a fault stops the transaction where it is.
func (s *Sim) frozen() bool {
	return s.mode == modePowerUp || s.u.Halted()
}

// tickLocked applies the unit's own escrow timeout.
func (s *Sim) tickLocked() {
	if (s.mode == modeEscrow || s.mode == modeHolding) && !s.frozen() && !s.cfg.Now().Before(s.deadline) {
		s.log.Info("escrow timeout: returning the note", "code", s.u.Path.Code)
		s.mode = modeReturning
	}
}

// statusLocked is what the unit reports now. Faults take precedence over the transaction.
func (s *Sim) statusLocked() (byte, []byte) {
	switch {
	case s.mode == modePowerUp:
		switch s.powerWhere {
		case InAcceptor:
			return id003.StPowerUpAcc, nil
		case InStacker:
			return id003.StPowerUpStk, nil
		}
		return id003.StPowerUp, nil
	case s.u.Failure != 0:
		return id003.StFailure, []byte{s.u.Failure}
	case s.u.Cheated:
		return id003.StCheated, nil
	case s.u.Jam == notepath.JamAcceptor:
		return id003.StAcceptorJam, nil
	case s.u.Jam == notepath.JamStacker:
		return id003.StStackerJam, nil
	case s.u.CassetteOut():
		return id003.StStackerOpen, nil
	case s.u.Paused:
		return id003.StPause, nil
	}
	switch s.mode {
	case modeInitialize:
		return id003.StInitialize, nil
	case modeAccepting:
		return id003.StAccepting, nil
	case modeEscrow:
		return id003.StEscrow, []byte{s.u.Path.Code}
	case modeHolding:
		return id003.StHolding, nil
	case modeStacking:
		return id003.StStacking, nil
	case modeVendValid:
		return id003.StVendValid, nil
	case modeStacked:
		return id003.StStacked, nil
	case modeRejecting:
		return id003.StRejecting, []byte{s.reject}
	case modeReturning:
		return id003.StReturning, nil
	}
	switch {
	case s.u.CassetteFull():
		return id003.StStackerFull, nil
	case s.inhibited:
		return id003.StDisabled, nil
	}
	return id003.StIdling, nil
}

// advanceLocked moves the transaction one step after a status report.
func (s *Sim) advanceLocked() {
	if s.frozen() {
		return
	}
	switch s.mode {
	case modeInitialize:
		s.mode = modeIdle
	case modeAccepting:
		code := s.u.Path.Code
		_, known := s.cfg.Denominations[int(code)]
		switch {
		case s.u.ForcedReject != 0:
			s.reject, s.u.ForcedReject = s.u.ForcedReject, 0
		case !known:
			s.reject = 0x76 // denomination assessing: the unit cannot tell what it is
		case !id003.CodeEnabled(s.denoms, code) || s.inhibited:
			s.reject = 0x79 // inhibit
		default:
			s.mode = modeEscrow
			s.deadline = s.cfg.Now().Add(s.cfg.EscrowTimeout)
			return
		}
		s.mode = modeRejecting
	case modeStacking:
		s.mode = modeVendValid
	case modeStacked:
		s.u.Finish()
		s.mode = modeIdle
	case modeRejecting, modeReturning:
		s.u.Drop()
		s.mode = modeIdle
	}
}

// resetLocked carries out RESET: a note still in the acceptor goes back to the customer, one
// past the point of no return goes into the cassette; failure and cheat reports clear;
// physical faults (jam, cassette out, pause) stay until they are cleared. The unit comes
// back inhibited, keeping its denomination bitmap.
func (s *Sim) resetLocked() {
	if p := s.u.Path; p != nil {
		if p.InStacker {
			s.u.Log("power_up_recovery")
		} else {
			s.log.Info("note returned to the customer on reset", "code", p.Code)
		}
		s.u.Drop()
	}
	s.u.ResetFaults()
	s.powerWhere = NoNote
	s.mode = modeInitialize
	s.inhibited = true
}

func (s *Sim) currencyTable() []byte {
	codes := make([]int, 0, len(s.cfg.Denominations))
	for c := range s.cfg.Denominations {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	var out []byte
	for _, c := range codes {
		n := s.cfg.Denominations[c]
		n.Code = c
		e, err := id003.EntryFor(n)
		if err != nil {
			s.log.Warn("denomination left out of the currency table", "err", err)
			continue
		}
		out = append(out, e.Code, e.Country, e.Value, e.Exponent)
	}
	return out
}

// InsertNote puts a note into the bezel. The unit draws it in only when it is idle and not
// inhibited; a note of a disabled or unknown denomination is drawn in and then rejected.
// From the next STATUS REQUEST the unit reports ACCEPTING.
func (s *Sim) InsertNote(code byte) error {
	s.u.Lock()
	defer s.u.Unlock()
	if err := s.u.CheckInsert(s.mode == modePowerUp, s.mode == modeIdle, s.inhibited); err != nil {
		return err
	}
	s.u.Insert(code)
	s.mode = modeAccepting
	s.log.Info("note inserted", "code", code)
	return nil
}

// PowerCycle cuts the power and restores it. The unit then reports POWER UP (0x40), or 0x41
// / 0x42 with a note in the acceptor / stacker, until RESET, which returns a note in the
// acceptor to the customer and stacks (and counts) a note in the stacker, without VEND
// VALID. Auto reports where the note in the path physically is: ACCEPTING, ESCROW, HOLDING,
// REJECTING and RETURNING are the acceptor; STACKING and an unacknowledged VEND VALID are the
// stacker (the note is already in the cassette log then and is not counted twice). NoNote
// fails with ErrBusy when a note is in the path; InAcceptor and InStacker fail with ErrNoNote
// when none is, and otherwise say where the note was, overriding Auto.
func (s *Sim) PowerCycle(where Where) error {
	s.u.Lock()
	defer s.u.Unlock()
	if s.mode == modeStacked && s.u.Path != nil {
		s.u.Drop() // acknowledged and in the cassette: nothing left in the path
	}
	where, err := s.u.PowerCutPlace(where, s.u.Where())
	if err != nil {
		return err
	}
	s.powerLocked(where)
	return nil
}

// PowerCycleWithNote cuts and restores the power as if a note of code had been at where
// (InAcceptor or InStacker) at that moment, for tests of a host's recovery. It fails with
// ErrBusy when a note is really in the path.
func (s *Sim) PowerCycleWithNote(where Where, code byte) error {
	s.u.Lock()
	defer s.u.Unlock()
	if err := s.u.PowerCutWithNote(where, code, s.u.Path != nil && s.mode != modeStacked); err != nil {
		return err
	}
	s.powerLocked(where)
	return nil
}

func (s *Sim) powerLocked(where Where) {
	s.mode = modePowerUp
	s.powerWhere = where
	s.inhibited = true
	s.denoms, s.security, s.commMode = [2]byte{}, [2]byte{}, 0
	s.u.PowerFaults()
	s.log.Info("power cycle", "where", where)
}

// InjectFault queues a link fault; each queued fault applies to one reply, in order.
func (s *Sim) InjectFault(f Fault) { s.link.Inject(f) }

// Snapshot is the emulator's state for a control panel.
type Snapshot struct {
	Status        string `json:"status"`
	StatusCode    byte   `json:"status_code"`
	StatusData    []byte `json:"status_data,omitempty"`
	Inhibited     bool   `json:"inhibited"`
	EnabledCodes  []int  `json:"enabled_codes"`
	NoteInPath    int    `json:"note_in_path,omitempty"`
	NoteInStacker bool   `json:"note_in_stacker,omitempty"`
	notepath.Panel
}

// State returns a snapshot: Status is what the unit would answer to the next STATUS REQUEST
// (before that request's own escrow-timeout check).
func (s *Sim) State() Snapshot {
	s.u.Lock()
	defer s.u.Unlock()
	st, arg := s.statusLocked()
	snap := Snapshot{
		Status: id003.StatusName(st), StatusCode: st, StatusData: arg,
		Inhibited: s.inhibited, EnabledCodes: []int{}, Panel: s.u.Panel(s.link, "acceptor", "stacker"),
	}
	for c := range s.cfg.Denominations {
		if c >= id003.FirstCode && c <= id003.LastCode && id003.CodeEnabled(s.denoms, byte(c)) {
			snap.EnabledCodes = append(snap.EnabledCodes, c)
		}
	}
	slices.Sort(snap.EnabledCodes)
	if p := s.u.Path; p != nil {
		snap.NoteInPath, snap.NoteInStacker = int(p.Code), p.InStacker
	}
	return snap
}
