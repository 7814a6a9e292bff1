package registry

import (
	"errors"
	"net"
	"regexp"
	"testing"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/devices/acceptor/pulse"
	"github.com/kioskd/kioskd/devices/acceptor/ssp"
)

func TestTableIsConsistent(t *testing.T) {
	seen := map[string]bool{}
	name := regexp.MustCompile(`^[a-z][a-z0-9]*$`)
	for _, d := range Drivers() {
		if !name.MatchString(d.Name) {
			t.Errorf("driver name %q: want lower-case letters and digits (it is a config value)", d.Name)
		}
		if seen[d.Name] {
			t.Errorf("driver %q listed twice", d.Name)
		}
		seen[d.Name] = true
		if d.New == nil || d.Description == "" {
			t.Errorf("driver %q: constructor and description are required", d.Name)
		}
		if d.Serial {
			if err := d.Mode.Validate(); err != nil || d.Mode.Baud == 0 {
				t.Errorf("driver %q: serial mode %v: %v", d.Name, d.Mode, err)
			}
		} else if d.Mode.Baud != 0 {
			t.Errorf("driver %q: not serial but has a serial mode %v", d.Name, d.Mode)
		}
	}
	if got := Names(); len(got) != len(seen) {
		t.Errorf("Names() = %v", got)
	}
}

// TestEveryDriverBuilds builds each driver with the options the daemon passes and checks
// that what it reports about itself agrees with its row.
func TestEveryDriverBuilds(t *testing.T) {
	denoms := acceptor.Denominations{1: {Code: 1, ValueMinor: 1000, Currency: "CNY"}, 2: {Code: 2, ValueMinor: 2000, Currency: "CNY"}}
	for _, d := range Drivers() {
		t.Run(d.Name, func(t *testing.T) {
			o := Options{Denominations: denoms, SSPEncrypt: true, SSPFixedKey: 0x1122334455667788,
				Pulse: pulseOptions()}
			var port net.Conn
			if d.Serial {
				host, unit := net.Pipe()
				defer host.Close()
				defer unit.Close()
				port = host
			}
			drv, err := New(d.Name, port, o)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if drv == nil {
				t.Fatal("New returned no driver")
			}
			if got := drv.Info().Escrowless; got && !d.Escrowless {
				t.Errorf("driver reports escrowless, the table does not")
			}
			if d.Escrowless && !drv.Info().Escrowless {
				t.Errorf("the table says escrowless, the driver does not")
			}
		})
	}
}

func pulseOptions() (c pulse.Config) {
	c.Credit = &gpiotest.Pin{N: "CREDIT", L: gpio.High, EdgesChan: make(chan gpio.Level, 1)}
	c.ActiveLevel = gpio.Low
	return c
}

func TestUnknownDriver(t *testing.T) {
	_, err := Lookup("cctalk")
	if !errors.Is(err, ErrUnknown) {
		t.Fatalf("Lookup(cctalk) = %v, want ErrUnknown", err)
	}
	if _, err := New("", nil, Options{}); !errors.Is(err, ErrUnknown) {
		t.Fatalf("New(\"\") = %v, want ErrUnknown", err)
	}
}

// A serial driver without a port and an eSSP unit with the well-known key are refused with
// an error, not a driver that fails later.
func TestRefusedOptions(t *testing.T) {
	if _, err := New("id003", nil, Options{}); err == nil {
		t.Error("id003 without a port: no error")
	}
	host, unit := net.Pipe()
	defer host.Close()
	defer unit.Close()
	bad := Options{SSPEncrypt: true, SSPFixedKey: ssp.DefaultFixedKey}
	if _, err := New("ssp", host, bad); err == nil {
		t.Error("eSSP with the default fixed key: no error")
	}
	if d, _ := Lookup("ssp"); d.Check(bad) == nil {
		t.Error("Check: eSSP with the default fixed key: no error")
	}
	for _, d := range Drivers() {
		if err := d.Check(Options{SSPEncrypt: true, SSPFixedKey: 0x1122334455667788}); err != nil {
			t.Errorf("%s: Check of good options: %v", d.Name, err)
		}
	}
	if _, err := New("pulse", nil, Options{}); err == nil {
		t.Error("pulse without pins: no error")
	}
}
