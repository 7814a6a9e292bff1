package receipts

import "github.com/kioskd/kioskd/kiosk/i18n"

// Currency describes how an ISO 4217 currency is written (the catalogue's, kiosk/i18n).
type Currency = i18n.Currency

// LookupCurrency returns the currency for an ISO 4217 code. An unknown code gives exponent 2,
// the most common one, with the code as its symbol, and ok false so callers can alarm on it.
func LookupCurrency(code string) (c Currency, ok bool) { return i18n.LookupCurrency(code) }

// FormatMinor writes an amount in minor units as a decimal with thousands grouping, e.g.
// 1234567 CNY -> "12,345.67", 10000 JPY -> "10,000", -5 USD -> "-0.05".
func FormatMinor(amount int64, code string) string { return i18n.FormatMinor(amount, code) }

// FormatMoney is FormatMinor prefixed with the currency code: "CNY 12,345.67".
func FormatMoney(amount int64, code string) string { return i18n.FormatMoney(amount, code) }

// FormatReceiptNo is the one way a receipt number is shown, on paper and on the screen: zero
// padded to i18n.ReceiptNoDigits (8) digits.
func FormatReceiptNo(n uint64) string { return i18n.FormatReceiptNo(n) }
