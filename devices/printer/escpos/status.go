package escpos

import (
	"errors"
	"fmt"
	"strings"
)

// Errors. Print and Status wrap them (test with errors.Is); Status.Err returns the one that
// best names why a printer is not ready.
var (
	ErrTimeout       = errors.New("escpos: printer did not answer")
	ErrBadReply      = errors.New("escpos: reply is not a status byte")
	ErrOffline       = errors.New("escpos: printer offline")
	ErrPaperOut      = errors.New("escpos: paper out")
	ErrCoverOpen     = errors.New("escpos: cover open")
	ErrCutter        = errors.New("escpos: cutter error")
	ErrUnrecoverable = errors.New("escpos: unrecoverable printer error")
	ErrPrinterError  = errors.New("escpos: printer error")     // recoverable, e.g. head overheat
	ErrNotReady      = errors.New("escpos: printer not ready") // a dialect's blocking condition
)

// Condition is a finding of a printer dialect beyond generic ESC/POS (a ticket left in the
// presenter, a retract bin full). Blocking conditions make the printer not ready.
type Condition struct {
	Name     string
	Blocking bool
}

// Status is the printer's real-time status, decoded from the replies to DLE EOT 1..4.
type Status struct {
	// n = 1, printer status
	Online          bool // bit 3 clear
	WaitingRecovery bool // bit 5: waiting for online recovery
	FeedButton      bool // bit 6: paper feed button pressed
	// n = 2, offline cause
	CoverOpen    bool // bit 2
	FeedByButton bool // bit 3: paper being fed by the feed button
	PaperEndStop bool // bit 5: printing stopped by paper end
	Error        bool // bit 6: an error occurred
	// n = 3, error cause
	CutterError     bool // bit 3
	Unrecoverable   bool // bit 5
	AutoRecoverable bool // bit 6 (e.g. head overheat; clears by itself)
	// n = 4, roll paper sensors
	PaperNearEnd bool // bits 2-3
	PaperEnd     bool // bits 5-6

	// Extra holds dialect findings (see Profile.Extra).
	Extra []Condition
	// Raw are the four reply bytes as received, for logs and technicians.
	Raw [4]byte
}

// fixed bits of every DLE EOT reply: bits 1 and 4 set, bits 0 and 7 clear.
const (
	fixedMask = 0x93
	fixedBits = 0x12
)

// DecodeStatus decodes the replies to DLE EOT 1, 2, 3 and 4. A byte whose fixed bits are wrong
// is not a status (line noise, a late reply to something else) and gives ErrBadReply.
func DecodeStatus(raw [4]byte) (Status, error) {
	for i, b := range raw {
		if b&fixedMask != fixedBits {
			return Status{Raw: raw}, fmt.Errorf("%w: DLE EOT %d answered %#02x", ErrBadReply, i+1, b)
		}
	}
	return Status{
		Online:          raw[0]&0x08 == 0,
		WaitingRecovery: raw[0]&0x20 != 0,
		FeedButton:      raw[0]&0x40 != 0,
		CoverOpen:       raw[1]&0x04 != 0,
		FeedByButton:    raw[1]&0x08 != 0,
		PaperEndStop:    raw[1]&0x20 != 0,
		Error:           raw[1]&0x40 != 0,
		CutterError:     raw[2]&0x08 != 0,
		Unrecoverable:   raw[2]&0x20 != 0,
		AutoRecoverable: raw[2]&0x40 != 0,
		PaperNearEnd:    raw[3]&0x0c != 0,
		PaperEnd:        raw[3]&0x60 != 0,
		Raw:             raw,
	}, nil
}

// Ready reports whether a receipt can be printed now. Paper near end is a warning, not a stop.
func (s Status) Ready() bool { return s.Err() == nil }

// Err names why the printer is not ready, most actionable cause first, or nil.
func (s Status) Err() error {
	switch {
	case s.CoverOpen:
		return ErrCoverOpen
	case s.PaperEnd || s.PaperEndStop:
		return ErrPaperOut
	case s.CutterError:
		return ErrCutter
	case s.Unrecoverable:
		return ErrUnrecoverable
	case s.AutoRecoverable || s.Error:
		return ErrPrinterError
	case !s.Online:
		return ErrOffline
	}
	for _, c := range s.Extra {
		if c.Blocking {
			return fmt.Errorf("%w: %s", ErrNotReady, c.Name)
		}
	}
	return nil
}

// Reasons lists every condition worth telling a technician, blocking or not.
func (s Status) Reasons() []string {
	var r []string
	add := func(on bool, what string) {
		if on {
			r = append(r, what)
		}
	}
	add(!s.Online, "offline")
	add(s.CoverOpen, "cover open")
	add(s.PaperEnd, "paper end")
	add(s.PaperEndStop, "stopped by paper end")
	add(s.PaperNearEnd, "paper near end")
	add(s.CutterError, "cutter error")
	add(s.Unrecoverable, "unrecoverable error")
	add(s.AutoRecoverable, "auto-recoverable error (e.g. head too hot)")
	add(s.Error && !s.CutterError && !s.Unrecoverable && !s.AutoRecoverable, "error")
	add(s.WaitingRecovery, "waiting for online recovery")
	add(s.FeedButton || s.FeedByButton, "feed button pressed")
	for _, c := range s.Extra {
		r = append(r, c.Name)
	}
	return r
}

// String is a one-line summary for logs: "ready", "ready (paper near end)" or
// "not ready: cover open, offline [16 16 12 12]".
func (s Status) String() string {
	reasons := s.Reasons()
	raw := fmt.Sprintf("[%02x %02x %02x %02x]", s.Raw[0], s.Raw[1], s.Raw[2], s.Raw[3])
	switch {
	case s.Ready() && len(reasons) == 0:
		return "ready " + raw
	case s.Ready():
		return "ready (" + strings.Join(reasons, ", ") + ") " + raw
	}
	return "not ready: " + strings.Join(reasons, ", ") + " " + raw
}

// Condition kinds a printer status maps to, as the kiosk's health registry names them. The
// catalogue (kiosk/i18n) has a customer sentence for each ("condition." + kind).
const (
	KindPaperNearEnd = "printer_paper_near_end" // staff: put in a new roll soon
	KindPaperOut     = "printer_paper_out"      // staff: put in a new roll
	KindCoverOpen    = "printer_cover_open"     // staff: close the cover
	KindCutter       = "printer_cutter"         // engineer
	KindPrinterError = "printer_error"          // engineer (or clears by itself)
	KindOffline      = "printer_offline"        // engineer
)

// StatusCondition is one thing a status says that someone must act on.
type StatusCondition struct {
	Kind     string
	Blocking bool // no receipt can be printed while it stands
	Staff    bool // staff on site can clear it (paper, cover); else it needs an engineer
}

// NearEnd reports paper near end on its own: the roll is low but still prints, which is a
// staff task (a new roll), not a fault. With the paper already out it is false: PaperOut then
// says more.
func (s Status) NearEnd() bool { return s.PaperNearEnd && !s.PaperEnd && !s.PaperEndStop }

// Conditions lists what the status asks of people, most actionable first: the blocking cause
// Err names (one), then paper near end, then the dialect's findings.
func (s Status) Conditions() []StatusCondition {
	var out []StatusCondition
	switch err := s.Err(); {
	case err == nil:
	case errors.Is(err, ErrCoverOpen):
		out = append(out, StatusCondition{Kind: KindCoverOpen, Blocking: true, Staff: true})
	case errors.Is(err, ErrPaperOut):
		out = append(out, StatusCondition{Kind: KindPaperOut, Blocking: true, Staff: true})
	case errors.Is(err, ErrCutter):
		out = append(out, StatusCondition{Kind: KindCutter, Blocking: true})
	case errors.Is(err, ErrOffline):
		out = append(out, StatusCondition{Kind: KindOffline, Blocking: true})
	case errors.Is(err, ErrUnrecoverable), errors.Is(err, ErrPrinterError):
		out = append(out, StatusCondition{Kind: KindPrinterError, Blocking: true})
	}
	if s.NearEnd() {
		out = append(out, StatusCondition{Kind: KindPaperNearEnd, Staff: true})
	}
	for _, c := range s.Extra {
		out = append(out, StatusCondition{Kind: "printer_" + c.Name, Blocking: c.Blocking})
	}
	return out
}
