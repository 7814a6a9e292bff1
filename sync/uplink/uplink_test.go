package uplink

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/sync/wire"
)

// fakeClient is an in-memory MQTT client: publishes are recorded, and a test can hold them
// (no PUBACK yet) to count what is in flight.
type fakeClient struct {
	mu        sync.Mutex
	connected bool
	pubs      []pub
	subs      map[string]func(string, []byte)
	hold      chan struct{} // when non-nil, QoS1 publishes of top-ups wait for it
	maxActive int
	active    int
}

type pub struct {
	topic   string
	payload []byte
	retain  bool
	at      time.Time
}

func (f *fakeClient) Publish(ctx context.Context, topic string, qos byte, retain bool, payload []byte) error {
	f.mu.Lock()
	if !f.connected {
		f.mu.Unlock()
		return ErrOffline
	}
	f.pubs = append(f.pubs, pub{topic, append([]byte(nil), payload...), retain, time.Now()})
	hold := f.hold
	if strings.HasSuffix(topic, wire.UpTopup) {
		f.active++
		f.maxActive = max(f.maxActive, f.active)
	}
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		if strings.HasSuffix(topic, wire.UpTopup) {
			f.active--
		}
		f.mu.Unlock()
	}()
	if hold != nil && strings.HasSuffix(topic, wire.UpTopup) {
		select {
		case <-hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (f *fakeClient) Subscribe(ctx context.Context, filter string, qos byte, h func(string, []byte)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.subs == nil {
		f.subs = map[string]func(string, []byte){}
	}
	f.subs[filter] = h
	return nil
}

func (f *fakeClient) Connected() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.connected
}

func (f *fakeClient) deliver(topic string, payload []byte) {
	f.mu.Lock()
	h := f.subs[topic]
	f.mu.Unlock()
	if h != nil {
		h(topic, payload)
	}
}

func (f *fakeClient) topups() []pub {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []pub
	for _, p := range f.pubs {
		if strings.HasSuffix(p.topic, wire.UpTopup) {
			out = append(out, p)
		}
	}
	return out
}

var (
	ledgerPriv = ed25519.NewKeyFromSeed([]byte("ledger-key-seed-0123456789abcdef"))
	ledger     = wire.Signer{KID: "l1", Key: ledgerPriv}
	ring       = wire.Keyring{"l1": ledgerPriv.Public().(ed25519.PublicKey)}
)

type urig struct {
	j      *journal.Journal
	c      *fakeClient
	u      *Uplink
	h      *health.Registry
	acked  []journal.Topup
	alarms []health.Condition
	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan error
}

func newURig(t *testing.T, topups int, maxInFlight int) *urig {
	t.Helper()
	j, err := journal.Open(filepath.Join(t.TempDir(), "j.db"), journal.Options{KioskID: "K1", Currency: "CNY"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range topups {
		s, _ := j.OpenSession(journal.OpenSessionParams{Account: "acct", LimitMinor: 100000})
		in, _ := j.StackIntent(s.ID, journal.Note{ValueMinor: int64(1000 * (i + 1))})
		j.CreditNote(in.ID, journal.Note{}, "")
		if _, err := j.CloseSession(journal.CloseParams{SessionID: s.ID, Outcome: wire.OutcomeComplete}); err != nil {
			t.Fatal(err)
		}
	}
	r := &urig{j: j, c: &fakeClient{connected: true}, h: health.New("b", nil)}
	r.h.Listen(func(c health.Condition) { r.mu.Lock(); r.alarms = append(r.alarms, c); r.mu.Unlock() })
	r.u, err = New(Config{KioskID: "K1", Client: r.c, Journal: j, LedgerKeys: ring, Health: r.h, MaxInFlight: maxInFlight,
		RetryMin: time.Second, RetryMax: time.Minute, Jitter: func() float64 { return 0.5 },
		OnAck: func(t journal.Topup) { r.mu.Lock(); r.acked = append(r.acked, t); r.mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	r.u.OnConnect(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.done = make(chan error, 1)
	go func() { r.done <- r.u.Run(ctx) }()
	t.Cleanup(func() {
		r.cancel()
		<-r.done
		j.Close()
	})
	return r
}

func (r *urig) ack(t *testing.T, topupID string, status string, amount int64) {
	t.Helper()
	b, err := ledger.Seal(wire.Ack{V: 1, TopupID: topupID, Status: status, AmountMinor: amount, Currency: "CNY", LedgerRef: "L-" + topupID})
	if err != nil {
		t.Fatal(err)
	}
	r.c.deliver(wire.Topic("K1", wire.DownAck), b)
}

func (r *urig) alarmKinds() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var k []string
	for _, a := range r.alarms {
		k = append(k, a.Kind)
	}
	return k
}

func TestPublishAckRemoves(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newURig(t, 1, 4)
		synctest.Wait()
		ps := r.c.topups()
		if len(ps) != 1 {
			t.Fatalf("published %d top-ups", len(ps))
		}
		var w wire.Topup
		if err := wire.Decode(ps[0].payload, &w); err != nil || w.Validate() != nil {
			t.Fatalf("payload %s: %v", ps[0].payload, err)
		}
		r.ack(t, w.TopupID, wire.AckCredited, w.AmountMinor)
		synctest.Wait()
		if ob, _ := r.j.Outbox(); len(ob) != 0 {
			t.Fatalf("outbox after ack: %d", len(ob))
		}
		if len(r.acked) != 1 || r.acked[0].State != journal.TopupCredited {
			t.Fatalf("OnAck %+v", r.acked)
		}
		// Nothing more is published, however long we wait.
		time.Sleep(time.Hour)
		synctest.Wait()
		if n := len(r.c.topups()); n != 1 {
			t.Fatalf("republished after ack: %d", n)
		}
	})
}

func TestRetrySameBytesWithBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newURig(t, 1, 4)
		for len(r.c.topups()) < 5 {
			time.Sleep(100 * time.Millisecond)
			synctest.Wait()
		}
		ps := r.c.topups()
		var times []time.Duration
		for _, p := range ps {
			times = append(times, p.at.Sub(ps[0].at))
		}
		for _, p := range ps[1:] {
			if string(p.payload) != string(ps[0].payload) {
				t.Fatal("retry changed the payload bytes")
			}
		}
		// Every publish was PUBACKed and no ack came, and no ack round trip is known yet:
		// AckWait from RetryMin, jitter fixed at 0.5 → factor 1.25: 1.25 s, 2.5 s, 5 s, 10 s.
		gaps := []time.Duration{}
		for i := 1; i < len(times); i++ {
			gaps = append(gaps, times[i]-times[i-1])
		}
		want := []time.Duration{1250 * time.Millisecond, 2500 * time.Millisecond, 5000 * time.Millisecond, 10000 * time.Millisecond}
		if !slices.Equal(gaps, want) {
			t.Fatalf("gaps %v, want %v", gaps, want)
		}
	})
}

// TestAckWaitAdaptsToRTT: once an ack round trip is known, a PUBACKed top-up waits at least
// ackRTTFactor round trips for its ack before it is published again, backing off from there.
func TestAckWaitAdaptsToRTT(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newURig(t, 2, 1)
		synctest.Wait()
		ps := r.c.topups()
		if len(ps) != 1 {
			t.Fatalf("published %d, want 1 (one in flight)", len(ps))
		}
		var first wire.Topup
		if err := wire.Decode(ps[0].payload, &first); err != nil {
			t.Fatal(err)
		}
		// The ledger answers the first top-up 1 s after its (only) publish: rtt 1 s.
		time.Sleep(time.Second)
		r.ack(t, first.TopupID, wire.AckCredited, first.AmountMinor)
		synctest.Wait()
		if rtt := r.u.RTT(); rtt != time.Second {
			t.Fatalf("rtt %v, want 1s", rtt)
		}
		// The second is never answered: its retries wait 4·1 s·1.25, then twice as long each time.
		time.Sleep(40 * time.Second)
		synctest.Wait()
		var times []time.Time
		for _, p := range r.c.topups()[1:] {
			times = append(times, p.at)
		}
		var gaps []time.Duration
		for i := 1; i < len(times); i++ {
			gaps = append(gaps, times[i].Sub(times[i-1]))
		}
		want := []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second}
		if !slices.Equal(gaps, want) {
			t.Fatalf("gaps %v, want %v", gaps, want)
		}
		// Capped at RetryMax (1 min), jitter included.
		if d := r.u.AckWait(20); d != time.Minute {
			t.Fatalf("AckWait(20) = %v, want the 1 min cap", d)
		}
	})
}

// TestAckWaitLearnsFromRetried: under load nearly every ack comes after a retry; the round
// trip is then taken from the first publish, so the next top-ups wait longer instead of
// being retried at the idle pace.
func TestAckWaitLearnsFromRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newURig(t, 2, 1)
		synctest.Wait()
		var first wire.Topup
		if err := wire.Decode(r.c.topups()[0].payload, &first); err != nil {
			t.Fatal(err)
		}
		// Published at 0 and (retry) at 1.25 s; the ack comes at 3 s.
		time.Sleep(3 * time.Second)
		synctest.Wait()
		if n := len(r.c.topups()); n != 2 {
			t.Fatalf("published %d times by 3 s, want 2", n)
		}
		r.ack(t, first.TopupID, wire.AckCredited, first.AmountMinor)
		synctest.Wait()
		// The second top-up, published at once, waits 4·3 s·1.25 = 15 s before its retry.
		if n := len(r.c.topups()); n != 3 {
			t.Fatalf("published %d, want 3 (the second top-up's first publish)", n)
		}
		time.Sleep(14 * time.Second)
		synctest.Wait()
		if n := len(r.c.topups()); n != 3 {
			t.Fatalf("retried before 15 s: %d publishes", n)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if n := len(r.c.topups()); n != 4 {
			t.Fatalf("%d publishes by 16 s, want the retry at 15 s", n)
		}
	})
}

// ackPublished answers every top-up published so far with a credited ack, at once, in seq
// order, and returns how many it answered.
func (r *urig) ackPublished(t *testing.T) int {
	t.Helper()
	seen := map[string]bool{}
	var ws []wire.Topup
	for _, p := range r.c.topups() {
		var w wire.Topup
		if err := wire.Decode(p.payload, &w); err != nil {
			t.Fatal(err)
		}
		if !seen[w.TopupID] {
			seen[w.TopupID] = true
			ws = append(ws, w)
		}
	}
	// In seq order: the top-ups published together went out in any order.
	slices.SortFunc(ws, func(a, b wire.Topup) int { return cmp.Compare(a.Seq, b.Seq) })
	for _, w := range ws {
		r.ack(t, w.TopupID, wire.AckCredited, w.AmountMinor)
	}
	return len(ws)
}

// addTopups closes n top-ups in the rig's journal and kicks the uplink.
func (r *urig) addTopups(t *testing.T, n int) {
	t.Helper()
	for i := range n {
		s, _ := r.j.OpenSession(journal.OpenSessionParams{Account: "acct", LimitMinor: 100000})
		in, _ := r.j.StackIntent(s.ID, journal.Note{ValueMinor: int64(100 * (i + 1))})
		r.j.CreditNote(in.ID, journal.Note{}, "")
		if _, err := r.j.CloseSession(journal.CloseParams{SessionID: s.ID, Outcome: wire.OutcomeComplete}); err != nil {
			t.Fatal(err)
		}
	}
	r.u.Kick()
}

func (r *urig) window() int {
	r.u.mu.Lock()
	defer r.u.mu.Unlock()
	return r.u.window
}

func TestInFlightBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newURig(t, 0, 3)
		// Acks as fast as the fastest open the window from one to MaxInFlight.
		r.addTopups(t, 4)
		for range 4 {
			synctest.Wait()
			r.ackPublished(t)
		}
		synctest.Wait()
		if ob, _ := r.j.Outbox(); len(ob) != 0 || r.window() != 3 {
			t.Fatalf("outbox %d, window %d after quick acks, want 0 and 3", len(ob), r.window())
		}
		base := len(r.c.topups())
		r.c.mu.Lock()
		r.c.hold = make(chan struct{})
		r.c.mu.Unlock()
		for i := range 10 {
			s, _ := r.j.OpenSession(journal.OpenSessionParams{Account: "acct", LimitMinor: 100000})
			in, _ := r.j.StackIntent(s.ID, journal.Note{ValueMinor: int64(100 * (i + 1))})
			r.j.CreditNote(in.ID, journal.Note{}, "")
			r.j.CloseSession(journal.CloseParams{SessionID: s.ID, Outcome: wire.OutcomeComplete})
		}
		r.u.Kick()
		synctest.Wait()
		r.c.mu.Lock()
		active := r.c.active
		r.c.mu.Unlock()
		if active != 3 {
			t.Fatalf("%d publishes in flight, want 3", active)
		}
		close(r.c.hold)
		for {
			synctest.Wait()
			if len(r.c.topups())-base >= 10 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if r.c.maxActive != 3 {
			t.Fatalf("max in flight %d", r.c.maxActive)
		}
	})
}

func TestBadAcksIgnored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newURig(t, 1, 4)
		synctest.Wait()
		ob, _ := r.j.Outbox()
		id, amt := ob[0].TopupID, ob[0].AmountMinor
		// Signed by an unknown key.
		_, other, _ := ed25519.GenerateKey(nil)
		forged, _ := wire.Signer{KID: "l1", Key: other}.Seal(wire.Ack{V: 1, TopupID: id, Status: wire.AckCredited, AmountMinor: amt, Currency: "CNY"})
		r.c.deliver(wire.Topic("K1", wire.DownAck), forged)
		// Unsigned.
		r.c.deliver(wire.Topic("K1", wire.DownAck), []byte(`{"v":1,"topup_id":"`+id+`","status":"credited"}`))
		// Wrong amount.
		r.ack(t, id, wire.AckCredited, amt+1)
		// Unknown top-up.
		r.ack(t, wire.TopupID("K1", r.j.Epoch(), 99), wire.AckCredited, amt)
		synctest.Wait()
		if ob, _ := r.j.Outbox(); len(ob) != 1 {
			t.Fatal("a bad ack removed the outbox entry")
		}
		if st := r.u.Stats(); st.RejectedAcks != 4 {
			t.Fatalf("rejected %d acks, want 4", st.RejectedAcks)
		}
		if k := r.alarmKinds(); len(k) != 4 || k[0] != "bad_ack" {
			t.Fatalf("alarms %v", k)
		}
		// Duplicate ack of a credited top-up: applied once.
		r.ack(t, id, wire.AckCredited, amt)
		r.ack(t, id, wire.AckDuplicate, amt)
		synctest.Wait()
		if len(r.acked) != 1 {
			t.Fatalf("OnAck called %d times", len(r.acked))
		}
	})
}

func TestConflictStopsRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newURig(t, 1, 4)
		synctest.Wait()
		ob, _ := r.j.Outbox()
		r.ack(t, ob[0].TopupID, wire.AckConflict, ob[0].AmountMinor)
		synctest.Wait()
		n := len(r.c.topups())
		time.Sleep(24 * time.Hour)
		synctest.Wait()
		if got := len(r.c.topups()); got != n {
			t.Fatalf("conflicted top-up republished %d times", got-n)
		}
		if !slices.Contains(r.alarmKinds(), "topup_conflict") {
			t.Fatalf("no conflict alarm: %v", r.alarmKinds())
		}
		if ob, _ := r.j.Outbox(); len(ob) != 1 || ob[0].State != journal.TopupConflict {
			t.Fatalf("conflict must stay in the outbox: %+v", ob)
		}
	})
}

func TestOfflineThenReconnectCatchesUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newURig(t, 0, 4)
		r.c.mu.Lock()
		r.c.connected = false
		r.c.mu.Unlock()
		for range 3 {
			s, _ := r.j.OpenSession(journal.OpenSessionParams{Account: "acct", LimitMinor: 100000})
			in, _ := r.j.StackIntent(s.ID, journal.Note{ValueMinor: 500})
			r.j.CreditNote(in.ID, journal.Note{}, "")
			r.j.CloseSession(journal.CloseParams{SessionID: s.ID, Outcome: wire.OutcomeComplete})
		}
		r.u.Kick()
		time.Sleep(72 * time.Hour) // three days offline
		synctest.Wait()
		if n := len(r.c.topups()); n != 0 {
			t.Fatalf("published %d while offline", n)
		}
		r.c.mu.Lock()
		r.c.connected = true
		r.c.mu.Unlock()
		r.u.OnConnect(context.Background())
		synctest.Wait()
		// One in flight after a reconnect; each quick ack opens the window by one, with no
		// wait in between: caught up in three round trips.
		if n := len(r.c.topups()); n != 1 {
			t.Fatalf("published %d on reconnect, want 1", n)
		}
		start := time.Now()
		for range 3 {
			r.ackPublished(t)
			synctest.Wait()
		}
		if ob, _ := r.j.Outbox(); len(ob) != 0 || len(r.c.topups()) != 3 || time.Since(start) != 0 {
			t.Fatalf("outbox %d, %d publishes, %v after the reconnect", len(ob), len(r.c.topups()), time.Since(start))
		}
	})
}

// TestWindowHalvesOnResentAcks: each ack opens the window by one; an ack for a top-up that
// had to be sent again (its ack came later than AckWait) halves it; SyncNow starts it at one.
func TestWindowHalvesOnResentAcks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newURig(t, 0, 4)
		r.addTopups(t, 4)
		for range 4 {
			synctest.Wait()
			r.ackPublished(t)
		}
		synctest.Wait()
		if w := r.window(); w != 4 {
			t.Fatalf("window %d after quick acks, want 4", w)
		}
		// Four in flight; the ledger answers after 3 s, when each was sent twice (AckWait
		// 1.25 s: one overdue top-up is sent again per pass, the others wait another 1.25 s).
		r.addTopups(t, 4)
		synctest.Wait()
		if n := len(r.c.topups()); n != 8 {
			t.Fatalf("%d publishes, want 8", n)
		}
		time.Sleep(3 * time.Second)
		synctest.Wait()
		if n := len(r.c.topups()); n != 10 {
			t.Fatalf("%d publishes after 3 s, want 10 (two sent again)", n)
		}
		// The two sent once are answered first (4 stays 4: the most), then the two sent
		// again (4 → 2 → 1). In the other order the first answered retry would make the
		// deferred ones due at once (fast retransmit), racing their own acks.
		sends := map[string]int{}
		var order []wire.Topup
		for _, p := range r.c.topups()[4:] {
			var w wire.Topup
			if err := wire.Decode(p.payload, &w); err != nil {
				t.Fatal(err)
			}
			if sends[w.TopupID]++; sends[w.TopupID] == 1 {
				order = append(order, w)
			}
		}
		slices.SortStableFunc(order, func(a, b wire.Topup) int { return cmp.Compare(sends[a.TopupID], sends[b.TopupID]) })
		for _, w := range order {
			r.ack(t, w.TopupID, wire.AckCredited, w.AmountMinor)
		}
		synctest.Wait()
		if w := r.window(); w != 1 {
			t.Fatalf("window %d, want 1", w)
		}
		r.u.SyncNow()
		if w := r.window(); w != 1 {
			t.Fatalf("window %d after SyncNow, want 1", w)
		}
		r.addTopups(t, 3)
		synctest.Wait()
		if n := len(r.c.topups()); n != 11 {
			t.Fatalf("%d publishes with a window of one, want 11", n)
		}
	})
}

// TestOverdueAcksRetriedOneAtATime: when several PUBACKed top-ups wait too long for their
// acks, one is published again per pass (the one sent the fewest times), not all of them;
// an ack for another top-up restarts their wait.
func TestOverdueAcksRetriedOneAtATime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newURig(t, 0, 3)
		r.addTopups(t, 3)
		for range 3 {
			synctest.Wait()
			r.ackPublished(t)
		}
		r.addTopups(t, 3)
		synctest.Wait()
		if n := len(r.c.topups()); n != 6 {
			t.Fatalf("%d publishes, want 6", n)
		}
		ids := func(ps []pub) []string {
			var out []string
			for _, p := range ps {
				var w wire.Topup
				if err := wire.Decode(p.payload, &w); err != nil {
					t.Fatal(err)
				}
				out = append(out, w.TopupID)
			}
			return out
		}
		second := ids(r.c.topups()[3:]) // published at once, in any order
		slices.SortFunc(second, func(a, b string) int {
			_, _, sa, _ := wire.ParseTopupID(a)
			_, _, sb, _ := wire.ParseTopupID(b)
			return cmp.Compare(sa, sb)
		})
		// No ack: after AckWait (1 s · 1.25) the first of them is sent again, alone.
		time.Sleep(1250 * time.Millisecond)
		synctest.Wait()
		if got := ids(r.c.topups()[6:]); !slices.Equal(got, second[:1]) {
			t.Fatalf("retried %v, want only %v", got, second[:1])
		}
		// 1.25 s later the next one (sent once) goes, not the first again.
		time.Sleep(1250 * time.Millisecond)
		synctest.Wait()
		if got := ids(r.c.topups()[7:]); !slices.Equal(got, second[1:2]) {
			t.Fatalf("retried %v, want only %v", got, second[1:2])
		}
		// An ack for the first restarts the others' wait (from the round trip it measured): nothing
		// is sent for a while.
		var w wire.Topup
		if err := wire.Decode(r.c.topups()[6].payload, &w); err != nil || w.TopupID != second[0] {
			t.Fatal(err, w.TopupID)
		}
		r.ack(t, w.TopupID, wire.AckCredited, w.AmountMinor)
		time.Sleep(1200 * time.Millisecond)
		synctest.Wait()
		if n := len(r.c.topups()); n != 8 {
			t.Fatalf("%d publishes 1.2 s after an ack, want 8", n)
		}
	})
}

func TestAuthorize(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newURig(t, 0, 4)
		// A responder that answers each request, first with a forged signature.
		go func() {
			for {
				time.Sleep(10 * time.Millisecond)
				r.c.mu.Lock()
				var req *wire.AuthzRequest
				for _, p := range r.c.pubs {
					if strings.HasSuffix(p.topic, wire.UpAuthz) {
						var q wire.AuthzRequest
						wire.Decode(p.payload, &q)
						req = &q
					}
				}
				r.c.pubs = slices.DeleteFunc(r.c.pubs, func(p pub) bool { return strings.HasSuffix(p.topic, wire.UpAuthz) })
				r.c.mu.Unlock()
				if req == nil {
					continue
				}
				_, other, _ := ed25519.GenerateKey(nil)
				bad, _ := wire.Signer{KID: "l1", Key: other}.Seal(wire.AuthzResponse{V: 1, ReqID: req.ReqID, Status: wire.AuthzOK, RemainingMinor: 999999})
				r.c.deliver(wire.Topic("K1", wire.DownAuthz), bad)
				good, _ := ledger.Seal(wire.AuthzResponse{V: 1, ReqID: req.ReqID, Status: wire.AuthzOK, RemainingMinor: 12300, NameMasked: "A***"})
				r.c.deliver(wire.Topic("K1", wire.DownAuthz), good)
				return
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		resp, err := r.u.Authorize(ctx, "alice", "nonce123", "IMW1.alice.1.nonce123.w1.sig")
		if err != nil || resp.RemainingMinor != 12300 {
			t.Fatalf("authorize = %+v %v", resp, err)
		}
		// No answer: the caller's timeout, so the engine can fall back to offline limits.
		ctx2, cancel2 := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel2()
		if _, err := r.u.Authorize(ctx2, "bob", "nonce456", ""); err == nil {
			t.Fatal("authorize without an answer succeeded")
		}
	})
}

// TestFollowUpWaitsForItsOriginal: a follow-up top-up (a note credited after its session
// closed) is sent only once its original has left the outbox: the ledger credits a follow-up
// only against the suspense record the original creates, so the other order would hold it.
func TestFollowUpWaitsForItsOriginal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newURig(t, 0, 4)
		s, err := r.j.OpenSession(journal.OpenSessionParams{Account: "acct", LimitMinor: 100000, QR: "IMW1.code", QRNonce: "n1"})
		if err != nil {
			t.Fatal(err)
		}
		in, _ := r.j.StackIntent(s.ID, journal.Note{ValueMinor: 5000})
		if _, err := r.j.CreditNote(in.ID, journal.Note{}, ""); err != nil {
			t.Fatal(err)
		}
		if _, err := r.j.StackIntent(s.ID, journal.Note{ValueMinor: 10000}); err != nil {
			t.Fatal(err)
		}
		res, err := r.j.CloseSession(journal.CloseParams{SessionID: s.ID, Outcome: wire.OutcomeInterrupted, UnresolvedReason: "in transit at close"})
		if err != nil {
			t.Fatal(err)
		}
		late, err := r.j.CreditAfterClose(journal.Note{ValueMinor: 10000}, "late credit")
		if err != nil || late.Kind != journal.FollowUp {
			t.Fatalf("late credit %+v, %v", late, err)
		}
		r.u.Kick()
		synctest.Wait()
		ps := r.c.topups()
		if len(ps) != 1 {
			t.Fatalf("published %d top-ups before the original's ack, want only the original", len(ps))
		}
		var w wire.Topup
		if err := wire.Decode(ps[0].payload, &w); err != nil || w.TopupID != res.Topup.TopupID {
			t.Fatalf("first published %s, want the original %s", w.TopupID, res.Topup.TopupID)
		}
		r.ack(t, w.TopupID, wire.AckCredited, w.AmountMinor)
		synctest.Wait()
		ps = r.c.topups()
		if len(ps) != 2 {
			t.Fatalf("published %d after the original's ack, want the follow-up too", len(ps))
		}
		if err := wire.Decode(ps[1].payload, &w); err != nil || w.FollowsTopupID != res.Topup.TopupID {
			t.Fatalf("second published %+v", w)
		}
	})
}

// TestLostAcksOfManyRetriedToTheEnd is the regression of a netfault failure
// (TestLedgerRestarts): a ledger restart lost the acks of a dozen published top-ups. Of the
// overdue ones only one is published again per pass and the others' wait is deferred; those
// deferred entries were counted in flight, so with the window closed down to one the one
// chosen for the retry never fit, and nothing was published again: the outbox stood still.
// Every top-up must reach the ledger in the end.
func TestLostAcksOfManyRetriedToTheEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newURig(t, 0, 4)
		r.addTopups(t, 3)
		for range 3 { // acks as they come: the window opens
			synctest.Wait()
			r.ackPublished(t)
		}
		// The ledger goes away with what it was sent: every ack of the next top-ups is lost,
		// and some of what it had answered before comes back resent (the window closes).
		r.addTopups(t, 12)
		for range 20 {
			time.Sleep(500 * time.Millisecond)
			synctest.Wait()
		}
		lost := len(r.c.topups())
		// The new ledger answers whatever it is sent from now on.
		deadline := time.Now().Add(5 * time.Minute)
		for time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
			synctest.Wait()
			// One reading: an ack wakes the uplink, which may publish the next one before
			// this loop is done; that one is answered in the next round.
			ps := r.c.topups()
			for _, p := range ps[lost:] {
				var w wire.Topup
				if err := wire.Decode(p.payload, &w); err != nil {
					t.Fatal(err)
				}
				r.ack(t, w.TopupID, wire.AckDuplicate, w.AmountMinor)
			}
			lost = len(ps)
			if ob, _ := r.j.Outbox(); len(ob) == 0 {
				return
			}
		}
		ob, _ := r.j.Outbox()
		r.u.mu.Lock()
		for seq, e := range r.u.entries {
			t.Logf("entry %d: %+v (now %v)", seq, *e, time.Now())
		}
		r.u.mu.Unlock()
		t.Fatalf("%d top-ups still in the outbox 5 minutes after the ledger came back (window %d, %d publishes)", len(ob), r.window(), len(r.c.topups()))
	})
}
