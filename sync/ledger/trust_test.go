package ledger

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/kioskd/kioskd/kiosk/qrpay"
	"github.com/kioskd/kioskd/sync/wire"
)

// The checks of DESIGN.md §11, as an attacker holding one kiosk's key would try them.

func heldAck(t *testing.T, k *kiosk, tp wire.Topup, reason string) wire.Ack {
	t.Helper()
	a := k.topup(tp, wire.AckHeld)
	if a.Reason != reason {
		t.Fatalf("%s held for %q, want %q", tp.TopupID, a.Reason, reason)
	}
	return a
}

func noCredit(t *testing.T, s Store, account string) {
	t.Helper()
	if info, err := s.Account(account); !errors.Is(err, ErrNotFound) {
		t.Fatalf("account %s credited: %+v %v", account, info, err)
	}
}

func TestForgedTopupsHeldNeverCredited(t *testing.T) {
	forEachStore(t, testForgedTopupsHeldNeverCredited)
}

func testForgedTopupsHeldNeverCredited(t *testing.T, open openFunc) {
	b := startBroker(t)
	clk := &fakeClock{t: t0.Add(time.Hour)}
	store := open(clk.Now)
	_, otherPriv, _ := ed25519.GenerateKey(nil)
	runLedger(t, b, store, "ledger-1", func(c *Config) { c.Now = clk.Now })
	k := newKiosk(t, b, "K1")

	// The mint: a hand-written top-up of 100,000,000.00 CNY, 100 notes "of 1,000,000",
	// without a wallet proof.
	mint := wire.Topup{V: 1, TopupID: wire.TopupID("K1", 0xbad, 1), KioskID: "K1", Seq: 1, Account: "mallory", Currency: "CNY",
		AmountMinor: 10_000_000_000, Notes: []wire.NoteLine{{ValueMinor: 100_000_000, Count: 100}}, OpenedAt: t0, ClosedAt: t0,
		ReceiptNo: 1, Outcome: wire.OutcomeComplete}
	a := heldAck(t, k, mint, HoldQRMissing)
	if a.LedgerRef != "" || a.AckedThroughSeq != 1 {
		t.Errorf("held ack %+v: want no ledger_ref and the seq counted as held", a)
	}
	// With a genuine code of mallory's own, the amount and the notes still hold it.
	mint.TopupID, mint.Seq, mint.ReceiptNo = wire.TopupID("K1", 0xbad, 2), 2, 2
	mint.QR = qrFor("mallory", "mint00001", t0.Add(time.Hour))
	heldAck(t, k, mint, HoldOverMax)
	noCredit(t, store, "mallory")

	type forgery struct {
		name   string
		mut    func(*wire.Topup)
		reason string
	}
	for i, f := range []forgery{
		{"no proof", func(tp *wire.Topup) { tp.QR = "" }, HoldQRMissing},
		{"garbage proof", func(tp *wire.Topup) { tp.QR = "IMW1.not.a.code" }, HoldQRInvalid},
		{"unknown wallet key", func(tp *wire.Topup) {
			tp.QR = qrpay.Sign(otherPriv, "w1", tp.Account, t0.Add(time.Hour), "forged001")
		}, HoldQRInvalid},
		{"another account's code", func(tp *wire.Topup) {
			tp.QR = qrFor("victim", "victim001", t0.Add(time.Hour))
		}, HoldQRAccount},
		{"opened after expiry", func(tp *wire.Topup) { tp.OpenedAt = t0.Add(2 * time.Hour) }, HoldQRExpired},
		{"no such banknote", func(tp *wire.Topup) {
			tp.Notes, tp.AmountMinor = []wire.NoteLine{{ValueMinor: 300, Count: 2}}, 600
		}, HoldDenomination},
		{"uncertain item no banknote", func(tp *wire.Topup) {
			tp.Uncertain = []wire.Uncertain{{ValueMinor: 7, Reason: "power_cut"}}
		}, HoldDenomination},
		{"over the maximum", func(tp *wire.Topup) {
			tp.Notes, tp.AmountMinor = []wire.NoteLine{{ValueMinor: 10000, Count: 51}}, 510_000
		}, HoldOverMax},
		{"currency not accepted", func(tp *wire.Topup) { tp.Currency = "USD" }, HoldCurrency},
	} {
		tp := topup("K1", 1, uint64(i+1), "mallory", 10000)
		f.mut(&tp)
		heldAck(t, k, tp, f.reason)
		// Held again when delivered again; another content for the id is a conflict.
		heldAck(t, k, tp, f.reason)
	}
	noCredit(t, store, "mallory")
	// The first forgery again with a proof: other content for a held id is a conflict.
	k.topup(topup("K1", 1, 1, "mallory", 10000), wire.AckConflict)
	noCredit(t, store, "mallory")

	// A code opens one top-up, forever: the second top-up with it is held.
	ok := topup("K1", 2, 1, "alice", 10000)
	k.topup(ok, wire.AckCredited)
	again := topup("K1", 2, 2, "alice", 10000)
	again.QR = ok.QR
	heldAck(t, k, again, HoldQRReused)
	changed := ok
	changed.AmountMinor, changed.Notes = 20000, []wire.NoteLine{{ValueMinor: 10000, Count: 2}}
	k.topup(changed, wire.AckConflict)

	// An offline top-up arriving days after its code expired is credited: the session
	// opened while the code was valid.
	clk.Set(t0.Add(5 * 24 * time.Hour))
	k.topup(topup("K1", 2, 3, "alice", 5000), wire.AckCredited)
	info, err := store.Account("alice")
	if err != nil || info.Balances["CNY"] != 15000 {
		t.Fatalf("alice %+v %v", info, err)
	}

	held, err := store.Held(HeldOpen)
	if err != nil || len(held) != 12 {
		t.Fatalf("held %d records, want 12: %v", len(held), err)
	}
}

func TestKioskDailyCashInAndOverrides(t *testing.T) {
	forEachStore(t, testKioskDailyCashInAndOverrides)
}

func testKioskDailyCashInAndOverrides(t *testing.T, open openFunc) {
	b := startBroker(t)
	store := open(nil)
	notes := int64(5)
	runLedger(t, b, store, "ledger-1", func(c *Config) {
		c.Policy = Fleet{Policy: Policy{DailyCashInMinor: 100_000}, Kiosks: map[string]Override{"K1": {DailyNotes: &notes}}}
	})
	k1, k2 := newKiosk(t, b, "K1"), newKiosk(t, b, "K2")
	k1.topup(topup("K1", 1, 1, "alice", 30000), wire.AckCredited)          // 3 notes
	heldAck(t, k1, topup("K1", 1, 2, "alice", 30000), HoldKioskDailyNotes) // 6 > 5
	k1.topup(topup("K1", 1, 3, "alice", 20000), wire.AckCredited)          // 5
	// K2 has the fleet's 2500 notes but the fleet's 1,000.00 a day.
	k2.topup(topup("K2", 1, 1, "bob", 90000), wire.AckCredited)
	heldAck(t, k2, topup("K2", 1, 2, "bob", 20000), HoldKioskDailyAmount)
	// Another day (the code's expiry date) starts afresh.
	next := topup("K2", 1, 3, "bob", 20000)
	next.OpenedAt = t0.Add(24 * time.Hour)
	next.QR = qrFor("bob", "nextday01", t0.Add(25*time.Hour))
	k2.topup(next, wire.AckCredited)
}

func TestStrictEpochsHoldUntilReleased(t *testing.T) {
	forEachStore(t, testStrictEpochsHoldUntilReleased)
}

func testStrictEpochsHoldUntilReleased(t *testing.T, open openFunc) {
	b := startBroker(t)
	store := open(nil)
	l, _ := runLedger(t, b, store, "ledger-1", func(c *Config) {
		strict := true
		c.Policy = Fleet{Kiosks: map[string]Override{"K1": {StrictEpochs: &strict}}}
		c.Operators = map[string]string{"olga": "olga-token-0123456789"}
	})
	k1, k2 := newKiosk(t, b, "K1"), newKiosk(t, b, "K2")
	// Not strict: a new epoch is credited and alarmed.
	r := k2.topup(topup("K2", 7, 1, "bob", 1000), wire.AckCredited)
	if r.AckedThroughSeq != 1 {
		t.Errorf("ack %+v", r)
	}
	// Strict: held until ops release one; the rest of the epoch then credits.
	heldAck(t, k1, topup("K1", 9, 1, "alice", 1000), HoldUnknownEpoch)
	heldAck(t, k1, topup("K1", 9, 2, "alice", 1000), HoldUnknownEpoch)
	alarms, err := store.Alarms()
	if err != nil || len(alarms) != 2 || alarms[0].Kind != AlarmNewEpoch || alarms[0].KioskID != "K2" || alarms[1].KioskID != "K1" {
		t.Fatalf("alarms %+v %v", alarms, err)
	}
	h := l.Handler()
	var rec HeldRecord
	post(t, h, "/api/held/"+wire.TopupID("K1", 9, 1)+"/release", "olga", "olga-token-0123456789", "called the shop: new SD card", 200, &rec)
	if rec.Status != HeldReleased || rec.Decision.Operator != "olga" || rec.LedgerRef == "" {
		t.Fatalf("released %+v", rec)
	}
	k1.topup(topup("K1", 9, 3, "alice", 1000), wire.AckCredited)
	// The released one is credited now: a redelivery is a duplicate.
	k1.topup(topup("K1", 9, 1, "alice", 1000), wire.AckDuplicate)
	if info, _ := store.Account("alice"); info.Balances["CNY"] != 2000 {
		t.Errorf("alice %+v", info)
	}
}

func post(t *testing.T, h http.Handler, path, operator, token, note string, wantCode int, v any) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"operator": operator, "note": note})
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != wantCode {
		t.Fatalf("POST %s: %d %s, want %d", path, w.Code, w.Body, wantCode)
	}
	if v != nil {
		if err := json.Unmarshal(w.Body.Bytes(), v); err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
	}
}

func TestOpsDecisionsNeedTheOperatorsToken(t *testing.T) {
	clk := &fakeClock{t: t0}
	store := openStore(t, "", clk.Now)
	l, err := New(Config{Store: store, Signer: testSigner, WalletKeys: testWallet, Now: clk.Now,
		Operators: map[string]string{"olga": "olga-token-0123456789", "ivan": "ivan-token-0123456789"}})
	if err != nil {
		t.Fatal(err)
	}
	held := topup("K1", 1, 1, "alice", 10000)
	held.QR = ""
	if r, err := store.Apply(held, l.checks(&held)); err != nil || r.Status != wire.AckHeld {
		t.Fatalf("%+v %v", r, err)
	}
	h := l.Handler()
	path := "/api/held/" + held.TopupID + "/release"
	post(t, h, path, "olga", "", "", 401, nil)
	post(t, h, path, "olga", "ivan-token-0123456789", "", 401, nil) // another operator's token
	post(t, h, path, "mallory", "olga-token-0123456789", "", 401, nil)
	post(t, h, "/api/held/"+held.TopupID+"/approve", "olga", "olga-token-0123456789", "", 404, nil)
	post(t, h, "/api/held/"+wire.TopupID("K1", 1, 9)+"/release", "olga", "olga-token-0123456789", "", 404, nil)
	noCredit(t, store, "alice")
	var rec HeldRecord
	post(t, h, path, "ivan", "ivan-token-0123456789", "customer showed the receipt", 200, &rec)
	if rec.Status != HeldReleased || rec.Decision.Operator != "ivan" || rec.Decision.Note != "customer showed the receipt" || !rec.Decision.At.Equal(t0) {
		t.Errorf("%+v", rec)
	}
	post(t, h, path, "olga", "olga-token-0123456789", "", 409, nil)
	post(t, h, "/api/held/"+held.TopupID+"/reject", "olga", "olga-token-0123456789", "", 409, nil)
	if info, err := store.Account("alice"); err != nil || info.Balances["CNY"] != 10000 {
		t.Errorf("alice %+v %v", info, err)
	}

	// Reject: stays uncredited, recorded.
	bad := topup("K1", 1, 2, "mallory", 10000)
	bad.QR = ""
	store.Apply(bad, l.checks(&bad))
	post(t, h, "/api/held/"+bad.TopupID+"/reject", "olga", "olga-token-0123456789", "forged", 200, &rec)
	if rec.Status != HeldRejected || rec.Decision.Operator != "olga" {
		t.Errorf("%+v", rec)
	}
	noCredit(t, store, "mallory")
	var list []HeldRecord
	httpGet(t, h, "/api/held?status=rejected", 200, &list)
	if len(list) != 1 || list[0].TopupID != bad.TopupID {
		t.Errorf("rejected list %+v", list)
	}
	httpGet(t, h, "/api/held", 200, &list)
	if len(list) != 2 {
		t.Errorf("held list %+v", list)
	}

	// Suspense: an uncertain item is released (credited) or rejected once.
	tp := topup("K1", 1, 3, "bob", 5000)
	tp.Outcome = wire.OutcomeInterrupted
	tp.Uncertain = []wire.Uncertain{{ValueMinor: 10000, Reason: "power_cut"}, {ValueMinor: 5000, Reason: "power_cut"}}
	if r, err := store.Apply(tp, l.checks(&tp)); err != nil || r.Status != wire.AckCredited {
		t.Fatalf("%+v %v", r, err)
	}
	sus, _ := store.Suspense()
	var sr SuspenseRecord
	post(t, h, "/api/suspense/"+sus[0].Ref+"/release", "olga", "wrong-token-0123456789", "", 401, nil)
	post(t, h, "/api/suspense/"+sus[0].Ref+"/release", "olga", "olga-token-0123456789", "found in the cassette", 200, &sr)
	if sr.Status != HeldReleased || sr.CreditRef == "" || sr.Decision.Operator != "olga" {
		t.Errorf("%+v", sr)
	}
	post(t, h, "/api/suspense/"+sus[0].Ref+"/release", "olga", "olga-token-0123456789", "", 409, nil)
	post(t, h, "/api/suspense/"+sus[1].Ref+"/reject", "olga", "olga-token-0123456789", "not in the count", 200, &sr)
	post(t, h, "/api/suspense/SU999/reject", "olga", "olga-token-0123456789", "", 404, nil)
	if info, _ := store.Account("bob"); info.Balances["CNY"] != 15000 {
		t.Errorf("bob %+v: want the top-up and the released item", info)
	}
	if st := l.Stats(); st.Unauthorized != 4 {
		t.Errorf("unauthorized %d", st.Unauthorized)
	}
}

func TestAuthzNeedsProof(t *testing.T) {
	clk := &fakeClock{t: t0}
	store := openStore(t, "", clk.Now)
	l, err := New(Config{Store: store, Signer: testSigner, WalletKeys: testWallet, Now: clk.Now,
		Names: map[string]string{"alice": "Alice Liddell"}})
	if err != nil {
		t.Fatal(err)
	}
	exp := t0.Add(5 * time.Minute)
	for name, tc := range map[string]struct {
		qr, reason string
	}{
		"no proof":          {"", ReasonNoProof},
		"another account":   {qrFor("bob", "bobcode01", exp), ReasonBadProof},
		"forged":            {"IMW1.alice.1999999999.abcdefgh.w1.AAAA", ReasonBadProof},
		"expired":           {qrFor("alice", "oldcode01", t0.Add(-time.Hour)), ReasonProofExpired},
		"within tolerance":  {qrFor("alice", "late00001", t0.Add(-time.Minute)), ""},
		"genuine and fresh": {qrFor("alice", "fresh0001", exp), ""},
	} {
		r, ok := l.authorize("K1", wire.AuthzRequest{V: 1, ReqID: "r1", Account: "alice", QR: tc.qr})
		if !ok {
			t.Fatalf("%s: no answer", name)
		}
		if tc.reason != "" && (r.Status != wire.AuthzDenied || r.Reason != tc.reason || r.NameMasked != "" || r.RemainingMinor != 0) {
			t.Errorf("%s: %+v, want denied %s and nothing about the account", name, r, tc.reason)
		}
		if tc.reason == "" && (r.Status != wire.AuthzOK || r.NameMasked != "A***********l") {
			t.Errorf("%s: %+v", name, r)
		}
	}
	// A code that opened a top-up proves nothing any more.
	tp := topup("K1", 1, 1, "alice", 1000)
	if r, err := store.Apply(tp, l.checks(&tp)); err != nil || r.Status != wire.AckCredited {
		t.Fatalf("%+v %v", r, err)
	}
	clk.Set(t0.Add(30 * time.Minute))
	if r, _ := l.authorize("K1", wire.AuthzRequest{V: 1, ReqID: "r2", Account: "alice", QR: tp.QR}); r.Reason != ReasonProofUsed {
		t.Errorf("used code: %+v", r)
	}
}

func TestParseFleet(t *testing.T) {
	f, err := ParseFleet([]byte(`{"max_topup_minor": 200000, "denominations": {"CNY": [100, 500]}, "strict_epochs": true,
		"qr_tolerance": "2m", "kiosks": {"K7": {"daily_notes": 100, "strict_epochs": false}}}`))
	if err != nil {
		t.Fatal(err)
	}
	p := f.effective("K7", Limits{PerTopupMaxMinor: 1})
	if p.MaxTopupMinor != 200000 || p.DailyNotes != 100 || p.StrictEpochs || time.Duration(p.QRTolerance) != 2*time.Minute {
		t.Errorf("K7 %+v", p)
	}
	if p := f.effective("K8", Limits{}); !p.StrictEpochs || p.DailyNotes != 2500 {
		t.Errorf("K8 %+v", p)
	}
	for _, bad := range []string{`{"max_topup": 1}`, `{"denominations": {"CNY": [0]}}`, `{"kiosks": {"a/b": {}}}`,
		`{"max_topup_minor": -1}`, `{"qr_tolerance": "soon"}`} {
		if _, err := ParseFleet([]byte(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestStoreHeldAndSharedNonce(t *testing.T) { forEachStore(t, testStoreHeldAndSharedNonce) }

func testStoreHeldAndSharedNonce(t *testing.T, open openFunc) {
	s := open(nil)
	first := topup("K1", 1, 1, "alice", 10000)
	if r, err := s.Apply(first, Checks{QRNonce: "w1.n1"}); err != nil || r.Status != wire.AckCredited {
		t.Fatalf("%+v %v", r, err)
	}
	// A follow-up of the same session may name the top-up that used the code...
	follow := topup("K1", 1, 2, "alice", 5000)
	if r, err := s.Apply(follow, Checks{QRNonce: "w1.n1", QRSharedWith: first.TopupID}); err != nil || r.Status != wire.AckCredited {
		t.Fatalf("follow-up: %+v %v", r, err)
	}
	// ...any other top-up with it is held.
	other := topup("K1", 1, 3, "alice", 5000)
	r, err := s.Apply(other, Checks{QRNonce: "w1.n1", QRSharedWith: wire.TopupID("K1", 1, 9)})
	if err != nil || r.Status != wire.AckHeld || r.Reason != HoldQRReused || r.Watermark != 3 {
		t.Fatalf("reuse: %+v %v", r, err)
	}
	if owner, err := s.QRNonceOwner("w1.n1"); err != nil || owner != first.TopupID {
		t.Errorf("owner %q %v", owner, err)
	}
	if _, err := s.DecideHeld(other.TopupID, Decision{Action: "approve", Operator: "o"}); !errors.Is(err, ErrDecision) {
		t.Errorf("bad action: %v", err)
	}
	if _, err := s.DecideHeld(other.TopupID, Decision{Action: ActionRelease}); !errors.Is(err, ErrDecision) {
		t.Errorf("no operator: %v", err)
	}
	if _, err := s.DecideHeld(wire.TopupID("K1", 1, 9), Decision{Action: ActionRelease, Operator: "o"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown id: %v", err)
	}
	if _, err := s.HeldTopup(first.TopupID); !errors.Is(err, ErrNotFound) {
		t.Errorf("a credited top-up listed as held: %v", err)
	}
	if _, err := s.DecideSuspense("SU000000000001", Decision{Action: ActionRelease, Operator: "o"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("no suspense: %v", err)
	}
	// A rejected top-up stays uncredited, and re-sent it is answered held.
	h, err := s.DecideHeld(other.TopupID, Decision{Action: ActionReject, Operator: "o", Note: "reused code"})
	if err != nil || h.Status != HeldRejected {
		t.Fatalf("%+v %v", h, err)
	}
	if r, err := s.Apply(other, Checks{QRNonce: "w1.n1"}); err != nil || r.Status != wire.AckHeld {
		t.Errorf("rejected, re-sent: %+v %v", r, err)
	}
	if info, _ := s.Account("alice"); info.Balances["CNY"] != 15000 {
		t.Errorf("alice %+v", info)
	}
}
