package wire

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
)

// Envelope carries a signed payload: the signature covers exactly the payload bytes that the
// receiver parses, so no canonical JSON form is needed (sync/CONTRACT.md §9).
type Envelope struct {
	V       int    `json:"v"`
	KID     string `json:"kid"`
	Payload string `json:"payload"`
	Sig     string `json:"sig"`
}

// Envelope errors.
var (
	ErrUnknownKey = errors.New("wire: unknown signing key id")
	ErrBadSig     = errors.New("wire: bad signature")
)

// Keyring maps key ids to Ed25519 public keys.
type Keyring map[string]ed25519.PublicKey

// Signer signs payloads with one key.
type Signer struct {
	KID string
	Key ed25519.PrivateKey
}

// Seal marshals payload and wraps it in a signed envelope, returning the envelope's JSON.
func (s Signer) Seal(payload any) ([]byte, error) {
	p, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("wire: seal: %w", err)
	}
	return s.SealBytes(p)
}

// SealBytes wraps already-encoded payload bytes.
func (s Signer) SealBytes(p []byte) ([]byte, error) {
	if len(s.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("wire: seal: no private key")
	}
	sig := ed25519.Sign(s.Key, p)
	return json.Marshal(Envelope{V: Version, KID: s.KID, Payload: string(p), Sig: base64.RawURLEncoding.EncodeToString(sig)})
}

// Open verifies a signed envelope against the keyring and decodes its payload into v.
// It returns the key id that signed it.
func (k Keyring) Open(data []byte, v any) (string, error) {
	var env Envelope
	if err := Decode(data, &env); err != nil {
		return "", err
	}
	if env.V != Version {
		return "", fmt.Errorf("%w: envelope v=%d", ErrVersion, env.V)
	}
	if env.KID == "" || env.Payload == "" || env.Sig == "" {
		return "", fmt.Errorf("%w: envelope needs kid, payload, sig", ErrMissing)
	}
	pub, ok := k[env.KID]
	if !ok || len(pub) != ed25519.PublicKeySize {
		return "", fmt.Errorf("%w: %q", ErrUnknownKey, env.KID)
	}
	sig, err := base64.RawURLEncoding.DecodeString(env.Sig)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return env.KID, fmt.Errorf("%w: signature encoding", ErrBadSig)
	}
	if !ed25519.Verify(pub, []byte(env.Payload), sig) {
		return env.KID, ErrBadSig
	}
	if err := Decode([]byte(env.Payload), v); err != nil {
		return env.KID, err
	}
	return env.KID, nil
}
