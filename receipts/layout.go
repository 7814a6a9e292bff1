package receipts

import (
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/width"
)

type align uint8

const (
	alignLeft align = iota
	alignCenter
	alignRight
)

type lineKind uint8

const (
	kindText lineKind = iota
	kindQR
)

// line is one output line, already fitted to its width, shared by the text and ESC/POS
// renderers so that the two cannot drift apart.
type line struct {
	kind    lineKind
	text    string // kindText: the fitted text; kindQR: the payload
	align   align
	bold    bool
	big     bool // double width and height
	inverse bool
}

// canvas builds lines for a given width. cols is the normal width in columns, bigCols the
// width of a double-size line (cols/2 on paper, cols in plain text). clean makes free text
// printable on the target.
type canvas struct {
	cols, bigCols int
	clean         func(string) string
	lines         []line
}

func (c *canvas) add(l line) { c.lines = append(c.lines, l) }

func (c *canvas) blank() { c.add(line{}) }

func (c *canvas) rule() { c.add(line{text: strings.Repeat("-", c.cols)}) }

// center adds text centered, wrapped at the width.
func (c *canvas) center(text string, bold, big, inverse bool) {
	w := c.cols
	if big {
		w = c.bigCols
	}
	for _, s := range wrap(text, w) {
		c.add(line{text: s, align: alignCenter, bold: bold, big: big, inverse: inverse})
	}
}

// para adds wrapped text with an indent on every line.
func (c *canvas) para(text string, indent int, bold bool) {
	pad := strings.Repeat(" ", indent)
	for _, s := range wrap(text, c.cols-indent) {
		c.add(line{text: pad + s, bold: bold})
	}
}

// kv adds "label ... value" with the value flush right. If both do not fit on one line the
// label gets its own line and the value follows: right-aligned if it fits, else wrapped with an
// indent (a long address reads better left-aligned).
func (c *canvas) kv(label, value string, bold, big bool) {
	w := c.cols
	if big {
		w = c.bigCols
	}
	lw, vw := textWidth(label), textWidth(value)
	if lw+1+vw <= w {
		c.add(line{text: label + strings.Repeat(" ", w-lw-vw) + value, bold: bold, big: big})
		return
	}
	for _, s := range wrap(label, w) {
		c.add(line{text: s, bold: bold, big: big})
	}
	if vw <= w-2 {
		c.add(line{text: strings.Repeat(" ", w-vw) + value, bold: bold, big: big})
		return
	}
	for _, s := range wrap(value, w-2) {
		c.add(line{text: "  " + s, bold: bold, big: big})
	}
}

// build lays out a receipt. It is the single description of what a receipt says.
func build(r *Receipt, cols, bigCols int, lb *labels, clean func(string) string) []line {
	c := &canvas{cols: cols, bigCols: bigCols, clean: clean}
	if r.Copy {
		c.center(" "+lb.copyBanner+" ", true, true, true)
		c.blank()
	}
	c.center(lb.title, true, false, false)
	if lb.subtitle != "" {
		c.center(lb.subtitle, false, false, false)
	}
	c.rule()
	c.kv(lb.kiosk, clean(r.KioskID), false, false)
	if loc := clean(r.Location); loc != "" {
		c.kv(lb.location, loc, false, false)
	}
	c.kv(lb.time, formatTime(r.Time, r.TZ), false, false)
	c.kv(lb.receiptNo, FormatReceiptNo(r.ReceiptNo), true, false)
	if r.FollowsReceiptNo != 0 {
		c.kv(lb.follows, FormatReceiptNo(r.FollowsReceiptNo), true, false)
	}
	if acct := clean(r.Account); acct != "" {
		c.kv(lb.account, acct, false, false)
	}
	c.rule()

	c.add(line{text: lb.notes})
	if len(r.Notes) == 0 {
		c.para(lb.noNotes, 2, false)
	}
	for _, n := range r.Notes {
		left := "  " + FormatMinor(n.ValueMinor, r.Currency) + " x " + strconv.FormatInt(n.Count, 10)
		c.kv(left, FormatMinor(n.ValueMinor*n.Count, r.Currency), false, false)
	}
	c.rule()
	c.kv(lb.total, FormatMoney(r.Total, r.Currency), true, true)
	c.blank()

	switch r.Status {
	case StatusCredited:
		c.kv(lb.status, lb.credited, true, false)
	case StatusPending:
		c.kv(lb.status, lb.pending, true, false)
		c.para(lb.pendingNote, 0, false)
	default:
		c.kv(lb.status, lb.underReview, true, false)
		c.para(lb.underReviewNote, 0, false)
	}
	if r.Outcome == OutcomeInterrupted {
		c.para(lb.interrupted, 0, true)
		c.para(lb.interruptedNote, 0, false)
	}
	if len(r.Uncertain) > 0 {
		c.blank()
		c.para(lb.uncertainHead, 0, true)
		for _, u := range r.Uncertain {
			c.add(line{text: "  " + FormatMoney(u.ValueMinor, r.Currency)})
			if reason := clean(u.Reason); reason != "" {
				c.para(reason, 4, false)
			}
		}
	}
	c.rule()

	c.add(line{text: lb.reference})
	for _, s := range hardWrap(r.TopupID, cols) {
		c.add(line{text: s, bold: true})
	}
	c.blank()
	c.add(line{kind: kindQR, text: r.TopupID, align: alignCenter})
	c.blank()
	if h := clean(r.Hotline); h != "" {
		c.kv(lb.hotline, h, false, false)
	}
	c.center(lb.footer, false, false, false)
	if r.Copy {
		c.blank()
		c.center(lb.copyFooter, true, false, false)
	}
	return c.lines
}

func formatTime(t time.Time, tz *time.Location) string {
	if tz == nil {
		tz = time.UTC
	}
	return t.In(tz).Format("2006-01-02 15:04:05 -07:00")
}

// runeWidth is the number of columns a rune takes on a terminal or in a printer's font A:
// CJK ideographs and full-width forms take two.
func runeWidth(r rune) int {
	switch width.LookupRune(r).Kind() {
	case width.EastAsianWide, width.EastAsianFullwidth:
		return 2
	}
	return 1
}

func textWidth(s string) int {
	n := 0
	for _, r := range s {
		if r < utf8.RuneSelf {
			n++
			continue
		}
		n += runeWidth(r)
	}
	return n
}

// wrap breaks text into lines of at most w columns, at spaces where it can and between any two
// runes where it must (CJK text has no spaces; neither has a long reference).
func wrap(text string, w int) []string {
	if w < 1 {
		w = 1
	}
	var out []string
	var cur strings.Builder
	curW := 0
	flush := func() {
		out = append(out, strings.TrimRight(cur.String(), " "))
		cur.Reset()
		curW = 0
	}
	for _, word := range splitKeep(text) {
		ww := textWidth(word)
		if word == " " {
			if curW > 0 && curW < w {
				cur.WriteByte(' ')
				curW++
			}
			continue
		}
		if curW > 0 && curW+ww > w {
			flush()
		}
		if ww <= w {
			cur.WriteString(word)
			curW += ww
			continue
		}
		for _, r := range word {
			rw := runeWidth(r)
			if curW+rw > w {
				flush()
			}
			cur.WriteRune(r)
			curW += rw
		}
	}
	if curW > 0 || len(out) == 0 {
		flush()
	}
	return out
}

// splitKeep splits at spaces, returning words and single " " separators. A CJK rune counts as
// a word of its own so that Chinese wraps between characters instead of overflowing.
func splitKeep(s string) []string {
	var out []string
	start := -1
	for i, r := range s {
		switch {
		case r == ' ':
			if start >= 0 {
				out = append(out, s[start:i])
				start = -1
			}
			out = append(out, " ")
		case r >= utf8.RuneSelf && runeWidth(r) == 2:
			if start >= 0 {
				out = append(out, s[start:i])
				start = -1
			}
			out = append(out, string(r))
		default:
			if start < 0 {
				start = i
			}
		}
	}
	if start >= 0 {
		out = append(out, s[start:])
	}
	return out
}

// hardWrap cuts an ASCII string every w bytes (for references, which must not be reflowed).
func hardWrap(s string, w int) []string {
	var out []string
	for len(s) > w {
		out = append(out, s[:w])
		s = s[w:]
	}
	return append(out, s)
}

// cleanUnicode keeps printable text for UTF-8 targets: control and format characters (which
// could move a terminal cursor or smuggle printer commands) become '?', whitespace becomes a
// space.
func cleanUnicode(s string) string {
	ok := true
	for _, r := range s {
		if r < 0x20 || r == 0x7f || !unicode.IsPrint(r) {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case unicode.IsSpace(r):
			b.WriteByte(' ')
		case r < 0x20 || r == 0x7f || !unicode.IsPrint(r):
			b.WriteByte('?')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// mostlyUnprintable reports whether more than a quarter of the visible runes of s are not
// ASCII: printed as '?' on a printer without a CJK font, such text helps nobody.
func mostlyUnprintable(s string) bool {
	var visible, bad int
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			continue // control bytes are noise, not text someone meant to print
		}
		visible++
		if r > 0x7e {
			bad++
		}
	}
	return bad*4 > visible
}

// cleanASCII keeps only what a single-byte code page printer prints the same everywhere.
func cleanASCII(s string) string {
	if isPrintableASCII(s) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 0x20 && r < 0x7f:
			b.WriteRune(r)
		case unicode.IsSpace(r):
			b.WriteByte(' ')
		default:
			b.WriteByte('?')
		}
	}
	return b.String()
}
