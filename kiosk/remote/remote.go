// Package remote runs the signed commands central operations send a kiosk (down/cmd,
// sync/CONTRACT.md §7.4) and reports each step on up/cmd_result.
//
// A command is checked before anything is written: the ops-key signature (ops keys only,
// never the ledger's keys), the form, the kiosk id, the expiry by the kiosk's clock, an
// issued_at not far in the future, and a cmd_id the journal has not accepted before. A
// refusal costs no journal write (a flood of forged or replayed commands must not wear the
// SD card or stall the money path): it is counted in the heartbeat's counters, reported on
// up/cmd_result within a rate limit, and logged within the same limit. An accepted command
// is journaled with its cmd_id in one transaction (a replay is refused forever), then run
// through the engine's command API; each later step (waiting_idle, succeeded, failed,
// expired) is an audit event in the journal and a result on up/cmd_result.
//
// A replay of an accepted cmd_id (MQTT delivers QoS 1 messages at least once) is counted and
// logged but not answered: the console holds the command's real outcome, and a "rejected"
// for the redelivery would overwrite it.
//
// Commands that would disturb a customer (out_of_service, maintenance_on, reboot,
// restart_service, prepare_update) wait until the customer in session has finished: the
// kiosk reports waiting_idle, then the final status; a command still waiting when it expires
// is undone and reported expired.
package remote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/kioskd/kioskd/kiosk/config"
	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/kiosk/session"
	"github.com/kioskd/kioskd/sync/wire"
)

// Engine is the part of the session engine's command API that commands use.
type Engine interface {
	Do(ctx context.Context, cmd session.Command) (session.Reply, error)
	// WaitView returns the first view newer than after, or false when ctx ended.
	WaitView(ctx context.Context, after uint64) (session.View, bool)
}

// Journal is what commands keep in the journal (*journal.Journal implements it).
type Journal interface {
	CommandSeen(cmdID string) (bool, error)
	AcceptCommand(journal.CommandAcceptedEvent) (uint64, error)
	CommandStep(journal.CommandResultEvent) error
	SetCredentials(journal.Credentials) error
}

// Config wires a Remote.
type Config struct {
	KioskID string
	// OpsKeys verify commands: the ops console's keys, never the ledger's.
	OpsKeys wire.Keyring
	Journal Journal
	Engine  Engine
	// Report sends a result on up/cmd_result (the uplink queues it); it must not block.
	Report func(wire.CmdResult)
	// Health counts refusals (optional).
	Health *health.Registry
	// Limits are the config file's limits: the base of a set_limits overlay when the engine
	// does not report the limits in force.
	Limits config.Limits
	// SyncNow kicks the uplink (sync_now).
	SyncNow func()
	// Flush waits until the outbox is empty or ctx ends (prepare_update).
	Flush func(ctx context.Context) error
	// Diagnostics returns what the diagnostics command reports besides the engine status.
	Diagnostics func() any
	// Reboot reboots the machine (default: nothing is configured, the command fails). The
	// daemon runs the configured command (e.g. systemctl reboot); tests never reboot.
	Reboot func(ctx context.Context) error
	// Restart ends kioskd with an exit code its service manager restarts it on.
	Restart func()
	// Drain waits, within ctx, until the results reported so far are published: called
	// before a reboot or a restart, which would otherwise lose them.
	Drain func(ctx context.Context) error
	// MaxClockSkew is how far in the future issued_at may be by the kiosk's clock. Default
	// 5 minutes.
	MaxClockSkew time.Duration
	// RefusalsPerMinute bounds the refusals reported and logged (the rest are only
	// counted). Default 10.
	RefusalsPerMinute int
	// QueueSize bounds the accepted commands waiting to run. Default 16.
	QueueSize int
	Now       func() time.Time
	Logger    *slog.Logger
}

// Counter names in the heartbeat's counters.
const (
	CounterRefused  = "cmd_refused"
	CounterForged   = "cmd_bad_signature"
	CounterReplayed = "cmd_replayed"
)

// Remote verifies and runs commands.
type Remote struct {
	cfg   Config
	log   *slog.Logger
	queue chan job

	mu        sync.Mutex
	allowance float64
	lastFill  time.Time
	quiet     uint64 // refusals not logged since the last log line
}

type job struct {
	cmd wire.Command
	kid string
}

// New returns a Remote; Run runs the commands it accepts.
func New(cfg Config) (*Remote, error) {
	if !wire.ValidKioskID(cfg.KioskID) || cfg.Journal == nil || cfg.Engine == nil || cfg.Report == nil {
		return nil, errors.New("remote: kiosk id, journal, engine and report are required")
	}
	if len(cfg.OpsKeys) == 0 {
		return nil, errors.New("remote: at least one ops key is required")
	}
	if cfg.MaxClockSkew <= 0 {
		cfg.MaxClockSkew = 5 * time.Minute
	}
	if cfg.RefusalsPerMinute <= 0 {
		cfg.RefusalsPerMinute = 10
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 16
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Remote{cfg: cfg, log: cfg.Logger.With("component", "remote"), queue: make(chan job, cfg.QueueSize),
		allowance: float64(cfg.RefusalsPerMinute)}, nil
}

// Handle takes one down/cmd payload (a signed envelope) as received. It verifies it and
// queues an acceptable command for Run; it writes nothing and never blocks.
func (r *Remote) Handle(payload []byte) {
	var cmd wire.Command
	kid, err := r.cfg.OpsKeys.Open(payload, &cmd)
	if err != nil {
		// Unverified: whatever cmd_id it names is the sender's claim. Answer it only within
		// the rate limit, so that a flood costs a counter and nothing else.
		r.count(CounterForged)
		var env wire.Envelope
		var claimed wire.Command
		if wire.Decode(payload, &env) == nil && json.Unmarshal([]byte(env.Payload), &claimed) == nil && wire.ValidCmdID(claimed.CmdID) {
			r.refuse(claimed.CmdID, wire.CmdRejected, "bad signature: "+err.Error(), "kid", kid)
		} else {
			r.refuse("", "", "unreadable or unsigned command: "+err.Error(), "kid", kid)
		}
		return
	}
	if err := cmd.Validate(); err != nil {
		r.refuseID(cmd.CmdID, wire.CmdRejected, "invalid command: "+err.Error())
		return
	}
	if err := checkArgs(cmd); err != nil {
		// Checked before the command is journaled: set_credentials must never put a PIN in
		// clear into the journal.
		r.refuseID(cmd.CmdID, wire.CmdRejected, err.Error())
		return
	}
	if cmd.KioskID != r.cfg.KioskID {
		r.refuseID(cmd.CmdID, wire.CmdRejected, fmt.Sprintf("command for kiosk %s, this is %s", cmd.KioskID, r.cfg.KioskID))
		return
	}
	now := r.cfg.Now()
	if !now.Before(cmd.ExpiresAt) {
		r.refuseID(cmd.CmdID, wire.CmdExpired, fmt.Sprintf("expired at %s (kiosk clock %s)", cmd.ExpiresAt.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339)))
		return
	}
	if cmd.IssuedAt.After(now.Add(r.cfg.MaxClockSkew)) {
		r.refuseID(cmd.CmdID, wire.CmdRejected, fmt.Sprintf("issued_at %s is in the future by the kiosk clock %s", cmd.IssuedAt.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339)))
		return
	}
	seen, err := r.cfg.Journal.CommandSeen(cmd.CmdID)
	if err != nil {
		r.refuseID(cmd.CmdID, wire.CmdRejected, "journal unavailable: "+err.Error())
		return
	}
	if seen {
		r.replayed(cmd.CmdID)
		return
	}
	select {
	case r.queue <- job{cmd: cmd, kid: kid}:
	default:
		r.refuseID(cmd.CmdID, wire.CmdRejected, "busy: too many commands waiting")
	}
}

func (r *Remote) refuseID(id, status, reason string) {
	r.count(CounterRefused)
	r.refuse(id, status, reason)
}

func (r *Remote) replayed(id string) {
	r.count(CounterReplayed)
	if r.allow() {
		r.log.Warn("command replayed; ignored (its cmd_id was accepted before)", "cmd_id", id)
	}
}

// refuse reports and logs a refusal within the rate limit.
func (r *Remote) refuse(id, status, reason string, attrs ...any) {
	if !r.allow() {
		return
	}
	r.mu.Lock()
	quiet := r.quiet
	r.quiet = 0
	r.mu.Unlock()
	r.log.Warn("command refused", append([]any{"cmd_id", id, "reason", reason, "not_logged_before", quiet}, attrs...)...)
	if id != "" && status != "" {
		r.cfg.Report(wire.CmdResult{V: wire.Version, CmdID: id, Status: status, Reason: reason})
	}
}

// allow is a token bucket of RefusalsPerMinute on the kiosk's clock.
func (r *Remote) allow() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.cfg.Now()
	limit := float64(r.cfg.RefusalsPerMinute)
	if !r.lastFill.IsZero() {
		r.allowance = min(limit, r.allowance+now.Sub(r.lastFill).Minutes()*limit)
	}
	r.lastFill = now
	if r.allowance < 1 {
		r.quiet++
		return false
	}
	r.allowance--
	return true
}

func (r *Remote) count(name string) {
	if r.cfg.Health != nil {
		r.cfg.Health.Count(name, 1)
	}
}

// Run runs accepted commands one at a time until ctx ends.
func (r *Remote) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case j := <-r.queue:
			r.run(ctx, j)
		}
	}
}

// run journals the command (the one write an accepted command costs before it runs), reports
// it accepted, and runs it.
func (r *Remote) run(ctx context.Context, j job) {
	c := j.cmd
	_, err := r.cfg.Journal.AcceptCommand(journal.CommandAcceptedEvent{CmdID: c.CmdID, Kind: c.Kind, KID: j.kid,
		IssuedAt: c.IssuedAt, ExpiresAt: c.ExpiresAt, Args: c.Args})
	if errors.Is(err, journal.ErrCommandReplayed) {
		r.replayed(c.CmdID) // the same command twice in the queue
		return
	}
	if err != nil {
		r.log.Error("journaling a command; refused", "cmd_id", c.CmdID, "err", err)
		r.cfg.Report(wire.CmdResult{V: wire.Version, CmdID: c.CmdID, Status: wire.CmdRejected, Reason: "journal: " + err.Error()})
		return
	}
	r.log.Info("command accepted", "cmd_id", c.CmdID, "kind", c.Kind, "kid", j.kid)
	r.cfg.Report(wire.CmdResult{V: wire.Version, CmdID: c.CmdID, Status: wire.CmdAccepted})
	// The command's life ends at its expiry: waiting for idle is bounded by it.
	cctx, cancel := context.WithDeadline(ctx, r.deadline(c.ExpiresAt))
	defer cancel()
	status, reason := r.exec(cctx, c)
	if status == "" {
		return // exec reported its final step itself (reboot, restart)
	}
	r.step(c, status, reason)
}

// deadline converts the command's expiry (kiosk wall clock) to a deadline.
func (r *Remote) deadline(expires time.Time) time.Time {
	return time.Now().Add(expires.Sub(r.cfg.Now()))
}

// step journals and reports one step of an accepted command.
func (r *Remote) step(c wire.Command, status, reason string) {
	if len(reason) > maxReason {
		reason = reason[:maxReason]
	}
	if err := r.cfg.Journal.CommandStep(journal.CommandResultEvent{CmdID: c.CmdID, Kind: c.Kind, Status: status, Reason: reason}); err != nil {
		r.log.Error("journaling a command step", "cmd_id", c.CmdID, "status", status, "err", err)
	}
	lvl := slog.LevelInfo
	if status == wire.CmdFailed || status == wire.CmdExpired {
		lvl = slog.LevelWarn
	}
	r.log.Log(context.Background(), lvl, "command step", "cmd_id", c.CmdID, "kind", c.Kind, "status", status, "reason", reason)
	r.cfg.Report(wire.CmdResult{V: wire.Version, CmdID: c.CmdID, Status: status, Reason: reason})
}

// maxReason bounds a result's reason (a diagnostics summary), well within wire.MaxPayload.
const maxReason = 16 << 10

// exec runs one command and returns its final status and reason.
func (r *Remote) exec(ctx context.Context, c wire.Command) (string, string) {
	e := r.cfg.Engine
	switch c.Kind {
	case wire.CmdOutOfService:
		reason := "remote command " + c.CmdID
		var a struct {
			Reason string `json:"reason"`
		}
		if len(c.Args) > 0 && json.Unmarshal(c.Args, &a) == nil && a.Reason != "" {
			reason = a.Reason
		}
		if _, err := e.Do(ctx, session.Command{Kind: session.CmdOutOfService, On: true, Reason: reason}); err != nil {
			return wire.CmdFailed, err.Error()
		}
		err := r.waitIdle(ctx, c, func(s session.Status) bool { return s.State == session.OutOfService.String() })
		if err != nil {
			r.undo(session.Command{Kind: session.CmdOutOfService, On: false})
			return r.waitFailed(err)
		}
		return wire.CmdSucceeded, "out of service"
	case wire.CmdInService:
		rep, err := e.Do(ctx, session.Command{Kind: session.CmdOutOfService, On: false})
		if err != nil {
			return wire.CmdFailed, err.Error()
		}
		return wire.CmdSucceeded, "state " + rep.Status.State
	case wire.CmdMaintenanceOn:
		if err := r.park(ctx, c); err != nil {
			return r.waitFailed(err)
		}
		return wire.CmdSucceeded, "maintenance"
	case wire.CmdMaintenanceOff:
		rep, err := e.Do(ctx, session.Command{Kind: session.CmdMaintenance, On: false})
		if err != nil {
			return wire.CmdFailed, err.Error()
		}
		return wire.CmdSucceeded, "state " + rep.Status.State
	case wire.CmdReboot, wire.CmdRestartService:
		return r.restart(ctx, c)
	case wire.CmdReprint:
		var a wire.ReprintArgs
		if err := json.Unmarshal(c.Args, &a); err != nil {
			return wire.CmdFailed, "args: " + err.Error()
		}
		if _, err := e.Do(ctx, session.Command{Kind: session.CmdReprint, ReceiptNo: a.ReceiptNo}); err != nil {
			return wire.CmdFailed, err.Error()
		}
		return wire.CmdSucceeded, fmt.Sprintf("receipt %d reprinted", a.ReceiptNo)
	case wire.CmdSyncNow:
		if r.cfg.SyncNow == nil {
			return wire.CmdFailed, "no uplink to sync"
		}
		r.cfg.SyncNow()
		return wire.CmdSucceeded, "outbox sync started"
	case wire.CmdDiagnostics:
		return r.diagnostics(ctx)
	case wire.CmdSetLimits:
		return r.setLimits(ctx, c)
	case wire.CmdSetCredentials:
		return r.setCredentials(c)
	case wire.CmdPrepareUpdate:
		return r.prepareUpdate(ctx, c)
	}
	return wire.CmdFailed, "kind not supported by this kiosk: " + c.Kind
}

// waitIdle waits until done holds for the engine's status, reporting waiting_idle once when
// it does not hold at first (a customer in session).
func (r *Remote) waitIdle(ctx context.Context, c wire.Command, done func(session.Status) bool) error {
	var seq uint64
	reported := false
	for {
		rep, err := r.cfg.Engine.Do(ctx, session.Command{Kind: session.CmdStatus})
		if err != nil {
			return err
		}
		if done(rep.Status) {
			return nil
		}
		// Only a customer in session is worth a waiting_idle: the engine may take a turn of
		// its loop to reach the state on an idle kiosk.
		if !reported && rep.Status.Session != nil {
			r.step(c, wire.CmdWaitingIdle, "waiting for the customer in session to finish")
			reported = true
		}
		v, ok := r.cfg.Engine.WaitView(ctx, seq)
		if !ok {
			return ctx.Err()
		}
		seq = max(seq, v.Seq)
	}
}

// park enters maintenance once the customer in session (if any) has finished: the unit is
// inhibited and no session starts.
func (r *Remote) park(ctx context.Context, c wire.Command) error {
	rep, err := r.cfg.Engine.Do(ctx, session.Command{Kind: session.CmdMaintenance, On: true})
	if err != nil {
		return err
	}
	if rep.Progress != session.ProgressWaitingIdle {
		return nil
	}
	r.step(c, wire.CmdWaitingIdle, "waiting for the customer in session to finish")
	if _, err := r.cfg.Engine.Do(ctx, session.Command{Kind: session.CmdMaintenance, On: true, Wait: true}); err != nil {
		r.undo(session.Command{Kind: session.CmdMaintenance, On: false})
		return err
	}
	return nil
}

// undo reverts what a command that did not complete asked of the engine.
func (r *Remote) undo(cmd session.Command) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := r.cfg.Engine.Do(ctx, cmd); err != nil {
		r.log.Error("undoing a command that did not complete", "kind", cmd.Kind, "err", err)
	}
}

// waitFailed is the final status of a command whose wait for idle ended early.
func (r *Remote) waitFailed(err error) (string, string) {
	if errors.Is(err, context.DeadlineExceeded) {
		return wire.CmdExpired, "the customer in session did not finish before the command expired; nothing was changed"
	}
	return wire.CmdFailed, err.Error()
}

// restart parks the kiosk, reports success (a reboot leaves no time for it after), and
// reboots the machine or ends the service.
func (r *Remote) restart(ctx context.Context, c wire.Command) (string, string) {
	act, what := r.cfg.Reboot, "reboot"
	if c.Kind == wire.CmdRestartService {
		what = "restart"
		if r.cfg.Restart != nil {
			act = func(context.Context) error { r.cfg.Restart(); return nil }
		} else {
			act = nil
		}
	}
	if act == nil {
		return wire.CmdFailed, what + " is not configured on this kiosk"
	}
	if err := r.park(ctx, c); err != nil {
		return r.waitFailed(err)
	}
	r.step(c, wire.CmdSucceeded, "kiosk parked; "+what+" now")
	if r.cfg.Drain != nil {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := r.cfg.Drain(dctx); err != nil {
			r.log.Warn("results not all published before the "+what, "err", err)
		}
		cancel()
	}
	if err := act(context.WithoutCancel(ctx)); err != nil {
		r.undo(session.Command{Kind: session.CmdMaintenance, On: false})
		r.step(c, wire.CmdFailed, what+": "+err.Error())
	}
	return "", ""
}

func (r *Remote) prepareUpdate(ctx context.Context, c wire.Command) (string, string) {
	e := r.cfg.Engine
	rep, err := e.Do(ctx, session.Command{Kind: session.CmdPrepareUpdate})
	if err != nil {
		return wire.CmdFailed, err.Error()
	}
	if rep.Progress == session.ProgressWaitingIdle {
		r.step(c, wire.CmdWaitingIdle, "finishing the session in progress")
		if _, err := e.Do(ctx, session.Command{Kind: session.CmdPrepareUpdate, Wait: true}); err != nil {
			r.undo(session.Command{Kind: session.CmdMaintenance, On: false})
			return r.waitFailed(err)
		}
	}
	if r.cfg.Flush != nil {
		if err := r.cfg.Flush(ctx); err != nil {
			return wire.CmdSucceeded, "ready (acceptor inhibited); outbox not empty: " + err.Error()
		}
	}
	return wire.CmdSucceeded, "ready: acceptor inhibited, outbox empty"
}

func (r *Remote) diagnostics(ctx context.Context) (string, string) {
	rep, err := r.cfg.Engine.Do(ctx, session.Command{Kind: session.CmdStatus})
	if err != nil {
		return wire.CmdFailed, err.Error()
	}
	d := map[string]any{"status": rep.Status}
	if r.cfg.Diagnostics != nil {
		d["kiosk"] = r.cfg.Diagnostics()
	}
	b, err := json.Marshal(d)
	if err != nil {
		return wire.CmdFailed, "diagnostics: " + err.Error()
	}
	if len(b) > maxReason {
		b = b[:maxReason]
	}
	return wire.CmdSucceeded, string(b)
}

// LimitsArgs are the args of set_limits: a version (newer than the overlay in force) and the
// limits to change; a limit left out keeps its current value.
type LimitsArgs struct {
	Version                int64  `json:"version"`
	SessionMaxMinor        *int64 `json:"session_max_minor"`
	OfflineSessionMaxMinor *int64 `json:"offline_session_max_minor"`
	OfflineTotalMaxMinor   *int64 `json:"offline_total_max_minor"`
}

// checkArgs checks the args of the kinds whose args the kiosk defines.
func checkArgs(c wire.Command) error {
	switch c.Kind {
	case wire.CmdSetLimits:
		_, err := limitsArgs(c.Args)
		return err
	case wire.CmdSetCredentials:
		_, err := credentialsArgs(c.Args)
		return err
	}
	return nil
}

func strictDecode(raw []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("args: %w", err)
	}
	return nil
}

func limitsArgs(raw []byte) (LimitsArgs, error) {
	var a LimitsArgs
	if err := strictDecode(raw, &a); err != nil {
		return a, err
	}
	if a.Version < 1 {
		return a, errors.New("args: version must be ≥ 1")
	}
	return a, nil
}

func credentialsArgs(raw []byte) (CredentialsArgs, error) {
	var a CredentialsArgs
	if err := strictDecode(raw, &a); err != nil {
		// The decoder's message may quote the value: say only that it is malformed.
		return a, errors.New("args: set_credentials needs {\"version\": n, \"roles\": {role: hash}}")
	}
	if a.Version < 1 || len(a.Roles) == 0 || len(a.Roles) > 16 {
		return a, errors.New("args: a version ≥ 1 and 1-16 roles are required")
	}
	for role, h := range a.Roles {
		if !roleRe.MatchString(role) {
			return a, fmt.Errorf("args: role name %q", role)
		}
		if !ValidPINHash(h) {
			// Never echo the value: it may be a PIN sent in clear by mistake.
			return a, fmt.Errorf("args: role %s: not a bcrypt or argon2id hash", role)
		}
	}
	return a, nil
}

// setLimits puts a limits overlay in force through the engine's command API, which checks
// it, journals it (limits_set) and keeps it across restarts. A limit the command leaves out
// keeps the value in force (the last overlay's, or the configuration's).
func (r *Remote) setLimits(ctx context.Context, c wire.Command) (string, string) {
	a, err := limitsArgs(c.Args)
	if err != nil {
		return wire.CmdFailed, err.Error()
	}
	l := r.cfg.Limits
	rep, err := r.cfg.Engine.Do(ctx, session.Command{Kind: session.CmdStatus})
	if err != nil {
		return wire.CmdFailed, err.Error()
	}
	if in := rep.Status.Limits; in != nil {
		l = config.Limits{SessionMaxMinor: in.SessionMaxMinor, OfflineSessionMaxMinor: in.OfflineSessionMaxMinor, OfflineTotalMaxMinor: in.OfflineTotalMaxMinor}
	}
	if a.SessionMaxMinor != nil {
		l.SessionMaxMinor = *a.SessionMaxMinor
	}
	if a.OfflineSessionMaxMinor != nil {
		l.OfflineSessionMaxMinor = *a.OfflineSessionMaxMinor
	}
	if a.OfflineTotalMaxMinor != nil {
		l.OfflineTotalMaxMinor = *a.OfflineTotalMaxMinor
	}
	if err := l.Validate(); err != nil {
		return wire.CmdFailed, "limits: " + err.Error()
	}
	_, err = r.cfg.Engine.Do(ctx, session.Command{Kind: session.CmdSetLimits, LimitsVersion: a.Version, CmdID: c.CmdID,
		Limits: &session.Limits{SessionMax: l.SessionMaxMinor, OfflineSessionMax: l.OfflineSessionMaxMinor, OfflineTotalMax: l.OfflineTotalMaxMinor}})
	if errors.Is(err, session.ErrUnknownCommand) {
		// Say so rather than pretend: the kiosk goes on with the limits it had.
		return wire.CmdFailed, "not supported by this engine"
	}
	if err != nil {
		return wire.CmdFailed, err.Error()
	}
	return wire.CmdSucceeded, fmt.Sprintf("limits version %d in force: session %d, offline session %d, offline total %d",
		a.Version, l.SessionMaxMinor, l.OfflineSessionMaxMinor, l.OfflineTotalMaxMinor)
}

// CredentialsArgs are the args of set_credentials: a version and, per technician role, the
// hash of its PIN (bcrypt or argon2id, in their usual string forms). A PIN in clear is
// refused.
type CredentialsArgs struct {
	Version int64             `json:"version"`
	Roles   map[string]string `json:"roles"`
}

var (
	roleRe     = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)
	bcryptRe   = regexp.MustCompile(`^\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{53}$`)
	argon2idRe = regexp.MustCompile(`^\$argon2id\$v=[0-9]+\$m=[0-9]+,t=[0-9]+,p=[0-9]+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$`)
)

// ValidPINHash reports whether s is a bcrypt or argon2id hash string.
func ValidPINHash(s string) bool { return bcryptRe.MatchString(s) || argon2idRe.MatchString(s) }

func (r *Remote) setCredentials(c wire.Command) (string, string) {
	a, err := credentialsArgs(c.Args)
	if err != nil {
		return wire.CmdFailed, err.Error()
	}
	if err := r.cfg.Journal.SetCredentials(journal.Credentials{Version: a.Version, CmdID: c.CmdID, Roles: a.Roles}); err != nil {
		return wire.CmdFailed, err.Error()
	}
	return wire.CmdSucceeded, fmt.Sprintf("credentials version %d stored for %d role(s)", a.Version, len(a.Roles))
}
