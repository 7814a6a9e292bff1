package daemon

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/devices/acceptor/registry"
	"github.com/kioskd/kioskd/devices/serialport"
	"github.com/kioskd/kioskd/kiosk/config"
)

func TestConfiguredDriver(t *testing.T) {
	denoms := acceptor.Denominations{0x61: {Code: 0x61, ValueMinor: 100, Currency: "CNY"}}
	cfg := config.Default()

	cfg.Acceptor.Driver = "id003"
	d, err := configuredDriver(cfg, denoms)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Serial || d.Mode != serialport.ID003 || d.Escrowless {
		t.Fatalf("id003: serial %v mode %v escrowless %v", d.Serial, d.Mode, d.Escrowless)
	}
	host, unit := net.Pipe()
	defer host.Close()
	defer unit.Close()
	if drv, err := d.build(host, nil); err != nil || drv == nil {
		t.Fatalf("build: %v", err)
	}

	cfg.Acceptor.Driver = "pulse"
	if d, err := configuredDriver(cfg, denoms); err != nil || d.Serial || !d.Escrowless {
		t.Fatalf("pulse: %+v, %v", d.Driver, err)
	}
	if !registry.Escrowless("pulse") || registry.Escrowless("id003") || registry.Escrowless("cctalk") {
		t.Fatal("registry.Escrowless: only the pulse unit credits without escrow")
	}

	cfg.Acceptor.Driver = "cctalk"
	if _, err := configuredDriver(cfg, denoms); !errors.Is(err, registry.ErrUnknown) {
		t.Fatalf("unknown driver: %v", err)
	}
}

// An eSSP key that cannot be read, or the well-known default key, stops start-up.
func TestConfiguredDriverSSPKey(t *testing.T) {
	cfg := config.Default()
	cfg.Acceptor.Driver = "ssp"
	cfg.Acceptor.SSP = config.SSP{Encrypt: true, FixedKeyFile: filepath.Join(t.TempDir(), "missing")}
	if _, err := configuredDriver(cfg, nil); err == nil {
		t.Fatal("missing key file: no error")
	}
	cfg.Acceptor.SSP.FixedKeyFile = filepath.Join(t.TempDir(), "default.key")
	if err := os.WriteFile(cfg.Acceptor.SSP.FixedKeyFile, []byte("0123456701234567\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := configuredDriver(cfg, nil); err == nil {
		t.Fatal("the well-known default key: no error")
	}
	if err := os.WriteFile(cfg.Acceptor.SSP.FixedKeyFile, []byte("1122334455667788\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := configuredDriver(cfg, nil)
	if err != nil || !d.opts.SSPEncrypt || d.opts.SSPFixedKey != 0x1122334455667788 {
		t.Fatalf("good key: %+v, %v", d.opts, err)
	}
}
