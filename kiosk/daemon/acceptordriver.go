package daemon

import (
	"io"
	"log/slog"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/devices/acceptor/registry"
	"github.com/kioskd/kioskd/kiosk/config"
)

// acceptorDriver is the configured acceptor driver: its row of devices/acceptor/registry
// (serial mode, escrowless, constructor) and the options the config file gives it. It is the
// one place the daemon reads acceptor.driver.
type acceptorDriver struct {
	registry.Driver
	opts registry.Options
}

// configuredDriver looks the configured driver up and reads and checks its options (the
// eSSP key file), so that a configuration error stops start-up instead of a loop that
// reopens the port.
func configuredDriver(cfg config.Config, denoms acceptor.Denominations) (acceptorDriver, error) {
	d, err := registry.Lookup(cfg.Acceptor.Driver)
	if err != nil {
		return acceptorDriver{}, err
	}
	o := registry.Options{Denominations: denoms, PollInterval: cfg.Acceptor.PollInterval.D()}
	// The acceptor.ssp section applies to the ssp driver only.
	if cfg.Acceptor.Driver == "ssp" && cfg.Acceptor.SSP.Encrypt {
		k, err := config.ReadFixedKey(cfg.Acceptor.SSP.FixedKeyFile)
		if err != nil {
			return acceptorDriver{}, err
		}
		o.SSPEncrypt, o.SSPFixedKey = true, k
	}
	if err := d.Check(o); err != nil {
		return acceptorDriver{}, err
	}
	return acceptorDriver{Driver: d, opts: o}, nil
}

// build makes a driver on port (a serial driver; a unit on pins is built by the pulse
// supervisor from its pins).
func (a acceptorDriver) build(port io.ReadWriter, log *slog.Logger) (acceptor.Acceptor, error) {
	o := a.opts
	o.Logger = log
	return a.New(port, o)
}
