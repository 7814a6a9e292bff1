package session

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/i18n"
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

// scan handles a code read by the QR scanner (the state was checked by the command table).
func (c *core) scan(code string) error {
	if c.stopping || c.exiting {
		return fmt.Errorf("%w: stopping", ErrBusy)
	}
	if c.maintWanted || c.updateReady {
		return fmt.Errorf("%w: maintenance", ErrBusy)
	}
	if c.inSession() || c.rec != nil {
		return fmt.Errorf("%w: a session is still closing", ErrBusy)
	}
	if c.result != nil {
		c.result = nil
		c.message, c.messageKind = "", ""
	}
	if st := c.derive(); st != Idle {
		c.e.log.Info("scan ignored", "state", st.String())
		return fmt.Errorf("%w: %s", ErrBusy, st)
	}
	// The expiry is checked against the wall clock only when it is known good; otherwise
	// against the ledger's signed time in the authz answer (authorized), and the nonce is
	// spent only once the code passed that check: a code refused for want of a time stays
	// usable when the kiosk is back online.
	now := c.now()
	p, err := c.e.cfg.WalletKeys.VerifyClock(code, now, c.e.cfg.ClockTrusted(now))
	needTime := errors.Is(err, qrpay.ErrClockUntrusted)
	switch {
	case needTime:
		err = nil
		if used, uerr := c.e.j.NonceUsed(p.Nonce); uerr == nil && used {
			err = qrpay.ErrReplayed
		} else if uerr != nil {
			c.journalFailedOp("read nonce", uerr)
			c.say("error", i18n.KeyCannotTakeMoney, "Sorry, the kiosk cannot take money now.")
			return uerr
		}
	case err == nil:
		err = c.spendNonce(p)
		if err != nil && !errors.Is(err, qrpay.ErrReplayed) {
			return err // the journal failed: already told and recorded
		}
	}
	if err != nil {
		c.refused(err)
		return err
	}
	c.lastActivity = now
	c.authzGen++
	c.authz = &authzPending{gen: c.authzGen, p: p, needTime: needTime}
	c.say("info", i18n.KeyCheckingWallet, "Checking your wallet…")
	gen := c.authzGen
	// The limits in force now (set_limits changes them on the loop; the task must not read
	// them while it runs).
	lim := c.limits
	c.e.spawn("authorize", func(ctx context.Context) msg {
		a := c.e.authorize(ctx, p, lim)
		return msg{apply: func(c *core) { c.authorized(gen, a) }}
	})
	return nil
}

// spendNonce journals the code's nonce as used: nil, qrpay.ErrReplayed, or the journal's
// failure (already handled: the customer was told and the fault recorded).
func (c *core) spendNonce(p qrpay.Payload) error {
	uerr := c.e.j.UseNonce(p.Nonce, p.Expires)
	switch {
	case errors.Is(uerr, journal.ErrNonceUsed):
		return qrpay.ErrReplayed
	case uerr != nil:
		c.journalFailedOp("use nonce", uerr)
		c.say("error", i18n.KeyCannotTakeMoney, "Sorry, the kiosk cannot take money now.")
		return uerr
	}
	c.journalOK()
	return nil
}

// refusedLogEvery is the least time between two log lines about refused codes: a flood of
// forged codes or scanner noise must not fill the log (each refusal is counted in the
// health counters, qr_refused, which the heartbeat carries).
const refusedLogEvery = time.Minute

// refused tells the customer why a code was refused, counts it, and logs a summary line at
// most once per refusedLogEvery. It writes nothing durable.
func (c *core) refused(err error) {
	sev := health.Info
	if errors.Is(err, qrpay.ErrSignature) || errors.Is(err, qrpay.ErrReplayed) {
		sev = health.Warning
	}
	c.e.cfg.Health.Event("qr_refused", sev, health.None, err.Error())
	c.refusedN++
	now := c.now()
	if c.refusedLogAt.IsZero() || now.Sub(c.refusedLogAt) >= refusedLogEvery || now.Before(c.refusedLogAt) {
		c.e.log.Warn("wallet code refused", "reason", err, "refused_since_last_line", c.refusedN)
		c.refusedN, c.refusedLogAt = 0, now
	}
	c.say("error", i18n.QRKey(err), qrpay.Message(err))
}

// authzOutcome is what the ledger (or the offline limits) allow.
type authzOutcome struct {
	limit   int64
	offline bool
	masked  string
	denied  string
	// ledgerNow is the ledger's signed time (zero offline, or from an older ledger).
	ledgerNow time.Time
}

// authorize asks the ledger and falls back to the offline limits. It runs as a task.
func (e *Engine) authorize(ctx context.Context, p qrpay.Payload, lim Limits) authzOutcome {
	out := authzOutcome{limit: lim.SessionMax, masked: qrpay.Mask(p.Account)}
	var resp wire.AuthzResponse
	var err error = errors.New("no authorizer configured")
	if e.cfg.Authorizer != nil {
		actx, cancel := context.WithTimeout(ctx, e.cfg.Timing.AuthzTimeout)
		resp, err = e.cfg.Authorizer.Authorize(actx, p.Account, p.Nonce, p.Raw)
		cancel()
	}
	if err == nil {
		out.ledgerNow = resp.Now
	}
	switch {
	case ctx.Err() != nil:
		out.denied = "the kiosk is stopping"
	case err == nil && resp.Status == wire.AuthzOK:
		out.limit = min(out.limit, resp.RemainingMinor)
		if resp.NameMasked != "" {
			out.masked = resp.NameMasked
		}
	case err == nil:
		out.denied = resp.Reason
		if out.denied == "" {
			out.denied = "the wallet refused this top-up"
		}
	default:
		e.log.Info("ledger not reachable for authorization, using offline limits", "err", err)
		out.offline = true
		st, serr := e.j.Stats()
		if serr != nil {
			out.denied = "the kiosk cannot check its offline limit"
			break
		}
		out.limit = min(out.limit, lim.OfflineSessionMax, lim.OfflineTotalMax-st.OutboxMinor)
	}
	return out
}

// authorized opens the session the ledger allowed.
func (c *core) authorized(gen uint64, a authzOutcome) {
	if c.authz == nil || c.authz.gen != gen {
		return // cancelled, or a stop or a fault ended it
	}
	p, needTime := c.authz.p, c.authz.needTime
	c.authz = nil
	if needTime && a.denied == "" && !c.checkLedgerTime(p, a) {
		return
	}
	if a.denied == "" && a.limit < c.smallestNote() {
		if a.offline {
			a.denied = "top-ups are not available while the kiosk is offline"
		} else {
			a.denied = "your wallet cannot take more money today"
		}
	}
	if a.denied != "" {
		c.e.log.Info("top-up refused", "reason", a.denied, "offline", a.offline)
		c.say("error", deniedKey(a.denied), "Sorry, "+a.denied+".")
		return
	}
	s, err := c.e.j.OpenSession(journal.OpenSessionParams{Account: p.Account, AccountMasked: a.masked, LimitMinor: a.limit, Offline: a.offline, QRNonce: p.Nonce, QR: p.Raw})
	if err != nil {
		c.journalFailedOp("open session", err)
		c.say("error", i18n.KeyCannotTakeMoney, "Sorry, the kiosk cannot take money now.")
		return
	}
	c.journalOK()
	c.sess = &s
	c.sessCodes = c.fittingCodes()
	c.lastActivity = c.now()
	c.say("info", i18n.KeyInsertNotes, "Please insert your notes.")
}

// checkLedgerTime checks, for a code scanned while the kiosk's clock was not known good, the
// code's expiry against the ledger's signed time, and then spends its nonce. Offline, or
// without a time from the ledger, the code is refused: its expiry cannot be checked. It
// reports whether the session may open.
func (c *core) checkLedgerTime(p qrpay.Payload, a authzOutcome) bool {
	var err error
	switch {
	case a.offline || a.ledgerNow.IsZero():
		err = qrpay.ErrClockUntrusted
	default:
		err = qrpay.VerifyAt(p, a.ledgerNow)
	}
	if err == nil {
		// A signed time is the best anchor the journal gets for pruning used nonces.
		c.e.j.AnchorTime(a.ledgerNow)
		if err = c.spendNonce(p); err != nil && !errors.Is(err, qrpay.ErrReplayed) {
			return false
		}
	}
	if err != nil {
		c.refused(err)
		return false
	}
	return true
}

func (c *core) smallestNote() int64 {
	var m int64
	for _, n := range c.e.cfg.Denominations {
		if n.ValueMinor > 0 && (m == 0 || n.ValueMinor < m) {
			m = n.ValueMinor
		}
	}
	return m
}

// closePhase is where a closing session is.
type closePhase int

const (
	// closeSettle: the unit is being inhibited; a note in transit may still reach the
	// credit point.
	closeSettle closePhase = iota
	// closeRetry: the journal refused the close; it is retried with backoff.
	closeRetry
	// closeBaseline: closed; the unit's stacked counter is read as the new baseline.
	closeBaseline
	// closeAck: closed; a moment for the ledger's ack, so that an online kiosk prints
	// "credited".
	closeAck
	// closePrint: the receipt is printing.
	closePrint
	// closeDone: finished.
	closeDone
)

type closing struct {
	sid       uint64
	outcome   string
	why       string
	phase     closePhase
	inhibited bool
	// appliedBy bounds the wait for the unit to be inhibited; settleBy the wait for a note
	// in transit once it is.
	appliedBy   time.Time
	settleBy    time.Time
	inTransitBy time.Time
	// retryAt and backoff pace the close's retries after a journal failure; shown is set
	// once the customer was given a result anyway.
	retryAt time.Time
	backoff time.Duration
	showBy  time.Time
	shown   bool
	topup   *journal.Topup
	ackBy   time.Time
}

// startClose moves the open session to closing.
func (c *core) startClose(outcome, why string) {
	if c.authz != nil {
		c.authz = nil
		return
	}
	if c.sess == nil || c.closing != nil {
		return
	}
	now := c.now()
	c.closing = &closing{sid: c.sess.ID, outcome: outcome, why: why, appliedBy: now.Add(c.e.cfg.Timing.SettleTimeout)}
	c.say("info", i18n.KeyFinishing, "Finishing, please wait…")
	c.e.log.Info("closing session", "session", c.sess.ID, "why", why)
}

// advanceClose runs the close's phases; it reports whether anything changed.
func (c *core) advanceClose(now time.Time) bool {
	cl := c.closing
	switch cl.phase {
	case closeSettle:
		changed := false
		if !cl.inhibited {
			if !c.applied() && now.Before(cl.appliedBy) {
				return false
			}
			cl.inhibited, cl.settleBy, changed = true, now.Add(c.e.cfg.Timing.SettleTimeout), true
			cl.inTransitBy = cl.settleBy.Add(c.e.cfg.Timing.InTransitTimeout)
		}
		intents, err := c.e.j.OpenIntents()
		if err == nil && len(intents) == 0 && c.unitSettled {
			c.closeSession()
			return true
		}
		if err == nil && len(intents) > 0 && c.unitSilent() && now.Before(cl.inTransitBy) && !now.Before(cl.settleBy) {
			// The unit could not tell us yet what became of the note: the link is down, or
			// the journal refused its credit and the unit will report it again. Closing now
			// would make it uncertain, and its late credit a second item. The session stays
			// open a while longer; the customer is not kept waiting. (A unit that reported a
			// fault, a jam or a pulled cassette, has told: its note is uncertain now.)
			if !cl.shown {
				c.e.log.Warn("note in transit and the unit not at rest; the session stays open for its report", "session", cl.sid)
				c.showPending(i18n.KeyPendingCounting, fmt.Sprintf("Your money is recorded. The kiosk is still counting your last note; your top-up follows. Your reference: S%d.", cl.sid))
				return true
			}
			return changed
		}
		if !now.Before(cl.settleBy) {
			c.e.log.Warn("note still in transit at close; it becomes an uncertain item", "intents", len(intents))
			c.closeSession()
			return true
		}
		return changed
	case closeRetry:
		if !now.Before(cl.retryAt) {
			c.closeSession()
			return true
		}
	case closeAck:
		if _, ok := c.acked[cl.topup.TopupID]; ok || !now.Before(cl.ackBy) || c.exiting {
			c.startPrint()
			return true
		}
	case closeDone:
		c.closing = nil
		c.resultUntil = now.Add(c.e.cfg.Timing.ResultDisplay)
		return true
	}
	return false
}

// closeSession closes the session in the journal, in one transaction.
func (c *core) closeSession() {
	cl := c.closing
	// A unit at rest has finished the last credited note: record it before the close, so
	// that the next note the unit reports in its stacker is never taken for it.
	if c.unitSettled {
		c.completeNote()
	}
	c.hit("before-close")
	res, err := c.e.j.CloseSession(journal.CloseParams{SessionID: cl.sid, Outcome: cl.outcome, UnresolvedReason: "still in transit at session close"})
	if err != nil {
		c.journalFailedOp("close session", err)
		now := c.now()
		if cl.phase != closeRetry {
			cl.phase, cl.backoff = closeRetry, time.Second
		} else {
			cl.backoff = min(cl.backoff*2, 30*time.Second)
		}
		cl.retryAt = now.Add(cl.backoff)
		if !cl.shown {
			// The customer does not wait on the storage: every note credited so far is on
			// disk; the top-up goes out when the close succeeds.
			c.showPending(i18n.KeyPendingLater, fmt.Sprintf("Your money is recorded, but the kiosk cannot finish your top-up now. It will be sent as soon as possible. Your reference: S%d.", cl.sid))
		}
		return
	}
	c.hit("after-close")
	c.journalOK()
	c.sess, c.sessCodes = nil, nil
	if res.Topup == nil {
		c.closing = nil
		c.result = nil
		c.say("info", i18n.KeyCancelledNoMoney, "Cancelled. No money was taken.")
		return
	}
	t := *res.Topup
	cl.topup = &t
	if n := len(res.Session.Uncertain); n > 0 {
		c.e.cfg.Health.Event("uncertain_item", health.Critical, health.Staff,
			fmt.Sprintf("top-up %s closed with %d uncertain note(s)", t.TopupID, n))
	}
	c.result = &Result{TopupID: t.TopupID, ReceiptNo: t.ReceiptNo, Reference: t.TopupID, AmountMinor: t.AmountMinor, Currency: t.Currency,
		Status: ReceiptPending, Outcome: t.Outcome, Uncertain: len(res.Session.Uncertain), UncertainMinor: uncertainValues(res.Session.Uncertain)}
	if !cl.shown {
		c.say("info", i18n.KeyPrinting, "Thank you. Printing your receipt…")
	}
	c.resultUntil = c.now().Add(c.e.cfg.Timing.ResultDisplay)
	if c.e.cfg.Uplink != nil {
		c.e.cfg.Uplink.Kick()
	}
	// The unit is inhibited and at rest: a good moment for the counter baseline.
	if c.startBaseline(0, func(c *core) { c.closeAfterBaseline() }) {
		cl.phase = closeBaseline
		return
	}
	c.closeAfterBaseline()
}

func (c *core) closeAfterBaseline() {
	cl := c.closing
	if cl == nil || cl.topup == nil {
		return
	}
	cl.phase, cl.ackBy = closeAck, c.now().Add(c.e.cfg.Timing.AckWait)
}

// unitSilent reports whether the unit has not been able to report the fate of the note in
// transit: its link is lost, or its credit report was refused by the journal (the driver did
// not acknowledge it, so the unit reports it again).
func (c *core) unitSilent() bool {
	return !c.unitSettled && (c.faults[acceptor.CommLost.String()] || c.creditRefused)
}

// showPending gives the customer of a session whose close has to wait a result now: the
// amount journaled so far, pending, with the session as reference.
func (c *core) showPending(key i18n.Key, text string) {
	cl := c.closing
	cl.shown = true
	s := c.sess
	c.result = &Result{Reference: fmt.Sprintf("S%d", cl.sid), AmountMinor: s.TotalMinor, Currency: s.Currency,
		Status: ReceiptPending, Outcome: cl.outcome, Uncertain: len(s.Uncertain), UncertainMinor: uncertainValues(s.Uncertain)}
	c.resultUntil = c.now().Add(c.e.cfg.Timing.ResultDisplay)
	c.say("error", key, text, i18n.String(i18n.PRef, c.result.Reference))
}

// startPrint prints the closed session's receipt as a task.
func (c *core) startPrint() {
	cl := c.closing
	cl.phase = closePrint
	t := *cl.topup
	c.spawnPrint(t, false, func(c *core, printed bool) {
		if r := c.result; r != nil && r.TopupID == t.TopupID {
			r.Printed = printed
			if a, ok := c.acked[t.TopupID]; ok {
				r.Status = receiptStatusFor(a, c.acked)
			}
		}
		if !cl.shown {
			if printed {
				c.say("info", i18n.KeyTakeReceipt, "Please take your receipt.")
			} else {
				c.say("info", i18n.KeyNoReceipt, "No receipt could be printed. Please note your reference.", i18n.String(i18n.PRef, t.TopupID))
			}
		}
		cl.phase = closeDone
	})
}

// uncertainValues lists the values of a session's uncertain notes, for the result screen.
func uncertainValues(us []journal.Uncertain) []int64 {
	var out []int64
	for _, u := range us {
		out = append(out, u.ValueMinor)
	}
	return out
}

// receiptStatus is what a receipt of t says about the money.
func (c *core) receiptStatus(t journal.Topup) string { return receiptStatusFor(t, c.acked) }

// receiptStatusFor: credited once the ledger acked the credit; under review when nothing
// was credited but uncertain items, or when the ledger held the top-up for review; pending
// otherwise.
func receiptStatusFor(t journal.Topup, acked map[string]journal.Topup) string {
	state := t.State
	if a, ok := acked[t.TopupID]; ok && (a.State == journal.TopupCredited || a.State == journal.TopupHeld) {
		state = a.State
	}
	switch {
	case state == journal.TopupHeld:
		return ReceiptUnderReview
	case state == journal.TopupCredited:
		return ReceiptCredited
	}
	if w, err := t.Wire(); err == nil && len(w.Uncertain) > 0 && w.AmountMinor == 0 {
		return ReceiptUnderReview
	}
	return ReceiptPending
}

// spawnPrint prints the receipt of t as a task and calls then on the loop with the outcome.
func (c *core) spawnPrint(t journal.Topup, copy bool, then func(c *core, printed bool)) {
	c.printing++
	status := c.receiptStatus(t)
	c.e.spawn("print", func(context.Context) msg {
		printed, jerr := c.e.printTopup(context.Background(), t, copy, status)
		return msg{apply: func(c *core) {
			c.printing--
			if jerr != nil {
				c.journalFailedOp("mark print", jerr)
				c.reprintOwed = true
			}
			then(c, printed)
		}}
	})
}

// printTopup prints the receipt of t; copy forces the COPY mark. It journals the print
// states around the printer call so that a crash mid-print never yields a second original.
// It runs as a task; a journal error is returned for the loop to record.
func (e *Engine) printTopup(ctx context.Context, t journal.Topup, copy bool, status string) (bool, error) {
	if e.cfg.Printer == nil {
		e.cfg.Health.Set("printer_missing", health.Warning, health.Engineer, health.Degrades, "no receipt printer configured")
		return false, nil
	}
	w, err := t.Wire()
	if err != nil {
		e.log.Error("stored top-up unreadable", "topup", t.TopupID, "err", err)
		return false, nil
	}
	hit(e, "before-print")
	cuts, known := e.cutCount(ctx)
	started, err := e.j.MarkPrintStart(t.Seq, cuts, known)
	if err != nil {
		return false, err
	}
	// A receipt whose print was started before (a crash mid-print) may exist on paper: any
	// further print is a COPY.
	copy = copy || started.Prints > 1
	notes := make([]journal.NoteLine, 0, len(w.Notes))
	for _, n := range w.Notes {
		notes = append(notes, journal.NoteLine{ValueMinor: n.ValueMinor, Count: n.Count})
	}
	pctx, cancel := context.WithTimeout(ctx, e.cfg.Timing.PrintTimeout)
	follows, ferr := e.j.FollowsReceipt(t)
	if ferr != nil {
		e.log.Warn("receipt of the top-up a follow-up follows not found", "topup", t.TopupID, "err", ferr)
	}
	err = e.cfg.Printer.PrintReceipt(pctx, Receipt{Topup: t, Notes: notes, Uncertain: w.Uncertain, Status: status, Copy: copy, LocalTime: w.ClosedAt,
		FollowsReceiptNo: follows})
	cancel()
	hit(e, "after-print")
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
		return err == nil, merr
	}
	return err == nil, nil
}

// hit marks a crash point from a task.
func hit(e *Engine, point string) { e.core.hit(point) }

// recPhase is where the start-up recovery is.
type recPhase int

const (
	// recWaitUnit: the unit is inhibited and says what happened to a note in transit.
	recWaitUnit recPhase = iota
	// recWitness: the unit's stacked counter is read to settle the one open intent.
	recWitness
	// recBaseline: the counter is reconciled with the journal before the session closes.
	recBaseline
	// recReprint: receipts a crash left unprinted are printed.
	recReprint
)

type recovery struct {
	phase    recPhase
	deadline time.Time
	result   *Result
}

// boot reads what the previous run left: an open session, open intents. It runs on Run's
// goroutine before the loop starts.
func (c *core) boot() error {
	s, ok, err := c.e.j.CurrentSession()
	if err != nil {
		return fmt.Errorf("session: recovery: %w", err)
	}
	if ok {
		c.sess = &s
		c.e.log.Warn("session left open by the previous run; it will be closed as interrupted", "session", s.ID, "total", s.TotalMinor)
	}
	if err := c.bootCollection(); err != nil {
		return err
	}
	// A pulse unit's line left enabled: the recovery records its uncertain item (pulseline.go).
	if c.line, err = c.e.j.PulseLineState(); err != nil {
		return fmt.Errorf("session: recovery: %w", err)
	}
	c.lineOwed = c.line.Enabled && c.line.Uncertain == 0
	if c.sess != nil {
		c.lineOwedSID = c.sess.ID
	}
	if c.line.Enabled {
		c.e.log.Warn("the pulse unit was enabled when the previous run stopped", "since_event", c.line.Since, "session", c.line.SessionID)
	}
	intents, err := c.e.j.OpenIntents()
	if err != nil {
		return fmt.Errorf("session: recovery: %w", err)
	}
	if len(intents) > 0 || c.sess != nil {
		c.e.log.Warn("recovering", "open_intents", len(intents))
	}
	// The unit must be inhibited before anything else: no new note while we recover. Wait
	// for it to come to rest before serving anyone: its start-up reports (a repeated credit,
	// a note still in escrow, a power-up with the note in the acceptor or stacker) resolve
	// open intents through the handler, and a note it holds in escrow with no intent
	// (inserted just before the crash) must go back to its owner, not into the next
	// customer's session. A unit at rest and inhibited has said all it will say. The wait
	// is bounded by the recovery timeout.
	if err := c.loadOps(); err != nil {
		return fmt.Errorf("session: recovery: %w", err)
	}
	c.rec.deadline = c.now().Add(c.e.cfg.Timing.RecoveryTimeout)
	c.wantGen++
	return nil
}

// advanceRecovery runs the recovery's phases.
func (c *core) advanceRecovery(now time.Time) bool {
	r := c.rec
	switch r.phase {
	case recWaitUnit:
		if !(c.unitSettled && c.applied()) && now.Before(r.deadline) {
			return false
		}
		open, _ := c.e.j.OpenIntents()
		if len(open) == 1 && c.unitSettled {
			if _, counts := c.e.cfg.Acceptor.(acceptor.StackCounter); counts {
				// A unit that counts what it stacked (SSP GET COUNTERS) settles the last doubt:
				// compared with the count journaled when no note was in transit, its counter
				// says whether this note went in.
				r.phase = recWitness
				in := open[0]
				c.e.spawn("witness", func(ctx context.Context) msg {
					stacked, ok := c.e.stackedWitness(ctx)
					return msg{apply: func(c *core) {
						if c.rec == nil {
							return
						}
						if ok {
							res, evidence := journal.ResolvedReturned, "the unit's stacked counter did not move: the note did not go in"
							if stacked {
								res, evidence = journal.ResolvedStacked, "the unit's stacked counter counts this note: it went into the cassette"
							}
							_ = c.resolveIntent(in, res, evidence)
						}
						c.recoverRest()
					}}
				})
				return true
			}
		}
		c.recoverRest()
		return true
	case recReprint:
		return false
	}
	return false
}

// recoverRest makes every intent still open uncertain, ends a pulse train cut short, takes
// the counter baseline and closes the interrupted session.
func (c *core) recoverRest() {
	r := c.rec
	open, _ := c.e.j.OpenIntents()
	for _, in := range open {
		evidence := "the unit reported neither a credit nor a return after the restart"
		if !c.unitSettled {
			evidence = "the unit did not come to rest within the recovery timeout"
		}
		_ = c.resolveIntent(in, journal.ResolvedUncertain, evidence)
	}
	// Pulses journaled without a credit after them: a train cut short by the restart.
	if _, ok, err := c.e.j.OpenPulseTrain(); err == nil && ok {
		sid := uint64(0)
		if c.sess != nil {
			sid = c.sess.ID
		}
		if err := c.e.j.PulseUncertain(sid, "pulse train interrupted by a restart"); err != nil {
			c.journalFailedOp("uncertain pulse train", err)
		} else {
			c.e.cfg.Health.Event("uncertain_item", health.Critical, health.Staff, "a pulse train was cut short by a restart; settle at cash collection")
			c.refreshSession()
		}
	}
	// A pulse unit the previous run left enabled may have taken a note nobody recorded: one
	// uncertain item, on the interrupted session, before it closes.
	c.settlePulseLine()
	c.pulseLineNoInhibit()
	// With every intent resolved and the unit at rest, its counter tells whether a note went
	// in whose record the storage lost (its stack intent's commit dropped by a power cut):
	// such a note belongs to the interrupted session, so reconcile before closing it.
	if c.unitSettled {
		sid := uint64(0)
		if c.sess != nil {
			sid = c.sess.ID
		}
		if c.startBaseline(sid, func(c *core) { c.recoverClose() }) {
			r.phase = recBaseline
			return
		}
	}
	c.recoverClose()
}

// recoverClose closes the interrupted session and prints what a crash left unprinted.
func (c *core) recoverClose() {
	r := c.rec
	if r == nil {
		return
	}
	// A unit at rest after the restart has finished the note it last credited.
	if c.unitSettled {
		c.completeNote()
	}
	if c.sess != nil {
		res, err := c.e.j.CloseSession(journal.CloseParams{SessionID: c.sess.ID, Outcome: wire.OutcomeInterrupted, UnresolvedReason: "open at restart"})
		if err != nil {
			c.journalFailedOp("close interrupted session", err)
		} else {
			c.journalOK()
			c.e.log.Warn("closed interrupted session", "session", c.sess.ID, "total", res.Session.TotalMinor)
			if t := res.Topup; t != nil {
				r.result = &Result{TopupID: t.TopupID, ReceiptNo: t.ReceiptNo, Reference: t.TopupID, AmountMinor: t.AmountMinor,
					Currency: t.Currency, Status: ReceiptPending, Outcome: t.Outcome, Uncertain: len(res.Session.Uncertain),
					UncertainMinor: uncertainValues(res.Session.Uncertain)}
				if c.e.cfg.Uplink != nil {
					c.e.cfg.Uplink.Kick()
				}
			}
			c.sess = nil
		}
	}
	r.phase = recReprint
	// Not counted in c.printing: a stop during the reprints ends them between receipts, as
	// the next start prints what is left.
	c.spawnReprint((*core).endRecovery)
}

// spawnReprint runs reprintUnprinted as a task. On the loop, a journal failure is recorded
// and leaves the reprint owed (printOwed tries again once the journal works); then runs.
func (c *core) spawnReprint(then func(c *core)) {
	acked := maps.Clone(c.acked)
	c.e.spawn("reprint", func(ctx context.Context) msg {
		jerr := c.e.reprintUnprinted(ctx, acked)
		return msg{apply: func(c *core) {
			if jerr != nil {
				c.journalFailedOp("mark print", jerr)
				c.reprintOwed = true
			}
			then(c)
		}}
	})
}

// printOwed reprints, once journal writes succeed again, the receipts a journal failure
// left unprinted or unfinished (reprintOwed), when nobody is being served and nothing else
// prints. The journal's print states and the printer's cut counter decide, as at start-up,
// between nothing (it came out), the original (it never started) and a COPY. It reports
// whether it started.
func (c *core) printOwed() bool {
	if !c.reprintOwed || c.journalFailed || c.rec != nil || c.inSession() || c.printing > 0 || c.exiting {
		return false
	}
	c.reprintOwed = false
	c.printing++
	c.spawnReprint(func(c *core) { c.printing-- })
	return true
}

func (c *core) endRecovery() {
	r := c.rec
	if r == nil {
		return
	}
	c.rec = nil
	if r.result != nil {
		// The ledger may have acknowledged it while the receipts printed.
		if a, ok := c.acked[r.result.TopupID]; ok && a.State == journal.TopupCredited {
			r.result.Status = ReceiptCredited
		}
		c.result = r.result
		c.resultUntil = c.now().Add(c.e.cfg.Timing.ResultDisplay)
	}
	if c.sess != nil {
		// The interrupted session could not be closed (journal failure): close it as soon
		// as the journal works again.
		c.startClose(wire.OutcomeInterrupted, "open at restart")
	}
}

// resolveIntent settles an open intent on the loop. An error is a failed journal write (an
// intent already settled is not one).
func (c *core) resolveIntent(in journal.Intent, resolution, evidence string) error {
	s, err := c.e.j.ResolveIntent(in.ID, resolution, evidence)
	if err != nil {
		if errors.Is(err, journal.ErrNoIntent) {
			return nil
		}
		c.journalFailedOp("resolve intent", err)
		return err
	}
	c.journalOK()
	c.e.log.Warn("resolved a stack intent", "intent", in.ID, "resolution", resolution, "evidence", evidence)
	if resolution == journal.ResolvedUncertain {
		c.e.cfg.Health.Event("uncertain_item", health.Critical, health.Staff,
			fmt.Sprintf("note of %d minor units in session %d: %s; settle at cash collection", in.Note.ValueMinor, in.SessionID, evidence))
	}
	if c.sess != nil && c.sess.ID == s.ID {
		c.sess = &s
	}
	return nil
}

// advanceWitness settles an intent left open by a unit that restarted under a running
// kiosk, from its stacked counter once it is at rest.
func (c *core) advanceWitness(now time.Time) bool {
	w := c.witness
	if w.reading || (!c.unitSettled && now.Before(w.until)) {
		return false
	}
	w.reading = true
	c.e.spawn("witness", func(ctx context.Context) msg {
		stacked, ok := c.e.stackedWitness(ctx)
		return msg{apply: func(c *core) {
			c.witness = nil
			res, evidence := journal.ResolvedUncertain, "unit restarted with the note in transit and its counter could not tell"
			switch {
			case ok && stacked:
				res, evidence = journal.ResolvedStacked, "unit restarted; its stacked counter counts this note: it went into the cassette"
			case ok:
				res, evidence = journal.ResolvedReturned, "unit restarted; its stacked counter did not move: the note did not go in"
			}
			_ = c.resolveIntent(w.in, res, evidence)
		}}
	})
	return true
}

// startBaseline reads the unit's stacked counter as a task and reconciles it with the
// journal (see Engine.takeBaseline), then calls then on the loop. It returns false when the
// unit has no counter (then is not called).
func (c *core) startBaseline(sid uint64, then func(c *core)) bool {
	if _, ok := c.e.cfg.Acceptor.(acceptor.StackCounter); !ok {
		return false
	}
	c.e.spawn("baseline", func(ctx context.Context) msg {
		b := c.e.takeBaseline(ctx, sid)
		return msg{apply: func(c *core) {
			c.baselineTaken(sid, b)
			then(c)
		}}
	})
	return true
}

// baseline is what takeBaseline found.
type baseline struct {
	ran     bool
	counter uint64
	unit    string
	res     journal.CounterCheck
	err     error
}

func (c *core) baselineTaken(sid uint64, b baseline) {
	if !b.ran {
		return
	}
	if b.err != nil {
		c.journalFailedOp("device baseline", b.err)
		return
	}
	c.journalOK()
	switch {
	case b.res.Uncertain > 0:
		c.e.log.Error("the unit stacked notes the journal has no record of; recorded as uncertain", "notes", b.res.Uncertain, "counter", b.counter, "session", sid)
		c.e.cfg.Health.Event("uncertain_item", health.Critical, health.Staff,
			fmt.Sprintf("the bill acceptor counted %d note(s) more than the journal holds (a record lost at a power cut); settle at cash collection", b.res.Uncertain))
		if c.sess != nil && c.sess.ID == sid {
			c.refreshSession()
		}
	case b.res.Extra != 0:
		// Not notes to settle: a counter reset, a replaced unit that kept its serial, or a
		// credit the unit did not count. An engineer looks at it; the baseline moved on.
		c.e.log.Error("the unit's stacked counter disagrees with the journal", "extra", b.res.Extra, "counter", b.counter, "unit", b.unit)
		c.e.cfg.Health.Event("counter_mismatch", health.Warning, health.Engineer,
			fmt.Sprintf("bill acceptor stacked counter differs from the journal by %d note(s) since the last baseline", b.res.Extra))
	}
}

// reprintReceipt prints a COPY of receipt no as a task.
func (c *core) reprintReceipt(no uint64) error {
	t, ok, err := c.e.j.Receipt(no)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("session: no receipt %d", no)
	}
	c.spawnPrint(t, true, func(c *core, printed bool) {
		if !printed {
			c.e.log.Warn("receipt copy not printed", "receipt_no", no)
		}
	})
	return nil
}

// reprintUnprinted prints receipts a crash left unprinted: an original if no attempt can
// have put it out, a COPY if one may have, nothing if the printer's cut counter proves it
// came out. The journal attributes each physical cut to at most one receipt
// (journal.ReconcileCuts), whatever order failures, restarts and reprints came in.
// It runs as a task; the last journal write error is returned for the loop to record.
func (e *Engine) reprintUnprinted(ctx context.Context, acked map[string]journal.Topup) (jerr error) {
	// One reading, taken while nothing prints: the journal settles every unfinished
	// receipt against it in one transaction.
	counter, known := e.cutCount(ctx)
	verdicts, err := e.j.ReconcileCuts(counter, known)
	if err != nil {
		e.log.Error("settling unfinished receipts with the printer's cut counter", "err", err)
		return err
	}
	for _, v := range verdicts {
		if ctx.Err() != nil {
			return jerr
		}
		t := v.Topup
		switch v.Verdict {
		case journal.VerdictPrinted:
			e.log.Info("interrupted receipt came out (a cut is attributed to it); not printed again", "topup", t.TopupID)
			continue
		case journal.VerdictNotPrinted:
			e.log.Info("printing receipt left unprinted", "topup", t.TopupID)
			if _, err := e.printTopup(ctx, t, false, receiptStatusFor(t, acked)); err != nil {
				jerr = err
			}
		default:
			// It may be out: only a COPY may be printed now, never a second original.
			e.log.Info("printing a copy of a receipt that may have come out", "topup", t.TopupID)
			if _, err := e.printTopup(ctx, t, true, receiptStatusFor(t, acked)); err != nil {
				jerr = err
			}
		}
	}
	return jerr
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
// ok=false when the counter cannot tell (see journal.Witness). It runs as a task.
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
// none open). It runs as a task; the loop records the outcome (core.baselineTaken).
func (e *Engine) takeBaseline(ctx context.Context, sid uint64) baseline {
	sc, ok := e.cfg.Acceptor.(acceptor.StackCounter)
	if !ok {
		return baseline{}
	}
	if in, err := e.j.OpenIntents(); err != nil || len(in) > 0 {
		return baseline{}
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	n, err := sc.StackedCount(cctx)
	cancel()
	if err != nil {
		e.log.Info("unit's stacked counter not read", "err", err)
		return baseline{}
	}
	unit := e.unitID()
	res, err := e.j.ReconcileDeviceCounter(unit, n, sid)
	return baseline{ran: true, counter: n, unit: unit, res: res, err: err}
}
