package notepath

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/hw-sim/linespeed"
)

var (
	errBusy  = errors.New("busy")
	errNone  = errors.New("no note")
	errState = errors.New("cassette state")
)

func newUnit(capacity int) *Unit {
	return New(Config{Name: "test", Capacity: capacity,
		Values: acceptor.Denominations{1: {ValueMinor: 1000, Currency: "CNY"}, 2: {ValueMinor: 2000, Currency: "CNY"}},
		Now:    func() time.Time { return time.Unix(100, 0) }, Errors: Errors{Busy: errBusy, NoNote: errNone, CassetteState: errState}})
}

// A note is logged once whatever the number of reports, with its value, and fills the
// cassette at its capacity.
func TestLogOnceAndCapacity(t *testing.T) {
	u := newUnit(2)
	for _, code := range []byte{1, 2} {
		u.Insert(code)
		u.Path.InStacker = true
		i := u.Log("stacked")
		if j := u.Log("stacked"); j != i {
			t.Fatalf("logged twice: %d, %d", i, j)
		}
		u.Ack(i)
		if u.CassetteFull() {
			t.Fatal("full before capacity")
		}
		u.Finish()
	}
	if !u.CassetteFull() || u.Count() != 2 {
		t.Fatalf("full %v count %d", u.CassetteFull(), u.Count())
	}
	c := u.Cassette()
	if len(c) != 2 || c[1].ValueMinor != 2000 || !c[1].Acked || c[1].Cassette != 1 || c[1].Via != "stacked" {
		t.Fatalf("log %+v", c)
	}
}

// Pulled mid-stack, the note leaves in the cassette, counted; pulled with a note before the
// point of no return, or already logged, the pull is refused.
func TestPullCassette(t *testing.T) {
	var midStack, replaced int
	u := New(Config{Name: "test", Errors: Errors{Busy: errBusy, CassetteState: errState},
		OnMidStack: func() { midStack++ }, OnReplaced: func() { replaced++ }})
	c := u.Controls()
	u.Insert(1)
	if err := c.PullCassette(); !errors.Is(err, errBusy) {
		t.Fatalf("pull with a note in the acceptor: %v", err)
	}
	u.Path.InStacker = true
	if err := c.PullCassette(); err != nil || midStack != 1 || u.Path != nil || !u.CassetteOut() {
		t.Fatalf("mid-stack pull: %v (hook %d) %+v", err, midStack, u.Path)
	}
	if l := c.Cassette(); len(l) != 1 || l[0].Via != "cassette_pulled" || l[0].Cassette != 1 {
		t.Fatalf("log %+v", l)
	}
	if err := c.PullCassette(); !errors.Is(err, errState) {
		t.Fatalf("second pull: %v", err)
	}
	if err := c.ReplaceCassette(); err != nil || replaced != 1 || u.CassetteNumber() != 2 || u.Count() != 0 {
		t.Fatalf("replace: %v (hook %d) number %d count %d", err, replaced, u.CassetteNumber(), u.Count())
	}
	if err := c.ReplaceCassette(); !errors.Is(err, errState) {
		t.Fatalf("second replace: %v", err)
	}
	c.SetCassetteFull(true)
	if !u.CassetteFull() {
		t.Fatal("not full")
	}
	c.ForceReject(0x71)
	if u.ForcedReject != 0x71 {
		t.Fatal("forced reject not set")
	}
}

// The switches: a jam in the transport is cleared without counting the note, one in the
// stacker pushes it in; the faults halt the unit and say why it takes no note.
func TestSwitches(t *testing.T) {
	cleared := 0
	u := New(Config{Name: "test", DefaultFailure: 0xA2, OnJamCleared: func() { cleared++ },
		Errors: Errors{Busy: errBusy, Fault: errors.New("fault"), Inhibited: errors.New("inhibited")}})
	sw := u.Switches()
	sw.ClearJam()
	if cleared != 0 {
		t.Fatal("no jam, yet cleared")
	}
	u.Insert(1)
	u.Path.InStacker = true
	sw.Jam(false)
	if !u.Halted() || u.JamName("acceptor", "stacker") != "acceptor" {
		t.Fatal("acceptor jam")
	}
	if err := u.CheckInsert(false, true, false); err == nil || err.Error() != "fault" {
		t.Fatalf("insert while jammed: %v", err)
	}
	sw.ClearJam()
	if cleared != 1 || u.Path != nil || len(u.Cassette()) != 0 {
		t.Fatal("a note taken out of the transport was counted")
	}
	u.Insert(2)
	u.Path.InStacker = true
	sw.Jam(true)
	sw.ClearJam()
	if l := u.Cassette(); len(l) != 1 || l[0].Via != "jam_cleared" {
		t.Fatalf("stacker jam: %+v", l)
	}
	sw.Fail(0)
	sw.Cheat()
	sw.Pause(true)
	if u.Failure != 0xA2 || !u.Cheated || !u.Paused {
		t.Fatalf("switches %+v", u)
	}
	u.ResetFaults()
	if u.Failure != 0 || u.Cheated || !u.Paused {
		t.Fatal("RESET clears failure and cheat, not pause")
	}
	u.PowerFaults()
	if u.Halted() {
		t.Fatal("halted after a power cut")
	}
	if err := u.CheckInsert(false, true, true); err == nil || err.Error() != "inhibited" {
		t.Fatalf("insert while inhibited: %v", err)
	}
	if u.ClearPath(true) {
		t.Fatal("a note cleared from an empty path")
	}
}

func TestPowerCut(t *testing.T) {
	u := newUnit(0)
	if w, err := u.PowerCutPlace(Auto, u.Where()); err != nil || w != NoNote {
		t.Fatalf("empty: %v %v", w, err)
	}
	if _, err := u.PowerCutPlace(InStacker, u.Where()); !errors.Is(err, errNone) {
		t.Fatalf("in stacker without a note: %v", err)
	}
	u.Insert(1)
	if _, err := u.PowerCutPlace(NoNote, u.Where()); !errors.Is(err, errBusy) {
		t.Fatalf("none with a note: %v", err)
	}
	if w, err := u.PowerCutPlace(InStacker, u.Where()); err != nil || w != InStacker || !u.Path.InStacker {
		t.Fatalf("moved to the stacker: %v %v", w, err)
	}
	u.Log("stacked")
	if _, err := u.PowerCutPlace(InAcceptor, u.Where()); !errors.Is(err, errBusy) {
		t.Fatalf("a logged note back in the acceptor: %v", err)
	}
	if _, err := u.PowerCutPlace(Where(9), u.Where()); err == nil {
		t.Fatal("bad place accepted")
	}
	if err := u.PowerCutWithNote(NoNote, 2, false); err == nil {
		t.Fatal("power cut with a note nowhere accepted")
	}
	if err := u.PowerCutWithNote(InAcceptor, 2, true); !errors.Is(err, errBusy) {
		t.Fatalf("power cut with a note over a real one: %v", err)
	}
	if err := u.PowerCutWithNote(InAcceptor, 2, false); err != nil || u.Where() != InAcceptor || u.Path.Code != 2 {
		t.Fatalf("power cut with a note: %v %+v", err, u.Path)
	}
}

// The link answers each frame, applies queued faults in order, leaves a fault it does not
// apply for Take, and paces the port at its line's speed.
func TestLink(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := &Link{Name: "test", Line: linespeed.CCNET, Noise: []byte{0xEE},
			Applies: func(f Fault) bool { return f.Kind != FaultSlow+1 }}
		host, dev := net.Pipe()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		var got []byte
		// One-byte frames: each byte b is answered by b+1; 0 gets no answer.
		go func() {
			done <- l.Serve(ctx, dev, func(b []byte) { got = append(got, b...) }, func() ([]byte, bool) {
				if len(got) == 0 {
					return nil, false
				}
				b := got[0]
				got = got[1:]
				if b == 0 {
					return nil, true
				}
				return []byte{b + 1}, true
			})
		}()
		ask := func(b byte, n int) []byte {
			t.Helper()
			host.Write([]byte{b})
			out := make([]byte, n)
			if _, err := io.ReadFull(host, out); err != nil {
				t.Fatal(err)
			}
			return out
		}
		t0 := time.Now()
		if r := ask(1, 1); r[0] != 2 || time.Since(t0) != linespeed.CCNET.Duration(1)*2 {
			t.Fatalf("reply %v after %v", r, time.Since(t0))
		}
		l.Inject(Fault{Kind: FaultSlow + 1})
		l.Inject(Fault{Kind: FaultGarbage})
		if r := ask(3, 1); r[0] != 4 {
			t.Fatalf("a fault for Take spoiled a reply: %v", r)
		}
		if !l.Take(FaultSlow+1) || l.Take(FaultSlow+1) {
			t.Fatal("Take")
		}
		if r := ask(5, 2); !bytes.Equal(r, []byte{0xEE, 6}) {
			t.Fatalf("garbage fault: % X", r)
		}
		l.Inject(Fault{Kind: FaultBadCRC})
		if r := ask(7, 1); r[0] != 8^0xFF {
			t.Fatalf("bad CRC fault: % X", r)
		}
		l.Inject(Fault{Kind: FaultNoReply})
		host.Write([]byte{9})
		if r := ask(0x10, 1); r[0] != 0x11 {
			t.Fatalf("after a dropped reply: % X", r)
		}
		if l.Pending() != 0 {
			t.Fatalf("%d faults left", l.Pending())
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		host.Close()
	})
}
