package hidscan

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"
)

// Device is an open input event device: the grabbed evdev node (Open), or a fake in tests.
type Device interface {
	// ReadEvents blocks until at least one event is there and fills buf from the front. It
	// returns an error wrapping os.ErrDeadlineExceeded when the read deadline passes first.
	ReadEvents(buf []Event) (int, error)
	// SetReadDeadline sets when a blocked ReadEvents gives up; the zero time means never.
	SetReadDeadline(t time.Time) error
}

// Config configures a Scanner. The zero value works.
type Config struct {
	// Suffix is the key that ends a code; "" means SuffixEnter.
	Suffix Suffix
	// InterCharTimeout abandons a line whose next key does not come within it (or, with
	// SuffixNone, ends the code); 0 means 200 ms.
	InterCharTimeout time.Duration
	// MaxLen caps a code in characters; 0 means 512 (a wallet payload is about 150).
	MaxLen int
	// OnError receives every rejected or abandoned line (ErrTooLong, ErrBadKey, ErrDropped,
	// ErrIncomplete). It runs on Run's goroutine.
	OnError func(err error)
	Logger  *slog.Logger // nil discards
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Scanner reads codes from a HID keyboard-wedge scanner.
type Scanner struct {
	dev Device
	cfg Config
	log *slog.Logger
	dec *decoder
}

// New returns a Scanner reading dev. An unknown Config.Suffix is treated as SuffixEnter;
// check it with ParseSuffix first.
func New(dev Device, cfg Config) *Scanner {
	if cfg.InterCharTimeout <= 0 {
		cfg.InterCharTimeout = 200 * time.Millisecond
	}
	if cfg.MaxLen <= 0 {
		cfg.MaxLen = 512
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	suffix, err := ParseSuffix(string(cfg.Suffix))
	if err != nil {
		suffix = SuffixEnter
	}
	cfg.Suffix = suffix
	s := &Scanner{dev: dev, cfg: cfg, log: cfg.Logger, dec: newDecoder(cfg.MaxLen, suffix)}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s
}

// probe is how long Run looks for events already queued when the inter-character deadline
// passed: a reader that was descheduled past the deadline must not cut a code whose next key
// is waiting in the kernel's buffer.
const probe = 5 * time.Millisecond

// Run reads codes and calls onCode for each, on Run's own goroutine (keep it short: hand the
// code to a channel). It returns nil when ctx is cancelled, or the device's error (ENODEV
// when the scanner is unplugged). Run is not reentrant: one Run per Scanner at a time.
func (s *Scanner) Run(ctx context.Context, onCode func(code string)) error {
	dl := s.dev
	released := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(released)
		_ = dl.SetReadDeadline(time.Unix(1, 0))
	})
	defer func() {
		if !stop() {
			<-released
		}
		_ = dl.SetReadDeadline(time.Time{})
	}()
	deliver := func(r result, ok bool) {
		switch {
		case !ok:
		case r.err != nil:
			s.log.Warn("hidscan: line rejected", "err", r.err)
			if s.cfg.OnError != nil {
				s.cfg.OnError(r.err)
			}
		default:
			s.log.Debug("hidscan: code", "len", len(r.code))
			onCode(r.code)
		}
	}
	timeout := s.cfg.InterCharTimeout
	// The last key of the unfinished line: when it was read, and the kernel's time of it.
	var lastRead, lastKey time.Time
	probing := false
	buf := make([]Event, 64)
	for {
		var deadline time.Time
		switch {
		case probing:
			deadline = s.cfg.Now().Add(probe)
		case s.dec.pending():
			deadline = lastRead.Add(timeout)
		}
		_ = s.dev.SetReadDeadline(deadline)
		// Checked after setting the deadline: a cancellation that raced with it has already
		// made ctx.Err non-nil, so it cannot be lost.
		if ctx.Err() != nil {
			return nil
		}
		n, err := s.dev.ReadEvents(buf)
		now := s.cfg.Now()
		for _, e := range buf[:n] {
			if e.Type == EvKey && s.dec.pending() && s.gap(lastRead, lastKey, now, e.Time) >= timeout {
				deliver(s.dec.abandon()) // stale partial: never glue it to this scan
			}
			deliver(s.dec.event(e))
			if e.Type == EvKey {
				lastRead, lastKey = now, e.Time
			}
		}
		if n > 0 {
			probing = false
		}
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, os.ErrDeadlineExceeded):
			if n > 0 || !s.dec.pending() {
				break
			}
			if !probing {
				probing = true // look once more before cutting the line
				break
			}
			probing = false
			deliver(s.dec.abandon())
		default:
			deliver(s.dec.abandon())
			return fmt.Errorf("hidscan: read: %w", err)
		}
	}
}

// gap is the time between the previous key and this one: by the kernel's timestamps when
// both have one (exact, whenever the reader ran), else by when they were read.
func (s *Scanner) gap(lastRead, lastKey, now, key time.Time) time.Duration {
	if !lastKey.IsZero() && !key.IsZero() {
		return key.Sub(lastKey)
	}
	return now.Sub(lastRead)
}
