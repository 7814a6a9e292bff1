package sspsim

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"slices"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/devices/acceptor/ssp"
	"github.com/kioskd/kioskd/hw-sim/internal/notepath"
	"github.com/kioskd/kioskd/hw-sim/linespeed"
)

// Defaults for Config fields left zero.
const (
	// DefaultEscrowTimeout is the SSP poll timeout: a note in escrow that sees no command
	// for this long is rejected (code 0x13).
	DefaultEscrowTimeout = ssp.UnitEscrowTimeout
	// DefaultSerial is the serial number of a new emulated unit.
	DefaultSerial uint32 = 0x001C962C // 1873452, the example of ITL's manual
	// DefaultFirmware is the SETUP REQUEST firmware field ("0380" = 3.80).
	DefaultFirmware = "0380"
	// DefaultMaxProtocol is the highest HOST PROTOCOL VERSION the unit accepts.
	DefaultMaxProtocol = 8
	// PowerUpProtocol is the protocol version a unit uses until the host sets one.
	PowerUpProtocol = 4
)

// Errors of the control API.
var (
	ErrDisabled      = errors.New("sspsim: unit is disabled; it does not draw the note in")
	ErrBusy          = errors.New("sspsim: a note is already in the path")
	ErrCassetteOut   = errors.New("sspsim: cashbox is out")
	ErrCassetteFull  = errors.New("sspsim: cashbox is full")
	ErrFault         = errors.New("sspsim: unit is in a fault state")
	ErrNoNote        = errors.New("sspsim: no note in the path")
	ErrCassetteState = errors.New("sspsim: cashbox is already in that state")
)

// Encryption is what the emulated unit does with eSSP.
type Encryption int

const (
	// EncryptionOptional: keys can be negotiated; general commands work plain or encrypted;
	// POLL WITH ACK and EVENT ACK need encryption (as on an NV9USB) unless PlainPollWithAck.
	EncryptionOptional Encryption = iota
	// EncryptionRequired: until keys are negotiated every command but SYNC and the key
	// exchange is answered KEY NOT SET (as on payout devices).
	EncryptionRequired
	// EncryptionUnsupported: an old unit; the key exchange commands are unknown (0xF2).
	EncryptionUnsupported
)

// Config configures a Sim.
type Config struct {
	// Denominations are the channels (1..16) the unit's dataset knows, with their values. A
	// note of any other channel is rejected (code 0x02, not recognised).
	Denominations acceptor.Denominations
	// Serial is the unit's serial number (default DefaultSerial).
	Serial uint32
	// FixedKey is the fixed half of the eSSP key (default ssp.DefaultFixedKey).
	FixedKey uint64
	// Encryption says how the unit treats eSSP (default EncryptionOptional).
	Encryption Encryption
	// NoPollWithAck makes POLL WITH ACK and EVENT ACK unknown commands (older firmware).
	NoPollWithAck bool
	// PlainPollWithAck accepts POLL WITH ACK and EVENT ACK without encryption.
	PlainPollWithAck bool
	// MaxProtocol is the highest HOST PROTOCOL VERSION accepted (default 8).
	MaxProtocol byte
	// Firmware is the 4-character firmware field of SETUP REQUEST (default "0380").
	Firmware string
	// EscrowTimeout is the unit's poll timeout for a note in escrow (default 10 s).
	EscrowTimeout time.Duration
	// CassetteCapacity is how many notes the cashbox takes before STACKER FULL; 0 = no limit.
	CassetteCapacity int
	// Line, when on, paces Serve's port at a serial line's speed (linespeed.SSP is the
	// unit's 9600 8N2); the zero Line leaves the port as fast as it is.
	Line linespeed.Line
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Rand supplies the unit's key-exchange secret and packing (nil: crypto/rand).
	Rand io.Reader
	// Logger receives the emulator's logs; nil discards them.
	Logger *slog.Logger
}

// Where says where a note was when the power went. SSP reports only SLAVE RESET for
// NoNote; for InAcceptor it gives the note back at power-up and reports NOTE CLEARED FROM
// FRONT with its channel (never counted); for InStacker it finishes stacking it and reports
// NOTE CLEARED INTO CASHBOX with its channel (counted, never credited).
type Where = notepath.Where

// Places of a note at a power cut.
const (
	Auto       = notepath.Auto
	NoNote     = notepath.NoNote
	InAcceptor = notepath.InAcceptor
	InStacker  = notepath.InStacker
)

// StackedNote is one note that went into a cashbox: the emulator's ground truth.
type StackedNote struct {
	Channel    byte      `json:"channel"`
	ValueMinor int64     `json:"value_minor"`
	Currency   string    `json:"currency,omitempty"`
	At         time.Time `json:"at"`
	// Reported is true once NOTE CREDIT for this note went out in a poll reply.
	Reported bool `json:"reported"`
	// Acked is true when the host sent EVENT ACK for the credit (POLL WITH ACK only).
	Acked bool `json:"acked"`
	// Via: "credit" (normal stacking), "power_up_recovery" (stacked at power-up, reported as
	// NOTE CLEARED INTO CASHBOX), "jam_cleared" (pushed in when a safe jam was cleared).
	Via string `json:"via"`
	// Cassette numbers the cashboxes: 1 for the first, one more after each replacement.
	Cassette int `json:"cassette"`
	// Serial is the unit that stacked it.
	Serial uint32 `json:"serial"`
}

// FaultKind is a link fault the emulator can inject into one reply.
type FaultKind = notepath.FaultKind

// Link faults. FaultNoReply drops the reply, the command was still carried out, and the unit
// repeats the reply when the host re-sends the packet with the same sequence flag.
const (
	FaultBadCRC  = notepath.FaultBadCRC
	FaultNoReply = notepath.FaultNoReply
	FaultGarbage = notepath.FaultGarbage
	FaultSplit   = notepath.FaultSplit
	FaultSlow    = notepath.FaultSlow
	// FaultBadCount encrypts the next encrypted reply with a wrong eSSP counter.
	FaultBadCount = notepath.FaultSlow + 1
)

// Fault is one injected fault; each applies to one reply.
type Fault = notepath.Fault

// mode is the note transaction, advanced one step per poll.
type mode int

const (
	modeReset     mode = iota // just powered up: the next poll reports SLAVE RESET
	modeClearing              // power-up with a note: the next poll reports what was cleared
	modeIdle                  // nothing in the path
	modeReading               // a note is drawn in: READ 0
	modeEscrowDue             // validated: the next poll reports READ channel
	modeEscrow                // READ channel reported: the next poll stacks it
	modeStacking              // STACKING reported: the next poll is the credit point
	modeStacked               // (POLL WITH ACK) the credit was acknowledged: STACKED next
	modeRejecting             // REJECTING next
	modeRejected              // REJECTED next
)

var modeNames = [...]string{"reset", "clearing", "idle", "reading", "escrow_due", "escrow", "stacking", "stacked", "rejecting", "rejected"}

func (m mode) String() string { return modeNames[m] }

// logExtra is what SSP adds to an entry of the cassette log.
type logExtra struct {
	reported bool
	serial   uint32
}

// Sim emulates one SSP banknote validator. Its control methods are safe to call from any
// goroutine.
type Sim struct {
	cfg Config
	log *slog.Logger

	link *notepath.Link
	// The control API every unit shares: ForceReject, PullCassette, ReplaceCassette,
	// SetCassetteFull.
	notepath.Controls

	u *notepath.Unit // also the lock of everything below
	// link
	haveLast   bool
	lastSeq    bool
	lastReply  []byte // the last reply frame, repeated for a packet with the same flag
	protocol   byte
	generator  uint64
	modulus    uint64
	cipher     *ssp.Cipher
	count      uint32
	pollAckDue []byte // events repeated by POLL WITH ACK until EVENT ACK
	ackNotes   []int  // cassette entries acknowledged by that EVENT ACK
	// unit
	serial     uint32
	mode       mode
	clearing   Where
	queue      []ssp.Event // one-shot events for the next poll
	lastReject byte
	deadline   time.Time
	enabled    bool
	inhibits   [2]byte
	jam        byte // 0, ssp.EvSafeJam or ssp.EvUnsafeJam
	pathOpen   bool
	failCode   byte
	channelOff bool // ENABLE with every channel inhibited: CHANNEL DISABLE reported
	counters   ssp.Counters
	extra      []logExtra // by cassette log entry
}

// New returns an emulated unit that has just been powered up with nothing in its path.
func New(cfg Config) *Sim {
	if cfg.Serial == 0 {
		cfg.Serial = DefaultSerial
	}
	if cfg.FixedKey == 0 {
		cfg.FixedKey = ssp.DefaultFixedKey
	}
	if cfg.MaxProtocol == 0 {
		cfg.MaxProtocol = DefaultMaxProtocol
	}
	if cfg.Firmware == "" {
		cfg.Firmware = DefaultFirmware
	}
	if cfg.EscrowTimeout <= 0 {
		cfg.EscrowTimeout = DefaultEscrowTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Sim{cfg: cfg, log: cfg.Logger.With("device", "sspsim"), serial: cfg.Serial}
	s.u = notepath.New(notepath.Config{Name: "sspsim", Values: cfg.Denominations, Capacity: cfg.CassetteCapacity,
		Now: cfg.Now, Logger: s.log, Errors: notepath.Errors{Busy: ErrBusy, NoNote: ErrNoNote, CassetteState: ErrCassetteState},
		OnLog: func(int) {
			s.extra = append(s.extra, logExtra{serial: s.serial})
			s.counters.Stacked++
		},
		OnMidStack: func() { s.mode = modeIdle },
		// A new cashbox is reported once: CASHBOX REPLACED.
		OnReplaced: func() { s.queue = append(s.queue, ssp.Event{Code: ssp.EvCashboxReplaced}) }})
	s.Controls = s.u.Controls()
	s.link = &notepath.Link{Name: "sspsim", Line: cfg.Line, Noise: []byte{0x00, 0x55, ssp.STX, 0x02, 0xAA},
		Corrupt: func(reply []byte) {
			reply[len(reply)-1] ^= 0x5A
			if reply[len(reply)-1] == ssp.STX {
				reply[len(reply)-1] ^= 0x01 // a lone STX would start a new packet, not spoil this one
			}
		},
		// A wrong eSSP counter is applied inside Handle, to the next encrypted reply.
		Applies: func(f Fault) bool { return f.Kind != FaultBadCount }}
	s.powerLocked(NoNote)
	return s
}

// Serve answers the host packet by packet until ctx ends or the host hangs up (both return
// nil), or the port fails. On cancellation it releases its blocked Read with
// SetReadDeadline when the port has one, else by closing the port if it is an io.Closer.
// With Config.Line on, the port is paced at that line's speed.
func (s *Sim) Serve(ctx context.Context, port io.ReadWriter) error {
	var dec ssp.Decoder
	return s.link.Serve(ctx, port, dec.Feed, func() ([]byte, bool) {
		f, err := dec.Next()
		switch {
		case errors.Is(err, ssp.ErrIncomplete):
			return nil, false
		case err != nil:
			return nil, true // a damaged packet is not answered: the host re-sends it
		}
		return s.Handle(f), true
	})
}

// Handle answers one host packet as the unit would, returning the reply frame (nil: no
// answer). A packet with the sequence flag of the previous one gets the previous reply again
// without being executed. Serve calls it; tests may call it directly.
func (s *Sim) Handle(f ssp.Frame) []byte {
	s.u.Lock()
	defer s.u.Unlock()
	if f.Address != 0 {
		return nil // another slave on the bus
	}
	isSync := len(f.Data) == 1 && f.Data[0] == ssp.CmdSync
	if !isSync && s.haveLast && f.Seq == s.lastSeq {
		s.log.Debug("repeat", "seq", f.Seq)
		return s.lastReply
	}
	var reply []byte
	data, sealed, ok := s.openLocked(f.Data)
	// The reply goes out under the keys the command came in with: an encrypted RESET
	// forgets the keys, but its OK is still sealed with them.
	ciph, count := s.cipher, s.count
	switch {
	case !ok:
		return nil // a packet that does not decrypt, or carries the wrong counter, is dropped
	case data == nil:
		reply = []byte{ssp.RespKeyNotSet} // encrypted, but no keys: answered in clear
	default:
		reply = s.executeLocked(data, sealed)
	}
	payload := reply
	if sealed {
		if s.cipher != nil {
			count = s.count
		}
		if s.link.Take(FaultBadCount) {
			count += 7
		}
		// Without keys (an encrypted packet before any key exchange) the KEY NOT SET
		// answer goes out in clear: there is nothing to seal it with.
		if ciph != nil {
			var err error
			if payload, err = ciph.Seal(nil, count, reply, s.cfg.Rand); err != nil {
				payload = []byte{ssp.RespSoftwareError}
			}
		}
	}
	w, err := ssp.Encode(ssp.Frame{Seq: f.Seq, Data: payload})
	if err != nil {
		w, _ = ssp.Encode(ssp.Frame{Seq: f.Seq, Data: []byte{ssp.RespSoftwareError}})
	}
	s.haveLast, s.lastSeq, s.lastReply = true, f.Seq, w
	if isSync {
		// SYNC: the next packet must carry the flag clear.
		s.lastSeq = true
	}
	s.log.Debug("exchange", "rx", fmt.Sprintf("% X", data), "tx", fmt.Sprintf("% X", reply), "sealed", sealed)
	return w
}

// openLocked decrypts an eSSP packet and checks its counter: the unit's counter advances
// once per exchange, so the reply carries the command's counter plus one and so does the
// next command.
func (s *Sim) openLocked(payload []byte) (data []byte, sealed, ok bool) {
	if len(payload) == 0 || payload[0] != ssp.STEX {
		return payload, false, true
	}
	if s.cipher == nil {
		return nil, false, true
	}
	d, count, err := s.cipher.Open(payload, s.count)
	if err != nil {
		s.log.Warn("encrypted packet dropped", "err", err, "count", count, "want", s.count)
		return nil, false, false
	}
	s.count++
	if len(d) == 0 {
		return nil, false, false
	}
	return d, true, true
}

// mustEncrypt lists the commands an NV9USB takes only encrypted.
func (s *Sim) mustEncrypt(cmd byte) bool {
	return (cmd == ssp.CmdPollWithAck || cmd == ssp.CmdEventAck) && !s.cfg.PlainPollWithAck
}

func (s *Sim) executeLocked(data []byte, sealed bool) []byte {
	cmd, args := data[0], data[1:]
	keyless := cmd == ssp.CmdSync || cmd == ssp.CmdSetGenerator || cmd == ssp.CmdSetModulus || cmd == ssp.CmdRequestKeyExchange
	if s.cfg.Encryption != EncryptionUnsupported && !keyless {
		if s.cipher == nil && (s.cfg.Encryption == EncryptionRequired || s.mustEncrypt(cmd)) {
			return []byte{ssp.RespKeyNotSet}
		}
		if !sealed && s.mustEncrypt(cmd) {
			return []byte{ssp.RespKeyNotSet}
		}
	}
	if s.failCode != 0 && cmd != ssp.CmdSync && cmd != ssp.CmdReset {
		return []byte{s.failCode}
	}
	s.tickLocked(cmd)
	okr := []byte{ssp.RespOK}
	nargs := func(n ...int) bool { return slices.Contains(n, len(args)) }
	switch cmd {
	case ssp.CmdSync:
		return okr
	case ssp.CmdReset:
		// OK first, then the unit restarts as after a power cut.
		s.powerLocked(s.whereLocked())
		return okr
	case ssp.CmdHostProtocol:
		if !nargs(1) {
			return []byte{ssp.RespWrongParams}
		}
		if args[0] < PowerUpProtocol || args[0] > s.cfg.MaxProtocol {
			return []byte{ssp.RespFail}
		}
		s.protocol = args[0]
		return okr
	case ssp.CmdSetupRequest:
		return ssp.AppendSetup(okr, s.setupLocked())
	case ssp.CmdGetSerial:
		return binary.BigEndian.AppendUint32(okr, s.serial)
	case ssp.CmdGetFirmware:
		return append(okr, "NV0"+s.cfg.Firmware+"SIM"...)
	case ssp.CmdGetDataset:
		return append(okr, s.countryLocked()+"01SIM"...)
	case ssp.CmdSetInhibits:
		if !nargs(1, 2) {
			return []byte{ssp.RespWrongParams}
		}
		s.inhibits = [2]byte{}
		copy(s.inhibits[:], args)
		s.channelOff = s.enabled && s.inhibits == [2]byte{} && s.protocol >= 7
		return okr
	case ssp.CmdEnable:
		s.enabled = true
		s.channelOff = s.inhibits == [2]byte{} && s.protocol >= 7
		return okr
	case ssp.CmdDisable:
		s.enabled, s.channelOff = false, false
		return okr
	case ssp.CmdDisplayOn, ssp.CmdDisplayOff:
		return okr
	case ssp.CmdPoll:
		return append(okr, s.pollLocked(false)...)
	case ssp.CmdPollWithAck:
		if s.cfg.NoPollWithAck {
			return []byte{ssp.RespUnknownCommand}
		}
		return append(okr, s.pollLocked(true)...)
	case ssp.CmdEventAck:
		if s.cfg.NoPollWithAck {
			return []byte{ssp.RespUnknownCommand}
		}
		if s.pollAckDue == nil {
			return []byte{ssp.RespCannotProcess}
		}
		for _, i := range s.ackNotes {
			s.u.Ack(i)
		}
		s.pollAckDue, s.ackNotes = nil, nil
		return okr
	case ssp.CmdReject:
		if s.mode != modeEscrow || s.frozen() {
			return []byte{ssp.RespCannotProcess}
		}
		s.rejectLocked(ssp.RejectByHost)
		return okr
	case ssp.CmdHold:
		if s.mode != modeEscrow || s.frozen() {
			return []byte{ssp.RespCannotProcess}
		}
		return okr // tickLocked restarted the timeout
	case ssp.CmdLastRejectCode:
		return append(okr, s.lastReject)
	case ssp.CmdGetCounters:
		return ssp.AppendCounters(okr, s.counters)
	case ssp.CmdResetCounters:
		s.counters = ssp.Counters{}
		return okr
	case ssp.CmdSetGenerator, ssp.CmdSetModulus, ssp.CmdRequestKeyExchange:
		if s.cfg.Encryption == EncryptionUnsupported {
			return []byte{ssp.RespUnknownCommand}
		}
		if !nargs(8) {
			return []byte{ssp.RespWrongParams}
		}
		v := binary.LittleEndian.Uint64(args)
		switch cmd {
		case ssp.CmdSetGenerator, ssp.CmdSetModulus:
			if !ssp.IsPrime(v) {
				return []byte{ssp.RespOutOfRange}
			}
			if cmd == ssp.CmdSetGenerator {
				s.generator = v
			} else {
				s.modulus = v
			}
			return okr
		}
		if s.generator == 0 || s.modulus == 0 {
			return []byte{ssp.RespFail}
		}
		r, err := ssp.RandomBelow(s.cfg.Rand, s.modulus)
		if err != nil {
			return []byte{ssp.RespSoftwareError}
		}
		inter := ssp.ModExp(s.generator, r, s.modulus)
		key := ssp.ModExp(v, r, s.modulus)
		s.cipher, s.count = ssp.NewCipher(ssp.MakeKey(s.cfg.FixedKey, key)), 0
		s.log.Info("eSSP keys negotiated")
		return binary.LittleEndian.AppendUint64(okr, inter)
	}
	return []byte{ssp.RespUnknownCommand}
}

// frozen: a fault stops the transaction where it is.
func (s *Sim) frozen() bool {
	return s.jam != 0 || s.u.CassetteOut() || s.pathOpen
}

// tickLocked applies the unit's escrow timeout: a note in escrow is rejected when nothing
// came for EscrowTimeout; any command but a poll restarts the timeout.
func (s *Sim) tickLocked(cmd byte) {
	if s.mode != modeEscrow || s.frozen() {
		return
	}
	now := s.cfg.Now()
	if !now.Before(s.deadline) {
		s.log.Info("escrow timeout: rejecting the note", "channel", s.u.Path.Code)
		s.rejectLocked(ssp.RejectEscrowTimeout)
		return
	}
	if cmd != ssp.CmdPoll && cmd != ssp.CmdPollWithAck {
		s.deadline = now.Add(s.cfg.EscrowTimeout)
	}
}

func (s *Sim) rejectLocked(code byte) {
	s.lastReject = code
	s.mode = modeRejecting
}

// pollLocked reports the events since the last poll, oldest first, and moves the note
// transaction one step. With POLL WITH ACK a reply that carries a credit (or a note cleared
// into the cashbox, or a fraud attempt) is repeated, and the transaction frozen, until EVENT
// ACK.
func (s *Sim) pollLocked(withAck bool) []byte {
	if withAck && s.pollAckDue != nil {
		return s.pollAckDue
	}
	if !withAck && s.pollAckDue != nil {
		// A plain POLL after an unacknowledged POLL WITH ACK: the events go out once more and
		// are forgotten, as POLL does.
		ev := s.pollAckDue
		s.pollAckDue, s.ackNotes = nil, nil
		return ev
	}
	evs := s.queue
	s.queue = nil
	var ackNotes []int
	needAck := false
	add := func(e ...ssp.Event) { evs = append(evs, e...) }
	ch := func(c byte) []byte { return []byte{c} }
	if !s.frozen() {
		switch s.mode {
		case modeReset:
			add(ssp.Event{Code: ssp.EvSlaveReset})
			if withAck {
				add(ssp.Event{Code: ssp.EvInitialising})
			}
			s.mode = modeIdle
			if s.clearing != NoNote {
				s.mode = modeClearing
			}
		case modeClearing:
			c := s.u.Path.Code
			if s.clearing == InStacker {
				s.u.Log("power_up_recovery")
				add(ssp.Event{Code: ssp.EvClearedCashbox, Data: ch(c)})
				needAck = true
			} else {
				add(ssp.Event{Code: ssp.EvClearedFront, Data: ch(c)})
			}
			s.u.Drop()
			s.clearing = NoNote
			s.mode = modeIdle
		case modeReading:
			add(ssp.Event{Code: ssp.EvRead, Data: ch(0)})
			s.validateLocked()
		case modeEscrowDue:
			add(ssp.Event{Code: ssp.EvRead, Data: ch(s.u.Path.Code)})
			s.mode = modeEscrow
			s.deadline = s.cfg.Now().Add(s.cfg.EscrowTimeout)
		case modeEscrow:
			// This poll accepts the note.
			s.u.Path.InStacker = true
			add(ssp.Event{Code: ssp.EvStacking})
			s.mode = modeStacking
		case modeStacking:
			c := ch(s.u.Path.Code)
			i := s.u.Log("credit")
			s.extra[i].reported = true
			if withAck {
				add(ssp.Event{Code: ssp.EvStacking}, ssp.Event{Code: ssp.EvNoteCredit, Data: c})
				needAck, ackNotes = true, []int{i}
				s.mode = modeStacked
			} else {
				add(ssp.Event{Code: ssp.EvNoteCredit, Data: c}, ssp.Event{Code: ssp.EvStacked})
				s.u.Finish()
				s.mode = modeIdle
			}
		case modeStacked:
			add(ssp.Event{Code: ssp.EvStacked})
			s.u.Finish()
			s.mode = modeIdle
		case modeRejecting:
			add(ssp.Event{Code: ssp.EvRejecting})
			s.mode = modeRejected
		case modeRejected:
			add(ssp.Event{Code: ssp.EvRejected})
			s.counters.Rejected++
			s.u.Drop()
			s.mode = modeIdle
		}
	}
	// Conditions the unit repeats on every poll while they last.
	switch {
	case s.jam != 0:
		add(ssp.Event{Code: s.jam})
	case s.u.CassetteOut():
		add(ssp.Event{Code: ssp.EvCashboxRemoved})
	case s.pathOpen && s.protocol >= 6:
		add(ssp.Event{Code: ssp.EvNotePathOpen})
	}
	if s.u.CassetteFull() && !s.u.CassetteOut() {
		add(ssp.Event{Code: ssp.EvStackerFull})
	}
	if (s.mode == modeIdle || s.mode == modeClearing) && !s.frozen() {
		switch {
		case s.channelOff:
			add(ssp.Event{Code: ssp.EvChannelDisable})
			s.channelOff = false
			s.enabled = false
		case !s.enabled:
			add(ssp.Event{Code: ssp.EvDisabled})
		}
	}
	for _, e := range evs {
		if e.NeedsAck() && e.Code != ssp.EvClearedFront {
			needAck = true
		}
	}
	out := ssp.AppendEvents(nil, evs...)
	if withAck && needAck {
		// The transaction waits: s.mode already says what comes after EVENT ACK.
		s.pollAckDue, s.ackNotes = out, ackNotes
	}
	return out
}

// validateLocked decides what becomes of the note being read: rejected (forced, unknown
// channel, channel inhibited) or held in escrow.
func (s *Sim) validateLocked() {
	c := int(s.u.Path.Code)
	_, known := s.cfg.Denominations[c]
	switch {
	case s.u.ForcedReject != 0:
		s.rejectLocked(s.u.ForcedReject)
		s.u.ForcedReject = 0
	case !known:
		s.rejectLocked(ssp.RejectAverageFail) // not recognised
	case !ssp.ChannelEnabled(s.inhibits, c):
		s.rejectLocked(ssp.RejectDisabledByHost)
	default:
		s.mode = modeEscrowDue
	}
}

func (s *Sim) countryLocked() string {
	for _, c := range slices.Sorted(mapsKeys(s.cfg.Denominations)) {
		if cur := s.cfg.Denominations[c].Currency; cur != "" {
			return cur
		}
	}
	return "XXX"
}

func mapsKeys(d acceptor.Denominations) func(func(int) bool) {
	return func(yield func(int) bool) {
		for k := range d {
			if !yield(k) {
				return
			}
		}
	}
}

// setupLocked builds the SETUP REQUEST reply from the configured channels, in the format of
// the protocol version in force. Values are major units of the currency times the real value
// multiplier (100 for two-decimal currencies, 1 for none).
func (s *Sim) setupLocked() ssp.Setup {
	st := ssp.Setup{
		UnitType: ssp.UnitValidator, Firmware: s.cfg.Firmware, Country: s.countryLocked(),
		ProtocolVersion: s.protocol, RealValueMultiplier: 100,
	}
	maxCh := 0
	for c := range s.cfg.Denominations {
		maxCh = max(maxCh, c)
	}
	var gcd uint32
	for c := 1; c <= maxCh; c++ {
		n := s.cfg.Denominations[c]
		v := uint32(0)
		if n.ValueMinor > 0 && n.ValueMinor%100 == 0 {
			v = uint32(n.ValueMinor / 100)
		}
		st.Channels = append(st.Channels, ssp.Channel{Number: c, Value: v, Currency: n.Currency})
		st.Security = append(st.Security, 2)
		if v > 0 {
			gcd = uint32(new(big.Int).GCD(nil, nil, big.NewInt(int64(gcd)), big.NewInt(int64(v))).Int64())
		}
	}
	st.ValueMultiplier = gcd
	for _, c := range st.Channels {
		if gcd > 0 && c.Value/gcd > 255 {
			st.ValueMultiplier = 0 // only the expanded section can say these values
		}
	}
	return st
}

func (s *Sim) whereLocked() Where {
	switch {
	case s.u.Path != nil && s.u.Path.Logged >= 0:
		return NoNote // credited: in the cashbox already
	}
	return s.u.Where()
}

// powerLocked restarts the unit: it forgets the link (sequence flag, protocol version, keys),
// its settings and what it owed the host, comes up disabled with every channel inhibited,
// and clears its note path as where says.
func (s *Sim) powerLocked(where Where) {
	s.haveLast, s.lastReply = false, nil
	s.protocol = PowerUpProtocol
	s.generator, s.modulus, s.cipher, s.count = 0, 0, nil, 0
	s.pollAckDue, s.ackNotes = nil, nil
	s.queue = nil
	s.mode = modeReset
	s.clearing = where
	if where == NoNote {
		s.u.Drop()
	}
	s.enabled, s.inhibits, s.channelOff = false, [2]byte{}, false
	s.failCode = 0
	s.log.Info("power cycle", "where", where)
}
