package ssp_test

import (
	"context"
	"testing"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/devices/acceptor/acceptortest"
	"github.com/kioskd/kioskd/devices/acceptor/ssp"
	"github.com/kioskd/kioskd/devices/serialport"
	"github.com/kioskd/kioskd/hw-sim/ptypair"
	"github.com/kioskd/kioskd/hw-sim/sspsim"
)

// TestEndToEndOverPty runs the whole chain the demo runs: the emulator on a pty master, the
// daemon's real serial code (go.bug.st/serial, 9600 8N2) on the slave, and the driver on top
// with eSSP, through one note from insertion to STACKED. Real time, with a 10 s bound on
// every wait.
func TestEndToEndOverPty(t *testing.T) {
	pair, err := ptypair.Open()
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	defer pair.Close()
	sim := newSim(sspsim.Config{})
	simCtx, stopSim := context.WithCancel(context.Background())
	simErr := make(chan error, 1)
	go func() { simErr <- sim.Serve(simCtx, pair) }()
	defer func() {
		stopSim()
		if err := <-simErr; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()

	port, err := serialport.Open(pair.Path(), serialport.SSP)
	if err != nil {
		t.Fatal(err)
	}
	cfg := eSSPConfig()
	cfg.PollInterval, cfg.ReplyTimeout, cfg.PowerUpSettle = 20*time.Millisecond, 300*time.Millisecond, 50*time.Millisecond
	d := ssp.New(port, cfg)
	h := &acceptortest.Recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- d.Run(ctx, h) }()

	acceptortest.Eventually(t, "identified", func() bool { return h.Count(acceptor.Identified) == 1 })
	if err := d.Enable(ctx, []int{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	acceptortest.Eventually(t, "idle", func() bool { return h.Count(acceptor.Idle) == 1 })
	if err := sim.InsertNote(3); err != nil {
		t.Fatal(err)
	}
	acceptortest.Eventually(t, "stacked", func() bool { return h.Count(acceptor.Stacked) == 1 })
	acceptortest.Eventually(t, "idle again", func() bool { return h.Count(acceptor.Idle) == 2 })
	cancel()
	if err := <-runErr; err != nil {
		t.Fatalf("Run: %v", err)
	}

	ten := acceptor.Note{Code: 3, ValueMinor: 1000, Currency: "CNY"}
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
	if len(c) != 1 || !c[0].Acked || c[0].Channel != 3 {
		t.Fatalf("emulator cassette %+v", c)
	}
	if sim.State().Enabled {
		t.Error("the unit was left enabled after Run ended")
	}
	if _, err := port.Write([]byte{0}); err == nil {
		t.Error("Run left the port open")
	}
}
