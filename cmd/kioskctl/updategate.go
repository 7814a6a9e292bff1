package main

// kioskctl update-gate: may an update or reboot start now? For update clients' hooks (see
// deploy/README.md, "Updates"): the exit status is what a Mender state script returns.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/kioskd/kioskd/kiosk/ctl"
)

// Exit statuses of update-gate, those of a Mender state script.
const (
	gateExitGo    = 0
	gateExitError = 1
	// gateExitRetry is Mender's "retry later": the script is run again after
	// StateScriptRetryIntervalSeconds, until StateScriptRetryTimeoutSeconds.
	gateExitRetry = 21
)

const updateGateUsage = `usage: kioskctl update-gate [-prepare] [-wait DURATION] [-json] [-socket PATH]
  exit 0: an update or reboot may start now; 21: not now, retry later; 1: error
  -prepare   park the kiosk first (finish the session, inhibit the acceptor); it stays in
             maintenance until 'kioskctl maintenance off'
  -wait D    with -prepare: wait up to D for the kiosk to be ready (default 0: answer at once)`

// exitError is an error with the process's exit status.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// gateResult is what -json prints: the gate's answer, or the error.
type gateResult struct {
	ctl.UpdateGate
	Error string `json:"error,omitempty"`
}

func updateGate(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("update-gate", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	socket := fs.String("socket", defaultSocket(), "kioskd's control socket")
	asJSON := fs.Bool("json", false, "print JSON")
	prepare := fs.Bool("prepare", false, "park the kiosk first")
	wait := fs.Duration("wait", 0, "with -prepare: how long to wait for ready")
	if err := fs.Parse(args); err != nil {
		return &exitError{gateExitError, fmt.Errorf("update-gate: %v\n%s", err, updateGateUsage)}
	}
	if fs.NArg() > 0 || *wait < 0 || (*wait > 0 && !*prepare) || *wait > ctl.MaxUpdateWait {
		return &exitError{gateExitError, fmt.Errorf("update-gate: bad arguments (-wait needs -prepare, at most %v)\n%s", ctl.MaxUpdateWait, updateGateUsage)}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *wait+time.Minute)
	defer cancel()
	g, err := askGate(ctx, ctl.NewClient(*socket), ctl.UpdateGateRequest{Prepare: *prepare, WaitMS: wait.Milliseconds()})
	if err != nil {
		if *asJSON {
			_ = json.NewEncoder(out).Encode(gateResult{UpdateGate: ctl.UpdateGate{Verdict: "error"}, Error: err.Error()})
		}
		return &exitError{gateExitError, fmt.Errorf("update-gate: %w", err)}
	}
	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(gateResult{UpdateGate: g}); err != nil {
			return &exitError{gateExitError, err}
		}
	} else {
		printGate(out, g)
	}
	switch g.Verdict {
	case ctl.GateGo:
		return nil
	case ctl.GateRetryLater:
		return &exitError{gateExitRetry, errors.New("update-gate: not now, retry later: " + strings.Join(g.Reasons, "; "))}
	}
	return &exitError{gateExitError, fmt.Errorf("update-gate: kioskd answered an unknown verdict %q", g.Verdict)}
}

// askGate asks kioskd. A kioskd that does not run is a go: nothing is in flight, and the
// journal on disk holds everything (this is also how a kiosk whose kioskd fails to start
// gets the update that fixes it).
func askGate(ctx context.Context, c *ctl.Client, req ctl.UpdateGateRequest) (ctl.UpdateGate, error) {
	notRunning := ctl.UpdateGate{Verdict: ctl.GateGo, State: "not running",
		Notes: []string{"kioskd is not running: nothing is in flight; the journal on disk holds every note and top-up"}}
	if !c.Running() {
		return notRunning, nil
	}
	g, err := c.UpdateGate(ctx, req)
	if errors.Is(err, ctl.ErrNotRunning) && !c.Running() {
		return notRunning, nil // it stopped between the two
	}
	return g, err
}

func printGate(w io.Writer, g ctl.UpdateGate) {
	switch g.Verdict {
	case ctl.GateGo:
		fmt.Fprintln(w, "GO: an update or reboot may start now")
	case ctl.GateRetryLater:
		fmt.Fprintln(w, "RETRY LATER: not now")
	default:
		fmt.Fprintf(w, "verdict %q\n", g.Verdict)
	}
	for _, r := range g.Reasons {
		fmt.Fprintf(w, "  because: %s\n", r)
	}
	if g.State != "" {
		fmt.Fprintf(w, "state: %s  session open: %v  note in path: %v  prepared: %v\n", g.State, g.SessionOpen, g.NoteInPath, g.Prepared)
	}
	if g.OutboxPersisted {
		fmt.Fprintf(w, "outbox: %d top-up(s), %s, journaled\n", g.OutboxDepth, money(g.OutboxMinor, g.Currency))
	}
	for _, n := range g.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
}
