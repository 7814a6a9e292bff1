package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// fixedKey is a syntactically valid Ed25519 public key (32 bytes) for documents that must
// parse without a random key.
const fixedKey = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="

// exampleFixed is the shipped example with fixedKey for both placeholders.
func exampleFixed(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile("../../deploy/kioskd.example.json")
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), "REPLACE-WITH-WALLET-PUBLIC-KEY-BASE64-AAAAAAA=", fixedKey, 1)
	return strings.Replace(s, "REPLACE-WITH-LEDGER-PUBLIC-KEY-BASE64-AAAAAAA=", fixedKey, 1)
}

// edit applies one substitution to doc and fails the test if it did not apply, so a case
// never passes because the example changed under it.
type edit struct{ old, new string }

func apply(t *testing.T, doc string, edits ...edit) string {
	t.Helper()
	for _, e := range edits {
		s := strings.Replace(doc, e.old, e.new, 1)
		if s == doc {
			t.Fatalf("substitution %q did not apply", e.old)
		}
		doc = s
	}
	return doc
}

// TestRefused is the table of documents that must be refused, each with the key path the
// error must name and a phrase that says what is wrong.
func TestRefused(t *testing.T) {
	base := exampleFixed(t)
	const den0 = `{ "code": 97,  "value_minor": 100 }`
	for _, tc := range []struct {
		name  string
		edits []edit
		want  []string
	}{
		// Duplicate keys at any depth.
		{"second limits object", []edit{{`"session": {`, `"limits": { "session_max_minor": 900000 },
  "session": {`}}, []string{`key "limits"`, "twice"}},
		{"duplicate nested key", []edit{{`"session_max_minor": 500000,`, `"session_max_minor": 500000, "session_max_minor": 1,`}}, []string{`key "limits.session_max_minor"`, "twice"}},
		{"duplicate top-level scalar", []edit{{`"version": 1,`, `"version": 1, "version": 1,`}}, []string{`key "version"`, "twice"}},
		{"duplicate map key", []edit{{`"keys": { "w1": "` + fixedKey + `" }`, `"keys": { "w1": "` + fixedKey + `", "w1": "` + fixedKey + `" }`}}, []string{`key "wallet.keys.w1"`, "twice"}},
		{"duplicate key in a list element", []edit{{den0, `{ "code": 97, "code": 1, "value_minor": 100 }`}}, []string{`key "acceptor.denominations[0].code"`, "twice"}},

		// Keys in another case: encoding/json would accept them.
		{"LIMITS", []edit{{`"limits"`, `"LIMITS"`}}, []string{`key "LIMITS"`, `case-sensitive`, `"limits"`}},
		{"Session_Max_Minor", []edit{{`"session_max_minor"`, `"Session_Max_Minor"`}}, []string{`key "limits.Session_Max_Minor"`, `"session_max_minor"`}},
		{"Version", []edit{{`"version"`, `"Version"`}}, []string{`key "Version"`, "case-sensitive"}},
		{"case in a list element", []edit{{den0, `{ "Code": 97,  "value_minor": 100 }`}}, []string{`key "acceptor.denominations[0].Code"`, `"code"`}},
		{"unknown key", []edit{{`"hotline"`, `"hotlin"`}}, []string{`key "kiosk.hotlin"`, "unknown"}},

		// Money out of range.
		{"denomination max int64", []edit{{den0, `{ "code": 97, "value_minor": 9223372036854775807 }`}}, []string{`key "acceptor.denominations[0].value_minor"`, "between 1 and 100000000"}},
		{"denomination beyond int64", []edit{{den0, `{ "code": 97, "value_minor": 9223372036854775808 }`}}, []string{`key "acceptor.denominations[0].value_minor"`, "out of range"}},
		{"denomination just over the bound", []edit{{den0, `{ "code": 97, "value_minor": 100000001 }`}}, []string{`key "acceptor.denominations[0].value_minor"`}},
		{"denomination zero", []edit{{den0, `{ "code": 97, "value_minor": 0 }`}}, []string{`key "acceptor.denominations[0].value_minor"`}},
		{"denomination negative", []edit{{den0, `{ "code": 97, "value_minor": -100 }`}}, []string{`key "acceptor.denominations[0].value_minor"`}},
		{"denomination fractional", []edit{{den0, `{ "code": 97, "value_minor": 1.5 }`}}, []string{`key "acceptor.denominations[0].value_minor"`, "integer"}},
		{"negative code", []edit{{den0, `{ "code": -1, "value_minor": 100 }`}}, []string{`key "acceptor.denominations[0].code"`, "between 0 and 255"}},
		{"code over a byte", []edit{{den0, `{ "code": 256, "value_minor": 100 }`}}, []string{`key "acceptor.denominations[0].code"`}},
		{"code beyond int", []edit{{den0, `{ "code": 99999999999999999999, "value_minor": 100 }`}}, []string{`key "acceptor.denominations[0].code"`, "out of range"}},
		{"duplicate code", []edit{{`"code": 98,`, `"code": 97,`}}, []string{`key "acceptor.denominations[1].code"`, "listed twice"}},
		{"session max zero", []edit{{`"session_max_minor": 500000`, `"session_max_minor": 0`}}, []string{`key "limits.session_max_minor"`}},
		{"session max negative", []edit{{`"session_max_minor": 500000`, `"session_max_minor": -5`}}, []string{`key "limits.session_max_minor"`}},
		{"session max over the bound", []edit{{`"session_max_minor": 500000`, `"session_max_minor": 10000000001`}}, []string{`key "limits.session_max_minor"`, "10000000000"}},
		{"offline over online", []edit{{`"offline_session_max_minor": 50000`, `"offline_session_max_minor": 900000`}}, []string{`key "limits.offline_session_max_minor"`}},
		{"offline negative", []edit{{`"offline_session_max_minor": 50000`, `"offline_session_max_minor": -1`}}, []string{`key "limits.offline_session_max_minor"`}},
		{"offline total under offline session", []edit{{`"offline_total_max_minor": 200000`, `"offline_total_max_minor": 100`}}, []string{`key "limits.offline_total_max_minor"`}},
		{"offline total over the bound", []edit{{`"offline_total_max_minor": 200000`, `"offline_total_max_minor": 9223372036854775807`}}, []string{`key "limits.offline_total_max_minor"`}},

		// Service identities.
		{"kiosk id ledger", []edit{{`"id": "KSK-0001"`, `"id": "ledger"`}}, []string{`key "kiosk.id"`, "reserved"}},
		{"kiosk id LEDGERD", []edit{{`"id": "KSK-0001"`, `"id": "LEDGERD"`}}, []string{`key "kiosk.id"`, "reserved"}},
		{"kiosk id fleetd", []edit{{`"id": "KSK-0001"`, `"id": "fleetd"`}}, []string{`key "kiosk.id"`, "reserved"}},
		{"kiosk id ops", []edit{{`"id": "KSK-0001"`, `"id": "ops"`}}, []string{`key "kiosk.id"`, "reserved"}},
		{"kiosk id of a ledgerd instance", []edit{{`"id": "KSK-0001"`, `"id": "ledgerd-host1"`}}, []string{`key "kiosk.id"`, "reserved"}},
		{"kiosk id of the demo ledger", []edit{{`"id": "KSK-0001"`, `"id": "ledger-1"`}}, []string{`key "kiosk.id"`, "reserved"}},
		{"bad kiosk id", []edit{{`"id": "KSK-0001"`, `"id": "KSK/1"`}}, []string{`key "kiosk.id"`}},

		// A broker without TLS, a screen on the network.
		{"plain tcp broker", []edit{{`"ssl://mqtt.example.net:8883"`, `"tcp://mqtt.example.net:1883"`}}, []string{`key "mqtt.broker"`, "mqtt.allow_insecure"}},
		{"plain mqtt broker", []edit{{`"ssl://mqtt.example.net:8883"`, `"mqtt://mqtt.example.net:1883"`}}, []string{`key "mqtt.broker"`, "mqtt.allow_insecure"}},
		{"websocket broker", []edit{{`"ssl://mqtt.example.net:8883"`, `"ws://mqtt.example.net"`}}, []string{`key "mqtt.broker"`, "scheme"}},
		{"broker without host", []edit{{`"ssl://mqtt.example.net:8883"`, `"mqtt.example.net:8883"`}}, []string{`key "mqtt.broker"`}},
		{"allow_insecure is a bool", []edit{{`"retry_max": "5m"`, `"retry_max": "5m", "allow_insecure": "yes"`}}, []string{`key "mqtt.allow_insecure"`, "true or false"}},
		{"screen on all interfaces", []edit{{`"127.0.0.1:8080"`, `"0.0.0.0:8080"`}}, []string{`key "http.listen"`, "http.allow_remote"}},
		{"screen on an empty host", []edit{{`"127.0.0.1:8080"`, `":8080"`}}, []string{`key "http.listen"`, "http.allow_remote"}},
		{"screen on IPv6 any", []edit{{`"127.0.0.1:8080"`, `"[::]:8080"`}}, []string{`key "http.listen"`}},
		{"screen on a LAN address", []edit{{`"127.0.0.1:8080"`, `"192.168.1.20:8080"`}}, []string{`key "http.listen"`}},
		{"screen on a host name", []edit{{`"127.0.0.1:8080"`, `"kiosk.local:8080"`}}, []string{`key "http.listen"`}},
		{"listen without port", []edit{{`"127.0.0.1:8080"`, `"127.0.0.1"`}}, []string{`key "http.listen"`, "host:port"}},
		{"metrics on all interfaces", []edit{{`"127.0.0.1:9101"`, `"0.0.0.0:9101"`}}, []string{`key "metrics.listen"`, "metrics.allow_remote"}},
		{"metrics on an empty host", []edit{{`"127.0.0.1:9101"`, `":9101"`}}, []string{`key "metrics.listen"`, "metrics.allow_remote"}},
		{"metrics on a LAN address", []edit{{`"127.0.0.1:9101"`, `"10.1.2.3:9101"`}}, []string{`key "metrics.listen"`}},
		{"metrics listen without port", []edit{{`"127.0.0.1:9101"`, `"127.0.0.1"`}}, []string{`key "metrics.listen"`, "host:port"}},
		{"metrics textfile relative", []edit{{`"textfile": ""`, `"textfile": "kioskd.prom"`}}, []string{`key "metrics.textfile"`, "absolute"}},
		{"metrics textfile not .prom", []edit{{`"textfile": ""`, `"textfile": "/var/lib/node_exporter/kioskd.txt"`}}, []string{`key "metrics.textfile"`, ".prom"}},
		{"metrics textfile too often", []edit{{`"textfile": "", "textfile_every": "15s"`, `"textfile": "/var/lib/node_exporter/kioskd.prom", "textfile_every": "10ms"`}}, []string{`key "metrics.textfile_every"`}},

		// Types.
		{"duration as a number", []edit{{`"idle_timeout": "60s"`, `"idle_timeout": 60`}}, []string{`key "session.idle_timeout"`, "duration"}},
		{"duration as an object", []edit{{`"poll_interval": "200ms"`, `"poll_interval": {"ms": 200}`}}, []string{`key "acceptor.poll_interval"`, "duration"}},
		{"duration unparsable", []edit{{`"idle_timeout": "60s"`, `"idle_timeout": "soon"`}}, []string{`key "session.idle_timeout"`, `"soon"`}},
		{"duration negative", []edit{{`"idle_timeout": "60s"`, `"idle_timeout": "-1s"`}}, []string{`key "session.idle_timeout"`, "positive"}},
		{"string for an integer", []edit{{`"session_max_minor": 500000`, `"session_max_minor": "lots"`}}, []string{`key "limits.session_max_minor"`, "integer"}},
		{"number for a string", []edit{{`"currency": "CNY"`, `"currency": 156`}}, []string{`key "kiosk.currency"`, "string"}},
		{"string for a bool", []edit{{`"enabled": true`, `"enabled": "true"`}}, []string{`key "printer.enabled"`, "true or false"}},
		{"object for a list", []edit{{`"denominations": [`, `"denominations": {"x": [`}, {`]
  },
  "printer"`, `]}
  },
  "printer"`}}, []string{`key "acceptor.denominations"`, "list"}},
		{"null object", []edit{{`"log": { "level": "info" }`, `"log": null`}}, []string{`key "log"`, "null"}},
		{"null scalar", []edit{{`"level": "info"`, `"level": null`}}, []string{`key "log.level"`, "null"}},
		{"bad currency", []edit{{`"currency": "CNY"`, `"currency": "yuan"`}}, []string{`key "kiosk.currency"`}},
		{"driver", []edit{{`"driver": "id003"`, `"driver": "magic"`}}, []string{`key "acceptor.driver"`}},

		// The document itself.
		{"version 2", []edit{{`"version": 1`, `"version": 2`}}, []string{`key "version"`, "version 1"}},
		{"version as a string", []edit{{`"version": 1`, `"version": "1"`}}, []string{`key "version"`, "integer"}},
		{"syntax error", []edit{{`"language": "en",`, `"language": "en",,`}}, []string{"not valid JSON at line 8"}},
		{"trailing data", []edit{{`"log": { "level": "info" }
}`, `"log": { "level": "info" }
} {}`}}, []string{"trailing data"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := apply(t, base, tc.edits...)
			_, err := Parse([]byte(doc))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %s", err, w)
				}
			}
		})
	}
}

// TestAccepted holds the boundaries and opt-ins that must stay valid.
func TestAccepted(t *testing.T) {
	base := exampleFixed(t)
	const den0 = `{ "code": 97,  "value_minor": 100 }`
	for _, tc := range []struct {
		name  string
		edits []edit
		check func(Config) bool
	}{
		{"example", nil, func(c Config) bool {
			return c.Limits.SessionMaxMinor == 500000 && !c.MQTT.AllowInsecure && !c.HTTP.AllowRemote
		}},
		{"largest denomination", []edit{{den0, `{ "code": 97, "value_minor": 100000000 }`}}, func(c Config) bool { return c.Acceptor.Denominations[0].ValueMinor == MaxDenominationMinor }},
		{"code 0 and 255", []edit{{den0, `{ "code": 0, "value_minor": 100 }, { "code": 255, "value_minor": 200 }`}}, func(c Config) bool { return c.Acceptor.Denominations[1].Code == 255 }},
		{"largest limits", []edit{{`"session_max_minor": 500000`, `"session_max_minor": 10000000000`}, {`"offline_total_max_minor": 200000`, `"offline_total_max_minor": 10000000000`}}, func(c Config) bool { return c.Limits.SessionMaxMinor == MaxLimitMinor }},
		{"offline equal to online", []edit{{`"offline_session_max_minor": 50000`, `"offline_session_max_minor": 500000`}, {`"offline_total_max_minor": 200000`, `"offline_total_max_minor": 500000`}}, nil},
		{"no offline top-ups", []edit{{`"offline_session_max_minor": 50000`, `"offline_session_max_minor": 0`}, {`"offline_total_max_minor": 200000`, `"offline_total_max_minor": 0`}}, nil},
		{"kiosk id that only contains a service name", []edit{{`"id": "KSK-0001"`, `"id": "ops-desk-7"`}}, func(c Config) bool { return c.Kiosk.ID == "ops-desk-7" }},
		{"plain broker with the opt-in", []edit{{`"ssl://mqtt.example.net:8883"`, `"tcp://127.0.0.1:1883"`}, {`"retry_max": "5m"`, `"retry_max": "5m", "allow_insecure": true`}}, func(c Config) bool { return c.MQTT.AllowInsecure }},
		{"mqtts broker", []edit{{`"ssl://mqtt.example.net:8883"`, `"mqtts://mqtt.example.net:8883"`}}, nil},
		{"screen on localhost", []edit{{`"127.0.0.1:8080"`, `"localhost:8080"`}}, nil},
		{"screen on IPv6 loopback", []edit{{`"127.0.0.1:8080"`, `"[::1]:8080"`}}, nil},
		{"screen on the network with the opt-in", []edit{{`"listen": "127.0.0.1:8080"`, `"listen": "0.0.0.0:8080", "allow_remote": true`}}, func(c Config) bool { return c.HTTP.AllowRemote }},
		{"metrics on the network with the opt-in", []edit{{`"listen": "127.0.0.1:9101", "allow_remote": false`, `"listen": "0.0.0.0:9101", "allow_remote": true`}}, func(c Config) bool { return c.Metrics.AllowRemote }},
		{"metrics off", []edit{{`"listen": "127.0.0.1:9101"`, `"listen": ""`}}, func(c Config) bool { return c.Metrics.Listen == "" }},
		{"metrics textfile", []edit{{`"textfile": ""`, `"textfile": "/var/lib/node_exporter/textfile/kioskd.prom"`}}, func(c Config) bool {
			return c.Metrics.Textfile != "" && c.Metrics.TextfileEvery.D() == 15*time.Second
		}},
		{"null list", []edit{{`"log": { "level": "info" }`, `"log": { "level": "info" }, "sensors": null`}}, func(c Config) bool { return c.Sensors == nil }},
		{"no broker", []edit{{`"broker": "ssl://mqtt.example.net:8883",`, ``}}, func(c Config) bool { return c.MQTT.Broker == "" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := apply(t, base, tc.edits...)
			c, err := Parse([]byte(doc))
			if err != nil {
				t.Fatal(err)
			}
			if tc.check != nil && !tc.check(c) {
				t.Fatalf("parsed %+v", c)
			}
		})
	}
}

// TestBuiltConfigs checks configurations built in code as the demo and the end-to-end tests
// build them: in-process broker without TLS (with the opt-in), screen on loopback; and that
// WriteFile's output, nil lists and maps written as null, loads again.
func TestBuiltConfigs(t *testing.T) {
	c := Default()
	c.Kiosk = Kiosk{ID: "DEMO-0001", Timezone: "Asia/Shanghai", Currency: "CNY", Language: "en"}
	c.Acceptor.Driver = "ccnet"
	c.Acceptor.Port = "/dev/pts/9"
	c.Acceptor.Denominations = []Denomination{{Code: 2, ValueMinor: 1000}}
	c.Printer.Port = "/dev/pts/10"
	c.Limits = Limits{SessionMaxMinor: 200000, OfflineSessionMaxMinor: 50000, OfflineTotalMaxMinor: 200000}
	c.Wallet.Keys = map[string]string{"demo-wallet": fixedKey}
	c.MQTT.Broker = "tcp://127.0.0.1:1883"
	c.MQTT.LedgerKeys = map[string]string{"demo-ledger": fixedKey}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), `key "mqtt.broker"`) {
		t.Fatalf("plain broker without the opt-in: %v", err)
	}
	c.MQTT.AllowInsecure = true
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	p := t.TempDir() + "/kioskd.json"
	if err := WriteFile(p, c); err != nil {
		t.Fatal(err)
	}
	back, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, c) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", back, c)
	}
}
