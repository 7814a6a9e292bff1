package netfault

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/kioskd/kioskd/sync/faultproxy"
)

// soakBound bounds the catch-up after the soak's last fault.
const soakBound = 60 * time.Second

// TestSoak runs, for -netfault.soakfor per broker, a seeded random sequence of every fault
// the scenarios use one at a time (drops and duplicates, delay, partitions of either link,
// cuts, broker and ledger restarts, the network down) while top-ups keep coming, then heals
// everything and checks the same end state. Run it with
//
//	go test -race -run TestSoak -timeout 30m ./sync/netfault -args -netfault.soak -netfault.soakfor 10m
//
// and -netfault.seed to replay a sequence (the seed is logged).
func TestSoak(t *testing.T) {
	if !*soak {
		t.Skip("long soak: run with -netfault.soak (see the doc comment)")
	}
	s := *seedF
	if s == 0 {
		s = uint64(time.Now().UnixNano())
	}
	t.Logf("soak seed %d (replay with -netfault.seed %d)", s, s)
	forEachBroker(t, func(t *testing.T, kind string) {
		pahoRaceGuard(t)
		r := newRig(t, rigOpts{broker: kind, topups: 100, seed: s, chunk: 128})
		rng := rand.New(rand.NewPCG(s, 7))
		stop := r.feed(150 * time.Millisecond)
		end := time.Now().Add(*soakFor)
		rounds := map[string]int{}
		for time.Now().Before(end) {
			name := r.soakRound(rng)
			rounds[name]++
			t.Logf("soak %s: %s done; ledger holds %d of %d", kind, name, r.credited(), r.closedCount())
		}
		added := stop()
		must(t, r.kp.Heal())
		must(t, r.lp.Heal())
		healed := time.Now()
		d := r.catchUp(healed, soakBound)
		t.Logf("soak %s: rounds %v; %d top-ups added during the faults; caught up in %v", kind, rounds, added, d.Round(time.Millisecond))
		r.check(checkOpts{corrupting: true})
	})
}

// soakRound applies one random fault for a random while, then removes it.
func (r *rig) soakRound(rng *rand.Rand) string {
	t := r.tb
	hold := func() { time.Sleep(time.Duration(500+rng.IntN(2500)) * time.Millisecond) }
	link := func() (*faultproxy.Proxy, string) {
		if rng.IntN(3) == 0 {
			return r.lp, "ledger"
		}
		return r.kp, "kiosk"
	}
	switch rng.IntN(8) {
	case 0:
		p, side := link()
		prob := 0.005 + rng.Float64()*0.05
		must(t, p.Drop(faultproxy.Both, prob))
		must(t, p.Duplicate(faultproxy.Both, prob))
		hold()
		must(t, p.Heal())
		return fmt.Sprintf("drop+dup %.3f on the %s link", prob, side)
	case 1:
		p, side := link()
		d := time.Duration(rng.IntN(200)) * time.Millisecond
		must(t, p.Delay(faultproxy.Both, d, d))
		hold()
		must(t, p.Heal())
		return fmt.Sprintf("delay %v+%v on the %s link", d, d, side)
	case 2:
		p, side := link()
		must(t, p.Blackhole(faultproxy.Both, true))
		time.Sleep(keepAlive + connectTimeout + time.Duration(rng.IntN(3000))*time.Millisecond)
		must(t, p.Heal())
		return "partition of the " + side + " link"
	case 3:
		p, side := link()
		n := 1 + rng.IntN(5)
		for range n {
			p.CutAll()
			time.Sleep(time.Duration(100+rng.IntN(500)) * time.Millisecond)
		}
		return fmt.Sprintf("%d cuts of the %s link", n, side)
	case 4:
		r.br.restart(t)
		hold()
		return "broker restart"
	case 5:
		r.restartLedger()
		hold()
		return "ledger restart"
	case 6:
		must(t, r.kp.Refuse(true))
		r.kp.CutAll()
		hold()
		hold()
		must(t, r.kp.Refuse(false))
		return "kiosk network down"
	default:
		must(t, r.kp.Throttle(faultproxy.Both, int64(2000+rng.IntN(20000))))
		hold()
		must(t, r.kp.Heal())
		return "throttled kiosk link"
	}
}

func (r *rig) closedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}
