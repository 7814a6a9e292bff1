// Package scannersim emulates a serial line QR scanner for tests and the hw-sim demo: what is
// "scanned" through the control API is written to the port as the scanner would send it, the
// payload followed by a suffix (CR LF by default; Device facts of devices/scanner/qrserial).
// Garbage and slow typing (bytes spread out in time) exercise the driver's rejection and
// inter-character timeout. DemoWallet builds valid signed wallet payloads (sync/CONTRACT.md
// §10) with walletsim.
package scannersim

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/kioskd/kioskd/hw-sim/linespeed"
	"github.com/kioskd/kioskd/hw-sim/walletsim"
)

// ErrBusy is returned when scans are queued faster than Serve writes them.
var ErrBusy = errors.New("scannersim: scan queue full")

// Config configures a Sim. The zero value works.
type Config struct {
	// Suffix follows every Scan payload; "" means CR LF. Use "\r" or "\n" for scanners
	// configured that way.
	Suffix string
	// QueueLen bounds the scans waiting to be written; 0 means 16.
	QueueLen int
	// Line, when on, paces the scanner's output at a serial line's speed (linespeed.Scanner
	// is 9600 8N1): a scan's bytes reach the host one character time apart.
	Line linespeed.Line
	// WriteTimeout bounds one write on ports with write deadlines; 0 means 2 s.
	WriteTimeout time.Duration
	Logger       *slog.Logger // nil discards
}

type scan struct {
	data []byte
	gap  time.Duration // between bytes; 0 writes at once
}

// Sim is an emulated scanner. Its methods are safe for concurrent use.
type Sim struct {
	cfg   Config
	log   *slog.Logger
	queue chan scan

	mu      sync.Mutex
	scanned int
	bytes   int64
}

// New returns an emulated scanner.
func New(cfg Config) *Sim {
	if cfg.Suffix == "" {
		cfg.Suffix = "\r\n"
	}
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = 16
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 2 * time.Second
	}
	s := &Sim{cfg: cfg, log: cfg.Logger, queue: make(chan scan, cfg.QueueLen)}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s
}

// Scan queues payload + suffix, sent in one burst as a real scanner does.
func (s *Sim) Scan(payload string) error {
	return s.enqueue(scan{data: []byte(payload + s.cfg.Suffix)})
}

// ScanSlow queues payload + suffix with gap between consecutive bytes, to exercise the
// driver's inter-character timeout.
func (s *Sim) ScanSlow(payload string, gap time.Duration) error {
	return s.enqueue(scan{data: []byte(payload + s.cfg.Suffix), gap: gap})
}

// ScanRaw queues b exactly as given (noise, a partial line, control bytes).
func (s *Sim) ScanRaw(b []byte) error {
	return s.enqueue(scan{data: append([]byte(nil), b...)})
}

func (s *Sim) enqueue(sc scan) error {
	select {
	case s.queue <- sc:
		return nil
	default:
		return ErrBusy
	}
}

// State is a snapshot for a control panel.
type State struct {
	Scanned int   `json:"scanned"`
	Queued  int   `json:"queued"`
	Bytes   int64 `json:"bytes"`
}

// State returns counters.
func (s *Sim) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return State{Scanned: s.scanned, Queued: len(s.queue), Bytes: s.bytes}
}

type writeDeadliner interface{ SetWriteDeadline(time.Time) error }

// Serve writes queued scans to port until ctx is cancelled (it returns nil) or a write fails.
// The caller owns the port. On ports with write deadlines a write is bounded by WriteTimeout
// and released by cancellation; on others a write blocks until the reader takes the bytes or
// the owner closes the port. With Config.Line on, the port is paced at that line's speed.
func (s *Sim) Serve(ctx context.Context, port io.Writer) error {
	port = linespeed.WrapWriter(port, s.cfg.Line)
	wd, hasWD := port.(writeDeadliner)
	if hasWD && wd.SetWriteDeadline(time.Time{}) != nil {
		hasWD = false
	}
	write := func(b []byte) error {
		var release func()
		if hasWD {
			_ = wd.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
			done := make(chan struct{})
			stop := context.AfterFunc(ctx, func() {
				defer close(done)
				_ = wd.SetWriteDeadline(time.Unix(1, 0))
			})
			release = func() {
				if !stop() {
					<-done
				}
				_ = wd.SetWriteDeadline(time.Time{})
			}
		}
		_, err := port.Write(b)
		if release != nil {
			release()
		}
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.bytes += int64(len(b))
		s.mu.Unlock()
		return nil
	}
	for {
		var sc scan
		select {
		case <-ctx.Done():
			return nil
		case sc = <-s.queue:
		}
		var err error
		if sc.gap <= 0 {
			err = write(sc.data)
		} else {
			err = s.writeSlow(ctx, sc, write)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("scannersim: write: %w", err)
		}
		s.mu.Lock()
		s.scanned++
		s.mu.Unlock()
	}
}

func (s *Sim) writeSlow(ctx context.Context, sc scan, write func([]byte) error) error {
	t := time.NewTimer(sc.gap)
	defer t.Stop()
	for i := range sc.data {
		if i > 0 {
			t.Reset(sc.gap)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-t.C:
			}
		}
		if err := write(sc.data[i : i+1]); err != nil {
			return err
		}
	}
	return nil
}

// DemoWallet is a wallet app showing its payment QR code: each Payload is freshly signed with
// a new nonce, valid for TTL from Now.
type DemoWallet struct {
	Key     ed25519.PrivateKey
	KeyID   string
	Account string
	TTL     time.Duration    // 0 means 2 minutes
	Now     func() time.Time // nil means time.Now
}

// Payload returns a signed IMW1 payload (sync/CONTRACT.md §10).
func (w DemoWallet) Payload() string {
	now, ttl := time.Now, w.TTL
	if w.Now != nil {
		now = w.Now
	}
	if ttl <= 0 {
		ttl = 2 * time.Minute
	}
	return walletsim.Sign(w.Key, w.KeyID, w.Account, now().Add(ttl), walletsim.NewNonce())
}

// ScanWallet scans a fresh payload of w.
func (s *Sim) ScanWallet(w DemoWallet) error { return s.Scan(w.Payload()) }
