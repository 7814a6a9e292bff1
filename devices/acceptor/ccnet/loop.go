package ccnet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/devices/internal/seriallink"
)

// phase is where the loop is in bringing the unit up.
type phase int

const (
	// phaseProbing: Run just started; look at what the unit is doing before touching it.
	phaseProbing phase = iota
	// phaseNeedReset: the unit reported a power-up (or, at start-up, a failure) and wants RESET.
	phaseNeedReset
	// phaseNeedConfig: send the settings as soon as no note is in the path.
	phaseNeedConfig
	// phaseRunning: configured; requests from Enable/Inhibit/Reset are served.
	phaseRunning
)

func (p phase) String() string {
	return [...]string{"probing", "need_reset", "need_config", "running"}[p]
}

// loop is the poll loop's state. Only the Run goroutine touches it.
type loop struct {
	d    *Driver
	h    acceptor.Handler
	link *seriallink.Link[Frame, request]
	cfg  Config
	log  *slog.Logger

	phase         phase
	state         unitState
	lastStatus    byte
	lastArg       int  // -1: no data byte
	seen          bool // a state was seen at least once
	lost          bool
	identified    bool
	identifyTries int
	busyUntil     time.Time // BUSY asked for silence until then

	note     acceptor.Note // the note in the path, from its escrow report
	haveNote bool
	// escrow episode: from the first ESCROW/HOLDING poll until the unit leaves them
	inEscrow  bool
	decision  acceptor.Decision // 0 until the handler was asked in this episode
	actionOK  bool              // the unit acknowledged the command for the decision
	holdSent  time.Time         // when the unit last acknowledged HOLD
	returning bool              // a RETURNING was seen; Returned follows
	// powerUp: whether the handler recorded the current power-up report, so the unit may
	// be reset.
	powerUp acceptor.PowerUpGate

	// credit point: a run of consecutive STACKED answers for one bill type is one episode
	stacked    bool
	creditNote acceptor.Note
	credited   bool // Credited returned nil for the current episode
	// pending holds credits of units that moved on from STACKED before Credited succeeded;
	// Credited is retried for them every cycle.
	pending []acceptor.Note

	// Replies the unit may still owe: attempts that got no reply in time (or whose write
	// failed) may yet be answered. CCNET has no sequence numbers and the host's ACK always
	// acknowledges the unit's last reply, which is the answer to the last command sent; a
	// frame taken while an earlier answer is owed may be that late answer, and ACKing it
	// would acknowledge the answer to the command just sent, unseen: a STACKED whose credit
	// is not journaled. So ordinary replies are ACKed only while nothing is owed (see
	// exchange). owedStatus counts answers to POLL, owedOther those to the other commands.
	owedStatus, owedOther int
	// lateFrame: onStatus is handling a late answer; its ACK would land on another reply.
	lateFrame bool
}

// step is one poll cycle; it returns the time until the next, longer while BUSY asked for
// silence.
func (l *loop) step(ctx context.Context) time.Duration {
	l.cycle(ctx)
	interval := l.cfg.PollInterval
	if l.lost {
		interval = l.cfg.LostPollInterval
	}
	if wait := time.Until(l.busyUntil); wait > interval {
		interval = wait
	}
	return interval
}

// cycle is one poll: pending credits first, then POLL, the money logic for the answer, then
// whatever the start-up sequence still needs.
func (l *loop) cycle(ctx context.Context) {
	l.retryPending(ctx)
	f, err := l.exchange(ctx, CmdPoll, nil)
	if err != nil && !errors.Is(err, acceptor.ErrRefused) {
		if l.link.Fatal() == nil && ctx.Err() == nil {
			l.commFailed(ctx, err)
		}
		return
	}
	// A refused POLL (reported as a ProtocolError) still proves the unit is there.
	if l.lost {
		l.lost = false
		l.log.Info("communication restored")
		l.emit(ctx, acceptor.Event{Kind: acceptor.CommRestored})
	}
	if err != nil {
		return
	}
	l.d.n.polls.Add(1)
	l.onStatus(ctx, f)
	if l.link.Fatal() == nil && ctx.Err() == nil {
		l.advance(ctx)
	}
	if l.owedStatus > 0 && l.owedOther == 0 && l.link.Fatal() == nil && ctx.Err() == nil && quiet.has(l.state) &&
		!powerUpState.has(l.state) && l.state != stateUnknown {
		l.resync(ctx)
	}
}

// resync asks for GET STATUS while a POLL answer is owed (and no other: with one of those
// owed too, its answer would prove nothing) and the unit is quiet. Its answer fits no POLL,
// so once it came every POLL answer owed from before it has come too or never will (the
// unit answers in order): POLL answers are ACKed again from then on. Until then they are
// used but not ACKed, except STACKED once credited and RETURNED (see exchange); withholding
// the ACK of any other answer costs nothing but politeness.
func (l *loop) resync(ctx context.Context) {
	if _, err := l.exchange(ctx, CmdGetStatus, nil); err != nil {
		l.log.Debug("resynchronising GET STATUS failed", "err", err)
	}
}

func (l *loop) commFailed(ctx context.Context, err error) {
	if l.lost {
		return
	}
	l.lost = true
	l.log.Warn("communication lost", "err", err)
	l.emit(ctx, acceptor.Event{Kind: acceptor.CommLost, Detail: err.Error()})
}

// advance moves the start-up sequence on, given the state just handled.
func (l *loop) advance(ctx context.Context) {
	if powerUpState.has(l.state) {
		if !l.powerUp.Recorded {
			// The handler has not recorded the report: a RESET now would make the unit
			// forget the note it reports. Keep it as it is and ask again at the next poll.
			return
		}
		l.setPhase(phaseNeedReset)
	}
	if l.phase == phaseProbing {
		switch {
		case l.state == stateFailure:
			l.setPhase(phaseNeedReset)
		case notePath.has(l.state) || l.state == stateUnknown:
			// A note is on its way (or the unit reports a state this driver does not know);
			// the money logic in onStatus resolves it. Touch nothing.
			return
		default:
			l.setPhase(phaseNeedConfig)
		}
	}
	if l.phase == phaseNeedReset {
		if _, err := l.exchange(ctx, CmdReset, nil); err != nil {
			l.log.Warn("reset failed; retrying on the next poll", "err", err)
			return
		}
		l.forgetNote()
		l.setPhase(phaseNeedConfig)
		return // configure once the unit reports its initialisation
	}
	if l.phase == phaseNeedConfig && quiet.has(l.state) && !powerUpState.has(l.state) && l.state != stateUnknown {
		if err := l.configure(ctx); err != nil {
			l.log.Warn("configuration failed; retrying on the next poll", "err", err)
			return
		}
		l.setPhase(phaseRunning)
		return
	}
	// A unit found enabled at start-up answers IDENTIFICATION only once inhibited.
	if l.phase == phaseRunning && !l.identified && infoStates.has(l.state) {
		l.identify(ctx)
	}
}

func (l *loop) setPhase(p phase) {
	if l.phase != p {
		l.log.Debug("phase", "from", l.phase, "to", p)
		l.phase = p
	}
}

// configure reads the unit's identity and bill table (once per Run, where the unit answers
// them), sends the security mask and leaves the unit inhibited.
func (l *loop) configure(ctx context.Context) error {
	if !l.identified && infoStates.has(l.state) {
		l.identify(ctx)
	}
	sec, _ := BillMask(l.cfg.HighSecurity)
	if _, err := l.exchange(ctx, CmdSetSecurity, sec[:]); err != nil {
		// Several models answer SET SECURITY with ILLEGAL COMMAND; acceptance works without it.
		if !errors.Is(err, acceptor.ErrRefused) {
			return err
		}
		l.log.Info("unit refused SET SECURITY; keeping its own security levels")
	}
	return l.setEnabled(ctx, [3]byte{})
}

func (l *loop) setEnabled(ctx context.Context, mask [3]byte) error {
	_, err := l.exchange(ctx, CmdEnableBillTypes, append(mask[:], AllTypes[:]...))
	return err
}

// identify reads GET STATUS, IDENTIFICATION and the bill table. None of them is needed to
// take money, so a unit that refuses them is only logged.
func (l *loop) identify(ctx context.Context) {
	// Asked again later if the unit refused (it answers ILLEGAL COMMAND outside the states
	// where identification is allowed, e.g. while reporting a credit recovered after a
	// power cut), but not forever.
	l.identifyTries++
	l.identified = l.identifyTries >= 5
	if f, err := l.exchange(ctx, CmdGetStatus, nil); err != nil {
		l.log.Info("get status failed", "err", err)
	} else if st, err := ParseStatus(f.Payload()); err == nil {
		l.log.Info("unit settings", "enabled", MaskTypes(st.Enabled), "high_security", MaskTypes(st.Security))
	}
	var identified *acceptor.Event
	if f, err := l.exchange(ctx, CmdIdentification, nil); err != nil {
		l.log.Info("identification failed", "err", err)
	} else if id, err := ParseIdentification(f.Payload()); err != nil {
		l.emit(ctx, acceptor.Event{Kind: acceptor.ProtocolError, Code: int(CmdIdentification), Detail: err.Error()})
	} else {
		l.d.mu.Lock()
		l.d.identity, l.d.haveID = id, true
		l.d.info.Model, l.d.info.Serial = id.PartNumber, id.SerialNumber
		l.d.mu.Unlock()
		identified = &acceptor.Event{Kind: acceptor.Identified, Detail: id.String()}
		l.identified = true
	}
	if f, err := l.exchange(ctx, CmdGetBillTable, nil); err != nil {
		l.log.Info("bill table request failed", "err", err)
	} else if entries, err := ParseBillTable(f.Payload()); err != nil {
		l.emit(ctx, acceptor.Event{Kind: acceptor.ProtocolError, Code: int(CmdGetBillTable), Detail: err.Error()})
	} else {
		l.compareTable(ctx, entries)
	}
	// Identified comes last, so Info is complete when a handler sees it.
	if identified != nil {
		l.emit(ctx, *identified)
	}
}

// compareTable records the unit's bill table in Info and reports where it differs from the
// configured one, which stays in use.
func (l *loop) compareTable(ctx context.Context, entries []BillEntry) {
	unit := make(acceptor.Denominations, len(entries))
	var mismatches []string
	for code, e := range entries {
		if !e.Used() {
			continue
		}
		n, ok := e.Note(code)
		unit[code] = n
		want, configured := l.cfg.Denominations[code]
		switch {
		case !configured:
			mismatches = append(mismatches, fmt.Sprintf("type %d: unit %s, not configured", code, describeEntry(e, n, ok)))
		case !ok || n.ValueMinor != want.ValueMinor || n.Currency != want.Currency:
			mismatches = append(mismatches, fmt.Sprintf("type %d: unit %s, configured %d %s", code, describeEntry(e, n, ok), want.ValueMinor, want.Currency))
		}
	}
	for code := range NumBillTypes {
		want, configured := l.cfg.Denominations[code]
		if _, ok := unit[code]; configured && !ok {
			mismatches = append(mismatches, fmt.Sprintf("type %d: configured %d %s, unit has none", code, want.ValueMinor, want.Currency))
		}
	}
	l.d.mu.Lock()
	l.d.info.Denominations = unit
	l.d.mu.Unlock()
	if len(mismatches) > 0 {
		detail := "bill table differs from the unit's (the configured table is used): " + strings.Join(mismatches, "; ")
		l.log.Warn(detail)
		l.emit(ctx, acceptor.Event{Kind: acceptor.ProtocolError, Code: int(CmdGetBillTable), Detail: detail})
	}
}

func describeEntry(e BillEntry, n acceptor.Note, ok bool) string {
	if ok {
		return fmt.Sprintf("%d %s", n.ValueMinor, n.Currency)
	}
	return e.String()
}

// serve carries out a request from Enable, Inhibit or Reset.
func (l *loop) serve(ctx context.Context, r request) error {
	switch r.kind {
	case reqEnable:
		mask, err := BillMask(r.codes)
		if err != nil {
			return err
		}
		return l.setEnabled(ctx, mask)
	case reqInhibit:
		return l.setEnabled(ctx, [3]byte{})
	case reqReset:
		if powerUpState.has(l.state) && !l.powerUp.Recorded {
			return acceptor.ErrNotRecorded
		}
		if _, err := l.exchange(ctx, CmdReset, nil); err != nil {
			return err
		}
		l.forgetNote()
		l.setPhase(phaseNeedConfig)
		return nil
	}
	return fmt.Errorf("ccnet: unknown request %d", r.kind)
}

// shutdown inhibits the unit, best effort, so no note is taken while the host is away.
func (l *loop) shutdown(ctx context.Context) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.cfg.ShutdownTimeout)
	defer cancel()
	if err := l.setEnabled(sctx, [3]byte{}); err != nil {
		l.log.Warn("inhibit on shutdown failed", "err", err)
	}
}

var errUnitNAK = errors.New("unit answered NAK")

// exchange is the one send path. It checks the command table, keeps the bus silent for
// CommandGap, sends the frame and waits for the matching reply. A damaged reply is answered
// by NAK, on which the unit sends the same reply again; a timeout or the unit's own NAK
// (it received our frame damaged) makes it send the command again; together at most
// MaxRetries times (once while communication is lost). Every reply other than ACK and NAK is
// acknowledged at once, except STACKED, whose ACK is the credit acknowledgement and is sent
// by onStacked. ILLEGAL COMMAND is returned as acceptor.ErrRefused without a retry: the unit
// got the command and said no.
func (l *loop) exchange(ctx context.Context, cmd byte, data []byte) (Frame, error) {
	spec, ok := commandTable[cmd]
	if !ok {
		return Frame{}, fmt.Errorf("ccnet: command %#02x is not in the command table", cmd)
	}
	if !spec.legal.has(l.state) {
		return Frame{}, fmt.Errorf("ccnet: %s in state %s: %w", spec.name, l.state, ErrWrongState)
	}
	wire, err := Encode(l.cfg.Address, cmd, data...)
	if err != nil {
		return Frame{}, err
	}
	nak, _ := Encode(l.cfg.Address, CmdNak)
	timeout := l.cfg.ReplyTimeout
	if spec.reply == replyData {
		timeout += dataReplyExtra
	}
	attempts := 1 + l.cfg.MaxRetries
	if l.lost {
		attempts = 1
	}
	sendNak := false // the next attempt asks the unit to repeat its damaged reply
	var last error
	for a := 0; a < attempts; a++ {
		if err := ctx.Err(); err != nil {
			return Frame{}, fmt.Errorf("ccnet: %s: %w", spec.name, err)
		}
		if a > 0 {
			l.d.n.retries.Add(1)
		}
		next := wire
		switch {
		case sendNak:
			next = nak
		case spec.reply != replyNone:
			if a > 0 {
				// Whatever is buffered now is the stale start of a reply that never finished.
				l.link.ResetRx()
			}
			l.link.DrainStaleFunc(func(f Frame) { l.late(ctx, f) })
			if err := l.link.Quiet(ctx, l.cfg.CommandGap); err != nil {
				return Frame{}, fmt.Errorf("ccnet: %s: %w", spec.name, err)
			}
		}
		sendNak = false
		if err := l.link.Fatal(); err != nil {
			return Frame{}, err
		}
		if err := l.link.Write(next); err != nil {
			if fatal := l.link.Fatal(); fatal != nil {
				return Frame{}, fatal
			}
			l.owe(spec) // the frame may have gone out and be answered
			last = err
			continue
		}
		l.log.Debug("tx", "cmd", spec.name, "frame", fmt.Sprintf("% X", next))
		if spec.reply == replyNone {
			return Frame{}, nil
		}
		f, err := l.link.Await(ctx, timeout, func(f Frame) (bool, error) { return l.answers(ctx, spec, f) })
		switch {
		case err == nil:
			l.settle(spec)
			switch {
			case spec.reply == replyACK:
			case spec.reply == replyStatus && f.Cmd == StStacked:
				// The credit acknowledgement: onStacked sends it once Credited returned nil.
			case l.owedStatus == 0 && l.owedOther == 0,
				spec.reply == replyStatus && f.Cmd == StReturned:
				// RETURNED waits for its ACK. ACKing it is safe even when f might be a late
				// answer: the unit's last reply is then the answer to a re-sent POLL, which
				// is RETURNED again or, from a unit that reports it once, a state a STACKED
				// cannot follow without an ESCROW and this driver's STACK.
				l.sendAck()
			default:
				l.log.Debug("reply not acknowledged: an earlier answer is still owed",
					"reply", f.String(), "owed_poll", l.owedStatus, "owed_other", l.owedOther)
			}
			return f, nil
		case l.link.Fatal() != nil:
			return Frame{}, l.link.Fatal()
		case errors.Is(err, acceptor.ErrRefused):
			if l.owedStatus == 0 && l.owedOther == 0 {
				l.sendAck() // ILLEGAL COMMAND is a message like any other
			}
			return Frame{}, fmt.Errorf("ccnet: %s: %w", spec.name, err)
		case ctx.Err() != nil:
			return Frame{}, fmt.Errorf("ccnet: %s: %w", spec.name, err)
		case errors.Is(err, seriallink.ErrDamaged):
			l.d.n.naksSent.Add(1)
			sendNak = true
		case errors.Is(err, seriallink.ErrNoReply):
			l.owe(spec)
		}
		last = err
	}
	return Frame{}, fmt.Errorf("ccnet: %s: %w after %d attempts: %w", spec.name, acceptor.ErrTimeout, attempts, last)
}

// owe records an attempt whose answer did not come in time but may still come.
func (l *loop) owe(spec commandSpec) {
	switch spec.reply {
	case replyNone:
		// The host's ACK and NAK: the unit never answers them.
	case replyStatus:
		l.owedStatus++
	default:
		l.owedOther++
	}
}

// settle updates what is owed once a reply to spec was taken. The unit answers in order, so
// a reply that can only answer the command just sent (no earlier answer of its kind is owed,
// and answers of the other kind never fit it) proves every answer owed from before it
// arrived or never will: the other count is cleared. A reply taken while one of its own kind
// is owed leaves the count as it is: either it is the late one, and the answer to the
// command just sent is owed now, or the late one is still to come.
func (l *loop) settle(spec commandSpec) {
	if spec.reply == replyStatus {
		if l.owedStatus == 0 {
			l.owedOther = 0
		}
		return
	}
	if l.owedOther == 0 {
		l.owedStatus = 0
	}
}

// late handles a frame that answers no command sent now: a late answer to an earlier one. It
// settles one owed answer of its kind and, when it is STACKED, goes to the credit logic like
// any POLL answer (without the ACK, which would land on the answer to the command just
// sent): a unit that reports STACKED once must not have its only report dropped, and one
// that repeats it sees the next report as the same credit.
func (l *loop) late(ctx context.Context, f Frame) {
	if f.Addr != l.cfg.Address {
		return
	}
	switch {
	case len(f.Data) == 0 && (f.Cmd == CmdNak || f.Cmd == RepIllegalCommand):
		// Either kind of command gets these: nothing can be settled.
	case len(f.Data) <= 1 && !(f.Cmd == CmdAck && len(f.Data) == 0):
		l.owedStatus = max(l.owedStatus-1, 0)
	default:
		l.owedOther = max(l.owedOther-1, 0)
	}
	if f.Cmd == StStacked && len(f.Data) == 1 {
		l.log.Warn("late STACKED answer taken as a credit report", "frame", f.String())
		l.lateFrame = true
		l.onStatus(ctx, f)
		l.lateFrame = false
	}
}

// sendAck acknowledges the reply just received. It goes out at once: the unit waits for it
// only briefly.
func (l *loop) sendAck() {
	if _, err := l.exchange(context.Background(), CmdAck, nil); err != nil {
		l.log.Debug("ack not sent", "err", err)
	}
}

// answers tells whether f is the reply to the command: frames from another address are
// skipped, NAK and ILLEGAL COMMAND end the wait with an error, replies that do not fit the
// command are late answers to an earlier one.
func (l *loop) answers(ctx context.Context, spec commandSpec, f Frame) (bool, error) {
	if f.Addr != l.cfg.Address {
		return false, nil
	}
	if len(f.Data) == 0 {
		switch f.Cmd {
		case CmdNak:
			l.d.n.naksReceived.Add(1)
			return false, errUnitNAK
		case RepIllegalCommand:
			l.d.n.refused.Add(1)
			l.emit(ctx, acceptor.Event{Kind: acceptor.ProtocolError, Code: int(RepIllegalCommand),
				Detail: "unit answered ILLEGAL COMMAND to " + spec.name})
			return false, acceptor.ErrRefused
		}
	}
	if !fits(spec, f) {
		l.late(ctx, f)
		return false, nil
	}
	return true, nil
}

func fits(spec commandSpec, f Frame) bool {
	ack := f.Cmd == CmdAck && len(f.Data) == 0
	switch spec.reply {
	case replyStatus:
		// A state is one byte, with at most one data byte; unknown ones go to onStatus.
		return !ack && len(f.Data) <= 1
	case replyACK:
		return ack
	case replyData:
		return len(f.Data)+1 >= spec.minData
	}
	return false
}

func (l *loop) emit(ctx context.Context, e acceptor.Event) {
	l.log.Debug("event", "event", e.String())
	l.h.Event(ctx, e)
}
