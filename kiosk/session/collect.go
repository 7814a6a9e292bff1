package session

import (
	"context"
	"errors"
	"fmt"

	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/sync/wire"
)

// Cash collection (DESIGN.md §10) on the engine: the commands drive the journal's procedure
// (kiosk/journal collection.go), one journaled step each, and the engine does what each step
// calls for: maintenance while a collection is open (also after a restart: boot reads the
// open collection), the unit's cassette reports as the cassette-out and cassette-in steps,
// the slip printed once the record is made, and service back once the cassette is in.
//
//	collect_start         Operator, CassetteID; waits for a customer in session (waiting_idle)
//	collect_cassette_out  the collector confirms the cassette is out (the unit's report does
//	                      the same by itself)
//	collect_count         Counts: the notes counted per denomination (again to correct)
//	collect_finish        the record: journaled with the counters' reset in one commit, then
//	                      sent on up/collection and printed
//	collect_cassette_in   the collector confirms the cassette is back (or the unit's report)
//	collect_abort         only before the cassette came out
//
// Every reply carries the collection (Status.Collection) with its step, so a caller that
// lost track (a crash, a second technician) sees where the procedure stands.

// SlipPrinter is implemented by printers that print cash collection slips.
type SlipPrinter interface {
	PrintCollectionSlip(ctx context.Context, s Slip) error
}

// Slip is what a printer adapter needs to render a collection slip.
type Slip struct {
	Record wire.Collection
	// Copy is set when an earlier print of this slip may have come out.
	Copy bool
}

// ErrCollection is returned for a collection command at the wrong step of the procedure.
var ErrCollection = errors.New("session: cash collection")

// bootCollection resumes a collection the previous run left open: the kiosk stays in
// maintenance until it ends.
func (c *core) bootCollection() error {
	col, ok, err := c.e.j.OpenCollection()
	if err != nil {
		return fmt.Errorf("session: recovery: %w", err)
	}
	if ok {
		c.coll = &col
		c.maintWanted = true
		c.e.log.Warn("cash collection left open by the previous run; it resumes", "collection", col.ID, "step", col.Step)
	}
	return nil
}

// collectCommand applies a collect_* command on the loop.
func (c *core) collectCommand(cmd Command) (progress string, err error) {
	progress = ProgressDone
	j := c.e.j
	switch cmd.Kind {
	case CmdCollectStart:
		c.hit("collect-before-start")
		col, started, err := j.StartCollection(cmd.Operator, cmd.CassetteID)
		if err != nil {
			return progress, c.collectFailed("start", err)
		}
		c.hit("collect-after-start")
		c.coll = &col
		c.maintWanted = true
		if started {
			c.e.log.Info("cash collection started", "collection", col.ID, "operator", col.Operator, "cassette", col.CassetteID)
			c.audit("collection_started", col.ID+" by "+col.Operator)
		}
		if !c.maintenance {
			if c.inSession() || c.rec != nil {
				progress = ProgressWaitingIdle
			} else {
				c.maintenance = true
			}
		}
		return progress, nil
	}
	if c.coll == nil {
		return progress, fmt.Errorf("%w: none in progress (collect_start first)", ErrCollection)
	}
	switch cmd.Kind {
	case CmdCollectCassetteOut:
		if !c.maintenance {
			return progress, fmt.Errorf("%w: waiting for the customer in session to finish", ErrCollection)
		}
		return progress, c.cassetteOut("collector")
	case CmdCollectCount:
		counts := make([]journal.NoteLine, 0, len(cmd.Counts))
		for _, n := range cmd.Counts {
			if _, ok := c.denomination(n.ValueMinor); !ok && n.Count > 0 {
				return progress, fmt.Errorf("%w: %s is not a denomination this kiosk takes", ErrCollection, formatMinor(n.ValueMinor, c.e.j.Currency()))
			}
			counts = append(counts, n)
		}
		c.hit("collect-before-count")
		col, err := j.CountCollection(counts)
		if err != nil {
			return progress, c.collectFailed("count", err)
		}
		c.hit("collect-after-count")
		c.coll = &col
		return progress, nil
	case CmdCollectFinish:
		c.hit("collect-before-record")
		col, err := j.RecordCollection()
		if err != nil {
			return progress, c.collectFailed("record", err)
		}
		c.hit("collect-after-record")
		c.coll = &col
		w, _ := col.Wire(j.KioskID(), j.Currency())
		c.e.log.Info("cash collection recorded; cassette counters reset", "collection", col.ID, "expected_minor", w.ExpectedMinor,
			"counted_minor", w.CountedMinor, "difference_minor", w.DifferenceMinor, "uncertain", len(w.Uncertain))
		c.audit("collection_recorded", fmt.Sprintf("%s: expected %d, counted %d, difference %d", col.ID, w.ExpectedMinor, w.CountedMinor, w.DifferenceMinor))
		if c.e.cfg.Uplink != nil {
			c.e.cfg.Uplink.Kick()
		}
		return progress, nil
	case CmdCollectCassetteIn:
		return progress, c.cassetteIn("collector")
	case CmdCollectAbort:
		col, err := j.AbortCollection(cmd.Reason)
		if err != nil {
			return progress, c.collectFailed("abort", err)
		}
		c.e.log.Info("cash collection aborted", "collection", col.ID, "reason", col.Reason)
		c.coll = nil
		c.maintWanted, c.maintenance = false, false
		return progress, nil
	}
	return progress, fmt.Errorf("%w: %q", ErrUnknownCommand, cmd.Kind)
}

// collectFailed turns a journal error into the command's error: a step out of order is the
// caller's mistake, anything else a failed write.
func (c *core) collectFailed(op string, err error) error {
	if errors.Is(err, journal.ErrCollectionStep) || errors.Is(err, journal.ErrCollectionCount) || errors.Is(err, journal.ErrNoCollection) {
		return fmt.Errorf("%w: %v", ErrCollection, err)
	}
	c.journalFailedOp("collection "+op, err)
	return err
}

// audit records a technician's action as a health event (counted, logged, in telemetry).
func (c *core) audit(kind, detail string) {
	c.e.cfg.Health.Event(kind, health.Info, health.None, detail)
}

func (c *core) denomination(v int64) (int, bool) {
	for code, n := range c.e.cfg.Denominations {
		if n.ValueMinor == v {
			return code, true
		}
	}
	return 0, false
}

// cassetteOut freezes the collection at the cassette's removal.
func (c *core) cassetteOut(by string) error {
	if c.coll == nil || c.coll.Step != journal.CollectStarted {
		return nil
	}
	c.hit("collect-before-cassette-out")
	col, err := c.e.j.CollectionCassetteOut(by)
	if err != nil {
		return c.collectFailed("cassette out", err)
	}
	c.hit("collect-after-cassette-out")
	c.coll = &col
	c.e.log.Info("cash collection: cassette out", "collection", col.ID, "by", by, "expected", col.Expected, "uncertain", len(col.Uncertain))
	return nil
}

// cassetteIn records the cassette back in; advanceCollection ends the procedure when the rest
// is done.
func (c *core) cassetteIn(by string) error {
	if c.coll == nil || c.coll.CassetteIn {
		return nil
	}
	c.hit("collect-before-cassette-in")
	col, err := c.e.j.CollectionCassetteIn(by)
	if err != nil {
		return c.collectFailed("cassette in", err)
	}
	c.hit("collect-after-cassette-in")
	c.coll = &col
	c.e.log.Info("cash collection: cassette in", "collection", col.ID, "by", by)
	return nil
}

// collectionEvent takes the unit's cassette reports as steps of an open collection. A removal
// reported while a customer is still finishing is taken once the kiosk is in maintenance.
func (c *core) collectionEvent(removed bool) {
	if c.coll == nil {
		return
	}
	if removed {
		c.collOutSeen = true
		return
	}
	c.collOutSeen = false
	if c.coll.Step != journal.CollectStarted {
		_ = c.cassetteIn("device") // a failed write is recorded; the collector can confirm
	}
}

// advanceCollection does what the open collection's step calls for.
func (c *core) advanceCollection() bool {
	col := c.coll
	if col == nil {
		return false
	}
	if col.Step == journal.CollectStarted && c.collOutSeen && c.maintenance {
		c.collOutSeen = false
		_ = c.cassetteOut("device")
		return c.coll.Step != journal.CollectStarted
	}
	if col.Step != journal.CollectRecorded {
		return false
	}
	if !col.SlipDone() {
		if !c.slipPrinting && !c.journalFailed {
			c.printSlip()
		}
		return false
	}
	if !col.CassetteIn || c.journalFailed {
		return false
	}
	c.hit("collect-before-end")
	ended, err := c.e.j.EndCollection()
	if err != nil {
		_ = c.collectFailed("end", err)
		return false
	}
	c.hit("collect-after-end")
	c.e.log.Info("cash collection ended; service resumes", "collection", ended.ID)
	c.audit("collection_ended", ended.ID)
	c.coll = nil
	c.maintWanted, c.maintenance, c.updateReady = false, false, false
	return true
}

// printSlip prints the collection slip as a task: the attempt is journaled before the first
// byte goes out, its end after, so a slip interrupted by a crash is printed again as a COPY.
func (c *core) printSlip() {
	c.slipPrinting = true
	c.e.spawn("slip", func(ctx context.Context) msg {
		col, err := c.e.printSlip(context.WithoutCancel(ctx))
		return msg{apply: func(c *core) {
			c.slipPrinting = false
			if err != nil {
				c.journalFailedOp("collection slip", err)
				return
			}
			c.journalOK()
			if c.coll != nil && c.coll.ID == col.ID {
				c.coll = &col
			}
		}}
	})
}

func (e *Engine) printSlip(ctx context.Context) (journal.Collection, error) {
	sp, ok := e.cfg.Printer.(SlipPrinter)
	if !ok {
		return e.j.CollectionSlipDone(false, "no slip printer")
	}
	col, copy, err := e.j.CollectionSlipStart()
	if err != nil {
		return col, err
	}
	rec, err := col.Wire(e.j.KioskID(), e.j.Currency())
	if err != nil {
		return col, err
	}
	hit(e, "collect-before-slip")
	pctx, cancel := context.WithTimeout(ctx, e.cfg.Timing.PrintTimeout)
	perr := sp.PrintCollectionSlip(pctx, Slip{Record: rec, Copy: copy})
	cancel()
	hit(e, "collect-after-slip")
	detail := ""
	if perr != nil {
		detail = perr.Error()
		e.log.Warn("collection slip not printed", "collection", col.ID, "err", perr)
		e.cfg.Health.Event("collection_slip_failed", health.Warning, health.Staff, "collection slip: "+perr.Error())
	}
	return e.j.CollectionSlipDone(perr == nil, detail)
}

// CollectStart, CollectCount and the other helpers below are the command API's collect_*
// commands for Go callers (the service menu).

// CollectStart starts (or, after a crash, resumes) a cash collection; with wait it blocks
// until a customer in session has finished.
func (e *Engine) CollectStart(ctx context.Context, operator, cassetteID string, wait bool) (Reply, error) {
	return e.Do(ctx, Command{Kind: CmdCollectStart, Operator: operator, CassetteID: cassetteID, Wait: wait})
}

// CollectCount enters the counted notes per denomination.
func (e *Engine) CollectCount(ctx context.Context, counts []journal.NoteLine) (Reply, error) {
	return e.Do(ctx, Command{Kind: CmdCollectCount, Counts: counts})
}
