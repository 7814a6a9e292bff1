package daemon

import (
	"context"
	"errors"
	"net"
	"net/http"
	"runtime"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kioskd/kioskd/kiosk/config"
	"github.com/kioskd/kioskd/kiosk/session"
	"github.com/kioskd/kioskd/sync/wire"
)

// Prometheus metrics of the kiosk: what the heartbeat reports, read at scrape time from
// the same sources (the health registry, the journal's stats, the uplink), so /metrics and
// the heartbeat never disagree and nothing is counted twice. A scrape writes nothing to the
// journal. Labels carry states and kinds only: never an account, a top-up id or an amount.
var (
	mState = prometheus.NewDesc("kioskd_state",
		"1 for the kiosk's published state (online, degraded, out_of_service, maintenance, offline), 0 for the others.", []string{"state"}, nil)
	mSessionState = prometheus.NewDesc("kioskd_session_state",
		"1 for the session engine's state (idle, accepting, ...), 0 for the others.", []string{"state"}, nil)
	mCondition = prometheus.NewDesc("kioskd_condition_active",
		"1 for each open condition, by kind and who must act (staff, engineer, ops).", []string{"kind", "actor"}, nil)
	mCassetteNotes = prometheus.NewDesc("kioskd_cassette_notes",
		"Notes in the cassette since its last collection.", nil, nil)
	mCassetteCap = prometheus.NewDesc("kioskd_cassette_capacity_notes",
		"Notes the cassette holds (acceptor.cassette_capacity).", nil, nil)
	mUncertain = prometheus.NewDesc("kioskd_uncertain_items",
		"Uncertain items not yet settled.", nil, nil)
	mOutboxDepth = prometheus.NewDesc("kioskd_outbox_depth",
		"Top-ups waiting for the ledger's ack.", nil, nil)
	mOutboxAge = prometheus.NewDesc("kioskd_outbox_oldest_age_seconds",
		"Age of the oldest top-up waiting for the ledger's ack; 0 when the outbox is empty.", nil, nil)
	mAckRTT = prometheus.NewDesc("kioskd_ack_round_trip_seconds",
		"Round trip of the last top-up acked by the ledger.", nil, nil)
	mLastTopup = prometheus.NewDesc("kioskd_last_topup_timestamp_seconds",
		"When the last top-up closed (Unix time); absent before the first.", nil, nil)
	mJournalBytes = prometheus.NewDesc("kioskd_journal_size_bytes",
		"Size of the journal file.", nil, nil)
	mDiskFree = prometheus.NewDesc("kioskd_disk_free_bytes",
		"Free space on the journal's file system.", nil, nil)
	mEvents = prometheus.NewDesc("kioskd_events_total",
		"One-off events (and counted happenings) since the start, by kind.", []string{"kind"}, nil)
	mMQTT = prometheus.NewDesc("kioskd_mqtt_connected",
		"1 while the uplink is connected to the broker; absent without a broker.", nil, nil)
)

var kioskStates = []string{wire.StateOnline, wire.StateDegraded, wire.StateOutOfService, wire.StateMaintenance, wire.StateOffline}

var sessionStates = []session.State{session.Starting, session.Idle, session.Authorizing, session.Accepting, session.Closing,
	session.Done, session.OutOfService, session.Maintenance}

type kioskCollector struct{ s *System }

func (c kioskCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{mState, mSessionState, mCondition, mCassetteNotes, mCassetteCap, mUncertain, mOutboxDepth,
		mOutboxAge, mAckRTT, mLastTopup, mJournalBytes, mDiskFree, mEvents, mMQTT} {
		ch <- d
	}
}

func (c kioskCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	oneOf := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	state := kioskState(s.engine, s.reg)
	for _, st := range kioskStates {
		gauge(mState, oneOf(st == state), st)
	}
	if s.engine != nil {
		cur := s.engine.State()
		for _, st := range sessionStates {
			gauge(mSessionState, oneOf(st == cur), st.String())
		}
	}
	for _, cond := range s.reg.Active() {
		gauge(mCondition, 1, cond.Kind, string(cond.Actor))
	}
	for kind, n := range s.reg.Counters() {
		ch <- prometheus.MustNewConstMetric(mEvents, prometheus.CounterValue, float64(n), kind)
	}
	if j := s.j; j != nil {
		// The same reads as the heartbeat: one read transaction over the outbox and the
		// uncertain items, bounded by what is open, and a cassette read.
		if st, err := j.Stats(); err == nil {
			gauge(mOutboxDepth, float64(st.OutboxDepth))
			age := 0.0
			if !st.OldestUnsent.IsZero() {
				age = max(time.Since(st.OldestUnsent).Seconds(), 0)
			}
			gauge(mOutboxAge, age)
			gauge(mJournalBytes, float64(st.SizeBytes))
			gauge(mUncertain, float64(st.Uncertain))
			if st.LastTopupSeq > 0 {
				if t, ok, err := j.Topup(st.LastTopupSeq); err == nil && ok && !t.ClosedAt.IsZero() {
					gauge(mLastTopup, float64(t.ClosedAt.UnixNano())/1e9)
				}
			}
		}
		if cas, err := j.Cassette(); err == nil {
			capacity := s.cfg.Acceptor.CassetteCapacity
			if capacity <= 0 {
				capacity = config.DefaultCassetteCapacity
			}
			gauge(mCassetteNotes, float64(cas.Count))
			gauge(mCassetteCap, float64(capacity))
		}
	} else {
		// Safe mode: no journal to read, but its file's size still tells a technician something.
		var st syscall.Stat_t
		if syscall.Stat(s.cfg.Journal.Path, &st) == nil {
			gauge(mJournalBytes, float64(st.Size))
		}
	}
	var fs syscall.Statfs_t
	if syscall.Statfs(dirOf(s.cfg.Journal.Path), &fs) == nil {
		gauge(mDiskFree, float64(fs.Bavail)*float64(fs.Bsize))
	}
	if s.up != nil {
		gauge(mAckRTT, s.up.RTT().Seconds())
	}
	if s.link != nil {
		gauge(mMQTT, oneOf(s.link.Connected()))
	}
}

// metricsRegistry is the kiosk's registry: its collector, kioskd_build_info, and the Go
// runtime and process collectors. It is built once; every scrape reads through it.
func (s *System) metricsRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	version := s.opts.Version
	if version == "" {
		version = "devel"
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{Name: "kioskd_build_info", Help: "kioskd build; always 1.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()}})
	info.Set(1)
	reg.MustRegister(kioskCollector{s}, info, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// MetricsAddr is where /metrics listens ("" when it does not).
func (s *System) MetricsAddr() string {
	if s.metricsLn == nil {
		return ""
	}
	return s.metricsLn.Addr().String()
}

// listenMetrics opens the metrics port. Metrics are not needed to serve customers: a port
// that cannot be opened is logged, not fatal.
func (s *System) listenMetrics() {
	addr := s.cfg.Metrics.Listen
	if addr == "" {
		return
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		s.log.Error("metrics not available", "listen", addr, "err", err)
		return
	}
	s.metricsLn = ln
}

// startMetrics serves /metrics and writes the textfile, as configured, until ctx ends.
func (s *System) startMetrics(ctx context.Context, g *group) {
	if s.metricsLn == nil && s.cfg.Metrics.Textfile == "" {
		return
	}
	reg := s.metricsRegistry()
	if ln := s.metricsLn; ln != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, MaxRequestsInFlight: 2}))
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		g.Go("metrics", func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("metrics", "err", err)
			}
		})
		g.Go("metrics-stop", func() {
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if err := srv.Shutdown(sctx); err != nil {
				srv.Close()
			}
		})
		s.log.Info("metrics listening", "url", "http://"+ln.Addr().String()+"/metrics")
	}
	if path := s.cfg.Metrics.Textfile; path != "" {
		every := s.cfg.Metrics.TextfileEvery.D()
		g.Go("metrics-textfile", func() { runTextfile(ctx, reg, path, every, s.log.Error) })
	}
}

// runTextfile writes the textfile now and every interval until ctx ends. A failed write is
// logged once until a write succeeds again (a full disk must not flood the log).
func runTextfile(ctx context.Context, g prometheus.Gatherer, path string, every time.Duration, logErr func(string, ...any)) {
	failing := false
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		// WriteToTextfile writes a temporary file in the same directory and renames it:
		// node_exporter never reads a half-written file.
		if err := prometheus.WriteToTextfile(path, g); err != nil {
			if !failing {
				logErr("metrics textfile not written", "path", path, "err", err)
			}
			failing = true
		} else {
			failing = false
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
