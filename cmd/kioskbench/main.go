// Command kioskbench measures a machine for kioskd and prints a table: journal commits
// against a raw write+fsync on the same disk, Finish→signed ack against a raw QoS 1 publish
// on the same (in-process) broker, per acceptor protocol a frame's encode and decode, a full
// note through driver, emulator, session engine and journal, and the CPU its polling costs,
// and start-up recovery on a large journal. Every figure is reported next to a baseline
// measured in the same run, because absolute numbers mean little across boards; on a kiosk
// in the field it tells a technician whether an SD card is fast enough.
//
//	kioskbench [-dir DIR] [-benchtime 1s] [-events 1000000] [-poll 2s] [-days 365] [-per-day 300] [-archive-after 720h] [-footprint=true] [-idle 10s]
//
// Start-up is reported twice on the large journal: the full check from the first event (what
// every start-up cost before checkpoints, and what the background verification still does)
// and kioskd's start-up from the verified checkpoint. The footprint simulation writes a year
// of sessions with weekly archiving and reports the hot file and the archive per event. The
// footprint rows build kioskd and kioskctl per board architecture (binary sizes) and run
// kioskd against the emulators: resident memory idle, in a session and at its peak, and idle
// CPU at the default polling, each next to its limit.
//
// It links the emulators, the broker and the reference ledger, so it is a command of its
// own: kioskd and kioskctl do not (cmd/deps_test.go checks it). `make bench` runs it.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor/conformance"
	"github.com/kioskd/kioskd/hw-sim/simrig"
)

func main() {
	err := benchCmd(os.Args[1:], os.Stdout)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kioskbench:", err)
		os.Exit(1)
	}
}

// benchCmd runs the measurements and prints a table. Each figure has its baseline from the
// same run: journal commits against a raw 200-byte write+fsync on the same disk, Finish→ack
// against a raw QoS 1 publish on the same broker, poll CPU against the poll interval.
func benchCmd(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("kioskbench", flag.ContinueOnError)
	dir := fs.String("dir", "", "directory on the disk to measure (default: a temporary directory)")
	benchtime := fs.Duration("benchtime", time.Second, "target time per measurement")
	events := fs.Uint64("events", 1_000_000, "journal size for the start-up recovery measurement (0 skips it)")
	pollFor := fs.Duration("poll", 2*time.Second, "how long to measure polling CPU per protocol")
	days := fs.Int("days", 365, "days of simulated traffic for the journal footprint (0 skips it)")
	perDay := fs.Int("per-day", 300, "sessions per simulated day")
	keep := fs.Duration("archive-after", 30*24*time.Hour, "age past which settled history is archived in the simulation")
	foot := fs.Bool("footprint", true, "build kioskd and kioskctl for every board architecture and measure kioskd's memory and idle CPU against the emulators (needs the go tool and the source tree)")
	idleFor := fs.Duration("idle", 10*time.Second, "how long kioskd's idle CPU is measured")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "kioskd-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		*dir = d
	}
	// testing.Benchmark reads -test.benchtime from the testing flags.
	testing.Init()
	_ = flag.CommandLine.Set("test.benchtime", benchtime.String())
	run := func(f func(b *testing.B)) testing.BenchmarkResult {
		return testing.Benchmark(func(b *testing.B) {
			b.ReportAllocs()
			f(b)
		})
	}
	fmt.Fprintf(out, "kioskd benchmarks (dir %s, about %s per measurement)\n\n", *dir, *benchtime)
	var failed failures

	// Journal and sync.
	fsync := run(func(b *testing.B) { rawFsync(b, *dir) })
	credit := run(func(b *testing.B) { journalCredit(b, *dir) })
	note := run(func(b *testing.B) { journalNote(b, *dir) })
	var ackLat, pubLat latencies
	ack := run(func(b *testing.B) { finishToAck(b, *dir, &ackLat) })
	pub := run(func(b *testing.B) { rawPublish(b, &pubLat) })

	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "measurement\tper op\tp50\tp99\tallocs/op\tbaseline\tratio\t")
	ps := func(d time.Duration) string {
		if d == 0 {
			return "-"
		}
		return d.Round(time.Microsecond).String()
	}
	row := func(name string, r testing.BenchmarkResult, p50, p99 time.Duration, base string, baseNs int64) {
		ratio := "-"
		if baseNs > 0 && r.N > 0 {
			ratio = fmt.Sprintf("%.2fx", float64(r.NsPerOp())/float64(baseNs))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t\n", name, failed.per(name, r, time.Microsecond), ps(p50), ps(p99), r.AllocsPerOp(), base, ratio)
	}
	row("raw 200 B write+fsync (baseline)", fsync, 0, 0, "-", 0)
	row("journal: credit commit+seal (1 note)", credit, 0, 0, "raw fsync", fsync.NsPerOp())
	row("journal: intent+credit, 2 seals (1 note)", note, 0, 0, "raw fsync", fsync.NsPerOp())
	row("raw QoS1 publish+PUBACK (baseline)", pub, pubLat.Percentile(50), pubLat.Percentile(99), "-", 0)
	row("Finish -> signed ack applied", ack, ackLat.Percentile(50), ackLat.Percentile(99), "raw publish", pub.NsPerOp())
	tw.Flush()
	fmt.Fprintf(out, "(Finish->ack samples: %d; raw publish samples: %d)\n\n", ackLat.N(), pubLat.N())

	// Per protocol: frame codec, a whole note through driver+emulator+engine+journal, and the
	// CPU polling costs at the production rate.
	fmt.Fprintln(out, "per acceptor protocol")
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "protocol\tencode ns/frame\tdecode ns/frame\tfull note\tCPU/poll (incl. emulator)\tpoll interval\t% of one core\t")
	for _, sp := range simrig.Protocols() {
		for _, c := range sp.Conformance {
			p := c.Name
			enc, dec := "-", "-"
			if c.Codec != nil {
				encode, decode := c.Codec()
				enc = failed.ns(p+" encode", run(func(b *testing.B) {
					for b.Loop() {
						encode()
					}
				}))
				dec = failed.ns(p+" decode", run(func(b *testing.B) {
					for b.Loop() {
						decode()
					}
				}))
			}
			n := run(func(b *testing.B) { conformance.Note(b, p, *dir) })
			// Units that are not polled (pulse) have no polling cost: PollCost refuses them.
			cpuPoll, share, interval := "-", "-", "-"
			if polls, cpu, err := conformance.PollCost(p, *pollFor); err == nil && polls > 0 {
				per := cpu / time.Duration(polls)
				iv := 200 * time.Millisecond
				cpuPoll, interval = per.Round(100*time.Nanosecond).String(), iv.String()
				share = fmt.Sprintf("%.4f%%", 100*float64(per)/float64(iv))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", p, enc, dec, failed.per(p+" full note", n, 10*time.Microsecond), cpuPoll, interval, share)
		}
	}
	tw.Flush()
	fmt.Fprintln(out, "(full note: insert -> escrow -> stack -> credit committed -> ACK, fast polling, journal with fsync)")

	if *events > 0 {
		fmt.Fprintf(out, "\nstart-up on a journal of %d events (building it first, without fsync)...\n", *events)
		t0 := time.Now()
		path, err := bigJournal(*dir, *events)
		if err != nil {
			return err
		}
		st, _ := os.Stat(path)
		built := time.Since(t0).Round(time.Second)
		rec := testing.Benchmark(func(b *testing.B) { recovery(b, path) })
		fmt.Fprintf(out, "recovery (open + full chain and views check): %s for %d events, journal file %.1f MiB, %.0f bytes/event (built in %s)\n",
			failed.per("recovery", rec, time.Millisecond), *events, float64(st.Size())/(1<<20), float64(st.Size())/float64(*events), built)
		first, err := prepareCheckpoint(path)
		if err != nil {
			return err
		}
		up := testing.Benchmark(func(b *testing.B) { startup(b, path) })
		fmt.Fprintf(out, "start-up with checkpoint (child check + open, from the checkpoint): %s (the first open, which stored it: %s)\n",
			failed.per("start-up with checkpoint", up, 100*time.Microsecond), first.Round(time.Millisecond))
		bg, err := backgroundVerify(path)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "background full verification (VerifyFull, lowest priority, small transactions): %s\n", bg.Round(time.Millisecond))
	}
	if *days > 0 && *perDay > 0 {
		fmt.Fprintf(out, "\njournal footprint after %d days of %d sessions/day, settled history archived after %s (weekly)...\n", *days, *perDay, *keep)
		y, err := simulateYear(*dir, *days, *perDay, *keep)
		if err != nil {
			return err
		}
		per := func(b int64, n uint64) float64 {
			if n == 0 {
				return 0
			}
			return float64(b) / float64(n)
		}
		fmt.Fprintf(out, "simulated traffic: %d events; hot file %.1f MiB (%.1f MiB after compaction at open) holding %d events, %.0f bytes/event; %d archive segments %.1f MiB, %.0f bytes/event archived (built in %s)\n",
			y.Events, float64(y.HotBytes)/(1<<20), float64(y.HotBytesCompacted)/(1<<20), y.HotEvents, per(y.HotBytesCompacted, y.HotEvents),
			y.Segments, float64(y.ArchBytes)/(1<<20), per(y.ArchBytes, y.Events-y.HotEvents), y.Built.Round(time.Second))
	}
	if *foot {
		if err := footprint(out, *dir, *idleFor); err != nil {
			failed = append(failed, "footprint")
			fmt.Fprintln(out, err)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d measurements failed: %s (go test -run '^$' -bench . on the package that measures it prints why)", len(failed), strings.Join(failed, ", "))
	}
	return nil
}

// failures names the measurements that failed. testing.Benchmark reports a failed
// benchmark as a result without iterations and drops its message, so the table says FAILED
// rather than a time of zero, and the command fails.
type failures []string

// per formats a result's time per operation, rounded.
func (f *failures) per(name string, r testing.BenchmarkResult, round time.Duration) string {
	if r.N == 0 {
		*f = append(*f, name)
		return "FAILED"
	}
	return time.Duration(r.NsPerOp()).Round(round).String()
}

// ns formats a result's nanoseconds per operation.
func (f *failures) ns(name string, r testing.BenchmarkResult) string {
	if r.N == 0 {
		*f = append(*f, name)
		return "FAILED"
	}
	return fmt.Sprint(r.NsPerOp())
}
