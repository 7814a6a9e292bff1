package daemon

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/sync/broker"
	"github.com/kioskd/kioskd/sync/mqttc"
	"github.com/kioskd/kioskd/sync/wire"
)

// opsObserver is the console's view: every up/ message of the kiosk, by topic.
type opsObserver struct {
	t    *testing.T
	obs  *mqttc.Client
	ch   chan pubMsg
	ctx  context.Context
	seen []pubMsg
	pos  map[string]int
}

type pubMsg struct {
	topic   string
	payload []byte
}

// withBroker starts an in-process broker, points the kit's kiosk at it with a ledger key and
// an ops key, and subscribes an observer to the kiosk's up topics.
func withBroker(t *testing.T, k *kit) (*opsObserver, wire.Signer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	t.Cleanup(cancel)
	b, err := broker.Start(ctx, broker.Config{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	lpub, _, _ := ed25519.GenerateKey(nil)
	opub, opriv, _ := ed25519.GenerateKey(nil)
	k.cfg.MQTT.Broker = "tcp://" + b.Addr()
	k.cfg.MQTT.AllowInsecure = true
	k.cfg.MQTT.LedgerKeys = map[string]string{"l1": base64.StdEncoding.EncodeToString(lpub)}
	k.cfg.MQTT.OpsKeys = map[string]string{"ops1": base64.StdEncoding.EncodeToString(opub)}
	k.cfg.MQTT.Heartbeat = 0
	o := &opsObserver{t: t, ch: make(chan pubMsg, 256), ctx: ctx, pos: map[string]int{}}
	o.obs, err = mqttc.Dial(mqttc.Config{Brokers: []string{"tcp://" + b.Addr()}, ClientID: "observer"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.obs.Close(0) })
	if err := o.obs.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	if err := o.obs.Subscribe(ctx, "kiosk/"+k.cfg.Kiosk.ID+"/up/#", 1, func(topic string, p []byte) {
		o.ch <- pubMsg{topic, append([]byte(nil), p...)}
	}); err != nil {
		t.Fatal(err)
	}
	return o, wire.Signer{KID: "ops1", Key: opriv}
}

// wait returns the next message on a topic ending in suffix for which ok holds: each topic
// is read in order, apart from the others.
func (o *opsObserver) wait(suffix string, v any, ok func() bool) {
	o.t.Helper()
	for {
		for i := o.pos[suffix]; i < len(o.seen); i++ {
			m := o.seen[i]
			reflect.ValueOf(v).Elem().SetZero() // fields a message leaves out are not the last one's
			if strings.HasSuffix(m.topic, suffix) && wire.Decode(m.payload, v) == nil && ok() {
				o.pos[suffix] = i + 1
				return
			}
		}
		o.pos[suffix] = len(o.seen)
		select {
		case m := <-o.ch:
			if testing.Verbose() {
				o.t.Logf("%s %s", m.topic, m.payload)
			}
			o.seen = append(o.seen, m)
		case <-o.ctx.Done():
			o.t.Fatalf("no matching %s message", suffix)
		}
	}
}

func hasCond(s wire.Status, kind string) bool {
	for _, c := range s.Conditions {
		if c.Kind == kind {
			return true
		}
	}
	return false
}

// A kiosk whose journal fails its check still connects, and says out_of_service with the
// journal's condition, raised as an alarm.
func TestSafeModeReportsOutOfService(t *testing.T) {
	k := newKit(t)
	o, _ := withBroker(t, k)
	os.MkdirAll(filepath.Dir(k.cfg.Journal.Path), 0o700)
	if err := os.WriteFile(k.cfg.Journal.Path, bytes.Repeat([]byte("not a journal "), 600), 0o600); err != nil {
		t.Fatal(err)
	}
	k.accDev.plug()
	r := k.start()
	if r.s.SafeMode() == nil {
		t.Fatal("not in safe mode")
	}
	var st wire.Status
	o.wait(wire.UpStatus, &st, func() bool { return st.State == wire.StateOutOfService && hasCond(st, "journal_corrupt") })
	if st.Validate() != nil || st.Reason == "" || st.Since.IsZero() {
		t.Fatalf("status %+v", st)
	}
	var a wire.Alarm
	o.wait(wire.UpAlarm, &a, func() bool { return a.Kind == "journal_corrupt" })
	if a.State != wire.AlarmRaised || a.AlarmID != "journal_corrupt" {
		t.Fatalf("alarm %+v", a)
	}
	hb := r.s.heartbeatNow()
	if err := hb.Validate(); err != nil || hb.JournalBytes == 0 || hb.SessionState != wire.StateOutOfService {
		t.Fatalf("heartbeat %+v: %v", hb, err)
	}
	if _, err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	o.wait(wire.UpStatus, &st, func() bool { return st.State == wire.StateOffline })
}

// The retained status follows the open conditions; a condition is one alarm raised and
// cleared under one id; events are counted in the heartbeat and not journaled; a signed
// command runs through the real engine and is reported.
func TestOpsThroughTheBroker(t *testing.T) {
	k := newKit(t)
	o, ops := withBroker(t, k)
	k.accDev.plug()
	k.prnDev.plug()
	r := k.start()
	var st wire.Status
	o.wait(wire.UpStatus, &st, func() bool { return st.State == wire.StateOnline })

	r.s.Health().Set("printer_paper_low", health.Warning, health.Staff, health.NoEffect, "paper low")
	o.wait(wire.UpStatus, &st, func() bool { return hasCond(st, "printer_paper_low") })
	if st.State != wire.StateOnline || st.Validate() != nil {
		t.Fatalf("status %+v", st)
	}
	r.s.Health().Clear("printer_paper_low")
	o.wait(wire.UpStatus, &st, func() bool { return !hasCond(st, "printer_paper_low") })
	var raise, clear wire.Alarm
	o.wait(wire.UpAlarm, &raise, func() bool { return raise.Kind == "printer_paper_low" })
	o.wait(wire.UpAlarm, &clear, func() bool { return clear.Kind == "printer_paper_low" })
	if raise.State != wire.AlarmRaised || !clear.IsCleared() || clear.AlarmID != raise.AlarmID || !clear.RaisedAt.Equal(raise.RaisedAt) || clear.ClearedAt.IsZero() {
		t.Fatalf("clear %+v (raise %+v)", clear, raise)
	}

	// Events: counted, not journaled.
	before, _ := r.s.j.Stats()
	for range 5 {
		r.s.Health().Event("qr_refused", health.Warning, health.None, "expired code")
	}
	after, _ := r.s.j.Stats()
	if after.Events != before.Events {
		t.Fatalf("events journaled: %d → %d", before.Events, after.Events)
	}
	hb := r.s.heartbeatNow()
	if hb.Counters["qr_refused"] != 5 || hb.Cassette == nil || hb.Cassette.Capacity != k.cfg.Acceptor.CassetteCapacity || hb.Clock.IsZero() || len(hb.DeviceList) == 0 {
		t.Fatalf("heartbeat %+v", hb)
	}
	if err := hb.Validate(); err != nil {
		t.Fatal(err)
	}

	// A signed command, through the broker, the real engine and the journal.
	send := func(kind string) wire.Command {
		now := time.Now()
		c := wire.Command{V: 1, CmdID: "cmd" + kind + "00000000", KioskID: k.cfg.Kiosk.ID, IssuedAt: now, ExpiresAt: now.Add(time.Minute), Kind: kind}
		b, err := ops.Seal(c)
		if err != nil {
			t.Fatal(err)
		}
		if err := o.obs.Publish(o.ctx, wire.Topic(k.cfg.Kiosk.ID, wire.DownCmd), 1, false, b); err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := send(wire.CmdOutOfService)
	var res wire.CmdResult
	o.wait(wire.UpCmdResult, &res, func() bool { return res.CmdID == c.CmdID && wire.CmdFinal(res.Status) })
	if res.Status != wire.CmdSucceeded {
		t.Fatalf("result %+v", res)
	}
	o.wait(wire.UpStatus, &st, func() bool { return st.State == wire.StateOutOfService })
	c = send(wire.CmdInService)
	o.wait(wire.UpCmdResult, &res, func() bool { return res.CmdID == c.CmdID && wire.CmdFinal(res.Status) })
	o.wait(wire.UpStatus, &st, func() bool { return st.State == wire.StateOnline })
	var audit []string
	r.s.j.Events(1, func(rec journal.Record) bool {
		if rec.Type == journal.EvCommandAccepted || rec.Type == journal.EvCommandResult {
			audit = append(audit, rec.Type)
		}
		return true
	})
	if len(audit) != 4 {
		t.Fatalf("audit events %v", audit)
	}
	if _, err := r.stop(t); err != nil {
		t.Fatal(err)
	}
}
