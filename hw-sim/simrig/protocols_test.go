package simrig

import (
	"slices"
	"testing"

	"github.com/kioskd/kioskd/devices/acceptor/registry"
)

// TestProtocolsMatchDriverRegistry: the product's driver table and the simulator's protocol
// table list exactly the same names, in the same order, so that no driver ships without an
// emulator, a conformance run and a benchmark, and no emulator outlives its driver.
func TestProtocolsMatchDriverRegistry(t *testing.T) {
	if got, want := ProtocolNames(), registry.Names(); !slices.Equal(got, want) {
		t.Fatalf("simrig protocols %v, devices/acceptor/registry drivers %v: add or remove the row in both tables", got, want)
	}
	for _, p := range Protocols() {
		d, err := registry.Lookup(p.Name)
		if err != nil {
			t.Fatal(err)
		}
		// A unit the rig puts on pins is one the product opens no port for.
		if (p.Pins != nil) == d.Serial {
			t.Errorf("%s: simulated pins %v, but the driver table says serial=%v", p.Name, p.Pins, d.Serial)
		}
		if len(p.Conformance) == 0 || p.Conformance[0].Name != p.Name {
			t.Errorf("%s: the first conformance configuration must carry the protocol's name", p.Name)
		}
		if len(p.Denominations("CNY")) == 0 || p.newSim == nil {
			t.Errorf("%s: demo notes and an emulator are required", p.Name)
		}
		for _, c := range p.Conformance {
			if c.NewUnit == nil {
				t.Errorf("%s/%s: no unit constructor", p.Name, c.Name)
			}
			if (c.Codec != nil) != d.Serial {
				t.Errorf("%s/%s: a serial protocol has frames to benchmark, a unit on pins none", p.Name, c.Name)
			}
		}
	}
}

// Every conformance unit connects a driver whose Info agrees with the driver table.
func TestConformanceUnitsConnect(t *testing.T) {
	for _, p := range Protocols() {
		d, _ := registry.Lookup(p.Name)
		for _, c := range p.Conformance {
			u := c.NewUnit(UnitOptions{Denominations: p.Denominations("CNY")})
			l, err := u.Connect()
			if err != nil {
				t.Fatalf("%s: %v", c.Name, err)
			}
			if l.Driver == nil || (l.Serve == nil) == d.Serial || (l.Polls == nil) == d.Serial {
				t.Errorf("%s: link %+v does not fit a serial=%v unit", c.Name, l, d.Serial)
			}
			if l.Driver.Info().Escrowless != d.Escrowless && d.Escrowless {
				t.Errorf("%s: driver Info().Escrowless = false, the table says escrowless", c.Name)
			}
			if l.Cut != nil {
				l.Cut()
			}
		}
	}
}

func TestLookupProtocolUnknown(t *testing.T) {
	if _, err := LookupProtocol("cctalk"); err == nil {
		t.Fatal("no error for an unknown protocol")
	}
	if len(DemoDenominations("cctalk", "CNY")) != 0 {
		t.Fatal("an unknown protocol has demo notes")
	}
	if got := DemoDenominations("", "CNY"); got[0x61].ValueMinor != 100 {
		t.Fatalf("the default protocol's table: %v", got)
	}
}
