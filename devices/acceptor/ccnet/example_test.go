package ccnet_test

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/devices/acceptor/ccnet"
	"github.com/kioskd/kioskd/hw-sim/ccnetsim"
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
// serialport.Open("/dev/ttyUSB0", serialport.CCNET).
func Example() {
	table := acceptor.Denominations{
		2: {ValueMinor: 1000, Currency: "RUB"},
		4: {ValueMinor: 10000, Currency: "RUB"},
	}
	sim := ccnetsim.New(ccnetsim.Config{Denominations: table})
	host, unit := net.Pipe()
	simCtx, stopSim := context.WithCancel(context.Background())
	simDone := make(chan error, 1)
	go func() { simDone <- sim.Serve(simCtx, unit) }()

	d := ccnet.New(host, ccnet.Config{Denominations: table, PollInterval: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	h := printer{onEvent: func(e acceptor.Event) {
		switch e.Kind {
		case acceptor.Identified: // identified; inhibited once configured: enable from another goroutine
			go d.Enable(ctx, []int{2, 4})
		case acceptor.Idle:
			sim.InsertNote(4) // a customer inserts a 100 rouble note
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
	// escrow: 10000 RUB (code 0x4)
	// credited: 10000 RUB (code 0x4)
	// stacked: 10000 RUB (code 0x4)
}
