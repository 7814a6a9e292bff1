package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/kioskd/kioskd/kiosk/perf"
)

// benchCmd runs the measurements of package perf and prints a table. Each figure has its
// baseline from the same run: journal commits against a raw 200-byte write+fsync on the same
// disk, Finish→ack against a raw QoS 1 publish on the same broker.
func benchCmd(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	dir := fs.String("dir", "", "directory on the disk to measure (default: a temporary directory)")
	benchtime := fs.Duration("benchtime", time.Second, "target time per measurement")
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
	flag.CommandLine.Set("test.benchtime", benchtime.String())
	run := func(f func(b *testing.B)) testing.BenchmarkResult {
		return testing.Benchmark(func(b *testing.B) {
			b.ReportAllocs()
			f(b)
		})
	}
	fmt.Fprintf(out, "kioskd benchmarks (dir %s, about %s per measurement)\n\n", *dir, *benchtime)
	fsync := run(func(b *testing.B) { perf.RawFsync(b, *dir) })
	credit := run(func(b *testing.B) { perf.JournalCredit(b, *dir) })
	note := run(func(b *testing.B) { perf.JournalNote(b, *dir) })
	var ackLat, pubLat perf.Latencies
	ack := run(func(b *testing.B) { perf.FinishToAck(b, *dir, &ackLat) })
	pub := run(func(b *testing.B) { perf.RawPublish(b, &pubLat) })

	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "measurement\tper op\tp50\tp99\tallocs/op\tbaseline\tratio\t")
	row := func(name string, r testing.BenchmarkResult, p50, p99 time.Duration, base string, baseNs int64) {
		ratio := "-"
		if baseNs > 0 {
			ratio = fmt.Sprintf("%.2fx", float64(r.NsPerOp())/float64(baseNs))
		}
		ps := func(d time.Duration) string {
			if d == 0 {
				return "-"
			}
			return d.Round(time.Microsecond).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t\n", name, time.Duration(r.NsPerOp()).Round(time.Microsecond), ps(p50), ps(p99), r.AllocsPerOp(), base, ratio)
	}
	row("raw 200 B write+fsync (baseline)", fsync, 0, 0, "-", 0)
	row("journal: credit commit (1 note)", credit, 0, 0, "raw fsync", fsync.NsPerOp())
	row("journal: intent+credit (1 note)", note, 0, 0, "raw fsync", fsync.NsPerOp())
	row("raw QoS1 publish+PUBACK (baseline)", pub, pubLat.Percentile(50), pubLat.Percentile(99), "-", 0)
	row("Finish -> signed ack applied", ack, ackLat.Percentile(50), ackLat.Percentile(99), "raw publish", pub.NsPerOp())
	tw.Flush()
	fmt.Fprintf(out, "\nFinish->ack samples: %d; raw publish samples: %d\n", ackLat.N(), pubLat.N())
	return nil
}
