package receipts

import (
	"strings"
	"testing"
	"time"
)

func testSlip() CollectionSlip {
	one := int64(3)
	return CollectionSlip{KioskID: "K1", Location: "Hall 1", TZ: time.UTC, CollectionID: "K1-00000000000000ab-C2",
		PreviousID: "K1-00000000000000ab-C1", PeriodFrom: time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC),
		PeriodTo: time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC), Time: time.Date(2026, 12, 6, 8, 5, 0, 0, time.UTC),
		CassetteID: "CAS-1", Operator: "alice", Currency: "CNY",
		Lines:       []SlipLine{{ValueMinor: 2000, Expected: 0, Counted: 1}, {ValueMinor: 10000, Expected: 2, Counted: 2}},
		UnitStacked: &one,
		Uncertain:   []SlipItem{{ValueMinor: 2000, TopupID: "K1-00000000000000ab-7", Reason: "stack commanded, no credit"}}}
}

func TestSlipTextBothLanguages(t *testing.T) {
	s := testSlip()
	en := string(RenderSlipText(s, 42))
	for _, want := range []string{"CASH COLLECTION SLIP", "K1-00000000000000ab-C2", "Expected", "200.00", "Counted", "220.00",
		"CNY +20.00", "SURPLUS", "0 / 1 / +1", "Uncertain items:", "K1-00000000000000ab-7", "Collector signature",
		"Witness signature", "CAS-1", "alice"} {
		if !strings.Contains(en, want) {
			t.Errorf("English slip lacks %q:\n%s", want, en)
		}
	}
	s.Lang = LangZH
	zh := string(RenderSlipText(s, 42))
	for _, want := range []string{"现金清机单", "CASH COLLECTION SLIP", "长款", "清机员签字", "复核人签字", "待核实项目"} {
		if !strings.Contains(zh, want) {
			t.Errorf("Chinese slip lacks %q:\n%s", want, zh)
		}
	}
	s.Lines[0].Counted = 0
	s.Lines[1].Counted = 1
	if txt := string(RenderSlipText(s, 42)); !strings.Contains(txt, "短款") || !strings.Contains(txt, "-100.00") {
		t.Errorf("shortage slip:\n%s", txt)
	}
	s.Copy = true
	if txt := string(RenderSlipText(s, 32)); !strings.Contains(txt, "COPY") {
		t.Errorf("copy slip:\n%s", txt)
	}
}

func TestSlipESCPOS(t *testing.T) {
	s := testSlip()
	for _, p := range []Profile{Generic80, Generic58, Chinese80} {
		s.Lang = LangZH
		b, err := RenderSlip(s, p, nil)
		if err != nil || len(b) == 0 {
			t.Fatalf("%s: %v", p.Name, err)
		}
	}
	s.Currency = "yuan"
	if _, err := RenderSlip(s, Generic80, nil); err == nil {
		t.Fatal("bad currency printed")
	}
	if _, err := RenderSlip(testSlip(), Raster80, nil); err == nil {
		t.Fatal("raster without a font")
	}
}
