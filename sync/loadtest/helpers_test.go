package loadtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/kioskd/kioskd/sync/ledger"
	"github.com/kioskd/kioskd/sync/wire"
)

func since(t time.Time) string { return ms(time.Since(t)) }

// ms prints a duration at millisecond precision (seconds above ten).
func ms(d time.Duration) string {
	if d >= 10*time.Second {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Millisecond).String()
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

// percentile returns the q-quantile of ds (nearest rank), 0 for none.
func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

var errTimeout = errors.New("timed out")

// waitAll polls cond until it holds or d passes. The fleet runs on real time (broker,
// database, retries), so the run waits for outcomes, bounded.
func waitAll(d time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return errTimeout
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

// countConnected counts the kiosks that finished at least n connects.
func countConnected(ks []*kiosk, n int64) int {
	c := 0
	for _, k := range ks {
		if k.connects.Load() >= n {
			c++
		}
	}
	return c
}

// runEach runs f for every kiosk on workers goroutines.
func runEach(ks []*kiosk, workers int, f func(i int, k *kiosk)) {
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				f(i, ks[i])
			}
		})
	}
	for i := range ks {
		next <- i
	}
	close(next)
	wg.Wait()
}

// rawTopic is where the raw baselines publish: a kiosk may write under its own up/ (the
// ACL), and nothing subscribes to it, so the broker only stores and acknowledges.
const rawTopic = "loadtest_raw"

// outboxPayloads returns the payloads in each kiosk's outbox.
func outboxPayloads(ks []*kiosk) ([][][]byte, error) {
	payloads := make([][][]byte, len(ks))
	for i, k := range ks {
		box, err := k.j.Outbox()
		if err != nil {
			return nil, err
		}
		for _, t := range box {
			payloads[i] = append(payloads[i], t.Payload)
		}
	}
	return payloads, nil
}

// rawLoop publishes every payload at QoS 1 through one kiosk's connection, one at a time,
// each waiting for its PUBACK: the raw publish loop the backlog drain is measured against.
func rawLoop(k *kiosk, payloads [][][]byte) (time.Duration, int, error) {
	topic := wire.Topic(k.id, "up/"+rawTopic)
	n := 0
	start := time.Now()
	for _, ps := range payloads {
		for _, pl := range ps {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			err := k.mc.Publish(ctx, topic, 1, false, pl)
			cancel()
			if err != nil {
				return 0, n, fmt.Errorf("raw publish loop: %w", err)
			}
			n++
		}
	}
	return time.Since(start), n, nil
}

// rawFleet publishes every kiosk's payloads at QoS 1 through the kiosk's own connection, at
// most inFlight at a time per kiosk (as the uplink does): the broker's pace for this traffic
// from the whole fleet, without a ledger.
func rawFleet(ks []*kiosk, payloads [][][]byte, inFlight int) (time.Duration, error) {
	var mu sync.Mutex
	var firstErr error
	start := time.Now()
	var wg sync.WaitGroup
	for i, k := range ks {
		wg.Go(func() {
			topic := wire.Topic(k.id, "up/"+rawTopic)
			sem := make(chan struct{}, inFlight)
			var kwg sync.WaitGroup
			for _, pl := range payloads[i] {
				sem <- struct{}{}
				kwg.Go(func() {
					defer func() { <-sem }()
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					defer cancel()
					if err := k.mc.Publish(ctx, topic, 1, false, pl); err != nil {
						mu.Lock()
						if firstErr == nil {
							firstErr = fmt.Errorf("raw fleet publish %s: %w", k.id, err)
						}
						mu.Unlock()
					}
				})
			}
			kwg.Wait()
		})
	}
	wg.Wait()
	return time.Since(start), firstErr
}

// timedStore is the ledger's PostgreSQL store with its Apply (one top-up's transaction,
// retries included) timed: the report shows how much of an ack's latency is the database.
type timedStore struct {
	ledger.Store
	mu      sync.Mutex
	lat     []time.Duration
	batches int // ApplyBatch calls since the last take
}

func (s *timedStore) Apply(t wire.Topup, c ledger.Checks) (ledger.Result, error) {
	start := time.Now()
	res, err := s.Store.Apply(t, c)
	d := time.Since(start)
	s.mu.Lock()
	s.lat = append(s.lat, d)
	s.mu.Unlock()
	return res, err
}

// take returns the durations since the last take, and how many batches they came in.
func (s *timedStore) take() ([]time.Duration, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out, n := s.lat, s.batches
	s.lat, s.batches = nil, 0
	return out, n
}

// ApplyBatch times a batch (ledger.BatchStore: the ledger's group commit); each top-up of it
// counts the whole batch's transaction.
func (s *timedStore) ApplyBatch(items []ledger.BatchItem) []ledger.BatchResult {
	start := time.Now()
	out := s.Store.(ledger.BatchStore).ApplyBatch(items)
	d := time.Since(start)
	s.mu.Lock()
	for range items {
		s.lat = append(s.lat, d)
	}
	s.batches++
	s.mu.Unlock()
	return out
}
