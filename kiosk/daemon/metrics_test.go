package daemon

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/kioskd/kioskd/kiosk/session"
)

// parseMetrics parses a text exposition the way Prometheus does.
func parseMetrics(t *testing.T, r io.Reader) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		t.Fatalf("exposition does not parse: %v", err)
	}
	return fams
}

// metricValue is the value of the series of name with exactly the given labels; ok is false
// when there is no such series.
func metricValue(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		if len(m.GetLabel())*2 != len(labels) {
			continue
		}
		for i, l := range m.GetLabel() {
			if l.GetName() != labels[2*i] || l.GetValue() != labels[2*i+1] {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Untyped != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s", resp.Status)
	}
	return parseMetrics(t, resp.Body)
}

func wantMetric(t *testing.T, fams map[string]*dto.MetricFamily, want float64, name string, labels ...string) {
	t.Helper()
	got, ok := metricValue(fams, name, labels...)
	if !ok {
		t.Fatalf("no series %s%v", name, labels)
	}
	if got != want {
		t.Fatalf("%s%v = %v, want %v", name, labels, got, want)
	}
}

// TestMetricsEndpoint: with metrics.listen set, a running kiosk serves /metrics on loopback;
// the exposition parses, says what the kiosk is doing (state, session state, cassette,
// outbox, last top-up), carries the build and Go runtime metrics, and follows a customer's
// top-up. The textfile configured beside it holds the same series after the stop.
func TestMetricsEndpoint(t *testing.T) {
	k := newKit(t)
	k.cfg.Metrics.Listen = "127.0.0.1:0"
	k.cfg.Metrics.Textfile = filepath.Join(k.dir, "textfile", "kioskd.prom")
	if err := os.MkdirAll(filepath.Dir(k.cfg.Metrics.Textfile), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := k.cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	k.accDev.plug()
	k.prnDev.plug()
	r := k.start()
	r.conds.waitCleared(t, condPrinter)
	addr := r.s.MetricsAddr()
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("metrics address %q", addr)
	}
	waitView(t, r.s.Engine(), "idle", func(v session.View) bool { return v.State == session.Idle.String() })

	fams := scrape(t, addr)
	wantMetric(t, fams, 1, "kioskd_state", "state", "online")
	wantMetric(t, fams, 0, "kioskd_state", "state", "out_of_service")
	wantMetric(t, fams, 1, "kioskd_session_state", "state", "idle")
	wantMetric(t, fams, 0, "kioskd_session_state", "state", "accepting")
	wantMetric(t, fams, 0, "kioskd_cassette_notes")
	wantMetric(t, fams, float64(k.cfg.Acceptor.CassetteCapacity), "kioskd_cassette_capacity_notes")
	wantMetric(t, fams, 0, "kioskd_uncertain_items")
	wantMetric(t, fams, 0, "kioskd_outbox_depth")
	wantMetric(t, fams, 1, "kioskd_build_info", "goversion", runtime.Version(), "version", "test")
	if _, ok := metricValue(fams, "kioskd_last_topup_timestamp_seconds"); ok {
		t.Fatal("a last top-up time before the first top-up")
	}
	for _, name := range []string{"kioskd_journal_size_bytes", "kioskd_disk_free_bytes", "go_goroutines", "process_resident_memory_bytes"} {
		if v, ok := metricValue(fams, name); !ok || v <= 0 {
			t.Errorf("%s = %v (present %v), want > 0", name, v, ok)
		}
	}
	if _, ok := fams["kioskd_mqtt_connected"]; ok {
		t.Error("kioskd_mqtt_connected without a broker")
	}

	before := time.Now()
	k.topUp(t, r.s.Engine(), "alice", 0x63, 1000)
	fams = scrape(t, addr)
	wantMetric(t, fams, 1, "kioskd_cassette_notes")
	wantMetric(t, fams, 1, "kioskd_session_state", "state", "done")
	// Without a broker the top-up waits in the outbox for the ledger.
	wantMetric(t, fams, 1, "kioskd_outbox_depth")
	if v, _ := metricValue(fams, "kioskd_last_topup_timestamp_seconds"); v < float64(before.Unix()) || v > float64(time.Now().Unix()+1) {
		t.Errorf("last top-up at %v, want between %v and now", v, before.Unix())
	}
	// No account or top-up id anywhere in the exposition.
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if strings.Contains(l.GetValue(), "alice") {
					t.Errorf("%s carries the account in label %s", name, l.GetName())
				}
			}
		}
	}

	if _, err := r.stop(t); err != nil {
		t.Fatalf("Run after stop: %v", err)
	}
	// The textfile writer wrote at least once before the stop returned.
	f, err := os.Open(k.cfg.Metrics.Textfile)
	if err != nil {
		t.Fatalf("textfile: %v", err)
	}
	defer f.Close()
	fams = parseMetrics(t, f)
	wantMetric(t, fams, float64(k.cfg.Acceptor.CassetteCapacity), "kioskd_cassette_capacity_notes")
	assertNoGoroutines(t)
}

// TestMetricsListenLoopbackOnly: the metrics port has no authentication, so an address
// reachable from the network is refused unless the config opts in explicitly.
func TestMetricsListenLoopbackOnly(t *testing.T) {
	k := newKit(t)
	for _, addr := range []string{"0.0.0.0:9101", ":9101", "192.168.1.20:9101", "[::]:9101"} {
		c := k.cfg
		c.Metrics.Listen = addr
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), "metrics.listen") {
			t.Errorf("listen %q: %v, want a metrics.listen error", addr, err)
		}
		c.Metrics.AllowRemote = true
		if err := c.Validate(); err != nil {
			t.Errorf("listen %q with allow_remote: %v", addr, err)
		}
	}
}

// TestMetricsTextfile: the writer writes at once and again every interval, atomically (no
// temporary file left beside it), and a directory that does not exist is logged once, not at
// every interval.
func TestMetricsTextfile(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "kioskd.prom")
		reg := prometheus.NewRegistry()
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "kioskd_test_value", Help: "A test value."})
		reg.MustRegister(g)
		g.Set(1)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			defer close(done)
			runTextfile(ctx, reg, path, 15*time.Second, func(msg string, a ...any) { t.Errorf("unexpected error: %s %v", msg, a) })
		}()
		read := func() float64 {
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			v, ok := metricValue(parseMetrics(t, f), "kioskd_test_value")
			if !ok {
				t.Fatal("no kioskd_test_value in the textfile")
			}
			return v
		}
		synctest.Wait()
		if v := read(); v != 1 {
			t.Fatalf("first write: %v, want 1", v)
		}
		g.Set(2)
		time.Sleep(14 * time.Second)
		synctest.Wait()
		if v := read(); v != 1 {
			t.Fatalf("rewritten before the interval: %v", v)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if v := read(); v != 2 {
			t.Fatalf("after the interval: %v, want 2", v)
		}
		cancel()
		<-done
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) != 1 {
			t.Fatalf("directory holds %d files, want only the textfile", len(ents))
		}

		// A missing directory: one log line however many intervals fail.
		var logged int
		ctx, cancel = context.WithCancel(t.Context())
		done = make(chan struct{})
		go func() {
			defer close(done)
			runTextfile(ctx, reg, filepath.Join(dir, "missing", "kioskd.prom"), time.Second, func(string, ...any) { logged++ })
		}()
		time.Sleep(5 * time.Second)
		synctest.Wait()
		cancel()
		<-done
		if logged != 1 {
			t.Fatalf("%d log lines for a failing textfile, want 1", logged)
		}
	})
}

// TestMetricsSafeMode: a kiosk whose journal fails its check still serves /metrics, saying it
// is out of service, why (journal_corrupt, for an engineer), and the size of the bad file.
func TestMetricsSafeMode(t *testing.T) {
	k := newKit(t)
	k.cfg.Metrics.Listen = "127.0.0.1:0"
	if err := os.MkdirAll(filepath.Dir(k.cfg.Journal.Path), 0o700); err != nil {
		t.Fatal(err)
	}
	bad := strings.Repeat("not a journal ", 600)
	if err := os.WriteFile(k.cfg.Journal.Path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	k.accDev.plug()
	r := k.start()
	if r.s.SafeMode() == nil {
		t.Fatal("not in safe mode")
	}
	fams := scrape(t, r.s.MetricsAddr())
	wantMetric(t, fams, 1, "kioskd_state", "state", "out_of_service")
	wantMetric(t, fams, 0, "kioskd_state", "state", "online")
	wantMetric(t, fams, 1, "kioskd_condition_active", "actor", "engineer", "kind", "journal_corrupt")
	wantMetric(t, fams, float64(len(bad)), "kioskd_journal_size_bytes")
	if _, ok := fams["kioskd_cassette_notes"]; ok {
		t.Error("a cassette count without a journal to read it from")
	}
	if _, err := r.stop(t); err != nil {
		t.Fatalf("Run after stop: %v", err)
	}
}
