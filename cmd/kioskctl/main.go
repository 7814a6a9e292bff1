// Command kioskctl is the technician's tool for a kiosk.
//
//	kioskctl journal verify [-journal PATH]   check the hash chain and the money views
//	kioskctl journal export [-journal PATH]   print every event as JSON lines
//
// With kioskd running (its control socket answers) and no -journal, verify and export read
// the live journal through kioskd, in one read transaction. The other commands (status,
// devices, conditions, counters, outbox, uncertain, receipt, maintenance, reprint, diag
// bundle, selftest printer; see liveUsage) talk to the running kioskd.
//
// Measuring a machine (journal commit against raw fsync, ...) is cmd/kioskbench, a command of
// its own because it links the emulators, the broker and the reference ledger.
//
// Offline, the journal is opened read-only; a running kioskd holds its lock, so -journal needs
// kioskd stopped or a copy of the file.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/kioskd/kioskd/kiosk/journal"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kioskctl:", err)
		os.Exit(1)
	}
}

const usage = `usage:
  kioskctl journal verify [-journal PATH]
  kioskctl journal export [-journal PATH]` + liveUsage

func run(args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	switch args[0] {
	case "journal":
		if len(args) < 2 {
			return errors.New(usage)
		}
		// On a kiosk whose kioskd runs, verify and export read the live journal through it.
		if handled, err := liveJournal(args[1], args[2:], out); handled {
			return err
		}
		return journalCmd(args[1], args[2:], out)
	case "bench":
		return errors.New("bench moved to its own command: kioskbench (make bench)")
	case "help", "-h", "--help":
		fmt.Fprintln(out, usage)
		return nil
	}
	if _, ok := liveCommands[args[0]]; ok {
		return runLive(args[0], args[1:], out)
	}
	return fmt.Errorf("unknown command %q\n%s", args[0], usage)
}

func journalCmd(sub string, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("journal "+sub, flag.ContinueOnError)
	path := fs.String("journal", "/var/lib/kioskd/journal.db", "journal file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if _, err := os.Stat(*path); err != nil {
		return err
	}
	switch sub {
	case "verify":
		// bbolt's page-level check, then the hash chain and the money views.
		rep, err := journal.CheckFile(*path)
		if err != nil {
			fmt.Fprintf(out, "FAIL %s: %v\n", *path, explainOpen(err))
			return errors.New("journal verification failed")
		}
		fmt.Fprintf(out, "OK %s: %d events, %d sessions, %d top-ups, head %s\n", *path, rep.Events, rep.Sessions, rep.Topups, rep.Head)
		return nil
	case "export":
		j, err := journal.Open(*path, journal.Options{ReadOnly: true, SkipVerify: true, LockTimeout: time.Second})
		if err != nil {
			return explainOpen(err)
		}
		defer j.Close()
		return j.ExportJSONL(out)
	}
	return fmt.Errorf("unknown journal command %q\n%s", sub, usage)
}

// explainOpen adds the likely cause to a lock timeout: bbolt's lock is held by kioskd.
func explainOpen(err error) error {
	if err != nil && strings.Contains(err.Error(), "timeout") {
		return fmt.Errorf("%w (is kioskd running? stop it or work on a copy of the file)", err)
	}
	return err
}
