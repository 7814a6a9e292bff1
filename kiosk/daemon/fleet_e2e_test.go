package daemon

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kioskd/kioskd/kiosk/config"
	"github.com/kioskd/kioskd/sync/fleet"
	"github.com/kioskd/kioskd/sync/mosqtest"
	"github.com/kioskd/kioskd/sync/mqttc"
	"github.com/kioskd/kioskd/sync/wire"
)

// The operations picture end to end, on a real mosquitto with the shipped configuration and
// ACL (TLS, client certificates, CN as identity): a kioskd with emulated hardware and an
// operations console (sync/fleet with its bbolt store) that restarts.

// console is fleetd's parts in the test: its store, the Fleet and its MQTT client.
type console struct {
	t      *testing.T
	f      *fleet.Fleet
	store  *fleet.BoltStore
	client *mqttc.Client
}

// openConsole opens the console's store; connect (when broker is set) puts it on the broker,
// whose retained statuses then come in.
func openConsole(t *testing.T, path string, signer wire.Signer, mq *mosqtest.Broker) *console {
	t.Helper()
	store, err := fleet.OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := fleet.New(fleet.Config{Store: store, Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	c := &console{t: t, f: f, store: store}
	t.Cleanup(c.close)
	if mq != nil {
		c.client, err = mqttc.Dial(mqttc.Config{Brokers: []string{mq.URL()}, TLS: mq.ClientTLS("fleetd-1"), ClientID: "fleetd-1", OnConnect: f.OnConnect})
		if err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func (c *console) close() {
	if c.client != nil {
		c.client.Close(time.Second)
		c.client = nil
	}
	if c.store != nil {
		c.store.Close()
		c.store = nil
	}
}

// picture is what an operator sees of one kiosk.
type picture struct {
	d    fleet.KioskDetail
	open map[string]fleet.AlarmRecord // by kind
}

func (c *console) picture(id string) (picture, bool) {
	d, err := c.f.Kiosk(id)
	if err != nil {
		return picture{}, false
	}
	p := picture{d: d, open: map[string]fleet.AlarmRecord{}}
	for _, a := range d.Open {
		p.open[a.Kind] = a
	}
	return p, true
}

func (p picture) String() string {
	var kinds []string
	for k, a := range p.open {
		kinds = append(kinds, k+"("+a.Actor+"/"+a.Source+")")
	}
	slices.Sort(kinds)
	return p.d.Summary.State + " reason=" + p.d.Summary.Reason + " open=" + strings.Join(kinds, ",")
}

// waitPicture polls the console until ok holds, within limit (polling with a deadline: the
// console has no change notification).
func (c *console) waitPicture(id, what string, limit time.Duration, ok func(picture) bool) picture {
	c.t.Helper()
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var last picture
	for {
		if p, found := c.picture(id); found {
			last = p
			if ok(p) {
				return p
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("console: %s not seen within %s; last picture: %s", what, limit, last)
		}
		<-tick.C
	}
}

const condJam = "acceptor_acceptor_jam"

func outOfServiceFor(kind, actor string) func(picture) bool {
	return func(p picture) bool {
		a, open := p.open[kind]
		return p.d.Summary.State == wire.StateOutOfService && open && a.Actor == actor && strings.Contains(p.d.Summary.Reason, kind) &&
			(actor != wire.ActorEngineer || p.d.Summary.NeedsEngineer) && (actor != wire.ActorStaff || p.d.Summary.NeedsStaff)
	}
}

func onlineNoAlarms(p picture) bool { return p.d.Summary.State == wire.StateOnline && len(p.open) == 0 }

// TestConsoleFollowsTheKioskOverMosquitto: jam the acceptor and the console shows the kiosk
// out of service with the condition and who must act within 2 s; clear it and the kiosk is
// online with the alarm cleared; the console restarted shows the same picture from its store,
// and after a change it missed, the right one from the retained status; a set_limits sent by
// the console is in force and reported; the kiosk restarted in safe mode needs an engineer.
func TestConsoleFollowsTheKioskOverMosquitto(t *testing.T) {
	mq := mosqtest.Start(t, mosqtest.Options{})
	k := newKit(t)
	lpub, _, _ := ed25519.GenerateKey(nil)
	opub, opriv, _ := ed25519.GenerateKey(nil)
	id := k.cfg.Kiosk.ID
	k.cfg.MQTT.Broker = mq.URL()
	k.cfg.MQTT.CAFile = mq.CAFile
	k.cfg.MQTT.CertFile, k.cfg.MQTT.KeyFile = mq.ClientFiles(id)
	k.cfg.MQTT.LedgerKeys = map[string]string{"l1": base64.StdEncoding.EncodeToString(lpub)}
	k.cfg.MQTT.OpsKeys = map[string]string{"ops1": base64.StdEncoding.EncodeToString(opub)}
	k.cfg.MQTT.Heartbeat = config.Duration(time.Second)
	k.cfg.MQTT.RetryMin, k.cfg.MQTT.RetryMax = config.Duration(100*time.Millisecond), config.Duration(time.Second)
	if err := k.cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	signer := wire.Signer{KID: "ops1", Key: opriv}
	dbPath := filepath.Join(t.TempDir(), "fleet.db")
	con := openConsole(t, dbPath, signer, mq)

	k.accDev.plug()
	k.prnDev.plug()
	r := k.start()
	con.waitPicture(id, "the kiosk online", testWait, onlineNoAlarms)

	// Jam: out of service, the condition, an engineer must act, within 2 s.
	jammed := time.Now()
	k.acc.Jam(false)
	p := con.waitPicture(id, "the jam", testWait, outOfServiceFor(condJam, wire.ActorEngineer))
	if took := time.Since(jammed); took > 2*time.Second {
		t.Errorf("the console showed the jam %s after it happened (want ≤ 2 s)", took)
	}
	if a := p.open[condJam]; a.Severity != wire.SeverityCritical {
		t.Errorf("jam alarm %+v", a)
	}
	// Cleared: online, every alarm of the jam closed (the up/alarm one and the status's).
	k.acc.ClearJam()
	con.waitPicture(id, "the jam cleared", testWait, onlineNoAlarms)
	all, err := con.store.Alarms(id, false)
	if err != nil {
		t.Fatal(err)
	}
	cleared := 0
	for _, a := range all {
		if a.Kind == condJam && !a.Open && !a.ClearedAt.IsZero() {
			cleared++
		}
	}
	if cleared == 0 {
		t.Fatalf("no cleared jam alarm in %+v", all)
	}

	// Jammed again, and the console restarts: its store alone gives the same picture.
	k.acc.Jam(false)
	before := con.waitPicture(id, "the second jam", testWait, outOfServiceFor(condJam, wire.ActorEngineer))
	con.close()
	off := openConsole(t, dbPath, signer, nil)
	after, ok := off.picture(id)
	if !ok || !outOfServiceFor(condJam, wire.ActorEngineer)(after) || after.String() != before.String() {
		t.Fatalf("restarted console: %s, before the restart: %s", after, before)
	}
	// Cleared while the console is away: the retained status tells it when it is back.
	k.acc.ClearJam()
	r.conds.waitCleared(t, condJam)
	off.close()
	con = openConsole(t, dbPath, signer, mq)
	con.waitPicture(id, "the jam cleared while the console was away", testWait, onlineNoAlarms)

	// set_limits from the console: succeeded, and reported in the heartbeat and the status.
	if _, err := con.f.SendCommand(context.Background(), id, wire.CmdSetLimits, json.RawMessage(`{"version":1,"session_max_minor":150000}`), "op"); err != nil {
		t.Fatal(err)
	}
	con.waitPicture(id, "set_limits succeeded and reported", testWait, func(p picture) bool {
		h, s := p.d.Record.Heartbeat, p.d.Record.Status
		return len(p.d.Commands) == 1 && p.d.Commands[0].Status == wire.CmdSucceeded &&
			h != nil && h.Limits != nil && h.Limits.Version == 1 && h.Limits.SessionMaxMinor == 150000 && s != nil && s.LimitsVersion == 1
	})

	// The kiosk stops and comes back in safe mode (its journal fails its check): out of
	// service, journal_corrupt, an engineer must act.
	if _, err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	con.waitPicture(id, "the kiosk offline", testWait, func(p picture) bool { return p.d.Summary.State == wire.StateOffline })
	if err := os.WriteFile(k.cfg.Journal.Path, bytes.Repeat([]byte("not a journal "), 600), 0o600); err != nil {
		t.Fatal(err)
	}
	r = k.start()
	if r.s.SafeMode() == nil {
		t.Fatal("not in safe mode")
	}
	con.waitPicture(id, "the kiosk in safe mode", testWait, outOfServiceFor("journal_corrupt", wire.ActorEngineer))
	if _, err := r.stop(t); err != nil {
		t.Fatal(err)
	}
}
