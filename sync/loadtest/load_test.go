package loadtest

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kioskd/kioskd/sync/ledger"
	"github.com/kioskd/kioskd/sync/ledger/pgtest"
	"github.com/kioskd/kioskd/sync/mosqtest"
	"github.com/kioskd/kioskd/sync/mqttc"
	"github.com/kioskd/kioskd/sync/wire"
)

var (
	loadRun      = flag.Bool("load", false, "run the load test (make loadtest sets it)")
	loadKiosks   = flag.Int("load.kiosks", 1000, "simulated kiosks, each with its own journal, uplink, MQTT connection and certificate")
	loadDuration = flag.Duration("load.duration", 60*time.Second, "length of the sustained phase")
	loadRate     = flag.Float64("load.rate", 50, "top-ups per second the whole fleet closes during the sustained phase")
	loadBacklog  = flag.Int("load.backlog", 10000, "top-ups in the backlog the fleet drains (spread over the kiosks)")
	loadInFlight = flag.Int("load.inflight", 4, "mqtt.max_in_flight of each kiosk (kioskd's default is 4)")
	loadAccounts = flag.Int("load.accounts", 5000, "wallet accounts the customers top up")
	loadWait     = flag.Duration("load.wait", 5*time.Minute, "longest wait for the acks of a phase, or for the fleet to reconnect")
	loadStrict   = flag.Bool("load.strict", false, "also fail when a target (p99 <= 1 s, drain >= 0.5x raw) is missed")
	loadBatch    = flag.Int("load.batchsize", 0, "ledger.Config.BatchSize of each ledger (0: ledgerd's default)")
	loadWorkers  = flag.Int("load.batchworkers", 0, "ledger.Config.BatchWorkers of each ledger (0: ledgerd's default)")
	loadProfile  = flag.String("load.cpuprofile", "", "write a CPU profile of this process (kiosks and ledgers) during the backlog drain to this file")
)

// Targets.
const (
	targetP99   = time.Second
	targetRatio = 0.5
)

// missing lists the services the run needs and this machine lacks.
func missing() []string {
	var out []string
	if mosqtest.Find() == "" {
		out = append(out, "mosquitto (apt-get install mosquitto)")
	}
	if _, err := exec.LookPath("openssl"); err != nil {
		out = append(out, "openssl, which deploy/dev-pki.sh runs (apt-get install openssl)")
	}
	if _, err := exec.LookPath("sh"); err != nil {
		out = append(out, "sh")
	}
	if os.Getenv("KIOSKD_TEST_PG_DSN") == "" {
		if _, err := pgtest.BinDir(); err != nil {
			out = append(out, "PostgreSQL: "+err.Error()+" (apt-get install postgresql, or set KIOSKD_TEST_PG_DSN)")
		}
	}
	return out
}

// report prints one line of the result, as it comes.
func report(format string, args ...any) {
	fmt.Printf("loadtest: "+format+"\n", args...)
}

func TestLoad(t *testing.T) {
	if !*loadRun {
		t.Skip("load test: run with -load (make loadtest)")
	}
	if m := missing(); len(m) > 0 {
		t.Fatalf("load test: missing on this machine:\n  %s", strings.Join(m, "\n  "))
	}
	n := *loadKiosks
	if n < 1 || n > 100000 || *loadBacklog < 0 || *loadRate <= 0 || *loadInFlight < 1 || *loadAccounts < 1 {
		t.Fatalf("load test: bad flags: kiosks=%d backlog=%d rate=%v inflight=%d accounts=%d", n, *loadBacklog, *loadRate, *loadInFlight, *loadAccounts)
	}
	// Paho's internal log lines are process-wide; route them nowhere.
	mqttc.SetPahoLogger(slog.New(slog.DiscardHandler))
	logLevel := new(slog.LevelVar)
	logLevel.Set(slog.LevelError)
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel}))

	// The broker: the shipped configuration and ACL, certificates from deploy/dev-pki.sh.
	start := time.Now()
	b := mosqtest.Start(t, mosqtest.Options{})
	ledgerFiles := [][2]string{}
	for _, cn := range []string{"ledger-1", "ledger-2"} {
		cert, key := b.ClientFiles(cn)
		ledgerFiles = append(ledgerFiles, [2]string{cert, key})
	}
	srv := pgtest.Start(t)
	dsn := srv.NewDSN(t)
	report("broker mosquitto (deploy/mosquitto, TLS, ACL) and PostgreSQL up in %s", since(start))

	// Keys: the ledger's ack key, and the wallet's key that signs the customers' codes.
	ledgerPub, ledgerPriv, _ := ed25519.GenerateKey(nil)
	walletPub, walletPriv, _ := ed25519.GenerateKey(nil)

	// Two ledger instances sharing the database and the top-ups (shared subscription). The
	// group name is secret from the kiosks: with mosquitto a kiosk that knew it could join
	// the group (deploy/mosquitto/kioskd.acl).
	group := make([]byte, 8)
	_, _ = rand.Read(group)
	shareGroup := "ledger" + hex.EncodeToString(group)
	type instance struct {
		name  string
		l     *ledger.Ledger
		store *ledger.PGStore
		timed *timedStore
		done  chan error
	}
	lctx, lcancel := context.WithCancel(context.Background())
	var ledgers []*instance
	defer func() {
		lcancel()
		for _, in := range ledgers {
			if err := <-in.done; err != nil {
				t.Errorf("%s: %v", in.name, err)
			}
			_ = in.store.Close()
		}
	}()
	for i, f := range ledgerFiles {
		name := fmt.Sprintf("ledger-%d", i+1)
		tlsConf, err := mqttc.LoadTLS(b.CAFile, f[0], f[1])
		if err != nil {
			t.Fatal(err)
		}
		// The pool ledgerd opens: a connection per batch worker and two more.
		store, err := ledger.OpenPostgres(t.Context(), dsn, ledger.PGOptions{Logger: logger, MaxConns: int32(cmp.Or(*loadWorkers, 4) + 2)})
		if err != nil {
			t.Fatal(err)
		}
		timed := &timedStore{Store: store}
		l, err := ledger.New(ledger.Config{
			MQTT:         mqttc.Config{Brokers: []string{b.URL()}, ClientID: name, Username: name, TLS: tlsConf},
			Store:        timed,
			Signer:       wire.Signer{KID: "ledger-load", Key: ledgerPriv},
			ShareGroup:   shareGroup,
			BatchSize:    *loadBatch,
			BatchWorkers: *loadWorkers,
			WalletKeys:   map[string]ed25519.PublicKey{"w1": walletPub},
			Logger:       logger.With("instance", name),
		})
		if err != nil {
			_ = store.Close()
			t.Fatal(err)
		}
		in := &instance{name: name, l: l, store: store, timed: timed, done: make(chan error, 1)}
		go func() { in.done <- l.Run(lctx) }()
		ledgers = append(ledgers, in)
	}
	for _, in := range ledgers {
		select {
		case <-in.l.Ready():
		case <-time.After(30 * time.Second):
			t.Fatalf("%s did not subscribe within 30 s:\n%s", in.name, b.Logs())
		}
	}
	ledgerStats := func() ledger.Stats {
		var st ledger.Stats
		for _, in := range ledgers {
			s := in.l.Stats()
			st.Credited += s.Credited
			st.Duplicates += s.Duplicates
			st.RetryLater += s.RetryLater
			st.Held += s.Held
			st.Conflicts += s.Conflicts
			st.Dropped += s.Dropped
			st.PublishErrors += s.PublishErrors
		}
		return st
	}
	// phase describes what the ledgers did since the snapshot from, and how long their
	// database transactions took.
	phase := func(from ledger.Stats) string {
		to := ledgerStats()
		var apply []time.Duration
		batches := 0
		for _, in := range ledgers {
			lat, n := in.timed.take()
			apply, batches = append(apply, lat...), batches+n
		}
		return fmt.Sprintf("[ledgers: %d credited, %d duplicate, %d retry_later, %d dropped by a full queue; store transaction p50=%s p99=%s (a top-up's batch), %d top-ups in %d batches; broker: %d drop warnings]",
			to.Credited-from.Credited, to.Duplicates-from.Duplicates, to.RetryLater-from.RetryLater, to.Dropped-from.Dropped,
			ms(percentile(apply, 0.5)), ms(percentile(apply, 0.99)), len(apply), batches, strings.Count(b.Logs(), "being dropped"))
	}

	// Kiosk certificates, issued in process by the dev CA.
	start = time.Now()
	is, err := loadIssuer(b.PKIDir)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, n)
	certs := make([]*tls.Config, n)
	for i := range n {
		ids[i] = fmt.Sprintf("LT-%05d", i+1)
		c, err := is.issue(ids[i])
		if err != nil {
			t.Fatal(err)
		}
		certs[i] = is.clientTLS(c)
	}
	report("%d kiosk certificates (CN = kiosk id, dev CA) issued in %s", n, since(start))

	// The fleet.
	rec := newRecorder()
	p := kioskParams{dir: t.TempDir(), brokerURL: b.URL(), ledgerKeys: wire.Keyring{"ledger-load": ledgerPub},
		walletKey: walletPriv, accounts: *loadAccounts, maxInFlight: *loadInFlight, rec: rec}
	start = time.Now()
	ks := make([]*kiosk, n)
	defer func() {
		var wg sync.WaitGroup
		for _, k := range ks {
			if k != nil {
				wg.Go(k.stop)
			}
		}
		wg.Wait()
	}()
	for i := range n {
		if ks[i], err = startKiosk(p, ids[i], certs[i], uint64(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := waitAll(*loadWait, func() bool { return countConnected(ks, 1) == n }); err != nil {
		t.Fatalf("%d of %d kiosks connected after %s", countConnected(ks, 1), n, *loadWait)
	}
	report("%d kiosks connected in %s", n, since(start))

	// 0. Warm-up: one top-up per kiosk, all at once. A kiosk's first top-up is the first of
	// its journal epoch, which the ledger records with an operations alarm; a fleet in
	// service has its epochs known, so the sustained phase starts after this.
	var failed atomic.Bool
	fail := func(err error) {
		if failed.CompareAndSwap(false, true) {
			t.Error(err)
		}
	}
	rec.measure(true)
	st0 := ledgerStats()
	start = time.Now()
	runEach(ks, 8, func(_ int, k *kiosk) {
		if err := k.addTopup(&p); err != nil {
			fail(err)
			return
		}
		k.up.Kick()
	})
	if err := waitAll(*loadWait, func() bool { return rec.inFlight() == 0 }); err != nil {
		t.Errorf("warm-up: %d first top-ups unacked after %s", rec.inFlight(), *loadWait)
	}
	lat, _ := rec.measure(false)
	report("warm-up: %d first top-ups (a new journal epoch each) acked in %s; ack latency p50=%s p99=%s %s",
		len(lat), since(start), ms(percentile(lat, 0.5)), ms(percentile(lat, 0.99)), phase(st0))

	// 1. Sustained load: every kiosk closes top-ups at random (Poisson) times, the fleet at
	// -load.rate per second; each top-up's latency runs from its close to its ack journaled.
	rec.measure(true)
	acks0 := rec.acks.Load()
	st0 = ledgerStats()
	mean := float64(n) / *loadRate // seconds between two top-ups of one kiosk
	start = time.Now()
	end := start.Add(*loadDuration)
	var wg sync.WaitGroup
	for _, k := range ks {
		wg.Go(func() {
			for {
				wait := time.Duration(-math.Log(1-k.rng.Float64()) * mean * float64(time.Second))
				if time.Now().Add(wait).After(end) {
					return
				}
				time.Sleep(wait) // pacing the workload, not synchronising the test
				if err := k.addTopup(&p); err != nil {
					fail(err)
					return
				}
				k.up.Kick()
			}
		})
	}
	wg.Wait()
	if d := time.Until(end); d > 0 {
		time.Sleep(d)
	}
	inWindow := rec.acks.Load() - acks0
	window := time.Since(start)
	if err := waitAll(*loadWait, func() bool { return rec.inFlight() == 0 }); err != nil {
		t.Errorf("sustained phase: %d top-ups unacked %s after the phase", rec.inFlight(), *loadWait)
	}
	lat, _ = rec.measure(false)
	p50, p99 := percentile(lat, 0.50), percentile(lat, 0.99)
	report("sustained: %d top-ups offered at %.0f/s for %s: %.1f top-ups/s acked; ack latency p50=%s p99=%s (target p99 <= 1s: %s) %s",
		len(lat), *loadRate, loadDuration.String(), float64(inWindow)/window.Seconds(), ms(p50), ms(p99), verdict(p99 <= targetP99), phase(st0))

	// 2. Reconnect storm: the broker restarts, every kiosk (and both ledgers) reconnects at
	// once; each one's first reconnect attempt is jittered by mqttc.
	before := make([]int64, n)
	for i, k := range ks {
		before[i] = k.connects.Load()
	}
	start = time.Now()
	b.Restart()
	brokerBack := time.Since(start)
	back := func() int {
		c := 0
		for i, k := range ks {
			if k.connects.Load() > before[i] {
				c++
			}
		}
		return c
	}
	if err := waitAll(*loadWait, func() bool { return back() == n }); err != nil {
		t.Errorf("reconnect storm: %d of %d kiosks back after %s", back(), n, *loadWait)
	}
	var backAt []time.Duration
	for i, k := range ks {
		if k.connects.Load() > before[i] {
			backAt = append(backAt, time.Unix(0, k.connectedAt.Load()).Sub(start))
		}
	}
	report("reconnect storm: broker killed and listening again after %s; %d/%d kiosks back (connected, subscribed, status published) %s after the kill; p50 %s, p99 %s",
		ms(brokerBack), back(), n, ms(slices.Max(append(backAt, 0))), ms(percentile(backAt, 0.5)), ms(percentile(backAt, 0.99)))

	// 3. Backlog: the uplinks see no connection while every kiosk closes its share of the
	// backlog; the same payloads are first published raw (QoS 1, no ledger) through the same
	// connections, with the same number in flight per kiosk; then the uplinks see the
	// connection again and drain the outboxes to the ledgers.
	if *loadBacklog > 0 {
		for _, k := range ks {
			k.link.offline.Store(true)
		}
		start = time.Now()
		runEach(ks, 8, func(i int, k *kiosk) {
			share := *loadBacklog / n
			if i < *loadBacklog%n {
				share++
			}
			for range share {
				if err := k.addTopup(&p); err != nil {
					fail(err)
					return
				}
			}
		})
		report("backlog: %d top-ups journaled by %d kiosks in %s", *loadBacklog, n, since(start))
		payloads, err := outboxPayloads(ks)
		if err != nil {
			t.Fatal(err)
		}
		cpu0 := readProcCPU()
		raw, rawN, err := rawLoop(ks[0], payloads)
		if err != nil {
			t.Error(err)
		}
		cpu1 := readProcCPU()
		fleetRaw, err := rawFleet(ks, payloads, *loadInFlight)
		if err != nil {
			t.Error(err)
		}
		cpu2 := readProcCPU()
		report("raw QoS 1 publish of the same %d payloads, no ledger: one loop (one connection, each publish waits for its PUBACK) %s (%.0f/s; CPU: %s); the whole fleet (%d in flight per kiosk) %s (%.0f/s; CPU: %s)",
			rawN, ms(raw), float64(rawN)/raw.Seconds(), cpu1.since(cpu0), *loadInFlight, ms(fleetRaw), float64(rawN)/fleetRaw.Seconds(), cpu2.since(cpu1))
		acksBefore := rec.acks.Load()
		st0 := ledgerStats()
		for _, in := range ledgers {
			_, _ = in.timed.take()
		}
		if *loadProfile != "" {
			f, err := os.Create(*loadProfile)
			if err != nil {
				t.Fatal(err)
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				t.Fatal(err)
			}
			defer f.Close()
		}
		cpu0 = readProcCPU()
		start = time.Now()
		for _, k := range ks {
			k.link.offline.Store(false)
			k.up.SyncNow()
		}
		target := acksBefore + int64(*loadBacklog)
		if err := waitAll(*loadWait, func() bool { return rec.acks.Load() >= target }); err != nil {
			t.Errorf("backlog: %d of %d acked after %s", rec.acks.Load()-acksBefore, *loadBacklog, *loadWait)
		}
		drain := time.Since(start)
		cpuNow := readProcCPU()
		drainCPU := cpuNow.since(cpu0)
		if *loadProfile != "" {
			pprof.StopCPUProfile()
		}
		drainTotal := cpuNow.total(cpu0)
		ratio := raw.Seconds() / drain.Seconds()
		report("backlog drain: %d top-ups credited and acked in %s (%.0f/s); ratio to the raw publish loop %.2fx (target >= %.1fx: %s), to the fleet's raw publishing %.2fx; CPU: %s %s",
			*loadBacklog, ms(drain), float64(*loadBacklog)/drain.Seconds(), ratio, targetRatio, verdict(ratio >= targetRatio),
			fleetRaw.Seconds()/drain.Seconds(), drainCPU, phase(st0))
		if drainTotal > 0 {
			// The ceiling the machine puts on the drain: every process of the fleet shares
			// its cores, so the drain cannot beat its CPU per top-up divided among them.
			perTopup := drainTotal / time.Duration(*loadBacklog)
			ceiling := float64(runtime.NumCPU()) / perTopup.Seconds()
			report("backlog drain: %s of CPU per top-up over all processes; on the %d cores of this machine, shared by the kiosks, the ledgers, mosquitto and PostgreSQL, that caps the drain at %.0f/s, %.2fx of the raw loop",
				perTopup.Round(time.Microsecond), runtime.NumCPU(), ceiling, ceiling*raw.Seconds()/float64(rawN))
		}
		if *loadStrict && ratio < targetRatio {
			t.Errorf("backlog drain ratio %.2fx below the target %.1fx", ratio, targetRatio)
		}
	}
	if *loadStrict && p99 > targetP99 {
		t.Errorf("ack latency p99 %s above the target %s", p99, targetP99)
	}

	// 4. Checks: every journaled top-up credited once in the ledger, nothing else there.
	sentList, unacked, err := journaled(ks)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rows, accts, err := ledgerRows(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	st := ledgerStats()
	res := tally(sentList, rows, accts, st.Credited)
	held := 0
	for _, k := range ks {
		held += int(k.held.Load())
	}
	report("ledgers: credited %d (ledger-1 %d, ledger-2 %d), duplicate %d, retry_later %d, held %d, conflicts %d, dropped %d, publish errors %d",
		st.Credited, ledgers[0].l.Stats().Credited, ledgers[1].l.Stats().Credited, st.Duplicates, st.RetryLater, st.Held,
		st.Conflicts, st.Dropped, st.PublishErrors)
	for _, s := range res.Notes {
		report("  %s", s)
	}
	ok := res.Lost == 0 && res.Doubled == 0 && res.Wrong == 0 && unacked == 0 && held == 0 && !failed.Load() && !t.Failed()
	report("checks: sent=%d ledger_rows=%d unacked=%d held=%d wrong=%d lost=%d doubled=%d: %s",
		res.Sent, res.Rows, unacked, held, res.Wrong, res.Lost, res.Doubled, map[bool]string{true: "PASS", false: "FAIL"}[ok])
	if !ok {
		t.Errorf("lost=%d doubled=%d wrong=%d unacked=%d held=%d", res.Lost, res.Doubled, res.Wrong, unacked, held)
	}
}
