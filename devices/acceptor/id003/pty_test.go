package id003_test

import (
	"context"
	"testing"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/devices/acceptor/acceptortest"
	"github.com/kioskd/kioskd/devices/acceptor/id003"
	"github.com/kioskd/kioskd/devices/serialport"
	"github.com/kioskd/kioskd/hw-sim/id003sim"
	"github.com/kioskd/kioskd/hw-sim/ptypair"
)

// TestEndToEndOverPty runs the whole chain the demo runs: the emulator on a pty master, the
// daemon's real serial code (go.bug.st/serial, 9600 8E1) on the slave, and the driver on top,
// through one note from insertion to STACKED. Real time, with a 10 s bound on every wait.
func TestEndToEndOverPty(t *testing.T) {
	pair, err := ptypair.Open()
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	defer pair.Close()
	sim := id003sim.New(id003sim.Config{Denominations: cny})
	simCtx, stopSim := context.WithCancel(context.Background())
	simErr := make(chan error, 1)
	go func() { simErr <- sim.Serve(simCtx, pair) }()
	defer func() {
		stopSim()
		if err := <-simErr; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()

	port, err := serialport.Open(pair.Path(), serialport.ID003)
	if err != nil {
		t.Fatal(err)
	}
	d := id003.New(port, id003.Config{Denominations: cny, PollInterval: 20 * time.Millisecond, ReplyTimeout: 200 * time.Millisecond})
	h := &acceptortest.Recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- d.Run(ctx, h) }()

	acceptortest.Eventually(t, "identified", func() bool { return h.Count(acceptor.Identified) == 1 })
	if err := d.Enable(ctx, []int{0x61, 0x62, 0x63}); err != nil {
		t.Fatal(err)
	}
	acceptortest.Eventually(t, "idle", func() bool { return h.Count(acceptor.Idle) == 1 })
	if err := sim.InsertNote(0x63); err != nil {
		t.Fatal(err)
	}
	acceptortest.Eventually(t, "stacked", func() bool { return h.Count(acceptor.Stacked) == 1 })
	acceptortest.Eventually(t, "idle again", func() bool { return h.Count(acceptor.Idle) == 2 })
	cancel()
	if err := <-runErr; err != nil {
		t.Fatalf("Run: %v", err)
	}

	ten := acceptor.Note{Code: 0x63, ValueMinor: 1000, Currency: "CNY"}
	escrows, credits := h.EscrowCalls(), h.CreditCalls()
	if len(escrows) != 1 || escrows[0] != ten || len(credits) != 1 || credits[0] != ten {
		t.Fatalf("escrows %v credits %v", escrows, credits)
	}
	for _, k := range []acceptor.Kind{acceptor.PowerUp, acceptor.Accepting, acceptor.Stacking} {
		if h.Count(k) != 1 {
			t.Errorf("%d %v events", h.Count(k), k)
		}
	}
	c := sim.Cassette()
	if len(c) != 1 || !c[0].Acked || c[0].Code != 0x63 {
		t.Fatalf("emulator cassette %+v", c)
	}
	if !sim.State().Inhibited {
		t.Error("the unit was left accepting after Run ended")
	}
	if _, err := port.Write([]byte{0}); err == nil {
		t.Error("Run left the port open")
	}
}
