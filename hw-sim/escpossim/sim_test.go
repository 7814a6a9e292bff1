package escpossim_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kioskd/kioskd/hw-sim/escpossim"
	"github.com/kioskd/kioskd/hw-sim/linespeed"
)

func serve(t *testing.T, sim *escpossim.Sim) net.Conn {
	t.Helper()
	host, dev := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sim.Serve(ctx, dev) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		host.Close()
		dev.Close()
	})
	return host
}

func ask(t *testing.T, c net.Conn, n byte) byte {
	t.Helper()
	if _, err := c.Write([]byte{0x10, 0x04, n}); err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		t.Fatal(err)
	}
	return b[0]
}

func TestStatusReplies(t *testing.T) {
	sim := escpossim.New(escpossim.Config{})
	c := serve(t, sim)
	check := func(what string, want [4]byte) {
		t.Helper()
		for i := range 4 {
			if got := ask(t, c, byte(i+1)); got != want[i] {
				t.Errorf("%s: DLE EOT %d = %#02x, want %#02x", what, i+1, got, want[i])
			}
		}
		if st := sim.State(); st.Status != want {
			t.Errorf("%s: State().Status = % x", what, st.Status)
		}
	}
	check("idle", [4]byte{0x12, 0x12, 0x12, 0x12})
	sim.SetNearEnd(true)
	check("near end", [4]byte{0x12, 0x12, 0x12, 0x1e})
	sim.SetPaperOut(true)
	check("paper out", [4]byte{0x1a, 0x32, 0x12, 0x7e})
	sim.SetPaperOut(false)
	sim.SetNearEnd(false)
	sim.SetCoverOpen(true)
	check("cover open", [4]byte{0x1a, 0x16, 0x12, 0x12})
	sim.SetCoverOpen(false)
	sim.SetCutterError(true)
	check("cutter", [4]byte{0x3a, 0x52, 0x1a, 0x12})
	sim.Reset()
	check("after reset", [4]byte{0x12, 0x12, 0x12, 0x12})
	// A status request in the middle of a document is answered at once and does not print.
	c.Write([]byte("half"))
	if got := ask(t, c, 1); got != 0x12 {
		t.Errorf("mid-line status = %#x", got)
	}
	c.Write([]byte(" line\n\x1dV\x42\x00"))
	ask(t, c, 1) // everything before it has been consumed
	if docs := sim.Documents(); len(docs) != 1 || docs[0].Text != "half line" || !docs[0].Cut {
		t.Errorf("documents = %+v", docs)
	}
}

func TestPaperOutDiscards(t *testing.T) {
	sim := escpossim.New(escpossim.Config{})
	c := serve(t, sim)
	c.Write([]byte("\x1b@printed\n"))
	ask(t, c, 1) // the reply comes after everything before it was decoded
	sim.SetPaperOut(true)
	c.Write([]byte("lost\n\x1d(k\x06\x001P0abc\x1d(k\x03\x001Q0\x1dV\x42\x00"))
	ask(t, c, 1)
	sim.SetPaperOut(false)
	c.Write([]byte("next\n\x1dV\x42\x00"))
	ask(t, c, 1)
	docs := sim.Documents()
	if len(docs) != 2 {
		t.Fatalf("documents = %+v", docs)
	}
	if d := docs[0]; d.Text != "printed" || d.Cut || !d.Incomplete || len(d.QR) != 0 {
		t.Errorf("interrupted document = %+v", d)
	}
	if d := docs[1]; d.Text != "next" || !d.Cut || d.Incomplete {
		t.Errorf("next document = %+v", d)
	}
	st := sim.State()
	if st.Documents != 2 || !st.Online {
		t.Errorf("state = %+v", st)
	}
	if _, err := json.Marshal(st); err != nil {
		t.Fatal(err)
	}
}

func TestMaxDocuments(t *testing.T) {
	sim := escpossim.New(escpossim.Config{MaxDocuments: 3})
	c := serve(t, sim)
	for _, s := range []string{"1", "2", "3", "4", "5"} {
		c.Write([]byte(s + "\n\x1dV\x00"))
	}
	ask(t, c, 1)
	docs := sim.Documents()
	if len(docs) != 3 || docs[0].Text != "3" || docs[2].Text != "5" {
		t.Errorf("documents = %+v", docs)
	}
}

func TestDocumentTimes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := escpossim.New(escpossim.Config{})
		c := serve(t, sim)
		start := time.Now()
		c.Write([]byte("a\n"))
		time.Sleep(time.Second)
		c.Write([]byte("\x1dV\x00"))
		ask(t, c, 1)
		d := sim.Documents()[0]
		if !d.Started.Equal(start) || d.Ended.Sub(d.Started) != time.Second {
			t.Errorf("started %v ended %v", d.Started, d.Ended)
		}
	})
}

// TestHostStopsReading: the reply write is bounded, so a host that never reads cannot wedge
// the emulator.
func TestHostStopsReading(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := escpossim.New(escpossim.Config{ReplyTimeout: time.Second})
		host, dev := net.Pipe()
		defer host.Close()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- sim.Serve(ctx, dev) }()
		host.Write([]byte{0x10, 0x04, 1})
		host.Write([]byte("still served\n")) // accepted once the unread reply was dropped
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if docs := sim.Documents(); len(docs) != 1 || docs[0].Text != "still served" {
			t.Errorf("documents = %+v", docs)
		}
	})
}

// TestLineSpeedReceipt: at 9600 8N1 a 1,000-byte receipt is cut no sooner than its 1,000th
// character is through the line (1.04 s), and a status request written right behind it is
// answered only after that.
func TestLineSpeedReceipt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		line := linespeed.Printer
		sim := escpossim.New(escpossim.Config{Line: line})
		c := serve(t, sim)
		doc := []byte("\x1b@")
		for len(doc) < 1000-4 {
			doc = append(doc, "RECEIPT LINE 0123456789\n"...)
		}
		doc = append(doc[:1000-4], '\n', 0x1d, 'V', 0) // ... and the full cut
		if len(doc) != 1000 {
			t.Fatalf("document of %d bytes", len(doc))
		}
		t0 := time.Now()
		if _, err := c.Write(append(doc, 0x10, 0x04, 1)); err != nil {
			t.Fatal(err)
		}
		cut := func() bool {
			d := sim.Documents()
			return len(d) == 1 && d[0].Cut
		}
		time.Sleep(line.Duration(len(doc)) - time.Since(t0) - time.Nanosecond)
		synctest.Wait()
		if cut() {
			t.Fatalf("receipt cut after %v, before its last byte was through the line", time.Since(t0))
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if !cut() {
			t.Fatalf("receipt not cut after %v", time.Since(t0))
		}
		var b [1]byte
		if _, err := io.ReadFull(c, b[:]); err != nil {
			t.Fatal(err)
		}
		if got, want := time.Since(t0), line.Duration(len(doc)+3)+line.Duration(1); got != want || b[0] != 0x12 {
			t.Fatalf("status %#02x after %v, want 0x12 after %v", b[0], got, want)
		}
	})
}
