package simrig

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/kioskd/kioskd/hw-sim/linespeed"
)

// LineSpeed says which emulators take and send bytes at their serial line's speed instead of
// a pseudo-terminal's (package linespeed): the acceptor at its protocol's (ID-003 9600 8E1,
// CCNET 9600 8N1, SSP 9600 8N2), the printer and the scanner at 9600 8N1 unless PrinterLine
// or ScannerLine say otherwise. The daemon's drivers then meet the delays of real hardware:
// a 1,000-byte receipt takes a second to reach the printer.
type LineSpeed struct {
	Acceptor bool `json:"acceptor"`
	Printer  bool `json:"printer"`
	Scanner  bool `json:"scanner"`
	// PrinterLine and ScannerLine override the 9600 8N1 default when set.
	PrinterLine linespeed.Line `json:"printer_line,omitzero"`
	ScannerLine linespeed.Line `json:"scanner_line,omitzero"`
}

// ParseLineSpeed reads a device list: "all", "none" (or ""), or names among acceptor,
// printer and scanner separated by commas, e.g. "printer" or "acceptor,printer".
func ParseLineSpeed(s string) (LineSpeed, error) {
	var ls LineSpeed
	switch s = strings.TrimSpace(strings.ToLower(s)); s {
	case "", "none", "off", "false":
		return ls, nil
	case "all", "on", "true":
		return LineSpeed{Acceptor: true, Printer: true, Scanner: true}, nil
	}
	for _, name := range strings.Split(s, ",") {
		switch strings.TrimSpace(name) {
		case "acceptor":
			ls.Acceptor = true
		case "printer":
			ls.Printer = true
		case "scanner":
			ls.Scanner = true
		default:
			return LineSpeed{}, fmt.Errorf("simrig: line speed: unknown device %q (want acceptor, printer, scanner, all or none)", name)
		}
	}
	return ls, nil
}

// String is the form ParseLineSpeed reads.
func (ls LineSpeed) String() string {
	var on []string
	for _, d := range []struct {
		on   bool
		name string
	}{{ls.Acceptor, "acceptor"}, {ls.Printer, "printer"}, {ls.Scanner, "scanner"}} {
		if d.on {
			on = append(on, d.name)
		}
	}
	switch len(on) {
	case 0:
		return "none"
	case 3:
		return "all"
	}
	return strings.Join(on, ",")
}

// acceptorLine is the serial line of an acceptor protocol (none for a pulse unit).
func acceptorLine(protocol string) linespeed.Line {
	switch protocol {
	case "id003":
		return linespeed.ID003
	case "ccnet":
		return linespeed.CCNET
	case "ssp":
		return linespeed.SSP
	}
	return linespeed.Line{}
}

// lines are the rig's three ports, seen through switchable serial lines.
type lines struct {
	acc, prn, scn *linespeed.Port
}

func (r *Rig) applyLineSpeed(ls LineSpeed) {
	pick := func(on bool, l, def linespeed.Line) linespeed.Line {
		switch {
		case !on:
			return linespeed.Line{}
		case l.On():
			return l
		}
		return def
	}
	r.lines.acc.SetLine(pick(ls.Acceptor, linespeed.Line{}, acceptorLine(r.cfg.Acceptor)))
	r.lines.prn.SetLine(pick(ls.Printer, ls.PrinterLine, linespeed.Printer))
	r.lines.scn.SetLine(pick(ls.Scanner, ls.ScannerLine, linespeed.Scanner))
}

// SetLineSpeed switches line-speed mode per device while the rig runs.
func (r *Rig) SetLineSpeed(ls LineSpeed) error {
	for _, l := range []linespeed.Line{ls.PrinterLine, ls.ScannerLine} {
		if err := l.Validate(); err != nil {
			return err
		}
	}
	r.lineMu.Lock()
	defer r.lineMu.Unlock()
	r.lineSpeed = ls
	r.applyLineSpeed(ls)
	r.log.Info("line speed", "devices", ls.String())
	return nil
}

// LineSpeed is the line-speed mode in force.
func (r *Rig) LineSpeed() LineSpeed {
	r.lineMu.Lock()
	defer r.lineMu.Unlock()
	return r.lineSpeed
}

// lineSpeedAPI is POST /api/line_speed: {"acceptor":true,"printer":true,"scanner":false}
// (absent devices keep their setting), or {"devices":"all"|"none"|"printer,..."}; it answers
// the mode in force.
func (r *Rig) lineSpeedAPI(b map[string]json.RawMessage) (any, error) {
	ls := r.LineSpeed()
	if raw, ok := b["devices"]; ok {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, fmt.Errorf("devices: %w", err)
		}
		var err error
		if ls, err = ParseLineSpeed(s); err != nil {
			return nil, err
		}
	}
	for name, f := range map[string]*bool{"acceptor": &ls.Acceptor, "printer": &ls.Printer, "scanner": &ls.Scanner} {
		if raw, ok := b[name]; ok {
			if err := json.Unmarshal(raw, f); err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	if err := r.SetLineSpeed(ls); err != nil {
		return nil, err
	}
	return ls, nil
}
