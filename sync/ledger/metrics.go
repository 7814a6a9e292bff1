package ledger

import (
	"net/http"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Prometheus metrics of the ledger, read from Stats at scrape time (so the counters stay
// where they are, and the JSON /api/stats and /metrics never disagree). Labels carry
// outcomes only: never an account, a top-up id or a kiosk id.
var (
	mTopups = prometheus.NewDesc("ledgerd_topups_total",
		"Top-ups answered, by ack status (credited, duplicate, conflict, held, retry_later).", []string{"status"}, nil)
	mRefused = prometheus.NewDesc("ledgerd_payloads_refused_total",
		"Payloads refused without an answer, by reason (invalid, oversized, bad_topic).", []string{"reason"}, nil)
	mAuthz = prometheus.NewDesc("ledgerd_authz_total",
		"Authorization requests answered, by status (ok, denied).", []string{"status"}, nil)
	mPublished = prometheus.NewDesc("ledgerd_signed_messages_published_total",
		"Signed acks and authz answers published.", nil, nil)
	mPublishErrors = prometheus.NewDesc("ledgerd_publish_errors_total",
		"Signed messages that could not be published.", nil, nil)
	mStoreErrors = prometheus.NewDesc("ledgerd_store_errors_total",
		"Store operations that failed (the kiosk gets retry_later).", nil, nil)
	mUnauthorized = prometheus.NewDesc("ledgerd_unauthorized_requests_total",
		"HTTP decisions refused for a missing or wrong operator token.", nil, nil)
	mDropped = prometheus.NewDesc("ledgerd_mqtt_dropped_messages_total",
		"MQTT messages dropped because the handler queue was full.", nil, nil)
	mConnected = prometheus.NewDesc("ledgerd_mqtt_connected",
		"1 while the ledger is connected to the broker.", nil, nil)
)

type statsCollector struct{ l *Ledger }

func (c statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{mTopups, mRefused, mAuthz, mPublished, mPublishErrors, mStoreErrors, mUnauthorized, mDropped, mConnected} {
		ch <- d
	}
}

func (c statsCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.l.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(mTopups, s.Credited, "credited")
	counter(mTopups, s.Duplicates, "duplicate")
	counter(mTopups, s.Conflicts, "conflict")
	counter(mTopups, s.Held, "held")
	counter(mTopups, s.RetryLater, "retry_later")
	counter(mRefused, s.Rejected, "invalid")
	counter(mRefused, s.Oversized, "oversized")
	counter(mRefused, s.BadTopics, "bad_topic")
	counter(mAuthz, s.AuthzOK, "ok")
	counter(mAuthz, s.AuthzDenied, "denied")
	counter(mPublished, s.Published)
	counter(mPublishErrors, s.PublishErrors)
	counter(mStoreErrors, s.StoreErrors)
	counter(mUnauthorized, s.Unauthorized)
	counter(mDropped, s.Dropped)
	up := 0.0
	if s.MQTTConnected {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(mConnected, prometheus.GaugeValue, up)
}

// Registry returns a metrics registry for this ledger: its counters, an ledgerd_build_info
// metric, and the Go runtime and process collectors.
func (l *Ledger) Registry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	version := "devel"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		version = bi.Main.Version
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{Name: "ledgerd_build_info", Help: "ledgerd build; always 1.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version(), "kid": l.cfg.Signer.KID}})
	info.Set(1)
	reg.MustRegister(statsCollector{l}, info, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

func (l *Ledger) metricsHandler() http.Handler {
	reg := l.Registry()
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}
