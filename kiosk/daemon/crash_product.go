//go:build !kioskd_failpoints

package daemon

import "context"

// The product build has no crash points: see crash_failpoints.go.

func (s *System) armCrashPoints(context.Context, *group) {}

func (s *System) disarmCrashPoints() {}
