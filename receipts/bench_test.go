package receipts_test

import (
	"testing"

	"github.com/kioskd/kioskd/receipts"
)

func BenchmarkRenderESCPOS(b *testing.B) {
	for _, f := range fixtures()[:3] {
		b.Run(f.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := receipts.RenderESCPOS(f.r, f.profile); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkRenderText(b *testing.B) {
	for _, f := range fixtures()[:3] {
		b.Run(f.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				receipts.RenderText(f.r, f.profile.Columns)
			}
		})
	}
}
