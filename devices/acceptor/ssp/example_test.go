package ssp_test

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/devices/acceptor/ssp"
	"github.com/kioskd/kioskd/hw-sim/sspsim"
)

// printer is a Handler that prints what the unit reports; a real one journals before it
// answers (see package acceptor).
type printer struct {
	onEvent func(acceptor.Event)
}

func (p printer) Escrow(_ context.Context, n acceptor.Note) acceptor.Decision {
	fmt.Println("escrow:", n)
	return acceptor.Stack
}

func (p printer) Credited(_ context.Context, n acceptor.Note) error {
	fmt.Println("credited:", n)
	return nil
}

func (p printer) Event(_ context.Context, e acceptor.Event) { p.onEvent(e) }

// The driver with eSSP on one end of a pipe and the emulator on the other; in the kiosk the
// port is serialport.Open("/dev/ttyACM0", serialport.SSP) and the fixed key comes from the
// kiosk's config.
func Example() {
	table := acceptor.Denominations{
		1: {ValueMinor: 100, Currency: "CNY"},
		2: {ValueMinor: 500, Currency: "CNY"},
	}
	const fixedKey = 0x5EC12E7000C0FFEE
	sim := sspsim.New(sspsim.Config{Denominations: table, FixedKey: fixedKey})
	host, unit := net.Pipe()
	simCtx, stopSim := context.WithCancel(context.Background())
	simDone := make(chan error, 1)
	go func() { simDone <- sim.Serve(simCtx, unit) }()

	d := ssp.New(host, ssp.Config{Denominations: table, Encrypt: true, FixedKey: fixedKey,
		PollInterval: 10 * time.Millisecond, PowerUpSettle: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	h := printer{onEvent: func(e acceptor.Event) {
		switch e.Kind {
		case acceptor.Identified: // configured and disabled: enable from another goroutine
			go d.Enable(ctx, []int{1, 2})
		case acceptor.Idle:
			sim.InsertNote(2) // a customer inserts a 5 yuan note
		case acceptor.Stacked:
			fmt.Println("stacked:", e.Note)
			cancel()
		}
	}}
	if err := d.Run(ctx, h); err != nil { // returns once cancelled, unit disabled, port closed
		fmt.Println("run:", err)
	}
	stopSim()
	<-simDone
	// Output:
	// escrow: 500 CNY (code 0x2)
	// credited: 500 CNY (code 0x2)
	// stacked: 500 CNY (code 0x2)
}
