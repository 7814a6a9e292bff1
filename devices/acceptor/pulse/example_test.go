package pulse_test

import (
	"context"
	"fmt"
	"log"
	"os/signal"
	"syscall"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/devices/acceptor/pulse"
	"github.com/kioskd/kioskd/devices/sensors"
)

// journal stands for the kiosk's session engine: it journals each pulse and each credit
// before it returns.
type journal struct{}

func (journal) Escrow(context.Context, acceptor.Note) acceptor.Decision { return acceptor.Return }
func (journal) Pulse(_ context.Context, train uint64, count int) error {
	fmt.Println("pulse", train, count)
	return nil
}
func (journal) Credited(_ context.Context, n acceptor.Note) error {
	if n.ValueMinor == 0 {
		fmt.Println("uncertain item:", n.Code, "pulses")
		return nil
	}
	fmt.Println("credited:", n)
	return nil
}
func (journal) Event(_ context.Context, e acceptor.Event) { fmt.Println("event:", e) }

// The production wiring on a Raspberry Pi: an ITL NV9 in pulse mode, its open-collector
// Vend 1 output on GPIO17 (pulled up, pulses low, 100 ms wide with 100 ms between), its
// inhibit input on GPIO27 (high inhibits). Not run: it needs the hardware.
func Example_gpio() {
	credit, err := sensors.OpenPin("GPIO17")
	if err != nil {
		log.Fatal(err)
	}
	inhibit, err := sensors.OpenPin("GPIO27")
	if err != nil {
		log.Fatal(err)
	}
	d, err := pulse.New(pulse.Config{
		Credit: credit, ActiveLevel: gpio.Low, Pull: gpio.PullUp,
		Inhibit: inhibit, InhibitLevel: gpio.High,
		Notes: acceptor.Denominations{
			1:  {ValueMinor: 1000, Currency: "CNY"}, // 10 yuan: 1 pulse
			2:  {ValueMinor: 2000, Currency: "CNY"},
			5:  {ValueMinor: 5000, Currency: "CNY"},
			10: {ValueMinor: 10000, Currency: "CNY"},
		},
		Timing: pulse.Timing{MinWidth: 60 * time.Millisecond, MaxWidth: 140 * time.Millisecond, MaxGap: 250 * time.Millisecond},
		Model:  "ITL NV9 (pulse)",
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := d.Run(ctx, journal{}); err != nil { // the engine calls d.Enable / d.Inhibit
		log.Fatal(err)
	}
}

// Decode is the decoder as a pure function, for recorded traces of the credit line: here a
// note of 5 pulses with a bouncing first edge, then a 3 ms spike.
func ExampleDecode() {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	edges := []pulse.Edge{{Active: true, At: at(0)}, {Active: false, At: at(1)}} // bounce
	for i := range 5 {
		edges = append(edges, pulse.Edge{Active: true, At: at(2 + 150*i)}, pulse.Edge{Active: false, At: at(52 + 150*i)})
	}
	edges = append(edges, pulse.Edge{Active: true, At: at(2000)}, pulse.Edge{Active: false, At: at(2003)})

	trains, stats, err := pulse.Decode(pulse.Timing{}, edges)
	if err != nil {
		log.Fatal(err)
	}
	for _, tr := range trains {
		fmt.Printf("train %d: %d pulses over %v\n", tr.N, tr.Pulses, tr.End.Sub(tr.Start))
	}
	fmt.Printf("glitches: %d\n", stats.Glitches)
	// Output:
	// train 1: 5 pulses over 650ms
	// glitches: 2
}
