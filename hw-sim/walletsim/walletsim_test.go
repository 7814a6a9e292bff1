package walletsim_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kioskd/kioskd/hw-sim/walletsim"
)

func TestSignVerifies(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Unix(1767225600, 0)
	nonce := walletsim.NewNonce()
	p := walletsim.Sign(priv, "wallet-2025", "acct_42-x", exp, nonce)
	parts := strings.Split(p, ".")
	if len(parts) != 6 || parts[0] != "IMW1" || parts[1] != "acct_42-x" || parts[2] != "1767225600" || parts[3] != nonce || parts[4] != "wallet-2025" {
		t.Fatalf("payload = %q", p)
	}
	i := strings.LastIndexByte(p, '.')
	sig, err := base64.RawURLEncoding.DecodeString(p[i+1:])
	if err != nil {
		t.Fatal(err)
	}
	if !ed25519.Verify(pub, []byte(p[:i]), sig) {
		t.Fatal("signature does not verify over the bytes before the last dot")
	}
	tampered := strings.Replace(p, "acct_42-x", "acct_43-x", 1)
	j := strings.LastIndexByte(tampered, '.')
	if ed25519.Verify(pub, []byte(tampered[:j]), sig) {
		t.Fatal("tampered payload verifies")
	}
}

func TestNonce(t *testing.T) {
	re := regexp.MustCompile(`^[A-Za-z0-9_-]{8,32}$`)
	seen := map[string]bool{}
	for range 100 {
		n := walletsim.NewNonce()
		if !re.MatchString(n) || seen[n] {
			t.Fatalf("nonce %q (repeat %v)", n, seen[n])
		}
		seen[n] = true
	}
}

func TestBadKeyDoesNotPanic(t *testing.T) {
	p := walletsim.Sign(ed25519.PrivateKey{1, 2, 3}, "k", "a", time.Unix(0, 0), "abcdefgh")
	if !strings.HasSuffix(p, ".k.") {
		t.Errorf("payload = %q, want an empty signature", p)
	}
}
