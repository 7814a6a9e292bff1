package qrserial

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"
)

// Config configures a Scanner. The zero value works.
type Config struct {
	// InterCharTimeout abandons a line whose next byte does not come within it; 0 means
	// 200 ms. A scanner sends a code in one burst (about 1 ms a byte at 9600 baud).
	InterCharTimeout time.Duration
	// MaxLen caps a code in bytes; 0 means 512 (a wallet payload is about 150).
	MaxLen int
	// OnError receives every rejected or abandoned line (ErrTooLong, ErrBadByte,
	// ErrIncomplete), for the customer screen and alarms. It runs on Run's goroutine.
	OnError func(err error)
	Logger  *slog.Logger // nil discards
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Scanner reads codes from a serial line scanner.
type Scanner struct {
	port io.Reader
	cfg  Config
	log  *slog.Logger
	sp   splitter
}

// New returns a Scanner reading port.
func New(port io.Reader, cfg Config) *Scanner {
	if cfg.InterCharTimeout <= 0 {
		cfg.InterCharTimeout = 200 * time.Millisecond
	}
	if cfg.MaxLen <= 0 {
		cfg.MaxLen = 512
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Scanner{port: port, cfg: cfg, log: cfg.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.sp.max = cfg.MaxLen
	return s
}

type readDeadliner interface{ SetReadDeadline(time.Time) error }

// Run reads codes and calls onCode for each, on Run's own goroutine (keep it short: hand the
// code to a channel). It returns nil when ctx is cancelled, or the port's error (io.EOF when a
// USB scanner is unplugged). Run is not reentrant: one Run per Scanner at a time.
func (s *Scanner) Run(ctx context.Context, onCode func(code string)) error {
	var rd readDeadliner
	if d, ok := s.port.(readDeadliner); ok && d.SetReadDeadline(time.Time{}) == nil {
		rd = d
		released := make(chan struct{})
		stop := context.AfterFunc(ctx, func() {
			defer close(released)
			_ = d.SetReadDeadline(time.Unix(1, 0))
		})
		defer func() {
			if !stop() {
				<-released
			}
			_ = d.SetReadDeadline(time.Time{})
		}()
	}
	deliver := func(r result, ok bool) {
		switch {
		case !ok:
		case r.err != nil:
			if s.cfg.OnError != nil {
				// The caller counts and reports it: line noise must not cost a log line each.
				s.log.Debug("qrserial: line rejected", "err", r.err)
				s.cfg.OnError(r.err)
			} else {
				s.log.Warn("qrserial: line rejected", "err", r.err)
			}
		default:
			s.log.Debug("qrserial: code", "len", len(r.code))
			onCode(r.code)
		}
	}
	timeout := s.cfg.InterCharTimeout
	var last time.Time // when the last byte of the unfinished line arrived
	expired := func(now time.Time) bool { return s.sp.pending() && now.Sub(last) >= timeout }
	buf := make([]byte, 256)
	for {
		if rd != nil {
			// Wake up when the unfinished line times out, so the error is reported at once.
			var dl time.Time
			if s.sp.pending() {
				dl = last.Add(timeout)
			}
			_ = rd.SetReadDeadline(dl)
		}
		// Checked after setting the deadline: a cancellation that raced with it has already
		// made ctx.Err non-nil, so it cannot be lost.
		if ctx.Err() != nil {
			return nil
		}
		n, err := s.port.Read(buf)
		now := s.cfg.Now()
		if n > 0 {
			if expired(now) {
				deliver(s.sp.abandon()) // stale partial: never glue it to this scan
			}
			for _, b := range buf[:n] {
				deliver(s.sp.push(b))
			}
			last = now
		}
		switch {
		case err == nil:
			if n == 0 && expired(now) { // (0, nil): a serial read timeout, nothing yet
				deliver(s.sp.abandon())
			}
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, os.ErrDeadlineExceeded):
			if expired(now) {
				deliver(s.sp.abandon())
			}
		default:
			deliver(s.sp.abandon())
			return fmt.Errorf("qrserial: read: %w", err)
		}
	}
}

// Honeywell serial trigger commands (device facts in doc.go): SYN T CR starts a scan, SYN U CR stops it.
var (
	cmdTriggerOn  = []byte{0x16, 'T', '\r'}
	cmdTriggerOff = []byte{0x16, 'U', '\r'}
)

// StartScan sends the Honeywell serial trigger (SYN T CR), for scanners in manual trigger
// mode. It needs a writable port (ErrNotWritable otherwise).
func (s *Scanner) StartScan() error { return s.send(cmdTriggerOn) }

// StopScan sends the Honeywell trigger release (SYN U CR).
func (s *Scanner) StopScan() error { return s.send(cmdTriggerOff) }

func (s *Scanner) send(cmd []byte) error {
	w, ok := s.port.(io.Writer)
	if !ok {
		return ErrNotWritable
	}
	if _, err := w.Write(cmd); err != nil {
		return fmt.Errorf("qrserial: trigger: %w", err)
	}
	return nil
}
