package sensors

import (
	"errors"
	"fmt"
	"sync"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/host/v3"
)

// ErrNoPin: OpenPin found no pin of that name.
var ErrNoPin = errors.New("sensors: no such GPIO pin")

var (
	hostOnce sync.Once
	hostErr  error
)

// OpenPin returns the GPIO pin of that name ("GPIO17", or a line name the board's device tree
// gives), loading periph's host drivers on first use. It is the production path for every
// GPIO pin of the kiosk, sensors and the pulse acceptor alike; tests use gpiotest pins
// instead. The pin is not set up: Run does that.
func OpenPin(name string) (gpio.PinIO, error) {
	hostOnce.Do(func() {
		if _, err := host.Init(); err != nil {
			hostErr = err
		}
	})
	if hostErr != nil {
		return nil, fmt.Errorf("sensors: open pin %q: load host drivers: %w", name, hostErr)
	}
	p := gpioreg.ByName(name)
	if p == nil {
		return nil, fmt.Errorf("sensors: open pin %q: %w", name, ErrNoPin)
	}
	return p, nil
}
