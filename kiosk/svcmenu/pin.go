package svcmenu

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Params are argon2id's cost parameters.
type Params struct {
	// Memory in KiB, Time the number of passes, Threads the lanes.
	Memory  uint32
	Time    uint32
	Threads uint8
}

// DefaultParams are sized for a small ARM board (a quad Cortex-A53 with 1 GB): 19 MiB and two
// passes take a few hundred milliseconds there, slow enough that a stolen journal's hashes
// cost real work per guess of a short PIN, and small enough that a login on the kiosk's own
// screen does not wait.
var DefaultParams = Params{Memory: 19 * 1024, Time: 2, Threads: 1}

// Limits on a hash's parameters when verifying: a hash set remotely or in the config must not
// make a login take the board's memory or minutes of CPU.
const (
	maxMemory  = 64 * 1024
	maxTime    = 10
	maxThreads = 4
	saltLen    = 16
	keyLen     = 32
)

// PIN rules: digits only (the kiosk's screen has a digit pad), 4 to 12 of them.
const (
	MinPINLen = 4
	MaxPINLen = 12
)

// ErrBadPIN is a PIN that does not follow the rules (never the PIN in the message).
var ErrBadPIN = fmt.Errorf("a PIN is %d to %d digits", MinPINLen, MaxPINLen)

// ValidPIN reports whether pin follows the rules.
func ValidPIN(pin string) bool {
	if len(pin) < MinPINLen || len(pin) > MaxPINLen {
		return false
	}
	for i := 0; i < len(pin); i++ {
		if pin[i] < '0' || pin[i] > '9' {
			return false
		}
	}
	return true
}

// HashPIN returns pin's argon2id hash as a PHC string
// ($argon2id$v=19$m=...,t=...,p=...$salt$hash, unpadded base64) with a fresh random salt.
func HashPIN(pin string, p Params) (string, error) {
	if !ValidPIN(pin) {
		return "", ErrBadPIN
	}
	if p.Memory == 0 || p.Time == 0 || p.Threads == 0 {
		return "", errors.New("argon2id parameters must be positive")
	}
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(pin), salt, p.Time, p.Memory, p.Threads, keyLen)
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Time, p.Threads,
		enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

// VerifyPIN reports whether pin matches hash: an argon2id PHC string, or a bcrypt hash (a
// remote set_credentials command may carry either). A malformed hash, or one whose cost is
// beyond the board's limits, is an error and matches nothing.
func VerifyPIN(hash, pin string) (bool, error) {
	if strings.HasPrefix(hash, "$2a$") || strings.HasPrefix(hash, "$2b$") || strings.HasPrefix(hash, "$2y$") {
		if cost, err := bcrypt.Cost([]byte(hash)); err != nil {
			return false, fmt.Errorf("bcrypt hash: %w", err)
		} else if cost > 12 {
			return false, fmt.Errorf("bcrypt cost %d is beyond this board's limit (12)", cost)
		}
		err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(pin))
		if errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
			return false, nil
		}
		return err == nil, err
	}
	p, salt, key, err := parsePHC(hash)
	if err != nil {
		return false, err
	}
	got := argon2.IDKey([]byte(pin), salt, p.Time, p.Memory, p.Threads, uint32(len(key)))
	return subtle.ConstantTimeCompare(got, key) == 1, nil
}

// parsePHC reads an argon2id PHC string.
func parsePHC(s string) (Params, []byte, []byte, error) {
	bad := func(why string) (Params, []byte, []byte, error) {
		return Params{}, nil, nil, errors.New("not an argon2id hash: " + why)
	}
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return bad("form")
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return bad("version " + parts[2])
	}
	var p Params
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return bad("parameters")
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n == 0 {
			return bad("parameter " + k)
		}
		switch k {
		case "m":
			p.Memory = uint32(n)
		case "t":
			p.Time = uint32(n)
		case "p":
			if n > 255 {
				return bad("parameter p")
			}
			p.Threads = uint8(n)
		default:
			return bad("parameter " + k)
		}
	}
	if p.Memory == 0 || p.Time == 0 || p.Threads == 0 {
		return bad("missing parameter")
	}
	if p.Memory > maxMemory || p.Time > maxTime || p.Threads > maxThreads {
		return Params{}, nil, nil, fmt.Errorf("argon2id cost m=%d,t=%d,p=%d is beyond this board's limits (m=%d,t=%d,p=%d)",
			p.Memory, p.Time, p.Threads, maxMemory, maxTime, maxThreads)
	}
	enc := base64.RawStdEncoding
	salt, err := enc.DecodeString(parts[4])
	if err != nil || len(salt) < 8 {
		return bad("salt")
	}
	key, err := enc.DecodeString(parts[5])
	if err != nil || len(key) < 16 || len(key) > 64 {
		return bad("hash")
	}
	return p, salt, key, nil
}
