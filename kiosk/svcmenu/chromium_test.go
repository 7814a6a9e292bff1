package svcmenu

import (
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kioskd/kioskd/kiosk/i18n"
	"github.com/kioskd/kioskd/kiosk/ui/uitest"
)

// TestServiceMenuInChromium: the menu on a real browser, as a technician uses it on the
// kiosk's touch screen: closed with the door shut, a wrong PIN refused and a right one
// accepted, each role's menu, a sign-off, the idle logout on the menu's clock, both
// languages, touch targets and (when axe-core can be had) accessibility; screenshots are
// kept where the customer screen's are.
func TestServiceMenuInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test")
	}
	b := uitest.Start(t)
	dir := t.ArtifactDir()
	if d := os.Getenv("KIOSKD_SCREENSHOTS"); d != "" {
		dir = d
	}
	t.Logf("screenshots in %s", dir)
	axe, why := uitest.AxeSource(t)
	if axe == "" {
		if uitest.RequireServices() {
			t.Fatalf("axe-core required: %s", why)
		}
		t.Logf("accessibility check skipped: %s", why)
	}
	m := newMenu(t)
	m.srv.Close()
	// The collection runs on a real engine; the rest of the kiosk is the fake's.
	k := newEngineKiosk(t)
	k.Fake = m.fake
	m.door.set(false)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h, err := Handler(Config{Backend: k, Credentials: m.creds, Audit: m.audit, Now: m.clk.now, Params: testParams,
		DoorOpen: m.door.get, Port: ln.Addr().(*net.TCPAddr).Port, Denominations: []int64{1000, 5000, 10000}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener = ln
	srv.Start()
	defer uitest.CloseServer(srv)

	check := func(name string, lang i18n.Lang) {
		t.Helper()
		if small := b.Eval(uitest.SmallTargets); small != "" {
			t.Errorf("%s: touch targets under 64 px: %s", name, small)
		}
		if lang == i18n.ZH {
			if txt := b.Eval(uitest.VisibleText); regexp.MustCompile(`[A-Za-z]{4,} [A-Za-z]{3,} [A-Za-z]{3,}`).MatchString(txt) {
				t.Errorf("%s (zh): English text on screen: %q", name, txt)
			}
		}
		if axe != "" {
			if b.Eval(`typeof axe`) != "object" {
				b.Eval(axe)
			}
			res := b.Eval(`axe.run(document, {resultTypes: ["violations"]}).then(r => "checked:" + r.violations
				.filter(v => v.impact === "serious" || v.impact === "critical")
				.map(v => v.id + " " + v.nodes.map(n => n.target.join(" ")).join("; ")).join(" | "))`)
			if res != "checked:" {
				t.Errorf("%s: accessibility: %q", name, res)
			}
		}
		b.Screenshot(dir, "service-"+name)
	}
	view := func(want string) {
		t.Helper()
		b.WaitEval("view "+want, `document.getElementById("app").dataset.view`, func(s string) bool { return s == want })
	}
	shows := func(what, want string) {
		t.Helper()
		b.WaitEval(what, uitest.VisibleText, func(s string) bool { return strings.Contains(s, want) })
	}
	typePIN := func(pin string) {
		t.Helper()
		b.Eval(fmt.Sprintf(`(() => { for (const d of %q) document.querySelector('.key[data-k="' + d + '"]').click();
			document.getElementById("k-ok").click(); })()`, pin))
	}
	login := func(role, pin string) {
		t.Helper()
		b.Eval(fmt.Sprintf(`document.querySelector('.role[data-role="%s"]').click()`, role))
		b.WaitEval("pin pad", `String(!document.getElementById("pad").hidden)`, func(s string) bool { return s == "true" })
		typePIN(pin)
	}
	actions := `[...document.querySelectorAll("#actions button")].map(b => b.id).join(",")`

	b.Call("Page.navigate", map[string]any{"url": srv.URL + "/"})
	b.WaitEval("page language", `document.documentElement.lang`, func(s string) bool { return s == "zh-CN" })
	// Door shut: the menu stays closed.
	view("entry")
	shows("entry (zh)", "请打开机柜门")
	check("zh-CN-closed", i18n.ZH)
	m.door.set(true)
	view("login")
	check("zh-CN-roles", i18n.ZH)

	// A wrong PIN is refused; the right one opens the technician's menu.
	login("technician", "9999")
	shows("wrong PIN (zh)", "PIN 码错误。")
	if d := b.Eval(`document.getElementById("pad-display").textContent`); d != "" {
		t.Errorf("pad not cleared after a wrong PIN: %q", d)
	}
	check("zh-CN-wrong-pin", i18n.ZH)
	typePIN(techPIN)
	view("menu")
	shows("logged in (zh)", "已登录：technician/1")
	b.WaitEval("technician's actions", actions, func(s string) bool { return strings.Count(s, ",") == 12 && !strings.Contains(s, "set_pin") })
	b.Eval(`document.getElementById("a-counters").click()`)
	shows("counters (zh)", "350.00 元")
	check("zh-CN-technician-counters", i18n.ZH)

	// Sign-off: pick the condition, then the reason.
	b.Eval(`document.getElementById("a-signoff").click()`)
	b.WaitEval("signoff choices", `String(!!document.getElementById("c-acceptor_fraud"))`, func(s string) bool { return s == "true" })
	check("zh-CN-signoff", i18n.ZH)
	b.Eval(`document.getElementById("c-acceptor_fraud").click()`)
	b.WaitEval("reasons", `String(!!document.getElementById("w-inspected"))`, func(s string) bool { return s == "true" })
	b.Eval(`document.getElementById("w-inspected").click()`)
	shows("signed off (zh)", "完成。")
	if len(m.fake.SignedOff) != 1 || !strings.Contains(m.fake.SignedOff[0], "technician/1|Inspected, no tampering found") {
		t.Fatalf("signed off %v", m.fake.SignedOff)
	}

	// Idle: three minutes on the menu's clock without a touch end the login.
	m.clk.add(IdleLogout)
	view("login")
	shows("idle logout (zh)", "已退出登录")
	check("zh-CN-idle-logout", i18n.ZH)

	// English on a tap; the collector sees the collector's menu only.
	b.Eval(`document.getElementById("lang").click()`)
	b.WaitEval("english", `document.documentElement.lang`, func(s string) bool { return s == "en" })
	check("en-roles", i18n.EN)
	login("collector", collectorPIN)
	view("menu")
	b.WaitEval("collector's actions", actions, func(s string) bool {
		return s == "a-status,a-conditions,a-counters,a-collection"
	})
	shows("logged in (en)", "Logged in: collector/1")
	b.Eval(`document.getElementById("a-status").click()`)
	shows("status (en)", "K-FAKE")
	check("en-collector-status", i18n.EN)

	// The collector runs a cash collection to its end: start, cassette out, the count on the
	// steppers, the shortage before finishing, the slip, the cassette back in.
	click := func(id string) {
		t.Helper()
		b.WaitEval("button "+id, fmt.Sprintf(`String(!!document.getElementById(%q))`, id), func(s string) bool { return s == "true" })
		b.Eval(fmt.Sprintf(`document.getElementById(%q).click()`, id))
	}
	toggle := func(want string) {
		t.Helper()
		b.Eval(`document.getElementById("lang").click()`)
		b.WaitEval("language "+want, `document.documentElement.lang`, func(s string) bool { return s == want })
	}
	click("a-collection")
	shows("no collection (en)", "No cash collection in progress.")
	click("col-start")
	shows("started (en)", "Step 1: take the cassette out.")
	shows("expected (en)", "¥350.00")
	check("en-collection-started", i18n.EN)
	toggle("zh-CN")
	shows("started (zh)", "第 1 步：请取出钱箱。")
	check("zh-CN-collection-started", i18n.ZH)
	click("col-cassette_out")
	shows("cassette out (zh)", "第 2 步")
	for _, id := range []string{"more-10000", "more-10000", "more-10000", "less-10000", "more-5000"} {
		click(id)
	}
	b.WaitEval("counts on the steppers", `["n-1000","n-5000","n-10000"].map(i => document.getElementById(i).textContent).join(",")`,
		func(s string) bool { return s == "0,1,2" })
	check("zh-CN-collection-count", i18n.ZH)
	click("col-count")
	shows("shortage (zh)", "短款 100.00 元")
	check("zh-CN-collection-shortage", i18n.ZH)
	toggle("en")
	shows("shortage (en)", "Shortage ¥100.00")
	check("en-collection-counted", i18n.EN)
	click("col-finish")
	shows("slip (en)", "Slip printed")
	check("en-collection-slip", i18n.EN)
	if s := k.slips.get(); len(s) != 1 || s[0].Record.DifferenceMinor != -10000 || s[0].Record.Operator != "collector/1" {
		t.Fatalf("slips %+v", s)
	}
	click("col-cassette_in")
	shows("ended (en)", "Collection complete; the kiosk is back in service.")
	check("en-collection-ended", i18n.EN)
	b.Eval(`document.getElementById("logout").click()`)
	view("login")

	// The admin's menu has the PIN setting; a new technician PIN works at once.
	login("admin", adminPIN)
	view("menu")
	b.Eval(`document.getElementById("a-set_pin").click()`)
	b.WaitEval("roles to set", `String(!!document.getElementById("r-technician"))`, func(s string) bool { return s == "true" })
	b.Eval(`document.getElementById("r-technician").click()`)
	b.WaitEval("slots", `String(!!document.getElementById("s-3"))`, func(s string) bool { return s == "true" })
	b.Eval(`document.getElementById("s-3").click()`)
	b.WaitEval("new PIN pad", `String(!document.getElementById("pad").hidden)`, func(s string) bool { return s == "true" })
	typePIN("5678")
	shows("PIN set (en)", "The PIN of technician/3 is set.")
	check("en-admin-set-pin", i18n.EN)
	b.Eval(`document.getElementById("logout").click()`)
	view("login")
	login("technician", "5678")
	view("menu")
	shows("new technician (en)", "Logged in: technician/3")
	check("en-technician-menu", i18n.EN)

	audit := strings.Join(m.audit.lines(), "\n")
	for _, want := range []string{"technician/1 login ok", "technician/1 counters ok", "technician/1 signoff ok", "technician/1 logout ok",
		"collector/1 status ok", "collector/1 collection ok", "admin/1 set_pin ok", "technician/3 login ok"} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit lacks %q:\n%s", want, audit)
		}
	}
	_ = time.Second
}
