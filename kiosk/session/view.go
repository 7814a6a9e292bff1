package session

import (
	"context"

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
	Message     string  `json:"message,omitempty"`
	MessageKind string  `json:"message_kind,omitempty"` // info | error
	Result      *Result `json:"result,omitempty"`
}

// Result is the outcome of the last session, shown until the next one starts.
type Result struct {
	TopupID     string `json:"topup_id"`
	ReceiptNo   uint64 `json:"receipt_no"`
	AmountMinor int64  `json:"amount_minor"`
	Currency    string `json:"currency"`
	// Status is "credited" once the ledger acked, else "pending".
	Status    string `json:"status"`
	Outcome   string `json:"outcome"`
	Uncertain int    `json:"uncertain,omitempty"`
	Printed   bool   `json:"printed"`
}

func (e *Engine) buildViewLocked() View {
	v := View{Seq: e.viewSeq, State: e.state.String(), Currency: e.j.Currency(), Notes: []journal.NoteLine{},
		Message: e.view.Message, MessageKind: e.view.MessageKind, Result: e.view.Result}
	eff, kinds := e.cfg.Health.Worst()
	if eff >= 2 {
		v.Reasons = kinds
	} else if eff == 1 {
		v.Degraded = kinds
	}
	if s := e.sess; s != nil {
		v.AccountMasked = s.AccountMasked
		v.LimitMinor = s.LimitMinor
		v.RemainingMinor = s.RemainingMinor()
		v.TotalMinor = s.TotalMinor
		v.Notes = append(v.Notes, s.Notes...)
		v.Offline = s.Offline
		if e.state == Accepting {
			for _, c := range e.allowedCodesLocked() {
				v.AllowedMinor = append(v.AllowedMinor, e.cfg.Denominations[c].ValueMinor)
			}
		}
	}
	if v.Result != nil {
		r := *v.Result
		v.Result = &r
	}
	return v
}

// View returns the current view.
func (e *Engine) View() View {
	e.mu.Lock()
	defer e.mu.Unlock()
	v := e.view
	if v.Result != nil {
		r := *v.Result
		v.Result = &r
	}
	return v
}

// WaitView returns the first view with Seq > after, or the current one when ctx ends.
func (e *Engine) WaitView(ctx context.Context, after uint64) (View, bool) {
	for {
		e.mu.Lock()
		if e.view.Seq > after {
			v := e.view
			e.mu.Unlock()
			return v, true
		}
		ch := e.changed
		v := e.view
		e.mu.Unlock()
		select {
		case <-ctx.Done():
			return v, false
		case <-ch:
		}
	}
}

func (e *Engine) messageLocked(kind, msg string) {
	e.view.Message, e.view.MessageKind = msg, kind
}
