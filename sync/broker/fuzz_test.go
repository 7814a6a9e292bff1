package broker

import (
	"strings"
	"testing"
)

// matches is the MQTT topic-matching rule (MQTT 3.1.1 §4.7), written plainly as the oracle
// for covers.
func matches(filter, topic string) bool {
	f, tp := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, fl := range f {
		if fl == "#" {
			return true
		}
		if i >= len(tp) || (fl != "+" && fl != tp[i]) {
			return false
		}
	}
	return len(f) == len(tp)
}

// FuzzCovers checks the ACL's filter containment against the matching rule: whenever covers
// allows a filter, every concrete topic that filter matches (sampled: the filter with its
// wildcards replaced by sample levels) must be matched by the allowed filter too.
func FuzzCovers(f *testing.F) {
	for _, s := range []string{"kiosk/K1/up/topup", "kiosk/+/up/#", "$share/ledger/kiosk/+/up/topup", "kiosk/K1/down/#",
		"kiosk/#", "#", "+/+/+/+", "kiosk/K1/up", "kiosk//up/x", "$SYS/x", "$share/g"} {
		f.Add(s)
	}
	allowed := []string{"kiosk/+/up/#", "kiosk/+/down/#", "kiosk/K1/up/#", "kiosk/K1/down/#"}
	f.Fuzz(func(t *testing.T, filter string) {
		for _, a := range allowed {
			if !covers(a, filter) {
				continue
			}
			plain := filter
			if strings.HasPrefix(plain, "$share/") {
				plain = strings.SplitN(plain, "/", 3)[2]
			}
			for _, sample := range []string{"K1", "K2", "x", ""} {
				topic := strings.ReplaceAll(strings.ReplaceAll(plain, "+", sample), "#", sample)
				if matches(plain, topic) && !matches(a, topic) {
					t.Fatalf("covers(%q, %q) but %q escapes it", a, filter, topic)
				}
			}
		}
	})
}
