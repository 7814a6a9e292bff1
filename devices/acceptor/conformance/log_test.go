package conformance

import (
	"flag"
	"log/slog"
	"os"
)

var verbose = flag.Bool("conformance.log", false, "log what the drivers, emulators and engines do (debug level) to stderr")

func init() {
	discard := logger
	// Flags are parsed after init: decide per call.
	logger = func(component string) *slog.Logger {
		if !*verbose {
			return discard(component)
		}
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("c", component)
	}
}
