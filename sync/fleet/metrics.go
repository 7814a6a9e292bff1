package fleet

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/kioskd/kioskd/sync/wire"
)

// metrics are fleetd's Prometheus metrics. Event counters are ordinary counters; the
// per-kiosk gauges are computed from the store at scrape time (a collector), so a kiosk that
// leaves the store leaves no stale series behind. Labels never carry account or top-up ids.
type metrics struct {
	reg      *prometheus.Registry
	messages *prometheus.CounterVec
	commands *prometheus.CounterVec
	results  *prometheus.CounterVec
	webhooks *prometheus.CounterVec
}

var (
	descUp        = prometheus.NewDesc("fleetd_kiosk_up", "1 when the kiosk's retained status is not offline.", []string{"kiosk"}, nil)
	descState     = prometheus.NewDesc("fleetd_kiosk_state", "1 for the kiosk's current state (online, degraded, out_of_service, maintenance, offline).", []string{"kiosk", "state"}, nil)
	descHBAge     = prometheus.NewDesc("fleetd_kiosk_heartbeat_age_seconds", "Time since the kiosk's last heartbeat.", []string{"kiosk"}, nil)
	descNonIdle   = prometheus.NewDesc("fleetd_kiosk_session_nonidle_seconds", "How long the kiosk's session has been outside idle (0 when idle).", []string{"kiosk"}, nil)
	descFill      = prometheus.NewDesc("fleetd_kiosk_cassette_fill_ratio", "Cassette notes / capacity, 0-1.", []string{"kiosk"}, nil)
	descOutbox    = prometheus.NewDesc("fleetd_kiosk_outbox_depth", "Top-ups the kiosk holds that the ledger has not acknowledged.", []string{"kiosk"}, nil)
	descOldest    = prometheus.NewDesc("fleetd_kiosk_outbox_oldest_unacked_seconds", "Age of the oldest unacknowledged top-up in the kiosk's outbox.", []string{"kiosk"}, nil)
	descUncertain = prometheus.NewDesc("fleetd_kiosk_uncertain_items", "Open uncertain items (notes of unknown fate) on the kiosk.", []string{"kiosk"}, nil)
	descClock     = prometheus.NewDesc("fleetd_kiosk_clock_offset_seconds", "Kiosk clock minus the console's receive time of its last heartbeat.", []string{"kiosk"}, nil)
	descDisk      = prometheus.NewDesc("fleetd_kiosk_disk_free_bytes", "Free disk space on the kiosk.", []string{"kiosk"}, nil)
	descJournal   = prometheus.NewDesc("fleetd_kiosk_journal_bytes", "Size of the kiosk's journal.", []string{"kiosk"}, nil)
	descAlarms    = prometheus.NewDesc("fleetd_alarms_open", "Open alarms by kiosk, severity, who must act and whether acknowledged.", []string{"kiosk", "severity", "actor", "acknowledged"}, nil)
	descScrapeErr = prometheus.NewDesc("fleetd_store_scrape_errors", "1 when the store could not be read for this scrape.", nil, nil)
)

func newMetrics(f *Fleet) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleetd_messages_total",
			Help: "Kiosk messages received, by topic and result (ok, invalid, bad_topic, store_error)."}, []string{"topic", "result"}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleetd_commands_sent_total",
			Help: "Commands signed and sent, by kind and result (published, publish_failed)."}, []string{"kind", "result"}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleetd_command_results_total",
			Help: "Command results received, by status."}, []string{"status"}),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleetd_webhook_deliveries_total",
			Help: "Webhook deliveries, by rule, event and result."}, []string{"rule", "event", "result"}),
	}
	version := "devel"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		version = bi.Main.Version
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{Name: "fleetd_build_info", Help: "fleetd build; always 1.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()}})
	info.Set(1)
	m.reg.MustRegister(m.messages, m.commands, m.results, m.webhooks, info, kioskCollector{f},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry returns fleetd's metrics registry, for the /metrics handler.
func (f *Fleet) Registry() *prometheus.Registry { return f.m.reg }

type kioskCollector struct{ f *Fleet }

func (c kioskCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUp, descState, descHBAge, descNonIdle, descFill, descOutbox, descOldest,
		descUncertain, descClock, descDisk, descJournal, descAlarms, descScrapeErr} {
		ch <- d
	}
}

func (c kioskCollector) Collect(ch chan<- prometheus.Metric) {
	f := c.f
	f.mu.Lock()
	now := f.now().UTC()
	ks, err := f.store.Kiosks()
	var alarms []AlarmRecord
	if err == nil {
		alarms, err = f.store.Alarms("", true)
	}
	f.mu.Unlock()
	if err != nil {
		f.log.Error("fleet: metrics: store", "err", err)
		ch <- prometheus.MustNewConstMetric(descScrapeErr, prometheus.GaugeValue, 1)
		return
	}
	ch <- prometheus.MustNewConstMetric(descScrapeErr, prometheus.GaugeValue, 0)
	g := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, k := range ks {
		id := k.KioskID
		state := "unknown"
		if k.Status != nil {
			state = k.Status.State
		}
		up := 0.0
		if state != wire.StateOffline && state != "unknown" {
			up = 1
		}
		g(descUp, up, id)
		for _, s := range States {
			v := 0.0
			if s == state {
				v = 1
			}
			g(descState, v, id, s)
		}
		h := k.Heartbeat
		if h == nil {
			continue
		}
		g(descHBAge, now.Sub(k.HeartbeatAt).Seconds(), id)
		nonIdle := 0.0
		if k.SessionState != "" && k.SessionState != "idle" {
			nonIdle = now.Sub(k.SessionSince).Seconds()
		}
		g(descNonIdle, nonIdle, id)
		if cas := h.CassetteFill(); cas != nil {
			g(descFill, cas.FillRatio, id)
		}
		g(descOutbox, float64(h.OutboxDepth), id)
		g(descOldest, float64(h.OldestUnackedS), id)
		g(descUncertain, float64(h.Uncertain()), id)
		if off := ClockOffset(h, k.HeartbeatAt); off != 0 {
			g(descClock, off.Seconds(), id)
		}
		g(descDisk, float64(h.DiskFreeBytes), id)
		g(descJournal, float64(h.JournalBytes), id)
	}
	type akey struct{ kiosk, sev, actor, acked string }
	counts := map[akey]int{}
	for _, a := range alarms {
		acked := "false"
		if a.AckedBy != "" {
			acked = "true"
		}
		counts[akey{a.KioskID, a.Severity, a.Actor, acked}]++
	}
	for k, n := range counts {
		g(descAlarms, float64(n), k.kiosk, k.sev, k.actor, k.acked)
	}
}
