package ledger

import (
	"io"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/kioskd/kioskd/sync/wire"
)

// TestMetricsScrape: /metrics on the ledger's HTTP handler shows the same counters as Stats,
// under conventional names, with no top-up or account id anywhere.
func TestMetricsScrape(t *testing.T) {
	b := startBroker(t)
	store := openStore(t, "", nil)
	l, _ := runLedger(t, b, store, "ledger-1", nil)
	k := newKiosk(t, b, "K1")
	tp := topup("K1", 0xabc, 1, "alice_01", 15000)
	k.topup(tp, wire.AckCredited)
	k.topup(tp, wire.AckDuplicate)
	k.publishRaw(wire.Topic("K1", wire.UpTopup), []byte(`{not json`))
	waitFor(t, "the bad payload counted", func() bool { return l.Stats().Rejected == 1 })

	srv := httptest.NewServer(l.Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(body)
	for _, want := range []string{
		`ledgerd_topups_total{status="credited"} 1`,
		`ledgerd_topups_total{status="duplicate"} 1`,
		`ledgerd_payloads_refused_total{reason="invalid"} 1`,
		`ledgerd_mqtt_connected 1`,
		`# TYPE ledgerd_topups_total counter`,
		`ledgerd_build_info{`,
		`go_goroutines`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	for _, secret := range []string{tp.TopupID, "alice_01"} {
		if strings.Contains(text, secret) {
			t.Errorf("metrics expose %q", secret)
		}
	}
	if probs, err := testutil.GatherAndLint(l.Registry()); err != nil || len(probs) > 0 {
		t.Errorf("metric lint: %v %+v", err, probs)
	}
}

// TestAlertRulesUseLedgerMetrics: every ledgerd metric the alerting rules name exists.
func TestAlertRulesUseLedgerMetrics(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/prometheus/kioskd.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	b := startBroker(t)
	l, _ := runLedger(t, b, openStore(t, "", nil), "ledger-1", nil)
	mfs, err := l.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := regexp.MustCompile(`\bledgerd_[a-z_]+`).FindAllString(string(raw), -1)
	if len(names) == 0 {
		t.Fatal("no ledgerd metric in the rules")
	}
	for _, n := range names {
		if !slices.ContainsFunc(mfs, func(mf *dto.MetricFamily) bool { return mf.GetName() == n }) {
			t.Errorf("the alerting rules use %s, which ledgerd does not export", n)
		}
	}
}
