package e2e

import (
	"os"
	"strings"
	"testing"

	"github.com/kioskd/kioskd/kiosk/ui/uitest"
)

// TestCustomerPageInChromium follows a whole top-up on the customer page in a real browser:
// the page follows the live view stream, and its Finish button ends the session.
func TestCustomerPageInChromium(t *testing.T) {
	e := newEnv(t, options{sessionMax: 15000})
	br := uitest.Start(t)
	e.startKiosk("")
	e.waitOnline()
	br.Call("Page.navigate", map[string]any{"url": e.kioskURL + "/"})
	state := `document.getElementById("app").dataset.state`
	br.WaitEval("idle screen", state, func(s string) bool { return s == "idle" })
	if txt := br.Eval(`document.querySelector("#screen-idle").innerText`); !strings.Contains(txt, "payment QR code") {
		t.Fatalf("idle screen text %q", txt)
	}
	e.scan("gina")
	br.WaitEval("accepting screen", state, func(s string) bool { return s == "accepting" })
	e.insert(10000)
	br.WaitEval("running total", `document.getElementById("total").textContent`, func(s string) bool { return s == "¥100.00" })
	if rem := br.Eval(`document.getElementById("remaining").textContent`); rem != "¥50.00" {
		t.Fatalf("remaining shows %q", rem)
	}
	// Over the limit: the page shows the reason.
	e.insert(10000)
	br.WaitEval("over-limit reason", `document.getElementById("message").textContent`, func(s string) bool { return strings.Contains(s, "over your limit") })
	// KIOSKD_SCREENSHOTS=dir keeps screenshots for a human look.
	shots := os.Getenv("KIOSKD_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	br.Screenshot(shots, "customer-accepting")
	// The customer presses Finish in the browser.
	br.Eval(`document.getElementById("finish").click()`)
	br.WaitEval("credited screen", `document.getElementById("result-title").textContent`, func(s string) bool { return s == "Credited to your wallet" })
	if n := br.Eval(`document.getElementById("result-receipt").textContent`); n != "00000001" {
		t.Fatalf("receipt number on the page %q", n)
	}
	if amt := br.Eval(`document.getElementById("result-amount").textContent`); amt != "¥100.00" {
		t.Fatalf("amount on the page %q", amt)
	}
	v := e.view()
	if ref := br.Eval(`document.getElementById("result-ref").textContent`); v.Result == nil || ref != v.Result.TopupID {
		t.Fatalf("reference on the page %q, API %+v", ref, v.Result)
	}
	br.Screenshot(shots, "customer-credited")
	if a := e.account("gina"); a.Balances["CNY"] != 10000 {
		t.Fatalf("ledger %+v", a)
	}
}
