package i18n

import "strings"

// Keys used from code. Families built from a code (note rejects, conditions) have a function
// that maps the code to its key: RejectKey, ConditionKey.
const (
	KeyGeneric Key = "generic.error"

	// Receipt paper.
	KeyReceiptTitle           Key = "receipt.title"
	KeyReceiptCopy            Key = "receipt.copy"
	KeyReceiptCopyFooter      Key = "receipt.copy_footer"
	KeyReceiptKiosk           Key = "receipt.kiosk"
	KeyReceiptLocation        Key = "receipt.location"
	KeyReceiptTime            Key = "receipt.time"
	KeyReceiptNo              Key = "receipt.receipt_no"
	KeyReceiptAccount         Key = "receipt.account"
	KeyReceiptNotes           Key = "receipt.notes"
	KeyReceiptTotal           Key = "receipt.total"
	KeyReceiptStatus          Key = "receipt.status"
	KeyReceiptReference       Key = "receipt.reference"
	KeyReceiptHotline         Key = "receipt.hotline"
	KeyReceiptCredited        Key = "receipt.credited"
	KeyReceiptPending         Key = "receipt.pending"
	KeyReceiptPendingNote     Key = "receipt.pending_note"
	KeyReceiptUnderReview     Key = "receipt.under_review"
	KeyReceiptUnderReviewNote Key = "receipt.under_review_note"
	KeyReceiptInterrupted     Key = "receipt.interrupted"
	KeyReceiptInterruptedNote Key = "receipt.interrupted_note"
	KeyReceiptUncertainHead   Key = "receipt.uncertain_head"
	KeyReceiptNoNotes         Key = "receipt.no_notes"
	KeyReceiptFooter          Key = "receipt.footer"
	KeyReceiptFollows         Key = "receipt.follows"

	// Cash collection slip (receipts.CollectionSlip).
	KeySlipTitle         Key = "slip.title"
	KeySlipCollection    Key = "slip.collection"
	KeySlipPrevious      Key = "slip.previous"
	KeySlipFirst         Key = "slip.first"
	KeySlipPeriod        Key = "slip.period"
	KeySlipCassette      Key = "slip.cassette"
	KeySlipCollector     Key = "slip.collector"
	KeySlipValue         Key = "slip.value"
	KeySlipExpected      Key = "slip.expected"
	KeySlipCounted       Key = "slip.counted"
	KeySlipDifference    Key = "slip.difference"
	KeySlipShortage      Key = "slip.shortage"
	KeySlipSurplus       Key = "slip.surplus"
	KeySlipBalanced      Key = "slip.balanced"
	KeySlipUnitCounter   Key = "slip.unit_counter"
	KeySlipUncertainHead Key = "slip.uncertain_head"
	KeySlipEvidence      Key = "slip.evidence"
	KeySlipSignCollector Key = "slip.sign_collector"
	KeySlipSignWitness   Key = "slip.sign_witness"

	// QR payment code refusals (kiosk/qrpay errors).
	KeyQRBadFormat    Key = "qr.bad_format"
	KeyQRUnknownKey   Key = "qr.unknown_key"
	KeyQRBadSignature Key = "qr.bad_signature"
	KeyQRExpired      Key = "qr.expired"
	KeyQRNonceUsed    Key = "qr.nonce_used"
	KeyQRUnusable     Key = "qr.unusable"
	// KeyQRClockUntrusted: the kiosk's clock is not known good and the ledger's signed time
	// could not be had, so the code's expiry cannot be checked.
	KeyQRClockUntrusted Key = "qr.clock_untrusted"
	// KeyQRLifetime: the code claims a validity longer than any wallet issues.
	KeyQRLifetime Key = "qr.lifetime"

	// Top-up refusals at authorization.
	KeyRefuseWallet        Key = "refuse.wallet"
	KeyRefuseOfflineLimit  Key = "refuse.offline_limit_unknown"
	KeyRefuseOffline       Key = "refuse.offline"
	KeyRefuseDailyLimit    Key = "refuse.daily_limit"
	KeyRefuseOverLimitNote Key = "refuse.over_limit_note"

	// Session progress.
	KeyWelcome            Key = "session.welcome"
	KeyCheckingWallet     Key = "session.checking_wallet"
	KeyInsertNotes        Key = "session.insert_notes"
	KeyClosing            Key = "session.closing"
	KeyCancelled          Key = "session.cancelled"
	KeyCancelledNoMoney   Key = "session.cancelled_no_money"
	KeyFinishing          Key = "session.finishing"
	KeyPrinting           Key = "session.printing"
	KeyTakeReceipt        Key = "session.take_receipt"
	KeyNoReceipt          Key = "session.no_receipt"
	KeyNoteCounting       Key = "note.counting"
	KeyNoteReceived       Key = "note.received"
	KeyNoteReturned       Key = "note.returned"
	KeyNoteNotAccepted    Key = "note.not_accepted"
	KeyResultCredited     Key = "result.credited"
	KeyResultPending      Key = "result.pending"
	KeyResultUnderReview  Key = "result.under_review"
	KeyResultUncertainOne Key = "result.uncertain_note"
	KeyResultReceiptNo    Key = "result.receipt_no"

	KeyCannotTakeMoney Key = "session.cannot_take_money"
	KeyPendingCounting Key = "session.pending_counting"
	KeyPendingLater    Key = "session.pending_later"

	// Out of service.
	KeyOutOfService Key = "condition.unknown"

	// Customer screen labels (kiosk/ui). The page shows only these texts.
	KeyUITitle            Key = "ui.title"
	KeyUIIdlePrompt       Key = "ui.idle_prompt"
	KeyUIIdleHint         Key = "ui.idle_hint"
	KeyUIAuthorizing      Key = "ui.authorizing"
	KeyUIWallet           Key = "ui.wallet"
	KeyUIOfflineBadge     Key = "ui.offline_badge"
	KeyUIInsertOne        Key = "ui.insert_one"
	KeyUIInserted         Key = "ui.inserted"
	KeyUICanAdd           Key = "ui.can_add"
	KeyUINote             Key = "ui.note"
	KeyUICount            Key = "ui.count"
	KeyUIAmount           Key = "ui.amount"
	KeyUIAcceptedNow      Key = "ui.accepted_now"
	KeyUINone             Key = "ui.none"
	KeyUIFinish           Key = "ui.finish"
	KeyUICancel           Key = "ui.cancel"
	KeyUIFinishCredit     Key = "ui.finish_credit"
	KeyUIFinishCreditHint Key = "ui.finish_credit_hint"
	KeyUICancelHint       Key = "ui.cancel_hint"
	KeyUIClosing          Key = "ui.closing"
	KeyUIDone             Key = "ui.done"
	KeyUIReceiptNo        Key = "ui.receipt_no"
	KeyUIReference        Key = "ui.reference"
	KeyUICreditedTitle    Key = "ui.credited_title"
	KeyUIPendingTitle     Key = "ui.pending_title"
	KeyUIReviewTitle      Key = "ui.review_title"
	KeyUIOOSTitle         Key = "ui.oos_title"
	KeyUIOOSHelp          Key = "ui.oos_help"
	KeyUIMaintenance      Key = "ui.maintenance"
	KeyUIStarting         Key = "ui.starting"
	KeyUIReconnecting     Key = "ui.reconnecting"
	KeyUIDaemonDown       Key = "ui.daemon_down"
	KeyUICountdown        Key = "ui.countdown"
	KeyUIMoreTime         Key = "ui.more_time"
	KeyUIPrinterWarnTitle Key = "ui.printer_warn_title"
	KeyUIPrinterWarn      Key = "ui.printer_warn"
	KeyUIContinue         Key = "ui.continue"
	KeyUILangToggle       Key = "ui.lang_toggle"
)

// RejectKey is the key of the customer text for a note the acceptor refused, by the
// acceptor.RejectReason's String() ("insertion", "counterfeit", ...). An unknown reason gets
// the generic reject text.
func RejectKey(reason string) Key {
	k := Key("note.reject." + reason)
	if Has(k) {
		return k
	}
	return "note.reject.unknown"
}

// ConditionKey is the key of the customer text for a health condition kind ("acceptor_jam",
// "printer", "journal_failure", ...): what a customer is told while it stands. A kind without
// its own text gets the generic out-of-service sentence, KeyOutOfService.
func ConditionKey(kind string) Key {
	k := Key("condition." + strings.ToLower(kind))
	if Has(k) {
		return k
	}
	switch {
	case strings.HasPrefix(kind, "sensor_"), strings.HasSuffix(kind, "_door_open"):
		return "condition.door"
	case strings.HasPrefix(kind, "printer"):
		return "condition.printer"
	case strings.HasPrefix(kind, "journal"):
		return "condition.journal_failure"
	case strings.HasPrefix(kind, "acceptor"):
		return "condition.acceptor_failure"
	}
	return KeyOutOfService
}

// Parameter names used by the messages.
const (
	PAmount    = "amount"
	PRemaining = "remaining"
	PRef       = "ref"
	PReceiptNo = "receipt_no"
	PKiosk     = "kiosk"
	PHotline   = "hotline"
	PCount     = "count"
	PSeconds   = "seconds"
)

const (
	callHotlineEN = " If you need help, call {hotline} and give kiosk number {kiosk}."
	callHotlineZH = "如需帮助，请拨打 {hotline}，并告知终端编号 {kiosk}。"
	otherKioskEN  = "This kiosk is temporarily out of service. Please use another kiosk."
	otherKioskZH  = "本机暂停服务，请使用其他终端。"
)

var hk = []string{PHotline, PKiosk}

// customerMessages are the customer screen's and receipts' texts. Receipt texts are short (a 32-column roll); a Chinese receipt
// prints the Chinese text with the English one beside it, so both must stay short.
var customerMessages = []Message{
	{Key: KeyGeneric, ZH: "抱歉，出现了问题。请联系工作人员。", EN: "Sorry, something went wrong. Please ask a member of staff for help."},

	// Receipt paper.
	{Key: KeyReceiptTitle, ZH: "现金充值凭条", EN: "CASH TOP-UP RECEIPT"},
	{Key: KeyReceiptCopy, ZH: "副本", EN: "COPY"},
	{Key: KeyReceiptCopyFooter, ZH: "副本 非原件", EN: "COPY - NOT AN ORIGINAL"},
	{Key: KeyReceiptKiosk, ZH: "终端", EN: "Kiosk"},
	{Key: KeyReceiptLocation, ZH: "地点", EN: "Location"},
	{Key: KeyReceiptTime, ZH: "时间", EN: "Time"},
	{Key: KeyReceiptNo, ZH: "凭条号", EN: "Receipt No."},
	{Key: KeyReceiptAccount, ZH: "账户", EN: "Account"},
	{Key: KeyReceiptNotes, ZH: "投入纸币", EN: "Notes inserted"},
	{Key: KeyReceiptTotal, ZH: "合计", EN: "TOTAL"},
	{Key: KeyReceiptStatus, ZH: "状态", EN: "Status"},
	{Key: KeyReceiptReference, ZH: "参考号", EN: "Reference"},
	{Key: KeyReceiptHotline, ZH: "客服", EN: "Hotline"},
	{Key: KeyReceiptCredited, ZH: "已到账", EN: "CREDITED"},
	{Key: KeyReceiptPending, ZH: "处理中", EN: "PENDING"},
	{Key: KeyReceiptPendingNote, ZH: "将稍后到账。", EN: "Will be credited to your wallet."},
	{Key: KeyReceiptUnderReview, ZH: "审核中", EN: "UNDER REVIEW"},
	{Key: KeyReceiptUnderReviewNote, ZH: "工作人员将核实处理。", EN: "Our staff will check and settle it."},
	{Key: KeyReceiptInterrupted, ZH: "交易中断", EN: "SESSION INTERRUPTED"},
	{Key: KeyReceiptInterruptedNote, ZH: "合计为已清点金额。", EN: "The total shows what was counted."},
	{Key: KeyReceiptFollows, ZH: "补记原凭条", EN: "Follows receipt"},
	{Key: KeyReceiptUncertainHead, ZH: "待核实(不计入合计):", EN: "Under review (not in total):"},
	{Key: KeyReceiptNoNotes, ZH: "(无)", EN: "(none)"},
	{Key: KeyReceiptFooter, ZH: "请保留此凭条，查询请提供参考号。", EN: "Keep this receipt. Quote the reference in any query."},

	// Cash collection slip (staff paper; short labels, a Chinese slip prints both).
	{Key: KeySlipTitle, ZH: "现金清机单", EN: "CASH COLLECTION SLIP"},
	{Key: KeySlipCollection, ZH: "清机编号", EN: "Collection"},
	{Key: KeySlipPrevious, ZH: "上次清机", EN: "Previous"},
	{Key: KeySlipFirst, ZH: "首次清机", EN: "first"},
	{Key: KeySlipPeriod, ZH: "期间", EN: "Period"},
	{Key: KeySlipCassette, ZH: "钞箱", EN: "Cassette"},
	{Key: KeySlipCollector, ZH: "清机员", EN: "Collector"},
	{Key: KeySlipValue, ZH: "面额", EN: "Note"},
	{Key: KeySlipExpected, ZH: "应有", EN: "Expected"},
	{Key: KeySlipCounted, ZH: "实点", EN: "Counted"},
	{Key: KeySlipDifference, ZH: "差额", EN: "Difference"},
	{Key: KeySlipShortage, ZH: "短款", EN: "SHORTAGE"},
	{Key: KeySlipSurplus, ZH: "长款", EN: "SURPLUS"},
	{Key: KeySlipBalanced, ZH: "账实相符", EN: "BALANCED"},
	{Key: KeySlipUnitCounter, ZH: "机器计数", EN: "Unit counter"},
	{Key: KeySlipUncertainHead, ZH: "待核实项目:", EN: "Uncertain items:"},
	{Key: KeySlipEvidence, ZH: "差额与待核实项目由运营中心核定。", EN: "Operations settle differences and uncertain items."},
	{Key: KeySlipSignCollector, ZH: "清机员签字", EN: "Collector signature"},
	{Key: KeySlipSignWitness, ZH: "复核人签字", EN: "Witness signature"},

	// QR payment codes.
	{Key: KeyQRBadFormat, ZH: "这不是钱包付款码。请出示钱包应用中的付款二维码。", EN: "This is not a wallet payment code. Please show the payment QR code of your wallet app."},
	{Key: KeyQRUnknownKey, ZH: "本终端不支持此钱包。", EN: "This wallet is not accepted at this kiosk."},
	{Key: KeyQRBadSignature, ZH: "此付款码无法验证。请在钱包应用中刷新后重试。", EN: "This payment code could not be verified. Please refresh it in your wallet app."},
	{Key: KeyQRExpired, ZH: "此付款码已过期。请在钱包应用中刷新后重试。", EN: "This payment code has expired. Please refresh it in your wallet app."},
	{Key: KeyQRNonceUsed, ZH: "此付款码已使用过。请在钱包应用中刷新后重试。", EN: "This payment code was already used. Please refresh it in your wallet app."},
	{Key: KeyQRUnusable, ZH: "此二维码无法使用。", EN: "This code cannot be used."},
	{Key: KeyQRClockUntrusted, ZH: "本机暂时无法核对付款码的有效期，请稍后再试。", EN: "This kiosk cannot check the validity of your code right now. Please try again in a moment."},
	{Key: KeyQRLifetime, ZH: "此付款码在本机无效。请在钱包应用中刷新后重试。", EN: "This payment code is not valid here. Please refresh it in your wallet app."},

	// Refusals.
	{Key: KeyRefuseWallet, ZH: "抱歉，钱包拒绝了此次充值。", EN: "Sorry, the wallet refused this top-up."},
	{Key: KeyRefuseOfflineLimit, ZH: "抱歉，本机暂时无法核对离线限额，请稍后再试。", EN: "Sorry, the kiosk cannot check its offline limit. Please try again later."},
	{Key: KeyRefuseOffline, ZH: "抱歉，本机离线期间无法充值，请稍后再试。", EN: "Sorry, top-ups are not available while the kiosk is offline. Please try again later."},
	{Key: KeyRefuseDailyLimit, ZH: "抱歉，您的钱包今日已无法再充值。", EN: "Sorry, your wallet cannot take more money today."},
	{Key: KeyRefuseOverLimitNote, ZH: "这张纸币会超出您的限额(剩余 {remaining})。请取回纸币。", EN: "This note would take you over your limit ({remaining} left). Please take it back.", Params: []string{PRemaining}},

	// Session progress.
	{Key: KeyWelcome, ZH: "请出示钱包付款码开始充值。", EN: "Show your wallet's payment code to start a top-up."},
	{Key: KeyCheckingWallet, ZH: "正在核实您的钱包…", EN: "Checking your wallet…"},
	{Key: KeyInsertNotes, ZH: "请投入纸币。", EN: "Please insert your notes."},
	{Key: KeyClosing, ZH: "本机即将暂停服务，请稍候。", EN: "This kiosk is closing. Please wait."},
	{Key: KeyCancelled, ZH: "已取消。", EN: "Cancelled."},
	{Key: KeyCancelledNoMoney, ZH: "已取消，未收取任何款项。", EN: "Cancelled. No money was taken."},
	{Key: KeyFinishing, ZH: "正在结束，请稍候…", EN: "Finishing, please wait…"},
	{Key: KeyPrinting, ZH: "谢谢。正在打印凭条…", EN: "Thank you. Printing your receipt…"},
	{Key: KeyTakeReceipt, ZH: "请取走您的凭条。", EN: "Please take your receipt."},
	{Key: KeyNoReceipt, ZH: "凭条无法打印。请记下参考号：{ref}", EN: "No receipt could be printed. Please note your reference: {ref}", Params: []string{PRef}},
	{Key: KeyNoteCounting, ZH: "纸币已接收，正在清点…", EN: "Note accepted, counting…"},
	{Key: KeyNoteReceived, ZH: "已收到 {amount}。", EN: "{amount} received.", Params: []string{PAmount}},
	{Key: KeyNoteReturned, ZH: "纸币已退回，请取回。", EN: "Note returned. Please take it."},
	{Key: KeyNoteNotAccepted, ZH: "不接受此纸币，请取回。", EN: "This note is not accepted. Please take it back."},
	{Key: KeyResultCredited, ZH: "{amount} 已充值到您的钱包。参考号：{ref}", EN: "{amount} has been credited to your wallet. Reference: {ref}", Params: []string{PAmount, PRef}},
	{Key: KeyResultPending, ZH: "已收到 {amount}，将稍后充值到您的钱包。参考号：{ref}", EN: "{amount} received and will be credited to your wallet shortly. Reference: {ref}", Params: []string{PAmount, PRef}},
	{Key: KeyResultUnderReview, ZH: "部分款项待工作人员核实，核实后将处理。参考号：{ref}", EN: "Part of this top-up is under review; our staff will check and settle it. Reference: {ref}", Params: []string{PRef}},
	{Key: KeyResultUncertainOne, ZH: "一张 {amount} 纸币待核实，不计入合计。工作人员将核实处理，参考号：{ref}", EN: "A {amount} note is under review and is not in the total. Our staff will settle it; reference {ref}.", Params: []string{PAmount, PRef}},
	{Key: KeyResultReceiptNo, ZH: "凭条号 {receipt_no}", EN: "Receipt No. {receipt_no}", Params: []string{PReceiptNo}},

	{Key: KeyCannotTakeMoney, ZH: "抱歉，本机现在无法收款。", EN: "Sorry, the kiosk cannot take money now."},
	{Key: KeyPendingCounting, ZH: "您的款项已记录。本机仍在清点最后一张纸币，充值随后到账。参考号：{ref}", EN: "Your money is recorded. The kiosk is still counting your last note; your top-up follows. Your reference: {ref}", Params: []string{PRef}},
	{Key: KeyPendingLater, ZH: "您的款项已记录，但本机暂时无法完成充值，将尽快发送。参考号：{ref}", EN: "Your money is recorded, but the kiosk cannot finish your top-up now. It will be sent as soon as possible. Your reference: {ref}", Params: []string{PRef}},

	// Customer screen.
	{Key: KeyUITitle, ZH: "现金充值", EN: "Cash top-up"},
	{Key: KeyUIIdlePrompt, ZH: "请将钱包应用的付款码对准扫码器。", EN: "Show the payment QR code of your wallet app to the scanner."},
	{Key: KeyUIIdleHint, ZH: "扫码器在屏幕下方。", EN: "The scanner is below the screen."},
	{Key: KeyUIAuthorizing, ZH: "正在核实您的钱包…", EN: "Checking your wallet…"},
	{Key: KeyUIWallet, ZH: "钱包", EN: "Wallet"},
	{Key: KeyUIOfflineBadge, ZH: "离线充值", EN: "offline top-up"},
	{Key: KeyUIInsertOne, ZH: "请逐张投入纸币。", EN: "Insert your notes one at a time."},
	{Key: KeyUIInserted, ZH: "已投入", EN: "Inserted"},
	{Key: KeyUICanAdd, ZH: "还可投入", EN: "You can still add"},
	{Key: KeyUINote, ZH: "面额", EN: "Note"},
	{Key: KeyUICount, ZH: "张数", EN: "Count"},
	{Key: KeyUIAmount, ZH: "金额", EN: "Amount"},
	{Key: KeyUIAcceptedNow, ZH: "当前可接受：", EN: "Accepted now:"},
	{Key: KeyUINone, ZH: "无", EN: "none"},
	{Key: KeyUIFinish, ZH: "完成", EN: "Finish"},
	{Key: KeyUICancel, ZH: "取消", EN: "Cancel"},
	{Key: KeyUIFinishCredit, ZH: "结束并入账", EN: "Finish and credit"},
	{Key: KeyUIFinishCreditHint, ZH: "已投入的纸币无法退回：结束后将全部充值到您的钱包。", EN: "Inserted notes cannot be given back: ending now credits them all to your wallet."},
	{Key: KeyUICancelHint, ZH: "尚未投入纸币，取消不会收取任何款项。", EN: "No notes inserted yet; cancelling takes no money."},
	{Key: KeyUIClosing, ZH: "正在结束，请稍候…", EN: "Finishing, please wait…"},
	{Key: KeyUIDone, ZH: "完成", EN: "Done"},
	{Key: KeyUIReceiptNo, ZH: "凭条号", EN: "Receipt No."},
	{Key: KeyUIReference, ZH: "参考号", EN: "Reference"},
	{Key: KeyUICreditedTitle, ZH: "已充值到您的钱包", EN: "Credited to your wallet"},
	{Key: KeyUIPendingTitle, ZH: "已收款，稍后到账", EN: "Received: will be credited shortly"},
	{Key: KeyUIReviewTitle, ZH: "部分款项待核实", EN: "Part of this top-up is under review"},
	{Key: KeyUIOOSTitle, ZH: "抱歉，本机暂停服务。", EN: "Sorry, this kiosk is out of service."},
	{Key: KeyUIOOSHelp, ZH: "如需帮助，请拨打 {hotline}，并告知终端编号 {kiosk}。", EN: "If you need help, call {hotline} and give kiosk number {kiosk}.", Params: hk},
	{Key: KeyUIMaintenance, ZH: "本机正在维护，请稍后再试。", EN: "This kiosk is being serviced. Please try again later."},
	{Key: KeyUIStarting, ZH: "正在启动…", EN: "Starting…"},
	{Key: KeyUIReconnecting, ZH: "正在重新连接…", EN: "Reconnecting…"},
	{Key: KeyUIDaemonDown, ZH: "本机暂时无法使用。已投入的款项均已记录。", EN: "This kiosk cannot be used right now. Any money already inserted is recorded."},
	{Key: KeyUICountdown, ZH: "{seconds} 秒后将自动结束。", EN: "This top-up ends by itself in {seconds} s.", Params: []string{PSeconds}},
	{Key: KeyUIMoreTime, ZH: "需要更多时间", EN: "More time"},
	{Key: KeyUIPrinterWarnTitle, ZH: "本次无法打印凭条", EN: "No receipt can be printed"},
	{Key: KeyUIPrinterWarn, ZH: "您仍可充值：款项照常到账，并可在钱包应用中查看。请记下屏幕上的参考号。", EN: "You can still top up: the money is credited as usual and shows in your wallet app. Please note the reference shown on the screen."},
	{Key: KeyUIContinue, ZH: "继续", EN: "Continue"},
	{Key: KeyUILangToggle, ZH: "English 英文", EN: "中文 Chinese"},

	// Note rejects, one per acceptor.RejectReason (its String()).
	{Key: "note.reject.unknown", ZH: "此纸币无法识别，请取回后重试。", EN: "This note could not be read. Please take it and try again."},
	{Key: "note.reject.insertion", ZH: "请将纸币平整、笔直地投入，请取回后重试。", EN: "Please insert the note flat and straight. Please take it and try again."},
	{Key: "note.reject.magnetic", ZH: "此纸币无法验证，请取回。", EN: "This note could not be verified. Please take it back."},
	{Key: "note.reject.remaining_in_head", ZH: "纸币未能进入，请取回后重试。", EN: "The note did not go in. Please take it and try again."},
	{Key: "note.reject.multiple_notes", ZH: "请每次只投入一张纸币，请取回后重试。", EN: "Please insert one note at a time. Please take them and try again."},
	{Key: "note.reject.conveying", ZH: "纸币未能送入，请平整投入后重试。", EN: "The note could not be taken in. Please smooth it and try again."},
	{Key: "note.reject.denomination", ZH: "无法识别此纸币面额，请取回。", EN: "This note's value could not be recognised. Please take it back."},
	{Key: "note.reject.photo_pattern", ZH: "此纸币无法验证，请取回。", EN: "This note could not be verified. Please take it back."},
	{Key: "note.reject.photo_level", ZH: "此纸币无法验证，请取回。", EN: "This note could not be verified. Please take it back."},
	{Key: "note.reject.inhibited", ZH: "目前不接受此面额纸币，请取回。", EN: "This note is not taken now. Please take it back."},
	{Key: "note.reject.operation", ZH: "纸币已退回，请取回。", EN: "The note was returned. Please take it."},
	{Key: "note.reject.remaining_in_stacker", ZH: "纸币未能收入，请取回后重试。", EN: "The note could not be stored. Please take it and try again."},
	{Key: "note.reject.length", ZH: "纸币尺寸不符，请平整投入后重试。", EN: "The note's size was not right. Please smooth it and try again."},
	{Key: "note.reject.counterfeit", ZH: "此纸币无法验证，请取回。", EN: "This note could not be verified. Please take it back."},
	{Key: "note.reject.host_return", ZH: "纸币已退回，请取回。", EN: "The note was returned. Please take it."},
	{Key: "note.reject.timeout", ZH: "等待超时，纸币已退回，请取回。", EN: "The note was returned because it took too long. Please take it."},

	// Out of service: what a customer reads while a condition stands (health condition kinds).
	// They never name the fault: the technician's menu has the details.
	{Key: KeyOutOfService, ZH: otherKioskZH + callHotlineZH, EN: otherKioskEN + callHotlineEN, Params: hk},
	{Key: "condition.acceptor_jam", ZH: "纸币器需要维护，本机暂停收款。" + callHotlineZH, EN: "The note reader needs attention, so this kiosk cannot take cash now." + callHotlineEN, Params: hk},
	{Key: "condition.acceptor_stacker_jam", ZH: "纸币器需要维护，本机暂停收款。" + callHotlineZH, EN: "The note reader needs attention, so this kiosk cannot take cash now." + callHotlineEN, Params: hk},
	{Key: "condition.acceptor_failure", ZH: "纸币器故障，本机暂停收款。" + callHotlineZH, EN: "The note reader is not working, so this kiosk cannot take cash now." + callHotlineEN, Params: hk},
	{Key: "condition.acceptor_comm_lost", ZH: "纸币器故障，本机暂停收款。" + callHotlineZH, EN: "The note reader is not working, so this kiosk cannot take cash now." + callHotlineEN, Params: hk},
	{Key: "condition.acceptor_port", ZH: "纸币器故障，本机暂停收款。" + callHotlineZH, EN: "The note reader is not working, so this kiosk cannot take cash now." + callHotlineEN, Params: hk},
	{Key: "condition.acceptor_fraud", ZH: otherKioskZH + callHotlineZH, EN: otherKioskEN + callHotlineEN, Params: hk},
	{Key: "condition.acceptor_cassette_full", ZH: "钱箱已满，本机暂停收款，工作人员将尽快处理。", EN: "The cash box is full, so this kiosk cannot take cash now. Staff will empty it soon."},
	{Key: "condition.acceptor_cassette_removed", ZH: "钱箱正在更换，本机暂停收款，请稍后再试。", EN: "The cash box is being changed. Please try again in a few minutes."},
	{Key: "condition.printer", ZH: "凭条打印机暂不可用。您仍可充值，请记下屏幕上的参考号。", EN: "The receipt printer is not available. You can still top up; please note the reference shown on the screen."},
	{Key: "condition.printer_missing", ZH: "本机不打印凭条。您仍可充值，请记下屏幕上的参考号。", EN: "This kiosk prints no receipts. You can still top up; please note the reference shown on the screen."},
	{Key: "condition.printer_paper_out", ZH: "凭条纸已用完。您仍可充值，请记下屏幕上的参考号。", EN: "The receipt paper has run out. You can still top up; please note the reference shown on the screen."},
	{Key: "condition.printer_paper_near_end", ZH: "凭条纸即将用完。", EN: "Receipt paper is running low."},
	{Key: "condition.journal_failure", ZH: otherKioskZH + callHotlineZH, EN: otherKioskEN + callHotlineEN, Params: hk},
	{Key: "condition.journal_corrupt", ZH: otherKioskZH + callHotlineZH, EN: otherKioskEN + callHotlineEN, Params: hk},
	{Key: "condition.journal_locked", ZH: otherKioskZH + callHotlineZH, EN: otherKioskEN + callHotlineEN, Params: hk},
	{Key: "condition.scanner", ZH: "扫码器暂不可用，本机暂停服务。" + callHotlineZH, EN: "The code reader is not working, so this kiosk cannot start a top-up now." + callHotlineEN, Params: hk},
	{Key: "condition.door", ZH: "本机正在维护，请稍后再试。", EN: "This kiosk is being serviced. Please try again later."},
	{Key: "condition.tamper", ZH: otherKioskZH + callHotlineZH, EN: otherKioskEN + callHotlineEN, Params: hk},
	{Key: "condition.maintenance", ZH: "本机正在维护，请稍后再试。", EN: "This kiosk is being serviced. Please try again later."},
	{Key: "condition.uplink", ZH: "本机暂时离线，充值将在恢复连接后到账。", EN: "This kiosk is offline for now; top-ups will be credited once it is back online."},
}
