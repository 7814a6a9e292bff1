package receipts

import "strings"

// Text widths outside this range are clamped: narrower cannot hold a label and an amount,
// wider is not a receipt.
const (
	minTextWidth = 20
	maxTextWidth = 200
)

// RenderText renders the receipt as UTF-8 plain text lines of at most width columns (CJK
// characters count two). It is for previews, logs, the customer screen and tests, never fails,
// and does not validate: call Validate first where correctness matters. The QR code appears as
// a "[QR]" marker line; the reference itself is printed as text above it.
func RenderText(r Receipt, width int) []byte {
	width = min(max(width, minTextWidth), maxTextWidth)
	lb := &labelsEN
	if r.Lang == LangZH {
		lb = &labelsZH
	}
	return textLines(build(&r, width, width, lb, cleanUnicode), width)
}

// textLines writes laid-out lines as plain text.
func textLines(lines []line, width int) []byte {
	var b strings.Builder
	b.Grow(len(lines) * (width + 1))
	for _, l := range lines {
		text := l.text
		if l.kind == kindQR {
			text = "[QR]"
		}
		if l.inverse {
			text = "*** " + text + " ***"
		}
		if l.align == alignCenter {
			if pad := (width - textWidth(text)) / 2; pad > 0 {
				b.WriteString(strings.Repeat(" ", pad))
			}
		}
		b.WriteString(strings.TrimRight(text, " "))
		b.WriteByte('\n')
	}
	return []byte(b.String())
}
