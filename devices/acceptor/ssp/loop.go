package ssp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/devices/internal/seriallink"
)

// phase is where the loop is in bringing the unit up.
type phase int

const (
	// phaseProbe: the link is up; ask with HOLD whether a note waits in escrow before the
	// first poll, which would stack it.
	phaseProbe phase = iota
	// phaseRecover: poll, touching nothing, until no note is in the path.
	phaseRecover
	// phaseConfigure: read the setup (once), check the serial, set inhibits, disable.
	phaseConfigure
	// phaseRunning: configured; requests from Enable, Inhibit, ... are served.
	phaseRunning
)

func (p phase) String() string {
	return [...]string{"probe", "recover", "configure", "running"}[p]
}

// escrowState is where a note in escrow is in the handler's decision.
type escrowState int

const (
	escrowNone   escrowState = iota
	escrowAsk                // in escrow, the handler has not decided
	escrowStack              // the handler said Stack: the next poll stacks it
	escrowHold               // the handler said Hold: HOLD is re-sent, the handler asked again
	escrowReturn             // the handler said Return: REJECT not acknowledged yet
)

// packet is one command on the wire. A packet that got no reply is re-sent byte for byte
// (same sequence flag, same eSSP counter) before anything else is sent, so the unit either
// executes it once or repeats the reply it already gave, and the reply is handled once.
type packet struct {
	cmd    byte
	wire   []byte
	seq    bool
	seqID  byte
	sealed bool
	count  uint32 // eSSP counter the reply must carry
	sent   bool   // written at least once: the unit may have it
}

// reply is a decoded answer: the generic response and the data after it.
type reply struct {
	code   byte
	data   []byte
	sealed bool // it came encrypted under the current key
}

// pendingCredit is a report the handler has to record before the unit may forget it: a
// credit (Credited), or a power-up report of a note cleared from the path (report, for a
// handler that records them: acceptor.PowerUpRecorder).
type pendingCredit struct {
	note   acceptor.Note
	report *acceptor.Event
	ok     bool // Credited (PowerUp) returned nil
}

func (p pendingCredit) String() string {
	if p.report != nil {
		return p.report.String()
	}
	return p.note.String()
}

// ackPending is a POLL WITH ACK reply whose events the unit repeats until EVENT ACK.
type ackPending struct {
	raw     []byte
	credits []pendingCredit
	blocked bool // the reply has an event this driver cannot read: never acknowledged
}

func (a *ackPending) recorded() bool {
	for _, c := range a.credits {
		if !c.ok {
			return false
		}
	}
	return true
}

// powerUp is a SLAVE RESET whose report waits for what the unit clears from its path.
type powerUp struct {
	at   time.Time
	note acceptor.Note // the note this process knew in the path, if any
}

// loop is the poll loop's state. Only the Run goroutine touches it.
type loop struct {
	d    *Driver
	h    acceptor.Handler
	link *seriallink.Link[Frame, request]
	cfg  Config
	log  *slog.Logger

	// link
	seq        bool // sequence flag of the last answered packet
	needLink   bool // SYNC, key exchange and host protocol version before anything else
	cipher     *Cipher
	count      uint32
	unanswered *packet
	lost       bool
	gap        bool // a packet was re-sent or the link was lost: check the serial number
	pollCmd    byte
	pollFixed  bool
	lastTx     time.Time
	sealedPoll bool // the poll reply being handled came encrypted under the current key
	refused    byte // last generic error a poll got, reported once
	// pollFailures counts polls in a row the unit refused as failed (SOFTWARE ERROR, FAIL):
	// an SSP validator has no failure event, it just stops working.
	pollFailures int
	failedUnit   bool
	warnedKey    bool

	// start-up
	phase      phase
	setup      *Setup
	identified bool

	// unit
	state        unitState
	reported     unitState // state whose event was emitted last
	enabled      bool
	enabledKnown bool
	stackerFull  bool
	powerUp      *powerUp

	// the note in the path
	note       acceptor.Note
	haveNote   bool
	escrow     escrowState
	hostReject bool // REJECT was acknowledged for it: REJECTING / REJECTED are a return

	// money
	ack        *ackPending
	unrecorded []pendingCredit
	alarmed    bool

	// identity
	serial     uint32
	haveSerial bool
	swapped    bool
	swapSerial uint32
}

func newLoop(d *Driver, h acceptor.Handler) *loop {
	l := &loop{d: d, h: h, link: d.link, cfg: d.cfg, log: d.log, needLink: true}
	switch d.cfg.PollMode {
	case PollPlain:
		l.pollCmd, l.pollFixed = CmdPoll, true
	case PollAck:
		l.pollCmd, l.pollFixed = CmdPollWithAck, true
	default:
		l.pollCmd = CmdPollWithAck
	}
	return l
}

// step is one cycle; it returns the time until the next: none when the next poll stacks a
// note, longer while communication is lost.
func (l *loop) step(ctx context.Context) time.Duration {
	again := l.cycle(ctx)
	switch {
	case l.lost:
		return l.cfg.LostPollInterval
	case again:
		return 0
	}
	return l.cfg.PollInterval
}

// cycle is one step: finish an unanswered packet, bring the link up, look after a note in
// escrow, or poll and handle the events. It reports whether the next step is due at once
// (the handler said Stack: the next poll stacks the note).
func (l *loop) cycle(ctx context.Context) bool {
	if l.unanswered != nil && (!l.flush(ctx) || ctx.Err() != nil) {
		return false
	}
	if l.needLink {
		if err := l.connect(ctx); err != nil {
			l.failed(ctx, "connect", err)
			return false
		}
	}
	if l.phase == phaseProbe {
		_, err := l.exchange(ctx, CmdHold, nil)
		l.onHoldReply(err)
		if err != nil && !isRefusal(err) {
			l.failed(ctx, "escrow probe", err)
			return false
		}
	}
	l.retryUnrecorded(ctx)
	switch l.escrow {
	case escrowAsk, escrowHold:
		l.escrowStep(ctx)
		return l.escrow == escrowStack
	case escrowReturn:
		l.sendReject(ctx)
		return false
	}
	r, err := l.poll(ctx)
	if err != nil {
		l.failed(ctx, "poll", err)
		return false
	}
	l.onPoll(ctx, r)
	l.afterPoll(ctx)
	return l.escrow == escrowStack
}

func isRefusal(err error) bool {
	var re *ReplyError
	return errors.As(err, &re)
}

// failed reports an exchange that did not work out.
func (l *loop) failed(ctx context.Context, what string, err error) {
	if l.link.Fatal() != nil || ctx.Err() != nil {
		return
	}
	var re *ReplyError
	switch {
	case errors.Is(err, acceptor.ErrTimeout):
		l.commFailed(ctx, err)
	case errors.Is(err, ErrKeyNotSet) && !l.cfg.Encrypt:
		if !l.warnedKey {
			l.warnedKey = true
			l.emit(ctx, acceptor.Event{Kind: acceptor.ProtocolError, Code: int(RespKeyNotSet),
				Detail: "unit answers KEY NOT SET: it wants eSSP; configure a fixed key and Encrypt"})
		}
	case errors.Is(err, ErrKeyNotSet):
		l.log.Info("unit lost its eSSP key (reset?); negotiating again", "during", what)
	case errors.As(err, &re) && what == "poll" && (re.Code == RespSoftwareError || re.Code == RespFail):
		l.pollFailures++
		if l.pollFailures >= failedPolls && !l.failedUnit {
			l.failedUnit = true
			l.emit(ctx, acceptor.Event{Kind: acceptor.Failure, Code: int(re.Code),
				Detail: fmt.Sprintf("unit refuses every poll (%s): out of order", err)})
		}
	case errors.As(err, &re):
		// A unit that keeps refusing the poll or the link set-up (no eSSP, say) is reported
		// once per distinct answer; other refusals are handled where they happen.
		if (what == "poll" || what == "connect") && re.Code != l.refused {
			l.refused = re.Code
			l.emit(ctx, acceptor.Event{Kind: acceptor.ProtocolError, Code: int(re.Code), Detail: err.Error()})
		} else {
			l.log.Warn(what+" refused", "err", err)
		}
	case errors.Is(err, errCrypto):
		l.emit(ctx, acceptor.Event{Kind: acceptor.ProtocolError, Detail: err.Error() + "; negotiating new keys"})
	default:
		l.log.Warn(what+" failed", "err", err)
	}
}

// failedPolls is how many refused polls in a row make a unit failed.
const failedPolls = 3

func (l *loop) commFailed(ctx context.Context, err error) {
	if l.lost {
		return
	}
	l.lost = true
	l.log.Warn("communication lost", "err", err)
	l.emit(ctx, acceptor.Event{Kind: acceptor.CommLost, Detail: err.Error()})
}

// flush re-sends the unanswered packet and hands its reply to whoever would have handled it.
func (l *loop) flush(ctx context.Context) bool {
	p := l.unanswered
	l.unanswered = nil
	attempts := 1 + l.cfg.MaxRetries
	if l.lost {
		attempts = 1
	}
	f, err := l.send(ctx, p, attempts)
	if err != nil {
		l.failed(ctx, CommandName(p.cmd), err)
		return false
	}
	r, err := l.open(p, f)
	l.log.Debug("late reply handled", "cmd", CommandName(p.cmd), "err", err)
	switch p.cmd {
	case CmdPoll, CmdPollWithAck:
		if err != nil {
			l.failed(ctx, "poll", err)
			break
		}
		l.onPoll(ctx, r)
		l.afterPoll(ctx)
	case CmdReject:
		l.onRejectReply(ctx, err)
	case CmdHold:
		l.onHoldReply(err)
	case CmdEventAck:
		l.onEventAckReply(err)
	case CmdEnable:
		if err == nil {
			l.enabled, l.enabledKnown = true, true
		}
	case CmdDisable:
		if err == nil {
			l.enabled, l.enabledKnown = false, true
		}
	}
	return l.unanswered == nil && l.link.Fatal() == nil
}

// errCrypto: an encrypted exchange could not be trusted (wrong key or counter, or a plain
// reply carrying data to an encrypted command); keys are negotiated again.
var errCrypto = errors.New("ssp: eSSP reply dropped")

// exchange is the one send path for new commands: it checks the command table, builds the
// packet (encrypted when keys are set), sends it with retries and decodes the reply. A
// generic response other than OK comes back as a *ReplyError along with the reply.
func (l *loop) exchange(ctx context.Context, cmd byte, args []byte) (reply, error) {
	spec, ok := commandTable[cmd]
	if !ok {
		return reply{}, fmt.Errorf("ssp: command %#02x is not in the command table", cmd)
	}
	// REJECT and HOLD are always safe for a note the driver knows is in escrow, whatever
	// else the unit reports (a jam, an open cashbox).
	escrowCmd := (cmd == CmdReject || cmd == CmdHold) && l.escrow != escrowNone
	if !spec.legal.has(l.state) && !escrowCmd {
		return reply{}, fmt.Errorf("ssp: %s in state %s: %w", CommandName(cmd), l.state, ErrWrongState)
	}
	if (cmd == CmdPoll || cmd == CmdPollWithAck) && l.escrow != escrowNone && l.escrow != escrowStack {
		return reply{}, fmt.Errorf("ssp: %s would stack the note in escrow: %w", CommandName(cmd), ErrWrongState)
	}
	if l.unanswered != nil {
		return reply{}, fmt.Errorf("ssp: %s: still re-sending %s: %w", CommandName(cmd), CommandName(l.unanswered.cmd), acceptor.ErrTimeout)
	}
	p, err := l.prepare(cmd, args, spec.crypt)
	if err != nil {
		return reply{}, err
	}
	attempts := 1 + l.cfg.MaxRetries
	if l.lost {
		attempts = 1
	}
	f, err := l.send(ctx, p, attempts)
	if err != nil {
		return reply{}, err
	}
	return l.open(p, f)
}

// prepare builds a new packet: the next sequence flag (SYNC always sets it, so the command
// after SYNC goes out with the flag clear), and the eSSP wrapping when keys are set.
func (l *loop) prepare(cmd byte, args []byte, c crypt) (*packet, error) {
	data := make([]byte, 0, 1+len(args))
	data = append(data, cmd)
	data = append(data, args...)
	p := &packet{cmd: cmd, seq: !l.seq}
	if cmd == CmdSync {
		p.seq = true
	}
	if l.cipher != nil && c == sealed {
		s, err := l.cipher.Seal(nil, l.count, data, l.cfg.Rand)
		if err != nil {
			return nil, fmt.Errorf("ssp: %s: %w", CommandName(cmd), err)
		}
		l.count++
		p.sealed, p.count, data = true, l.count, s
	}
	f := Frame{Address: l.cfg.Address, Seq: p.seq, Data: data}
	p.seqID = f.SeqID()
	w, err := Encode(f)
	if err != nil {
		return nil, fmt.Errorf("ssp: %s: %w", CommandName(cmd), err)
	}
	p.wire = w
	return p, nil
}

// send writes p and waits for the frame that answers it (same SEQ/ID byte), re-sending the
// same bytes after a timeout or a damaged reply. A packet that is never answered becomes
// l.unanswered.
func (l *loop) send(ctx context.Context, p *packet, attempts int) (Frame, error) {
	var last error
	for a := 0; a < attempts; a++ {
		if err := ctx.Err(); err != nil {
			if p.sent {
				l.unanswered = p
			} else if p.sealed && l.count == p.count {
				l.count-- // never sent: the unit has not seen its counter
			}
			return Frame{}, fmt.Errorf("ssp: %s: %w", CommandName(p.cmd), err)
		}
		if a > 0 {
			l.d.n.retries.Add(1)
			l.gap = true
			// Whatever is buffered now is the stale start of a reply that never finished.
			l.link.ResetRx()
		}
		l.link.DrainStale()
		if err := l.link.Fatal(); err != nil {
			return Frame{}, err
		}
		if err := l.link.Write(p.wire); err != nil {
			if fatal := l.link.Fatal(); fatal != nil {
				return Frame{}, fatal
			}
			last = err
			continue
		}
		p.sent = true
		l.log.Debug("tx", "cmd", CommandName(p.cmd), "seq", p.seq, "sealed", p.sealed, "frame", fmt.Sprintf("% X", p.wire))
		// The unit echoes address and sequence flag, so a late answer to an earlier packet
		// is told apart by its SEQ/ID and skipped.
		f, err := l.link.Await(ctx, l.cfg.ReplyTimeout, func(f Frame) (bool, error) { return f.SeqID() == p.seqID, nil })
		if err == nil {
			l.seq = p.seq
			l.lastTx = time.Now()
			if l.lost {
				l.lost = false
				l.gap = true
				l.log.Info("communication restored")
				l.emit(ctx, acceptor.Event{Kind: acceptor.CommRestored})
			}
			return f, nil
		}
		if fatal := l.link.Fatal(); fatal != nil {
			return Frame{}, fatal
		}
		if ctx.Err() != nil {
			l.unanswered = p
			return Frame{}, fmt.Errorf("ssp: %s: %w", CommandName(p.cmd), ctx.Err())
		}
		last = err
	}
	l.unanswered = p
	l.gap = true
	return Frame{}, fmt.Errorf("ssp: %s: %w after %d attempts: %w", CommandName(p.cmd), acceptor.ErrTimeout, attempts, last)
}

// open decodes the answer to p: it decrypts an encrypted reply and checks its counter, and
// refuses a plain reply carrying data to an encrypted command (someone on the line could
// otherwise forge events). Either failure drops the reply and negotiates new keys.
func (l *loop) open(p *packet, f Frame) (reply, error) {
	name := CommandName(p.cmd)
	data := f.Data
	sealedReply := false
	switch {
	case data[0] == STEX:
		if l.cipher == nil {
			l.d.n.cryptoErrors.Add(1)
			l.needLink = l.cfg.Encrypt
			return reply{}, fmt.Errorf("%w: %s: encrypted reply while no key is set", errCrypto, name)
		}
		want := l.count
		if p.sealed {
			want = p.count
		}
		inner, _, err := l.cipher.Open(data, want)
		if err != nil {
			l.d.n.cryptoErrors.Add(1)
			l.needLink = true
			return reply{}, fmt.Errorf("%w: %s: %w", errCrypto, name, err)
		}
		data, sealedReply = inner, true
	case p.sealed && (len(data) != 1 || data[0] == RespOK):
		l.d.n.cryptoErrors.Add(1)
		l.needLink = true
		return reply{}, fmt.Errorf("%w: %s: plain reply % X to an encrypted command", errCrypto, name, data)
	}
	if len(data) == 0 {
		return reply{}, fmt.Errorf("ssp: %s: empty reply: %w", name, ErrUnknownReply)
	}
	r := reply{code: data[0], data: data[1:], sealed: sealedReply}
	if r.code != RespOK {
		l.d.n.refused.Add(1)
		if r.code == RespKeyNotSet && l.cfg.Encrypt {
			l.needLink = true
		}
		return r, &ReplyError{Cmd: p.cmd, Code: r.code}
	}
	return r, nil
}

// connect starts a session: SYNC (the unit's next expected flag is clear), the key exchange
// for eSSP, then HOST PROTOCOL VERSION (encrypted when keys are set: a unit with
// encryption mandatory answers everything else KEY NOT SET until keys exist).
func (l *loop) connect(ctx context.Context) error {
	l.cipher, l.count = nil, 0
	if _, err := l.exchange(ctx, CmdSync, nil); err != nil {
		return err
	}
	if l.cfg.Encrypt {
		if err := l.negotiate(ctx); err != nil {
			return err
		}
	}
	v := l.cfg.ProtocolVersion
	_, err := l.exchange(ctx, CmdHostProtocol, []byte{v})
	if errors.Is(err, ErrFail) && v > 6 {
		l.log.Info("unit refuses the protocol version; asking for 6", "version", v)
		v = 6
		_, err = l.exchange(ctx, CmdHostProtocol, []byte{v})
	}
	if err != nil {
		if !isRefusal(err) {
			return err
		}
		// The events this driver reads have the same length in every version up to 8, so
		// a unit stuck on an older version still works; say so once per session.
		l.emit(ctx, acceptor.Event{Kind: acceptor.ProtocolError, Code: int(CmdHostProtocol),
			Detail: fmt.Sprintf("unit refuses host protocol version %d: %v", v, err)})
	}
	l.needLink = false
	return nil
}

// negotiate runs the eSSP key exchange and installs the new key with the counter at zero.
func (l *loop) negotiate(ctx context.Context) error {
	kx, err := NewKeyExchange(l.cfg.Rand, l.cfg.PrimeBits)
	if err != nil {
		return err
	}
	le := func(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }
	if _, err := l.exchange(ctx, CmdSetGenerator, le(kx.Generator)); err != nil {
		return err
	}
	if _, err := l.exchange(ctx, CmdSetModulus, le(kx.Modulus)); err != nil {
		return err
	}
	r, err := l.exchange(ctx, CmdRequestKeyExchange, le(kx.HostInter()))
	if err != nil {
		return err
	}
	if len(r.data) < 8 {
		return fmt.Errorf("ssp: request key exchange: reply of %d bytes: %w", len(r.data), ErrUnknownReply)
	}
	slave := binary.LittleEndian.Uint64(r.data)
	l.cipher, l.count = NewCipher(MakeKey(l.cfg.FixedKey, kx.Key(slave))), 0
	l.d.n.keyExchanges.Add(1)
	l.log.Info("eSSP keys negotiated")
	return nil
}

// poll sends POLL or POLL WITH ACK. In PollAuto a unit that refuses POLL WITH ACK gets POLL
// for the rest of the Run; KEY NOT SET with eSSP on is a lost key, not a refusal.
func (l *loop) poll(ctx context.Context) (reply, error) {
	r, err := l.exchange(ctx, l.pollCmd, nil)
	var re *ReplyError
	if err != nil && !l.pollFixed && errors.As(err, &re) && !(re.Code == RespKeyNotSet && l.cfg.Encrypt) {
		l.log.Info("unit refuses POLL WITH ACK; polling with POLL", "reply", fmt.Sprintf("%#02x", re.Code))
		l.pollCmd, l.pollFixed = CmdPoll, true
		return l.exchange(ctx, CmdPoll, nil)
	}
	if err == nil {
		if !l.pollFixed {
			l.log.Info("unit takes POLL WITH ACK")
		}
		l.pollFixed = true
		l.refused = 0
		l.pollFailures = 0
		if l.failedUnit {
			// Working again: report its state afresh, which clears the failure upstream.
			l.failedUnit = false
			l.reported = stateUnknown
		}
	}
	return r, err
}

// afterPoll checks the serial number after a gap and moves the start-up sequence on.
func (l *loop) afterPoll(ctx context.Context) {
	if l.link.Fatal() != nil || ctx.Err() != nil {
		return
	}
	if l.gap && l.phase == phaseRunning && !l.needLink {
		_ = l.checkSerial(ctx)
	}
	busy := notePath.has(l.state) || l.state == stateUnknown || l.escrow != escrowNone || l.powerUp != nil || l.ack != nil
	switch l.phase {
	case phaseRecover:
		if busy {
			return // the money logic resolves the note first; touch nothing
		}
		l.setPhase(phaseConfigure)
		fallthrough
	case phaseConfigure:
		if busy || l.needLink {
			return
		}
		if err := l.configure(ctx); err != nil {
			l.log.Warn("configuration failed; retrying on the next poll", "err", err)
			if !isRefusal(err) {
				l.failed(ctx, "configure", err)
			}
			return
		}
		l.setPhase(phaseRunning)
	}
}

func (l *loop) setPhase(p phase) {
	if l.phase != p {
		l.log.Debug("phase", "from", l.phase, "to", p)
		l.phase = p
	}
}

// configure reads the setup (once per Run, and again after a confirmed swap), checks the
// serial number, sets the configured channels and leaves the unit disabled.
func (l *loop) configure(ctx context.Context) error {
	if l.setup == nil {
		r, err := l.exchange(ctx, CmdSetupRequest, nil)
		if err != nil {
			return err
		}
		s, perr := ParseSetup(r.data)
		if perr != nil {
			l.emit(ctx, acceptor.Event{Kind: acceptor.ProtocolError, Code: int(CmdSetupRequest),
				Detail: fmt.Sprintf("%v: % X", perr, r.data)})
		}
		l.setup = &s
	}
	if err := l.checkSerial(ctx); err != nil {
		return err
	}
	var codes []int
	for c := range l.cfg.Denominations {
		codes = append(codes, c)
	}
	mask, _ := InhibitMask(codes)
	if _, err := l.exchange(ctx, CmdSetInhibits, mask[:]); err != nil {
		return err
	}
	_, err := l.exchange(ctx, CmdDisable, nil)
	l.onDisableReply(err)
	if err != nil {
		return err
	}
	if !l.identified {
		l.identified = true
		l.identify(ctx)
	}
	return nil
}

// identify publishes what the setup said and compares the unit's channel table with the
// configured one; the configured table is used either way.
func (l *loop) identify(ctx context.Context) {
	s := *l.setup
	unit := s.Denominations()
	l.d.setInfo(func(i *acceptor.Info) {
		i.Model = UnitTypeName(s.UnitType)
		i.Firmware = formatFirmware(s.Firmware)
		i.Denominations = unit
	})
	l.emit(ctx, acceptor.Event{Kind: acceptor.Identified, Detail: fmt.Sprintf(
		"%s firmware %s dataset %s protocol %d serial %s", UnitTypeName(s.UnitType),
		formatFirmware(s.Firmware), s.Country, s.ProtocolVersion, formatSerial(l.serial))})
	var mismatches []string
	for _, c := range s.Channels {
		n, ok := s.Note(c)
		want, configured := l.cfg.Denominations[c.Number]
		switch {
		case !ok:
			continue
		case !configured:
			mismatches = append(mismatches, fmt.Sprintf("channel %d: unit %d %s, not configured", c.Number, n.ValueMinor, n.Currency))
		case n.ValueMinor != want.ValueMinor || n.Currency != want.Currency:
			mismatches = append(mismatches, fmt.Sprintf("channel %d: unit %d %s, configured %d %s", c.Number, n.ValueMinor, n.Currency, want.ValueMinor, want.Currency))
		}
	}
	for c, want := range l.cfg.Denominations {
		if _, ok := unit[c]; !ok && len(s.Channels) > 0 {
			mismatches = append(mismatches, fmt.Sprintf("channel %d: configured %d %s, unit has none", c, want.ValueMinor, want.Currency))
		}
	}
	if len(mismatches) > 0 {
		slices.Sort(mismatches)
		detail := "channel table differs from the unit's (the configured table is used): " + strings.Join(mismatches, "; ")
		l.log.Warn(detail)
		l.emit(ctx, acceptor.Event{Kind: acceptor.ProtocolError, Code: int(CmdSetupRequest), Detail: detail})
	}
}

// checkSerial reads the serial number and compares it with the one this Run knows: a unit
// that answers with another serial after a gap or a reset was swapped.
func (l *loop) checkSerial(ctx context.Context) error {
	r, err := l.exchange(ctx, CmdGetSerial, nil)
	if err != nil {
		return err
	}
	if len(r.data) < 4 {
		l.emit(ctx, acceptor.Event{Kind: acceptor.ProtocolError, Code: int(CmdGetSerial),
			Detail: fmt.Sprintf("serial number reply % X", r.data)})
		l.gap = false
		return nil
	}
	s := binary.BigEndian.Uint32(r.data)
	l.gap = false
	if !l.haveSerial {
		l.haveSerial, l.serial = true, s
		if want := l.cfg.ExpectedSerial; want != 0 && s != want {
			l.serial = want
		} else {
			l.d.setInfo(func(i *acceptor.Info) { i.Serial = formatSerial(s) })
			return nil
		}
	}
	if s == l.serial || (l.swapped && s == l.swapSerial) {
		return nil
	}
	l.swapped, l.swapSerial = true, s
	detail := fmt.Sprintf("unit swapped: serial %s -> %s", formatSerial(l.serial), formatSerial(s))
	l.log.Error(detail)
	l.emit(ctx, acceptor.Event{Kind: acceptor.Failure, Code: CodeUnitSwapped, Detail: detail})
	if commandTable[CmdDisable].legal.has(l.state) {
		_, err := l.exchange(ctx, CmdDisable, nil)
		l.onDisableReply(err)
	}
	return nil
}

// serve carries out a request from the API.
func (l *loop) serve(ctx context.Context, r request) error {
	switch r.kind {
	case reqEnable:
		if l.swapped {
			return ErrUnitSwapped
		}
		if len(l.unrecorded) > 0 {
			return ErrCreditPending
		}
		mask, err := InhibitMask(r.codes)
		if err != nil {
			return err
		}
		if _, err := l.exchange(ctx, CmdSetInhibits, mask[:]); err != nil {
			return err
		}
		_, err = l.exchange(ctx, CmdEnable, nil)
		if err == nil {
			l.enabled, l.enabledKnown = true, true
		}
		return err
	case reqInhibit:
		_, err := l.exchange(ctx, CmdDisable, nil)
		l.onDisableReply(err)
		return err
	case reqReset:
		if _, err := l.exchange(ctx, CmdReset, nil); err != nil {
			return err
		}
		// The unit restarts: SLAVE RESET follows, and the link must be set up again.
		l.needLink = true
		l.enabled, l.enabledKnown = false, true
		return nil
	case reqCounters:
		rep, err := l.exchange(ctx, CmdGetCounters, nil)
		if err != nil {
			return err
		}
		c, err := ParseCounters(rep.data)
		if err != nil {
			return err
		}
		*r.counters = c
		return nil
	case reqConfirmSwap:
		if !l.swapped {
			return ErrNoSwap
		}
		l.log.Warn("unit swap confirmed", "old", l.serial, "new", l.swapSerial)
		l.swapped, l.serial = false, l.swapSerial
		l.reported = stateUnknown // the state is reported again: the swap is settled
		l.d.setInfo(func(i *acceptor.Info) { i.Serial = formatSerial(l.serial) })
		l.setup, l.identified = nil, false
		l.setPhase(phaseConfigure)
		return nil
	}
	return fmt.Errorf("ssp: unknown request %d", r.kind)
}

func (l *loop) onDisableReply(err error) {
	if err == nil {
		l.enabled, l.enabledKnown = false, true
	}
}

// shutdown finishes what is in flight and disables the unit, best effort, so no note is
// taken while the host is away.
func (l *loop) shutdown(ctx context.Context) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.cfg.ShutdownTimeout)
	defer cancel()
	if l.unanswered != nil {
		l.flush(sctx)
	}
	if l.escrow == escrowStack && l.unanswered == nil {
		// The handler recorded its intent and said Stack: honour it; the credit is reported
		// to the next Run.
		if r, err := l.poll(sctx); err == nil {
			l.onPoll(sctx, r)
		}
	}
	if l.unanswered == nil && !l.needLink && commandTable[CmdDisable].legal.has(l.state) {
		if _, err := l.exchange(sctx, CmdDisable, nil); err != nil {
			l.log.Warn("disable on shutdown failed", "err", err)
		}
	}
	for _, p := range l.unrecorded {
		l.log.Error("credit never recorded; Run ends with it in memory only", "report", p.String())
	}
}

func (l *loop) emit(ctx context.Context, e acceptor.Event) {
	l.log.Debug("event", "event", e.String())
	l.h.Event(ctx, e)
}
