package receipts

import "github.com/kioskd/kioskd/kiosk/i18n"

// labels are the fixed words of a receipt in one language, taken from the catalogue
// (kiosk/i18n). Chinese labels carry the English text beside them so that staff and foreign
// customers can read the same paper.
type labels struct {
	title, subtitle                                              string
	copyBanner, copyFooter                                       string
	kiosk, location, time, receiptNo, account                    string
	notes, total, status, reference, hotline                     string
	credited, pending, pendingNote, underReview, underReviewNote string
	interrupted, interruptedNote, uncertainHead, noNotes, footer string
	follows                                                      string
}

var (
	labelsEN = makeLabels(false)
	labelsZH = makeLabels(true)
)

func makeLabels(zh bool) labels {
	t := func(k i18n.Key) string {
		if zh {
			return i18n.T(i18n.ZH, k) + " " + i18n.T(i18n.EN, k)
		}
		return i18n.T(i18n.EN, k)
	}
	l := labels{
		title:           i18n.T(i18n.EN, i18n.KeyReceiptTitle),
		copyBanner:      t(i18n.KeyReceiptCopy),
		copyFooter:      "*** " + t(i18n.KeyReceiptCopyFooter) + " ***",
		kiosk:           t(i18n.KeyReceiptKiosk),
		location:        t(i18n.KeyReceiptLocation),
		time:            t(i18n.KeyReceiptTime),
		receiptNo:       t(i18n.KeyReceiptNo),
		account:         t(i18n.KeyReceiptAccount),
		notes:           t(i18n.KeyReceiptNotes),
		total:           t(i18n.KeyReceiptTotal),
		status:          t(i18n.KeyReceiptStatus),
		reference:       t(i18n.KeyReceiptReference),
		hotline:         t(i18n.KeyReceiptHotline),
		credited:        t(i18n.KeyReceiptCredited),
		pending:         t(i18n.KeyReceiptPending),
		pendingNote:     t(i18n.KeyReceiptPendingNote),
		underReview:     t(i18n.KeyReceiptUnderReview),
		underReviewNote: t(i18n.KeyReceiptUnderReviewNote),
		interrupted:     t(i18n.KeyReceiptInterrupted),
		interruptedNote: t(i18n.KeyReceiptInterruptedNote),
		uncertainHead:   t(i18n.KeyReceiptUncertainHead),
		noNotes:         t(i18n.KeyReceiptNoNotes),
		footer:          t(i18n.KeyReceiptFooter),
		follows:         t(i18n.KeyReceiptFollows),
	}
	if zh {
		// The title is two lines: the Chinese one, then the English one as a subtitle.
		l.title, l.subtitle = i18n.T(i18n.ZH, i18n.KeyReceiptTitle), i18n.T(i18n.EN, i18n.KeyReceiptTitle)
	}
	return l
}
