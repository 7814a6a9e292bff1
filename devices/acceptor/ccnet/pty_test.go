package ccnet_test

import (
	"context"
	"testing"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/devices/acceptor/acceptortest"
	"github.com/kioskd/kioskd/devices/acceptor/ccnet"
	"github.com/kioskd/kioskd/devices/serialport"
	"github.com/kioskd/kioskd/hw-sim/ccnetsim"
	"github.com/kioskd/kioskd/hw-sim/ptypair"
)

// TestEndToEndOverPty runs the whole chain the demo runs: the emulator on a pty master, the
// daemon's real serial code (go.bug.st/serial, 9600 8N1) on the slave, and the driver on top,
// through one note from insertion to STACKED. Real time, with a 10 s bound on every wait.
func TestEndToEndOverPty(t *testing.T) {
	pair, err := ptypair.Open()
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	defer pair.Close()
	sim := ccnetsim.New(ccnetsim.Config{Denominations: rub})
	simCtx, stopSim := context.WithCancel(context.Background())
	simErr := make(chan error, 1)
	go func() { simErr <- sim.Serve(simCtx, pair) }()
	defer func() {
		stopSim()
		if err := <-simErr; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()

	port, err := serialport.Open(pair.Path(), serialport.CCNET)
	if err != nil {
		t.Fatal(err)
	}
	d := ccnet.New(port, ccnet.Config{Denominations: rub, PollInterval: 20 * time.Millisecond, ReplyTimeout: 200 * time.Millisecond})
	h := &acceptortest.Recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- d.Run(ctx, h) }()

	acceptortest.Eventually(t, "identified", func() bool { return h.Count(acceptor.Identified) == 1 })
	if err := d.Enable(ctx, []int{2, 3, 4}); err != nil {
		t.Fatal(err)
	}
	acceptortest.Eventually(t, "idle", func() bool { return h.Count(acceptor.Idle) == 1 })
	if err := sim.InsertNote(4); err != nil {
		t.Fatal(err)
	}
	acceptortest.Eventually(t, "stacked", func() bool { return h.Count(acceptor.Stacked) == 1 })
	acceptortest.Eventually(t, "idle again", func() bool { return h.Count(acceptor.Idle) == 2 })
	cancel()
	if err := <-runErr; err != nil {
		t.Fatalf("Run: %v", err)
	}

	hundred := acceptor.Note{Code: 4, ValueMinor: 10000, Currency: "RUB"}
	escrows, credits := h.EscrowCalls(), h.CreditCalls()
	if len(escrows) != 1 || escrows[0] != hundred || len(credits) != 1 || credits[0] != hundred {
		t.Fatalf("escrows %v credits %v", escrows, credits)
	}
	for _, k := range []acceptor.Kind{acceptor.PowerUp, acceptor.Accepting, acceptor.Stacking} {
		if h.Count(k) != 1 {
			t.Errorf("%d %v events", h.Count(k), k)
		}
	}
	c := sim.Cassette()
	if len(c) != 1 || !c[0].Acked || c[0].Code != 4 {
		t.Fatalf("emulator cassette %+v", c)
	}
	if !sim.State().Inhibited {
		t.Error("the unit was left accepting after Run ended")
	}
	if _, err := port.Write([]byte{0}); err == nil {
		t.Error("Run left the port open")
	}
}
