package i18n_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/devices/printer/escpos"
	"github.com/kioskd/kioskd/kiosk/i18n"
	"github.com/kioskd/kioskd/kiosk/qrpay"
)

// TestCatalogueComplete: every key has both languages, unique keys, and the {parameters} of
// both texts are exactly the declared ones.
func TestCatalogueComplete(t *testing.T) {
	seen := map[i18n.Key]bool{}
	for _, k := range i18n.Keys() {
		if seen[k] {
			t.Errorf("key %q twice", k)
		}
		seen[k] = true
		m, ok := i18n.Lookup(k)
		if !ok {
			t.Fatalf("Lookup(%q) failed", k)
		}
		for _, lang := range i18n.Langs {
			text := m.Text(lang)
			if strings.TrimSpace(text) == "" {
				t.Errorf("%s: no %s text", k, lang)
			}
			got := paramsOf(text)
			want := slices.Clone(m.Params)
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("%s (%s): parameters %v, declared %v", k, lang, got, want)
			}
		}
		if m.ZH == m.EN {
			t.Errorf("%s: Chinese text is the English one", k)
		}
		if !hasHan(m.ZH) {
			t.Errorf("%s: Chinese text %q has no Chinese", k, m.ZH)
		}
	}
}

func paramsOf(s string) []string {
	var out []string
	for {
		i := strings.IndexByte(s, '{')
		if i < 0 {
			return out
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return out
		}
		name := s[i+1 : i+j]
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
		s = s[i+j+1:]
	}
}

func hasHan(s string) bool {
	for _, r := range s {
		if r >= 0x4e00 && r <= 0x9fff {
			return true
		}
	}
	return false
}

func TestFilledTextsShowNoBraces(t *testing.T) {
	args := []i18n.Arg{i18n.Amount(i18n.PAmount, 10000, "CNY"), i18n.Amount(i18n.PRemaining, 5000, "CNY"),
		i18n.String(i18n.PRef, "t-1"), i18n.ReceiptNo(i18n.PReceiptNo, 42), i18n.String(i18n.PKiosk, "K-1"),
		i18n.String(i18n.PHotline, "400-000-0000"), i18n.Int(i18n.PCount, 2)}
	for _, k := range i18n.Keys() {
		for _, lang := range i18n.Langs {
			if s := i18n.T(lang, k, args...); strings.ContainsAny(s, "{}") || s == "" {
				t.Errorf("%s (%s) = %q", k, lang, s)
			}
			// Without arguments nothing raw is shown either.
			if s := i18n.T(lang, k); strings.ContainsAny(s, "{}") {
				t.Errorf("%s (%s) without args = %q", k, lang, s)
			}
		}
	}
}

func TestParameters(t *testing.T) {
	got := i18n.T(i18n.ZH, i18n.KeyResultCredited, i18n.Amount(i18n.PAmount, 10000, "CNY"), i18n.String(i18n.PRef, "topup-7"))
	if want := "100.00 元 已充值到您的钱包。参考号：topup-7"; got != want {
		t.Errorf("zh: %q, want %q", got, want)
	}
	got = i18n.T(i18n.EN, i18n.KeyResultCredited, i18n.Amount(i18n.PAmount, 10000, "CNY"), i18n.String(i18n.PRef, "topup-7"))
	if want := "¥100.00 has been credited to your wallet. Reference: topup-7"; got != want {
		t.Errorf("en: %q, want %q", got, want)
	}
	got = i18n.T(i18n.EN, i18n.KeyResultReceiptNo, i18n.ReceiptNo(i18n.PReceiptNo, 1))
	if want := "Receipt No. 00000001"; got != want {
		t.Errorf("receipt no: %q, want %q", got, want)
	}
	// A value is never parsed: braces in it stay as they are.
	got = i18n.T(i18n.EN, i18n.KeyNoReceipt, i18n.String(i18n.PRef, "{amount}"))
	if !strings.HasSuffix(got, ": {amount}") {
		t.Errorf("value was reparsed: %q", got)
	}
}

func TestUnknownKeyFallsBack(t *testing.T) {
	for _, lang := range []i18n.Lang{i18n.ZH, i18n.EN, "fr"} {
		got := i18n.T(lang, "no.such.key_xyz")
		if got == "" || strings.Contains(got, "no.such") || strings.Contains(got, "xyz") {
			t.Errorf("%s: %q", lang, got)
		}
		if want := i18n.T(lang, i18n.KeyGeneric); got != want {
			t.Errorf("%s: %q, want the generic %q", lang, got, want)
		}
	}
	if i18n.T("fr", i18n.KeyCancelled) != "Cancelled." {
		t.Error("unknown language is not English")
	}
}

func TestParseLang(t *testing.T) {
	for tag, want := range map[string]i18n.Lang{"zh": i18n.ZH, "zh-CN": i18n.ZH, "zh_Hans": i18n.ZH, " ZH-sg": i18n.ZH,
		"en": i18n.EN, "en-US": i18n.EN, "": i18n.EN, "zhx": i18n.EN} {
		if got := i18n.ParseLang(tag); got != want {
			t.Errorf("ParseLang(%q) = %s, want %s", tag, got, want)
		}
	}
}

// TestEveryRejectReasonHasText: each acceptor.RejectReason has its own sentence, none raw.
func TestEveryRejectReasonHasText(t *testing.T) {
	for r := acceptor.RejectUnknown; r <= acceptor.RejectTimeout; r++ {
		k := i18n.RejectKey(r.String())
		if k != i18n.Key("note.reject."+r.String()) {
			t.Errorf("%v has no text of its own (falls back to %s)", r, k)
		}
		for _, lang := range i18n.Langs {
			if s := i18n.T(lang, k); strings.Contains(s, r.String()) {
				t.Errorf("%v (%s) shows the raw code: %q", r, lang, s)
			}
		}
	}
	if i18n.RejectKey("RejectReason(99)") != "note.reject.unknown" {
		t.Error("unknown reason")
	}
}

// TestConditionTexts: every condition kind the kiosk raises today that stops or degrades
// service maps to a sentence that names neither the kind nor the detail.
func TestConditionTexts(t *testing.T) {
	kinds := []string{"acceptor_jam", "acceptor_stacker_jam", "acceptor_failure", "acceptor_comm_lost",
		"acceptor_port", "acceptor_fraud", "acceptor_cassette_full", "acceptor_cassette_removed",
		"printer", "printer_missing", "printer_paper_out", "printer_paper_near_end", escpos.KindCoverOpen, escpos.KindCutter, escpos.KindPrinterError, escpos.KindOffline,
		"journal_failure", "journal_corrupt", "journal_locked", "journal_epoch", "scanner",
		"cabinet_door_open", "vault_door_open", "tamper", "sensor_flood_active", "maintenance", "uplink"}
	for _, kind := range kinds {
		k := i18n.ConditionKey(kind)
		if k == i18n.KeyOutOfService && kind != "acceptor_fraud" {
			t.Errorf("%s: only the generic text", kind)
		}
		for _, lang := range i18n.Langs {
			s := i18n.T(lang, k, i18n.String(i18n.PHotline, "400-1"), i18n.String(i18n.PKiosk, "K-9"))
			if strings.Contains(s, "_") { // no raw kind (they all have underscores or are plain words)
				t.Errorf("%s (%s): %q", kind, lang, s)
			}
		}
	}
	if k := i18n.ConditionKey("something_new"); k != i18n.KeyOutOfService {
		t.Errorf("unknown kind: %s", k)
	}
	s := i18n.T(i18n.ZH, i18n.ConditionKey("journal_failure"), i18n.String(i18n.PHotline, "400-1"), i18n.String(i18n.PKiosk, "K-9"))
	if !strings.Contains(s, "400-1") || !strings.Contains(s, "K-9") {
		t.Errorf("hotline and kiosk missing: %q", s)
	}
}

func TestFormatAmount(t *testing.T) {
	for _, c := range []struct {
		lang  i18n.Lang
		minor int64
		cur   string
		want  string
	}{
		{i18n.EN, 10000, "CNY", "¥100.00"},
		{i18n.ZH, 10000, "CNY", "100.00 元"},
		{i18n.EN, 123456789, "CNY", "¥1,234,567.89"},
		{i18n.EN, -50, "CNY", "-¥0.50"},
		{i18n.ZH, 2000, "USD", "USD 20.00"},
		{i18n.EN, 2000, "USD", "USD 20.00"},
		{i18n.EN, 1000, "JPY", "JPY 1,000"},
		{i18n.ZH, 1500, "XYZ", "XYZ 15.00"},
	} {
		if got := i18n.FormatAmount(c.lang, c.minor, c.cur); got != c.want {
			t.Errorf("FormatAmount(%s, %d, %s) = %q, want %q", c.lang, c.minor, c.cur, got, c.want)
		}
	}
}

func TestFormatReceiptNo(t *testing.T) {
	for n, want := range map[uint64]string{0: "00000000", 1: "00000001", 12345678: "12345678", 123456789: "123456789"} {
		if got := i18n.FormatReceiptNo(n); got != want {
			t.Errorf("FormatReceiptNo(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestQRKey(t *testing.T) {
	for err, want := range map[error]i18n.Key{
		qrpay.ErrFormat: i18n.KeyQRBadFormat, qrpay.ErrUnknownKey: i18n.KeyQRUnknownKey,
		qrpay.ErrSignature: i18n.KeyQRBadSignature, qrpay.ErrExpired: i18n.KeyQRExpired,
		qrpay.ErrReplayed: i18n.KeyQRNonceUsed, fmt.Errorf("wrapped: %w", qrpay.ErrExpired): i18n.KeyQRExpired,
		qrpay.ErrClockUntrusted: i18n.KeyQRClockUntrusted, qrpay.ErrLifetime: i18n.KeyQRLifetime,
		errors.New("other"): i18n.KeyQRUnusable, nil: i18n.KeyQRUnusable,
	} {
		if got := i18n.QRKey(err); got != want {
			t.Errorf("QRKey(%v) = %s, want %s", err, got, want)
		}
	}
}

func TestResultKey(t *testing.T) {
	for _, c := range []struct {
		status    string
		uncertain int
		want      i18n.Key
	}{
		{"credited", 0, i18n.KeyResultCredited}, {"pending", 0, i18n.KeyResultPending},
		{"credited", 1, i18n.KeyResultUnderReview}, {"under_review", 0, i18n.KeyResultUnderReview},
		{"", 0, i18n.KeyResultPending},
	} {
		if got := i18n.ResultKey(c.status, c.uncertain); got != c.want {
			t.Errorf("ResultKey(%q, %d) = %s, want %s", c.status, c.uncertain, got, c.want)
		}
	}
	if i18n.RejectReasonKey(acceptor.RejectCounterfeit) != "note.reject.counterfeit" {
		t.Error("RejectReasonKey")
	}
}
