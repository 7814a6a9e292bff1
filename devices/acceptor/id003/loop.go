package id003

import (
	"bytes"
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

	phase      phase
	state      unitState
	lastStatus byte
	lastArg    byte
	seen       bool // a status was seen at least once
	lost       bool
	identified bool

	note     acceptor.Note // the note in the path, from its escrow report
	haveNote bool
	// escrow episode: from the first ESCROW/HOLDING poll until the unit leaves them
	inEscrow  bool
	decision  acceptor.Decision // 0 until the handler was asked in this episode
	actionOK  bool              // the unit acknowledged the command for the decision
	credited  bool              // Credited returned nil for the current VEND VALID
	returning bool              // a RETURNING was seen; Returned follows at idle
	// powerUp: whether the handler recorded the current power-up report, so the unit may
	// be reset.
	powerUp acceptor.PowerUpGate
}

// step is one poll cycle; it returns the time until the next.
func (l *loop) step(ctx context.Context) time.Duration {
	l.cycle(ctx)
	if l.lost {
		return l.cfg.LostPollInterval
	}
	return l.cfg.PollInterval
}

// cycle is one poll: STATUS REQUEST, the money logic for the answer, then whatever the
// start-up sequence still needs.
func (l *loop) cycle(ctx context.Context) {
	f, err := l.exchange(ctx, CmdStatusRequest, nil)
	if err != nil && !errors.Is(err, acceptor.ErrRefused) {
		if l.link.Fatal() == nil && ctx.Err() == nil {
			l.commFailed(ctx, err)
		}
		return
	}
	// A refused STATUS REQUEST (reported as a ProtocolError) still proves the unit is there.
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
}

func (l *loop) commFailed(ctx context.Context, err error) {
	if l.lost {
		return
	}
	l.lost = true
	l.log.Warn("communication lost", "err", err)
	l.emit(ctx, acceptor.Event{Kind: acceptor.CommLost, Detail: err.Error()})
}

// advance moves the start-up sequence on, given the status just handled.
func (l *loop) advance(ctx context.Context) {
	if powerUpState.has(l.state) {
		if !l.powerUp.Recorded {
			// The handler has not recorded the report: a RESET now would make the unit
			// forget the note it reports. Keep it as it is and ask again at the next poll.
			return
		}
		l.setPhase(phaseNeedReset)
	}
	switch l.phase {
	case phaseProbing:
		switch {
		case l.state == stateFailure:
			l.setPhase(phaseNeedReset)
		case notePath.has(l.state):
			// A note is on its way; the money logic in onStatus resolves it. Touch nothing.
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
	if l.phase == phaseNeedConfig && quiet.has(l.state) && !powerUpState.has(l.state) {
		if err := l.configure(ctx); err != nil {
			l.log.Warn("configuration failed; retrying on the next poll", "err", err)
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

// configure sends the settings and leaves the unit inhibited; on the first pass it also
// reads the unit's version and currency table.
func (l *loop) configure(ctx context.Context) error {
	codes := make([]int, 0, len(l.cfg.Denominations))
	for c := range l.cfg.Denominations {
		if c >= FirstCode && c <= LastCode {
			codes = append(codes, c)
		}
	}
	bitmap, _ := DenominationBitmap(codes)
	sec := l.cfg.Security
	steps := []struct {
		cmd  byte
		data []byte
	}{
		{CmdSetDenoms, bitmap[:]},
		{CmdSetSecurity, []byte{byte(sec), byte(sec >> 8)}},
		{CmdSetCommMode, []byte{0x00}}, // polling mode
		{CmdSetInhibit, []byte{0x01}},
	}
	for _, s := range steps {
		if _, err := l.exchange(ctx, s.cmd, s.data); err != nil {
			return err
		}
	}
	if !l.identified {
		l.identified = true
		l.identify(ctx)
	}
	return nil
}

// identify reads the version and the currency table. Neither is needed to take money, so a
// unit that refuses them is only logged.
func (l *loop) identify(ctx context.Context) {
	if f, err := l.exchange(ctx, CmdVersion, nil); err != nil {
		l.log.Info("version request failed", "err", err)
	} else {
		text := strings.TrimSpace(strings.Map(func(r rune) rune {
			if r < 0x20 || r > 0x7E {
				return -1
			}
			return r
		}, string(f.Data)))
		model, firmware, _ := strings.Cut(text, " ")
		l.d.mu.Lock()
		l.d.info.Model, l.d.info.Firmware = model, strings.TrimSpace(firmware)
		l.d.mu.Unlock()
		l.emit(ctx, acceptor.Event{Kind: acceptor.Identified, Detail: text})
	}
	f, err := l.exchange(ctx, CmdCurrency, nil)
	if err != nil {
		l.log.Info("currency table request failed", "err", err)
		return
	}
	entries, err := ParseCurrencyTable(f.Data)
	if err != nil {
		l.emit(ctx, acceptor.Event{Kind: acceptor.ProtocolError, Code: int(CmdCurrency), Detail: err.Error()})
		return
	}
	unit := make(acceptor.Denominations, len(entries))
	var mismatches []string
	for _, e := range entries {
		n, ok := e.Note()
		unit[int(e.Code)] = n
		want, configured := l.cfg.Denominations[int(e.Code)]
		switch {
		case !configured:
			mismatches = append(mismatches, fmt.Sprintf("code %#x: unit %s, not configured", e.Code, describeEntry(e, n, ok)))
		case ok && (n.ValueMinor != want.ValueMinor || n.Currency != want.Currency):
			mismatches = append(mismatches, fmt.Sprintf("code %#x: unit %s, configured %d %s", e.Code, describeEntry(e, n, ok), want.ValueMinor, want.Currency))
		}
	}
	for c, want := range l.cfg.Denominations {
		if _, ok := unit[c]; !ok && len(entries) > 0 {
			mismatches = append(mismatches, fmt.Sprintf("code %#x: configured %d %s, unit has none", c, want.ValueMinor, want.Currency))
		}
	}
	l.d.mu.Lock()
	l.d.info.Denominations = unit
	l.d.mu.Unlock()
	if len(mismatches) > 0 {
		detail := "denomination table differs from the unit's (the configured table is used): " + strings.Join(mismatches, "; ")
		l.log.Warn(detail)
		l.emit(ctx, acceptor.Event{Kind: acceptor.ProtocolError, Code: int(CmdCurrency), Detail: detail})
	}
}

func describeEntry(e CurrencyEntry, n acceptor.Note, ok bool) string {
	if ok {
		return fmt.Sprintf("%d %s", n.ValueMinor, n.Currency)
	}
	return fmt.Sprintf("country %#x value %d×10^%d", e.Country, e.Value, e.Exponent)
}

// serve carries out a request from Enable, Inhibit or Reset.
func (l *loop) serve(ctx context.Context, r request) error {
	switch r.kind {
	case reqEnable:
		bitmap, err := DenominationBitmap(r.codes)
		if err != nil {
			return err
		}
		if _, err := l.exchange(ctx, CmdSetDenoms, bitmap[:]); err != nil {
			return err
		}
		_, err = l.exchange(ctx, CmdSetInhibit, []byte{0x00})
		return err
	case reqInhibit:
		_, err := l.exchange(ctx, CmdSetInhibit, []byte{0x01})
		return err
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
	return fmt.Errorf("id003: unknown request %d", r.kind)
}

// shutdown inhibits the unit, best effort, so no note is taken while the host is away.
func (l *loop) shutdown(ctx context.Context) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.cfg.ShutdownTimeout)
	defer cancel()
	if _, err := l.exchange(sctx, CmdSetInhibit, []byte{0x01}); err != nil {
		l.log.Warn("inhibit on shutdown failed", "err", err)
	}
}

var errCommError = errors.New("unit reported COMM ERROR")

// exchange is the one send path: it checks the command table, sends the frame, waits for the
// matching reply and re-sends on a timeout or a damaged reply, up to MaxRetries times (once
// while communication is lost). INVALID COMMAND is returned as acceptor.ErrRefused without a
// retry: the unit got the command and said no.
func (l *loop) exchange(ctx context.Context, cmd byte, data []byte) (Frame, error) {
	spec, ok := commandTable[cmd]
	if !ok {
		return Frame{}, fmt.Errorf("id003: command %#02x is not in the command table", cmd)
	}
	if !spec.legal.has(l.state) {
		return Frame{}, fmt.Errorf("id003: %s in state %s: %w", spec.name, l.state, ErrWrongState)
	}
	wire, err := Encode(cmd, data...)
	if err != nil {
		return Frame{}, err
	}
	timeout := l.cfg.ReplyTimeout
	if spec.reply == replyData {
		timeout += dataReplyExtra
	}
	attempts := 1 + l.cfg.MaxRetries
	if l.lost {
		attempts = 1
	}
	var last error
	for a := 0; a < attempts; a++ {
		if err := ctx.Err(); err != nil {
			return Frame{}, fmt.Errorf("id003: %s: %w", spec.name, err)
		}
		if a > 0 {
			l.d.n.retries.Add(1)
			// Whatever is buffered now is the stale start of a reply that never finished.
			l.link.ResetRx()
		}
		l.link.DrainStale()
		if err := l.link.Fatal(); err != nil {
			return Frame{}, err
		}
		if err := l.link.Write(wire); err != nil {
			if fatal := l.link.Fatal(); fatal != nil {
				return Frame{}, fatal
			}
			last = err
			continue
		}
		l.log.Debug("tx", "cmd", spec.name, "frame", fmt.Sprintf("% X", wire))
		if spec.reply == replyNone {
			return Frame{}, nil
		}
		f, err := l.link.Await(ctx, timeout, func(f Frame) (bool, error) { return l.answers(ctx, cmd, data, spec, f) })
		if err == nil {
			return f, nil
		}
		if fatal := l.link.Fatal(); fatal != nil {
			return Frame{}, fatal
		}
		if errors.Is(err, acceptor.ErrRefused) || ctx.Err() != nil {
			return Frame{}, fmt.Errorf("id003: %s: %w", spec.name, err)
		}
		last = err
	}
	return Frame{}, fmt.Errorf("id003: %s: %w after %d attempts: %w", spec.name, acceptor.ErrTimeout, attempts, last)
}

// answers tells whether f is the reply to cmd. COMM ERROR and INVALID COMMAND end the wait
// with an error; replies that do not fit the command are late answers to an earlier one.
func (l *loop) answers(ctx context.Context, cmd byte, data []byte, spec commandSpec, f Frame) (bool, error) {
	switch f.Cmd {
	case StCommError:
		l.d.n.commErrors.Add(1)
		l.emit(ctx, acceptor.Event{Kind: acceptor.ProtocolError, Code: int(StCommError),
			Detail: "unit reported COMM ERROR for " + spec.name})
		return false, errCommError
	case StInvalidCommand:
		l.d.n.refused.Add(1)
		l.emit(ctx, acceptor.Event{Kind: acceptor.ProtocolError, Code: int(StInvalidCommand),
			Detail: "unit reported INVALID COMMAND for " + spec.name})
		return false, acceptor.ErrRefused
	}
	return fits(cmd, data, spec.reply, f), nil
}

func fits(cmd byte, data []byte, kind replyKind, f Frame) bool {
	switch kind {
	case replyStatus:
		// Anything below the ACK/echo ranges is a status; an unknown one is reported by onStatus.
		return f.Cmd != CmdAck && f.Cmd < 0x80
	case replyACK:
		return f.Cmd == CmdAck && len(f.Data) == 0
	case replyEcho:
		return f.Cmd == cmd && bytes.Equal(f.Data, data)
	case replyData:
		return f.Cmd == cmd
	}
	return false
}

func (l *loop) emit(ctx context.Context, e acceptor.Event) {
	l.log.Debug("event", "event", e.String())
	l.h.Event(ctx, e)
}
