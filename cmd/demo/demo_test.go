package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kioskd/kioskd/sync/fleet"
	"github.com/kioskd/kioskd/sync/wire"
)

// The demo's wiring, end to end on its in-process broker: the simulator's panel jams the
// acceptor and the console shows the kiosk out of service for an engineer; the tamper switch
// latches until the technician's sign-off, which the panel refuses while the switch is still
// triggered; a cheat attempt stays until the unit is reset and signed off.
func TestDemoPanelToConsole(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole demo")
	}
	ctx, cancel := context.WithCancel(context.Background())
	o := options{state: t.TempDir(), kioskHTTP: "127.0.0.1:0", simHTTP: "127.0.0.1:0", ledgerHTTP: "127.0.0.1:0",
		fleetHTTP: "127.0.0.1:0", mqttAddr: "127.0.0.1:0", proto: "id003", log: slog.New(slog.DiscardHandler)}
	readyc := make(chan ready, 1)
	done := make(chan error, 1)
	go func() { done <- serve(ctx, o, func(r ready) { readyc <- r }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("demo: %v", err)
		}
	})
	var r ready
	select {
	case r = <-readyc:
	case err := <-done:
		done <- err
		t.Skipf("the demo did not start here (pseudo-terminals?): %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("demo not ready")
	}

	sim := func(path, body string) (int, string) {
		t.Helper()
		res, err := http.Post(strings.TrimSuffix(r.simURL, "/")+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	kiosk := func() (fleet.KioskDetail, bool) {
		req, _ := http.NewRequest(http.MethodGet, strings.TrimSuffix(r.fleetURL, "/")+"/api/kiosk/"+r.kioskID, nil)
		req.SetBasicAuth(r.operator, r.secret)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var d fleet.KioskDetail
		return d, res.StatusCode == http.StatusOK && json.NewDecoder(res.Body).Decode(&d) == nil
	}
	wait := func(what string, ok func(fleet.KioskDetail) bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			d, found := kiosk()
			if found && ok(d) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("console: %s not seen; last: state %q reason %q open %+v", what, d.Summary.State, d.Summary.Reason, d.Open)
			}
			<-tick.C
		}
	}
	openFor := func(kind, actor string) func(fleet.KioskDetail) bool {
		return func(d fleet.KioskDetail) bool {
			for _, a := range d.Open {
				if a.Kind == kind && a.Actor == actor {
					return d.Summary.State == wire.StateOutOfService
				}
			}
			return false
		}
	}
	online := func(d fleet.KioskDetail) bool { return d.Summary.State == wire.StateOnline && len(d.Open) == 0 }
	post := func(path, body string) {
		t.Helper()
		if code, out := sim(path, body); code != http.StatusOK {
			t.Fatalf("%s: %d %s", path, code, out)
		}
	}

	signOff := func(body string) {
		t.Helper()
		retry := time.NewTicker(50 * time.Millisecond)
		defer retry.Stop()
		deadline := time.Now().Add(10 * time.Second)
		for code, out := sim("/api/technician/signoff", body); code != http.StatusOK; code, out = sim("/api/technician/signoff", body) {
			if time.Now().After(deadline) {
				t.Fatalf("sign-off %s: %d %s", body, code, out)
			}
			<-retry.C
		}
	}

	wait("the demo kiosk online", online)
	post("/api/acceptor/jam", `{"stacker":false}`)
	wait("the jam", openFor("acceptor_acceptor_jam", wire.ActorEngineer))
	post("/api/acceptor/clear_jam", "")
	wait("the jam cleared", online)

	post("/api/sensors/set", `{"pin":"SIM_CABINET_DOOR","active":true}`)
	wait("the cabinet door open", func(d fleet.KioskDetail) bool {
		for _, a := range d.Open {
			if a.Kind == "cabinet_door_open" && a.Actor == wire.ActorStaff {
				return true
			}
		}
		return false
	})
	post("/api/sensors/set", `{"pin":"SIM_CABINET_DOOR","active":false}`)
	wait("the cabinet door closed", online)

	signoff := `{"condition":"tamper","who":"Li Wei (tech 17)","why":"seal replaced"}`
	post("/api/sensors/set", `{"pin":"SIM_TAMPER","active":true}`)
	wait("the tamper alarm", openFor("tamper", wire.ActorEngineer))
	if code, out := sim("/api/technician/signoff", signoff); code != http.StatusConflict || !strings.Contains(out, "still triggered") {
		t.Fatalf("sign-off with the switch triggered: %d %s", code, out)
	}
	post("/api/sensors/set", `{"pin":"SIM_TAMPER","active":false}`)
	wait("the tamper alarm latched with the switch back", openFor("tamper", wire.ActorEngineer))
	// The switch's return reaches the daemon after its debounce: poll the sign-off until then.
	signOff(signoff)
	wait("tamper signed off", online)

	post("/api/acceptor/cheat", "")
	wait("the cheat attempt", openFor("acceptor_fraud", wire.ActorEngineer))
	post("/api/acceptor/power_cycle", `{"where":"none"}`) // the unit's own cheat report ends
	wait("the fraud latched after the unit's power cycle", openFor("acceptor_fraud", wire.ActorEngineer))
	// Refused until the kiosk has seen the unit come back from its power cycle.
	signOff(`{"condition":"acceptor_fraud","who":"Li Wei (tech 17)","why":"string removed from the note path"}`)
	wait("the cheat attempt signed off", online)
}
