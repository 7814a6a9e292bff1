package escpossim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/kioskd/kioskd/hw-sim/linespeed"
)

// Config configures a Sim. The zero value works.
type Config struct {
	Logger *slog.Logger // nil discards
	// MaxDocuments bounds the documents kept (oldest dropped first); 0 means 100.
	MaxDocuments int
	// Now stamps documents; nil means time.Now.
	Now func() time.Time
	// Line, when on, paces Serve's port at a serial line's speed (linespeed.Printer is 9600
	// 8N1): the printer takes the host's bytes no faster than the line brings them, so a
	// 1,000-byte receipt at 9600 baud is printed (and cut) about a second after it was sent,
	// and a status request behind it is answered only then. The zero Line is a pty's speed.
	Line linespeed.Line
	// ReplyTimeout bounds writing one status reply on ports that support write deadlines (a
	// host that stopped reading must not wedge the emulator); 0 means 2 s.
	ReplyTimeout time.Duration
}

// Sim is an emulated ESC/POS printer. Its methods are safe for concurrent use.
type Sim struct {
	cfg Config
	log *slog.Logger

	mu          sync.Mutex
	dec         *decoder
	paperOut    bool
	nearEnd     bool
	coverOpen   bool
	cutterError bool
	bytesIn     int64
	statusReqs  int64
	replies     []byte // status replies produced by the bytes being decoded
}

// New returns an emulated printer with paper, cover closed, no error.
func New(cfg Config) *Sim {
	if cfg.MaxDocuments <= 0 {
		cfg.MaxDocuments = 100
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ReplyTimeout <= 0 {
		cfg.ReplyTimeout = 2 * time.Second
	}
	s := &Sim{cfg: cfg, log: cfg.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.dec = s.newDecoder()
	return s
}

func (s *Sim) newDecoder() *decoder {
	d := newDecoder()
	d.now = s.cfg.Now
	d.maxDocs = s.cfg.MaxDocuments
	d.printing = s.printingLocked
	d.status = func(n byte) {
		s.statusReqs++
		if b, ok := s.statusByteLocked(n); ok {
			s.replies = append(s.replies, b)
		}
	}
	// GS g 2: counters 50 (resettable) and 178 (cumulative) count autocutter operations; the
	// reply is 0x5F, the value in ASCII decimal, NUL. Other counters answer 0.
	d.counter = func(n uint16) {
		var v uint64
		if n == 50 || n == 178 {
			v = d.cuts
		}
		s.replies = append(s.replies, 0x5F)
		s.replies = strconv.AppendUint(s.replies, v, 10)
		s.replies = append(s.replies, 0)
	}
	return d
}

// printingLocked reports whether output reaches paper: a real printer stops on paper end, an
// open cover and a cutter error.
func (s *Sim) printingLocked() bool { return !s.paperOut && !s.coverOpen && !s.cutterError }

// Status bits of the DLE EOT replies (Device facts of devices/printer/escpos). Bits 1 and 4 are fixed to 1 and bits 0
// and 7 to 0 in every reply, which is how a host tells a status byte from noise.
const (
	fixedBits = 0x12

	bitOffline         = 0x08 // n=1
	bitWaitingRecovery = 0x20 // n=1
	bitCoverOpen       = 0x04 // n=2
	bitPaperEndStop    = 0x20 // n=2
	bitError           = 0x40 // n=2
	bitCutterError     = 0x08 // n=3
	bitNearEnd         = 0x0c // n=4, both near-end sensor bits
	bitPaperEnd        = 0x60 // n=4, both paper-end sensor bits
)

func (s *Sim) statusByteLocked(n byte) (byte, bool) {
	b := byte(fixedBits)
	switch n {
	case 1:
		if !s.printingLocked() {
			b |= bitOffline
		}
		if s.cutterError {
			b |= bitWaitingRecovery
		}
	case 2:
		if s.coverOpen {
			b |= bitCoverOpen
		}
		if s.paperOut {
			b |= bitPaperEndStop
		}
		if s.cutterError {
			b |= bitError
		}
	case 3:
		if s.cutterError {
			b |= bitCutterError
		}
	case 4:
		if s.nearEnd || s.paperOut { // an empty roll also trips the near-end sensor
			b |= bitNearEnd
		}
		if s.paperOut {
			b |= bitPaperEnd
		}
	default:
		return 0, false // not a status a generic printer answers
	}
	return b, true
}

type readDeadliner interface{ SetReadDeadline(time.Time) error }
type writeDeadliner interface{ SetWriteDeadline(time.Time) error }

// Serve reads the host's bytes from port, prints them and answers status requests, until ctx
// is cancelled (it returns nil) or the port fails. With Config.Line on, the port is paced at
// that line's speed. The caller owns the port and closes it.
// Where the port supports read deadlines (net.Conn, a pollable *os.File) cancellation
// releases a blocked read at once; otherwise Serve returns at the next read, so cancel and
// then close the port.
func (s *Sim) Serve(ctx context.Context, port io.ReadWriter) error {
	port = linespeed.Wrap(port, s.cfg.Line)
	rd, hasRD := port.(readDeadliner)
	if hasRD && rd.SetReadDeadline(time.Time{}) != nil {
		hasRD = false // e.g. a regular file: no deadlines
	}
	wd, hasWD := port.(writeDeadliner)
	if hasWD && wd.SetWriteDeadline(time.Time{}) != nil {
		hasWD = false
	}
	if hasRD {
		released := make(chan struct{})
		stop := context.AfterFunc(ctx, func() {
			defer close(released)
			_ = rd.SetReadDeadline(time.Unix(1, 0))
			if hasWD {
				_ = wd.SetWriteDeadline(time.Unix(1, 0))
			}
		})
		defer func() {
			if !stop() {
				<-released
			}
			_ = rd.SetReadDeadline(time.Time{})
			if hasWD {
				_ = wd.SetWriteDeadline(time.Time{})
			}
		}()
	}
	buf := make([]byte, 4096)
	for {
		if ctx.Err() != nil {
			return nil
		}
		n, err := port.Read(buf)
		if n > 0 {
			if werr := s.consume(ctx, port, wd, hasWD, buf[:n]); werr != nil {
				return werr
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, io.EOF) {
				return nil // the host closed its end
			}
			return fmt.Errorf("escpossim: read: %w", err)
		}
	}
}

// consume decodes one chunk and sends the status replies it produced, in order.
func (s *Sim) consume(ctx context.Context, port io.Writer, wd writeDeadliner, hasWD bool, p []byte) error {
	s.mu.Lock()
	s.bytesIn += int64(len(p))
	s.dec.write(p)
	replies := s.replies
	s.replies = nil
	s.mu.Unlock()
	if len(replies) == 0 {
		return nil
	}
	if hasWD {
		_ = wd.SetWriteDeadline(time.Now().Add(s.cfg.ReplyTimeout))
		defer func() { _ = wd.SetWriteDeadline(time.Time{}) }()
	}
	if _, err := port.Write(replies); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			s.log.Warn("escpossim: status reply dropped: host is not reading", "bytes", len(replies))
			return nil
		}
		return fmt.Errorf("escpossim: write status: %w", err)
	}
	return nil
}

// Documents returns copies of the documents printed so far, oldest first. The last one is
// still open (Cut false) if output arrived after the last cut.
func (s *Sim) Documents() []Document {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dec.snapshot(true)
}

// SetPaperOut empties (true) or reloads (false) the paper roll.
func (s *Sim) SetPaperOut(v bool) { s.set(&s.paperOut, v, "paper_out") }

// SetNearEnd trips the paper near-end sensor; printing goes on.
func (s *Sim) SetNearEnd(v bool) { s.set(&s.nearEnd, v, "near_end") }

// SetCoverOpen opens or closes the cover.
func (s *Sim) SetCoverOpen(v bool) { s.set(&s.coverOpen, v, "cover_open") }

// SetCutterError raises or clears an autocutter error (a recoverable error on real printers,
// cleared after the jam is removed).
func (s *Sim) SetCutterError(v bool) { s.set(&s.cutterError, v, "cutter_error") }

func (s *Sim) set(f *bool, v bool, name string) {
	s.mu.Lock()
	*f = v
	s.mu.Unlock()
	s.log.Info("escpossim: fault", "fault", name, "on", v)
}

// Reset is a power cycle with a fresh roll: documents, faults and print modes are cleared.
func (s *Sim) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.paperOut, s.nearEnd, s.coverOpen, s.cutterError = false, false, false, false
	s.bytesIn, s.statusReqs, s.replies = 0, 0, nil
	s.dec = s.newDecoder()
}

// State is a snapshot for a control panel or a test, JSON-ready.
type State struct {
	Online      bool    `json:"online"`
	PaperOut    bool    `json:"paper_out"`
	NearEnd     bool    `json:"near_end"`
	CoverOpen   bool    `json:"cover_open"`
	CutterError bool    `json:"cutter_error"`
	Status      [4]byte `json:"status"` // what DLE EOT 1..4 would answer now
	Documents   int     `json:"documents"`
	BytesIn     int64   `json:"bytes_in"`
	StatusReqs  int64   `json:"status_requests"`
}

// State returns the current state.
func (s *Sim) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := State{
		Online:      s.printingLocked(),
		PaperOut:    s.paperOut,
		NearEnd:     s.nearEnd,
		CoverOpen:   s.coverOpen,
		CutterError: s.cutterError,
		Documents:   len(s.dec.docs),
		BytesIn:     s.bytesIn,
		StatusReqs:  s.statusReqs,
	}
	for i := range st.Status {
		st.Status[i], _ = s.statusByteLocked(byte(i + 1))
	}
	if s.dec.doc != nil {
		st.Documents++
	}
	return st
}
