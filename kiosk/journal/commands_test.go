package journal

import (
	"errors"
	"testing"
	"time"
)

func TestCommandsJournaledOnceForever(t *testing.T) {
	j, path := openTest(t)
	at := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	ev := CommandAcceptedEvent{CmdID: "c0ffee00c0ffee00", Kind: "reboot", KID: "ops1", IssuedAt: at, ExpiresAt: at.Add(10 * time.Minute)}
	if seen, err := j.CommandSeen(ev.CmdID); err != nil || seen {
		t.Fatalf("seen before: %v %v", seen, err)
	}
	before, _ := j.Stats()
	if _, err := j.AcceptCommand(ev); err != nil {
		t.Fatal(err)
	}
	if _, err := j.AcceptCommand(ev); !errors.Is(err, ErrCommandReplayed) {
		t.Fatalf("replay: %v", err)
	}
	if err := j.CommandStep(CommandResultEvent{CmdID: ev.CmdID, Kind: ev.Kind, Status: "succeeded"}); err != nil {
		t.Fatal(err)
	}
	if err := j.CommandStep(CommandResultEvent{CmdID: "never-accepted", Kind: "x", Status: "succeeded"}); err == nil {
		t.Fatal("step of an unknown command accepted")
	}
	after, _ := j.Stats()
	if after.Events != before.Events+2 {
		t.Fatalf("events %d → %d, want 2 more", before.Events, after.Events)
	}
	if rep, err := j.Verify(); err != nil {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	// Forever: across a reopen.
	j.Close()
	j2, err := Open(path, Options{KioskID: "K1", Currency: "CNY"})
	if err != nil {
		t.Fatal(err)
	}
	defer j2.Close()
	if seen, err := j2.CommandSeen(ev.CmdID); err != nil || !seen {
		t.Fatalf("after reopen: %v %v", seen, err)
	}
	// The events read back as their structs.
	var types []string
	j2.Events(1, func(r Record) bool {
		if p, err := r.Payload(); err != nil {
			t.Errorf("payload %s: %v", r.Type, err)
		} else if r.Type == EvCommandAccepted && p.(*CommandAcceptedEvent).CmdID != ev.CmdID {
			t.Errorf("payload %+v", p)
		}
		types = append(types, r.Type)
		return true
	})
	if types[len(types)-2] != EvCommandAccepted || types[len(types)-1] != EvCommandResult {
		t.Fatalf("types %v", types)
	}
}

func TestVersionedOpsSettings(t *testing.T) {
	j, _ := openTest(t)
	if _, ok, err := j.LimitsOverlay(); ok || err != nil {
		t.Fatalf("overlay in a new journal: %v %v", ok, err)
	}
	o := LimitsOverlay{Version: 2, CmdID: "c1", SessionMaxMinor: 1000, OfflineSessionMaxMinor: 100, OfflineTotalMaxMinor: 500}
	if err := j.SetLimitsOverlay(o); err != nil {
		t.Fatal(err)
	}
	if err := j.SetLimitsOverlay(LimitsOverlay{Version: 2, SessionMaxMinor: 5}); !errors.Is(err, ErrStaleVersion) {
		t.Fatalf("same version: %v", err)
	}
	if got, ok, err := j.LimitsOverlay(); !ok || err != nil || got != o {
		t.Fatalf("overlay %+v %v %v", got, ok, err)
	}
	c := Credentials{Version: 1, CmdID: "c2", Roles: map[string]string{"technician": "$2b$10$abcdefghijklmnopqrstuu"}}
	if err := j.SetCredentials(c); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := j.Credentials(); !ok || err != nil || got.Roles["technician"] != c.Roles["technician"] {
		t.Fatalf("credentials %+v %v %v", got, ok, err)
	}
	if rep, err := j.Verify(); err != nil {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}
