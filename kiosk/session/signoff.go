package session

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/kioskd/kioskd/kiosk/journal"
)

// Conditions a technician signs off. They say that money may have been touched by someone
// other than a customer (a cheat attempt, a unit exchanged on the line, a cassette taken out
// while a note was on its way into it), so the kiosk does not take them back by itself: a
// person looks, and the journal keeps who did and why.
const (
	SignoffFraud       = "acceptor_fraud"
	SignoffUnitSwapped = "acceptor_unit_swapped"
	SignoffMidStack    = "acceptor_cassette_pulled_mid_stack"
)

// SignoffConditions lists the condition kinds CmdSignoff accepts.
var SignoffConditions = []string{SignoffFraud, SignoffUnitSwapped, SignoffMidStack}

// ErrNothingToSignOff is returned for a sign-off of a condition that is not active.
var ErrNothingToSignOff = errors.New("session: no such condition to sign off")

// swapDetail is how an acceptor driver describes a unit swapped on the line when it reports
// it as a failure (eSSP: "unit swapped: serial X -> Y").
const swapDetail = "unit swapped"

// signoff journals the sign-off and clears the condition. A swapped unit is still held back
// by its driver until the driver's own confirmation step (ConfirmSwap), which the caller
// runs after this returns: the sign-off is on record before the unit is trusted again.
func (c *core) signoff(cmd Command) error {
	cond := strings.TrimSpace(cmd.Condition)
	if !slices.Contains(SignoffConditions, cond) {
		return fmt.Errorf("%w: %q is not signed off (one of %s)", ErrNothingToSignOff, cond, strings.Join(SignoffConditions, ", "))
	}
	if strings.TrimSpace(cmd.Who) == "" || strings.TrimSpace(cmd.Why) == "" {
		return errors.New("session: a sign-off needs who and why")
	}
	active := c.e.cfg.Health.Has(cond)
	var failure string // the failure condition that stands for a swap
	if cond == SignoffUnitSwapped && !active {
		for _, k := range c.e.cfg.Health.Active() {
			if strings.HasPrefix(k.Kind, "acceptor_") && strings.Contains(k.Detail, swapDetail) {
				failure, active = k.Kind, true
				break
			}
		}
	}
	if !active {
		return fmt.Errorf("%w: %s is not active", ErrNothingToSignOff, cond)
	}
	if err := c.e.j.SignOff(journal.SignOffEvent{Condition: cond, Who: cmd.Who, Why: cmd.Why, At: c.now().UTC()}); err != nil {
		c.journalFailedOp("sign-off", err)
		return err
	}
	c.journalOK()
	c.e.log.Info("condition signed off", "condition", cond, "who", cmd.Who, "why", cmd.Why)
	for _, k := range []string{cond, failure} {
		if k == "" {
			continue
		}
		delete(c.faults, strings.TrimPrefix(k, "acceptor_"))
		c.e.cfg.Health.Clear(k)
	}
	return nil
}
