package ledger

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/kioskd/kioskd/kiosk/qrpay"
	"github.com/kioskd/kioskd/sync/wire"
)

var t0 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

// Test wallet: the key that signs the customers' QR codes.
var (
	testWalletPub, testWalletPriv, _ = ed25519.GenerateKey(nil)
	testWallet                       = map[string]ed25519.PublicKey{"w1": testWalletPub}
)

// qrFor signs a wallet code for account, valid until expires.
func qrFor(account, nonce string, expires time.Time) string {
	return qrpay.Sign(testWalletPriv, "w1", account, expires, nonce)
}

// topup builds a valid top-up of amount for account: CNY notes (largest first; a remainder
// that is no banknote becomes one note line of its own), opened at t0 with a code valid for
// an hour whose nonce follows from the topup_id, so a redelivery is identical.
func topup(kiosk string, epoch, seq uint64, account string, amount int64) wire.Topup {
	id := wire.TopupID(kiosk, epoch, seq)
	sum := sha256.Sum256([]byte(id))
	t := wire.Topup{V: 1, TopupID: id, KioskID: kiosk, Seq: seq, Account: account,
		Currency: "CNY", AmountMinor: amount, OpenedAt: t0, ClosedAt: t0.Add(time.Minute), ReceiptNo: seq,
		Outcome: wire.OutcomeComplete, QR: qrFor(account, hex.EncodeToString(sum[:12]), t0.Add(time.Hour))}
	rest := amount
	for _, v := range []int64{10000, 5000, 2000, 1000, 500, 100} {
		if n := rest / v; n > 0 {
			t.Notes = append(t.Notes, wire.NoteLine{ValueMinor: v, Count: n})
			rest -= n * v
		}
	}
	if rest > 0 {
		t.Notes = append(t.Notes, wire.NoteLine{ValueMinor: rest, Count: 1})
	}
	return t
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func openStore(t testing.TB, path string, now func() time.Time) *BoltStore {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "ledger.db")
	}
	s, err := OpenBolt(path, Options{Timeout: time.Second, NoSync: true, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustApply(t *testing.T, s Store, tp wire.Topup, want string) Result {
	t.Helper()
	r, err := s.ApplyTopup(tp)
	if err != nil {
		t.Fatalf("apply %s: %v", tp.TopupID, err)
	}
	if r.Status != want {
		t.Fatalf("apply %s: status %s, want %s", tp.TopupID, r.Status, want)
	}
	return r
}

func TestApplyCreditedDuplicateConflict(t *testing.T) {
	forEachStore(t, testApplyCreditedDuplicateConflict)
}

func testApplyCreditedDuplicateConflict(t *testing.T, open openFunc) {
	clk := &fakeClock{t: t0}
	s := open(clk.Now)
	a := topup("K1", 7, 1, "alice", 10000)
	r1 := mustApply(t, s, a, wire.AckCredited)
	if r1.Balance != 10000 || r1.LedgerRef == "" || r1.Watermark != 1 || r1.AmountMinor != 10000 {
		t.Errorf("credit: %+v", r1)
	}
	// Redelivery, even with a corrected clock on the kiosk: duplicate, same ledger_ref.
	b := a
	b.ClosedAt = b.ClosedAt.Add(time.Hour)
	r2 := mustApply(t, s, b, wire.AckDuplicate)
	if r2.LedgerRef != r1.LedgerRef || r2.Balance != 10000 {
		t.Errorf("duplicate: %+v", r2)
	}
	// Same id, different money: conflict, balance untouched, original reported.
	c := topup("K1", 7, 1, "alice", 20000)
	r3 := mustApply(t, s, c, wire.AckConflict)
	if r3.Balance != 10000 || r3.AmountMinor != 10000 || r3.LedgerRef != r1.LedgerRef {
		t.Errorf("conflict: %+v", r3)
	}
	// Same id, another account: conflict too.
	mustApply(t, s, topup("K1", 7, 1, "mallory", 10000), wire.AckConflict)
	if _, err := s.Account("mallory"); !errors.Is(err, ErrNotFound) {
		t.Errorf("conflicting account opened: %v", err)
	}

	rec, err := s.Topup(a.TopupID)
	if err != nil || rec.Conflicts != 2 || rec.AmountMinor != 10000 || rec.LedgerRef != r1.LedgerRef || !rec.CreditedAt.Equal(t0) {
		t.Errorf("Topup = %+v, %v", rec, err)
	}
	acct, err := s.Account("alice")
	if err != nil || acct.Balances["CNY"] != 10000 || acct.TopupCount != 1 || len(acct.Topups) != 1 {
		t.Errorf("Account = %+v, %v", acct, err)
	}
	if _, err := s.Topup("K1-0000000000000007-2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing topup: %v", err)
	}
}

func TestApplyRefusesInvalid(t *testing.T) { forEachStore(t, testApplyRefusesInvalid) }

func testApplyRefusesInvalid(t *testing.T, open openFunc) {
	s := open(nil)
	bad := topup("K1", 1, 1, "alice", 100)
	bad.AmountMinor = 200 // not the sum of the notes
	if _, err := s.ApplyTopup(bad); !errors.Is(err, ErrInvalid) || !errors.Is(err, wire.ErrInvalid) {
		t.Errorf("invalid: %v", err)
	}
	if _, err := s.Account("alice"); !errors.Is(err, ErrNotFound) {
		t.Error("invalid top-up credited")
	}
}

func TestInterruptedAndUncertain(t *testing.T) { forEachStore(t, testInterruptedAndUncertain) }

func testInterruptedAndUncertain(t *testing.T, open openFunc) {
	s := open(nil)
	tp := topup("K1", 1, 1, "bob", 5000)
	tp.Outcome = wire.OutcomeInterrupted
	tp.Uncertain = []wire.Uncertain{{ValueMinor: 10000, Reason: "stack_commanded_no_credit"}}
	r := mustApply(t, s, tp, wire.AckCredited)
	if r.Balance != 5000 || r.Suspense != 1 {
		t.Errorf("%+v", r) // the uncertain 100.00 is not credited
	}
	sus, err := s.Suspense()
	if err != nil || len(sus) != 1 || sus[0].ValueMinor != 10000 || sus[0].TopupID != tp.TopupID || sus[0].Account != "bob" {
		t.Errorf("suspense = %+v, %v", sus, err)
	}
	mustApply(t, s, tp, wire.AckDuplicate)
	if sus, _ := s.Suspense(); len(sus) != 1 {
		t.Errorf("duplicate added suspense: %d", len(sus))
	}
}

func TestWatermarkGapsAndEpochs(t *testing.T) { forEachStore(t, testWatermarkGapsAndEpochs) }

func testWatermarkGapsAndEpochs(t *testing.T, open openFunc) {
	s := open(nil)
	for _, step := range []struct {
		epoch, seq uint64
		want       uint64
	}{
		{1, 1, 1}, {1, 2, 2}, {1, 4, 2}, {1, 6, 2}, {1, 3, 4}, {1, 5, 6},
		{2, 2, 0}, {2, 1, 2}, // a new journal (new epoch) starts from 0 again
		{1, 7, 7},
	} {
		r := mustApply(t, s, topup("K1", step.epoch, step.seq, "alice", 100), wire.AckCredited)
		if r.Watermark != step.want {
			t.Errorf("epoch %d seq %d: watermark %d, want %d", step.epoch, step.seq, r.Watermark, step.want)
		}
	}
	// A duplicate reports the current watermark.
	if r := mustApply(t, s, topup("K1", 1, 1, "alice", 100), wire.AckDuplicate); r.Watermark != 7 {
		t.Errorf("duplicate watermark %d", r.Watermark)
	}
	mustApply(t, s, topup("K2", 1, 2, "alice", 100), wire.AckCredited)
	ks, err := s.Kiosks()
	if err != nil || len(ks) != 2 || ks[0].KioskID != "K1" || len(ks[0].Epochs) != 2 || ks[1].Epochs[0].Watermark != 0 || ks[1].Epochs[0].Above[0] != 2 {
		t.Fatalf("Kiosks = %+v, %v", ks, err)
	}
	if w, _ := s.Watermark("K1", 2); w != 2 {
		t.Errorf("Watermark(K1, 2) = %d", w)
	}
	if w, _ := s.Watermark("nobody", 2); w != 0 {
		t.Errorf("Watermark(nobody) = %d", w)
	}
}

func TestDailyCredited(t *testing.T) { forEachStore(t, testDailyCredited) }

func testDailyCredited(t *testing.T, open openFunc) {
	clk := &fakeClock{t: t0}
	s := open(clk.Now)
	mustApply(t, s, topup("K1", 1, 1, "alice", 100), wire.AckCredited)
	mustApply(t, s, topup("K1", 1, 2, "alice", 200), wire.AckCredited)
	clk.Set(t0.Add(24 * time.Hour))
	mustApply(t, s, topup("K1", 1, 3, "alice", 400), wire.AckCredited)
	if d, _ := s.DailyCredited("alice", "2026-11-25"); d["CNY"] != 300 {
		t.Errorf("day 1: %v", d)
	}
	if d, _ := s.DailyCredited("alice", "2026-11-26"); d["CNY"] != 400 {
		t.Errorf("day 2: %v", d)
	}
	if d, err := s.DailyCredited("bob", "2026-11-26"); err != nil || len(d) != 0 {
		t.Errorf("bob: %v %v", d, err)
	}
	acct, _ := s.Account("alice")
	if acct.Topups[0].Seq != 3 || acct.Topups[2].Seq != 1 {
		t.Errorf("not newest first: %d..%d", acct.Topups[0].Seq, acct.Topups[2].Seq)
	}
}

func TestReopenKeepsIdempotency(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l.db")
	s, err := OpenBolt(path, Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	r1 := mustApply(t, s, topup("K1", 1, 1, "alice", 100), wire.AckCredited)
	// A second open of the same file waits for the lock only as long as Timeout.
	if _, err := OpenBolt(path, Options{Timeout: 50 * time.Millisecond}); err == nil {
		t.Fatal("second open of a locked store succeeded")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openStore(t, path, nil)
	r2 := mustApply(t, s2, topup("K1", 1, 1, "alice", 100), wire.AckDuplicate)
	if r2.LedgerRef != r1.LedgerRef {
		t.Errorf("ledger_ref changed across reopen: %s → %s", r1.LedgerRef, r2.LedgerRef)
	}
	r3 := mustApply(t, s2, topup("K1", 1, 2, "alice", 100), wire.AckCredited)
	if r3.LedgerRef == r1.LedgerRef {
		t.Error("ledger_ref reused")
	}
}

func TestOverflowRefused(t *testing.T) {
	s := openStore(t, "", nil)
	// Reaching MaxInt64 through real top-ups takes thousands of maximal ones; seed the
	// balance directly instead.
	err := s.db.Update(func(tx *bolt.Tx) error {
		return putJSON(tx.Bucket(bAccounts), []byte("whale"), accountRec{Balances: map[string]int64{"CNY": math.MaxInt64 - 50}})
	})
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, s, topup("K1", 1, 1, "whale", 50), wire.AckCredited)
	if _, err := s.ApplyTopup(topup("K1", 1, 2, "whale", 1)); !errors.Is(err, ErrOverflow) {
		t.Fatalf("overflow: %v", err)
	}
	if w, _ := s.Watermark("K1", 1); w != 1 {
		t.Errorf("refused credit moved the watermark to %d", w)
	}
	if _, err := s.Topup(wire.TopupID("K1", 1, 2)); !errors.Is(err, ErrNotFound) {
		t.Errorf("refused credit stored: %v", err)
	}
}

// TestStoreProperties applies random sequences of fresh top-ups, redeliveries and conflicting
// redeliveries from several kiosks and epochs, concurrently, and checks the invariants: each
// balance is the sum of the distinct top-ups credited to it, each topup_id is credited once,
// and each watermark is the longest run 1..n of seqs held.
func TestStoreProperties(t *testing.T) { forEachStore(t, testStoreProperties) }

func testStoreProperties(t *testing.T, open openFunc) {
	for seed := range uint64(3) {
		rng := rand.New(rand.NewPCG(seed, 42))
		s := open(nil)
		type key struct {
			kiosk string
			epoch uint64
		}
		var ops []wire.Topup
		firsts := map[string]wire.Topup{} // topup_id → content of its first delivery
		for range 200 {
			k := key{[]string{"K1", "K2", "K3"}[rng.IntN(3)], uint64(rng.IntN(2) + 1)}
			seq := uint64(rng.IntN(40) + 1)
			acct := []string{"a", "b", "c", "d"}[rng.IntN(4)]
			tp := topup(k.kiosk, k.epoch, seq, acct, int64(rng.IntN(5)+1)*1000)
			ops = append(ops, tp)
		}
		// Shuffle in exact redeliveries.
		for range 60 {
			ops = append(ops, ops[rng.IntN(len(ops))])
		}
		rng.Shuffle(len(ops), func(i, j int) { ops[i], ops[j] = ops[j], ops[i] })

		var mu sync.Mutex
		credited := map[string]wire.Topup{}
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() {
				for i := w; i < len(ops); i += 4 {
					r, err := s.ApplyTopup(ops[i])
					if err != nil {
						t.Errorf("apply: %v", err)
						return
					}
					mu.Lock()
					if r.Status == wire.AckCredited {
						if _, again := credited[r.TopupID]; again {
							t.Errorf("seed %d: %s credited twice", seed, r.TopupID)
						}
						credited[r.TopupID] = ops[i]
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		// Every distinct id was credited once, with the content the store kept.
		for _, op := range ops {
			firsts[op.TopupID] = op
		}
		if len(credited) != len(firsts) {
			t.Fatalf("seed %d: %d credited, %d distinct ids", seed, len(credited), len(firsts))
		}
		want := map[string]int64{}
		held := map[key]map[uint64]bool{}
		for id, tp := range credited {
			rec, err := s.Topup(id)
			if err != nil || rec.ContentHash != tp.ContentHash() {
				t.Fatalf("seed %d: stored %s differs from its credit: %v", seed, id, err)
			}
			want[tp.Account] += tp.AmountMinor
			k := key{tp.KioskID, uint64(rec.Epoch)}
			if held[k] == nil {
				held[k] = map[uint64]bool{}
			}
			held[k][tp.Seq] = true
		}
		for acct, sum := range want {
			info, err := s.Account(acct)
			if err != nil || info.Balances["CNY"] != sum {
				t.Errorf("seed %d: %s balance %d, want %d (%v)", seed, acct, info.Balances["CNY"], sum, err)
			}
		}
		for k, seqs := range held {
			var n uint64
			for seqs[n+1] {
				n++
			}
			if w, _ := s.Watermark(k.kiosk, k.epoch); w != n {
				t.Errorf("seed %d: %v watermark %d, want %d", seed, k, w, n)
			}
		}
		// Conflicts never moved money: re-apply every op with a changed amount.
		for id, tp := range credited {
			c := tp
			c.Notes = []wire.NoteLine{{ValueMinor: 1, Count: 1}}
			c.AmountMinor = 1
			if r, err := s.ApplyTopup(c); err != nil || r.Status != wire.AckConflict {
				t.Fatalf("seed %d: %s: %+v %v", seed, id, r, err)
			}
		}
		for acct, sum := range want {
			if info, _ := s.Account(acct); info.Balances["CNY"] != sum {
				t.Errorf("seed %d: conflict moved %s to %d", seed, acct, info.Balances["CNY"])
			}
		}
	}
}

// TestFollowUpResolvesSuspense: a note whose credit the kiosk heard only after the session
// closed arrives as a follow-up top-up: it is credited, and the suspense record of the
// original's uncertain item is closed, so the note is never settled a second time.
func TestFollowUpResolvesSuspense(t *testing.T) { forEachStore(t, testFollowUpResolvesSuspense) }

func testFollowUpResolvesSuspense(t *testing.T, open openFunc) {
	s := open(nil)
	orig := topup("K1", 1, 1, "bob", 5000)
	orig.Outcome = wire.OutcomeInterrupted
	orig.Uncertain = []wire.Uncertain{{ValueMinor: 10000, Reason: "stack commanded, no credit seen"}}
	mustApply(t, s, orig, wire.AckCredited)
	other := topup("K1", 1, 2, "cid", 1000)
	other.Uncertain = []wire.Uncertain{{ValueMinor: 10000, Reason: "stack commanded, no credit seen"}}
	mustApply(t, s, other, wire.AckCredited)

	fu := topup("K1", 1, 3, "bob", 10000)
	fu.FollowsTopupID = orig.TopupID
	r := mustApply(t, s, fu, wire.AckCredited)
	if r.Balance != 15000 {
		t.Errorf("balance %d after the follow-up", r.Balance)
	}
	sus, err := s.Suspense()
	if err != nil || len(sus) != 1 || sus[0].TopupID != other.TopupID {
		t.Fatalf("suspense after the follow-up = %+v, %v; want only the other top-up's item", sus, err)
	}
	// A redelivery changes nothing.
	mustApply(t, s, fu, wire.AckDuplicate)
	if sus, _ := s.Suspense(); len(sus) != 1 {
		t.Errorf("suspense after a duplicate: %+v", sus)
	}
	// The link is part of the content: the same top-up without it is a conflict.
	plain := fu
	plain.FollowsTopupID = ""
	mustApply(t, s, plain, wire.AckConflict)
}

// TestFollowUpCannotMintMoney: a follow-up is credited only against suspense records that are
// still open, of its values, for the same account; a note settled by an operator cannot be
// credited again by a follow-up, and the reverse. Anything else is held, never credited.
func TestFollowUpCannotMintMoney(t *testing.T) { forEachStore(t, testFollowUpCannotMintMoney) }

func testFollowUpCannotMintMoney(t *testing.T, open openFunc) {
	s := open(nil)
	orig := topup("K1", 1, 1, "bob", 5000)
	orig.Uncertain = []wire.Uncertain{{ValueMinor: 10000, Reason: "stack commanded, no credit seen"}}
	mustApply(t, s, orig, wire.AckCredited)
	fu := topup("K1", 1, 2, "bob", 10000)
	fu.FollowsTopupID = orig.TopupID
	mustApply(t, s, fu, wire.AckCredited)

	// The item is resolved: a second follow-up naming the same top-up has nothing to settle.
	again := topup("K1", 1, 3, "bob", 10000)
	again.FollowsTopupID = orig.TopupID
	if r := mustApply(t, s, again, wire.AckHeld); r.Reason != HoldFollowUpUnmatched {
		t.Errorf("second follow-up held for %q", r.Reason)
	}
	// A follow-up to another account, or of another value, is held.
	o2 := topup("K1", 1, 4, "bob", 1000)
	o2.Uncertain = []wire.Uncertain{{ValueMinor: 2000, Reason: "r"}}
	mustApply(t, s, o2, wire.AckCredited)
	for _, bad := range []wire.Topup{topup("K1", 1, 5, "mallory", 2000), topup("K1", 1, 6, "bob", 5000)} {
		bad.FollowsTopupID = o2.TopupID
		if r := mustApply(t, s, bad, wire.AckHeld); r.Reason != HoldFollowUpUnmatched {
			t.Errorf("%s held for %q", bad.TopupID, r.Reason)
		}
	}
	// An operator releases o2's item; a follow-up for it afterwards is held.
	sus, err := s.Suspense()
	if err != nil {
		t.Fatal(err)
	}
	var ref string
	for _, r := range sus {
		if r.TopupID == o2.TopupID {
			ref = r.Ref
		}
	}
	if ref == "" {
		t.Fatalf("no open suspense record for %s in %+v", o2.TopupID, sus)
	}
	if _, err := s.DecideSuspense(ref, Decision{Action: ActionRelease, Operator: "ops1", Note: "found in the cassette count"}); err != nil {
		t.Fatal(err)
	}
	late := topup("K1", 1, 7, "bob", 2000)
	late.FollowsTopupID = o2.TopupID
	if r := mustApply(t, s, late, wire.AckHeld); r.Reason != HoldFollowUpUnmatched {
		t.Errorf("follow-up after the release held for %q", r.Reason)
	}
	acct, err := s.Account("bob")
	if err != nil {
		t.Fatal(err)
	}
	// 5000 + 10000 (follow-up) + 1000 + 2000 (operator's release): nothing twice.
	if got := acct.Balances["CNY"]; got != 18000 {
		t.Errorf("bob's balance %d, want 18000", got)
	}
}
