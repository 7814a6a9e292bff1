// Package walletsim plays the wallet app's side of the kiosk QR code (sync/CONTRACT.md §10): it
// builds signed payloads
//
//	IMW1.<account>.<expires_unix>.<nonce>.<kid>.<sig>
//
// where sig is base64url without padding of the Ed25519 signature over the ASCII bytes before
// the last dot. It is for the simulator, the demo and tests; the kiosk's verifier lives with
// the session engine.
package walletsim

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"strconv"
	"strings"
	"time"
)

// Prefix names the payload format version.
const Prefix = "IMW1"

// Sign builds a signed wallet QR payload. It does not validate its inputs, so tests can forge
// malformed payloads (a dot in the account, a short nonce) on purpose; a valid payload needs
// account [A-Za-z0-9_-]{1,64}, a nonce of 8..32 base64url characters (NewNonce) and a kid the
// kiosk knows. A priv of the wrong length gives an empty signature (which no verifier
// accepts) instead of a panic.
func Sign(priv ed25519.PrivateKey, kid, account string, expires time.Time, nonce string) string {
	var b strings.Builder
	b.WriteString(Prefix)
	for _, part := range []string{account, strconv.FormatInt(expires.Unix(), 10), nonce, kid} {
		b.WriteByte('.')
		b.WriteString(part)
	}
	msg := b.String()
	var sig []byte
	if len(priv) == ed25519.PrivateKeySize {
		sig = ed25519.Sign(priv, []byte(msg))
	}
	return msg + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// NewNonce returns 22 random base64url characters (128 bits), within the 8..32 the format
// allows.
func NewNonce() string {
	var b [16]byte
	rand.Read(b[:]) // returns no error since Go 1.24 (it aborts the program if the OS has no randomness)
	return base64.RawURLEncoding.EncodeToString(b[:])
}
