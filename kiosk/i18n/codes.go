package i18n

import (
	"errors"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/kiosk/qrpay"
)

// QRKey is the key of the customer text for a refused payment code (an error of
// kiosk/qrpay's Parse/Verify). Any other error gets KeyQRUnusable.
func QRKey(err error) Key {
	switch {
	case errors.Is(err, qrpay.ErrFormat):
		return KeyQRBadFormat
	case errors.Is(err, qrpay.ErrUnknownKey):
		return KeyQRUnknownKey
	case errors.Is(err, qrpay.ErrSignature):
		return KeyQRBadSignature
	case errors.Is(err, qrpay.ErrExpired):
		return KeyQRExpired
	case errors.Is(err, qrpay.ErrReplayed):
		return KeyQRNonceUsed
	case errors.Is(err, qrpay.ErrClockUntrusted):
		return KeyQRClockUntrusted
	case errors.Is(err, qrpay.ErrLifetime):
		return KeyQRLifetime
	}
	return KeyQRUnusable
}

// RejectReasonKey is RejectKey for an acceptor.RejectReason.
func RejectReasonKey(r acceptor.RejectReason) Key { return RejectKey(r.String()) }

// ResultKey is the key of the sentence that ends a session on the screen, by the session
// result's status ("credited", "pending", "under_review") and its count of notes under
// review: any note under review makes it the under-review sentence, whatever the rest did.
// Parameters: {amount} and {ref} (under review: {ref} only).
func ResultKey(status string, uncertain int) Key {
	switch {
	case uncertain > 0 || status == "under_review":
		return KeyResultUnderReview
	case status == "credited":
		return KeyResultCredited
	}
	return KeyResultPending // journaled and queued: it will be credited
}
