package ccnetsim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/devices/acceptor/ccnet"
	"github.com/kioskd/kioskd/hw-sim/internal/notepath"
	"github.com/kioskd/kioskd/hw-sim/linespeed"
)

// DefaultEscrowTimeout is how long a note waits in escrow (or after a HOLD) for STACK or
// RETURN before the emulated unit gives it back on its own: the 10 s of the CCNET
// description.
const DefaultEscrowTimeout = ccnet.HoldTime

// Identification defaults.
const (
	DefaultPartNumber   = "SIM-CCNET-KSK"
	DefaultSerialNumber = "SIM000000001"
)

// Errors of the control API.
var (
	ErrPoweredUp     = errors.New("ccnetsim: unit waits for RESET after power-up")
	ErrInhibited     = errors.New("ccnetsim: unit is disabled; it does not draw the note in")
	ErrBusy          = errors.New("ccnetsim: a note is already in the path")
	ErrCassetteOut   = errors.New("ccnetsim: cassette is out")
	ErrCassetteFull  = errors.New("ccnetsim: cassette is full")
	ErrFault         = errors.New("ccnetsim: unit is in a fault state")
	ErrNoNote        = errors.New("ccnetsim: no note in the path")
	ErrCassetteState = errors.New("ccnetsim: cassette is already in that state")
)

// Reject reasons the emulator picks on its own.
const (
	rejectIdentification byte = 0x65 // a note the unit does not know
	rejectInhibit        byte = 0x68 // a bill type that is not enabled
)

// Config configures a Sim.
type Config struct {
	// Address is the unit's CCNET address (default 0x03, bill validator); frames for other
	// addresses are ignored.
	Address byte
	// Denominations are the bill types the emulated unit recognises, with their values. A
	// note of any other type is rejected with 0x65 (identification).
	Denominations acceptor.Denominations
	// BillTable, when set, is answered to GET BILL TABLE instead of the table built from
	// Denominations (to emulate a unit whose table differs from the kiosk's config); the
	// unit then recognises the types whose entry is used.
	BillTable []ccnet.BillEntry
	// PartNumber, SerialNumber and AssetNumber are answered to IDENTIFICATION.
	PartNumber   string
	SerialNumber string
	AssetNumber  [7]byte
	// EscrowTimeout is how long a note waits in escrow before the unit returns it on its own
	// (default DefaultEscrowTimeout).
	EscrowTimeout time.Duration
	// CassetteCapacity is how many notes a cassette takes before CASSETTE FULL; 0 is no limit.
	CassetteCapacity int
	// OneShotEvents makes STACKED and RETURNED last one POLL whether or not the host
	// acknowledges them. By default the unit repeats them until the host's ACK.
	OneShotEvents bool
	// NoCreditRecovery makes RESET after POWER UP WITH BILL IN STACKER stack the note without
	// reporting STACKED. By default the unit reports STACKED for it once INITIALIZE is over,
	// as the CCNET description says ("credit recovery").
	NoCreditRecovery bool
	// Line, when on, paces Serve's port at a serial line's speed (linespeed.CCNET is the
	// unit's 9600 8N1); the zero Line leaves the port as fast as it is.
	Line linespeed.Line
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger receives the emulator's logs; nil discards them.
	Logger *slog.Logger
}

// Where says where a note was when the power went. CCNET reports NoNote as POWER UP (0x10),
// InAcceptor as POWER UP WITH BILL IN VALIDATOR (0x11: RESET returns the note, never
// counted) and InStacker as POWER UP WITH BILL IN STACKER (0x12: RESET stacks it and it is
// counted, then reported STACKED unless NoCreditRecovery).
type Where = notepath.Where

// Places of a note at a power cut.
const (
	Auto       = notepath.Auto
	NoNote     = notepath.NoNote
	InAcceptor = notepath.InAcceptor
	InStacker  = notepath.InStacker
)

// StackedNote is one note that went into a cassette: the emulator's ground truth. Code is
// the bill type; Via is "stacked" for normal stacking (Acked when the host ACKed a STACKED
// report for it).
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

// mode is the unit's transaction state, advanced one step per POLL (STACKED and RETURNED:
// per acknowledged POLL).
type mode int

const (
	modePowerUp mode = iota
	modeInitialize
	modeIdle
	modeAccepting
	modeEscrow
	modeHolding
	modeStacking
	modeStacked
	modeRejecting
	modeReturning
	modeReturned
)

// Sim emulates one CCNET bill validator. Its control methods are safe to call from any
// goroutine.
type Sim struct {
	cfg    Config
	log    *slog.Logger
	known  map[byte]bool // bill types the unit recognises
	table  []byte        // GET BILL TABLE payload
	ident  []byte        // IDENTIFICATION payload
	values acceptor.Denominations

	link *notepath.Link
	// The control API every unit shares (ForceReject, PullCassette, ReplaceCassette,
	// SetCassetteFull, Cassette) and the fault switches (Jam, ClearJam, Pause, Cheat, Fail).
	notepath.Controls
	notepath.Switches

	u           *notepath.Unit // also the lock of everything below
	mode        mode
	powerWhere  Where // what the power-up state reports
	reject      byte  // reason of the current REJECTING
	deadline    time.Time
	enabled     [3]byte
	escrow      [3]byte
	security    [3]byte
	recovery    bool   // report STACKED for the note stacked by RESET once INITIALIZE is over
	busy        byte   // BUSY time for the next POLL, in 100 ms
	lastReply   []byte // re-sent on the host's NAK
	awaitingAck bool   // the last reply wants the host's ACK
	ackTarget   int    // cassette log entry the awaited ACK confirms, else -1
	eventReply  bool   // the last reply reported STACKED or RETURNED and waits for its ACK to move on
}

// New returns an emulated unit that has just been powered up with nothing in its path.
func New(cfg Config) *Sim {
	if cfg.Address == 0 {
		cfg.Address = ccnet.AddrBillValidator
	}
	if cfg.EscrowTimeout <= 0 {
		cfg.EscrowTimeout = DefaultEscrowTimeout
	}
	if cfg.PartNumber == "" {
		cfg.PartNumber = DefaultPartNumber
	}
	if cfg.SerialNumber == "" {
		cfg.SerialNumber = DefaultSerialNumber
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Sim{
		cfg:        cfg,
		log:        cfg.Logger.With("device", "ccnetsim"),
		known:      map[byte]bool{},
		values:     acceptor.Denominations{},
		mode:       modePowerUp,
		powerWhere: NoNote,
		ackTarget:  -1,
	}
	s.link = &notepath.Link{Name: "ccnetsim", Line: cfg.Line, Noise: []byte{0x00, 0x55, 0x02, 0x03, 0x01, 0xAA}}
	entries := cfg.BillTable
	if entries == nil {
		entries = make([]ccnet.BillEntry, ccnet.NumBillTypes)
		for code, n := range cfg.Denominations {
			if code < 0 || code >= ccnet.NumBillTypes {
				s.log.Warn("bill type outside 0..23 left out", "code", code)
				continue
			}
			e, err := ccnet.EntryFor(n)
			if err != nil {
				s.log.Warn("denomination left out of the bill table", "err", err)
				continue
			}
			entries[code] = e
		}
	}
	for code, e := range entries {
		if code < ccnet.NumBillTypes && e.Used() {
			s.known[byte(code)] = true
			if n, ok := e.Note(code); ok {
				s.values[code] = n
			}
		}
	}
	for code, n := range cfg.Denominations {
		if s.known[byte(code)] && code >= 0 && code < ccnet.NumBillTypes {
			s.values[code] = n // the ground truth uses the configured value
		}
	}
	// A cleared jam and a new cassette make the unit initialise.
	initialise := func() {
		if s.mode != modePowerUp {
			s.mode = modeInitialize
		}
	}
	s.u = notepath.New(notepath.Config{Name: "ccnetsim", Values: s.values, Capacity: cfg.CassetteCapacity,
		Now: cfg.Now, Logger: s.log, DefaultFailure: 0x50, // stack motor
		Errors: notepath.Errors{Busy: ErrBusy, NoNote: ErrNoNote, CassetteState: ErrCassetteState, PoweredUp: ErrPoweredUp,
			CassetteOut: ErrCassetteOut, CassetteFull: ErrCassetteFull, Fault: ErrFault, Inhibited: ErrInhibited},
		OnMidStack: func() { s.mode = modeIdle }, OnReplaced: initialise, OnJamCleared: initialise})
	s.Controls, s.Switches = s.u.Controls(), s.u.Switches()
	s.table = ccnet.AppendBillTable(nil, entries)
	s.ident = ccnet.AppendIdentification(nil, ccnet.Identification{
		PartNumber: cfg.PartNumber, SerialNumber: cfg.SerialNumber, AssetNumber: cfg.AssetNumber,
	})
	return s
}

// Serve answers the host frame by frame until ctx ends or the host hangs up (both return
// nil), or the port fails. On cancellation it releases its blocked Read with
// SetReadDeadline when the port has one, else by closing the port if it is an io.Closer.
// With Config.Line on, the port is paced at that line's speed.
func (s *Sim) Serve(ctx context.Context, port io.ReadWriter) error {
	// No host command is longer than a few bytes: a longer declared length is line noise,
	// dropped at once instead of swallowing the commands behind it.
	dec := ccnet.Decoder{Limit: 256}
	return s.link.Serve(ctx, port, dec.Feed, func() ([]byte, bool) {
		f, err := dec.Next()
		switch {
		case errors.Is(err, ccnet.ErrIncomplete):
			return nil, false
		case errors.Is(err, ccnet.ErrBadCRC):
			return s.frame(ccnet.CmdNak), true // "your frame arrived damaged, send it again"
		case err != nil:
			return nil, true // an impossible length is line noise: no answer
		}
		return s.Handle(f), true
	})
}

func (s *Sim) frame(cmd byte, data ...byte) []byte {
	b, err := ccnet.Encode(s.cfg.Address, cmd, data...)
	if err != nil {
		panic(err) // every reply the emulator builds fits in a frame
	}
	return b
}

// Handle answers one host frame as the unit would; nil means no answer (the host's ACK, a
// frame for another address). Serve calls it; tests may call it directly.
func (s *Sim) Handle(f ccnet.Frame) []byte {
	if f.Addr != s.cfg.Address {
		return nil
	}
	s.u.Lock()
	defer s.u.Unlock()
	reply := s.handleLocked(f)
	s.log.Debug("exchange", "rx", f.String(), "tx", fmt.Sprintf("% X", reply))
	return reply
}

var dataLen = map[byte]int{
	ccnet.CmdSetSecurity: 3, ccnet.CmdEnableBillTypes: 6,
}

func (s *Sim) handleLocked(f ccnet.Frame) []byte {
	switch f.Cmd {
	case ccnet.CmdAck:
		if s.awaitingAck && len(f.Data) == 0 {
			s.awaitingAck = false
			s.ackedLocked()
		}
		return nil
	case ccnet.CmdNak:
		// The host got our last reply damaged: the same bytes again, nothing re-executed.
		return s.lastReply
	}
	s.eventReply = false
	reply, ackTarget := s.commandLocked(f)
	s.lastReply = reply
	s.awaitingAck = len(reply) > 0 && reply[3] != ccnet.CmdAck && reply[3] != ccnet.CmdNak
	s.ackTarget = ackTarget
	return reply
}

// commandLocked carries out one command; ackTarget is the cassette log entry the host's ACK
// of the reply confirms (-1 for none).
func (s *Sim) commandLocked(f ccnet.Frame) (reply []byte, ackTarget int) {
	ack := s.frame(ccnet.CmdAck)
	illegal := s.frame(ccnet.RepIllegalCommand)
	if n := dataLen[f.Cmd]; len(f.Data) != n {
		return illegal, -1
	}
	switch f.Cmd {
	case ccnet.CmdPoll:
		return s.pollLocked()
	case ccnet.CmdReset:
		s.resetLocked()
		return ack, -1
	case ccnet.CmdGetStatus:
		return s.frame(s.enabled[0], s.enabled[1], s.enabled[2], s.security[0], s.security[1], s.security[2]), -1
	case ccnet.CmdSetSecurity:
		copy(s.security[:], f.Data)
		return ack, -1
	case ccnet.CmdEnableBillTypes:
		copy(s.enabled[:], f.Data[:3])
		copy(s.escrow[:], f.Data[3:])
		return ack, -1
	case ccnet.CmdIdentification, ccnet.CmdGetBillTable:
		if !s.infoStateLocked() {
			return illegal, -1
		}
		if f.Cmd == ccnet.CmdIdentification {
			return s.frame(s.ident[0], s.ident[1:]...), -1
		}
		return s.frame(s.table[0], s.table[1:]...), -1
	}
	inEscrow := (s.mode == modeEscrow || s.mode == modeHolding) && !s.frozen()
	switch f.Cmd {
	case ccnet.CmdStack, ccnet.CmdReturn, ccnet.CmdHold:
		if !inEscrow {
			return illegal, -1
		}
	}
	switch f.Cmd {
	case ccnet.CmdStack:
		// From STACK on the note is committed to the stacker: a power cut now leaves it "in
		// the stacker" and RESET finishes stacking it.
		s.mode = modeStacking
		s.u.EnterStacker()
		return ack, -1
	case ccnet.CmdReturn:
		s.mode = modeReturning
		return ack, -1
	case ccnet.CmdHold:
		s.mode = modeHolding
		s.deadline = s.cfg.Now().Add(s.cfg.EscrowTimeout)
		return ack, -1
	}
	return illegal, -1
}

// pollLocked answers POLL: the state now, then one step of the transaction. STACKED and
// RETURNED wait for the host's ACK (ackedLocked) unless OneShotEvents.
func (s *Sim) pollLocked() ([]byte, int) {
	if s.busy != 0 {
		yh := s.busy
		s.busy = 0
		return s.frame(ccnet.StBusy, yh), -1
	}
	s.tickLocked()
	st, arg := s.stateLocked()
	target := -1
	if st == ccnet.StStacked {
		// Reporting STACKED means the note is in the cassette, whatever the host does.
		target = s.u.Log("stacked")
	}
	event := st == ccnet.StStacked || st == ccnet.StReturned
	if !event || s.cfg.OneShotEvents {
		s.advanceLocked()
	} else {
		s.eventReply = true
	}
	return s.frame(st, arg...), target
}

// ackedLocked applies the host's ACK of the last reply.
func (s *Sim) ackedLocked() {
	s.u.Ack(s.ackTarget)
	switch {
	case s.eventReply && s.mode == modeStacked:
		// The note is in the cassette and the host has its credit: the transaction is over
		// even if a fault came since the report (a fault stops mechanics, and none are left).
		// Left open, a RESET would report the note once more by credit recovery, a second
		// credit of one note that a real unit never sends after the ACK (sim seed
		// 123095061: a stack motor failure between the STACKED report and its ACK).
		s.eventReply = false
		s.u.Finish()
		s.mode = modeIdle
	case s.eventReply && s.mode == modeReturned && !s.frozen():
		s.eventReply = false
		s.advanceLocked()
	}
}

// frozen: a power-up report or a fault stops the transaction where it is.
func (s *Sim) frozen() bool {
	return s.mode == modePowerUp || s.u.Halted()
}

// infoStateLocked: the states in which the unit answers IDENTIFICATION and GET BILL TABLE.
func (s *Sim) infoStateLocked() bool {
	st, _ := s.stateLocked()
	switch st {
	case ccnet.StPowerUp, ccnet.StPowerUpBillInValidator, ccnet.StPowerUpBillInStacker,
		ccnet.StInitialize, ccnet.StDisabled:
		return true
	}
	return st >= ccnet.StCassetteFull && st <= ccnet.StFailure
}

// tickLocked applies the unit's own escrow timeout.
func (s *Sim) tickLocked() {
	if (s.mode == modeEscrow || s.mode == modeHolding) && !s.frozen() && !s.cfg.Now().Before(s.deadline) {
		s.log.Info("escrow timeout: returning the note", "type", s.u.Path.Code)
		s.mode = modeReturning
	}
}

// stateLocked is what the unit reports now. Faults take precedence over the transaction.
func (s *Sim) stateLocked() (byte, []byte) {
	switch {
	case s.mode == modePowerUp:
		switch s.powerWhere {
		case InAcceptor:
			return ccnet.StPowerUpBillInValidator, nil
		case InStacker:
			return ccnet.StPowerUpBillInStacker, nil
		}
		return ccnet.StPowerUp, nil
	case s.u.Failure != 0:
		return ccnet.StFailure, []byte{s.u.Failure}
	case s.u.Cheated:
		return ccnet.StCheated, nil
	case s.u.Jam == notepath.JamAcceptor:
		return ccnet.StValidatorJammed, nil
	case s.u.Jam == notepath.JamStacker:
		return ccnet.StCassetteJammed, nil
	case s.u.CassetteOut():
		return ccnet.StCassetteOut, nil
	case s.u.Paused:
		return ccnet.StPause, nil
	}
	switch s.mode {
	case modeInitialize:
		return ccnet.StInitialize, nil
	case modeAccepting:
		return ccnet.StAccepting, nil
	case modeEscrow:
		return ccnet.StEscrow, []byte{s.u.Path.Code}
	case modeHolding:
		return ccnet.StHolding, nil
	case modeStacking:
		return ccnet.StStacking, nil
	case modeStacked:
		return ccnet.StStacked, []byte{s.u.Path.Code}
	case modeRejecting:
		return ccnet.StRejecting, []byte{s.reject}
	case modeReturning:
		return ccnet.StReturning, nil
	case modeReturned:
		return ccnet.StReturned, []byte{s.u.Path.Code}
	}
	switch {
	case s.u.CassetteFull():
		return ccnet.StCassetteFull, nil
	case s.enabled == [3]byte{}:
		return ccnet.StDisabled, nil
	}
	return ccnet.StIdling, nil
}

// advanceLocked moves the transaction one step after a state report.
func (s *Sim) advanceLocked() {
	if s.frozen() {
		return
	}
	switch s.mode {
	case modeInitialize:
		s.mode = modeIdle
		if s.recovery && s.u.Path != nil {
			s.mode = modeStacked // credit recovery: the note stacked by RESET is reported now
		}
		s.recovery = false
	case modeAccepting:
		t := s.u.Path.Code
		switch {
		case s.u.ForcedReject != 0:
			s.reject, s.u.ForcedReject = s.u.ForcedReject, 0
		case !s.known[t]:
			s.reject = rejectIdentification
		case !ccnet.TypeSet(s.enabled, int(t)):
			s.reject = rejectInhibit
		case ccnet.TypeSet(s.escrow, int(t)):
			s.mode = modeEscrow
			s.deadline = s.cfg.Now().Add(s.cfg.EscrowTimeout)
			return
		default:
			s.mode = modeStacking // escrow off for this type: straight to the cassette
			s.u.EnterStacker()
			return
		}
		s.mode = modeRejecting
	case modeStacking:
		s.mode = modeStacked
	case modeStacked:
		s.u.Finish()
		s.mode = modeIdle
	case modeReturning:
		s.mode = modeReturned
	case modeRejecting, modeReturned:
		s.u.Drop()
		s.mode = modeIdle
	}
}

// resetLocked carries out RESET: a note still in the validator goes back to the customer,
// one past the point of no return goes into the cassette (and is reported STACKED after
// INITIALIZE unless NoCreditRecovery); failure and cheat reports clear; physical faults (jam,
// cassette out, pause) stay until they are cleared. The unit comes back disabled.
func (s *Sim) resetLocked() {
	s.recovery = false
	if p := s.u.Path; p != nil {
		switch {
		case p.InStacker && (s.mode == modePowerUp || s.mode == modeStacking || s.mode == modeStacked):
			s.u.Log("power_up_recovery")
			if !s.cfg.NoCreditRecovery {
				s.recovery = true
			} else {
				s.u.Drop()
			}
		case s.mode == modeReturned:
			s.u.Drop() // already back with the customer
		default:
			s.log.Info("note returned to the customer on reset", "type", p.Code)
			s.u.Drop()
		}
	}
	s.u.ResetFaults()
	s.powerWhere = NoNote
	s.mode = modeInitialize
	s.enabled = [3]byte{}
}

// InsertNote puts a note of billType into the bezel. The unit draws it in only when it is
// idle and enabled; a note of a type that is not enabled or not known is drawn in and then
// rejected. From the next POLL the unit reports ACCEPTING.
func (s *Sim) InsertNote(billType byte) error {
	s.u.Lock()
	defer s.u.Unlock()
	if err := s.u.CheckInsert(s.mode == modePowerUp, s.mode == modeIdle, s.enabled == [3]byte{}); err != nil {
		return err
	}
	s.u.Insert(billType)
	s.mode = modeAccepting
	s.log.Info("note inserted", "type", billType)
	return nil
}

// Busy makes the unit answer the next POLL with BUSY and yh (the time, in 100 ms, after
// which it can be asked again); the transaction does not move for that POLL.
func (s *Sim) Busy(yh byte) {
	s.u.Lock()
	defer s.u.Unlock()
	s.busy = max(yh, 1)
}

// PowerCycle cuts the power and restores it. The unit then reports POWER UP (0x10), or 0x11
// / 0x12 with a note in the validator / stacker, until RESET, which returns a note in the
// validator to the customer and stacks (and counts) a note in the stacker, reporting STACKED
// for it after INITIALIZE unless NoCreditRecovery. Auto reports where the note in the path
// physically is: ACCEPTING, ESCROW, HOLDING, REJECTING and RETURNING are the validator;
// STACKING and an unacknowledged STACKED are the stacker (the note is already in the
// cassette log then and is not counted twice). NoNote fails with ErrBusy when a note is in
// the path; InAcceptor and InStacker fail with ErrNoNote when none is, and otherwise say
// where the note was, overriding Auto. The settings (enabled types, escrow, security) are
// lost.
func (s *Sim) PowerCycle(where Where) error {
	s.u.Lock()
	defer s.u.Unlock()
	now := s.u.Where()
	returned := s.mode == modeReturned
	if returned {
		// The note is with the customer already: nothing is in the path. Nothing changes
		// before the placement is known to be possible: a power cycle that fails leaves the
		// unit as it was (RETURNED with its note, not RETURNED with none).
		now = NoNote
	}
	where, err := s.u.PowerCutPlace(where, now)
	if err != nil {
		return err
	}
	if returned {
		s.u.Drop()
	}
	s.powerLocked(where)
	return nil
}

// PowerCycleWithNote cuts and restores the power as if a note of billType had been at where
// (InAcceptor or InStacker) at that moment, for tests of a host's recovery. It fails with
// ErrBusy when a note is really in the path.
func (s *Sim) PowerCycleWithNote(where Where, billType byte) error {
	s.u.Lock()
	defer s.u.Unlock()
	if err := s.u.PowerCutWithNote(where, billType, s.u.Path != nil && s.mode != modeReturned); err != nil {
		return err
	}
	s.powerLocked(where)
	return nil
}

func (s *Sim) powerLocked(where Where) {
	s.mode = modePowerUp
	s.powerWhere = where
	s.enabled, s.escrow, s.security = [3]byte{}, [3]byte{}, [3]byte{}
	s.u.PowerFaults()
	s.busy, s.recovery = 0, false
	s.lastReply, s.awaitingAck, s.ackTarget, s.eventReply = nil, false, -1, false
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
	EnabledTypes  []int  `json:"enabled_types"`
	EscrowTypes   []int  `json:"escrow_types"`
	NoteInPath    *int   `json:"note_in_path,omitempty"`
	NoteInStacker bool   `json:"note_in_stacker,omitempty"`
	AwaitingAck   bool   `json:"awaiting_ack,omitempty"`
	notepath.Panel
}

// State returns a snapshot: Status is what the unit would answer to the next POLL (before
// that POLL's own escrow-timeout check).
func (s *Sim) State() Snapshot {
	s.u.Lock()
	defer s.u.Unlock()
	st, arg := s.stateLocked()
	snap := Snapshot{
		Status: ccnet.StatusName(st), StatusCode: st, StatusData: arg,
		Inhibited: s.enabled == [3]byte{}, EnabledTypes: ccnet.MaskTypes(s.enabled),
		EscrowTypes: ccnet.MaskTypes(s.escrow), AwaitingAck: s.awaitingAck,
		Panel: s.u.Panel(s.link, "validator", "cassette"),
	}
	if snap.EnabledTypes == nil {
		snap.EnabledTypes = []int{}
	}
	if snap.EscrowTypes == nil {
		snap.EscrowTypes = []int{}
	}
	if p := s.u.Path; p != nil {
		t := int(p.Code)
		snap.NoteInPath, snap.NoteInStacker = &t, p.InStacker
	}
	return snap
}
