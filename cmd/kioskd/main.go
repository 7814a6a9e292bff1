// Command kioskd is the kiosk daemon: it drives the bill acceptor, receipt printer and QR
// scanner, journals every cash event, syncs top-ups to the central ledger over MQTT and serves
// the customer screen. See the README for configuration.
//
//	kioskd -config /etc/kioskd/kioskd.json
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/kioskd/kioskd/kiosk/config"
	"github.com/kioskd/kioskd/kiosk/daemon"
	"github.com/kioskd/kioskd/kiosk/journal"
)

var version = "dev"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "kioskd:", err)
		os.Exit(1)
	}
}

func run() error {
	cfgPath := flag.String("config", "/etc/kioskd/kioskd.json", "configuration file")
	check := flag.Bool("check-config", false, "validate the configuration file and exit")
	showVersion := flag.Bool("version", false, "print the version and exit")
	checkJournal := flag.String("check-journal", "", "check a journal file (bbolt consistency, hash chain, money views) and exit; kioskd runs this in a child process at start")
	lockWait := flag.Duration("lock-wait", 10*time.Second, "with -check-journal: how long to wait for a journal another process holds")
	flag.Parse()
	if *checkJournal != "" {
		rep, err := daemon.CheckJournalFile(context.Background(), *checkJournal, *lockWait)
		if err != nil {
			return err
		}
		fmt.Printf("journal OK: %d events, %d sessions, %d top-ups\n", rep.Events, rep.Sessions, rep.Topups)
		return nil
	}
	if *showVersion {
		fmt.Println(version)
		return nil
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	if *check {
		fmt.Println("configuration OK")
		return nil
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.Log.Level)); err != nil {
		return fmt.Errorf("log level: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	every, feed, err := watchdogPlan()
	if err != nil {
		log.Warn("systemd watchdog settings unreadable; not feeding it", "err", err)
	}
	// The watchdog runs from READY=1 until Run has returned; the stop begins with ctx.
	wdCtx, wdStop := context.WithCancel(context.Background())
	defer wdStop()
	wdDone := make(chan struct{})
	started := false // ready runs on Run's goroutine, this one
	var notifier daemon.Notifier = systemdNotifier{}
	var sys *daemon.System
	ready := func(addr string) {
		if err := notifier.Notify("READY=1"); err != nil {
			log.Warn("sd_notify", "err", err)
		}
		wd := sys.NewWatchdog(notifier, every, feed, ctx.Done())
		started = true
		go func() { defer close(wdDone); wd.Run(wdCtx) }()
	}
	// A second kioskd on the same journal ends here with an error (and exit status 1)
	// within journal.lock_wait, having opened no device.
	sys, err = daemon.New(ctx, cfg, daemon.Options{Version: version, Logger: log,
		Ready: ready, Notifier: notifier,
		CheckJournal: func(ctx context.Context, path string, lockWait time.Duration) error {
			return journal.CheckInChild(ctx, exe, []string{"-lock-wait", lockWait.String(), "-check-journal"}, path, 5*time.Minute)
		}})
	if err != nil {
		return err
	}
	err = sys.Run(ctx)
	wdStop()
	if started {
		// A notification blocks while systemd does not read its socket: that must not hold
		// up the exit.
		select {
		case <-wdDone:
		case <-time.After(time.Second):
		}
	}
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
