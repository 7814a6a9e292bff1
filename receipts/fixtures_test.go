package receipts_test

import (
	"time"

	"github.com/kioskd/kioskd/receipts"
)

var shanghai = time.FixedZone("CST", 8*3600)

// fixtures are the receipts the golden files and the round-trip test cover.
func fixtures() []struct {
	name    string
	r       receipts.Receipt
	profile receipts.Profile
} {
	base := receipts.Receipt{
		KioskID:   "KSK-0042",
		Location:  "Hongqiao Railway Station, West Hall, Gate 5",
		Time:      time.Date(2025, 3, 14, 1, 26, 53, 0, time.UTC),
		TZ:        shanghai,
		Account:   "****5678",
		Currency:  "CNY",
		Notes:     []receipts.NoteLine{{ValueMinor: 10000, Count: 3}, {ValueMinor: 5000, Count: 1}, {ValueMinor: 1000, Count: 2}},
		Total:     37000,
		TopupID:   "KSK-0042-1f2e3d4c5b6a7988-17",
		ReceiptNo: 1234,
		Status:    receipts.StatusCredited,
		Outcome:   receipts.OutcomeComplete,
		Hotline:   "400-820-8820",
		Lang:      receipts.LangEN,
	}
	pending := base
	pending.Status = receipts.StatusPending
	pending.ReceiptNo = 1235
	pending.TopupID = "KSK-0042-1f2e3d4c5b6a7988-18"

	zh := base
	zh.Lang = receipts.LangZH
	zh.Location = "上海虹桥火车站 西候车厅 5号门"
	zh.LocationLatin = "Shanghai Hongqiao Station, West Hall, Gate 5"
	zh.Status = receipts.StatusPending
	zh.ReceiptNo = 1236
	zh.TopupID = "KSK-0042-1f2e3d4c5b6a7988-19"

	interrupted := base
	interrupted.Status = receipts.StatusUnderReview
	interrupted.Outcome = receipts.OutcomeInterrupted
	interrupted.Notes = []receipts.NoteLine{{ValueMinor: 10000, Count: 1}}
	interrupted.Total = 10000
	interrupted.Uncertain = []receipts.UncertainItem{{ValueMinor: 5000, Reason: "stack commanded, no credit seen before power loss"}}
	interrupted.ReceiptNo = 1237
	interrupted.TopupID = "KSK-0042-1f2e3d4c5b6a7988-20"

	cp := base
	cp.Copy = true

	usd := base
	usd.Currency = "USD"
	usd.Location = "Terminal 4, Arrivals"
	usd.TZ = time.FixedZone("EST", -5*3600)
	usd.Notes = []receipts.NoteLine{{ValueMinor: 2000, Count: 12}, {ValueMinor: 100, Count: 7}}
	usd.Total = 24700

	return []struct {
		name    string
		r       receipts.Receipt
		profile receipts.Profile
	}{
		{"en_credited", base, receipts.Generic58},
		{"en_pending_80mm", pending, receipts.Generic80},
		{"zh_pending", zh, receipts.Chinese58},
		{"zh_on_generic", zh, receipts.Generic58},
		{"interrupted_uncertain", interrupted, receipts.Generic58},
		{"copy", cp, receipts.Generic58},
		{"usd_80mm", usd, receipts.Generic80},
	}
}
