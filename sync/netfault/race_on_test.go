//go:build race

package netfault

// raceEnabled reports a build with the race detector.
const raceEnabled = true
