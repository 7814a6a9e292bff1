package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kioskd/kioskd/kiosk/session"
	"github.com/kioskd/kioskd/kiosk/ui"
	"github.com/kioskd/kioskd/kiosk/ui/uitest"
)

// payload reads what the customer page is given: the view and its words (ui.Payload).
func (e *env) payload() (ui.Payload, bool) {
	res, err := http.Get(e.kioskURL + "/api/state")
	if err != nil {
		return ui.Payload{}, false
	}
	defer res.Body.Close()
	var p ui.Payload
	if err := json.NewDecoder(res.Body).Decode(&p); err != nil || p.Seq == 0 {
		return ui.Payload{}, false
	}
	return p, true
}

func (e *env) waitPayload(what string, cond func(ui.Payload) bool) ui.Payload {
	e.t.Helper()
	var p ui.Payload
	e.waitFor(what, func() bool {
		var ok bool
		p, ok = e.payload()
		return ok && cond(p)
	})
	return p
}

// unitSnapshot is what every serial acceptor emulator's State says about the note path.
type unitSnapshot struct {
	Status        string `json:"status"`
	NoteInStacker bool   `json:"note_in_stacker"`
}

func (e *env) unit() unitSnapshot {
	b, _ := json.Marshal(e.rig.Acc.State())
	var s unitSnapshot
	json.Unmarshal(b, &s)
	return s
}

// printedReceipt is a receipt as the printer printed it, read back from its text.
type printedReceipt struct {
	text        string
	total       string   // the TOTAL line's amount digits
	status      string   // CREDITED, PENDING or UNDER REVIEW
	interrupted bool     // SESSION INTERRUPTED
	underReview []string // the amount digits of each note under review
	reference   string
	receiptNo   string
}

var amountRe = regexp.MustCompile(`\d[\d,]*\.\d\d`)

func parseReceipt(text string) printedReceipt {
	r := printedReceipt{text: text}
	lines := strings.Split(text, "\n")
	inReview := false
	for i, l := range lines {
		f := strings.Fields(l)
		switch {
		case len(f) == 0:
			inReview = false
		case f[0] == "TOTAL":
			r.total = amountRe.FindString(l)
		case f[0] == "Status":
			r.status = strings.Join(f[1:], " ")
		case l == "SESSION INTERRUPTED":
			r.interrupted = true
		case strings.HasPrefix(l, "Under review (not in total):"):
			inReview = true
		case inReview && strings.HasPrefix(l, "--"):
			inReview = false
		case inReview && strings.HasPrefix(l, "  ") && !strings.HasPrefix(l, "    "):
			r.underReview = append(r.underReview, amountRe.FindString(l))
		case l == "Reference" && i+1 < len(lines):
			r.reference = strings.TrimSpace(lines[i+1])
		case f[0] == "Receipt" && len(f) == 3 && f[1] == "No.":
			r.receiptNo = f[2]
		}
	}
	return r
}

// statusOnScreen is the screen's word for the counted amount's status on a receipt.
var statusOnScreen = map[string]string{"CREDITED": "credited", "PENDING": "pending", "UNDER REVIEW": "under_review"}

// TestScreenMatchesReceiptWhenANoteIsLost: a note is being stacked when the cassette is
// pulled or the stacker jams, so its fate is unknown. The customer's final screen and the
// printed receipt then say the same thing: the counted amount and its status, the note under
// review with its value, the receipt number and the reference; the ledger credits the counted
// amount once and nothing for the note under review.
func TestScreenMatchesReceiptWhenANoteIsLost(t *testing.T) {
	for _, proto := range []string{"id003", "ccnet"} {
		for _, fault := range []string{"cassette_pulled", "stacker_jam"} {
			t.Run(proto+"/"+fault, func(t *testing.T) { screenMatchesReceipt(t, proto, fault) })
		}
	}
}

func screenMatchesReceipt(t *testing.T, proto, fault string) {
	// A slow poll keeps the unit in "stacking" (after the stack command, before the status
	// request that moves it on) long enough for the test to strike.
	e := newEnv(t, options{protocol: proto, pollInterval: 300 * time.Millisecond})
	e.startKiosk("")
	e.waitOnline()
	e.waitView("idle", func(v session.View) bool { return v.State == "idle" })
	e.scan("hana")
	e.waitView("accepting", func(v session.View) bool { return v.State == "accepting" })
	e.insert(10000)
	e.waitView("first note counted", func(v session.View) bool { return v.TotalMinor == 10000 })
	e.insert(5000)
	e.waitFor("the 50.00 note being stacked", func() bool { u := e.unit(); return u.Status == "stacking" && u.NoteInStacker })
	switch fault {
	case "cassette_pulled":
		if err := e.rig.Acc.PullCassette(); err != nil {
			t.Fatalf("pull the cassette mid-stack: %v", err)
		}
	case "stacker_jam":
		e.rig.Acc.Jam(true)
	}

	p := e.waitPayload("the session's result with its top-up, printed", func(p ui.Payload) bool {
		return p.Result != nil && p.Result.TopupID != "" && p.Result.Printed
	})
	id := p.Result.TopupID
	// The ledger's ack may come after the print: wait for the counted amount to be credited,
	// so the screen shows its final word.
	e.waitFor("the ledger's credit", func() bool { return e.account("hana").Balances["CNY"] == 10000 })
	p = e.waitPayload("the result credited", func(p ui.Payload) bool {
		return p.Result != nil && p.Result.TopupID == id && p.Result.Status == "credited"
	})
	if p.State != "done" {
		t.Errorf("the customer sees state %q, want the result screen (done)", p.State)
	}
	sc := p.Screen.Result
	if sc == nil {
		t.Fatalf("no result in the screen's words: %+v", p.Screen)
	}

	var recs []printedReceipt
	for _, d := range e.receipts() {
		if slices.Contains(d.QR, id) {
			recs = append(recs, parseReceipt(d.Text))
		}
	}
	if len(recs) != 1 {
		t.Fatalf("%d receipts for %s, want one original", len(recs), id)
	}
	rec := recs[0]
	t.Logf("screen: %s | %s | %s | %v | ref %s\nreceipt:\n%s", sc.Title, sc.Amount, sc.Sentence, sc.UnderReview, sc.Reference, rec.text)

	// The money: 100.00 counted, the 50.00 note under review, nowhere else.
	if got := amountRe.FindString(sc.Amount); got != "100.00" || rec.total != "100.00" {
		t.Errorf("counted amount: screen %q, receipt %q, want 100.00 on both", sc.Amount, rec.total)
	}
	var screenReview []string
	for _, s := range sc.UnderReview {
		screenReview = append(screenReview, amountRe.FindString(s))
	}
	if !slices.Equal(screenReview, []string{"50.00"}) || !slices.Equal(rec.underReview, []string{"50.00"}) {
		t.Errorf("notes under review: screen %q, receipt %q, want [50.00] on both", screenReview, rec.underReview)
	}
	if sc.Status != "under_review" || p.Result.Uncertain != 1 {
		t.Errorf("screen status %q with %d uncertain, want under_review with 1", sc.Status, p.Result.Uncertain)
	}
	// The counted amount's status: the same word, except that a receipt printed before the
	// ledger's ack says PENDING ("will be credited"), which the screen's credited confirms.
	want, ok := statusOnScreen[rec.status]
	if !ok {
		t.Fatalf("receipt status %q", rec.status)
	}
	if sc.Counted != want && !(rec.status == "PENDING" && sc.Counted == "credited") {
		t.Errorf("counted status: screen %q, receipt %q", sc.Counted, rec.status)
	}
	if sc.Counted != "credited" || !strings.Contains(sc.Sentence, "has been credited") {
		t.Errorf("screen after the ledger's credit: %q / %q", sc.Counted, sc.Sentence)
	}
	if !rec.interrupted || p.Result.Outcome != "interrupted" {
		t.Errorf("interrupted: receipt %v, result outcome %q", rec.interrupted, p.Result.Outcome)
	}
	if sc.Reference != id || rec.reference != id || !strings.Contains(sc.UnderReview[0], id) {
		t.Errorf("reference: screen %q (note line %q), receipt %q, want %s", sc.Reference, sc.UnderReview, rec.reference, id)
	}
	if sc.ReceiptNo == "" || sc.ReceiptNo != rec.receiptNo {
		t.Errorf("receipt number: screen %q, receipt %q", sc.ReceiptNo, rec.receiptNo)
	}

	// Ground truth: the emulator's cassette and the ledger.
	if a := e.account("hana"); a.Balances["CNY"] != 10000 || a.TopupCount != 1 {
		t.Errorf("ledger account %+v, want 100.00 in one top-up", a)
	}
	var pulled bool
	for _, s := range e.rig.Acc.Stacked() {
		pulled = pulled || (s.Via == "cassette_pulled" && s.ValueMinor == 5000)
	}
	if fault == "cassette_pulled" && !pulled {
		t.Errorf("the 50.00 note did not leave in the pulled cassette: %+v", e.rig.Acc.Stacked())
	}

	// The page itself, where a browser is installed.
	t.Run("page", func(t *testing.T) {
		br := uitest.Start(t)
		br.Call("Page.navigate", map[string]any{"url": e.kioskURL + "/"})
		br.WaitEval("result screen", `document.getElementById("app").dataset.state`, func(s string) bool { return s == "done" })
		page := br.Eval(`document.getElementById("screen-done").innerText`)
		if dir := os.Getenv("KIOSKD_SCREENSHOTS"); dir != "" {
			br.Screenshot(dir, "customer-"+proto+"-"+fault)
		}
		for _, s := range []string{sc.Amount, sc.Sentence, sc.UnderReview[0], id, rec.receiptNo} {
			if !strings.Contains(page, s) {
				t.Errorf("the page does not show %q:\n%s", s, page)
			}
		}
	})
}
