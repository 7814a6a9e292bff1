package id003_test

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/devices/acceptor/id003"
	"github.com/kioskd/kioskd/hw-sim/id003sim"
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

// The driver on one end of a pipe and the emulator on the other; in the kiosk the port is
// serialport.Open("/dev/ttyUSB0", serialport.ID003).
func Example() {
	table := acceptor.Denominations{
		0x61: {ValueMinor: 100, Currency: "CNY"},
		0x62: {ValueMinor: 500, Currency: "CNY"},
	}
	sim := id003sim.New(id003sim.Config{Denominations: table})
	host, unit := net.Pipe()
	simCtx, stopSim := context.WithCancel(context.Background())
	simDone := make(chan error, 1)
	go func() { simDone <- sim.Serve(simCtx, unit) }()

	d := id003.New(host, id003.Config{Denominations: table, PollInterval: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	h := printer{onEvent: func(e acceptor.Event) {
		switch e.Kind {
		case acceptor.Identified: // configured and inhibited: enable from another goroutine
			go d.Enable(ctx, []int{0x61, 0x62})
		case acceptor.Idle:
			sim.InsertNote(0x62) // a customer inserts a 5 yuan note
		case acceptor.Stacked:
			fmt.Println("stacked:", e.Note)
			cancel()
		}
	}}
	if err := d.Run(ctx, h); err != nil { // returns once cancelled, unit inhibited, port closed
		fmt.Println("run:", err)
	}
	stopSim()
	<-simDone
	// Output:
	// escrow: 500 CNY (code 0x62)
	// credited: 500 CNY (code 0x62)
	// stacked: 500 CNY (code 0x62)
}
