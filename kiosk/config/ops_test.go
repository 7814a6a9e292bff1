package config

import (
	"crypto/ed25519"
	"encoding/base64"
	"strings"
	"testing"
)

func opsTestConfig() Config {
	c := Default()
	c.Kiosk = Kiosk{ID: "K-1", Timezone: "UTC", Currency: "CNY", Language: "en"}
	c.Acceptor.Driver = "ccnet"
	c.Acceptor.Port = "/dev/pts/9"
	c.Acceptor.Denominations = []Denomination{{Code: 2, ValueMinor: 1000}}
	c.Printer.Port = "/dev/pts/10"
	c.Limits = Limits{SessionMaxMinor: 200000, OfflineSessionMaxMinor: 50000, OfflineTotalMaxMinor: 200000}
	c.Wallet.Keys = map[string]string{"w": fixedKey}
	c.MQTT.Broker = "tcp://127.0.0.1:1883"
	c.MQTT.AllowInsecure = true
	c.MQTT.LedgerKeys = map[string]string{"l1": fixedKey}
	return c
}

func TestOpsKeys(t *testing.T) {
	c := opsTestConfig()
	pub, _, _ := ed25519.GenerateKey(nil)
	c.MQTT.OpsKeys = map[string]string{"ops1": base64.StdEncoding.EncodeToString(pub)}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.MQTT.OpsKeys["ops2"] = fixedKey // the ledger's key under another name
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), `key "mqtt.ops_keys.ops2"`) {
		t.Fatalf("ledger key as ops key: %v", err)
	}
	c.MQTT.OpsKeys = map[string]string{"ops1": "not a key"}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "mqtt.ops_keys.ops1") {
		t.Fatalf("bad ops key: %v", err)
	}
}

func TestCassetteCapacity(t *testing.T) {
	c := opsTestConfig()
	if c.Acceptor.CassetteCapacity != DefaultCassetteCapacity {
		t.Fatalf("default %d", c.Acceptor.CassetteCapacity)
	}
	c.Acceptor.CassetteCapacity = 0
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "acceptor.cassette_capacity") {
		t.Fatalf("zero capacity: %v", err)
	}
}

func TestLimitsValidate(t *testing.T) {
	if err := (Limits{SessionMaxMinor: 1000, OfflineSessionMaxMinor: 500, OfflineTotalMaxMinor: 800}).Validate(); err != nil {
		t.Fatal(err)
	}
	for _, l := range []Limits{{}, {SessionMaxMinor: 1000, OfflineSessionMaxMinor: 2000, OfflineTotalMaxMinor: 3000},
		{SessionMaxMinor: 1000, OfflineSessionMaxMinor: 500, OfflineTotalMaxMinor: 100}, {SessionMaxMinor: MaxLimitMinor + 1}} {
		if l.Validate() == nil {
			t.Errorf("%+v accepted", l)
		}
	}
}
