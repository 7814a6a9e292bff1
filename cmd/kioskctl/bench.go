package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor/ccnet"
	"github.com/kioskd/kioskd/devices/acceptor/conformance"
	"github.com/kioskd/kioskd/devices/acceptor/id003"
	"github.com/kioskd/kioskd/devices/acceptor/ssp"
	"github.com/kioskd/kioskd/kiosk/perf"
)

// benchCmd runs the measurements and prints a table. Each figure has its baseline from the
// same run: journal commits against a raw 200-byte write+fsync on the same disk, Finish→ack
// against a raw QoS 1 publish on the same broker, poll CPU against the poll interval.
func benchCmd(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	dir := fs.String("dir", "", "directory on the disk to measure (default: a temporary directory)")
	benchtime := fs.Duration("benchtime", time.Second, "target time per measurement")
	events := fs.Uint64("events", 1_000_000, "journal size for the start-up recovery measurement (0 skips it)")
	pollFor := fs.Duration("poll", 2*time.Second, "how long to measure polling CPU per protocol")
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

	// Journal and sync.
	fsync := run(func(b *testing.B) { perf.RawFsync(b, *dir) })
	credit := run(func(b *testing.B) { perf.JournalCredit(b, *dir) })
	note := run(func(b *testing.B) { perf.JournalNote(b, *dir) })
	var ackLat, pubLat perf.Latencies
	ack := run(func(b *testing.B) { perf.FinishToAck(b, *dir, &ackLat) })
	pub := run(func(b *testing.B) { perf.RawPublish(b, &pubLat) })

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
		if baseNs > 0 {
			ratio = fmt.Sprintf("%.2fx", float64(r.NsPerOp())/float64(baseNs))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t\n", name, time.Duration(r.NsPerOp()).Round(time.Microsecond), ps(p50), ps(p99), r.AllocsPerOp(), base, ratio)
	}
	row("raw 200 B write+fsync (baseline)", fsync, 0, 0, "-", 0)
	row("journal: credit commit (1 note)", credit, 0, 0, "raw fsync", fsync.NsPerOp())
	row("journal: intent+credit (1 note)", note, 0, 0, "raw fsync", fsync.NsPerOp())
	row("raw QoS1 publish+PUBACK (baseline)", pub, pubLat.Percentile(50), pubLat.Percentile(99), "-", 0)
	row("Finish -> signed ack applied", ack, ackLat.Percentile(50), ackLat.Percentile(99), "raw publish", pub.NsPerOp())
	tw.Flush()
	fmt.Fprintf(out, "(Finish->ack samples: %d; raw publish samples: %d)\n\n", ackLat.N(), pubLat.N())

	// Per protocol: frame codec, a whole note through driver+emulator+engine+journal, and the
	// CPU polling costs at the production rate.
	fmt.Fprintln(out, "per acceptor protocol")
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "protocol\tencode ns/frame\tdecode ns/frame\tfull note\tCPU/poll (incl. emulator)\tpoll interval\t% of one core\t")
	codec := frameCodecs()
	for _, p := range conformance.Protocols() {
		enc, dec := "-", "-"
		if c, ok := codec[p]; ok {
			enc = fmt.Sprint(run(c.encode).NsPerOp())
			dec = fmt.Sprint(run(c.decode).NsPerOp())
		}
		n := run(func(b *testing.B) { conformance.Note(b, p, *dir) })
		cpuPoll, share, interval := "-", "-", "-"
		if p != "pulse" {
			polls, cpu, err := conformance.PollCost(p, *pollFor)
			if err == nil && polls > 0 {
				per := cpu / time.Duration(polls)
				iv := 200 * time.Millisecond
				cpuPoll, interval = per.Round(100*time.Nanosecond).String(), iv.String()
				share = fmt.Sprintf("%.4f%%", 100*float64(per)/float64(iv))
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", p, enc, dec, time.Duration(n.NsPerOp()).Round(10*time.Microsecond), cpuPoll, interval, share)
	}
	tw.Flush()
	fmt.Fprintln(out, "(full note: insert -> escrow -> stack -> credit committed -> ACK, fast polling, journal with fsync)")

	if *events > 0 {
		fmt.Fprintf(out, "\nstart-up recovery on a journal of %d events (building it first, without fsync)...\n", *events)
		t0 := time.Now()
		path, err := perf.BigJournal(*dir, *events)
		if err != nil {
			return err
		}
		st, _ := os.Stat(path)
		rec := testing.Benchmark(func(b *testing.B) { perf.Recovery(b, path) })
		fmt.Fprintf(out, "recovery (open + full chain and views check): %s for %d events, journal file %.1f MiB (built in %s)\n",
			time.Duration(rec.NsPerOp()).Round(time.Millisecond), *events, float64(st.Size())/(1<<20), time.Since(t0).Round(time.Second))
	}
	return nil
}

type codecBench struct{ encode, decode func(b *testing.B) }

// frameCodecs measures one status poll's frames: encoding the host's request and decoding a
// typical reply.
func frameCodecs() map[string]codecBench {
	id003Reply, _ := id003.Encode(0x13, 0x63) // ESCROW + code
	ccnetReply, _ := ccnet.Encode(0x03, 0x80, 0x04)
	sspReply, _ := ssp.Encode(ssp.Frame{Seq: true, Data: []byte{0xF0, 0xEF, 0x02}})
	ciph := ssp.NewCipher(ssp.MakeKey(0x0123456789ABCDEF, 0x1122334455667788))
	sealed, _ := ciph.Seal(nil, 7, []byte{0xF0, 0xEF, 0x02}, nil)
	esspReply, _ := ssp.Encode(ssp.Frame{Seq: true, Data: sealed})
	return map[string]codecBench{
		"id003": {
			encode: func(b *testing.B) {
				for b.Loop() {
					id003.Encode(0x11)
				}
			},
			decode: func(b *testing.B) {
				for b.Loop() {
					id003.Decode(id003Reply)
				}
			},
		},
		"ccnet": {
			encode: func(b *testing.B) {
				for b.Loop() {
					ccnet.Encode(0x03, 0x33)
				}
			},
			decode: func(b *testing.B) {
				for b.Loop() {
					ccnet.Decode(ccnetReply)
				}
			},
		},
		"ssp": {
			encode: func(b *testing.B) {
				for b.Loop() {
					ssp.Encode(ssp.Frame{Seq: true, Data: []byte{0x07}})
				}
			},
			decode: func(b *testing.B) {
				for b.Loop() {
					ssp.Decode(sspReply)
				}
			},
		},
		"essp": {
			encode: func(b *testing.B) {
				for b.Loop() {
					p, _ := ciph.Seal(nil, 8, []byte{0x07}, nil)
					ssp.Encode(ssp.Frame{Seq: true, Data: p})
				}
			},
			decode: func(b *testing.B) {
				for b.Loop() {
					f, _, _ := ssp.Decode(esspReply)
					ciph.Open(f.Data, 7)
				}
			},
		},
	}
}
