package e2e

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kioskd/kioskd/hw-sim/pulsesim"
	"github.com/kioskd/kioskd/hw-sim/simrig"
	"github.com/kioskd/kioskd/hw-sim/walletsim"
	"github.com/kioskd/kioskd/kiosk/qrpay"
	"github.com/kioskd/kioskd/kiosk/session"
	"github.com/kioskd/kioskd/sync/mqttc"
	"github.com/kioskd/kioskd/sync/wire"
)

// topUpWithLimit is the first issue's acceptance scenario: QR scan, three notes with the
// third over the limit and returned from escrow, Finish; the ledger credits exactly the
// first two, once; the printer got a receipt with that topup_id; the API says credited. The
// printer runs at its line's speed (9600 baud, as configured for kioskd): the receipt reaches
// it over about a second, as on a real kiosk, and must still be reported printed.
func topUpWithLimit(t *testing.T, kind brokerKind, protocol string) {
	e := newEnv(t, options{broker: kind, sessionMax: 15000, protocol: protocol, lineSpeed: "printer"})
	e.startKiosk("")
	e.waitOnline()
	e.waitView("idle", func(v session.View) bool { return v.State == "idle" })
	e.scan("alice")
	v := e.waitView("accepting", func(v session.View) bool { return v.State == "accepting" })
	if v.LimitMinor != 15000 {
		t.Fatalf("limit %d, want the session max 15000", v.LimitMinor)
	}
	e.insert(10000)
	e.waitView("first note", func(v session.View) bool { return v.TotalMinor == 10000 })
	e.insert(2000)
	e.waitView("second note", func(v session.View) bool { return v.TotalMinor == 12000 })
	// 50.00 would take the session to 170.00: returned from escrow by the host.
	e.insert(5000)
	e.waitView("third note returned", func(v session.View) bool { return strings.Contains(v.Message, "over your limit") })
	if code := e.post("/api/finish"); code != http.StatusOK {
		t.Fatalf("finish: %d", code)
	}
	v = e.waitView("credited", func(v session.View) bool { return v.Result != nil && v.Result.Status == "credited" })
	id := v.Result.TopupID
	if v.Result.AmountMinor != 12000 {
		t.Fatalf("result %+v", v.Result)
	}
	e.waitFor("receipt printed", func() bool { o, _ := e.originals(id); return o == 1 })
	// The receipt is out: kioskd must also know it (the print reported done, not failed).
	v = e.waitView("print outcome", func(v session.View) bool {
		return v.Result != nil && (v.Result.Printed || strings.Contains(v.Message, "No receipt"))
	})
	if !v.Result.Printed {
		t.Fatalf("the receipt came out but kioskd reports it not printed: %q\n%s", v.Message, tail(e.kioskOut.String(), 20))
	}
	acct := e.account("alice")
	if acct.Balances["CNY"] != 12000 || acct.TopupCount != 1 {
		t.Fatalf("ledger account %+v", acct)
	}
	if n, sum := e.stackedTotal(); n != 2 || sum != 12000 {
		t.Fatalf("emulator cassette %d notes / %d, want 2 / 12000", n, sum)
	}
	rec := e.receipts()[0]
	if !strings.Contains(rec.Text, "CREDITED") || !strings.Contains(rec.Text, "120.00") || len(rec.QR) != 1 || rec.QR[0] != id {
		t.Fatalf("receipt:\n%s\nQR %v", rec.Text, rec.QR)
	}
}

// protocols lists the acceptor drivers every end-to-end scenario runs with.
var protocols = []string{"id003", "ccnet", "ssp"}

func TestTopUpEndToEnd(t *testing.T) {
	for _, p := range protocols {
		t.Run(p, func(t *testing.T) { topUpWithLimit(t, embedded, p) })
	}
}

func TestTopUpEndToEndMosquittoTLS(t *testing.T) { topUpWithLimit(t, mosquitto, "id003") }

// TestBrokerDownDuringSession: the kiosk keeps accepting, the receipt says pending, and once
// the broker is back the ledger credits once and the kiosk shows credited.
func brokerDown(t *testing.T, kind brokerKind) {
	e := newEnv(t, options{broker: kind, ackWait: 500 * time.Millisecond})
	e.startKiosk("")
	e.waitOnline()
	e.waitView("idle", func(v session.View) bool { return v.State == "idle" })
	e.scan("carol")
	e.waitView("accepting", func(v session.View) bool { return v.State == "accepting" && !v.Offline })
	e.stopBroker()
	e.insert(5000)
	e.waitView("note 1", func(v session.View) bool { return v.TotalMinor == 5000 })
	e.insert(1000)
	e.waitView("note 2", func(v session.View) bool { return v.TotalMinor == 6000 })
	e.post("/api/finish")
	v := e.waitView("pending result", func(v session.View) bool { return v.Result != nil && v.Result.Printed })
	if v.Result.Status != "pending" {
		t.Fatalf("result while broker down: %+v", v.Result)
	}
	id := v.Result.TopupID
	rec := e.receipts()
	if len(rec) != 1 || !strings.Contains(rec[0].Text, "PENDING") {
		t.Fatalf("receipt while offline:\n%v", rec)
	}
	if a := e.account("carol"); a.TopupCount != 0 {
		t.Fatal("credited while the broker was down?")
	}
	e.startBroker()
	e.waitView("credited after reconnect", func(v session.View) bool { return v.Result != nil && v.Result.Status == "credited" })
	a := e.account("carol")
	if a.Balances["CNY"] != 6000 || a.TopupCount != 1 || a.Topups[0].TopupID != id {
		t.Fatalf("ledger %+v", a)
	}
	if o, c := e.originals(id); o != 1 || c != 0 {
		t.Fatalf("receipts: %d originals, %d copies", o, c)
	}
}

func TestBrokerDownDuringSession(t *testing.T) { brokerDown(t, embedded) }

func TestBrokerDownDuringSessionMosquittoTLS(t *testing.T) { brokerDown(t, mosquitto) }

// TestDuplicateDeliveryAndForgedAcks: the same top-up delivered twice is credited once; an ack
// for an unknown topup_id or with a bad signature is ignored by the kiosk.
func TestDuplicateDeliveryAndForgedAcks(t *testing.T) {
	e := newEnv(t, options{})
	e.startKiosk("")
	e.waitOnline()
	e.waitView("idle", func(v session.View) bool { return v.State == "idle" })
	e.scan("dave")
	e.waitView("accepting", func(v session.View) bool { return v.State == "accepting" })
	e.insert(2000)
	e.waitView("note", func(v session.View) bool { return v.TotalMinor == 2000 })
	e.post("/api/finish")
	v := e.waitView("credited", func(v session.View) bool { return v.Result != nil && v.Result.Status == "credited" })
	rec, err := e.store.Topup(v.Result.TopupID)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := jsonMarshal(rec.Topup)

	// A second client (standing in for a broker redelivery) publishes the same top-up twice
	// more, and forged/unknown acks at the kiosk.
	c, err := mqttc.Dial(mqttc.Config{Brokers: []string{e.brokerURL()}, ClientID: "intruder"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(50 * time.Millisecond)
	if err := c.WaitConnected(e.ctx); err != nil {
		t.Fatal(err)
	}
	dupAcks := make(chan []byte, 4)
	c.Subscribe(e.ctx, wire.Topic(kioskID, wire.DownAck), 1, func(_ string, p []byte) { dupAcks <- p })
	for range 2 {
		if err := c.Publish(e.ctx, wire.Topic(kioskID, wire.UpTopup), 1, false, payload); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		select {
		case p := <-dupAcks:
			var a wire.Ack
			if _, err := (wire.Keyring{"l1": e.lkey.Public().(ed25519.PublicKey)}).Open(p, &a); err != nil || a.Status != wire.AckDuplicate {
				t.Fatalf("redelivery ack %+v %v", a, err)
			}
		case <-e.ctx.Done():
			t.Fatal("no duplicate ack")
		}
	}
	if a := e.account("dave"); a.Balances["CNY"] != 2000 || a.TopupCount != 1 {
		t.Fatalf("ledger after duplicates %+v", a)
	}
	// Forged acks: signed by another key, and for a top-up the kiosk never made.
	_, other, _ := ed25519.GenerateKey(nil)
	forged, _ := wire.Signer{KID: "l1", Key: other}.Seal(wire.Ack{V: 1, TopupID: v.Result.TopupID, Status: wire.AckConflict, AmountMinor: 2000, Currency: "CNY"})
	unknown, _ := wire.Signer{KID: "l1", Key: e.lkey}.Seal(wire.Ack{V: 1, TopupID: strings.TrimSuffix(v.Result.TopupID, "-1") + "-99", Status: wire.AckCredited, AmountMinor: 1, Currency: "CNY"})
	c.Publish(e.ctx, wire.Topic(kioskID, wire.DownAck), 1, false, forged)
	c.Publish(e.ctx, wire.Topic(kioskID, wire.DownAck), 1, false, unknown)
	e.waitFor("kiosk rejected both acks", func() bool { return diagInt(e, "uplink", "rejected_acks") >= 2 })
	if v := e.view(); v.Result == nil || v.Result.Status != "credited" {
		t.Fatalf("forged conflict ack changed the result: %+v", v.Result)
	}
}

// TestRefusedCodesOnCustomerAPI: forged, expired and replayed codes, through the real scanner
// port, are refused with a clear reason on the customer API.
func TestRefusedCodesOnCustomerAPI(t *testing.T) {
	e := newEnv(t, options{})
	e.startKiosk("")
	e.waitOnline()
	e.waitView("idle", func(v session.View) bool { return v.State == "idle" })
	_, other, _ := ed25519.GenerateKey(nil)
	now := time.Now()
	valid := walletsim.Sign(e.wallet, "w1", "erin", now.Add(5*time.Minute), walletsim.NewNonce())
	for _, tc := range []struct {
		name, code string
		want       error
	}{
		{"forged", walletsim.Sign(other, "w1", "erin", now.Add(5*time.Minute), walletsim.NewNonce()), qrpay.ErrSignature},
		{"expired", walletsim.Sign(e.wallet, "w1", "erin", now.Add(-time.Minute), walletsim.NewNonce()), qrpay.ErrExpired},
		{"not a wallet code", "https://example.com/", qrpay.ErrFormat},
	} {
		if err := e.rig.Scanner.Scan(tc.code); err != nil {
			t.Fatal(err)
		}
		e.waitView(tc.name, func(v session.View) bool { return v.State == "idle" && v.Message == qrpay.Message(tc.want) })
	}
	e.rig.Scanner.Scan(valid)
	e.waitView("accepted", func(v session.View) bool { return v.State == "accepting" })
	e.post("/api/cancel")
	e.waitView("idle again", func(v session.View) bool { return v.State == "idle" })
	e.rig.Scanner.Scan(valid)
	e.waitView("replay refused", func(v session.View) bool { return v.Message == qrpay.Message(qrpay.ErrReplayed) })
}

// TestKillBetweenIntentAndCredit: SIGKILL right after the stack intent commits (the unit holds
// the note in escrow) and right after the credit commit (the unit repeats VEND VALID). After
// each restart every note is credited exactly once.
func TestKillDuringNoteProtocol(t *testing.T) {
	for _, proto := range protocols {
		for _, point := range []string{"after-stack-intent:2", "credit-after-commit:2", "credit-before-commit:2"} {
			t.Run(proto+"/"+strings.Split(point, ":")[0], func(t *testing.T) { killDuringNote(t, proto, point) })
		}
	}
}

func killDuringNote(t *testing.T, proto, point string) {
	{
		{
			e := newEnv(t, options{protocol: proto})
			e.startKiosk(point)
			e.waitOnline()
			e.waitView("idle", func(v session.View) bool { return v.State == "idle" })
			e.scan("fred")
			e.waitView("accepting", func(v session.View) bool { return v.State == "accepting" })
			e.insert(10000)
			e.waitView("note 1", func(v session.View) bool { return v.TotalMinor == 10000 })
			e.insert(5000) // the second note hits the crash point
			e.waitCrash()
			e.startKiosk("")
			// Recovery resolves the note from the unit, closes the session as interrupted,
			// prints and syncs.
			v := e.waitView("recovered result", func(v session.View) bool { return v.Result != nil && v.Result.Status == "credited" })
			if v.Result.AmountMinor != 15000 || v.Result.Outcome != wire.OutcomeInterrupted || v.Result.Uncertain != 0 {
				t.Fatalf("recovered result %+v", v.Result)
			}
			if n, sum := e.stackedTotal(); n != 2 || sum != 15000 {
				t.Fatalf("cassette %d/%d", n, sum)
			}
			a := e.account("fred")
			if a.Balances["CNY"] != 15000 || a.TopupCount != 1 {
				t.Fatalf("ledger %+v", a)
			}
			e.waitFor("one original receipt", func() bool { o, c := e.originals(v.Result.TopupID); return o == 1 && c == 0 })
		}
	}
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// diagInt reads a number from the kiosk's diagnostics document.
func diagInt(e *env, section, key string) int64 {
	var d map[string]any
	if err := e.diag(&d); err != nil {
		return -1
	}
	sec, _ := d[section].(map[string]any)
	n, _ := sec[key].(float64)
	return int64(n)
}

// TestPulseAcceptorEndToEnd runs the first issue's scenario with a pulse acceptor on
// (simulated) GPIO: the daemon in-process, everything else as in production. A pulse unit has
// no escrow, so the session is kept within its limit by inhibiting the unit while the largest
// note would not fit.
func TestPulseAcceptorEndToEnd(t *testing.T) {
	e := newEnv(t, options{protocol: "pulse", sessionMax: 15000})
	e.startKiosk("")
	e.waitOnline()
	e.waitView("idle", func(v session.View) bool { return v.State == "idle" })
	e.scan("quinn")
	e.waitView("accepting", func(v session.View) bool { return v.State == "accepting" })
	e.insert(5000)
	e.waitView("first note", func(v session.View) bool { return v.TotalMinor == 5000 })
	e.insert(2000)
	e.waitView("second note", func(v session.View) bool { return v.TotalMinor == 7000 })
	// 80 left and the largest note is 100: the unit is inhibited and refuses the next note.
	// Wait on the inhibit line itself: probing with a note would feed the unit a real note
	// whenever the probe wins the race against the daemon's inhibit.
	e.waitFor("unit inhibited", func() bool { return e.rig.Acc.State().(pulsesim.Snapshot).Inhibited })
	if err := e.rig.Acc.Insert(2); !errors.Is(err, pulsesim.ErrInhibited) {
		t.Fatalf("a note offered to the inhibited unit: %v, want %v", err, pulsesim.ErrInhibited)
	}
	e.post("/api/finish")
	v := e.waitView("credited", func(v session.View) bool { return v.Result != nil && v.Result.Status == "credited" })
	if v.Result.AmountMinor != 7000 {
		t.Fatalf("result %+v", v.Result)
	}
	if n, sum := e.stackedTotal(); n != 2 || sum != 7000 {
		t.Fatalf("pulse unit cassette %d/%d", n, sum)
	}
	if a := e.account("quinn"); a.Balances["CNY"] != 7000 || a.TopupCount != 1 {
		t.Fatalf("ledger %+v", a)
	}
	e.waitFor("receipt", func() bool { o, _ := e.originals(v.Result.TopupID); return o == 1 })
}

// TestVaultDoorStopsService: opening the vault puts the kiosk out of service (and a scan is
// refused); closing it brings the kiosk back.
func TestVaultDoorStopsService(t *testing.T) {
	e := newEnv(t, options{protocol: "pulse"})
	e.startKiosk("")
	e.waitView("idle", func(v session.View) bool { return v.State == "idle" })
	if err := e.rig.SetSensor(simrig.PinVaultDoor, true); err != nil {
		t.Fatal(err)
	}
	e.waitView("out of service", func(v session.View) bool {
		return v.State == "out_of_service" && slices.Contains(v.Reasons, "vault_door_open")
	})
	e.scan("rita")
	// The code travels through the scanner's serial line: wait until kioskd has read and
	// refused it before closing the door, or it could arrive after the kiosk is back.
	e.waitFor("the scan refused", func() bool {
		var d struct {
			Events map[string]uint64 `json:"events"`
		}
		return e.diag(&d) == nil && d.Events["scan_ignored"] > 0
	})
	if v := e.view(); v.State != "out_of_service" {
		t.Fatalf("scan accepted while the vault is open: %+v", v)
	}
	e.rig.SetSensor(simrig.PinVaultDoor, false)
	e.waitView("back in service", func(v session.View) bool { return v.State == "idle" })
	// The cabinet door is only a warning: the kiosk keeps serving.
	e.rig.SetSensor(simrig.PinCabinetDoor, true)
	e.waitView("warning", func(v session.View) bool {
		return slices.Contains(v.Degraded, "cabinet_door_open") || diagHasCondition(e, "cabinet_door_open")
	})
	if v := e.view(); v.State != "idle" {
		t.Fatalf("cabinet door stopped service: %+v", v)
	}
}

func diagHasCondition(e *env, kind string) bool {
	var d struct {
		Conditions []struct {
			Kind string `json:"kind"`
		} `json:"conditions"`
	}
	if err := e.diag(&d); err != nil {
		return false
	}
	for _, c := range d.Conditions {
		if c.Kind == kind {
			return true
		}
	}
	return false
}

// TestCorruptJournalOutOfService: a journal that fails its check at start keeps the kiosk out
// of service with the acceptor inhibited, raises an alarm, and leaves the file untouched.
func TestCorruptJournalOutOfService(t *testing.T) {
	for name, damage := range map[string]func(path string){
		// An edited event: caught by the hash chain.
		"edited event": func(path string) {
			// Every copy, live or in free pages: the live event must be among them.
			b, _ := os.ReadFile(path)
			if !bytes.Contains(b, []byte(`"value_minor":5000`)) {
				t.Fatal("no credit event found to edit")
			}
			os.WriteFile(path, bytes.ReplaceAll(b, []byte(`"value_minor":5000`), []byte(`"value_minor":9000`)), 0o600)
		},
		// Scribbled pages: caught by bbolt's own check, in a child process.
		"scribbled pages": func(path string) {
			st, _ := os.Stat(path)
			f, _ := os.OpenFile(path, os.O_RDWR, 0)
			defer f.Close()
			junk := bytes.Repeat([]byte{0xA5, 0x5A, 0x00, 0xFF}, 1024)
			for off := int64(2 * 4096); off < st.Size(); off += 4096 {
				f.WriteAt(junk, off)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, options{})
			e.startKiosk("")
			e.waitOnline()
			e.waitView("idle", func(v session.View) bool { return v.State == "idle" })
			e.scan("uma")
			e.waitView("accepting", func(v session.View) bool { return v.State == "accepting" })
			e.insert(5000)
			e.waitView("note", func(v session.View) bool { return v.TotalMinor == 5000 })
			e.post("/api/finish")
			e.waitView("result", func(v session.View) bool { return v.Result != nil && v.Result.Status == "credited" })
			e.stopKiosk()
			damage(e.cfg.Journal.Path)
			before, _ := os.ReadFile(e.cfg.Journal.Path)
			e.startKiosk("")
			e.waitView("out of service", func(v session.View) bool {
				return v.State == "out_of_service" && slices.Contains(v.Reasons, "journal_corrupt")
			})
			e.rig.Scanner.Scan(walletsim.Sign(e.wallet, "w1", "uma", time.Now().Add(time.Minute), walletsim.NewNonce()))
			code, _ := e.rig.Acc.CodeFor(1000)
			e.waitFor("acceptor inhibited", func() bool {
				err := e.rig.Acc.Insert(code)
				return err != nil && strings.Contains(err.Error(), "inhibit")
			})
			if v := e.view(); v.State != "out_of_service" {
				t.Fatalf("kiosk left out-of-service: %+v", v)
			}
			if !diagHasCondition(e, "journal_corrupt") {
				t.Fatal("no journal_corrupt alarm")
			}
			e.stopKiosk()
			after, _ := os.ReadFile(e.cfg.Journal.Path)
			if !bytes.Equal(before, after) {
				t.Fatal("the damaged journal was modified; it must be kept for forensics")
			}
		})
	}
}

// TestGracefulStop: SIGTERM in the middle of a session inhibits the acceptor, closes the
// session, prints the receipt and flushes the top-up to the ledger, then exits 0 within the
// grace.
func TestGracefulStop(t *testing.T) {
	e := newEnv(t, options{})
	e.startKiosk("")
	e.waitOnline()
	e.waitView("idle", func(v session.View) bool { return v.State == "idle" })
	e.scan("vera")
	e.waitView("accepting", func(v session.View) bool { return v.State == "accepting" })
	e.insert(2000)
	e.waitView("note", func(v session.View) bool { return v.TotalMinor == 2000 })
	start := time.Now()
	e.kiosk.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-e.exited:
		if err != nil {
			t.Fatalf("kioskd exited with %v after SIGTERM", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("kioskd did not stop within its grace")
	}
	e.kiosk = nil
	t.Logf("stopped in %v", time.Since(start))
	a := e.account("vera")
	if a.Balances["CNY"] != 2000 || a.TopupCount != 1 || a.Topups[0].Outcome != "interrupted" {
		t.Fatalf("ledger after a graceful stop: %+v", a)
	}
	if o, _ := e.originals(a.Topups[0].TopupID); o != 1 {
		t.Fatal("no receipt printed before the stop")
	}
	code, _ := e.rig.Acc.CodeFor(1000)
	if err := e.rig.Acc.Insert(code); err == nil {
		t.Fatal("acceptor left enabled after the stop")
	}
}
