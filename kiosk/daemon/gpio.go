package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"periph.io/x/conn/v3/gpio"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/devices/acceptor/pulse"
	"github.com/kioskd/kioskd/devices/sensors"
	"github.com/kioskd/kioskd/kiosk/config"
	"github.com/kioskd/kioskd/kiosk/health"
)

// PinOpener opens a GPIO pin by name; the default is the board's (periph host drivers).
type PinOpener func(name string) (gpio.PinIO, error)

func level(s string, def gpio.Level) gpio.Level {
	switch s {
	case "low":
		return gpio.Low
	case "high":
		return gpio.High
	}
	return def
}

// newPulseDriver builds the pulse acceptor driver on its pins.
func newPulseDriver(cfg config.Config, open PinOpener, denoms acceptor.Denominations, log *slog.Logger) (acceptor.Acceptor, error) {
	pc := cfg.Acceptor.Pulse
	credit, err := open(pc.CreditPin)
	if err != nil {
		return nil, fmt.Errorf("pulse credit pin %s: %w", pc.CreditPin, err)
	}
	dc := pulse.Config{Credit: credit, ActiveLevel: level(pc.ActiveLevel, gpio.Low), Notes: denoms,
		Timing: pulse.Timing{MinWidth: pc.MinWidth.D(), MaxWidth: pc.MaxWidth.D(), MaxGap: pc.MaxGap.D(), Debounce: pc.Debounce.D()},
		Logger: log}
	if pc.PullUp {
		dc.Pull = gpio.PullUp
	}
	if pc.InhibitPin != "" {
		inh, err := open(pc.InhibitPin)
		if err != nil {
			return nil, fmt.Errorf("pulse inhibit pin %s: %w", pc.InhibitPin, err)
		}
		dc.Inhibit, dc.InhibitLevel = inh, level(pc.InhibitLevel, gpio.High)
	}
	return pulse.New(dc)
}

// pulseAttempt builds the pulse driver on its pins and runs it until it fails.
func (s *System) pulseAttempt(ctx context.Context) (bool, error) {
	log := s.log.With("component", "acceptor", "driver", "pulse")
	drv, err := newPulseDriver(s.cfg, s.opts.OpenPin, s.denoms, log)
	if err != nil {
		s.reg.Set(condAcceptor, health.Critical, health.Engineer, health.StopsService, "pulse acceptor: "+err.Error())
		return false, err
	}
	s.reg.Clear(condAcceptor)
	s.acc.set(drv)
	err = drv.Run(ctx, s.handler)
	s.acc.set(nil)
	if ctx.Err() == nil {
		if err == nil {
			err = errors.New("driver stopped")
		}
		s.reg.Set(condAcceptor, health.Critical, health.Engineer, health.StopsService, "pulse acceptor: "+err.Error())
	}
	return true, err
}

// runSensors watches the door, vault and tamper switches and turns their state into
// conditions (a vault open stops service; tamper latches until an engineer clears it).
//
// tamper follows the tamper switch (true while triggered), for the engine's sign-off check: a
// technician cannot sign off a tamper alarm while the switch still says tamper. live keeps
// every switch's last state for the sensors self-test and the service menu's door entry.
func runSensors(ctx context.Context, cfg config.Config, open PinOpener, reg *health.Registry, tamper *atomic.Bool, log *slog.Logger, live *sensorLive) {
	log = log.With("component", "sensors")
	var inputs []sensors.Input
	for _, s := range cfg.Sensors {
		p, err := open(s.Pin)
		if err != nil {
			log.Error("sensor pin unavailable", "sensor", s.Name, "pin", s.Pin, "err", err)
			reg.Set("sensor_"+s.Name+"_unavailable", health.Warning, health.Engineer, health.NoEffect, err.Error())
			continue
		}
		inputs = append(inputs, sensors.Input{Name: s.Name, Pin: p, ActiveLevel: level(s.ActiveLevel, gpio.High), Debounce: s.Debounce.D()})
	}
	if len(inputs) == 0 {
		return
	}
	sn, err := sensors.New(sensors.Config{Inputs: inputs, Logger: log})
	if err != nil {
		log.Error("sensors", "err", err)
		return
	}
	err = sn.Run(ctx, func(ch sensors.Change) {
		live.set(ch.Name, ch.Active)
		// Maintenance mode (a technician signed in) comes with the diagnostics interface;
		// until then every opening is reported as outside maintenance.
		c := sensors.Classify(ch.Name, ch.Active, false)
		if ch.Name == sensors.Tamper {
			tamper.Store(ch.Active)
		}
		if c.Raise {
			eff := health.NoEffect
			if c.StopsService {
				eff = health.StopsService
			}
			reg.Set(c.Kind, health.Severity(c.Severity), health.Actor(c.Actor), eff, c.Detail)
		} else if !c.Latched {
			reg.Clear(c.Kind)
		}
	})
	if err != nil && ctx.Err() == nil {
		log.Error("sensors stopped", "err", err)
	}
}

// signOffCheck is the engine's check of a sign-off of a condition the journal does not latch:
// only the tamper alarm, once the switch is back to normal.
func (s *System) signOffCheck(condition string) error {
	if condition != condTamper {
		return fmt.Errorf("%s is not a condition a technician signs off", condition)
	}
	if s.tamper.Load() {
		return errors.New("the tamper switch is still triggered")
	}
	return nil
}
