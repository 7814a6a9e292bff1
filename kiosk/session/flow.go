package session

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/kiosk/qrpay"
	"github.com/kioskd/kioskd/sync/wire"
)

// Errors returned to the local API.
var (
	ErrBusy       = errors.New("session: not possible in the current state")
	ErrNotRunning = errors.New("session: engine not running")
	// ErrNotPrinted is wrapped by a Printer whose PrintReceipt failed before sending any byte
	// (printer not ready): the receipt certainly does not exist on paper.
	ErrNotPrinted = errors.New("session: receipt not sent to the printer")
)

// Scan handles a code read by the QR scanner. It returns the refusal (nil when a session
// starts authorizing); the refusal is also shown on the customer screen.
func (e *Engine) Scan(code string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	ctx := e.runCtx
	if ctx == nil {
		return ErrNotRunning
	}
	if e.stopping {
		return fmt.Errorf("%w: stopping", ErrBusy)
	}
	if e.state == Done {
		e.toIdleLocked()
	}
	if e.state != Idle {
		e.log.Info("scan ignored", "state", e.state.String())
		return fmt.Errorf("%w: %s", ErrBusy, e.state)
	}
	p, err := e.cfg.WalletKeys.Verify(code, e.now())
	if err == nil {
		if uerr := e.j.UseNonce(p.Nonce, p.Expires); errors.Is(uerr, journal.ErrNonceUsed) {
			err = qrpay.ErrReplayed
		} else if uerr != nil {
			e.journalFailedLocked("use nonce", uerr)
			e.changedLocked()
			return uerr
		}
	}
	if err != nil {
		e.log.Warn("wallet code refused", "reason", err)
		if errors.Is(err, qrpay.ErrSignature) || errors.Is(err, qrpay.ErrReplayed) {
			e.cfg.Health.Event("qr_refused", health.Warning, health.None, err.Error())
		}
		e.messageLocked("error", qrpay.Message(err))
		e.changedLocked()
		return err
	}
	e.lastActivity = e.now()
	e.setStateLocked(Authorizing)
	e.messageLocked("info", "Checking your wallet…")
	e.view.Result = nil
	e.changedLocked()
	e.tasks.Add(1)
	go func() {
		defer e.tasks.Done()
		e.authorize(ctx, p)
	}()
	return nil
}

// authorize asks the ledger, falls back to the offline limits, and opens the session.
func (e *Engine) authorize(ctx context.Context, p qrpay.Payload) {
	limit := e.cfg.Limits.SessionMax
	offline := false
	masked := qrpay.Mask(p.Account)
	var denied string
	var resp wire.AuthzResponse
	var err error = errors.New("no authorizer configured")
	if e.cfg.Authorizer != nil {
		actx, cancel := context.WithTimeout(ctx, e.cfg.Timing.AuthzTimeout)
		resp, err = e.cfg.Authorizer.Authorize(actx, p.Account, p.Nonce, p.Raw)
		cancel()
	}
	switch {
	case ctx.Err() != nil:
		return
	case err == nil && resp.Status == wire.AuthzOK:
		limit = min(limit, resp.RemainingMinor)
		if resp.NameMasked != "" {
			masked = resp.NameMasked
		}
	case err == nil:
		denied = resp.Reason
		if denied == "" {
			denied = "the wallet refused this top-up"
		}
	default:
		e.log.Info("ledger not reachable for authorization, using offline limits", "err", err)
		offline = true
		st, serr := e.j.Stats()
		if serr != nil {
			denied = "the kiosk cannot check its offline limit"
			break
		}
		limit = min(limit, e.cfg.Limits.OfflineSessionMax, e.cfg.Limits.OfflineTotalMax-st.OutboxMinor)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.state != Authorizing {
		return
	}
	if denied == "" && limit < e.smallestNote() {
		if offline {
			denied = "top-ups are not available while the kiosk is offline"
		} else {
			denied = "your wallet cannot take more money today"
		}
	}
	if denied != "" {
		e.log.Info("top-up refused", "reason", denied, "offline", offline)
		e.messageLocked("error", "Sorry, "+denied+".")
		e.setStateLocked(Idle)
		e.changedLocked()
		return
	}
	s, err := e.j.OpenSession(journal.OpenSessionParams{Account: p.Account, AccountMasked: masked, LimitMinor: limit, Offline: offline, QRNonce: p.Nonce, QR: p.Raw})
	if err != nil {
		e.journalFailedLocked("open session", err)
		e.setStateLocked(OutOfService)
		e.changedLocked()
		return
	}
	e.sess = &s
	e.lastActivity = e.now()
	e.setStateLocked(Accepting)
	e.messageLocked("info", "Please insert your notes.")
	// The unit takes every denomination that fits the session's limit. The mask is not
	// narrowed note by note: a note that no longer fits reaches escrow and is returned by
	// the host with a reason the customer can read ("over your limit"), where a unit
	// refusing a disabled denomination gives no reason at all.
	e.wantLocked(e.allowedCodesLocked())
	e.changedLocked()
}

func (e *Engine) smallestNote() int64 {
	var m int64
	for _, n := range e.cfg.Denominations {
		if n.ValueMinor > 0 && (m == 0 || n.ValueMinor < m) {
			m = n.ValueMinor
		}
	}
	return m
}

// Shutdown parks the kiosk for a stop: no new session starts, an authorization in progress
// is dropped, an open session is closed (as interrupted) and its receipt printed, the
// acceptor is inhibited, and Shutdown waits until the note in transit has ended at the credit
// point or back at the front. It returns ctx's error if that did not happen in time; the
// next start's recovery finishes the job then.
func (e *Engine) Shutdown(ctx context.Context) error {
	e.mu.Lock()
	e.stopping = true
	switch e.state {
	case Authorizing, Done:
		e.setStateLocked(Idle)
	case Accepting:
		e.startCloseLocked(wire.OutcomeInterrupted, "kiosk stopping")
	}
	e.wantLocked(nil)
	e.messageLocked("info", "This kiosk is closing. Please wait.")
	e.changedLocked()
	defer e.mu.Unlock()
	for {
		intents, err := e.j.OpenIntents()
		if err == nil && len(intents) == 0 && e.state != Closing && e.state != Starting && e.doneGen >= e.wantGen && (e.unitSettled || e.unit == 0) {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !e.waitLocked(ctx, 100*time.Millisecond) {
			return ctx.Err()
		}
	}
}

// Finish is the customer's Finish button.
func (e *Engine) Finish() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.state != Accepting {
		return fmt.Errorf("%w: %s", ErrBusy, e.state)
	}
	e.startCloseLocked(wire.OutcomeComplete, "customer finished")
	return nil
}

// Cancel is the customer's Cancel button: before any money it ends the session; with money
// inserted it is the same as Finish (stacked notes cannot be given back).
func (e *Engine) Cancel() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch e.state {
	case Authorizing:
		e.setStateLocked(Idle)
		e.messageLocked("info", "Cancelled.")
		e.changedLocked()
		return nil
	case Accepting:
		e.startCloseLocked(wire.OutcomeComplete, "customer cancelled")
		return nil
	case Done:
		e.toIdleLocked()
		return nil
	}
	return fmt.Errorf("%w: %s", ErrBusy, e.state)
}

// startCloseLocked moves to closing and starts the close task.
func (e *Engine) startCloseLocked(outcome, why string) {
	if e.state == Authorizing {
		e.setStateLocked(Idle)
		e.changedLocked()
		return
	}
	if e.state != Accepting || e.sess == nil {
		return
	}
	e.setStateLocked(Closing)
	e.closeOutcome = outcome
	e.messageLocked("info", "Finishing, please wait…")
	e.wantLocked(nil)
	e.changedLocked()
	sid := e.sess.ID
	ctx := e.runCtx
	e.log.Info("closing session", "session", sid, "why", why)
	e.tasks.Add(1)
	go func() {
		defer e.tasks.Done()
		e.close(ctx, sid)
	}()
}

func (e *Engine) unitBusyLocked() bool { return !e.unitSettled }

// close inhibits the unit, waits for the note in transit, closes the session in one
// transaction, waits briefly for the ledger's ack, and prints the receipt.
func (e *Engine) close(ctx context.Context, sid uint64) {
	// Once the session is closed in the journal, the rest (ack wait, receipt) must finish
	// even while the daemon stops: the customer's money is on it.
	parent := ctx
	ctx = context.WithoutCancel(ctx)
	e.waitApplied(ctx, e.cfg.Timing.SettleTimeout)
	deadline := e.now().Add(e.cfg.Timing.SettleTimeout)
	e.mu.Lock()
	for {
		intents, err := e.j.OpenIntents()
		if err == nil && len(intents) == 0 && e.unitSettled {
			break
		}
		if parent.Err() != nil {
			// The stop's grace ran out with a note in transit: leave the session open. The
			// next start's recovery hears from the unit what happened to the note and
			// closes the session then, rather than guessing now.
			e.log.Warn("stopping with a note in transit; the session stays open for recovery", "session", sid)
			e.mu.Unlock()
			return
		}
		left := deadline.Sub(e.now())
		if left <= 0 {
			e.log.Warn("note still in transit at close; it becomes an uncertain item", "intents", len(intents))
			break
		}
		e.waitLocked(ctx, min(left, 200*time.Millisecond))
	}
	e.cfg.Hook("before-close")
	res, err := e.j.CloseSession(journal.CloseParams{SessionID: sid, Outcome: e.closeOutcome, UnresolvedReason: "still in transit at session close"})
	if err != nil {
		e.journalFailedLocked("close session", err)
		e.setStateLocked(OutOfService)
		e.changedLocked()
		e.mu.Unlock()
		return
	}
	e.cfg.Hook("after-close")
	e.sess = nil
	if res.Topup != nil || len(res.Session.Uncertain) > 0 {
		// The unit is inhibited and at rest: a good moment for the counter baseline.
		e.mu.Unlock()
		e.takeBaseline(ctx, 0)
		e.mu.Lock()
	}
	if res.Topup == nil {
		e.messageLocked("info", "Cancelled. No money was taken.")
		e.toIdleLocked()
		e.mu.Unlock()
		return
	}
	t := *res.Topup
	if n := len(res.Session.Uncertain); n > 0 {
		e.cfg.Health.Event("uncertain_item", health.Critical, health.Staff,
			fmt.Sprintf("top-up %s closed with %d uncertain note(s)", t.TopupID, n))
	}
	e.view.Result = &Result{TopupID: t.TopupID, ReceiptNo: t.ReceiptNo, AmountMinor: t.AmountMinor, Currency: t.Currency,
		Status: ReceiptPending, Outcome: t.Outcome, Uncertain: len(res.Session.Uncertain)}
	e.messageLocked("info", "Thank you. Printing your receipt…")
	e.changedLocked()
	e.mu.Unlock()
	if e.cfg.Uplink != nil {
		e.cfg.Uplink.Kick()
	}
	// Give the ledger a moment so an online kiosk prints "credited".
	ackDeadline := e.now().Add(e.cfg.Timing.AckWait)
	e.mu.Lock()
	for {
		if _, ok := e.acked[t.TopupID]; ok {
			break
		}
		left := ackDeadline.Sub(e.now())
		if left <= 0 {
			break
		}
		e.waitLocked(ctx, left)
	}
	e.mu.Unlock()
	printed := e.printTopup(ctx, t, false)
	e.mu.Lock()
	if e.view.Result != nil && e.view.Result.TopupID == t.TopupID {
		e.view.Result.Printed = printed
		if a, ok := e.acked[t.TopupID]; ok {
			e.view.Result.Status = ReceiptCredited
			if a.State == journal.TopupHeld {
				e.view.Result.Status = ReceiptUnderReview
			}
		}
	}
	if printed {
		e.messageLocked("info", "Please take your receipt.")
	} else {
		e.messageLocked("info", "No receipt could be printed. Please note your reference.")
	}
	e.setStateLocked(Done)
	e.doneAt = e.now()
	e.changedLocked()
	e.mu.Unlock()
}

// printTopup prints the receipt of t; copy forces the COPY mark. It journals the print
// states around the printer call so that a crash mid-print never yields a second original.
func (e *Engine) printTopup(ctx context.Context, t journal.Topup, copy bool) bool {
	if e.cfg.Printer == nil {
		e.cfg.Health.Set("printer_missing", health.Warning, health.Engineer, health.Degrades, "no receipt printer configured")
		return false
	}
	w, err := t.Wire()
	if err != nil {
		e.log.Error("stored top-up unreadable", "topup", t.TopupID, "err", err)
		return false
	}
	e.mu.Lock()
	acked, ok := e.acked[t.TopupID]
	e.mu.Unlock()
	status := ReceiptPending
	if t.State == journal.TopupCredited || (ok && acked.State == journal.TopupCredited) {
		status = ReceiptCredited
	}
	// A top-up the ledger held for review is not credited: the customer's receipt must not
	// say it is.
	if (len(w.Uncertain) > 0 && w.AmountMinor == 0) || t.State == journal.TopupHeld || (ok && acked.State == journal.TopupHeld) {
		status = ReceiptUnderReview
	}
	e.cfg.Hook("before-print")
	cuts, known := e.cutCount(ctx)
	started, err := e.j.MarkPrintStart(t.Seq, cuts, known)
	if err != nil {
		e.mu.Lock()
		e.journalFailedLocked("mark print", err)
		e.mu.Unlock()
		return false
	}
	// A receipt whose print was started before (a crash mid-print) may exist on paper: any
	// further print is a COPY.
	copy = copy || started.Prints > 1
	notes := make([]journal.NoteLine, 0, len(w.Notes))
	for _, n := range w.Notes {
		notes = append(notes, journal.NoteLine{ValueMinor: n.ValueMinor, Count: n.Count})
	}
	pctx, cancel := context.WithTimeout(ctx, e.cfg.Timing.PrintTimeout)
	err = e.cfg.Printer.PrintReceipt(pctx, Receipt{Topup: t, Notes: notes, Uncertain: w.Uncertain, Status: status, Copy: copy, LocalTime: w.ClosedAt})
	cancel()
	e.cfg.Hook("after-print")
	state, detail := journal.PrintDone, ""
	if errors.Is(err, ErrNotPrinted) {
		// Refused before a byte was sent: no paper exists, the next attempt is an original.
		state, detail = journal.PrintUnsent, err.Error()
	} else if err != nil {
		state, detail = journal.PrintFailed, err.Error()
	}
	if err != nil {
		e.log.Warn("receipt not printed", "topup", t.TopupID, "err", err)
		e.cfg.Health.Set("printer", health.Warning, health.Staff, health.Degrades, "receipt printer: "+err.Error())
	} else {
		e.cfg.Health.Clear("printer")
	}
	if _, merr := e.j.MarkPrint(t.Seq, state, detail); merr != nil {
		e.mu.Lock()
		e.journalFailedLocked("mark print", merr)
		e.mu.Unlock()
	}
	return err == nil
}

// recover runs at start-up: it lets the acceptor report what happened to a note in transit,
// resolves open stack intents from that evidence, closes a session left open as interrupted,
// and prints receipts that never finished printing.
func (e *Engine) recover(ctx context.Context) error {
	e.mu.Lock()
	e.state = Starting
	if s, ok, err := e.j.CurrentSession(); err != nil {
		e.mu.Unlock()
		return fmt.Errorf("session: recovery: %w", err)
	} else if ok {
		e.sess = &s
		e.log.Warn("session left open by the previous run; it will be closed as interrupted", "session", s.ID, "total", s.TotalMinor)
	}
	intents, err := e.j.OpenIntents()
	if err != nil {
		e.mu.Unlock()
		return fmt.Errorf("session: recovery: %w", err)
	}
	e.changedLocked()
	// The unit must be inhibited before anything else: no new note while we recover.
	e.wantLocked(nil)
	e.mu.Unlock()
	if len(intents) > 0 || e.sess != nil {
		e.log.Warn("recovering", "open_intents", len(intents))
	}
	// Wait for the unit to come to rest before serving anyone: its start-up reports (a
	// repeated credit, a note still in escrow, a power-up with the note in the acceptor or
	// stacker) resolve open intents through the handler, and a note it holds in escrow with
	// no intent (inserted just before the crash) must go back to its owner, not into the
	// next customer's session. A unit at rest and inhibited has said all it will say. The
	// wait is bounded by the recovery timeout.
	deadline := e.now().Add(e.cfg.Timing.RecoveryTimeout)
	e.mu.Lock()
	for {
		if e.unitSettled && e.doneGen >= e.wantGen {
			break
		}
		left := deadline.Sub(e.now())
		if left <= 0 {
			break
		}
		if !e.waitLocked(ctx, min(left, 250*time.Millisecond)) {
			e.mu.Unlock()
			return ctx.Err()
		}
	}
	open, _ := e.j.OpenIntents()
	if len(open) == 1 && e.unitSettled {
		// A unit that counts what it stacked (SSP GET COUNTERS) settles the last doubt:
		// compared with the count journaled when no note was in transit, its counter says
		// whether this note went in.
		e.mu.Unlock()
		stacked, ok := e.stackedWitness(ctx)
		e.mu.Lock()
		if ok {
			res, evidence := journal.ResolvedReturned, "the unit's stacked counter did not move: the note did not go in"
			if stacked {
				res, evidence = journal.ResolvedStacked, "the unit's stacked counter counts this note: it went into the cassette"
			}
			s, err := e.j.ResolveIntent(open[0].ID, res, evidence)
			if err != nil {
				e.journalFailedLocked("resolve intent", err)
			} else {
				e.log.Warn("resolved a stack intent from the unit's stacked counter", "intent", open[0].ID, "resolution", res)
				if e.sess != nil && e.sess.ID == s.ID {
					e.sess = &s
				}
			}
			open, _ = e.j.OpenIntents()
		}
	}
	for _, in := range open {
		evidence := "the unit reported neither a credit nor a return after the restart"
		if !e.unitSettled {
			evidence = "the unit did not come to rest within the recovery timeout"
		}
		s, err := e.j.ResolveIntent(in.ID, journal.ResolvedUncertain, evidence)
		if err != nil {
			e.journalFailedLocked("resolve intent", err)
			continue
		}
		e.cfg.Health.Event("uncertain_item", health.Critical, health.Staff,
			fmt.Sprintf("note of %d minor units in session %d: %s; settle at cash collection", in.Note.ValueMinor, in.SessionID, evidence))
		if e.sess != nil && e.sess.ID == s.ID {
			e.sess = &s
		}
	}
	// Pulses journaled without a credit after them: a train cut short by the restart.
	if _, ok, err := e.j.OpenPulseTrain(); err == nil && ok {
		sid := uint64(0)
		if e.sess != nil {
			sid = e.sess.ID
		}
		if err := e.j.PulseUncertain(sid, "pulse train interrupted by a restart"); err != nil {
			e.journalFailedLocked("uncertain pulse train", err)
		} else {
			e.cfg.Health.Event("uncertain_item", health.Critical, health.Staff, "a pulse train was cut short by a restart; settle at cash collection")
			e.refreshSessionLocked()
		}
	}
	// With every intent resolved and the unit at rest, its counter tells whether a note went
	// in whose record the storage lost (its stack intent's commit dropped by a power cut):
	// such a note belongs to the interrupted session, so reconcile before closing it.
	if e.unitSettled {
		sid := uint64(0)
		if e.sess != nil {
			sid = e.sess.ID
		}
		e.mu.Unlock()
		e.takeBaseline(ctx, sid)
		e.mu.Lock()
	}
	e.recovering = false
	var closed *journal.Topup
	if e.sess != nil {
		res, err := e.j.CloseSession(journal.CloseParams{SessionID: e.sess.ID, Outcome: wire.OutcomeInterrupted, UnresolvedReason: "open at restart"})
		if err != nil {
			e.journalFailedLocked("close interrupted session", err)
		} else {
			e.log.Warn("closed interrupted session", "session", e.sess.ID, "total", res.Session.TotalMinor)
			closed = res.Topup
			if closed != nil {
				e.view.Result = &Result{TopupID: closed.TopupID, ReceiptNo: closed.ReceiptNo, AmountMinor: closed.AmountMinor,
					Currency: closed.Currency, Status: ReceiptPending, Outcome: closed.Outcome, Uncertain: len(res.Session.Uncertain)}
			}
		}
		e.sess = nil
	}
	e.mu.Unlock()
	if closed != nil && e.cfg.Uplink != nil {
		e.cfg.Uplink.Kick()
	}
	e.reprintUnprinted(ctx)
	e.mu.Lock()
	if e.view.Result != nil {
		e.setStateLocked(Done)
		e.doneAt = e.now()
		e.changedLocked()
	} else {
		e.toIdleLocked()
	}
	e.mu.Unlock()
	return nil
}

// reprintUnprinted prints receipts a crash left unprinted: an original if printing never
// started, a COPY if it may have.
func (e *Engine) reprintUnprinted(ctx context.Context) {
	ts, err := e.j.Unprinted()
	if err != nil {
		e.log.Error("listing unprinted receipts", "err", err)
		return
	}
	for _, t := range ts {
		if ctx.Err() != nil {
			return
		}
		e.log.Info("printing receipt left unprinted", "topup", t.TopupID, "print_state", t.PrintState, "prints", t.Prints)
		if t.PrintState != journal.PrintNone && t.PrintCutsKnown {
			// The printer's cut counter says whether the interrupted receipt came out.
			if now, ok := e.cutCount(ctx); ok {
				switch {
				case now == t.PrintCuts:
					// Nothing was cut since it started: no receipt exists, the next print is
					// the original.
					if _, err := e.j.MarkPrint(t.Seq, journal.PrintUnsent, "cut counter unchanged since the interrupted print"); err == nil {
						t.Prints--
					}
				case now > t.PrintCuts:
					// It was cut: the original is out; printing it again would make two.
					e.log.Info("interrupted receipt came out (cut counter moved); not printed again", "topup", t.TopupID)
					if _, err := e.j.MarkPrint(t.Seq, journal.PrintDone, "cut counter moved since the print started"); err != nil {
						e.mu.Lock()
						e.journalFailedLocked("mark print", err)
						e.mu.Unlock()
					}
					continue
				}
			}
		}
		if t.PrintState == journal.PrintNone {
			// The journal says this receipt was never started; but if the printer cut more
			// receipts than the journal knows of, the record of its printing was lost with
			// the storage's last transaction (a power cut on lying storage): it is out.
			if now, ok := e.cutCount(ctx); ok {
				if known, have, err := e.j.PrinterCuts(); err == nil && have && now > known {
					e.log.Warn("printer cut a receipt the journal has no record of; taking it for this one", "topup", t.TopupID, "cuts", now, "journal_cuts", known)
					if _, err := e.j.MarkPrintStart(t.Seq, now-1, true); err == nil {
						e.j.MarkPrint(t.Seq, journal.PrintDone, "printer's cut counter is ahead of the journal: the record of this print was lost")
					}
					continue
				}
			}
		}
		// Prints counts the attempts that may have put paper out; any of them makes this
		// one a COPY.
		e.printTopup(ctx, t, t.Prints > 0)
	}
}

// cutCount reads the printer's cut counter, when it has one.
func (e *Engine) cutCount(ctx context.Context) (uint64, bool) {
	cc, ok := e.cfg.Printer.(CutCounter)
	if !ok {
		return 0, false
	}
	// Twice: a first query can meet stale bytes on the line; the driver drains them.
	for range 2 {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		n, err := cc.CutCount(cctx)
		cancel()
		if err == nil {
			return n, true
		}
	}
	return 0, false
}

// formatMinor renders an amount for messages (the receipt renderer has its own table).
func formatMinor(v int64, currency string) string {
	exp := 2
	switch currency {
	case "JPY", "KRW", "VND", "CLP", "ISK", "UGX":
		exp = 0
	}
	if exp == 0 {
		return fmt.Sprintf("%d %s", v, currency)
	}
	neg := ""
	if v < 0 {
		neg, v = "-", -v
	}
	return fmt.Sprintf("%s%d.%02d %s", neg, v/100, v%100, currency)
}

// unitID names the acceptor unit for the counter baseline: its serial number when the
// driver read one, so that a counter is never compared with another unit's baseline.
func (e *Engine) unitID() string {
	if d, ok := e.cfg.Acceptor.(interface{ Info() acceptor.Info }); ok {
		return d.Info().Serial
	}
	return ""
}

// stackedWitness reads the unit's stacked counter (when the driver has one) and compares it
// with the journaled baseline: whether the one note in transit went into the cassette, and
// ok=false when the counter cannot tell (see journal.Witness). Called without e.mu.
func (e *Engine) stackedWitness(ctx context.Context) (stacked, ok bool) {
	sc, has := e.cfg.Acceptor.(acceptor.StackCounter)
	if !has {
		return false, false
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	n, err := sc.StackedCount(cctx)
	cancel()
	if err != nil {
		return false, false
	}
	wit, has, err := e.j.StackedWitness(e.unitID(), n)
	if err != nil || !has {
		return false, false
	}
	return wit.InTransit()
}

// takeBaseline reconciles the unit's stacked counter with the journal while no note is in
// transit and journals it as the new baseline (journal.ReconcileDeviceCounter): notes the
// unit counted that the journal has no record of become uncertain items of session sid (0:
// none open). Called without e.mu.
func (e *Engine) takeBaseline(ctx context.Context, sid uint64) {
	sc, ok := e.cfg.Acceptor.(acceptor.StackCounter)
	if !ok {
		return
	}
	if in, err := e.j.OpenIntents(); err != nil || len(in) > 0 {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	n, err := sc.StackedCount(cctx)
	cancel()
	if err != nil {
		e.log.Info("unit's stacked counter not read", "err", err)
		return
	}
	unit := e.unitID()
	res, err := e.j.ReconcileDeviceCounter(unit, n, sid)
	e.mu.Lock()
	defer e.mu.Unlock()
	if err != nil {
		e.journalFailedLocked("device baseline", err)
		return
	}
	switch {
	case res.Uncertain > 0:
		e.log.Error("the unit stacked notes the journal has no record of; recorded as uncertain", "notes", res.Uncertain, "counter", n, "session", sid)
		e.cfg.Health.Event("uncertain_item", health.Critical, health.Staff,
			fmt.Sprintf("the bill acceptor counted %d note(s) more than the journal holds (a record lost at a power cut); settle at cash collection", res.Uncertain))
		if e.sess != nil && e.sess.ID == sid {
			if s, ok, err := e.j.CurrentSession(); err == nil && ok && s.ID == sid {
				e.sess = &s
			}
		}
		e.changedLocked()
	case res.Extra != 0:
		// Not notes to settle: a counter reset, a replaced unit that kept its serial, or a
		// credit the unit did not count. An engineer looks at it; the baseline moved on.
		e.log.Error("the unit's stacked counter disagrees with the journal", "extra", res.Extra, "counter", n, "unit", unit)
		e.cfg.Health.Event("counter_mismatch", health.Warning, health.Engineer,
			fmt.Sprintf("bill acceptor stacked counter differs from the journal by %d note(s) since the last baseline", res.Extra))
	}
}

// settleByWitness waits for the unit to come to rest after it restarted under a running
// kiosk, then settles intent in from the unit's stacked counter, or makes it uncertain.
func (e *Engine) settleByWitness(ctx context.Context, in journal.Intent) {
	deadline := e.now().Add(e.cfg.Timing.RecoveryTimeout)
	e.mu.Lock()
	for !e.unitSettled && e.now().Before(deadline) {
		if !e.waitLocked(ctx, 250*time.Millisecond) {
			e.mu.Unlock()
			return
		}
	}
	e.mu.Unlock()
	stacked, ok := e.stackedWitness(ctx)
	res, evidence := journal.ResolvedUncertain, "unit restarted with the note in transit and its counter could not tell"
	switch {
	case ok && stacked:
		res, evidence = journal.ResolvedStacked, "unit restarted; its stacked counter counts this note: it went into the cassette"
	case ok:
		res, evidence = journal.ResolvedReturned, "unit restarted; its stacked counter did not move: the note did not go in"
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	s, err := e.j.ResolveIntent(in.ID, res, evidence)
	if err != nil {
		if !errors.Is(err, journal.ErrNoIntent) {
			e.journalFailedLocked("resolve intent", err)
		}
		return
	}
	if res == journal.ResolvedUncertain {
		e.cfg.Health.Event("uncertain_item", health.Critical, health.Staff,
			fmt.Sprintf("note of %d minor units in session %d: %s; settle at cash collection", in.Note.ValueMinor, in.SessionID, evidence))
	}
	if e.sess != nil && e.sess.ID == s.ID {
		e.sess = &s
	}
	e.changedLocked()
}
