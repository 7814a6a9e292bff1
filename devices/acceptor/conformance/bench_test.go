package conformance

import "testing"

// BenchmarkNote measures one full note per protocol through driver, emulator, engine and
// journal (see Note for what the figure includes).
func BenchmarkNote(b *testing.B) {
	for _, p := range Protocols() {
		b.Run(p, func(b *testing.B) { Note(b, p, b.TempDir()) })
	}
}
