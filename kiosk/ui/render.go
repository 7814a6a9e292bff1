package ui

import (
	"slices"
	"strconv"
	"strings"

	"github.com/kioskd/kioskd/kiosk/i18n"
	"github.com/kioskd/kioskd/kiosk/session"
)

// Payload is what /api/state and each "view" event carry: the engine's view (for state and
// numbers; embedded, so a reader of session.View decodes it as before) and Screen, every
// text the page shows, rendered in one language.
type Payload struct {
	session.View
	Screen Screen `json:"screen"`
	// NowUnixMs is the engine clock when this was sent, so the page can count down to the
	// view's idle deadline on its own clock.
	NowUnixMs int64 `json:"now_unix_ms"`
	// Service says the service menu is open (the cabinet door): the page goes there when
	// no customer is being served.
	Service bool `json:"service,omitempty"`
}

// Screen is the view in words, in Lang.
type Screen struct {
	Lang         string `json:"lang"`
	Message      string `json:"message,omitempty"`
	MessageError bool   `json:"message_error,omitempty"`
	// Reasons are plain sentences for why the kiosk is out of service (never the kinds).
	// HotlineShown says one of them already gives the hotline and kiosk id, so the page's
	// own help line would repeat it.
	Reasons      []string `json:"reasons,omitempty"`
	HotlineShown bool     `json:"hotline_shown,omitempty"`
	// Warnings are sentences for degraded conditions; PrinterDown says no receipt can be
	// printed now.
	Warnings    []string  `json:"warnings,omitempty"`
	PrinterDown bool      `json:"printer_down,omitempty"`
	Total       string    `json:"total"`
	Remaining   string    `json:"remaining"`
	Allowed     string    `json:"allowed"`
	Notes       []NoteRow `json:"notes"`
	// CancelLabel names what the cancel button does now: with money inserted it finishes
	// and credits (stacked notes cannot be given back).
	CancelLabel string  `json:"cancel_label"`
	CancelHint  string  `json:"cancel_hint"`
	Result      *Result `json:"result,omitempty"`
}

// NoteRow is one line of the inserted notes.
type NoteRow struct {
	Value  string `json:"value"`
	Count  string `json:"count"`
	Amount string `json:"amount"`
}

// Result is the session's result in words.
type Result struct {
	Status   string `json:"status"` // credited | pending | under_review
	Title    string `json:"title"`
	Sentence string `json:"sentence"`
	Amount   string `json:"amount"`
	// Counted is the status of the counted amount alone (credited, pending, or under_review
	// when the ledger held it); with notes under review Status is under_review while the
	// counted amount may already be credited, as the receipt's status line says.
	Counted string `json:"counted"`
	// UnderReview has one sentence per note under review (not in Amount), as the receipt
	// lists them.
	UnderReview []string `json:"under_review,omitempty"`
	ReceiptNo   string   `json:"receipt_no,omitempty"`
	Reference   string   `json:"reference"`
}

func (s *server) args() []i18n.Arg {
	return []i18n.Arg{i18n.String(i18n.PHotline, s.cfg.Hotline), i18n.String(i18n.PKiosk, s.cfg.KioskID)}
}

// printerKind reports whether a condition kind means no receipt can be printed now (a
// paper-low warning still prints).
func printerKind(kind string) bool {
	k := i18n.ConditionKey(kind)
	return strings.HasPrefix(string(k), "condition.printer") && k != "condition.printer_paper_near_end"
}

func (s *server) payload(v session.View, lang i18n.Lang) Payload {
	return Payload{View: v, Screen: s.render(v, lang), NowUnixMs: s.cfg.Now().UnixMilli(), Service: s.serviceOpen()}
}

func (s *server) render(v session.View, lang i18n.Lang) Screen {
	amt := func(m int64) string { return i18n.FormatAmount(lang, m, v.Currency) }
	sc := Screen{Lang: string(lang), Total: amt(v.TotalMinor), Remaining: amt(v.RemainingMinor), Notes: []NoteRow{}}
	if v.MessageKey != "" {
		sc.Message = i18n.TP(lang, v.MessageKey, v.MessageParams)
		sc.MessageError = v.MessageKind == "error"
	}
	sentences := func(kinds []string) []string {
		var out []string
		for _, k := range kinds {
			t := i18n.T(lang, i18n.ConditionKey(k), s.args()...)
			if !slices.Contains(out, t) {
				out = append(out, t)
			}
		}
		return out
	}
	sc.Reasons = sentences(v.Reasons)
	for _, k := range v.Reasons {
		if m, ok := i18n.Lookup(i18n.ConditionKey(k)); ok && slices.Contains(m.Params, i18n.PHotline) {
			sc.HotlineShown = true
		}
	}
	// A printer that cannot print has its own panel (PrinterDown); the list says the rest.
	var others []string
	for _, k := range v.Degraded {
		if printerKind(k) {
			sc.PrinterDown = true
		} else {
			others = append(others, k)
		}
	}
	sc.Warnings = sentences(others)
	var allowed []string
	for _, m := range v.AllowedMinor {
		allowed = append(allowed, amt(m))
	}
	sc.Allowed = strings.Join(allowed, sep(lang))
	if sc.Allowed == "" {
		sc.Allowed = i18n.T(lang, i18n.KeyUINone)
	}
	for _, n := range v.Notes {
		sc.Notes = append(sc.Notes, NoteRow{Value: amt(n.ValueMinor), Count: "× " + strconv.FormatInt(int64(n.Count), 10), Amount: amt(n.ValueMinor * int64(n.Count))})
	}
	if v.TotalMinor > 0 {
		sc.CancelLabel, sc.CancelHint = i18n.T(lang, i18n.KeyUIFinishCredit), i18n.T(lang, i18n.KeyUIFinishCreditHint)
	} else {
		sc.CancelLabel, sc.CancelHint = i18n.T(lang, i18n.KeyUICancel), i18n.T(lang, i18n.KeyUICancelHint)
	}
	if r := v.Result; r != nil {
		ref := r.Reference
		if ref == "" {
			ref = r.TopupID
		}
		status := r.Status
		if r.Uncertain > 0 {
			status = "under_review"
		}
		title := map[string]i18n.Key{"credited": i18n.KeyUICreditedTitle, "under_review": i18n.KeyUIReviewTitle}[status]
		if title == "" {
			status, title = "pending", i18n.KeyUIPendingTitle
		}
		counted := r.Status
		if counted != "credited" && counted != "under_review" {
			counted = "pending"
		}
		// The sentence is about the counted amount when there is one (credited or to be
		// credited); the notes under review each get their own, with their value.
		key := i18n.ResultKey(r.Status, r.Uncertain)
		if r.AmountMinor > 0 && len(r.UncertainMinor) > 0 {
			key = i18n.ResultKey(r.Status, 0)
		}
		res := &Result{Status: status, Title: i18n.T(lang, title),
			Sentence:  i18n.T(lang, key, i18n.Amount(i18n.PAmount, r.AmountMinor, r.Currency), i18n.String(i18n.PRef, ref)),
			Amount:    i18n.FormatAmount(lang, r.AmountMinor, r.Currency),
			Counted:   counted,
			Reference: ref}
		for _, u := range r.UncertainMinor {
			res.UnderReview = append(res.UnderReview, i18n.T(lang, i18n.KeyResultUncertainOne, i18n.Amount(i18n.PAmount, u, r.Currency), i18n.String(i18n.PRef, ref)))
		}
		if r.ReceiptNo > 0 {
			res.ReceiptNo = i18n.FormatReceiptNo(r.ReceiptNo)
		}
		sc.Result = res
	}
	return sc
}

func sep(lang i18n.Lang) string {
	if lang == i18n.ZH {
		return "、"
	}
	return ", "
}

// uiKeys are the labels the page shows; /api/texts serves them.
var uiKeys = []i18n.Key{
	i18n.KeyUITitle, i18n.KeyUIIdlePrompt, i18n.KeyUIIdleHint, i18n.KeyUIAuthorizing, i18n.KeyUIWallet,
	i18n.KeyUIOfflineBadge, i18n.KeyUIInsertOne, i18n.KeyUIInserted, i18n.KeyUICanAdd, i18n.KeyUINote,
	i18n.KeyUICount, i18n.KeyUIAmount, i18n.KeyUIAcceptedNow, i18n.KeyUINone, i18n.KeyUIFinish,
	i18n.KeyUICancel, i18n.KeyUIFinishCredit, i18n.KeyUIClosing, i18n.KeyUIDone, i18n.KeyUIReceiptNo,
	i18n.KeyUIReference, i18n.KeyUIOOSTitle, i18n.KeyUIOOSHelp, i18n.KeyUIMaintenance, i18n.KeyUIStarting,
	i18n.KeyUIReconnecting, i18n.KeyUIDaemonDown, i18n.KeyUICountdown, i18n.KeyUIMoreTime,
	i18n.KeyUIPrinterWarnTitle, i18n.KeyUIPrinterWarn, i18n.KeyUIContinue, i18n.KeyUILangToggle,
}

// Texts is the page's fixed labels in one language.
type Texts struct {
	Lang  string            `json:"lang"`
	Texts map[string]string `json:"texts"`
}

func (s *server) texts(lang i18n.Lang) Texts {
	out := Texts{Lang: string(lang), Texts: make(map[string]string, len(uiKeys))}
	for _, k := range uiKeys {
		args := s.args()
		if k == i18n.KeyUICountdown {
			// The page fills the seconds as it counts.
			args = append(args, i18n.String(i18n.PSeconds, "{seconds}"))
		}
		out.Texts[string(k)] = i18n.T(lang, k, args...)
	}
	return out
}
