package wire

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)

func TestStatusConditionsRoundTrip(t *testing.T) {
	s := Status{V: 1, State: StateDegraded, Since: t0, Reason: "printer_paper_out",
		Conditions: []Condition{{Kind: "printer_paper_out", Severity: SeverityWarning, Actor: ActorStaff, Since: t0, Detail: "no paper"}}}
	b, _ := json.Marshal(s)
	for _, want := range []string{`"since":"2026-12-01T08:00:00Z"`, `"reason":"printer_paper_out"`, `"conditions":[{"kind":"printer_paper_out","severity":"warning","actor":"staff"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("status JSON %s lacks %s", b, want)
		}
	}
	var back Status
	if err := Decode(b, &back); err != nil || back.Validate() != nil || len(back.Conditions) != 1 || back.Conditions[0].Detail != "no paper" {
		t.Fatalf("round trip: %+v %v", back, err)
	}
	for name, mut := range map[string]func(*Status){
		"no state":      func(s *Status) { s.State = "" },
		"bad state":     func(s *Status) { s.State = "happy" },
		"bad actor":     func(s *Status) { s.Conditions[0].Actor = "boss" },
		"bad severity":  func(s *Status) { s.Conditions[0].Severity = "meh" },
		"no kind":       func(s *Status) { s.Conditions[0].Kind = "" },
		"duplicate":     func(s *Status) { s.Conditions = append(s.Conditions, s.Conditions[0]) },
		"wrong version": func(s *Status) { s.V = 2 },
	} {
		c := s
		c.Conditions = append([]Condition(nil), s.Conditions...)
		mut(&c)
		if c.Validate() == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestHeartbeatDevicesBothForms(t *testing.T) {
	// The older form, as kioskd sends it today.
	var old Heartbeat
	if err := Decode([]byte(`{"v":1,"devices":{"printer":"ok","acceptor":"jam"},"cassette_notes":50,"cassette_capacity":100}`), &old); err != nil {
		t.Fatal(err)
	}
	if old.Devices["acceptor"] != "jam" || len(old.DeviceList) != 0 {
		t.Fatalf("object form: %+v", old)
	}
	if d := old.Devs(); len(d) != 2 || d[0].Name != "acceptor" {
		t.Errorf("Devs from map: %+v", d)
	}
	if c := old.CassetteFill(); c == nil || c.FillRatio != 0.5 {
		t.Errorf("CassetteFill from old fields: %+v", c)
	}
	// The contract form.
	hb := Heartbeat{V: 1, DeviceList: []Device{{Name: "acceptor", State: "ok", Model: "iVIZION", Firmware: "1.2"}},
		Cassette: &Cassette{Notes: 900, Capacity: 1000, FillRatio: 0.9, ValueMinor: 5_000_000}, UncertainCount: 2,
		Clock: t0, RTTMs: 40, LastTopupAt: t0, Counters: map[string]uint64{"qr_refused": 3}, DiskFreeBytes: 1 << 30}
	b, err := json.Marshal(hb)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"devices":[{"name":"acceptor","state":"ok","model":"iVIZION","firmware":"1.2"}]`,
		`"cassette":{"notes":900,"capacity":1000,"fill_ratio":0.9,"value_minor":5000000}`, `"uncertain_count":2`,
		`"clock":"2026-12-01T08:00:00Z"`, `"rtt_ms":40`, `"last_topup_at":`, `"counters":{"qr_refused":3}`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("heartbeat JSON %s lacks %s", b, want)
		}
	}
	var back Heartbeat
	if err := Decode(b, &back); err != nil || back.Validate() != nil {
		t.Fatalf("decode: %v", err)
	}
	if len(back.DeviceList) != 1 || back.DeviceList[0].Firmware != "1.2" || back.Devices["acceptor"] != "ok" || back.Uncertain() != 2 {
		t.Errorf("array form: %+v", back)
	}
	if err := Decode([]byte(`{"v":1,"devices":7}`), &back); err == nil {
		t.Error("devices of the wrong JSON type accepted")
	}
	hb.Cassette.FillRatio = 1.5
	if hb.Validate() == nil {
		t.Error("fill ratio 1.5 accepted")
	}
}

func TestAlarmStates(t *testing.T) {
	raise := Alarm{V: 1, AlarmID: "a1", Kind: "cassette_full", Severity: SeverityCritical, Actor: ActorOps, State: AlarmRaised, RaisedAt: t0, Detail: "full"}
	if err := raise.Validate(); err != nil || raise.IsCleared() || raise.Text() != "full" {
		t.Fatalf("raise: %v", err)
	}
	clr := Alarm{V: 1, AlarmID: "a1", Kind: "cassette_full", State: AlarmCleared, ClearedAt: t0}
	if err := clr.Validate(); err != nil || !clr.IsCleared() {
		t.Fatalf("clear: %v", err)
	}
	legacy := Alarm{V: 1, AlarmID: "a1", Kind: "x", Cleared: true, Details: "old"}
	if !legacy.IsCleared() || legacy.Text() != "old" || legacy.Validate() != nil {
		t.Error("legacy cleared alarm")
	}
	for _, bad := range []Alarm{{V: 1, Kind: "x", Severity: "info", Actor: "staff"}, {V: 1, AlarmID: "a", Kind: "x", Severity: "loud", Actor: "staff"},
		{V: 1, AlarmID: "a", Kind: "x", Severity: "info", Actor: "staff", State: "maybe"}, {V: 1, AlarmID: "a", Kind: "x", Severity: "info", Actor: "staff", State: AlarmRaised, Cleared: true}} {
		if bad.Validate() == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
}

func validCommand() Command {
	return Command{V: 1, CmdID: "c0ffee00c0ffee00", KioskID: "K-1", IssuedAt: t0, ExpiresAt: t0.Add(10 * time.Minute), Kind: CmdReprint, Args: json.RawMessage(`{"receipt_no":118}`)}
}

func TestCommandValidate(t *testing.T) {
	c := validCommand()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, k := range CommandKinds {
		c := validCommand()
		c.Kind, c.Args = k, nil
		switch k {
		case CmdReprint:
			c.Args = json.RawMessage(`{"receipt_no":1}`)
		case CmdSetLimits:
			c.Args = json.RawMessage(`{"version":3,"offline_session_max_minor":50000}`)
		case CmdSetCredentials:
			c.Args = json.RawMessage(`{"version":1,"technician":"$argon2id$..."}`)
		}
		if err := c.Validate(); err != nil {
			t.Errorf("%s: %v", k, err)
		}
	}
	for name, mut := range map[string]func(*Command){
		"no id":          func(c *Command) { c.CmdID = "" },
		"short id":       func(c *Command) { c.CmdID = "abc" },
		"bad kiosk":      func(c *Command) { c.KioskID = "K/1" },
		"expired first":  func(c *Command) { c.ExpiresAt = c.IssuedAt },
		"too long":       func(c *Command) { c.ExpiresAt = c.IssuedAt.Add(MaxCommandTTL + time.Second) },
		"unknown kind":   func(c *Command) { c.Kind = "self_destruct" },
		"reprint no arg": func(c *Command) { c.Args = nil },
		"reprint zero":   func(c *Command) { c.Args = json.RawMessage(`{"receipt_no":0}`) },
		"args array":     func(c *Command) { c.Kind, c.Args = CmdReboot, json.RawMessage(`[1]`) },
		"limits empty":   func(c *Command) { c.Kind, c.Args = CmdSetLimits, json.RawMessage(`{}`) },
		"version":        func(c *Command) { c.V = 0 },
	} {
		c := validCommand()
		mut(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestCommandSealOpen(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	c := validCommand()
	env, err := Signer{KID: "ops-1", Key: priv}.Seal(c)
	if err != nil {
		t.Fatal(err)
	}
	var got Command
	kid, err := Keyring{"ops-1": pub}.Open(env, &got)
	if err != nil || kid != "ops-1" || got.Validate() != nil || got.CmdID != c.CmdID || string(got.Args) != string(c.Args) {
		t.Fatalf("open: %v %+v", err, got)
	}
	otherPub, _, _ := ed25519.GenerateKey(nil)
	if _, err := (Keyring{"ops-1": otherPub}).Open(env, &got); !errors.Is(err, ErrBadSig) {
		t.Errorf("wrong key: %v", err)
	}
}

func TestCmdResultValidate(t *testing.T) {
	for _, ok := range []CmdResult{{V: 1, CmdID: "c1", Status: CmdAccepted}, {V: 1, CmdID: "c1", Status: CmdRejected, Reason: "replayed"},
		{V: 1, CmdID: "c1", Status: CmdWaitingIdle}, {V: 1, CmdID: "c1", Status: CmdSucceeded}, {V: 1, CmdID: "c1", Status: CmdExpired}} {
		if err := ok.Validate(); err != nil {
			t.Errorf("%+v: %v", ok, err)
		}
	}
	for _, bad := range []CmdResult{{V: 1, Status: CmdAccepted}, {V: 1, CmdID: "c1", Status: CmdFailed}, {V: 1, CmdID: "c1", Status: "done"}} {
		if bad.Validate() == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
	if !CmdFinal(CmdSucceeded) || CmdFinal(CmdWaitingIdle) {
		t.Error("CmdFinal")
	}
}

// FuzzDecodeOps feeds every operations payload type the same bytes: no panic, and whatever
// validates re-encodes and decodes to a payload that still validates.
func FuzzDecodeOps(f *testing.F) {
	f.Add([]byte(`{"v":1,"state":"degraded","since":"2026-12-01T08:00:00Z","reason":"paper","conditions":[{"kind":"printer_paper_out","severity":"warning","actor":"staff"}]}`))
	f.Add([]byte(`{"v":1,"devices":[{"name":"acceptor","state":"ok","model":"m","firmware":"f"}],"cassette":{"notes":1,"capacity":2,"fill_ratio":0.5,"value_minor":100},"uncertain_count":1,"counters":{"x":1}}`))
	f.Add([]byte(`{"v":1,"devices":{"printer":"ok"}}`))
	f.Add([]byte(`{"v":1,"alarm_id":"a","kind":"k","severity":"critical","actor":"ops","state":"raised","raised_at":"2026-12-01T08:00:00Z"}`))
	f.Add([]byte(`{"v":1,"cmd_id":"c0ffee00c0ffee00","kiosk_id":"K1","issued_at":"2026-12-01T08:00:00Z","expires_at":"2026-12-01T08:10:00Z","kind":"reprint","args":{"receipt_no":3}}`))
	f.Add([]byte(`{"v":1,"cmd_id":"c1","status":"rejected","reason":"replayed"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		check := func(v interface{ Validate() error }, fresh interface{ Validate() error }) {
			if Decode(data, v) != nil || v.Validate() != nil {
				return
			}
			b, err := json.Marshal(v)
			if err != nil {
				t.Fatalf("re-encode %T: %v", v, err)
			}
			if err := Decode(b, fresh); err != nil {
				t.Fatalf("decode re-encoded %T %s: %v", v, b, err)
			}
			if err := fresh.Validate(); err != nil {
				t.Fatalf("re-encoded %T no longer validates: %v (%s)", v, err, b)
			}
		}
		check(&Status{}, &Status{})
		check(&Heartbeat{}, &Heartbeat{})
		check(&Alarm{}, &Alarm{})
		check(&Command{}, &Command{})
		check(&CmdResult{}, &CmdResult{})
	})
}
