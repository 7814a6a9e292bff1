package session

import (
	"strings"

	"github.com/kioskd/kioskd/kiosk/health"
)

// Conditions a technician signs off. They say that money may have been touched by someone
// other than a customer (a cheat attempt, a unit exchanged on the line, a cassette taken out
// while a note was on its way into it), so the kiosk does not take them back by itself: a
// person looks, and the journal keeps who did and why.
const (
	SignoffFraud       = CondAcceptorFraud
	SignoffUnitSwapped = "acceptor_unit_swapped"
	SignoffMidStack    = "acceptor_cassette_pulled_mid_stack"
)

// SignoffConditions lists the condition kinds CmdSignoff accepts.
var SignoffConditions = []string{SignoffFraud, SignoffUnitSwapped, SignoffMidStack}

// swapDetail is how an acceptor driver describes a unit swapped on the line when it reports
// it as a failure (eSSP: "unit swapped: serial X -> Y").
const swapDetail = "unit swapped"

// swapFailure finds the acceptor failure that stands for a unit swapped on the line (a driver
// that reports it as a failure with swapDetail), or "".
func swapFailure(reg *health.Registry) string {
	for _, k := range reg.Active() {
		if strings.HasPrefix(k.Kind, "acceptor_") && strings.Contains(k.Detail, swapDetail) {
			return k.Kind
		}
	}
	return ""
}
