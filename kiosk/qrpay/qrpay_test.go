package qrpay

import (
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"
)

var (
	seed    = make([]byte, ed25519.SeedSize)
	priv    = ed25519.NewKeyFromSeed(seed)
	pub     = priv.Public().(ed25519.PublicKey)
	keys    = Keys{"w1": pub}
	now     = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	expires = now.Add(5 * time.Minute)
)

func TestVerifyGood(t *testing.T) {
	code := Sign(priv, "w1", "alice_01", expires, "AAAAbbbb1234")
	p, err := keys.Verify(code, now)
	if err != nil {
		t.Fatal(err)
	}
	if p.Account != "alice_01" || p.Nonce != "AAAAbbbb1234" || !p.Expires.Equal(expires) || p.KID != "w1" {
		t.Fatalf("payload = %+v", p)
	}
}

func TestVerifyRefusals(t *testing.T) {
	_, other, _ := ed25519.GenerateKey(nil)
	good := Sign(priv, "w1", "alice_01", expires, "AAAAbbbb1234")
	cases := map[string]struct {
		code string
		want error
	}{
		"garbage":          {"hello", ErrFormat},
		"url":              {"https://example.com/pay?x=1", ErrFormat},
		"wrong prefix":     {strings.Replace(good, "IMW1", "IMW2", 1), ErrFormat},
		"short nonce":      {Sign(priv, "w1", "alice", expires, "abc"), ErrFormat},
		"long nonce":       {Sign(priv, "w1", "alice", expires, strings.Repeat("a", 33)), ErrFormat},
		"bad account":      {Sign(priv, "w1", "al ice", expires, "AAAAbbbb"), ErrFormat},
		"long account":     {Sign(priv, "w1", strings.Repeat("a", 65), expires, "AAAAbbbb"), ErrFormat},
		"unknown kid":      {Sign(priv, "w9", "alice", expires, "AAAAbbbb"), ErrUnknownKey},
		"forged":           {Sign(other, "w1", "alice", expires, "AAAAbbbb"), ErrSignature},
		"edited account":   {strings.Replace(good, "alice_01", "mallory1", 1), ErrSignature},
		"expired":          {Sign(priv, "w1", "alice", now.Add(-time.Second), "AAAAbbbb"), ErrExpired},
		"expires now":      {Sign(priv, "w1", "alice", now, "AAAAbbbb"), ErrExpired},
		"padded sig":       {good + "=", ErrFormat},
		"extra field":      {good + ".x", ErrFormat},
		"too long":         {strings.Repeat("A", MaxLen+1), ErrFormat},
		"control char":     {strings.Replace(good, "alice_01", "alice\x0001", 1), ErrFormat},
		"leading zero exp": {strings.Replace(good, ".17", ".017", 1), ErrFormat},
	}
	for name, tc := range cases {
		if _, err := keys.Verify(tc.code, now); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", name, err, tc.want)
		}
		if Message(tc.want) == Message(nil) {
			t.Errorf("%s: no customer message", name)
		}
	}
}

func TestMask(t *testing.T) {
	for in, want := range map[string]string{"alice_01": "al***01", "bob": "b***b", "ab": "**", "": ""} {
		if got := Mask(in); got != want {
			t.Errorf("Mask(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzVerify(f *testing.F) {
	f.Add(Sign(priv, "w1", "alice_01", expires, "AAAAbbbb1234"))
	f.Add("IMW1.a.1.AAAAAAAA.w1.")
	f.Add("IMW1.....")
	f.Fuzz(func(t *testing.T, code string) {
		p, err := keys.Verify(code, now)
		if err != nil {
			return
		}
		// Anything that verifies must re-sign to exactly the same code: the signature
		// covers every byte before it, and the encoding is canonical.
		if Sign(priv, p.KID, p.Account, p.Expires, p.Nonce) != code {
			t.Fatalf("verified a non-canonical code %q", code)
		}
	})
}

func TestVerifyClock(t *testing.T) {
	code := Sign(priv, "w1", "alice_01", expires, "AAAAbbbb1234")
	// Untrusted clock (a 1970 boot): the signature is checked, the expiry is left to the
	// ledger's time.
	p, err := keys.VerifyClock(code, time.Unix(0, 0), false)
	if !errors.Is(err, ErrClockUntrusted) || p.Nonce != "AAAAbbbb1234" {
		t.Fatalf("untrusted: %+v %v", p, err)
	}
	if err := VerifyAt(p, now); err != nil {
		t.Fatalf("ledger time: %v", err)
	}
	if err := VerifyAt(p, expires); !errors.Is(err, ErrExpired) {
		t.Fatalf("ledger time past expiry: %v", err)
	}
	forged := Sign(priv, "w1", "alice_01", expires, "AAAAbbbb1234") + "x"
	if _, err := keys.VerifyClock(forged, now, false); errors.Is(err, ErrClockUntrusted) || err == nil {
		t.Fatalf("a bad code must fail on its signature first: %v", err)
	}
	if _, err := keys.VerifyClock(code, now, true); err != nil {
		t.Fatal(err)
	}
	long := Sign(priv, "w1", "alice_01", now.Add(MaxLifetime+time.Hour), "AAAAbbbb9999")
	if _, err := keys.VerifyClock(long, now, true); !errors.Is(err, ErrLifetime) {
		t.Fatalf("long-lived code: %v", err)
	}
	for _, e := range []error{ErrClockUntrusted, ErrLifetime} {
		if Message(e) == Message(errors.New("x")) {
			t.Fatalf("no message for %v", e)
		}
	}
}
