package daemon

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kioskd/kioskd/kiosk/config"
	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/remote"
	"github.com/kioskd/kioskd/kiosk/session"
	"github.com/kioskd/kioskd/sync/uplink"
	"github.com/kioskd/kioskd/sync/wire"
)

// What central operations see of the kiosk: the retained status with its open conditions,
// heartbeats, alarms, and the signed remote commands (sync/CONTRACT.md §7).

// opsState is the daemon's part of the operations picture.
type opsState struct {
	mu sync.Mutex
	// state and since: the published state and when the kiosk entered it.
	state string
	since time.Time
	// eventLog rate-limits the log lines of one-off events (they are counted, not journaled).
	eventLog map[string]time.Time
	// restart asks Run to stop (restart_service: the service manager starts kioskd again).
	restart     chan struct{}
	restartOnce sync.Once
	remote      *remote.Remote
}

// eventLogEvery is the least time between two log lines of events of one kind.
const eventLogEvery = time.Minute

// onEvent handles a one-off event: counted by the registry for the heartbeat, logged at most
// once a minute per kind, never journaled and never an alarm.
func (s *System) onEvent(c health.Condition) {
	s.ops.mu.Lock()
	if s.ops.eventLog == nil {
		s.ops.eventLog = map[string]time.Time{}
	}
	last, seen := s.ops.eventLog[c.Kind]
	now := time.Now()
	log := !seen || now.Sub(last) >= eventLogEvery
	if log {
		s.ops.eventLog[c.Kind] = now
	}
	s.ops.mu.Unlock()
	if log {
		s.log.Warn("event", "kind", c.Kind, "severity", c.Severity, "detail", c.Detail, "count", s.reg.Counters()[c.Kind])
	}
}

// statusNow is the retained status: the state, since when, why, and every open condition.
func (s *System) statusNow() wire.Status {
	active := s.reg.Active()
	state := kioskState(s.engine, s.reg)
	now := time.Now().UTC()
	s.ops.mu.Lock()
	if state != s.ops.state {
		s.ops.state, s.ops.since = state, now
	}
	since := s.ops.since
	s.ops.mu.Unlock()
	st := wire.Status{V: wire.Version, State: state, Version: s.opts.Version, ConfigVersion: s.cfg.Version, BootID: s.bootID, At: now,
		Since: since, Conditions: uplink.ConditionsOf(active)}
	if state != wire.StateOnline {
		st.Reason = s.statusReason(active)
	}
	if s.engine != nil {
		st.LimitsVersion = s.engine.Limits().Version
	}
	return st
}

// statusReason says why the kiosk is not online: the operator's reason, or the kinds of the
// conditions with the strongest effect.
func (s *System) statusReason(active []health.Condition) string {
	if s.engine != nil && s.engine.State() == session.Maintenance {
		return "maintenance"
	}
	_, kinds := s.reg.Worst()
	if len(kinds) > 0 {
		return strings.Join(kinds, ", ")
	}
	if s.engine != nil {
		return "operator: out of service"
	}
	return ""
}

// statusKey changes whenever the retained status must be published again: a new state, or
// a change of the open conditions (a raise, an update, a clear).
func (s *System) statusKey() string {
	var b strings.Builder
	b.WriteString(kioskState(s.engine, s.reg))
	if s.engine != nil {
		fmt.Fprintf(&b, "|limits %d", s.engine.Limits().Version)
	}
	for _, c := range s.reg.Active() {
		fmt.Fprintf(&b, "|%s/%s/%s", c.Kind, c.Severity, c.Detail)
	}
	return b.String()
}

// heartbeatNow is the periodic heartbeat; it works without a journal (safe mode) and
// without an engine.
func (s *System) heartbeatNow() wire.Heartbeat {
	now := time.Now().UTC()
	hb := wire.Heartbeat{V: wire.Version, UptimeS: int64(time.Since(s.start).Seconds()), At: now, Clock: now,
		Counters: s.reg.Counters()}
	if j := s.j; j != nil {
		if st, err := j.Stats(); err == nil {
			hb.OutboxDepth = st.OutboxDepth
			if !st.OldestUnsent.IsZero() {
				hb.OldestUnackedS = max(int64(time.Since(st.OldestUnsent).Seconds()), 0)
			}
			hb.JournalBytes = st.SizeBytes
			hb.JournalEvents, hb.JournalHead = st.Events, st.Head
			hb.UncertainItems, hb.UncertainCount = st.Uncertain, st.Uncertain
			if st.LastTopupSeq > 0 {
				if t, ok, err := j.Topup(st.LastTopupSeq); err == nil && ok {
					hb.LastTopupAt = t.ClosedAt
				}
			}
		}
		capacity := s.cfg.Acceptor.CassetteCapacity
		if capacity <= 0 {
			capacity = config.DefaultCassetteCapacity
		}
		if c, err := j.Cassette(); err == nil {
			hb.CassetteNotes, hb.CassetteCap = c.Count, capacity
			hb.Cassette = &wire.Cassette{Notes: c.Count, Capacity: capacity, ValueMinor: c.ValueMinor,
				FillRatio: min(1, max(0, float64(c.Count)/float64(capacity)))}
		}
	}
	var fs syscall.Statfs_t
	if syscall.Statfs(dirOf(s.cfg.Journal.Path), &fs) == nil {
		hb.DiskFreeBytes = int64(fs.Bavail) * int64(fs.Bsize)
	}
	if hb.JournalBytes == 0 && s.j == nil {
		var st syscall.Stat_t
		if syscall.Stat(s.cfg.Journal.Path, &st) == nil {
			hb.JournalBytes = st.Size
		}
	}
	if s.up != nil {
		hb.RTTMs = s.up.RTT().Milliseconds()
		if a := s.up.Stats().LastAck; !a.IsZero() {
			hb.LastAckAt = a.UTC()
		}
	}
	hb.DeviceList = s.deviceList()
	hb.Devices = make(map[string]string, len(hb.DeviceList))
	for _, d := range hb.DeviceList {
		hb.Devices[d.Name] = d.State
	}
	if s.engine != nil {
		hb.SessionState = s.engine.State().String()
		l := s.engine.Limits()
		hb.Limits = &wire.Limits{Version: l.Version, SessionMaxMinor: l.SessionMaxMinor, OfflineSessionMaxMinor: l.OfflineSessionMaxMinor,
			OfflineTotalMaxMinor: l.OfflineTotalMaxMinor}
	} else {
		hb.SessionState = wire.StateOutOfService
	}
	return hb
}

// deviceList is the heartbeat's devices: each configured device, "ok" or the condition that
// stands against it, with the model and firmware its driver reports.
func (s *System) deviceList() []wire.Device {
	state := func(kinds ...string) string {
		for _, c := range s.reg.Active() {
			if slices.Contains(kinds, c.Kind) {
				return c.Kind
			}
		}
		return "ok"
	}
	acc := wire.Device{Name: "acceptor", State: state(condAcceptor)}
	if s.acc != nil {
		info := s.acc.Info()
		acc.Model, acc.Firmware = info.Model, info.Firmware
		if acc.Model == "" {
			acc.Model = info.Protocol
		}
	}
	out := []wire.Device{acc}
	if s.cfg.Printer.Enabled {
		out = append(out, wire.Device{Name: "printer", State: state(condPrinter, condPrintFailed), Model: s.cfg.Printer.Profile})
	}
	if s.cfg.Scanner.Configured() {
		out = append(out, wire.Device{Name: "scanner", State: state(condScanner)})
	}
	return out
}

// buildRemote builds the remote command runner when ops keys are configured (after the
// uplink, whose result queue it reports to).
func (s *System) buildRemote() error {
	if s.up == nil || len(s.cfg.MQTT.OpsKeys) == 0 {
		return nil
	}
	keys := wire.Keyring{}
	for kid, k := range s.cfg.MQTT.OpsKeys {
		pub, err := config.DecodePublicKey(k)
		if err != nil {
			return fmt.Errorf("ops key %s: %w", kid, err)
		}
		keys[kid] = pub
	}
	reboot := s.opts.Reboot
	if reboot == nil {
		argv := s.opts.RebootCommand
		if len(argv) == 0 {
			argv = []string{"systemctl", "reboot"}
		}
		reboot = func(ctx context.Context) error {
			out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
			if err != nil {
				return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
			}
			return nil
		}
	}
	restart := s.opts.Restart
	if restart == nil {
		// A clean stop: the service manager (Restart=always) starts kioskd again.
		restart = func() { s.ops.restartOnce.Do(func() { close(s.ops.restart) }) }
	}
	up := s.up
	r, err := remote.New(remote.Config{KioskID: s.cfg.Kiosk.ID, OpsKeys: keys, Journal: s.j, Engine: s.engine, Report: up.CommandResult,
		Health: s.reg, Limits: s.cfg.Limits, SyncNow: up.SyncNow, Flush: up.Flush, Diagnostics: s.remoteDiag,
		Reboot: reboot, Restart: restart, Drain: up.DrainResults, Logger: s.log})
	if err != nil {
		return err
	}
	s.ops.remote = r
	return nil
}

// onCommand is the uplink's down/cmd handler.
func (s *System) onCommand(payload []byte) {
	if r := s.ops.remote; r != nil {
		r.Handle(payload)
	}
}

// startRemote runs the remote commands in the links group.
func (s *System) startRemote(ctx context.Context, g *group) {
	if r := s.ops.remote; r != nil {
		g.Go("remote", func() { _ = r.Run(ctx) })
	}
}

// restartRequested is closed when restart_service asks kioskd to stop (and be restarted).
func (s *System) restartRequested() <-chan struct{} { return s.ops.restart }

// buildSafeUplink builds the report-only uplink of the safe mode: a kiosk whose journal
// failed its check still connects and says so (out_of_service, with the journal condition),
// with no outbox, no cash and no commands.
func (s *System) buildSafeUplink(set *mqttSettings) error {
	if set == nil {
		return nil
	}
	s.link = newMQTTLink(*set)
	up, err := uplink.New(uplink.Config{KioskID: s.cfg.Kiosk.ID, Client: s.link, Health: s.reg,
		HeartbeatEvery: s.cfg.MQTT.Heartbeat.D(), Heartbeat: s.heartbeatNow, Status: s.statusNow, Logger: s.log})
	if err != nil {
		return err
	}
	s.up = up
	s.reg.Listen(func(c health.Condition) {
		if c.Event {
			s.onEvent(c)
			return
		}
		up.Alarm(c)
		select {
		case s.statusKick <- struct{}{}:
		default:
		}
	})
	for _, c := range s.reg.Active() {
		up.Alarm(c) // raised before the uplink existed (the journal's own condition)
	}
	return nil
}

// runSafeUplink runs the safe mode's uplink and its connection until ctx ends; the returned
// function stops them within their budgets.
func (s *System) runSafeUplink(ctx context.Context) func() {
	if s.up == nil {
		return func() {}
	}
	links := newGroup("uplink", s.log)
	lctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	links.Go("uplink", func() { _ = s.up.Run(lctx) })
	links.Go("status", func() { s.watchSafeStatus(lctx) })
	if err := s.link.dial(lctx, s.up, s.log); err != nil {
		s.log.Error("mqtt", "err", err)
	}
	return func() {
		stop()
		links.Wait(uplinkBudget)
		s.link.close(mqttBudget)
	}
}

// watchSafeStatus republishes the safe mode's status when a condition changes.
func (s *System) watchSafeStatus(ctx context.Context) {
	published := ""
	for {
		if k := s.statusKey(); k != published && s.link.Connected() {
			s.up.PublishStatus(ctx)
			published = k
		}
		select {
		case <-ctx.Done():
			return
		case <-s.statusKick:
		case <-s.link.connects:
			published = ""
		}
	}
}

// remoteDiag is the diagnostics command's summary for central operations: small enough for a
// cmd_result, and free of secrets and of anything about customers.
func (s *System) remoteDiag() any {
	d := map[string]any{"conditions": s.reg.Active(), "acceptor": s.acc.Info(), "journal_epoch": fmt.Sprintf("%016x", s.j.Epoch())}
	if s.link != nil {
		d["mqtt_connected"] = s.link.Connected()
	}
	if s.printer != nil {
		d["printer_connected"] = s.printer.connected()
	}
	if st, err := s.j.Stats(); err == nil {
		d["journal"] = st
	}
	if c, err := s.j.Cassette(); err == nil {
		d["cassette"] = c
	}
	if u, err := s.j.UncertainItems(); err == nil {
		d["uncertain_items"] = len(u)
	}
	if s.up != nil {
		d["uplink"] = s.up.Stats()
	}
	return d
}
