// Package qrpay parses and verifies the wallet payment QR code a customer shows at the kiosk
// (sync/CONTRACT.md §10):
//
//	IMW1.<account>.<expires_unix>.<nonce>.<kid>.<sig>
//
// sig is base64url without padding of an Ed25519 signature over the ASCII bytes before the
// last dot; account is [A-Za-z0-9_-]{1,64}; nonce is 8 to 32 base64url characters; kid names a
// wallet public key from the kiosk config. Replay of a nonce is checked by the caller against
// the journal (the nonce must survive restarts), after Verify succeeded.
package qrpay

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// MaxLen bounds the input: 6 fields of bounded size fit well within it.
const MaxLen = 300

// Reasons a code is refused. Each has a customer-facing message (Message).
var (
	ErrFormat     = errors.New("qrpay: not a wallet payment code")
	ErrUnknownKey = errors.New("qrpay: unknown wallet key")
	ErrSignature  = errors.New("qrpay: bad signature")
	ErrExpired    = errors.New("qrpay: code expired")
	ErrReplayed   = errors.New("qrpay: code already used")
	// ErrClockUntrusted: the kiosk's clock cannot be trusted (journal.ClockTrusted false), so
	// the expiry cannot be checked locally; the signature was good. The engine asks the
	// ledger's signed time (authz) and checks the expiry with VerifyAt, or refuses.
	ErrClockUntrusted = errors.New("qrpay: kiosk clock not trusted, expiry unchecked")
	// ErrLifetime: the code claims to be valid for longer than MaxLifetime, more than a wallet
	// issues; a used nonce is only kept for journal.NonceRetention.
	ErrLifetime = errors.New("qrpay: code valid for too long")
)

// MaxLifetime bounds how far in the future a code's expiry may be (VerifyClock).
const MaxLifetime = 7 * 24 * time.Hour

// Payload is a verified wallet code.
type Payload struct {
	Account string
	Expires time.Time
	Nonce   string
	KID     string
	// Raw is the whole code as scanned: the ledger verifies the wallet's signature on it
	// again, so it travels unchanged in authz requests and top-ups.
	Raw string
}

// Keys maps wallet key ids to public keys.
type Keys map[string]ed25519.PublicKey

func isB64URL(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

func allB64URL(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isB64URL(s[i]) {
			return false
		}
	}
	return true
}

// Parse checks the format only (no signature, no expiry).
func Parse(code string) (Payload, []byte, []byte, error) {
	var p Payload
	if len(code) > MaxLen {
		return p, nil, nil, fmt.Errorf("%w: too long", ErrFormat)
	}
	parts := strings.Split(code, ".")
	if len(parts) != 6 || parts[0] != "IMW1" {
		return p, nil, nil, fmt.Errorf("%w: expected IMW1 and 6 fields", ErrFormat)
	}
	acct, exp, nonce, kid, sig := parts[1], parts[2], parts[3], parts[4], parts[5]
	if len(acct) < 1 || len(acct) > 64 || !allB64URL(acct) {
		return p, nil, nil, fmt.Errorf("%w: account", ErrFormat)
	}
	if len(exp) == 0 || len(exp) > 12 || exp[0] == '0' {
		return p, nil, nil, fmt.Errorf("%w: expiry", ErrFormat)
	}
	secs, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || secs <= 0 {
		return p, nil, nil, fmt.Errorf("%w: expiry", ErrFormat)
	}
	if len(nonce) < 8 || len(nonce) > 32 || !allB64URL(nonce) {
		return p, nil, nil, fmt.Errorf("%w: nonce", ErrFormat)
	}
	if len(kid) < 1 || len(kid) > 32 || !allB64URL(kid) {
		return p, nil, nil, fmt.Errorf("%w: key id", ErrFormat)
	}
	// The decoder skips CR and LF even in strict mode; a code with a line break in its
	// signature would verify yet differ from the code the wallet issued (fuzz finding).
	rawSig, err := base64.RawURLEncoding.Strict().DecodeString(sig)
	if err != nil || !allB64URL(sig) || len(rawSig) != ed25519.SignatureSize {
		return p, nil, nil, fmt.Errorf("%w: signature encoding", ErrFormat)
	}
	signed := code[:strings.LastIndexByte(code, '.')]
	return Payload{Account: acct, Expires: time.Unix(secs, 0).UTC(), Nonce: nonce, KID: kid, Raw: code}, []byte(signed), rawSig, nil
}

// Verify parses code and checks its key, signature and expiry at now.
func (k Keys) Verify(code string, now time.Time) (Payload, error) {
	p, err := k.verifySig(code)
	if err != nil {
		return p, err
	}
	if !now.Before(p.Expires) {
		return p, fmt.Errorf("%w at %s", ErrExpired, p.Expires.Format(time.RFC3339))
	}
	return p, nil
}

// VerifyClock is Verify for a kiosk whose clock may be wrong: trusted is the journal's
// verdict on now (journal.ClockTrusted). Untrusted, it checks key and signature only and
// returns the payload with ErrClockUntrusted: the expiry must then be checked against the
// ledger's signed time (VerifyAt) or the code refused. Trusted, it also refuses a code whose
// expiry lies more than MaxLifetime ahead (ErrLifetime).
func (k Keys) VerifyClock(code string, now time.Time, trusted bool) (Payload, error) {
	p, err := k.verifySig(code)
	if err != nil {
		return p, err
	}
	if !trusted {
		return p, ErrClockUntrusted
	}
	return p, checkTime(p, now)
}

// VerifyAt checks an already verified payload's expiry against a time from a trusted source
// (the ledger's signed time).
func VerifyAt(p Payload, at time.Time) error { return checkTime(p, at) }

func checkTime(p Payload, now time.Time) error {
	if !now.Before(p.Expires) {
		return fmt.Errorf("%w at %s", ErrExpired, p.Expires.Format(time.RFC3339))
	}
	if p.Expires.Sub(now) > MaxLifetime {
		return fmt.Errorf("%w: expires %s", ErrLifetime, p.Expires.Format(time.RFC3339))
	}
	return nil
}

func (k Keys) verifySig(code string) (Payload, error) {
	p, signed, sig, err := Parse(code)
	if err != nil {
		return p, err
	}
	pub, ok := k[p.KID]
	if !ok || len(pub) != ed25519.PublicKeySize {
		return p, fmt.Errorf("%w: %q", ErrUnknownKey, p.KID)
	}
	if !ed25519.Verify(pub, signed, sig) {
		return p, ErrSignature
	}
	return p, nil
}

// Message is the reason shown to the customer for a refused code.
func Message(err error) string {
	switch {
	case errors.Is(err, ErrFormat):
		return "This is not a wallet payment code. Please show the payment QR code of your wallet app."
	case errors.Is(err, ErrUnknownKey):
		return "This wallet is not accepted at this kiosk."
	case errors.Is(err, ErrSignature):
		return "This payment code is not genuine. Please refresh it in your wallet app."
	case errors.Is(err, ErrExpired):
		return "This payment code has expired. Please refresh it in your wallet app."
	case errors.Is(err, ErrClockUntrusted):
		return "This kiosk cannot check the validity of your code right now. Please try again in a moment."
	case errors.Is(err, ErrLifetime):
		return "This payment code is not valid here. Please refresh it in your wallet app."
	case errors.Is(err, ErrReplayed):
		return "This payment code was already used. Please refresh it in your wallet app."
	}
	return "This code cannot be used."
}

// Sign builds a code; the wallet side of the contract, used by simulators and tests.
func Sign(priv ed25519.PrivateKey, kid, account string, expires time.Time, nonce string) string {
	body := fmt.Sprintf("IMW1.%s.%d.%s.%s", account, expires.Unix(), nonce, kid)
	return body + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(priv, []byte(body)))
}

// Mask hides the middle of an account id for display: "ab***yz".
func Mask(account string) string {
	r := []rune(account)
	switch {
	case len(r) <= 2:
		return strings.Repeat("*", len(r))
	case len(r) <= 5:
		return string(r[:1]) + "***" + string(r[len(r)-1:])
	}
	return string(r[:2]) + "***" + string(r[len(r)-2:])
}
