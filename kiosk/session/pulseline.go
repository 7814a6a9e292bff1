package session

import (
	"fmt"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/kiosk/health"
)

// The inhibit line of an escrowless (pulse) unit. Such a unit takes a note by itself while
// its line is released, and the note's pulses are its only record: a note can go into the
// cassette unrecorded when the process is down (a crash, and the restart after it: the
// kernel keeps the line released until the next process inhibits it), when the journal
// refuses writes (the driver owes the credit, which dies with the process) or when a power
// cut takes the last commit. So the engine keeps the line's state in the journal
// (journal.PulseLine, see kiosk/journal/pulse.go):
//
//   - before it releases the line (an Enable task), "enabled" is committed and sealed
//     (journal.PulseEnabling); if that fails the line stays inhibited;
//   - once the unit reported Disabled (the driver's grace after the inhibit has passed with
//     no train) and no Enable was started since, "inhibited" is committed
//     (journal.PulseInhibited): no note is in transit any more;
//   - at start-up, a line the previous run left enabled means a note may have gone in
//     unrecorded: recovery records one uncertain item of unknown value for it, on the
//     interrupted session (journal.PulseLineUncertain), whatever stopped the previous run.
//
// A serial unit with escrow never gets here: its notes wait in escrow for the host.

// pulseLineEnabling journals, before an Enable task of an escrowless unit, that the unit may
// take notes. It reports whether the task may start.
func (c *core) pulseLineEnabling(codes []int) bool {
	if !c.e.cfg.Escrowless {
		return true
	}
	if c.lineOwed {
		// The previous run's stretch has no item yet (the journal failed at recovery): record
		// it first, or the new stretch would merge into it.
		c.settlePulseLine()
		if c.lineOwed {
			return false
		}
	}
	if c.line.Enabled && c.line.Uncertain == 0 {
		return true
	}
	sid := uint64(0)
	if c.sess != nil {
		sid = c.sess.ID
	}
	if err := c.e.j.PulseEnabling(sid, fmt.Sprintf("enable %v", codes)); err != nil {
		c.journalFailedOp("pulse unit enabled", err)
		return false
	}
	c.journalOK()
	c.line.Enabled, c.line.SessionID, c.line.Uncertain = true, sid, 0
	return true
}

// pulseLineAtRest ends the enabled stretch once the unit is at rest behind its inhibit. The
// recovery does it itself (recoverRest), after the previous run's item.
func (c *core) pulseLineAtRest() {
	if c.rec == nil {
		c.settlePulseLine()
	}
}

// unitAtRestBehindInhibit: the unit reported Disabled, and nothing since: no Enable was
// started after it, and no pulse, credit or fault came after it.
func (c *core) unitAtRestBehindInhibit() bool {
	return c.disabledSeen && !c.lineEnabling && c.unit == acceptor.Disabled
}

// settlePulseLine brings the journaled line state up to date: the previous run's enabled
// stretch gets its uncertain item, and a stretch ends once the unit is at rest behind its
// inhibit. A journal failure leaves the state as it is (enabled), which errs on the side of
// an item.
func (c *core) settlePulseLine() {
	if !c.line.Enabled {
		return
	}
	// A unit with escrow does not take notes by itself: a pulse state left by an earlier
	// configuration ends with its item.
	atRest := !c.e.cfg.Escrowless || (c.unitAtRestBehindInhibit() && !c.e.cfg.NoInhibitLine)
	if c.lineOwed {
		// The item belongs to the session the previous run left open (closed as interrupted
		// by the recovery), never to a customer who came after.
		sid := c.lineOwedSID
		item, err := c.e.j.PulseLineUncertain(sid, "found at start-up", atRest)
		if err != nil {
			c.journalFailedOp("uncertain note of the pulse unit", err)
			return
		}
		c.journalOK()
		c.lineOwed = false
		c.line.Uncertain = item
		if atRest {
			c.line.Enabled = false
		}
		if item != 0 {
			c.e.log.Warn("the pulse unit was enabled when the previous run stopped; recorded an uncertain item", "uncertain_item", item, "session", sid)
			c.e.cfg.Health.Event("uncertain_item", health.Critical, health.Staff,
				"the pulse acceptor was enabled when the kiosk stopped (crash, power cut or storage fault): a note may have gone in unrecorded; settle at cash collection")
			c.refreshSession()
		}
		return
	}
	if !atRest {
		return
	}
	if _, err := c.e.j.PulseInhibited("unit at rest behind its inhibit"); err != nil {
		c.journalFailedOp("pulse unit inhibited", err)
		return
	}
	c.journalOK()
	c.line.Enabled = false
}

// pulseLineNoInhibit starts, at the end of the recovery, the enabled stretch of a unit that
// cannot be inhibited (Config.NoInhibitLine): it lasts as long as the run, so that the next
// start-up records its item whatever stops this run.
func (c *core) pulseLineNoInhibit() {
	if !c.e.cfg.Escrowless || !c.e.cfg.NoInhibitLine || c.lineOwed || (c.line.Enabled && c.line.Uncertain == 0) {
		return
	}
	if err := c.e.j.PulseEnabling(0, "no inhibit line: the unit takes notes whenever it is powered"); err != nil {
		c.journalFailedOp("pulse unit enabled", err)
		return
	}
	c.journalOK()
	c.line.Enabled, c.line.SessionID, c.line.Uncertain = true, 0, 0
}
