package fleet

import (
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/kioskd/kioskd/sync/wire"
)

const rulesDir = "../../deploy/prometheus/"

// RuleMetricNames returns the metric names with the given prefix that the alerting rules use.
func ruleMetricNames(t *testing.T, prefix string) []string {
	t.Helper()
	raw, err := os.ReadFile(rulesDir + "kioskd.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range regexp.MustCompile(`\b`+prefix+`[a-z_]+`).FindAllString(string(raw), -1) {
		if !slices.Contains(names, m) {
			names = append(names, m)
		}
	}
	return names
}

// TestAlertRulesUseExportedMetrics: every fleetd metric the alerting rules name is one fleetd
// exports, so a renamed metric cannot silently disarm an alert.
func TestAlertRulesUseExportedMetrics(t *testing.T) {
	r := newRig(t)
	now := r.clk.Now()
	r.send("K1", wire.UpStatus, wire.Status{V: 1, State: wire.StateOnline, At: now,
		Conditions: []wire.Condition{{Kind: "jam", Severity: wire.SeverityCritical, Actor: wire.ActorEngineer}}})
	r.send("K1", wire.UpHeartbeat, wire.Heartbeat{V: 1, SessionState: "accepting", Clock: now.Add(-90e9), UncertainCount: 1,
		Cassette: &wire.Cassette{Notes: 1, Capacity: 10, FillRatio: 0.1}})
	mfs, err := r.f.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var exported []string
	for _, mf := range mfs {
		exported = append(exported, mf.GetName())
	}
	names := ruleMetricNames(t, "fleetd_")
	if len(names) < 7 {
		t.Fatalf("the rules name only %v", names)
	}
	for _, n := range names {
		if !slices.Contains(exported, n) {
			t.Errorf("the alerting rules use %s, which fleetd does not export (it exports %v)", n, exported)
		}
	}
	raw, _ := os.ReadFile(rulesDir + "kioskd.rules.yml")
	alerts := strings.Count(string(raw), "- alert:")
	if got := strings.Count(string(raw), "severity:"); got != alerts {
		t.Errorf("%d alerts but %d severity labels: every alert says how bad it is", alerts, got)
	}
}

// TestAlertRulesPromtool checks the rules with promtool and runs their unit tests.
func TestAlertRulesPromtool(t *testing.T) {
	bin, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("KIOSKD_REQUIRE_SERVICES") != "" {
			t.Fatal("promtool is required (KIOSKD_REQUIRE_SERVICES is set) but not installed")
		}
		t.Skip("promtool not installed (apt-get install prometheus; .ci/run does)")
	}
	for _, args := range [][]string{{"check", "rules", "kioskd.rules.yml"}, {"test", "rules", "kioskd.rules.test.yml"}, {"check", "config", "prometheus.yml"}} {
		cmd := exec.Command(bin, args...)
		cmd.Dir = rulesDir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
