package main

import (
	"fmt"
	"os"
	"testing"
)

func BenchmarkRawFsync200B(b *testing.B)        { rawFsync(b, b.TempDir()) }
func BenchmarkJournalCreditCommit(b *testing.B) { journalCredit(b, b.TempDir()) }
func BenchmarkJournalNote(b *testing.B)         { journalNote(b, b.TempDir()) }
func BenchmarkFinishToAck(b *testing.B) {
	var l latencies
	finishToAck(b, b.TempDir(), &l)
	b.ReportMetric(float64(l.Percentile(50).Microseconds()), "p50-µs")
	b.ReportMetric(float64(l.Percentile(99).Microseconds()), "p99-µs")
}
func BenchmarkRawPublishQoS1(b *testing.B) { rawPublish(b, nil) }

// BenchmarkRecovery1M measures start-up recovery on a journal of 1,000,000 events. Building
// the journal takes a while; set KIOSKD_BENCH_EVENTS to change the size.
func BenchmarkRecovery1M(b *testing.B) {
	events := uint64(1_000_000)
	if s := os.Getenv("KIOSKD_BENCH_EVENTS"); s != "" {
		fmt.Sscan(s, &events)
	}
	path, err := bigJournal(b.TempDir(), events)
	if err != nil {
		b.Fatal(err)
	}
	recovery(b, path)
}
