package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kioskd/kioskd/sync/broker"
	"github.com/kioskd/kioskd/sync/mqttc"
	"github.com/kioskd/kioskd/sync/wire"
)

const secret = "operator-secret-0123456789"

func setup(t *testing.T) (dir string) {
	dir = t.TempDir()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-genkey", "-key", filepath.Join(dir, "ops.key"), "-kid", "ops-1"}, &out, io.Discard, nil); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "kid ops-1") {
		t.Errorf("genkey output %q", out.String())
	}
	if err := os.WriteFile(filepath.Join(dir, "operators.json"), []byte(`{"alice":"`+secret+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestRefusesUnsafeSetups(t *testing.T) {
	dir := setup(t)
	base := []string{"-key", filepath.Join(dir, "ops.key"), "-store", filepath.Join(dir, "f.db"), "-http", "127.0.0.1:0"}
	err := run(context.Background(), append(base, "-operators", filepath.Join(dir, "operators.json"), "-broker", "tcp://127.0.0.1:1"), io.Discard, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "no TLS") {
		t.Errorf("tcp:// accepted: %v", err)
	}
	if err := run(context.Background(), base, io.Discard, io.Discard, nil); err == nil || !strings.Contains(err.Error(), "-operators is required") {
		t.Errorf("no operators: %v", err)
	}
	open := filepath.Join(dir, "open.json")
	os.WriteFile(open, []byte(`{"alice":"`+secret+`"}`), 0o644)
	if err := run(context.Background(), append(base, "-operators", open), io.Discard, io.Discard, nil); !errors.Is(err, errPerm) {
		t.Errorf("world-readable operators file: %v", err)
	}
	os.Chmod(filepath.Join(dir, "ops.key"), 0o644)
	if err := run(context.Background(), append(base, "-operators", filepath.Join(dir, "operators.json")), io.Discard, io.Discard, nil); !errors.Is(err, errPerm) {
		t.Errorf("world-readable key: %v", err)
	}
}

func get(t *testing.T, u string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	req.SetBasicAuth("alice", secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", u, resp.StatusCode, b)
	}
	return string(b)
}

// TestEndToEnd runs fleetd against the in-process broker: a kiosk's retained status reaches
// the console, an operator sends a command through the pages, and the kiosk receives it
// signed with the ops key.
func TestEndToEnd(t *testing.T) {
	dir := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b, err := broker.Start(ctx, broker.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	kiosk, err := mqttc.Dial(mqttc.Config{Brokers: []string{b.URL()}, ClientID: "K1"})
	if err != nil {
		t.Fatal(err)
	}
	defer kiosk.Close(0)
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := kiosk.WaitConnected(wctx); err != nil {
		t.Fatal(err)
	}
	cmds := make(chan []byte, 4)
	if err := kiosk.Subscribe(wctx, wire.Topic("K1", wire.DownCmd), 1, func(_ string, p []byte) { cmds <- p }); err != nil {
		t.Fatal(err)
	}
	st, _ := json.Marshal(wire.Status{V: 1, State: wire.StateMaintenance, Reason: "cash collection", At: time.Now().UTC(),
		Conditions: []wire.Condition{{Kind: "cassette_removed", Severity: wire.SeverityWarning, Actor: wire.ActorStaff}}})
	if err := kiosk.Publish(wctx, wire.Topic("K1", wire.UpStatus), 1, true, st); err != nil {
		t.Fatal(err)
	}

	started := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-broker", b.URL(), "-allow-insecure", "-key", filepath.Join(dir, "ops.key"), "-kid", "ops-1",
			"-operators", filepath.Join(dir, "operators.json"), "-store", filepath.Join(dir, "fleetd.db"), "-http", "127.0.0.1:0",
			"-log-level", "error"}, io.Discard, io.Discard, started)
	}()
	var addr string
	select {
	case addr = <-started:
	case err := <-done:
		t.Fatalf("fleetd: %v", err)
	}
	base := "http://" + addr
	// The retained status arrives once fleetd has subscribed; wait for it with a deadline.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(get(t, base+"/api/overview"), `"maintenance":1`) {
		if time.Now().After(deadline) {
			t.Fatal("the retained status never reached the console")
		}
		time.Sleep(20 * time.Millisecond)
	}
	page := get(t, base+"/kiosk/K1")
	if !strings.Contains(page, "cassette_removed") {
		t.Error("the kiosk page lacks the condition")
	}
	tok := regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`).FindStringSubmatch(page)[1]
	form := url.Values{"csrf": {tok}, "kind": {"maintenance_off"}, "confirm": {"yes"}}
	req, _ := http.NewRequest("POST", base+"/kiosk/K1/command", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("alice", secret)
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil || resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "sent") {
		t.Fatalf("send: %v %v", resp, err)
	}
	resp.Body.Close()

	pubB64, _ := os.ReadFile(filepath.Join(dir, "ops.key.pub"))
	pub, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(pubB64)))
	if err != nil {
		t.Fatal(err)
	}
	var cmd wire.Command
	select {
	case env := <-cmds:
		if _, err := (wire.Keyring{"ops-1": ed25519.PublicKey(pub)}).Open(env, &cmd); err != nil {
			t.Fatalf("the kiosk cannot verify the command: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no command reached the kiosk")
	}
	if cmd.Kind != wire.CmdMaintenanceOff || cmd.KioskID != "K1" || cmd.Validate() != nil {
		t.Fatalf("command %+v", cmd)
	}
	res, _ := json.Marshal(wire.CmdResult{V: 1, CmdID: cmd.CmdID, Status: wire.CmdSucceeded})
	if err := kiosk.Publish(wctx, wire.Topic("K1", wire.UpCmdResult), 1, false, res); err != nil {
		t.Fatal(err)
	}
	for !strings.Contains(get(t, base+"/api/kiosk/K1"), `"status":"succeeded"`) {
		if time.Now().After(deadline) {
			t.Fatal("the command result never reached the console")
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp, err = http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`fleetd_kiosk_state{kiosk="K1",state="maintenance"} 1`, `fleetd_commands_sent_total{kind="maintenance_off",result="published"} 1`,
		`fleetd_command_results_total{status="succeeded"} 1`} {
		if !strings.Contains(string(m), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("fleetd stopped with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("fleetd did not stop")
	}
}
