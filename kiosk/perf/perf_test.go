package perf

import "testing"

func BenchmarkRawFsync200B(b *testing.B)        { RawFsync(b, b.TempDir()) }
func BenchmarkJournalCreditCommit(b *testing.B) { JournalCredit(b, b.TempDir()) }
func BenchmarkJournalNote(b *testing.B)         { JournalNote(b, b.TempDir()) }
func BenchmarkFinishToAck(b *testing.B) {
	var l Latencies
	FinishToAck(b, b.TempDir(), &l)
	b.ReportMetric(float64(l.Percentile(50).Microseconds()), "p50-µs")
	b.ReportMetric(float64(l.Percentile(99).Microseconds()), "p99-µs")
}
func BenchmarkRawPublishQoS1(b *testing.B) { RawPublish(b, nil) }
