package i18n

import (
	"strconv"
	"strings"
)

// Currency describes how an ISO 4217 currency is written.
type Currency struct {
	Code     string // ISO 4217 alphabetic code, e.g. "CNY"
	Exponent int    // digits after the decimal point: minor units per major unit = 10^Exponent
	Symbol   string // local symbol for screens; receipts print the code, which every printer font has
}

// currencies holds the ones a kiosk fleet is likely to meet. Exponents are ISO 4217's, not
// street practice (IDR has exponent 2 in ISO even though cents are never used).
var currencies = map[string]Currency{
	"AUD": {"AUD", 2, "A$"},
	"BHD": {"BHD", 3, "BD"},
	"CAD": {"CAD", 2, "C$"},
	"CHF": {"CHF", 2, "CHF"},
	"CLP": {"CLP", 0, "$"},
	"CNY": {"CNY", 2, "¥"},
	"EUR": {"EUR", 2, "€"},
	"GBP": {"GBP", 2, "£"},
	"HKD": {"HKD", 2, "HK$"},
	"IDR": {"IDR", 2, "Rp"},
	"INR": {"INR", 2, "₹"},
	"ISK": {"ISK", 0, "kr"},
	"JOD": {"JOD", 3, "JD"},
	"JPY": {"JPY", 0, "¥"},
	"KRW": {"KRW", 0, "₩"},
	"KWD": {"KWD", 3, "KD"},
	"MOP": {"MOP", 2, "MOP$"},
	"MYR": {"MYR", 2, "RM"},
	"OMR": {"OMR", 3, "RO"},
	"PHP": {"PHP", 2, "₱"},
	"SGD": {"SGD", 2, "S$"},
	"THB": {"THB", 2, "฿"},
	"TND": {"TND", 3, "DT"},
	"TWD": {"TWD", 2, "NT$"},
	"UGX": {"UGX", 0, "USh"},
	"USD": {"USD", 2, "$"},
	"VND": {"VND", 0, "₫"},
	"XAF": {"XAF", 0, "FCFA"},
	"XOF": {"XOF", 0, "CFA"},
}

// LookupCurrency returns the currency for an ISO 4217 code. An unknown code gives exponent 2,
// the most common one, with the code as its symbol, and ok false so callers can alarm on it.
func LookupCurrency(code string) (c Currency, ok bool) {
	if c, ok := currencies[code]; ok {
		return c, true
	}
	return Currency{Code: code, Exponent: 2, Symbol: code}, false
}

// pow10 for the exponents in use; integer only, money never touches a float.
var pow10 = [...]uint64{1, 10, 100, 1000, 10000}

// FormatMinor writes an amount in minor units as a decimal with thousands grouping, e.g.
// 1234567 CNY -> "12,345.67", 10000 JPY -> "10,000", -5 USD -> "-0.05".
func FormatMinor(amount int64, code string) string {
	c, _ := LookupCurrency(code)
	return string(appendMinor(nil, amount, c.Exponent))
}

// FormatMoney is FormatMinor prefixed with the currency code: "CNY 12,345.67".
func FormatMoney(amount int64, code string) string {
	c, _ := LookupCurrency(code)
	b := append([]byte(c.Code), ' ')
	return string(appendMinor(b, amount, c.Exponent))
}

func appendMinor(b []byte, amount int64, exp int) []byte {
	if exp < 0 || exp >= len(pow10) {
		exp = 2
	}
	var u uint64
	if amount < 0 {
		b = append(b, '-')
		u = uint64(-(amount + 1)) + 1 // safe for math.MinInt64
	} else {
		u = uint64(amount)
	}
	major, minor := u/pow10[exp], u%pow10[exp]
	b = appendGrouped(b, major)
	if exp > 0 {
		b = append(b, '.')
		frac := strconv.FormatUint(minor, 10)
		b = append(b, strings.Repeat("0", exp-len(frac))...)
		b = append(b, frac...)
	}
	return b
}

func appendGrouped(b []byte, v uint64) []byte {
	var tmp [20]byte
	s := strconv.AppendUint(tmp[:0], v, 10)
	for i, d := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b = append(b, ',')
		}
		b = append(b, d)
	}
	return b
}

// FormatAmount writes an amount the way a customer reads it in lang: CNY as "¥1,234.50" in
// English and "1,234.50 元" in Chinese; every other currency with its ISO code in front
// ("USD 12.00"), which every screen font and printer has and nobody misreads.
func FormatAmount(lang Lang, amount int64, code string) string {
	if code == "CNY" {
		n := FormatMinor(amount, code)
		if lang == ZH {
			return n + " 元"
		}
		if strings.HasPrefix(n, "-") {
			return "-¥" + n[1:]
		}
		return "¥" + n
	}
	return FormatMoney(amount, code)
}
