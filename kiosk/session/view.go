package session

import (
	"context"
	"reflect"
	"slices"

	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/i18n"
	"github.com/kioskd/kioskd/kiosk/journal"
)

// View is what the customer screen shows; the local API serves it as JSON.
type View struct {
	// Seq rises with every change, so a client can tell a new view from a repeat.
	Seq   uint64 `json:"seq"`
	State string `json:"state"`
	// Reasons lists why the kiosk is out of service or degraded (condition kinds).
	Reasons        []string           `json:"reasons,omitempty"`
	Degraded       []string           `json:"degraded,omitempty"`
	Currency       string             `json:"currency"`
	AccountMasked  string             `json:"account_masked,omitempty"`
	LimitMinor     int64              `json:"limit_minor,omitempty"`
	RemainingMinor int64              `json:"remaining_minor,omitempty"`
	TotalMinor     int64              `json:"total_minor"`
	Notes          []journal.NoteLine `json:"notes"`
	Offline        bool               `json:"offline,omitempty"`
	// AllowedMinor lists the note values the acceptor takes now.
	AllowedMinor []int64 `json:"allowed_minor,omitempty"`
	// Message is the latest thing to tell the customer (a refusal reason, a returned note).
	Message     string `json:"message,omitempty"`
	MessageKind string `json:"message_kind,omitempty"` // info | error
	// MessageKey and MessageParams are Message in the catalogue's terms (kiosk/i18n), so the
	// screen renders it in the customer's language; Message is the English wording.
	MessageKey    i18n.Key     `json:"message_key,omitempty"`
	MessageParams []i18n.Param `json:"message_params,omitempty"`
	// IdleDeadlineUnixMs is when an accepting session closes by itself for lack of activity
	// (engine clock, Unix milliseconds; 0 when no countdown runs), IdleTimeoutMs the length of
	// that countdown. MoreTime restarts it.
	IdleDeadlineUnixMs int64   `json:"idle_deadline_unix_ms,omitempty"`
	IdleTimeoutMs      int64   `json:"idle_timeout_ms,omitempty"`
	Result             *Result `json:"result,omitempty"`
}

// Result is the outcome of the last session, shown until the next one starts.
type Result struct {
	TopupID   string `json:"topup_id"`
	ReceiptNo uint64 `json:"receipt_no"`
	// Reference is what the customer quotes: the top-up id, or "S<session id>" while the
	// journal could not close the session yet (the top-up follows when it can).
	Reference   string `json:"reference,omitempty"`
	AmountMinor int64  `json:"amount_minor"`
	Currency    string `json:"currency"`
	// Status is "credited" once the ledger acked, else "pending".
	Status    string `json:"status"`
	Outcome   string `json:"outcome"`
	Uncertain int    `json:"uncertain,omitempty"`
	// UncertainMinor is the value of each uncertain note (not in AmountMinor), as the receipt
	// lists them under review.
	UncertainMinor []int64 `json:"uncertain_minor,omitempty"`
	Printed        bool    `json:"printed"`
}

func (c *core) buildView() View {
	v := View{State: c.state.String(), Currency: c.e.j.Currency(), Notes: []journal.NoteLine{},
		Message: c.message, MessageKind: c.messageKind}
	eff, kinds := c.e.cfg.Health.Worst()
	if eff >= health.StopsService {
		v.Reasons = kinds
	} else if eff == health.Degrades {
		v.Degraded = kinds
	}
	if c.message != "" {
		v.MessageKey, v.MessageParams = c.messageKey, slices.Clone(c.messageParams)
	}
	if c.oosReason != "" && c.state == OutOfService {
		v.Reasons = append(v.Reasons, "operator")
	}
	if s := c.sess; s != nil {
		v.AccountMasked = s.AccountMasked
		v.LimitMinor = s.LimitMinor
		v.RemainingMinor = s.RemainingMinor()
		v.TotalMinor = s.TotalMinor
		v.Notes = append(v.Notes, s.Notes...)
		v.Offline = s.Offline
		if c.state == Accepting {
			if c.closing == nil && !c.lastActivity.IsZero() {
				lim := c.acceptLimit()
				v.IdleDeadlineUnixMs, v.IdleTimeoutMs = c.lastActivity.Add(lim).UnixMilli(), lim.Milliseconds()
			}
			for _, code := range c.allowedCodes() {
				v.AllowedMinor = append(v.AllowedMinor, c.e.cfg.Denominations[code].ValueMinor)
			}
		}
	}
	if c.result != nil {
		r := *c.result
		v.Result = &r
	}
	return v
}

// published is everything readers on other goroutines see.
type published struct {
	view   View
	status Status
	parked bool
}

// publish hands the core's current view to readers, waking waiters when it changed.
func (e *Engine) publish(c *core) {
	p := published{view: c.buildView(), status: c.status()}
	p.parked = c.stopping && c.parked()
	if reflect.DeepEqual(p, c.lastPub) {
		return
	}
	c.lastPub = p
	c.viewSeq++
	p.view.Seq = c.viewSeq
	e.pubMu.Lock()
	e.pub, e.pubStat, e.pubSt, e.pubParked = p.view, p.status, c.state, p.parked
	close(e.changed)
	e.changed = make(chan struct{})
	e.pubMu.Unlock()
}

func copyView(v View) View {
	if v.Result != nil {
		r := *v.Result
		v.Result = &r
	}
	v.Notes = slices.Clone(v.Notes)
	v.MessageParams = slices.Clone(v.MessageParams)
	return v
}

// deniedKey is the catalogue key for an authorization refusal: the ledger's own reason is
// for the log, never for the customer.
func deniedKey(denied string) i18n.Key {
	switch denied {
	case "the kiosk is stopping":
		return i18n.KeyCannotTakeMoney
	case "the kiosk cannot check its offline limit":
		return i18n.KeyRefuseOfflineLimit
	case "top-ups are not available while the kiosk is offline":
		return i18n.KeyRefuseOffline
	case "your wallet cannot take more money today":
		return i18n.KeyRefuseDailyLimit
	}
	return i18n.KeyRefuseWallet
}

// View returns the current view.
func (e *Engine) View() View {
	e.pubMu.Lock()
	defer e.pubMu.Unlock()
	return copyView(e.pub)
}

// WaitView returns the first view with Seq > after, or the current one when ctx ends.
func (e *Engine) WaitView(ctx context.Context, after uint64) (View, bool) {
	for {
		e.pubMu.Lock()
		v := copyView(e.pub)
		ch := e.changed
		e.pubMu.Unlock()
		if v.Seq > after {
			return v, true
		}
		select {
		case <-ctx.Done():
			return v, false
		case <-ch:
		}
	}
}

// waitPub waits until ok holds for the published status (and parked flag), or ctx ends.
func (e *Engine) waitPub(ctx context.Context, ok func(s Status, parked bool) bool) (Status, error) {
	for {
		e.pubMu.Lock()
		s, parked, ch := e.pubStat, e.pubParked, e.changed
		e.pubMu.Unlock()
		if ok(s, parked) {
			return s, nil
		}
		select {
		case <-ctx.Done():
			return s, ctx.Err()
		case <-ch:
		case <-e.loopDone:
			e.pubMu.Lock()
			s, parked = e.pubStat, e.pubParked
			e.pubMu.Unlock()
			if ok(s, parked) {
				return s, nil
			}
			return s, ErrNotRunning
		}
	}
}
