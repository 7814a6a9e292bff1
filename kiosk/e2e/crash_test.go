package e2e

import (
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/kiosk/journal/journaltest"
	"github.com/kioskd/kioskd/kiosk/session"
	"github.com/kioskd/kioskd/sync/ledger"
)

// The crash campaign (make crash): kioskd as a real process against the emulators and the
// reference ledger, with a scripted stream of customers and notes, killed with SIGKILL at
// every step of the journal protocol and at random moments, restarted, again and again. A
// share of the crashes are power cuts: the journal also loses its last committed transaction
// (journaltest.DropLastCommit, what an SD card that lied about fsync leaves) and the acceptor is
// power-cycled with whatever note it held. At the end the emulator's own log of stacked notes,
// the ledger's store and the printer's output are checked against each other.
var (
	crashN        = flag.Int("crash.n", 0, "crashes per acceptor protocol (0 skips the campaign; make crash sets it)")
	crashProtos   = flag.String("crash.protocols", "id003,ccnet,ssp", "acceptor protocols to run the campaign for (not pulse: its kioskd runs in the test process)")
	crashSeed     = flag.Uint64("crash.seed", 0, "random seed (0: from the clock; printed for reruns)")
	crashPowerCut = flag.Float64("crash.powercut", 0.25, "share of crashes that are power cuts losing the last commit")
)

// crashPoints are the daemon's hook points: every step of the journal protocol (the engine),
// session close, printing, publishing and applying an ack (the uplink).
var crashPoints = []string{
	"before-stack-intent", "after-stack-intent", "credit-before-commit", "credit-after-commit",
	"before-close", "after-close", "before-print", "after-print",
	"before-publish", "after-publish", "before-apply-ack", "after-apply-ack",
}

type ledgerAccount = ledger.AccountInfo

type campaign struct {
	t            *testing.T
	armed        string
	randomKillAt time.Time
	// killedBy is how the harness killed kioskd: "" (it killed itself at its crash point,
	// between two commits), "kill" (SIGKILL at any instant, maybe mid-commit) or "freeze"
	// (SIGUSR2: kioskd lets the commit in flight finish and kills itself).
	killedBy string
	// stalled counts crashes since the last new customer (a crash loop detector).
	stalled, lastCustomers int
	e                      *env
	rng                    *rand.Rand
	proto                  string
	crashes                int
	powerCuts              int
	notes                  int
	// receipts counts top-ups with exactly one original receipt; receiptAnomalies those
	// without (allowed only after power cuts that lose a commit, and each logged).
	receipts, receiptAnomalies int
	customers                  int
	accounts                   map[string]bool
	byPoint                    map[string]int
}

func TestCrashCampaign(t *testing.T) {
	if *crashN == 0 {
		t.Skip("crash campaign: run with -crash.n=N (make crash)")
	}
	seed := *crashSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("crash campaign seed %d (rerun with -crash.seed=%d)", seed, seed)
	var crashes, notes, violations, receipts, anomalies int
	for _, proto := range strings.Split(*crashProtos, ",") {
		t.Run(proto, func(t *testing.T) {
			c := runCampaign(t, proto, *crashN, seed)
			v := c.check()
			crashes += c.crashes
			notes += c.notes
			violations += v
			receipts += c.receipts
			anomalies += c.receiptAnomalies
			t.Logf("%s: crashes=%d (power cuts %d) customers=%d notes=%d violations=%d by point %v",
				proto, c.crashes, c.powerCuts, c.customers, c.notes, v, c.byPoint)
		})
	}
	verdict := strconv.Itoa(violations)
	if violations == 0 && t.Failed() {
		// A campaign that stopped early checked nothing after that point: no "0".
		verdict = "unknown (a campaign failed, see above)"
	}
	line := fmt.Sprintf("receipts=%d receipt_anomalies=%d seed=%d\ncrashes=%d notes=%d violations=%s",
		receipts, anomalies, seed, crashes, notes, verdict)
	if f := os.Getenv("KIOSKD_CRASH_SUMMARY"); f != "" {
		os.WriteFile(f, []byte(line+"\n"), 0o644)
	}
	fmt.Println(line)
	if violations > 0 {
		t.Fatalf("%d invariant violations", violations)
	}
}

func runCampaign(t *testing.T, proto string, n int, seed uint64) *campaign {
	e := newEnv(t, options{protocol: proto, sessionMax: 1_000_000, ackWait: 200 * time.Millisecond, resultDisplay: 300 * time.Millisecond,
		deadline: time.Duration(n)*6*time.Second + 3*time.Minute})
	if e.inProc {
		// Killing it would be killing this test, and a "crash" the campaign cannot tell from
		// a dead process would drop the last commit of a journal the live daemon still has
		// open (bbolt then finds its freelist corrupt).
		t.Fatalf("crash campaign: %s units run kioskd inside the test process (their simulated pins cannot cross a process boundary), so it cannot be killed here; make sim crashes them (SIM_FLAGS=-sim.protocols=%s)", proto, proto)
	}
	c := &campaign{t: t, e: e, proto: proto, rng: rand.New(rand.NewPCG(seed, uint64(len(proto)))), accounts: map[string]bool{}, byPoint: map[string]int{}}
	c.start()
	deadline := time.Now().Add(time.Duration(n) * 6 * time.Second)
	for c.crashes < n {
		if time.Now().After(deadline) {
			t.Fatalf("campaign too slow: %d of %d crashes", c.crashes, n)
		}
		c.customer()
	}
	// A clean run at the end lets recovery finish, receipts print and the outbox drain.
	c.e.stopKiosk()
	c.e.startKiosk("")
	c.e.waitFor("outbox drained", func() bool { return diagInt(c.e, "journal", "outbox_depth") == c.conflicts() })
	c.e.stopKiosk()
	return c
}

// start runs kioskd with the next crash armed: a hook point and which of its occurrences,
// or none (the harness then kills it at a random moment).
func (c *campaign) start() {
	point := ""
	if c.rng.IntN(5) > 0 {
		p := crashPoints[c.rng.IntN(len(crashPoints))]
		point = fmt.Sprintf("%s:%d", p, 1+c.rng.IntN(3))
	}
	c.armed = point
	arm := point
	if arm == "" {
		// "none" arms no hook point but installs kioskd's SIGUSR2 handler, which the
		// random power cut below needs.
		arm = "none"
	}
	if !c.e.startKioskMayCrash(arm) {
		// It reached its crash point while starting (recovery publishes, prints, applies
		// acks): a crash like any other.
		<-c.e.exited
		c.e.kiosk = nil
		c.crashed()
		return
	}
	c.randomKillAt = time.Time{}
	if point == "" {
		c.randomKillAt = time.Now().Add(time.Duration(200+c.rng.IntN(4000)) * time.Millisecond)
	}
}

// crashed handles a kioskd that died: maybe a power cut, then a restart with a new crash armed.
func (c *campaign) crashed() {
	c.crashes++
	if c.customers == c.lastCustomers {
		c.stalled++
	} else {
		c.lastCustomers, c.stalled = c.customers, 0
	}
	if c.stalled > 40 {
		c.t.Fatalf("%s: crash loop: %d crashes without a new customer (armed %q)\nemulator:\n%s\nkioskd:\n%s",
			c.proto, c.stalled, c.armed, tail(c.e.simLog.String(), 20), tail(c.e.kioskOut.String(), 80))
	}
	name := c.armed
	if name == "" {
		name = "random"
	}
	if testing.Verbose() {
		c.t.Logf("%s crash %d at %s (customer %d, notes %d)", time.Now().Format("15:04:05.000"), c.crashes, name, c.customers, c.notes)
	}
	c.byPoint[strings.Split(name, ":")[0]]++
	killedBy := c.killedBy
	c.killedBy = ""
	switch {
	case killedBy == "kill":
		// SIGKILL at any instant, perhaps in the middle of a commit: a power cut then is one
		// on honest storage (the commit in flight is lost, which bbolt's two fsyncs already
		// model), so only the unit may lose power too. Dropping the last commit now would
		// be a state no storage can produce: the interrupted commit may have overwritten
		// pages that the commit before the last still uses.
		if c.rng.Float64() < *crashPowerCut {
			c.e.rig.Acc.PowerCycle("auto")
		}
	case killedBy == "freeze" || c.rng.Float64() < *crashPowerCut:
		// The power went between two commits: the journal may lose its last commit (storage
		// that lied about fsync), and the unit restarts with whatever note it held.
		if err := journaltest.DropLastCommit(c.e.cfg.Journal.Path); err == nil {
			c.powerCuts++
		}
		c.e.rig.Acc.PowerCycle("auto")
	}
	c.start()
}

// alive reports whether kioskd still runs; it performs a pending random kill.
func (c *campaign) alive() bool {
	if !c.randomKillAt.IsZero() && time.Now().After(c.randomKillAt) && c.e.kiosk != nil {
		if c.rng.Float64() < *crashPowerCut {
			c.killedBy = "freeze"
			c.e.kiosk.Process.Signal(syscall.SIGUSR2)
		} else {
			c.killedBy = "kill"
			c.e.kiosk.Process.Signal(syscall.SIGKILL)
		}
		c.randomKillAt = time.Time{}
	}
	if c.e.kiosk == nil {
		return false
	}
	select {
	case <-c.e.exited:
		c.e.kiosk = nil
		return false
	default:
		return true
	}
}

// until waits for cond; false when kioskd died meanwhile (and was restarted).
func (c *campaign) until(what string, cond func(v session.View) bool) bool {
	c.t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for {
		if !c.alive() {
			c.crashed()
			return false
		}
		if v, ok := c.e.viewOK(); ok && cond(v) {
			return true
		}
		if time.Now().After(deadline) {
			// Ask kioskd for a goroutine dump (SIGQUIT) before failing: a stuck daemon is a bug.
			v := c.e.view()
			if c.e.kiosk != nil {
				c.e.kiosk.Process.Signal(syscall.SIGQUIT)
				select {
				case <-c.e.exited:
				case <-time.After(5 * time.Second):
				}
				c.e.kiosk = nil
			}
			dump := c.e.kioskOut.String()
			if i := strings.LastIndex(dump, "SIGQUIT"); i >= 0 {
				dump = tail(dump[:i], 60) + "\n" + dump[i:]
			} else {
				dump = tail(dump, 60)
			}
			c.t.Fatalf("%s: stuck waiting for %s; view %+v; acceptor %+v; armed %q\nemulator:\n%s\nkioskd:\n%s", c.proto, what, v, c.e.rig.Acc.State(), c.armed, tail(c.e.simLog.String(), 40), dump)
		}
		time.Sleep(15 * time.Millisecond) // polling a separate process; bounded by the deadline
	}
}

// customer plays one customer: scan, one to three notes, Finish, result.
func (c *campaign) customer() {
	if !c.until("ready", func(v session.View) bool {
		if v.State == "accepting" {
			// A session nobody is serving: a scan left in the scanner line across a crash was
			// read by the restarted kioskd. Finish it like a customer walking away would time
			// out.
			_, _ = screenPost(c.e.kioskURL, "/api/finish") // a crash in between is the next wait's business
		}
		return v.State == "idle" || v.State == "done"
	}) {
		return
	}
	c.customers++
	acct := fmt.Sprintf("cust_%s_%d", c.proto, c.customers)
	c.accounts[acct] = true
	if _, err := c.e.rig.ScanWallet(acct); err != nil {
		c.t.Fatal(err)
	}
	if !c.until("accepting", func(v session.View) bool { return v.State == "accepting" }) {
		return
	}
	values := []int64{100, 500, 1000, 2000, 5000, 10000}
	for range 1 + c.rng.IntN(3) {
		v := values[c.rng.IntN(len(values))]
		var before int64
		if !c.until("current total", func(vw session.View) bool { before = vw.TotalMinor; return vw.Seq > 0 }) {
			return
		}
		code, _ := c.e.rig.Acc.CodeFor(v)
		inserted := false
		if !c.until("note taken", func(vw session.View) bool {
			if vw.State != "accepting" {
				return true // the session ended (timeout, fault): go on with the next customer
			}
			inserted = c.e.rig.Acc.Insert(code) == nil
			return inserted
		}) || !inserted {
			return
		}
		c.notes++
		if !c.until("note credited", func(vw session.View) bool { return vw.TotalMinor == before+v || vw.State != "accepting" }) {
			return
		}
	}
	if _, err := screenPost(c.e.kioskURL, "/api/finish"); err != nil {
		return // crashed; the next customer's wait restarts it
	}
	c.until("result", func(v session.View) bool { return v.State == "done" || v.State == "idle" })
}

func (c *campaign) conflicts() int64 {
	var n int64
	for _, k := range c.accountInfos() {
		for _, tp := range k.Topups {
			if tp.Conflicts > 0 {
				n++
			}
		}
	}
	return n
}

func (c *campaign) accountInfos() []ledgerAccount {
	var out []ledgerAccount
	for a := range c.accounts {
		out = append(out, c.e.account(a))
	}
	return out
}

// check compares the three independent records of money. It returns the number of
// violations, each logged.
func (c *campaign) check() int {
	t := c.t
	violations := 0
	bad := func(format string, a ...any) {
		violations++
		t.Errorf("VIOLATION (%s): "+format, append([]any{c.proto}, a...)...)
	}
	// The emulator's own log: what physically went into the cassette.
	var stacked, maxNote int64
	stackedN := 0
	for _, s := range c.e.rig.Acc.Stacked() {
		stacked += s.ValueMinor
		stackedN++
		maxNote = max(maxNote, s.ValueMinor)
	}
	// The ledger: what customers were credited.
	var credited int64
	var creditedN int64
	ledgerTopups := map[string]int64{}
	for _, a := range c.accountInfos() {
		credited += a.Balances["CNY"]
		for _, tp := range a.Topups {
			ledgerTopups[tp.TopupID] = tp.AmountMinor
			for _, n := range tp.Topup.Notes {
				creditedN += n.Count
			}
		}
	}
	// The journal, opened read-only now that kioskd is stopped.
	j, err := journal.Open(c.e.cfg.Journal.Path, journal.Options{ReadOnly: true, SkipVerify: true})
	if err != nil {
		t.Fatalf("open journal: %v", err)
	}
	defer j.Close()
	if _, err := j.Verify(); err != nil {
		bad("journal does not verify: %v", err)
	}
	unc, _ := j.UncertainItems()
	var uncertain int64
	unknown := 0 // uncertain items whose value the unit did not say (ID-003 0x42 names no note)
	for _, u := range unc {
		uncertain += u.ValueMinor
		if u.ValueMinor == 0 {
			unknown++
		}
	}
	if credited > stacked {
		bad("ledger credited %d but only %d went into the cassette", credited, stacked)
	}
	// Every note in the cassette is credited or is an uncertain item (whose value may be
	// unknown: it is settled by counting the cassette).
	if int64(stackedN) > creditedN+int64(len(unc)) {
		bad("%d notes went into the cassette, %d credited, %d uncertain: %d unaccounted", stackedN, creditedN, len(unc), int64(stackedN)-creditedN-int64(len(unc)))
	}
	if deficit := stacked - credited - uncertain; deficit > int64(unknown)*maxNote {
		bad("%d went into the cassette, %d credited, %d uncertain (+%d of unknown value): %d unaccounted", stacked, credited, uncertain, unknown, deficit)
	}
	if violationsBefore := violations; violationsBefore > 0 || testing.Verbose() {
		// Evidence for the post-mortem: the journal, the emulator's cassette log, kioskd's log.
		dir := os.Getenv("KIOSKD_CRASH_EVIDENCE")
		if dir == "" {
			dir = os.TempDir()
		}
		base := filepath.Join(dir, "kioskd-crash-"+c.proto)
		if f, err := os.Create(base + "-journal.jsonl"); err == nil {
			j.ExportJSONL(f)
			f.Close()
		}
		if b, err := json.MarshalIndent(c.e.rig.Acc.Stacked(), "", " "); err == nil {
			os.WriteFile(base+"-cassette.json", b, 0o644)
		}
		os.WriteFile(base+"-kioskd.log", []byte(c.e.kioskOut.String()), 0o644)
		t.Logf("evidence in %s-*", base)
	}
	// Every journal top-up is at the ledger, once, with its amount (or, after a lost commit, as
	// a conflict the kiosk stopped retrying); every top-up has one original receipt.
	receiptAnomalies := 0
	n := 0
	err = j.Topups(func(tp journal.Topup) bool {
		n++
		amt, ok := ledgerTopups[tp.TopupID]
		switch {
		case !ok && tp.State != journal.TopupConflict:
			bad("top-up %s (%d) never reached the ledger", tp.TopupID, tp.AmountMinor)
		case ok && amt != tp.AmountMinor && tp.State != journal.TopupConflict:
			bad("top-up %s: ledger %d, journal %d", tp.TopupID, amt, tp.AmountMinor)
		case tp.State != journal.TopupCredited && tp.State != journal.TopupConflict:
			bad("top-up %s left %s", tp.TopupID, tp.State)
		}
		orig, copies := c.e.originals(tp.TopupID)
		if orig == 1 {
			c.receipts++
		}
		if orig != 1 || orig+copies == 0 {
			if c.powerCuts > 0 {
				// A lost commit can take a print record with it; counted, not a money fault.
				receiptAnomalies++
				t.Logf("receipt anomaly after power cuts: %s has %d originals, %d copies", tp.TopupID, orig, copies)
			} else {
				bad("top-up %s has %d original receipts and %d copies", tp.TopupID, orig, copies)
			}
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < len(ledgerTopups) {
		bad("ledger holds %d top-ups of this kiosk, journal only %d", len(ledgerTopups), n)
	}
	c.receiptAnomalies = receiptAnomalies
	t.Logf("%s: cassette %d (%d notes), credited %d (%d notes), uncertain %d (%d items, %d of unknown value), top-ups %d, receipt anomalies %d",
		c.proto, stacked, stackedN, credited, creditedN, uncertain, len(unc), unknown, n, receiptAnomalies)
	return violations
}
