package pulsesim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/kioskd/kioskd/devices/acceptor"
)

const ms = time.Millisecond

var notes = acceptor.Denominations{1: {ValueMinor: 1000, Currency: "CNY"}, 5: {ValueMinor: 5000, Currency: "CNY"}}

// tap reads the credit pin's edge queue as a driver would, recording each level with the
// time it arrived, until stop is closed.
func tap(s *Sim, stop <-chan struct{}) <-chan []string {
	out := make(chan []string, 1)
	go func() {
		var got []string
		t0 := time.Now()
		for {
			select {
			case lv := <-s.CreditPin().EdgesChan:
				got = append(got, fmt.Sprintf("%v %v", time.Since(t0), lv))
			case <-stop:
				out <- got
				return
			}
		}
	}()
	return out
}

func enable(s *Sim) { s.InhibitPin().Out(!s.cfg.InhibitLevel) }

func TestInsertNoteWaveform(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New(Config{Notes: notes, InhibitLevel: gpio.High, Transit: 500 * ms})
		if s.CreditPin().Read() != gpio.High {
			t.Fatal("an active-low line must idle high")
		}
		enable(s)
		stop := make(chan struct{})
		got := tap(s, stop)
		synctest.Wait()
		if err := s.InsertNoteWith(context.Background(), 3, Shape{Width: 40 * ms, Gap: 60 * ms}); err != nil {
			t.Fatal(err)
		}
		close(stop)
		want := "500ms Low,540ms High,600ms Low,640ms High,700ms Low,740ms High"
		if g := strings.Join(<-got, ","); g != want {
			t.Fatalf("edges %s, want %s", g, want)
		}
		c := s.Cassette()
		if len(c) != 1 || c[0].Pulses != 3 || c[0].Emitted != 3 || !c[0].Complete || c[0].ValueMinor != 0 {
			t.Fatalf("cassette %+v (3 pulses is no note of the table: value 0)", c)
		}
	})
}

func TestInhibitedUnitRefusesNotes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New(Config{Notes: notes, InhibitLevel: gpio.Low})
		if !s.Inhibited() {
			t.Fatal("a new unit must be inhibited until the host drives its input")
		}
		if err := s.InsertNote(1); !errors.Is(err, ErrInhibited) {
			t.Fatalf("InsertNote while inhibited: %v", err)
		}
		if len(s.Cassette()) != 0 || s.State().RefusedNotes != 1 || s.State().EdgesSent != 0 {
			t.Fatalf("state %+v", s.State())
		}
		s.SetIgnoreInhibit(true)
		if err := s.InsertNote(5); err != nil {
			t.Fatal(err)
		}
		if c := s.Cassette(); len(c) != 1 || !c[0].WhileInhibited || c[0].ValueMinor != 5000 {
			t.Fatalf("cassette %+v", c)
		}
	})
}

func TestOneWaveformAtATime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New(Config{Notes: notes, InhibitLevel: gpio.High})
		enable(s)
		done := make(chan error, 1)
		go func() { done <- s.InsertNote(5) }()
		synctest.Wait()
		if !s.State().Busy {
			t.Fatal("not busy during a train")
		}
		if err := s.InsertNote(1); !errors.Is(err, ErrBusy) {
			t.Errorf("second InsertNote: %v", err)
		}
		if err := s.Noise(ms); !errors.Is(err, ErrBusy) {
			t.Errorf("Noise during a train: %v", err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

func TestCutTrainStaysInTheCassette(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New(Config{Notes: notes, InhibitLevel: gpio.High, Transit: -1})
		enable(s)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.InsertNoteWith(ctx, 5, Shape{Width: 50 * ms, Gap: 100 * ms}) }()
		time.Sleep(250 * ms) // bubble time: two pulses out, in the gap before the third
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("InsertNoteWith: %v", err)
		}
		c := s.Cassette()
		if len(c) != 1 || c[0].Complete || c[0].Emitted != 2 || c[0].ValueMinor != 5000 {
			t.Fatalf("cassette %+v", c)
		}
		if s.CreditPin().Read() != gpio.High || s.State().CreditActive {
			t.Error("line left active after a cut train")
		}
	})
}

func TestNoiseAndStuckLine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New(Config{ActiveLevel: gpio.High})
		stop := make(chan struct{})
		got := tap(s, stop)
		synctest.Wait()
		if err := s.Noise(2*ms, 3*ms); err != nil {
			t.Fatal(err)
		}
		if err := s.StuckLine(time.Second); err != nil {
			t.Fatal(err)
		}
		close(stop)
		want := "0s High,2ms Low,4ms High,7ms Low,10ms High,1.01s Low"
		if g := strings.Join(<-got, ","); g != want {
			t.Fatalf("edges %s, want %s", g, want)
		}
		if len(s.Cassette()) != 0 {
			t.Error("noise counted as a note")
		}
		for _, err := range []error{s.Noise(0), s.StuckLine(0), s.InsertNote(0),
			s.InsertNoteWith(context.Background(), 1, Shape{Width: ms}),
			s.InsertNoteWith(context.Background(), 1, Shape{Width: ms, Gap: ms, Bounce: 1})} {
			if !errors.Is(err, ErrBadArg) {
				t.Errorf("bad argument accepted: %v", err)
			}
		}
	})
}

// With nobody reading the queue the edges beyond its size are dropped, and the line's level
// is still right for a reader that starts afterwards.
func TestUnreadLineKeepsItsLevel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New(Config{InhibitLevel: gpio.High, Transit: -1})
		enable(s)
		if err := s.InsertNoteWith(context.Background(), 200, Shape{Width: ms, Gap: ms}); err != nil {
			t.Fatal(err)
		}
		if err := s.Waveform(context.Background(), Step{Active: true, For: ms}); err != nil {
			t.Fatal(err)
		}
		st := s.State()
		if st.DroppedEdges != 402-edgeBuffer || st.QueuedEdges != edgeBuffer {
			t.Fatalf("state %+v", st)
		}
		if s.CreditPin().Read() != gpio.High {
			t.Fatal("idle line reads active")
		}
	})
}

func TestStateIsJSON(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New(Config{Notes: notes, InhibitLevel: gpio.High, Transit: -1})
		enable(s)
		if err := s.InsertNote(5); err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(s.State())
		if err != nil {
			t.Fatal(err)
		}
		want := `{"credit_active":false,"inhibited":false,"busy":false,"cassette_count":1,"cassette_value_minor":5000,"currency":"CNY","refused_notes":0,"edges_sent":10,"queued_edges":10,"last_train_pulses":5}`
		if string(b) != want {
			t.Fatalf("state %s\nwant  %s", b, want)
		}
	})
}
