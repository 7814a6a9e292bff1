package wire

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestTopupIDRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		kiosk string
		epoch uint64
		seq   uint64
	}{{"K1", 0, 1}, {"kiosk-0001", 0xdeadbeefcafef00d, 18446744073709551615}, {"a_b-c", 1, 42}} {
		id := TopupID(tc.kiosk, tc.epoch, tc.seq)
		k, e, s, err := ParseTopupID(id)
		if err != nil || k != tc.kiosk || e != tc.epoch || s != tc.seq {
			t.Errorf("ParseTopupID(%q) = %q %x %d %v", id, k, e, s, err)
		}
	}
	for _, bad := range []string{"", "K1", "K1-00", "K1-0000000000000001-", "K1-0000000000000001-01", "K1-000000000000001-1", "K/1-0000000000000001-1", "K1-000000000000000g-1", "K1-0000000000000001-+1"} {
		if _, _, _, err := ParseTopupID(bad); !errors.Is(err, ErrBadTopupID) {
			t.Errorf("ParseTopupID(%q) err = %v, want ErrBadTopupID", bad, err)
		}
	}
}

func validTopup() Topup {
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	return Topup{V: 1, TopupID: TopupID("K1", 7, 3), KioskID: "K1", Seq: 3, Account: "acc_1", Currency: "CNY",
		AmountMinor: 15000, Notes: []NoteLine{{10000, 1}, {5000, 1}}, OpenedAt: now, ClosedAt: now.Add(time.Minute),
		ReceiptNo: 3, Outcome: OutcomeComplete}
}

func TestTopupValidate(t *testing.T) {
	ok := validTopup()
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid topup refused: %v", err)
	}
	for name, mut := range map[string]func(*Topup){
		"sum mismatch":     func(t *Topup) { t.AmountMinor++ },
		"negative note":    func(t *Topup) { t.Notes[0].ValueMinor = -1 },
		"id/seq mismatch":  func(t *Topup) { t.Seq = 4 },
		"id/kiosk":         func(t *Topup) { t.KioskID = "K2" },
		"bad currency":     func(t *Topup) { t.Currency = "cny" },
		"bad outcome":      func(t *Topup) { t.Outcome = "maybe" },
		"version":          func(t *Topup) { t.V = 2 },
		"no account":       func(t *Topup) { t.Account = "" },
		"bad account":      func(t *Topup) { t.Account = "a b" },
		"uncertain reason": func(t *Topup) { t.Uncertain = []Uncertain{{ValueMinor: 100}} },
	} {
		tp := validTopup()
		mut(&tp)
		if err := tp.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestContentHashSeparatesMoney(t *testing.T) {
	a, b := validTopup(), validTopup()
	b.ClosedAt = b.ClosedAt.Add(time.Hour) // delivery detail: same content
	if a.ContentHash() != b.ContentHash() {
		t.Error("clock correction changed the content hash")
	}
	b.Notes = []NoteLine{{5000, 3}}
	if a.ContentHash() == b.ContentHash() {
		t.Error("different notes, same hash")
	}
}

func TestEnvelope(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	otherPub, otherPriv, _ := ed25519.GenerateKey(nil)
	s := Signer{KID: "ledger1", Key: priv}
	ring := Keyring{"ledger1": pub, "other": otherPub}
	raw, err := s.Seal(Ack{V: 1, TopupID: "K1-0000000000000007-3", Status: AckCredited, AmountMinor: 15000})
	if err != nil {
		t.Fatal(err)
	}
	var a Ack
	if kid, err := ring.Open(raw, &a); err != nil || kid != "ledger1" || a.AmountMinor != 15000 {
		t.Fatalf("Open = %q %v %+v", kid, err, a)
	}
	// Tampered payload.
	bad := strings.Replace(string(raw), "15000", "16000", 1)
	if _, err := ring.Open([]byte(bad), &a); !errors.Is(err, ErrBadSig) {
		t.Errorf("tampered payload: %v", err)
	}
	// Signed by another key but claiming ledger1.
	forged, _ := Signer{KID: "ledger1", Key: otherPriv}.Seal(Ack{V: 1, TopupID: "x", Status: AckCredited})
	if _, err := ring.Open(forged, &a); !errors.Is(err, ErrBadSig) {
		t.Errorf("forged: %v", err)
	}
	unknown, _ := Signer{KID: "nope", Key: priv}.Seal(Ack{V: 1})
	if _, err := ring.Open(unknown, &a); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("unknown kid: %v", err)
	}
	if _, err := ring.Open(make([]byte, MaxPayload+1), &a); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized: %v", err)
	}
	if _, err := ring.Open([]byte(`{"v":1}`), &a); !errors.Is(err, ErrMissing) {
		t.Errorf("empty envelope: %v", err)
	}
}

func TestParseTopic(t *testing.T) {
	k, s, err := ParseTopic("kiosk/K-1/up/topup")
	if err != nil || k != "K-1" || s != UpTopup {
		t.Fatalf("got %q %q %v", k, s, err)
	}
	for _, bad := range []string{"kiosk/+/up/topup", "kiosk/K1/up", "k/K1/up/topup", "kiosk/K1/side/x", "kiosk//up/topup"} {
		if _, _, err := ParseTopic(bad); err == nil {
			t.Errorf("ParseTopic(%q) accepted", bad)
		}
	}
}

func FuzzOpenEnvelope(f *testing.F) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	ring := Keyring{"k": pub}
	good, _ := Signer{KID: "k", Key: priv}.Seal(Ack{V: 1, TopupID: "K1-0000000000000001-1", Status: AckCredited})
	f.Add(good)
	f.Add([]byte(`{"v":1,"kid":"k","payload":"{}","sig":""}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var a Ack
		if _, err := ring.Open(data, &a); err == nil {
			// Only a payload signed by our key may ever verify.
			if string(data) != string(good) && a.TopupID != "K1-0000000000000001-1" {
				t.Fatalf("unsigned data verified: %q", data)
			}
		}
	})
}

func FuzzDecodeTopup(f *testing.F) {
	tp := validTopup()
	f.Add([]byte(`{"v":1,"topup_id":"K1-0000000000000007-3","kiosk_id":"K1","seq":3,"account":"a","currency":"CNY","amount_minor":100,"notes":[{"value_minor":100,"count":1}],"opened_at":"2026-01-01T00:00:00Z","closed_at":"2026-01-01T00:00:00Z","receipt_no":1,"outcome":"complete"}`))
	_ = tp
	f.Fuzz(func(t *testing.T, data []byte) {
		var x Topup
		if Decode(data, &x) == nil && x.Validate() == nil {
			var sum int64
			for _, n := range x.Notes {
				sum += n.ValueMinor * n.Count
			}
			if sum != x.AmountMinor {
				t.Fatalf("validated topup with wrong sum")
			}
		}
	})
}

func TestQRInContentHashAndHeldAck(t *testing.T) {
	a := validTopup()
	before := a.ContentHash()
	a.QR = "IMW1.acc_1.1999999999.abcdefgh.w1.sig"
	if a.ContentHash() == before {
		t.Error("the proof does not change the content hash: a top-up re-sent with another code would be a duplicate")
	}
	b := a
	if b.ContentHash() != a.ContentHash() {
		t.Error("hash not deterministic")
	}
	if err := a.Validate(); err != nil {
		t.Errorf("a top-up with a proof is refused: %v", err)
	}
	ack := Ack{V: 1, TopupID: a.TopupID, Status: AckHeld, Reason: "qr_missing"}
	if err := ack.Validate(); err != nil {
		t.Errorf("held ack refused: %v", err)
	}
}

func TestFollowUpTopupValidation(t *testing.T) {
	base := Topup{V: Version, TopupID: TopupID("K1", 7, 5), KioskID: "K1", Seq: 5, Account: "bob", Currency: "CNY",
		AmountMinor: 10000, Notes: []NoteLine{{ValueMinor: 10000, Count: 1}}, OpenedAt: time.Unix(1, 0), ClosedAt: time.Unix(2, 0),
		ReceiptNo: 5, Outcome: OutcomeComplete}
	for name, tc := range map[string]struct {
		follows string
		ok      bool
	}{
		"none":          {"", true},
		"earlier":       {TopupID("K1", 7, 3), true},
		"later":         {TopupID("K1", 7, 6), false},
		"itself":        {TopupID("K1", 7, 5), false},
		"other kiosk":   {TopupID("K2", 7, 3), false},
		"other journal": {TopupID("K1", 8, 3), false},
		"garbage":       {"nope", false},
	} {
		tp := base
		tp.FollowsTopupID = tc.follows
		if err := tp.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: %v", name, err)
		}
	}
	a, b := base, base
	b.FollowsTopupID = TopupID("K1", 7, 3)
	if a.ContentHash() == b.ContentHash() {
		t.Error("the follow-up link is not part of the content hash")
	}
}

// The ledger's signed time in an authz answer: sent as RFC 3339, absent from older ledgers'
// answers (zero), which still decode.
func TestAuthzResponseNow(t *testing.T) {
	at := time.Date(2026, 12, 1, 8, 15, 2, 0, time.UTC)
	b, err := json.Marshal(AuthzResponse{V: 1, ReqID: "r1", Status: AuthzOK, RemainingMinor: 5, Now: at})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"now":"2026-12-01T08:15:02Z"`) {
		t.Fatalf("encoded %s", b)
	}
	var r AuthzResponse
	if err := Decode(b, &r); err != nil || !r.Now.Equal(at) {
		t.Fatalf("decoded %+v, %v", r, err)
	}
	var old AuthzResponse
	if err := Decode([]byte(`{"v":1,"req_id":"r1","status":"ok","remaining_minor":5}`), &old); err != nil || !old.Now.IsZero() {
		t.Fatalf("older ledger's answer: %+v, %v", old, err)
	}
	b, _ = json.Marshal(AuthzResponse{V: 1, ReqID: "r1", Status: AuthzOK})
	if strings.Contains(string(b), "now") {
		t.Fatalf("zero time sent: %s", b)
	}
}
