package i18n

// The technicians' service menu on the kiosk's screen (kiosk/svcmenu). Technical values
// (condition kinds, device states, serial numbers) are shown as they are; the words around
// them come from here.

// Parameter names of the service menu's messages.
const (
	PWho    = "who"
	PReason = "reason"
)

// Service menu keys.
const (
	KeySvcTitle         Key = "svc.title"
	KeySvcEntry         Key = "svc.entry"
	KeySvcChooseRole    Key = "svc.choose_role"
	KeySvcRoleCollector Key = "svc.role.collector"
	KeySvcRoleTech      Key = "svc.role.technician"
	KeySvcRoleAdmin     Key = "svc.role.admin"
	KeySvcEnterPIN      Key = "svc.enter_pin"
	KeySvcOK            Key = "svc.ok"
	KeySvcClear         Key = "svc.clear"
	KeySvcBack          Key = "svc.back"
	KeySvcLogout        Key = "svc.logout"
	KeySvcWrongPIN      Key = "svc.wrong_pin"
	KeySvcLocked        Key = "svc.locked"
	KeySvcLoggedOut     Key = "svc.logged_out"
	KeySvcLoggedInAs    Key = "svc.logged_in_as"
	KeySvcStatus        Key = "svc.status"
	KeySvcConditions    Key = "svc.conditions"
	KeySvcCounters      Key = "svc.counters"
	KeySvcCollection    Key = "svc.collection"
	KeySvcCollectionNA  Key = "svc.collection_na"
	KeySvcTestPrinter   Key = "svc.selftest_printer"
	KeySvcTestAcceptor  Key = "svc.selftest_acceptor"
	KeySvcTestNote      Key = "svc.selftest_note"
	KeySvcTestScanner   Key = "svc.selftest_scanner"
	KeySvcTestSensors   Key = "svc.selftest_sensors"
	KeySvcMaintOn       Key = "svc.maintenance_on"
	KeySvcMaintOff      Key = "svc.maintenance_off"
	KeySvcReprint       Key = "svc.reprint"
	KeySvcReceiptPrompt Key = "svc.receipt_prompt"
	KeySvcSignoff       Key = "svc.signoff"
	KeySvcSignoffNone   Key = "svc.signoff_none"
	KeySvcSignoffPick   Key = "svc.signoff_pick"
	KeySvcWhyPrompt     Key = "svc.why_prompt"
	KeySvcWhyInspected  Key = "svc.why.inspected"
	KeySvcWhyReplaced   Key = "svc.why.replaced"
	KeySvcWhyCounted    Key = "svc.why.counted"
	KeySvcSetPIN        Key = "svc.set_pin"
	KeySvcSlot          Key = "svc.slot"
	KeySvcNewPIN        Key = "svc.new_pin"
	KeySvcPINSet        Key = "svc.pin_set"
	KeySvcNotAllowed    Key = "svc.not_allowed"
	KeySvcDone          Key = "svc.done"
	KeySvcFailed        Key = "svc.failed"
	KeySvcWaitingIdle   Key = "svc.waiting_idle"
	KeySvcCopyPrinting  Key = "svc.copy_printing"
	KeySvcKiosk         Key = "svc.kiosk"
	KeySvcState         Key = "svc.state"
	KeySvcReason        Key = "svc.reason"
	KeySvcOutbox        Key = "svc.outbox"
	KeySvcNotes         Key = "svc.notes"
	KeySvcValue         Key = "svc.value"
	KeySvcNone          Key = "svc.none"
	KeySvcIdleLeft      Key = "svc.idle_left"
	KeySvcLangToggle    Key = "svc.lang_toggle"
	KeySvcWorking       Key = "svc.working"

	// Cash collection on the menu (the engine's collect_* procedure).
	KeySvcColNone        Key = "svc.col.none"
	KeySvcColWaiting     Key = "svc.col.waiting"
	KeySvcColStarted     Key = "svc.col.started"
	KeySvcColCassetteOut Key = "svc.col.cassette_out_step"
	KeySvcColCounted     Key = "svc.col.counted_step"
	KeySvcColRecorded    Key = "svc.col.recorded_step"
	KeySvcColEnded       Key = "svc.col.ended"
	KeySvcColAborted     Key = "svc.col.aborted"
	KeySvcColDoStart     Key = "svc.col.start"
	KeySvcColDoOut       Key = "svc.col.cassette_out"
	KeySvcColDoCount     Key = "svc.col.count"
	KeySvcColDoFinish    Key = "svc.col.finish"
	KeySvcColDoIn        Key = "svc.col.cassette_in"
	KeySvcColDoAbort     Key = "svc.col.abort"
	KeySvcColID          Key = "svc.col.id"
	KeySvcColExpected    Key = "svc.col.expected"
	KeySvcColCountedFig  Key = "svc.col.counted"
	KeySvcColDifference  Key = "svc.col.difference"
	KeySvcColShortage    Key = "svc.col.shortage"
	KeySvcColSurplus     Key = "svc.col.surplus"
	KeySvcColBalanced    Key = "svc.col.balanced"
	KeySvcColUncertain   Key = "svc.col.uncertain"
	KeySvcColSlipPrinted Key = "svc.col.slip_printed"
	KeySvcColSlipFailed  Key = "svc.col.slip_failed"
	KeySvcColSlipWaiting Key = "svc.col.slip_waiting"
	KeySvcColNoteCount   Key = "svc.col.note_count"
	KeySvcColExpNotes    Key = "svc.col.expected_notes"
	KeySvcColSlip        Key = "svc.col.slip"
	KeySvcColMore        Key = "svc.col.more"
	KeySvcColLess        Key = "svc.col.less"
)

// messages is the whole catalogue: the customer's and receipts' texts, then the service
// menu's.
var messages = append(append([]Message(nil), customerMessages...), serviceMessages...)

// ServiceKeys are the service menu's keys, in the catalogue's order.
var ServiceKeys = func() []Key {
	out := make([]Key, len(serviceMessages))
	for i, m := range serviceMessages {
		out[i] = m.Key
	}
	return out
}()

var serviceMessages = []Message{
	{Key: KeySvcTitle, ZH: "服务菜单", EN: "Service menu"},
	{Key: KeySvcEntry, ZH: "请打开机柜门后进入服务菜单。", EN: "Open the cabinet door to enter the service menu."},
	{Key: KeySvcChooseRole, ZH: "请选择您的角色", EN: "Choose your role"},
	{Key: KeySvcRoleCollector, ZH: "收款员", EN: "Cash collector"},
	{Key: KeySvcRoleTech, ZH: "技术员", EN: "Technician"},
	{Key: KeySvcRoleAdmin, ZH: "管理员", EN: "Administrator"},
	{Key: KeySvcEnterPIN, ZH: "请输入 PIN 码", EN: "Enter your PIN"},
	{Key: KeySvcOK, ZH: "确定", EN: "OK"},
	{Key: KeySvcClear, ZH: "清除", EN: "Clear"},
	{Key: KeySvcBack, ZH: "返回", EN: "Back"},
	{Key: KeySvcLogout, ZH: "退出登录", EN: "Log out"},
	{Key: KeySvcWrongPIN, ZH: "PIN 码错误。", EN: "Wrong PIN."},
	{Key: KeySvcLocked, ZH: "错误次数过多，请在 {seconds} 秒后重试。", EN: "Too many wrong PINs. Try again in {seconds} s.", Params: []string{PSeconds}},
	{Key: KeySvcLoggedOut, ZH: "已退出登录。长时间未操作会自动退出。", EN: "Logged out. A login ends after 3 minutes without a touch."},
	{Key: KeySvcLoggedInAs, ZH: "已登录：{who}", EN: "Logged in: {who}", Params: []string{PWho}},
	{Key: KeySvcStatus, ZH: "运行状态", EN: "Status"},
	{Key: KeySvcConditions, ZH: "告警", EN: "Conditions"},
	{Key: KeySvcCounters, ZH: "钱箱计数", EN: "Cassette counters"},
	{Key: KeySvcCollection, ZH: "收款", EN: "Cash collection"},
	{Key: KeySvcCollectionNA, ZH: "本机暂不支持在此收款。", EN: "Cash collection is not available on this screen yet."},
	{Key: KeySvcTestPrinter, ZH: "打印机自检", EN: "Printer test"},
	{Key: KeySvcTestAcceptor, ZH: "纸币器自检", EN: "Note acceptor test"},
	{Key: KeySvcTestNote, ZH: "试投一张纸币（将退回）", EN: "Test note (given back)"},
	{Key: KeySvcTestScanner, ZH: "扫码器自检", EN: "Scanner test"},
	{Key: KeySvcTestSensors, ZH: "传感器", EN: "Sensors"},
	{Key: KeySvcMaintOn, ZH: "进入维护", EN: "Maintenance on"},
	{Key: KeySvcMaintOff, ZH: "退出维护", EN: "Maintenance off"},
	{Key: KeySvcReprint, ZH: "补打凭条副本", EN: "Reprint a receipt"},
	{Key: KeySvcReceiptPrompt, ZH: "请输入凭条号", EN: "Enter the receipt number"},
	{Key: KeySvcSignoff, ZH: "签核告警", EN: "Sign off"},
	{Key: KeySvcSignoffNone, ZH: "没有需要签核的告警。", EN: "Nothing to sign off."},
	{Key: KeySvcSignoffPick, ZH: "请选择要签核的告警。", EN: "Choose the condition to sign off."},
	{Key: KeySvcWhyPrompt, ZH: "请选择原因", EN: "Choose the reason"},
	{Key: KeySvcWhyInspected, ZH: "已检查，未发现篡改", EN: "Inspected, no tampering found"},
	{Key: KeySvcWhyReplaced, ZH: "设备由技术员更换", EN: "Unit replaced by a technician"},
	{Key: KeySvcWhyCounted, ZH: "钱箱已清点核对", EN: "Cassette counted and reconciled"},
	{Key: KeySvcSetPIN, ZH: "设置 PIN 码", EN: "Set a PIN"},
	{Key: KeySvcSlot, ZH: "编号", EN: "Slot"},
	{Key: KeySvcNewPIN, ZH: "请输入新 PIN 码（4 至 12 位数字）", EN: "Enter the new PIN (4 to 12 digits)"},
	{Key: KeySvcPINSet, ZH: "{who} 的 PIN 码已设置。", EN: "The PIN of {who} is set.", Params: []string{PWho}},
	{Key: KeySvcNotAllowed, ZH: "您的角色无权执行此操作。", EN: "Your role may not do that."},
	{Key: KeySvcDone, ZH: "完成。", EN: "Done."},
	{Key: KeySvcFailed, ZH: "未完成：{reason}", EN: "Not done: {reason}", Params: []string{PReason}},
	{Key: KeySvcWaitingIdle, ZH: "等待当前顾客完成后进入维护。", EN: "Maintenance starts once the customer in session has finished."},
	{Key: KeySvcCopyPrinting, ZH: "正在打印凭条 {receipt_no} 的副本。", EN: "A COPY of receipt {receipt_no} is printing.", Params: []string{PReceiptNo}},
	{Key: KeySvcKiosk, ZH: "终端", EN: "Kiosk"},
	{Key: KeySvcState, ZH: "状态", EN: "State"},
	{Key: KeySvcReason, ZH: "原因", EN: "Reason"},
	{Key: KeySvcOutbox, ZH: "待上传充值", EN: "Top-ups waiting"},
	{Key: KeySvcNotes, ZH: "纸币张数", EN: "Notes"},
	{Key: KeySvcValue, ZH: "总金额", EN: "Value"},
	{Key: KeySvcNone, ZH: "无", EN: "None"},
	{Key: KeySvcIdleLeft, ZH: "{seconds} 秒无操作将自动退出", EN: "Logs out after {seconds} s without a touch", Params: []string{PSeconds}},
	{Key: KeySvcLangToggle, ZH: "English 英文", EN: "中文 Chinese"},
	{Key: KeySvcWorking, ZH: "正在处理…", EN: "Working…"},
	{Key: KeySvcColNone, ZH: "当前没有进行中的收款。", EN: "No cash collection in progress."},
	{Key: KeySvcColWaiting, ZH: "收款已开始，等待当前顾客完成。", EN: "Collection started; waiting for the customer in session to finish."},
	{Key: KeySvcColStarted, ZH: "第 1 步：请取出钱箱。", EN: "Step 1: take the cassette out."},
	{Key: KeySvcColCassetteOut, ZH: "第 2 步：钱箱已取出，请按面额清点纸币并输入张数。", EN: "Step 2: the cassette is out. Count the notes by denomination and enter the counts."},
	{Key: KeySvcColCounted, ZH: "第 3 步：请核对差额，然后完成收款并打印收款单。", EN: "Step 3: check the difference, then finish and print the slip."},
	{Key: KeySvcColRecorded, ZH: "第 4 步：收款已记录，请装回钱箱。", EN: "Step 4: the collection is recorded. Put the cassette back in."},
	{Key: KeySvcColEnded, ZH: "收款完成，终端恢复服务。", EN: "Collection complete; the kiosk is back in service."},
	{Key: KeySvcColAborted, ZH: "收款已取消。", EN: "Collection aborted."},
	{Key: KeySvcColDoStart, ZH: "开始收款", EN: "Start collection"},
	{Key: KeySvcColDoOut, ZH: "钱箱已取出", EN: "Cassette is out"},
	{Key: KeySvcColDoCount, ZH: "保存清点结果", EN: "Save the count"},
	{Key: KeySvcColDoFinish, ZH: "完成并打印收款单", EN: "Finish and print the slip"},
	{Key: KeySvcColDoIn, ZH: "钱箱已装回", EN: "Cassette is back in"},
	{Key: KeySvcColDoAbort, ZH: "取消收款", EN: "Abort collection"},
	{Key: KeySvcColID, ZH: "收款单号", EN: "Collection"},
	{Key: KeySvcColExpected, ZH: "应有金额", EN: "Expected"},
	{Key: KeySvcColCountedFig, ZH: "清点金额", EN: "Counted"},
	{Key: KeySvcColDifference, ZH: "差额", EN: "Difference"},
	{Key: KeySvcColShortage, ZH: "短款 {amount}", EN: "Shortage {amount}", Params: []string{PAmount}},
	{Key: KeySvcColSurplus, ZH: "长款 {amount}", EN: "Surplus {amount}", Params: []string{PAmount}},
	{Key: KeySvcColBalanced, ZH: "账实相符", EN: "Balanced"},
	{Key: KeySvcColUncertain, ZH: "待核查纸币", EN: "Notes under review"},
	{Key: KeySvcColSlipPrinted, ZH: "收款单已打印", EN: "Slip printed"},
	{Key: KeySvcColSlipFailed, ZH: "收款单未打印：{reason}", EN: "Slip not printed: {reason}", Params: []string{PReason}},
	{Key: KeySvcColSlipWaiting, ZH: "正在打印收款单…", EN: "Printing the slip…"},
	{Key: KeySvcColNoteCount, ZH: "清点张数", EN: "Counted notes"},
	{Key: KeySvcColExpNotes, ZH: "应有张数", EN: "Expected notes"},
	{Key: KeySvcColSlip, ZH: "收款单", EN: "Slip"},
	{Key: KeySvcColMore, ZH: "加一张", EN: "One more"},
	{Key: KeySvcColLess, ZH: "减一张", EN: "One less"},
}
