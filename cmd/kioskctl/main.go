// Command kioskctl is the technician's tool for a kiosk.
//
//	kioskctl journal verify [-journal PATH] [-quick]   check the hash chain and the money views
//	kioskctl journal export [-journal PATH] [-hot]     print every event as JSON lines
//	kioskctl journal archive [-journal PATH] [-older-than D]   move settled history to segments
//
// verify is the complete check (every page, the chain from the first event through the
// archive segments, every view, the checkpoint against the history) and stores a fresh
// checkpoint when the file is writable; -quick is the start-up check from the checkpoint.
// export includes the archive segments unless -hot.
//
// With kioskd running (its control socket answers) and no -journal, verify and export read
// the live journal through kioskd, in one read transaction. The other commands (status,
// devices, conditions, counters, outbox, uncertain, receipt, maintenance, reprint, diag
// bundle, selftest printer|acceptor|scanner|sensors, signoff, collect; see liveUsage) talk
// to the running kioskd. pin-hash makes a role PIN's argon2id hash for the service menu.
// update-gate answers an
// update client's hook whether an update may start now (exit 0 go, 21 retry later, 1 error;
// updategate.go).
//
// Measuring a machine (journal commit against raw fsync, ...) is cmd/kioskbench, a command of
// its own because it links the emulators, the broker and the reference ledger.
//
// Offline, the journal is opened read-only; a running kioskd holds its lock, so -journal needs
// kioskd stopped or a copy of the file.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/kiosk/svcmenu"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kioskctl:", err)
		// update-gate's statuses are an update client's protocol (0 go, 21 retry, 1 error).
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}

const usage = `usage:
  kioskctl journal verify [-journal PATH] [-quick]
  kioskctl journal export [-journal PATH] [-hot]
  kioskctl journal archive [-journal PATH] [-older-than DURATION]
  kioskctl pin-hash              read a PIN (4-12 digits) on standard input, print its argon2id
                                 hash for service_menu.pin_hashes or set_credentials` + liveUsage

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
	case "update-gate":
		return updateGate(args[1:], out)
	case "pin-hash":
		return pinHash(os.Stdin, out)
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

// pinHash prints the argon2id hash of the PIN on in (never echoed, never in an argument
// where the process list would show it).
func pinHash(in io.Reader, out io.Writer) error {
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && err != io.EOF {
		return err
	}
	h, err := svcmenu.HashPIN(strings.TrimSpace(line), svcmenu.DefaultParams)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, h)
	return nil
}

func journalCmd(sub string, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("journal "+sub, flag.ContinueOnError)
	path := fs.String("journal", "/var/lib/kioskd/journal.db", "journal file")
	quick := fs.Bool("quick", false, "verify: only the start-up check from the last checkpoint")
	hot := fs.Bool("hot", false, "export: only the events still in the journal file, not the archive segments")
	olderThan := fs.Duration("older-than", 30*24*time.Hour, "archive: move settled history older than this")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if _, err := os.Stat(*path); err != nil {
		return err
	}
	switch sub {
	case "verify":
		t0 := time.Now()
		var rep journal.VerifyReport
		var err error
		what, stored := "start-up", false
		if *quick {
			rep, err = journal.CheckFile(*path)
		} else {
			what = "full"
			rep, stored, err = fullCheck(*path)
		}
		if err != nil {
			fmt.Fprintf(out, "FAIL %s: %v\n", *path, explainOpen(err))
			return errors.New("journal verification failed")
		}
		fmt.Fprintf(out, "OK %s: %s check in %s: %d events (%d archived, checked from %d), %d sessions, %d top-ups, head %s\n",
			*path, what, time.Since(t0).Round(time.Millisecond), rep.Events, rep.Archived, rep.From, rep.Sessions, rep.Topups, rep.Head)
		if stored {
			fmt.Fprintf(out, "checkpoint stored at event %d\n", rep.Events)
		}
		return nil
	case "export":
		j, err := journal.Open(*path, journal.Options{ReadOnly: true, SkipVerify: true, LockTimeout: time.Second})
		if err != nil {
			return explainOpen(err)
		}
		defer func() { _ = j.Close() }()
		if *hot {
			return j.ExportJSONL(out)
		}
		return j.ExportAll(out)
	case "archive":
		j, err := journal.Open(*path, journal.Options{LockTimeout: time.Second})
		if err != nil {
			return explainOpen(err)
		}
		defer func() { _ = j.Close() }()
		rep, err := j.Archive(context.Background(), journal.ArchiveOptions{OlderThan: *olderThan})
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "archived %d events into %d segments (the file is compacted at the next open when mostly free)\n", rep.Events, len(rep.Segments))
		return nil
	}
	return fmt.Errorf("unknown journal command %q\n%s", sub, usage)
}

// fullCheck is the complete check. When the file can be opened for writing (kioskd stopped)
// the chain and views check runs as VerifyFull, which also stores a fresh checkpoint so the
// next start-up begins there; otherwise (kioskd holds the lock, a read-only copy) it is
// CheckFileFull, which stores nothing.
func fullCheck(path string) (journal.VerifyReport, bool, error) {
	if err := journal.CheckPages(path); err != nil {
		return journal.VerifyReport{}, false, err
	}
	j, err := journal.Open(path, journal.Options{SkipVerify: true, LockTimeout: 100 * time.Millisecond})
	if err != nil {
		rep, err := journal.CheckFileFull(path)
		return rep, false, err
	}
	defer func() { _ = j.Close() }()
	rep, err := j.VerifyFull(context.Background())
	return rep, err == nil, err
}

// explainOpen adds the likely cause to a lock timeout: bbolt's lock is held by kioskd.
func explainOpen(err error) error {
	if err != nil && strings.Contains(err.Error(), "timeout") {
		return fmt.Errorf("%w (is kioskd running? stop it or work on a copy of the file)", err)
	}
	return err
}
