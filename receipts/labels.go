package receipts

// labels are the fixed words of a receipt in one language. Chinese labels carry an English
// subtitle so that staff and foreign customers can read the same paper.
type labels struct {
	title, subtitle                                              string
	copyBanner, copyFooter                                       string
	kiosk, location, time, receiptNo, account                    string
	notes, total, status, reference, hotline                     string
	credited, pending, pendingNote, underReview, underReviewNote string
	interrupted, interruptedNote, uncertainHead, noNotes, footer string
}

var labelsEN = labels{
	title:           "CASH TOP-UP RECEIPT",
	copyBanner:      "COPY",
	copyFooter:      "*** COPY - NOT AN ORIGINAL ***",
	kiosk:           "Kiosk",
	location:        "Location",
	time:            "Time",
	receiptNo:       "Receipt No.",
	account:         "Account",
	notes:           "Notes inserted",
	total:           "TOTAL",
	status:          "Status",
	reference:       "Reference",
	hotline:         "Hotline",
	credited:        "CREDITED",
	pending:         "PENDING",
	pendingNote:     "Will be credited to your wallet.",
	underReview:     "UNDER REVIEW",
	underReviewNote: "Our staff will check and settle it.",
	interrupted:     "SESSION INTERRUPTED",
	interruptedNote: "The total shows what was counted.",
	uncertainHead:   "Under review (not in total):",
	noNotes:         "(none)",
	footer:          "Keep this receipt. Quote the reference in any query.",
}

var labelsZH = labels{
	title:           "现金充值凭条",
	subtitle:        "CASH TOP-UP RECEIPT",
	copyBanner:      "副本 COPY",
	copyFooter:      "*** 副本 COPY ***",
	kiosk:           "终端 Kiosk",
	location:        "地点 Location",
	time:            "时间 Time",
	receiptNo:       "凭条号 No.",
	account:         "账户 Account",
	notes:           "投入纸币 Notes",
	total:           "合计 TOTAL",
	status:          "状态 Status",
	reference:       "参考号 Reference",
	hotline:         "客服 Hotline",
	credited:        "已到账 CREDITED",
	pending:         "处理中 PENDING",
	pendingNote:     "将稍后到账 Will be credited.",
	underReview:     "审核中 UNDER REVIEW",
	underReviewNote: "工作人员将核实处理 Staff will settle it.",
	interrupted:     "交易中断 INTERRUPTED",
	interruptedNote: "合计为已清点金额 Total is what was counted.",
	uncertainHead:   "待核实(不计入合计) Under review, not in total:",
	noNotes:         "(无 none)",
	footer:          "请保留此凭条 查询请提供参考号 Keep this receipt; quote the reference.",
}
