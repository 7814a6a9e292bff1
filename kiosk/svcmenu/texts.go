package svcmenu

import "github.com/kioskd/kioskd/kiosk/i18n"

// The catalogue's keys and parameters the server fills in itself.
const (
	KeyEntry        = i18n.KeySvcEntry
	KeyWrongPIN     = i18n.KeySvcWrongPIN
	KeyLocked       = i18n.KeySvcLocked
	KeyLoggedOut    = i18n.KeySvcLoggedOut
	KeyNotAllowed   = i18n.KeySvcNotAllowed
	KeyDone         = i18n.KeySvcDone
	KeyFailed       = i18n.KeySvcFailed
	KeyKiosk        = i18n.KeySvcKiosk
	KeyState        = i18n.KeySvcState
	KeyReason       = i18n.KeySvcReason
	KeyOutbox       = i18n.KeySvcOutbox
	KeyMaintOn      = i18n.KeySvcMaintOn
	KeyNotes        = i18n.KeySvcNotes
	KeyValue        = i18n.KeySvcValue
	KeyNone         = i18n.KeySvcNone
	KeyCollection   = i18n.KeySvcCollection
	KeyCollectionNA = i18n.KeySvcCollectionNA
	KeyWaitingIdle  = i18n.KeySvcWaitingIdle
	KeyCopyPrinting = i18n.KeySvcCopyPrinting
	KeySignoffNone  = i18n.KeySvcSignoffNone
	KeySignoffPick  = i18n.KeySvcSignoffPick
	KeyWhyInspected = i18n.KeySvcWhyInspected
	KeyWhyReplaced  = i18n.KeySvcWhyReplaced
	KeyWhyCounted   = i18n.KeySvcWhyCounted
	KeyPINSet       = i18n.KeySvcPINSet

	PReason = i18n.PReason
	PWho    = i18n.PWho
)

// Texts is the page's labels in one language.
type Texts struct {
	Lang  string            `json:"lang"`
	Texts map[string]string `json:"texts"`
}

// texts renders every service menu label in lang; a label with a number in it gets a
// placeholder the page fills ({seconds}).
func texts(lang i18n.Lang) Texts {
	out := Texts{Lang: string(lang), Texts: map[string]string{}}
	for _, k := range i18n.ServiceKeys {
		out.Texts[string(k)] = i18n.T(lang, k, i18n.String(i18n.PSeconds, "{seconds}"), i18n.String(PWho, "{who}"),
			i18n.String(PReason, "{reason}"), i18n.String(i18n.PReceiptNo, "{receipt_no}"),
			i18n.String(i18n.PAmount, "{amount}"))
	}
	return out
}
