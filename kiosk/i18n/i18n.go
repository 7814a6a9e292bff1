// Package i18n is the one message catalogue of the kiosk: every sentence a customer or a
// technician reads (customer screen, receipt, service menu) is a Key here with a text in
// Simplified Chinese (zh-CN) and English, and named parameters ({amount}, {ref}, {kiosk},
// {hotline}, ...) filled per language.
//
// Lookups never fail and never show a key or a raw code: an unknown key gives a generic
// sentence, an unknown language gives English, a missing parameter is left out. Money is
// formatted per currency and language: CNY as "¥100.00" in English and "100.00 元" in Chinese,
// every other currency with its ISO code ("USD 100.00").
//
// The catalogue is static data checked by its tests (both languages present, the same
// parameters in both), so adding a message is adding one entry to messages.go.
package i18n

import (
	"strconv"
	"strings"
)

// Lang is a catalogue language.
type Lang string

// Languages.
const (
	ZH Lang = "zh-CN" // Simplified Chinese
	EN Lang = "en"
)

// Langs are the catalogue's languages, customer-default first.
var Langs = []Lang{ZH, EN}

// ParseLang maps a configured or requested language tag to a catalogue language: any
// "zh" tag (zh, zh-CN, zh_Hans, zh-SG) is ZH, everything else EN.
func ParseLang(tag string) Lang {
	t := strings.ToLower(strings.TrimSpace(tag))
	if t == "zh" || strings.HasPrefix(t, "zh-") || strings.HasPrefix(t, "zh_") {
		return ZH
	}
	return EN
}

// Key names a message.
type Key string

// Message is one catalogue entry.
type Message struct {
	Key    Key
	ZH, EN string
	// Params are the parameter names its texts use, each as {name} in both languages.
	Params []string
}

// Text returns the message's text in lang (EN for an unknown language).
func (m Message) Text(lang Lang) string {
	if lang == ZH {
		return m.ZH
	}
	return m.EN
}

// Arg is one parameter value. Build it with String, Amount, Int or ReceiptNo.
type Arg struct {
	name   string
	text   string
	amount *money
}

type money struct {
	minor    int64
	currency string
}

// String is a text parameter (a reference, a kiosk id, a hotline), shown as given.
func String(name, value string) Arg { return Arg{name: name, text: value} }

// Int is an integer parameter.
func Int(name string, v int64) Arg { return Arg{name: name, text: strconv.FormatInt(v, 10)} }

// Amount is a money parameter, formatted per language by FormatAmount.
func Amount(name string, minor int64, currency string) Arg {
	return Arg{name: name, amount: &money{minor, currency}}
}

// ReceiptNo is a receipt number parameter, formatted by FormatReceiptNo.
func ReceiptNo(name string, n uint64) Arg { return Arg{name: name, text: FormatReceiptNo(n)} }

func (a Arg) value(lang Lang) string {
	if a.amount != nil {
		return FormatAmount(lang, a.amount.minor, a.amount.currency)
	}
	return a.text
}

var index = func() map[Key]*Message {
	m := make(map[Key]*Message, len(messages))
	for i := range messages {
		m[messages[i].Key] = &messages[i]
	}
	return m
}()

// Lookup returns the message for key.
func Lookup(key Key) (Message, bool) {
	m, ok := index[key]
	if !ok {
		return Message{}, false
	}
	return *m, true
}

// Keys lists every key in catalogue order.
func Keys() []Key {
	out := make([]Key, len(messages))
	for i, m := range messages {
		out[i] = m.Key
	}
	return out
}

// Has reports whether key is in the catalogue.
func Has(key Key) bool { _, ok := index[key]; return ok }

// T returns the text of key in lang with its parameters filled. An unknown key gives the
// generic sentence (KeyGeneric), never the key; a parameter without an Arg is left out.
func T(lang Lang, key Key, args ...Arg) string {
	m, ok := index[key]
	if !ok {
		m = index[KeyGeneric]
	}
	return fill(m.Text(lang), lang, args)
}

// fill replaces {name} with the named argument's value. Braces that do not name a parameter
// are kept as they are (no message uses them; free text passed as a value is never parsed).
func fill(text string, lang Lang, args []Arg) string {
	if !strings.Contains(text, "{") {
		return text
	}
	var b strings.Builder
	b.Grow(len(text) + 16)
	for {
		i := strings.IndexByte(text, '{')
		if i < 0 {
			b.WriteString(text)
			break
		}
		j := strings.IndexByte(text[i:], '}')
		if j < 0 {
			b.WriteString(text)
			break
		}
		b.WriteString(text[:i])
		name := text[i+1 : i+j]
		if isParamName(name) {
			for _, a := range args {
				if a.name == name {
					b.WriteString(a.value(lang))
					break
				}
			}
		} else {
			b.WriteString(text[i : i+j+1])
		}
		text = text[i+j+1:]
	}
	return strings.TrimSpace(b.String())
}

func isParamName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c == '_' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// ReceiptNoDigits is how many digits a receipt number is shown with, on paper and on the
// screen alike, so a customer can match the two and staff can spot a gap in a column.
const ReceiptNoDigits = 8

// FormatReceiptNo zero-pads a receipt number to ReceiptNoDigits digits ("00000042"); a larger
// number is shown in full.
func FormatReceiptNo(n uint64) string {
	s := strconv.FormatUint(n, 10)
	if len(s) < ReceiptNoDigits {
		s = strings.Repeat("0", ReceiptNoDigits-len(s)) + s
	}
	return s
}

// Param is a parameter in a form that can travel (JSON on the local API) and be rendered
// later in any language: a text as given, or an amount (Currency set) formatted per language
// when the text is built. The engine keeps a message as a Key and its Params, so the screen
// shows it in the customer's language.
type Param struct {
	Name     string `json:"name"`
	Text     string `json:"text,omitempty"`
	Minor    int64  `json:"minor,omitempty"`
	Currency string `json:"currency,omitempty"`
}

// Param returns a's travelling form.
func (a Arg) Param() Param {
	if a.amount != nil {
		return Param{Name: a.name, Minor: a.amount.minor, Currency: a.amount.currency}
	}
	return Param{Name: a.name, Text: a.text}
}

// Arg turns a travelling parameter back into an Arg.
func (p Param) Arg() Arg {
	if p.Currency != "" {
		return Amount(p.Name, p.Minor, p.Currency)
	}
	return String(p.Name, p.Text)
}

// Params converts args to their travelling form (nil for none).
func Params(args []Arg) []Param {
	if len(args) == 0 {
		return nil
	}
	out := make([]Param, len(args))
	for i, a := range args {
		out[i] = a.Param()
	}
	return out
}

// TP is T with travelling parameters. A key that is not in the catalogue gives the generic
// sentence, so a stale or forged key never shows as a code.
func TP(lang Lang, key Key, params []Param) string {
	args := make([]Arg, len(params))
	for i, p := range params {
		args[i] = p.Arg()
	}
	return T(lang, key, args...)
}
