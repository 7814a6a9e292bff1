package receipts

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/kioskd/kioskd/kiosk/i18n"
)

// CollectionSlip is the paper of a cash collection (DESIGN.md §10): what the journal expected
// in the cassette per denomination, what the collector counted, the differences, the unit's
// own counter, the period's uncertain items, and lines for the collector's and a witness's
// signatures. It is staff paper: the count is evidence, operations settle the differences.
type CollectionSlip struct {
	KioskID       string
	Location      string
	LocationLatin string
	TZ            *time.Location // nil: UTC
	CollectionID  string
	PreviousID    string // "" for the journal's first collection
	PeriodFrom    time.Time
	PeriodTo      time.Time
	Time          time.Time // when the record was made
	CassetteID    string
	Operator      string
	Currency      string
	Lines         []SlipLine
	// UnitStacked is the notes the acceptor's own counter saw go in over the period (nil: the
	// unit has no counter, or no reading to compare with).
	UnitStacked *int64
	Uncertain   []SlipItem
	Copy        bool
	Lang        Lang
}

// SlipLine is one denomination: notes expected and counted.
type SlipLine struct {
	ValueMinor int64
	Expected   int64
	Counted    int64
}

// SlipItem is an uncertain item of the period.
type SlipItem struct {
	ValueMinor int64 // 0: unknown value
	TopupID    string
	Reason     string
}

// Validate checks what must hold before a slip goes to paper.
func (s *CollectionSlip) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
	}
	if s.KioskID == "" || s.CollectionID == "" || len(s.CollectionID) > 200 || !isPrintableASCII(s.CollectionID) {
		return bad("kiosk id and collection id required (printable ASCII)")
	}
	if !isISOCode(s.Currency) {
		return bad("currency %q is not an ISO 4217 code", s.Currency)
	}
	switch s.Lang {
	case "", LangEN, LangZH:
	default:
		return bad("language %q", s.Lang)
	}
	for i, l := range s.Lines {
		if l.ValueMinor <= 0 || l.ValueMinor > maxNoteValue || l.Expected < 0 || l.Counted < 0 || l.Expected > 1e6 || l.Counted > 1e6 {
			return bad("line %d: %+v", i, l)
		}
	}
	for i, u := range s.Uncertain {
		if u.ValueMinor < 0 || u.ValueMinor > maxNoteValue {
			return bad("uncertain item %d: value %d", i, u.ValueMinor)
		}
	}
	return nil
}

// Totals returns the expected and counted amounts and their difference (counted - expected).
func (s *CollectionSlip) Totals() (expected, counted, diff int64) {
	for _, l := range s.Lines {
		expected += l.Expected * l.ValueMinor
		counted += l.Counted * l.ValueMinor
	}
	return expected, counted, counted - expected
}

// slipLabels are the slip's words in one language, from the catalogue (a Chinese slip
// carries the English beside each label, as receipts do).
type slipLabels struct {
	title, subtitle, copyBanner, copyFooter                         string
	kiosk, location, time, collection, previous, first, period      string
	cassette, collector, value, expected, counted, difference       string
	shortage, surplus, balanced, unitCounter, uncertainHead, noItem string
	evidence, signCollector, signWitness, total                     string
}

var (
	slipEN = makeSlipLabels(false)
	slipZH = makeSlipLabels(true)
)

func makeSlipLabels(zh bool) slipLabels {
	t := func(k i18n.Key) string {
		if zh {
			return i18n.T(i18n.ZH, k) + " " + i18n.T(i18n.EN, k)
		}
		return i18n.T(i18n.EN, k)
	}
	l := slipLabels{title: i18n.T(i18n.EN, i18n.KeySlipTitle), copyBanner: t(i18n.KeyReceiptCopy),
		copyFooter: "*** " + t(i18n.KeyReceiptCopyFooter) + " ***",
		kiosk:      t(i18n.KeyReceiptKiosk), location: t(i18n.KeyReceiptLocation), time: t(i18n.KeyReceiptTime),
		collection: t(i18n.KeySlipCollection), previous: t(i18n.KeySlipPrevious), first: t(i18n.KeySlipFirst),
		period: t(i18n.KeySlipPeriod), cassette: t(i18n.KeySlipCassette), collector: t(i18n.KeySlipCollector),
		value: t(i18n.KeySlipValue), expected: t(i18n.KeySlipExpected), counted: t(i18n.KeySlipCounted),
		difference: t(i18n.KeySlipDifference), shortage: t(i18n.KeySlipShortage), surplus: t(i18n.KeySlipSurplus),
		balanced: t(i18n.KeySlipBalanced), unitCounter: t(i18n.KeySlipUnitCounter), uncertainHead: t(i18n.KeySlipUncertainHead),
		noItem: t(i18n.KeyReceiptNoNotes), evidence: t(i18n.KeySlipEvidence), signCollector: t(i18n.KeySlipSignCollector),
		signWitness: t(i18n.KeySlipSignWitness), total: t(i18n.KeyReceiptTotal)}
	if zh {
		l.title, l.subtitle = i18n.T(i18n.ZH, i18n.KeySlipTitle), i18n.T(i18n.EN, i18n.KeySlipTitle)
	}
	return l
}

func signed(n int64) string {
	if n > 0 {
		return "+" + strconv.FormatInt(n, 10)
	}
	return strconv.FormatInt(n, 10)
}

// signedMoney writes a difference with its sign always shown: "CNY +20.00", "CNY -100.00".
func signedMoney(v int64, cur string) string {
	m := FormatMoney(v, cur)
	if v > 0 {
		if i := strings.IndexByte(m, ' '); i >= 0 {
			return m[:i+1] + "+" + m[i+1:]
		}
		return "+" + m
	}
	return m
}

// buildSlip lays out a collection slip: the single description of what it says.
func buildSlip(s *CollectionSlip, cols, bigCols int, lb *slipLabels, clean func(string) string) []line {
	c := &canvas{cols: cols, bigCols: bigCols, clean: clean}
	if s.Copy {
		c.center(" "+lb.copyBanner+" ", true, true, true)
		c.blank()
	}
	c.center(lb.title, true, false, false)
	if lb.subtitle != "" {
		c.center(lb.subtitle, false, false, false)
	}
	c.rule()
	c.kv(lb.kiosk, clean(s.KioskID), false, false)
	if loc := clean(s.Location); loc != "" {
		c.kv(lb.location, loc, false, false)
	}
	c.kv(lb.time, formatTime(s.Time, s.TZ), false, false)
	c.add(line{text: lb.collection})
	for _, l := range hardWrap(s.CollectionID, cols-2) {
		c.add(line{text: "  " + l, bold: true})
	}
	prev := lb.first
	if s.PreviousID != "" {
		prev = s.PreviousID
	}
	c.add(line{text: lb.previous})
	for _, l := range hardWrap(prev, cols-2) {
		c.add(line{text: "  " + l})
	}
	c.add(line{text: lb.period})
	if !s.PeriodFrom.IsZero() {
		c.add(line{text: "  " + formatTime(s.PeriodFrom, s.TZ)})
	}
	c.add(line{text: "  - " + formatTime(s.PeriodTo, s.TZ)})
	c.kv(lb.cassette, clean(s.CassetteID), false, false)
	if op := clean(s.Operator); op != "" {
		c.kv(lb.collector, op, false, false)
	}
	c.rule()

	// One line per denomination: expected / counted / difference in notes.
	c.para(lb.value+": "+strings.Join([]string{lb.expected, lb.counted, lb.difference}, " / "), 0, false)
	var notesExp, notesCnt int64
	for _, l := range s.Lines {
		notesExp += l.Expected
		notesCnt += l.Counted
		c.kv("  "+FormatMinor(l.ValueMinor, s.Currency), fmt.Sprintf("%d / %d / %s", l.Expected, l.Counted, signed(l.Counted-l.Expected)), l.Counted != l.Expected, false)
	}
	if len(s.Lines) == 0 {
		c.para(lb.noItem, 2, false)
	}
	c.rule()
	exp, cnt, diff := s.Totals()
	c.kv(lb.expected, FormatMoney(exp, s.Currency), false, false)
	c.kv(lb.counted, FormatMoney(cnt, s.Currency), true, false)
	c.kv(lb.difference, signedMoney(diff, s.Currency), true, false)
	switch {
	case diff < 0:
		c.center(lb.shortage, true, true, true)
	case diff > 0:
		c.center(lb.surplus, true, true, true)
	default:
		c.center(lb.balanced, true, false, false)
	}
	if s.UnitStacked != nil {
		c.kv(lb.unitCounter, fmt.Sprintf("%d / %d / %d", *s.UnitStacked, notesExp, notesCnt), false, false)
	}
	c.rule()
	c.para(lb.uncertainHead, 0, true)
	if len(s.Uncertain) == 0 {
		c.para(lb.noItem, 2, false)
	}
	for _, u := range s.Uncertain {
		v := "?"
		if u.ValueMinor > 0 {
			v = FormatMoney(u.ValueMinor, s.Currency)
		}
		c.add(line{text: "  " + v})
		if u.TopupID != "" {
			for _, l := range hardWrap(u.TopupID, cols-4) {
				c.add(line{text: "    " + l})
			}
		}
		if reason := clean(u.Reason); reason != "" {
			c.para(reason, 4, false)
		}
	}
	c.rule()
	c.para(lb.evidence, 0, false)
	for _, who := range []string{lb.signCollector, lb.signWitness} {
		c.blank()
		c.add(line{text: who})
		c.blank()
		c.blank()
		c.add(line{text: strings.Repeat("_", cols)})
	}
	if s.Copy {
		c.blank()
		c.center(lb.copyFooter, true, false, false)
	}
	return c.lines
}

// slipLayout validates and lays out a slip for printer p.
func slipLayout(s *CollectionSlip, p Profile) (lines []line, chinese bool, err error) {
	if err := p.Validate(); err != nil {
		return nil, false, err
	}
	if err := s.Validate(); err != nil {
		return nil, false, err
	}
	chinese = s.Lang == LangZH && (p.Chinese || p.Raster)
	lb, clean := &slipEN, cleanASCII
	switch {
	case chinese:
		lb, clean = &slipZH, cleanUnicode
	case p.Raster:
		clean = cleanUnicode
	case s.LocationLatin != "":
		s.Location = s.LocationLatin
	case mostlyUnprintable(s.Location):
		s.Location = ""
	}
	return buildSlip(s, p.Columns, p.Columns/2, lb, clean), chinese, nil
}

// RenderSlip is what the kiosk sends to its printer for a collection slip: raster for a
// Raster profile (f must be a loaded font), ESC/POS text otherwise.
func RenderSlip(s CollectionSlip, p Profile, f *Font) ([]byte, error) {
	lines, chinese, err := slipLayout(&s, p)
	if err != nil {
		return nil, err
	}
	if p.Raster {
		if f == nil {
			return nil, ErrNoFont
		}
		img, err := drawLines(lines, p, f)
		if err != nil {
			return nil, err
		}
		return rasterBytes(img, p), nil
	}
	return escposLines(lines, chinese, p)
}

// RenderSlipText renders the slip as UTF-8 text lines of at most width columns, for previews,
// logs and tests (as RenderText for receipts).
func RenderSlipText(s CollectionSlip, width int) []byte {
	width = min(max(width, minTextWidth), maxTextWidth)
	lb := &slipEN
	if s.Lang == LangZH {
		lb = &slipZH
	}
	return textLines(buildSlip(&s, width, width, lb, cleanUnicode), width)
}
