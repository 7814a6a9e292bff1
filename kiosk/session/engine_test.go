package session

import (
	"context"
	"crypto/ed25519"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/kiosk/qrpay"
	"github.com/kioskd/kioskd/sync/wire"
)

var (
	walletPriv = ed25519.NewKeyFromSeed(make([]byte, 32))
	walletKeys = qrpay.Keys{"w1": walletPriv.Public().(ed25519.PublicKey)}
	denoms     = acceptor.Denominations{
		0x61: {ValueMinor: 1000, Currency: "CNY"},
		0x62: {ValueMinor: 5000, Currency: "CNY"},
		0x63: {ValueMinor: 10000, Currency: "CNY"},
	}
)

type fakeUnit struct {
	mu      sync.Mutex
	enabled []int
	calls   []string
}

func (f *fakeUnit) Enable(ctx context.Context, codes []int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.enabled = codes
	f.calls = append(f.calls, "enable")
	return nil
}

func (f *fakeUnit) Inhibit(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.enabled = nil
	f.calls = append(f.calls, "inhibit")
	return nil
}

func (f *fakeUnit) Enabled() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.enabled
}

type fakePrinter struct {
	mu       sync.Mutex
	receipts []Receipt
	err      error
	hold     chan struct{} // when set, a print waits for it to close
}

func (p *fakePrinter) PrintReceipt(ctx context.Context, r Receipt) error {
	if p.hold != nil {
		<-p.hold
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	p.receipts = append(p.receipts, r)
	return nil
}

func (p *fakePrinter) Receipts() []Receipt {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Receipt(nil), p.receipts...)
}

type fakeAuthz struct {
	resp wire.AuthzResponse
	err  error
}

func (a *fakeAuthz) Authorize(ctx context.Context, account, nonce, qr string) (wire.AuthzResponse, error) {
	if a.err != nil {
		return wire.AuthzResponse{}, a.err
	}
	r := a.resp
	r.V = 1
	return r, nil
}

type rig struct {
	t       *testing.T
	e       *Engine
	j       *journal.Journal
	unit    *fakeUnit
	printer *fakePrinter
	health  *health.Registry
	cancel  context.CancelFunc
	done    chan error
	path    string
}

func newRig(t *testing.T, path string, authz Authorizer) *rig {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "j.db")
	}
	j, err := journal.Open(path, journal.Options{KioskID: "K1", Currency: "CNY"})
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, j: j, unit: &fakeUnit{}, printer: &fakePrinter{}, health: health.New("b1", nil), path: path}
	r.e, err = New(Config{ClockTrusted: trustClock, Journal: j, Acceptor: r.unit, Denominations: denoms, Authorizer: authz, Printer: r.printer,
		Health: r.health, WalletKeys: walletKeys,
		Limits: Limits{SessionMax: 50000, OfflineSessionMax: 20000, OfflineTotalMax: 30000},
		Timing: Timing{RecoveryTimeout: 5 * time.Second, AckWait: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	r.health.Listen(func(health.Condition) { r.e.HealthChanged() })
	return r
}

func (r *rig) start() {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.done = make(chan error, 1)
	go func() { r.done <- r.e.Run(ctx) }()
}

func (r *rig) stop() {
	r.cancel()
	if err := <-r.done; err != nil {
		r.t.Errorf("Run: %v", err)
	}
	r.j.Close()
}

// waitState waits (in synctest time) for the engine to reach s.
func (r *rig) waitState(s State) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	for {
		v := r.e.View()
		if v.State == s.String() {
			return
		}
		if _, ok := r.e.WaitView(ctx, v.Seq); !ok {
			r.t.Fatalf("state %s never reached; stuck in %s (%s)", s, v.State, v.Message)
		}
	}
}

func code(account string, exp time.Time, nonce string) string {
	return qrpay.Sign(walletPriv, "w1", account, exp, nonce)
}

func note(c int) acceptor.Note { return denoms.Lookup(c) }

func TestHappyPathWithLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, "", &fakeAuthz{resp: wire.AuthzResponse{ReqID: "x", Status: wire.AuthzOK, RemainingMinor: 15000, NameMasked: "A***e"}})
		r.start()
		defer r.stop()
		r.waitState(Idle)
		h := r.e.Handler()
		h.Event(context.Background(), acceptor.Event{Kind: acceptor.Disabled})
		if err := r.e.Scan(code("alice", time.Now().Add(time.Minute), "nonce0001")); err != nil {
			t.Fatal(err)
		}
		r.waitState(Accepting)
		synctest.Wait()
		if got := r.unit.Enabled(); len(got) != 3 {
			t.Fatalf("enabled %v, want all three denominations under a 150.00 limit", got)
		}
		ctx := context.Background()
		if d := h.Escrow(ctx, note(0x63)); d != acceptor.Stack {
			t.Fatalf("first 100: %v", d)
		}
		// The intent is durable before the decision is returned.
		if in, _ := r.j.OpenIntents(); len(in) != 1 || in[0].Note.ValueMinor != 10000 {
			t.Fatalf("intents after stack decision: %+v", in)
		}
		if err := h.Credited(ctx, note(0x63)); err != nil {
			t.Fatal(err)
		}
		// 100 more would exceed 150: returned, and the unit is narrowed to what fits.
		if d := h.Escrow(ctx, note(0x63)); d != acceptor.Return {
			t.Fatalf("over-limit note: %v", d)
		}
		if !strings.Contains(r.e.View().Message, "over your limit") {
			t.Fatalf("message %q", r.e.View().Message)
		}
		if d := h.Escrow(ctx, note(0x62)); d != acceptor.Stack {
			t.Fatalf("50: %v", d)
		}
		h.Event(ctx, acceptor.Event{Kind: acceptor.Stacking})
		if err := h.Credited(ctx, note(0x62)); err != nil {
			t.Fatal(err)
		}
		h.Event(ctx, acceptor.Event{Kind: acceptor.Stacked})
		h.Event(ctx, acceptor.Event{Kind: acceptor.Idle})
		if v := r.e.View(); v.TotalMinor != 15000 || v.RemainingMinor != 0 {
			t.Fatalf("view %+v", v)
		}
		if err := r.e.Finish(); err != nil {
			t.Fatal(err)
		}
		r.waitState(Closing)
		h.Event(ctx, acceptor.Event{Kind: acceptor.Disabled})
		r.waitState(Done)
		rs := r.printer.Receipts()
		if len(rs) != 1 || rs[0].Topup.AmountMinor != 15000 || rs[0].Copy || rs[0].Status != ReceiptPending {
			t.Fatalf("receipts %+v", rs)
		}
		ob, _ := r.j.Outbox()
		if len(ob) != 1 || ob[0].AmountMinor != 15000 {
			t.Fatalf("outbox %+v", ob)
		}
		// The ack arrives: the screen says credited.
		res, err := r.j.ApplyAck(wire.Ack{V: 1, TopupID: ob[0].TopupID, Status: wire.AckCredited, AmountMinor: 15000, Currency: "CNY"})
		if err != nil {
			t.Fatal(err)
		}
		r.e.TopupAcked(res.Topup)
		if v := r.e.View(); v.Result == nil || v.Result.Status != ReceiptCredited || v.Result.ReceiptNo != 1 {
			t.Fatalf("result %+v", v.Result)
		}
		// The result goes away on its own.
		r.waitState(Idle)
	})
}

func TestRefusedCodes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, "", &fakeAuthz{resp: wire.AuthzResponse{ReqID: "x", Status: wire.AuthzOK, RemainingMinor: 15000}})
		r.start()
		defer r.stop()
		r.waitState(Idle)
		_, other, _ := ed25519.GenerateKey(nil)
		now := time.Now()
		for name, tc := range map[string]struct {
			code string
			want error
		}{
			"garbage": {"hello world", qrpay.ErrFormat},
			"forged":  {qrpay.Sign(other, "w1", "alice", now.Add(time.Minute), "nonce0002"), qrpay.ErrSignature},
			"expired": {code("alice", now.Add(-time.Second), "nonce0003"), qrpay.ErrExpired},
		} {
			err := r.e.Scan(tc.code)
			if !errors.Is(err, tc.want) {
				t.Errorf("%s: %v", name, err)
			}
			if v := r.e.View(); v.State != "idle" || v.Message != qrpay.Message(tc.want) {
				t.Errorf("%s: view %s %q", name, v.State, v.Message)
			}
		}
		good := code("alice", now.Add(time.Minute), "nonce0004")
		if err := r.e.Scan(good); err != nil {
			t.Fatal(err)
		}
		r.waitState(Accepting)
		r.e.Cancel()
		r.e.Handler().Event(context.Background(), acceptor.Event{Kind: acceptor.Disabled})
		r.waitState(Idle)
		if err := r.e.Scan(good); !errors.Is(err, qrpay.ErrReplayed) {
			t.Fatalf("replayed code: %v", err)
		}
		if !strings.Contains(r.e.View().Message, "already used") {
			t.Fatalf("replay message %q", r.e.View().Message)
		}
	})
}

func TestOfflineFallbackAndDenied(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		az := &fakeAuthz{err: errors.New("broker unreachable")}
		r := newRig(t, "", az)
		r.start()
		defer r.stop()
		r.waitState(Idle)
		if err := r.e.Scan(code("bob", time.Now().Add(time.Minute), "nonce0010")); err != nil {
			t.Fatal(err)
		}
		r.waitState(Accepting)
		if v := r.e.View(); !v.Offline || v.LimitMinor != 20000 {
			t.Fatalf("offline view %+v", v)
		}
		r.e.Cancel()
		r.e.Handler().Event(context.Background(), acceptor.Event{Kind: acceptor.Disabled})
		r.waitState(Idle)
		az.err = nil
		az.resp = wire.AuthzResponse{ReqID: "x", Status: wire.AuthzDenied, Reason: "account frozen"}
		r.e.Scan(code("bob", time.Now().Add(time.Minute), "nonce0011"))
		synctest.Wait()
		if v := r.e.View(); v.State != "idle" || !strings.Contains(v.Message, "account frozen") {
			t.Fatalf("denied view %s %q", v.State, v.Message)
		}
	})
}

func TestIdleTimeoutClosesSessionWithMoney(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, "", &fakeAuthz{resp: wire.AuthzResponse{ReqID: "x", Status: wire.AuthzOK, RemainingMinor: 50000}})
		r.start()
		defer r.stop()
		r.waitState(Idle)
		h := r.e.Handler()
		ctx := context.Background()
		h.Event(ctx, acceptor.Event{Kind: acceptor.Disabled})
		r.e.Scan(code("carol", time.Now().Add(time.Minute), "nonce0020"))
		r.waitState(Accepting)
		h.Escrow(ctx, note(0x61))
		h.Credited(ctx, note(0x61))
		h.Event(ctx, acceptor.Event{Kind: acceptor.Idle})
		start := time.Now()
		r.waitState(Done)
		if waited := time.Since(start); waited < 60*time.Second {
			t.Fatalf("closed after %v, before the idle timeout", waited)
		}
		if rs := r.printer.Receipts(); len(rs) != 1 || rs[0].Topup.AmountMinor != 1000 {
			t.Fatalf("receipts %+v", rs)
		}
	})
}

func TestFaultDuringSessionClosesItAndStopsService(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, "", &fakeAuthz{resp: wire.AuthzResponse{ReqID: "x", Status: wire.AuthzOK, RemainingMinor: 50000}})
		r.start()
		defer r.stop()
		r.waitState(Idle)
		h := r.e.Handler()
		ctx := context.Background()
		h.Event(ctx, acceptor.Event{Kind: acceptor.Disabled})
		r.e.Scan(code("dave", time.Now().Add(time.Minute), "nonce0030"))
		r.waitState(Accepting)
		h.Escrow(ctx, note(0x62))
		h.Credited(ctx, note(0x62))
		h.Event(ctx, acceptor.Event{Kind: acceptor.CassetteRemoved})
		r.waitState(Done)
		ob, _ := r.j.Outbox()
		w, _ := ob[0].Wire()
		if w.Outcome != wire.OutcomeInterrupted || w.AmountMinor != 5000 {
			t.Fatalf("topup %+v", w)
		}
		r.waitState(OutOfService)
		if err := r.e.Scan(code("dave", time.Now().Add(time.Minute), "nonce0031")); !errors.Is(err, ErrBusy) {
			t.Fatalf("scan while out of service: %v", err)
		}
		h.Event(ctx, acceptor.Event{Kind: acceptor.CassetteReplaced})
		h.Event(ctx, acceptor.Event{Kind: acceptor.Disabled})
		r.waitState(Idle)
	})
}

// TestRecovery covers what a restart finds in the journal, with the unit's start-up report.
func TestRecovery(t *testing.T) {
	type step func(h acceptor.Handler, ctx context.Context)
	for name, tc := range map[string]struct {
		unit          []step
		wantTotal     int64
		wantUncertain int
	}{
		"vend valid repeated after restart": {
			unit: []step{func(h acceptor.Handler, ctx context.Context) {
				h.Event(ctx, acceptor.Event{Kind: acceptor.Stacking})
				h.Credited(ctx, acceptor.Note{}) // ID-003 after a restart: value unknown
				h.Event(ctx, acceptor.Event{Kind: acceptor.Stacked})
				h.Event(ctx, acceptor.Event{Kind: acceptor.Disabled})
			}},
			wantTotal: 15000,
		},
		"note still in escrow": {
			unit: []step{func(h acceptor.Handler, ctx context.Context) {
				if d := h.Escrow(ctx, note(0x62)); d != acceptor.Stack {
					panic("not re-stacked")
				}
				h.Credited(ctx, note(0x62))
				h.Event(ctx, acceptor.Event{Kind: acceptor.Disabled})
			}},
			wantTotal: 15000,
		},
		"power up with note in stacker": {
			unit: []step{func(h acceptor.Handler, ctx context.Context) {
				h.Event(ctx, acceptor.Event{Kind: acceptor.PowerUpNoteInStacker})
				h.Event(ctx, acceptor.Event{Kind: acceptor.Disabled})
			}},
			wantTotal: 15000,
		},
		"power up with note in acceptor": {
			unit: []step{func(h acceptor.Handler, ctx context.Context) {
				h.Event(ctx, acceptor.Event{Kind: acceptor.PowerUpNoteInAcceptor})
				h.Event(ctx, acceptor.Event{Kind: acceptor.Disabled})
			}},
			wantTotal: 10000,
		},
		"unit idle, no report": {
			unit: []step{func(h acceptor.Handler, ctx context.Context) {
				h.Event(ctx, acceptor.Event{Kind: acceptor.Disabled})
			}},
			wantTotal: 10000, wantUncertain: 1,
		},
		"unit silent": {
			unit:      nil,
			wantTotal: 10000, wantUncertain: 1,
		},
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "j.db")
				// The previous run: one note credited, a second one committed to stack, crash.
				j, _ := journal.Open(path, journal.Options{KioskID: "K1", Currency: "CNY"})
				s, _ := j.OpenSession(journal.OpenSessionParams{Account: "erin", LimitMinor: 50000})
				in, _ := j.StackIntent(s.ID, journal.Note{Code: 0x63, ValueMinor: 10000})
				j.CreditNote(in.ID, journal.Note{}, "")
				j.StackIntent(s.ID, journal.Note{Code: 0x62, ValueMinor: 5000})
				j.Close()

				r := newRig(t, path, nil)
				r.start()
				defer r.stop()
				ctx := context.Background()
				for _, st := range tc.unit {
					st(r.e.Handler(), ctx)
				}
				r.waitState(Done)
				ob, _ := r.j.Outbox()
				if len(ob) != 1 {
					t.Fatalf("outbox %+v", ob)
				}
				w, _ := ob[0].Wire()
				if w.Outcome != wire.OutcomeInterrupted || w.AmountMinor != tc.wantTotal || len(w.Uncertain) != tc.wantUncertain {
					t.Fatalf("recovered topup: amount %d uncertain %d outcome %s", w.AmountMinor, len(w.Uncertain), w.Outcome)
				}
				if rs := r.printer.Receipts(); len(rs) != 1 || rs[0].Copy {
					t.Fatalf("recovery receipts %+v", rs)
				}
				if _, err := r.j.Verify(); err != nil {
					t.Fatal(err)
				}
			})
		})
	}
}

func TestCreditReReportAfterCommitNotCountedTwice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "j.db")
		// Crash after the credit commit, before the ACK reached the unit.
		j, _ := journal.Open(path, journal.Options{KioskID: "K1", Currency: "CNY"})
		s, _ := j.OpenSession(journal.OpenSessionParams{Account: "fred", LimitMinor: 50000})
		in, _ := j.StackIntent(s.ID, journal.Note{Code: 0x63, ValueMinor: 10000})
		j.CreditNote(in.ID, journal.Note{}, "")
		j.Close()
		r := newRig(t, path, nil)
		r.start()
		defer r.stop()
		ctx := context.Background()
		if err := r.e.Handler().Credited(ctx, acceptor.Note{}); err != nil {
			t.Fatal(err)
		}
		r.e.Handler().Event(ctx, acceptor.Event{Kind: acceptor.Disabled})
		r.waitState(Done)
		ob, _ := r.j.Outbox()
		if len(ob) != 1 || ob[0].AmountMinor != 10000 {
			t.Fatalf("outbox %+v", ob)
		}
		if u, _ := r.j.UncertainItems(); len(u) != 0 {
			t.Fatalf("uncertain %+v", u)
		}
	})
}

func TestReprintAfterCrashMidPrintIsCopy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "j.db")
		j, _ := journal.Open(path, journal.Options{KioskID: "K1", Currency: "CNY"})
		s, _ := j.OpenSession(journal.OpenSessionParams{Account: "gina", LimitMinor: 50000})
		in, _ := j.StackIntent(s.ID, journal.Note{Code: 0x63, ValueMinor: 10000})
		j.CreditNote(in.ID, journal.Note{}, "")
		res, _ := j.CloseSession(journal.CloseParams{SessionID: s.ID, Outcome: wire.OutcomeComplete})
		j.MarkPrint(res.Topup.Seq, journal.PrintStarted, "") // crash while printing
		j.Close()
		r := newRig(t, path, nil)
		r.start()
		defer r.stop()
		r.waitState(Idle)
		rs := r.printer.Receipts()
		if len(rs) != 1 || !rs[0].Copy {
			t.Fatalf("reprint %+v", rs)
		}
	})
}

func TestEscrowlessPulseUnit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		j, err := journal.Open(filepath.Join(t.TempDir(), "j.db"), journal.Options{KioskID: "K1", Currency: "CNY"})
		if err != nil {
			t.Fatal(err)
		}
		pulseDenoms := acceptor.Denominations{1: {Code: 1, ValueMinor: 1000, Currency: "CNY"}, 5: {Code: 5, ValueMinor: 5000, Currency: "CNY"}}
		r := &rig{t: t, j: j, unit: &fakeUnit{}, printer: &fakePrinter{}, health: health.New("b1", nil)}
		r.e, err = New(Config{ClockTrusted: trustClock, Journal: j, Acceptor: r.unit, Denominations: pulseDenoms, Printer: r.printer, Health: r.health,
			WalletKeys: walletKeys, Escrowless: true, Authorizer: &fakeAuthz{resp: wire.AuthzResponse{ReqID: "x", Status: wire.AuthzOK, RemainingMinor: 12000}},
			Limits: Limits{SessionMax: 50000, OfflineSessionMax: 20000, OfflineTotalMax: 30000}})
		if err != nil {
			t.Fatal(err)
		}
		r.health.Listen(func(health.Condition) { r.e.HealthChanged() })
		r.start()
		defer r.stop()
		r.waitState(Idle)
		h := r.e.Handler()
		pr := h.(acceptor.PulseRecorder)
		ctx := context.Background()
		h.Event(ctx, acceptor.Event{Kind: acceptor.Disabled})
		r.e.Scan(code("pat", time.Now().Add(time.Minute), "nonce0100"))
		r.waitState(Accepting)
		synctest.Wait()
		if got := r.unit.Enabled(); len(got) != 2 {
			t.Fatalf("enabled %v", got)
		}
		note := func(pulses int) {
			for c := 1; c <= pulses; c++ {
				if err := pr.Pulse(ctx, 1, c); err != nil {
					t.Fatal(err)
				}
			}
			h.Credited(ctx, pulseDenoms.Lookup(pulses))
		}
		note(5)
		synctest.Wait()
		if got := r.unit.Enabled(); len(got) != 2 {
			t.Fatalf("after 50 of 120 enabled %v", got)
		}
		note(5)
		synctest.Wait()
		// 20 left: the 50 note would not fit, and a pulse unit cannot refuse it: inhibited.
		if got := r.unit.Enabled(); got != nil {
			t.Fatalf("after 100 of 120 the unit is still enabled for %v", got)
		}
		// A train that matches no note becomes an uncertain item.
		pr.Pulse(ctx, 1, 1)
		pr.Pulse(ctx, 1, 2)
		pr.Pulse(ctx, 1, 3)
		h.Credited(ctx, acceptor.Note{Code: 3})
		h.Event(ctx, acceptor.Event{Kind: acceptor.Idle})
		r.e.Finish()
		h.Event(ctx, acceptor.Event{Kind: acceptor.Disabled})
		r.waitState(Done)
		ob, _ := r.j.Outbox()
		w, _ := ob[0].Wire()
		if w.AmountMinor != 10000 || len(w.Uncertain) != 1 {
			t.Fatalf("topup %+v", w)
		}
		if _, err := r.j.Verify(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestShutdownParksTheNoteInTransit: a stop while a note is on its way to the cassette waits
// for its credit, closes the session and only then returns.
func TestShutdownParksTheNoteInTransit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, "", &fakeAuthz{resp: wire.AuthzResponse{ReqID: "x", Status: wire.AuthzOK, RemainingMinor: 50000}})
		r.start()
		defer r.stop()
		r.waitState(Idle)
		h := r.e.Handler()
		ctx := context.Background()
		h.Event(ctx, acceptor.Event{Kind: acceptor.Disabled})
		r.e.Scan(code("sam", time.Now().Add(time.Minute), "nonce0200"))
		r.waitState(Accepting)
		if d := h.Escrow(ctx, note(0x63)); d != acceptor.Stack {
			t.Fatal(d)
		}
		h.Event(ctx, acceptor.Event{Kind: acceptor.Stacking})
		done := make(chan error, 1)
		go func() {
			gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			done <- r.e.Shutdown(gctx)
		}()
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("Shutdown returned with a note in transit: %v", err)
		default:
		}
		if err := r.e.Scan(code("tom", time.Now().Add(time.Minute), "nonce0201")); !errors.Is(err, ErrBusy) {
			t.Fatalf("scan while stopping: %v", err)
		}
		h.Credited(ctx, note(0x63))
		h.Event(ctx, acceptor.Event{Kind: acceptor.Stacked})
		h.Event(ctx, acceptor.Event{Kind: acceptor.Disabled})
		if err := <-done; err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		ob, _ := r.j.Outbox()
		if len(ob) != 1 || ob[0].AmountMinor != 10000 || ob[0].Outcome != wire.OutcomeInterrupted {
			t.Fatalf("outbox %+v", ob)
		}
		if len(r.printer.Receipts()) != 1 {
			t.Fatal("no receipt printed before the stop")
		}
		if got := r.unit.Enabled(); got != nil {
			t.Fatalf("unit left enabled: %v", got)
		}
	})
}

// TestShutdownGraceEnds: a unit that never finishes does not hold the stop beyond the grace.
func TestShutdownGraceEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, "", &fakeAuthz{resp: wire.AuthzResponse{ReqID: "x", Status: wire.AuthzOK, RemainingMinor: 50000}})
		r.start()
		defer r.stop()
		r.waitState(Idle)
		h := r.e.Handler()
		ctx := context.Background()
		h.Event(ctx, acceptor.Event{Kind: acceptor.Disabled})
		r.e.Scan(code("uli", time.Now().Add(time.Minute), "nonce0300"))
		r.waitState(Accepting)
		h.Escrow(ctx, note(0x63))
		h.Event(ctx, acceptor.Event{Kind: acceptor.Stacking})
		start := time.Now()
		gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := r.e.Shutdown(gctx); err == nil {
			t.Fatal("Shutdown claimed success with the note still in transit")
		}
		if waited := time.Since(start); waited != 10*time.Second {
			t.Fatalf("waited %v, want the 10 s grace", waited)
		}
		// The daemon then stops the engine: the session and its intent stay open in the
		// journal for the next start's recovery, instead of a guess now.
		r.cancel()
		if err := <-r.done; err != nil {
			t.Fatal(err)
		}
		if in, _ := r.j.OpenIntents(); len(in) != 1 {
			t.Fatalf("intents %+v", in)
		}
		if _, open, _ := r.j.CurrentSession(); !open {
			t.Fatal("session closed on a guess")
		}
		r.done <- nil // for the deferred stop
	})
}

// cutPrinter is a printer with an autocutter counter.
type cutPrinter struct {
	fakePrinter
	cuts uint64
}

func (p *cutPrinter) CutCount(ctx context.Context) (uint64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cuts, nil
}

func (p *cutPrinter) PrintReceipt(ctx context.Context, r Receipt) error {
	err := p.fakePrinter.PrintReceipt(ctx, r)
	p.mu.Lock()
	p.cuts++
	p.mu.Unlock()
	return err
}

// TestInterruptedPrintResolvedByCutCounter: after a crash in the middle of printing, the
// printer's cut counter decides: unchanged → the receipt never came out, print the original;
// moved → it came out, print nothing more.
func TestInterruptedPrintResolvedByCutCounter(t *testing.T) {
	for _, tc := range []struct {
		name       string
		cutsMoved  bool
		wantPrints int
		wantCopy   bool
	}{{"nothing came out", false, 1, false}, {"receipt came out", true, 0, false}} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "j.db")
				j, _ := journal.Open(path, journal.Options{KioskID: "K1", Currency: "CNY"})
				s, _ := j.OpenSession(journal.OpenSessionParams{Account: "wes", LimitMinor: 50000})
				in, _ := j.StackIntent(s.ID, journal.Note{Code: 0x63, ValueMinor: 10000})
				j.CreditNote(in.ID, journal.Note{}, "")
				res, _ := j.CloseSession(journal.CloseParams{SessionID: s.ID, Outcome: wire.OutcomeComplete})
				j.MarkPrintStart(res.Topup.Seq, 41, true) // crash while printing
				j.Close()
				r := newRig(t, path, nil)
				cp := &cutPrinter{cuts: 41}
				if tc.cutsMoved {
					cp.cuts = 42
				}
				r.e.cfg.Printer = cp
				r.start()
				defer r.stop()
				r.waitState(Idle)
				rs := cp.Receipts()
				if len(rs) != tc.wantPrints || (len(rs) == 1 && rs[0].Copy != tc.wantCopy) {
					t.Fatalf("receipts %+v", rs)
				}
				if u, _ := r.j.Unprinted(); len(u) != 0 {
					t.Fatalf("still unprinted: %+v", u)
				}
			})
		})
	}
}

// TestAckDuringRecoveryShowsCredited: the ledger acknowledges the recovered session's top-up
// while the recovery still prints; the result on screen says credited.
func TestAckDuringRecoveryShowsCredited(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "j.db")
		j, _ := journal.Open(path, journal.Options{KioskID: "K1", Currency: "CNY"})
		s, _ := j.OpenSession(journal.OpenSessionParams{Account: "hal", LimitMinor: 50000})
		in, _ := j.StackIntent(s.ID, journal.Note{Code: 0x63, ValueMinor: 10000})
		j.CreditNote(in.ID, journal.Note{}, "")
		j.Close()
		r := newRig(t, path, nil)
		block := make(chan struct{})
		r.printer.hold = block
		r.start()
		defer r.stop()
		r.e.Handler().Event(context.Background(), acceptor.Event{Kind: acceptor.Disabled})
		synctest.Wait() // the recovery prints the receipt: the printer holds it
		ob, _ := r.j.Outbox()
		if len(ob) != 1 {
			t.Fatalf("outbox %+v", ob)
		}
		res, err := r.j.ApplyAck(wire.Ack{V: 1, TopupID: ob[0].TopupID, Status: wire.AckCredited, AmountMinor: 10000, Currency: "CNY"})
		if err != nil {
			t.Fatal(err)
		}
		r.e.TopupAcked(res.Topup)
		close(block)
		r.waitState(Done)
		if v := r.e.View(); v.Result == nil || v.Result.Status != ReceiptCredited {
			t.Fatalf("result %+v", v.Result)
		}
	})
}

// trustClock is the test engines' clock rule: the bubble's clock (year 2000) is good. The
// tests of the untrusted clock set their own.
func trustClock(time.Time) bool { return true }

// TestPulseTrainOfThePreviousRunSurvivesTheFirstPulse: a host died after journaling a
// whole train and before its credit committed; the next run's first pulse (a note already
// in transit when the host died, pulsed while the engine is still recovering) must not
// overwrite that open train: it becomes an uncertain item first, and the new note is
// recorded as well (sim seed 800097).
func TestPulseTrainOfThePreviousRunSurvivesTheFirstPulse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "j.db")
		j, err := journal.Open(path, journal.Options{KioskID: "K1", Currency: "CNY"})
		if err != nil {
			t.Fatal(err)
		}
		for c := 1; c <= 5; c++ {
			if err := j.RecordPulse(2, c); err != nil {
				t.Fatal(err)
			}
		}
		j.Close() // crash at the credit of train 2

		j, err = journal.Open(path, journal.Options{KioskID: "K1", Currency: "CNY"})
		if err != nil {
			t.Fatal(err)
		}
		pulseDenoms := acceptor.Denominations{1: {Code: 1, ValueMinor: 1000, Currency: "CNY"}, 5: {Code: 5, ValueMinor: 5000, Currency: "CNY"}}
		r := &rig{t: t, j: j, unit: &fakeUnit{}, printer: &fakePrinter{}, health: health.New("b1", nil)}
		r.e, err = New(Config{ClockTrusted: trustClock, Journal: j, Acceptor: r.unit, Denominations: pulseDenoms, Printer: r.printer, Health: r.health,
			WalletKeys: walletKeys, Escrowless: true, Authorizer: &fakeAuthz{resp: wire.AuthzResponse{ReqID: "x", Status: wire.AuthzOK, RemainingMinor: 12000}},
			Limits: Limits{SessionMax: 50000, OfflineSessionMax: 20000, OfflineTotalMax: 30000},
			Timing: Timing{RecoveryTimeout: 5 * time.Second, AckWait: time.Second}})
		if err != nil {
			t.Fatal(err)
		}
		r.health.Listen(func(health.Condition) { r.e.HealthChanged() })
		r.start()
		defer r.stop()
		h := r.e.Handler()
		pr := h.(acceptor.PulseRecorder)
		ctx := context.Background()
		// The new driver's first train, while the engine still recovers.
		if err := pr.Pulse(ctx, 1, 1); err != nil {
			t.Fatal(err)
		}
		if err := h.Credited(ctx, pulseDenoms.Lookup(1)); err != nil {
			t.Fatal(err)
		}
		h.Event(ctx, acceptor.Event{Kind: acceptor.Disabled})
		r.waitState(Idle)
		items, err := r.j.UncertainItems()
		if err != nil {
			t.Fatal(err)
		}
		// No session is open: the new note is an uncertain item of its own, with its value.
		if len(items) != 2 || !strings.Contains(items[0].Reason, "5 pulse(s) journaled in train 2") || items[0].ValueMinor != 0 ||
			items[1].ValueMinor != 1000 {
			t.Fatalf("uncertain items %+v, want the previous run's train of 5 pulses, then the new 1000 note", items)
		}
		if _, open, _ := r.j.OpenPulseTrain(); open {
			t.Fatal("a pulse train is still open")
		}
	})
}
