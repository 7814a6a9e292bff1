package session

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/kiosk/config"
	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/journal"
)

// Settings central operations and technicians change at run time: the session limits
// (set_limits) and the sign-off of latched conditions (signoff).

// CondAcceptorFraud is the condition of a cheat attempt the acceptor reported. It is latched:
// it stops service until a technician signs it off (CmdSignoff), whatever the unit reports
// afterwards and across restarts.
const CondAcceptorFraud = "acceptor_fraud"

// ErrNothingToSignOff: a sign-off of a condition that is not waiting for one.
var ErrNothingToSignOff = errors.New("session: no such condition waiting for a sign-off")

// LimitsStatus are the session limits in force, as Status reports them.
type LimitsStatus struct {
	// Version is the set_limits overlay in force; 0 means the configuration's limits.
	Version                int64  `json:"version"`
	CmdID                  string `json:"cmd_id,omitempty"`
	SessionMaxMinor        int64  `json:"session_max_minor"`
	OfflineSessionMaxMinor int64  `json:"offline_session_max_minor"`
	OfflineTotalMaxMinor   int64  `json:"offline_total_max_minor"`
}

func (c *core) limitsStatus() *LimitsStatus {
	return &LimitsStatus{Version: c.limitsVersion, CmdID: c.limitsCmd, SessionMaxMinor: c.limits.SessionMax,
		OfflineSessionMaxMinor: c.limits.OfflineSessionMax, OfflineTotalMaxMinor: c.limits.OfflineTotalMax}
}

// validLimits checks limits with the configuration's rules: an overlay may set nothing a
// configuration file could not.
func validLimits(l Limits) error {
	return config.Limits{SessionMaxMinor: l.SessionMax, OfflineSessionMaxMinor: l.OfflineSessionMax, OfflineTotalMaxMinor: l.OfflineTotalMax}.Validate()
}

// loadOps restores, at start, what the journal keeps besides money: the limits overlay in
// force and the conditions latched until a sign-off (the previous run's health registry is
// gone; a restart must not clear them).
func (c *core) loadOps() error {
	o, ok, err := c.e.j.LimitsOverlay()
	if err != nil {
		return err
	}
	if ok {
		l := Limits{SessionMax: o.SessionMaxMinor, OfflineSessionMax: o.OfflineSessionMaxMinor, OfflineTotalMax: o.OfflineTotalMaxMinor}
		if verr := validLimits(l); verr != nil {
			// Checked when it was set; a value that fails now was not written by this code.
			// The configuration's limits are safe: keep them, and say so.
			c.e.log.Error("limits overlay in the journal is not valid; configured limits in force", "version", o.Version, "err", verr)
			c.e.cfg.Health.Set("limits_overlay_invalid", health.Warning, health.Engineer, health.NoEffect,
				fmt.Sprintf("limits overlay version %d: %v", o.Version, verr))
		} else {
			c.limits, c.limitsVersion, c.limitsCmd = l, o.Version, o.CmdID
			c.e.log.Info("limits overlay in force", "version", o.Version, "session_max_minor", l.SessionMax,
				"offline_session_max_minor", l.OfflineSessionMax, "offline_total_max_minor", l.OfflineTotalMax)
		}
	}
	latched, err := c.e.j.Latched()
	if err != nil {
		return err
	}
	for _, l := range latched {
		if l.Kind == CondAcceptorFraud {
			c.faults[acceptor.Fraud.String()] = true
		}
		c.e.cfg.Health.Set(l.Kind, health.Critical, health.Engineer, health.StopsService, latchedDetail(l.Detail))
		c.e.log.Warn("condition latched until a technician signs it off", "condition", l.Kind, "detail", l.Detail)
	}
	return nil
}

func latchedDetail(d string) string {
	return strings.TrimSpace(d + " (a technician's sign-off clears it)")
}

// latchFraud journals the acceptor's cheat attempt as latched (once) and raises it.
func (c *core) latchFraud(detail string) {
	c.latch(CondAcceptorFraud, detail)
	c.faults[acceptor.Fraud.String()] = true
}

// latch journals condition kind as latched (once) and raises it until a sign-off.
func (c *core) latch(kind, detail string) {
	if _, err := c.e.j.Latch(kind, detail); err != nil {
		// The condition is raised anyway (it stops service), and latched in the journal
		// once writes succeed again (relatch): a sign-off of a journal-latched condition
		// needs its latch in the journal, so without it the kiosk would stay out of service
		// after the storage recovered until a restart, which would forget the condition.
		// Only a restart before the storage recovers loses it.
		if c.unlatched == nil {
			c.unlatched = map[string]string{}
		}
		c.unlatched[kind] = detail
		c.journalFailedOp("latch "+kind, err)
	} else {
		delete(c.unlatched, kind)
		c.journalOK()
	}
	c.e.cfg.Health.Set(kind, health.Critical, health.Engineer, health.StopsService, latchedDetail(detail))
}

// relatch latches the conditions raised while the journal failed, now that a write
// succeeded (journalOK).
func (c *core) relatch() {
	for _, kind := range slices.Sorted(maps.Keys(c.unlatched)) {
		if _, err := c.e.j.Latch(kind, c.unlatched[kind]); err != nil {
			c.journalFailedOp("latch "+kind, err)
			return
		}
		delete(c.unlatched, kind)
	}
}

// cassettePulled latches SignoffMidStack when the unit reports its cassette removed while a
// note is between the stack decision and its credit (a stack intent open): someone had the
// cassette out with a note on its way into it, so a person looks before service resumes.
// The note itself is handled as any note whose fate is unknown (an uncertain item). A
// cassette taken out for a cash collection or in maintenance is not this: no customer's
// note travels then.
func (c *core) cassettePulled(ev acceptor.Event) {
	if c.coll != nil || c.maintenance {
		return
	}
	intents, err := c.e.j.OpenIntents()
	if err != nil {
		c.journalFailedOp("read intents", err)
		// Unknown whether a note was on its way: latch, a person looks either way.
		c.latch(SignoffMidStack, ev.String()+" (open stack intents unreadable)")
		return
	}
	if len(intents) == 0 {
		return
	}
	in := intents[0]
	c.e.log.Warn("cassette removed while a note was being stacked; latched until a technician signs it off",
		"intent", in.ID, "note_minor", in.Note.ValueMinor)
	c.latch(SignoffMidStack, fmt.Sprintf("%s while stacking %s (intent %d)", ev.String(), formatMinor(in.Note.ValueMinor, c.e.j.Currency()), in.ID))
}

// setLimits applies a set_limits command: checked like the configuration, journaled with its
// version (newer than the one in force), then in force for every session authorized after it.
// A session already open keeps the limit it was opened with.
func (c *core) setLimits(cmd Command) error {
	if cmd.Limits == nil || cmd.LimitsVersion < 1 {
		return errors.New("session: set_limits needs the limits and a version ≥ 1")
	}
	l := *cmd.Limits
	if err := validLimits(l); err != nil {
		return fmt.Errorf("session: limits: %w", err)
	}
	if cmd.LimitsVersion <= c.limitsVersion {
		return fmt.Errorf("session: limits version %d is not newer than %d in force", cmd.LimitsVersion, c.limitsVersion)
	}
	err := c.e.j.SetLimitsOverlay(journal.LimitsOverlay{Version: cmd.LimitsVersion, CmdID: cmd.CmdID, SessionMaxMinor: l.SessionMax,
		OfflineSessionMaxMinor: l.OfflineSessionMax, OfflineTotalMaxMinor: l.OfflineTotalMax})
	if errors.Is(err, journal.ErrStaleVersion) {
		return fmt.Errorf("session: %w", err)
	}
	if err != nil {
		c.journalFailedOp("set limits", err)
		return err
	}
	c.journalOK()
	c.limits, c.limitsVersion, c.limitsCmd = l, cmd.LimitsVersion, cmd.CmdID
	c.e.log.Info("limits changed", "version", cmd.LimitsVersion, "cmd_id", cmd.CmdID, "session_max_minor", l.SessionMax,
		"offline_session_max_minor", l.OfflineSessionMax, "offline_total_max_minor", l.OfflineTotalMax)
	return nil
}

// Bounds of a sign-off's words.
const (
	maxSignoffWho = 64
	maxSignoffWhy = 500
)

func checkText(field, s string, maxLen int) error {
	if strings.TrimSpace(s) == "" {
		return fmt.Errorf("session: sign-off needs %s", field)
	}
	if len(s) > maxLen || !utf8.ValidString(s) {
		return fmt.Errorf("session: sign-off %s: at most %d bytes of UTF-8", field, maxLen)
	}
	if strings.IndexFunc(s, unicode.IsControl) >= 0 {
		return fmt.Errorf("session: sign-off %s: no control characters", field)
	}
	return nil
}

// signoff clears a latched condition on a technician's word: the sign-off (condition, who,
// why) is an audit event in the journal, written before the condition clears. Conditions the
// journal latches (a cheat attempt) clear only this way; a condition another part of the
// kiosk latches (the tamper switch) is signed off when Config.SignOffCheck allows it.
func (c *core) signoff(cmd Command) error {
	if err := checkText("a condition", cmd.Condition, 64); err != nil {
		return err
	}
	if err := checkText("who signs off", cmd.Who, maxSignoffWho); err != nil {
		return err
	}
	if err := checkText("why", cmd.Why, maxSignoffWhy); err != nil {
		return err
	}
	if cmd.Condition == CondAcceptorFraud && c.unit == acceptor.Fraud {
		// A unit that latches its cheat report (ID-003, CCNET) keeps it until it is reset: a
		// sign-off now would put a kiosk whose unit takes no note back in service.
		return errors.New("session: the acceptor still reports the cheat attempt; reset it first")
	}
	latched, err := c.e.j.Latched()
	if err != nil {
		c.journalFailedOp("read latched conditions", err)
		return err
	}
	inJournal := false
	for _, l := range latched {
		inJournal = inJournal || l.Kind == cmd.Condition
	}
	// also is a condition cleared with this one: the driver's failure that stands for a
	// swapped unit.
	also := ""
	if !inJournal {
		switch {
		case cmd.Condition == SignoffUnitSwapped:
			// A swap is reported by its driver (eSSP: serial changed), which holds the unit
			// back until its own confirmation step (ConfirmSwap), run by the caller after
			// this: the sign-off is on record before the unit is trusted again.
			also = swapFailure(c.e.cfg.Health)
			if !c.e.cfg.Health.Has(cmd.Condition) && also == "" {
				return fmt.Errorf("%w: %s is not active", ErrNothingToSignOff, cmd.Condition)
			}
		case cmd.Condition == SignoffMidStack:
			if !c.e.cfg.Health.Has(cmd.Condition) {
				return fmt.Errorf("%w: %s is not active", ErrNothingToSignOff, cmd.Condition)
			}
		case c.e.cfg.SignOffCheck == nil || !c.e.cfg.Health.Has(cmd.Condition):
			return fmt.Errorf("%w: %s is not active", ErrNothingToSignOff, cmd.Condition)
		default:
			if err := c.e.cfg.SignOffCheck(cmd.Condition); err != nil {
				return fmt.Errorf("session: sign-off of %s refused: %w", cmd.Condition, err)
			}
		}
	}
	ev := journal.SignoffEvent{Condition: cmd.Condition, Who: cmd.Who, Why: cmd.Why, CmdID: cmd.CmdID}
	if err := c.e.j.SignOff(ev, !inJournal); err != nil {
		c.journalFailedOp("sign-off", err)
		return err
	}
	// Signed off with no latch in the journal (SignoffMidStack may be): nothing to latch
	// later (before journalOK, which latches the ones waiting).
	delete(c.unlatched, cmd.Condition)
	c.journalOK()
	if cmd.Condition == CondAcceptorFraud {
		delete(c.faults, acceptor.Fraud.String())
	}
	c.e.cfg.Health.Clear(cmd.Condition)
	if also != "" {
		delete(c.faults, strings.TrimPrefix(also, "acceptor_"))
		c.e.cfg.Health.Clear(also)
	}
	c.e.log.Info("condition signed off", "condition", cmd.Condition, "who", cmd.Who, "why", cmd.Why, "cmd_id", cmd.CmdID)
	return nil
}
