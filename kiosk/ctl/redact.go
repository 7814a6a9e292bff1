package ctl

import (
	"encoding/json"
	"net/url"
	"strings"
)

// Redacted replaces a secret in a redacted config.
const Redacted = "(redacted)"

// RedactConfig returns cfg (any JSON-encodable value) as a generic JSON value with every
// secret removed, for diagnostics that leave the kiosk. File names are kept (key_file,
// password_file: the path says where the secret is, not what it is); a value under a key
// that names key material, a password, a secret or a token is replaced, whole maps of keys
// included (wallet.keys, mqtt.ledger_keys); a URL loses its user information.
func RedactConfig(cfg any) (any, error) {
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	return redact("", v), nil
}

func secretKey(k string) bool {
	k = strings.ToLower(k)
	if strings.HasSuffix(k, "_file") || strings.HasSuffix(k, "_files") {
		return false
	}
	for _, s := range []string{"key", "password", "passwd", "secret", "token", "credential"} {
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}

func redact(key string, v any) any {
	if secretKey(key) {
		if m, ok := v.(map[string]any); ok {
			// Keep the key ids: they say which keys are configured.
			out := make(map[string]any, len(m))
			for id := range m {
				out[id] = Redacted
			}
			return out
		}
		if v == nil || v == "" {
			return v
		}
		return Redacted
	}
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			t[k] = redact(k, e)
		}
		return t
	case []any:
		for i, e := range t {
			t[i] = redact(key, e)
		}
		return t
	case string:
		if u, err := url.Parse(t); err == nil && u.Scheme != "" && u.User != nil {
			u.User = nil
			return u.String()
		}
	}
	return v
}
