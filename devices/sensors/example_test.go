package sensors_test

import (
	"context"
	"fmt"
	"log"
	"os/signal"
	"syscall"

	"periph.io/x/conn/v3/gpio"

	"github.com/kioskd/kioskd/devices/sensors"
)

// Production wiring: normally-closed switches to ground with the Pi's pull-ups, so a
// switch that opens (or a cut wire) reads high = active. Not run: it needs the hardware.
func Example() {
	var inputs []sensors.Input
	for name, pin := range map[string]string{sensors.CabinetDoor: "GPIO5", sensors.VaultDoor: "GPIO6", sensors.Tamper: "GPIO13"} {
		p, err := sensors.OpenPin(pin) // host.Init once, then gpioreg.ByName
		if err != nil {
			log.Fatal(err)
		}
		inputs = append(inputs, sensors.Input{Name: name, Pin: p, ActiveLevel: gpio.High, Pull: gpio.PullUp})
	}
	s, err := sensors.New(sensors.Config{Inputs: inputs})
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	maintenance := false
	err = s.Run(ctx, func(c sensors.Change) {
		cond := sensors.Classify(c.Name, c.Active, maintenance)
		fmt.Printf("%s: %+v\n", c.Name, cond) // the kiosk sets or clears cond.Kind in its health registry
	})
	if err != nil {
		log.Fatal(err)
	}
}

func ExampleClassify() {
	for _, c := range []sensors.Condition{
		sensors.Classify(sensors.CabinetDoor, true, false),
		sensors.Classify(sensors.VaultDoor, true, false),
		sensors.Classify(sensors.Tamper, true, true),
		sensors.Classify(sensors.VaultDoor, false, false),
	} {
		fmt.Printf("%s raise=%v %s/%s stops=%v\n", c.Kind, c.Raise, c.Severity, c.Actor, c.StopsService)
	}
	// Output:
	// cabinet_door_open raise=true warning/staff stops=false
	// vault_door_open raise=true critical/staff stops=true
	// tamper raise=true critical/engineer stops=true
	// vault_door_open raise=false / stops=false
}
