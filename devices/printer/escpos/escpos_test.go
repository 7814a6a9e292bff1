package escpos_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kioskd/kioskd/devices/printer/escpos"
	"github.com/kioskd/kioskd/hw-sim/escpossim"
)

// rig is a printer driver wired to the emulator over net.Pipe.
type rig struct {
	sim  *escpossim.Sim
	host net.Conn
	p    *escpos.Printer
}

func newRig(t *testing.T, cfg escpos.Config) *rig {
	t.Helper()
	host, dev := net.Pipe()
	sim := escpossim.New(escpossim.Config{})
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
	return &rig{sim: sim, host: host, p: escpos.New(host, cfg)}
}

func TestStatusFromEmulator(t *testing.T) {
	cases := []struct {
		name    string
		set     func(s *escpossim.Sim)
		raw     [4]byte
		want    error
		reasons string
	}{
		{"idle", func(*escpossim.Sim) {}, [4]byte{0x12, 0x12, 0x12, 0x12}, nil, ""},
		{"near end", func(s *escpossim.Sim) { s.SetNearEnd(true) }, [4]byte{0x12, 0x12, 0x12, 0x1e}, nil, "paper near end"},
		{"paper out", func(s *escpossim.Sim) { s.SetPaperOut(true) }, [4]byte{0x1a, 0x32, 0x12, 0x7e}, escpos.ErrPaperOut, "offline, paper end, stopped by paper end, paper near end"},
		{"cover open", func(s *escpossim.Sim) { s.SetCoverOpen(true) }, [4]byte{0x1a, 0x16, 0x12, 0x12}, escpos.ErrCoverOpen, "offline, cover open"},
		{"cutter", func(s *escpossim.Sim) { s.SetCutterError(true) }, [4]byte{0x3a, 0x52, 0x1a, 0x12}, escpos.ErrCutter, "offline, cutter error, waiting for online recovery"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, escpos.Config{})
			c.set(r.sim)
			st, err := r.p.Status(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if st.Raw != c.raw {
				t.Errorf("raw = % x, want % x", st.Raw, c.raw)
			}
			if !errors.Is(st.Err(), c.want) || (c.want == nil) != st.Ready() {
				t.Errorf("Err = %v, Ready = %v, want %v", st.Err(), st.Ready(), c.want)
			}
			if got := strings.Join(st.Reasons(), ", "); got != c.reasons {
				t.Errorf("reasons = %q, want %q", got, c.reasons)
			}
			if last, ok := r.p.LastStatus(); !ok || last.Raw != st.Raw {
				t.Errorf("LastStatus = %v %v", last, ok)
			}
		})
	}
}

func TestDecodeStatus(t *testing.T) {
	st, err := escpos.DecodeStatus([4]byte{0x12, 0x12, 0x72, 0x12})
	if err != nil {
		t.Fatal(err)
	}
	if !st.Unrecoverable || !st.AutoRecoverable || !errors.Is(st.Err(), escpos.ErrUnrecoverable) {
		t.Errorf("n=3 bits 5,6: %+v", st)
	}
	if !strings.HasPrefix(st.String(), "not ready: unrecoverable error") {
		t.Errorf("String = %q", st.String())
	}
	for _, bad := range [][4]byte{{0, 0x12, 0x12, 0x12}, {0x12, 0x13, 0x12, 0x12}, {0x12, 0x12, 0x92, 0x12}, {0x12, 0x12, 0x12, 0x10}} {
		if _, err := escpos.DecodeStatus(bad); !errors.Is(err, escpos.ErrBadReply) {
			t.Errorf("% x: err = %v", bad, err)
		}
	}
	if s := (escpos.Status{Online: true}).String(); s != "ready [00 00 00 00]" {
		t.Errorf("String = %q", s)
	}
}

func TestPrint(t *testing.T) {
	r := newRig(t, escpos.Config{ChunkSize: 7})
	doc := []byte("\x1b@hello\nworld\n\x1dV\x42\x00")
	if err := r.p.Print(context.Background(), doc); err != nil {
		t.Fatal(err)
	}
	docs := r.sim.Documents()
	if len(docs) != 1 || docs[0].Text != "hello\nworld" || !docs[0].Cut {
		t.Fatalf("documents = %+v", docs)
	}
	// Four status requests before and four after, and nothing else.
	if st := r.sim.State(); st.StatusReqs != 8 || st.BytesIn != int64(len(doc)+8*3) {
		t.Errorf("state = %+v", st)
	}
}

func TestPrintRefusedWhenNotReady(t *testing.T) {
	for _, c := range []struct {
		set  func(*escpossim.Sim)
		want error
	}{
		{func(s *escpossim.Sim) { s.SetPaperOut(true) }, escpos.ErrPaperOut},
		{func(s *escpossim.Sim) { s.SetCoverOpen(true) }, escpos.ErrCoverOpen},
		{func(s *escpossim.Sim) { s.SetCutterError(true) }, escpos.ErrCutter},
	} {
		r := newRig(t, escpos.Config{})
		c.set(r.sim)
		err := r.p.Print(context.Background(), []byte("receipt\n\x1dV\x42\x00"))
		var pe *escpos.PrintError
		if !errors.As(err, &pe) || pe.Stage != escpos.StageBefore || pe.Written != 0 || !errors.Is(err, c.want) {
			t.Errorf("err = %v, want a StageBefore PrintError wrapping %v", err, c.want)
		}
		if docs := r.sim.Documents(); len(docs) != 0 {
			t.Errorf("a refused print reached the printer: %+v", docs)
		}
	}
}

// flipPort runs a hook once a number of bytes has been written through it: the paper runs
// out in the middle of a receipt.
type flipPort struct {
	net.Conn
	after int
	hook  func()
	n     int
	once  sync.Once
}

func (f *flipPort) Write(b []byte) (int, error) {
	n, err := f.Conn.Write(b)
	f.n += n
	if f.n >= f.after {
		f.once.Do(f.hook)
	}
	return n, err
}

func TestPaperRunsOutWhilePrinting(t *testing.T) {
	r := newRig(t, escpos.Config{ChunkSize: 8})
	port := &flipPort{Conn: r.host, after: 3*4 + 16, hook: func() { r.sim.SetPaperOut(true) }}
	p := escpos.New(port, escpos.Config{ChunkSize: 8})
	data := []byte("\x1b@first line\nsecond line\nthird line\n\x1dV\x42\x00")
	err := p.Print(context.Background(), data)
	var pe *escpos.PrintError
	if !errors.As(err, &pe) || pe.Stage != escpos.StageAfter || pe.Written != len(data) || !errors.Is(err, escpos.ErrPaperOut) {
		t.Fatalf("err = %v, want StageAfter paper out with all bytes written", err)
	}
	if !pe.Status.PaperEnd {
		t.Errorf("status in error = %v", pe.Status)
	}
	docs := r.sim.Documents()
	if len(docs) != 1 || !docs[0].Incomplete || docs[0].Cut || strings.Contains(docs[0].Text, "third") {
		t.Errorf("documents = %+v", docs)
	}
}

// silentPrinter reads what the host sends and never answers.
func silentPrinter(dev net.Conn) { io.Copy(io.Discard, dev) }

func TestReplyTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		host, dev := net.Pipe()
		defer dev.Close()
		defer host.Close()
		go silentPrinter(dev)
		p := escpos.New(host, escpos.Config{ReplyTimeout: 300 * time.Millisecond})
		start := time.Now()
		_, err := p.Status(context.Background())
		if !errors.Is(err, escpos.ErrTimeout) {
			t.Fatalf("err = %v, want ErrTimeout", err)
		}
		if d := time.Since(start); d != 300*time.Millisecond {
			t.Errorf("gave up after %v, want the reply timeout", d)
		}
		err = p.Print(context.Background(), []byte("x\n"))
		var pe *escpos.PrintError
		if !errors.As(err, &pe) || pe.Stage != escpos.StageBefore || !errors.Is(err, escpos.ErrTimeout) {
			t.Errorf("Print on a silent printer: %v", err)
		}
	})
}

// TestLateReplyIsNotMisattributed: a reply that arrives after the timeout must be drained,
// not read as the answer to the next request.
func TestLateReplyIsNotMisattributed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		host, dev := net.Pipe()
		defer dev.Close()
		defer host.Close()
		late := make(chan struct{})
		go func() {
			buf := make([]byte, 3)
			io.ReadFull(dev, buf)
			time.Sleep(time.Second) // answers long after the driver gave up
			dev.Write([]byte{0x1a}) // "offline": stale by the time it arrives
			close(late)
			for {
				if _, err := io.ReadFull(dev, buf); err != nil {
					return
				}
				dev.Write([]byte{0x12})
			}
		}()
		p := escpos.New(host, escpos.Config{ReplyTimeout: 100 * time.Millisecond})
		if _, err := p.Status(context.Background()); !errors.Is(err, escpos.ErrTimeout) {
			t.Fatalf("first status: %v", err)
		}
		time.Sleep(time.Second) // the stale byte is now on the wire: the driver must drain it
		st, err := p.Status(context.Background())
		<-late
		if err != nil || !st.Ready() || st.Raw != [4]byte{0x12, 0x12, 0x12, 0x12} {
			t.Fatalf("second status = %v, %v: the late reply was taken as current", st, err)
		}
	})
}

func TestBadReply(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		host, dev := net.Pipe()
		defer dev.Close()
		defer host.Close()
		go func() {
			buf := make([]byte, 3)
			for {
				if _, err := io.ReadFull(dev, buf); err != nil {
					return
				}
				dev.Write([]byte{0x00}) // not a status byte
			}
		}()
		p := escpos.New(host, escpos.Config{})
		if _, err := p.Status(context.Background()); !errors.Is(err, escpos.ErrBadReply) {
			t.Fatalf("err = %v, want ErrBadReply", err)
		}
	})
}

func TestCancelWhileWaiting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		host, dev := net.Pipe()
		defer dev.Close()
		defer host.Close()
		go silentPrinter(dev)
		p := escpos.New(host, escpos.Config{ReplyTimeout: time.Hour})
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start := time.Now()
		_, err := p.Status(ctx)
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != time.Second {
			t.Fatalf("err = %v after %v", err, time.Since(start))
		}
	})
}

// plainPort hides deadlines (like io.Pipe or a serial port without a read timeout) and, when
// zeros is set, returns (0, nil) between reads as a serial port with a read timeout does.
type plainPort struct {
	r     io.Reader
	w     io.Writer
	zeros bool
	mu    sync.Mutex
	flip  bool
}

func (p *plainPort) Read(b []byte) (int, error) {
	if p.zeros {
		p.mu.Lock()
		p.flip = !p.flip
		z := p.flip
		p.mu.Unlock()
		if z {
			time.Sleep(10 * time.Millisecond) // the port's own read timeout, in fake time
			return 0, nil
		}
	}
	return p.r.Read(b)
}

func (p *plainPort) Write(b []byte) (int, error) { return p.w.Write(b) }

func TestPortWithoutDeadlines(t *testing.T) {
	for _, zeros := range []bool{false, true} {
		synctest.Test(t, func(t *testing.T) {
			hostR, simW := io.Pipe()
			simR, hostW := io.Pipe()
			sim := escpossim.New(escpossim.Config{})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				done <- sim.Serve(ctx, struct {
					io.Reader
					io.Writer
				}{simR, simW})
			}()
			defer func() {
				cancel()
				simR.Close() // io.Pipe has no deadlines: closing is how Serve's read is released
				simW.Close()
				<-done
				hostR.Close()
			}()
			p := escpos.New(&plainPort{r: hostR, w: hostW, zeros: zeros}, escpos.Config{ReplyTimeout: 200 * time.Millisecond})
			if err := p.Print(context.Background(), []byte("plain\n\x1dV\x42\x00")); err != nil {
				t.Fatal(err)
			}
			if docs := sim.Documents(); len(docs) != 1 || docs[0].Text != "plain" {
				t.Fatalf("documents = %+v", docs)
			}
			// Now a printer that stops answering: the helper read outlives the timeout.
			sim.SetPaperOut(true)
			if st, err := p.Status(context.Background()); err != nil || !errors.Is(st.Err(), escpos.ErrPaperOut) {
				t.Fatalf("status = %v, %v", st, err)
			}
		})
	}
}

func TestPortWithoutDeadlinesTimesOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hostR, devW := io.Pipe()
		devR, hostW := io.Pipe()
		go io.Copy(io.Discard, devR) // a printer that reads and never answers
		p := escpos.New(&plainPort{r: hostR, w: hostW}, escpos.Config{ReplyTimeout: 250 * time.Millisecond})
		start := time.Now()
		if _, err := p.Status(context.Background()); !errors.Is(err, escpos.ErrTimeout) {
			t.Fatalf("err = %v", err)
		}
		if d := time.Since(start); d != 250*time.Millisecond {
			t.Errorf("timed out after %v", d)
		}
		// The owner closes the port: that ends the helper read still pending.
		hostR.Close()
		devW.Close()
		devR.Close()
		hostW.Close()
	})
}

func TestDialectSeam(t *testing.T) {
	r := newRig(t, escpos.Config{})
	var asked []byte
	p := escpos.New(r.host, escpos.Config{Profile: escpos.Profile{
		Name: "test-dialect",
		Extra: func(ctx context.Context, q escpos.Querier, s *escpos.Status) error {
			b, err := q.Query(ctx, []byte{0x10, 0x04, 4}, 1) // any command the dialect has
			asked = b
			s.Extra = append(s.Extra, escpos.Condition{Name: "ticket not taken", Blocking: true})
			return err
		},
	}})
	st, err := p.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(asked, []byte{0x12}) || st.Ready() || !errors.Is(st.Err(), escpos.ErrNotReady) {
		t.Errorf("asked %x, status %v", asked, st)
	}
}

// TestCutCount reads the autocutter counter before and after receipts: it moves by one per
// cut receipt, and not at all when the printer was stopped (paper out).
func TestCutCount(t *testing.T) {
	r := newRig(t, escpos.Config{})
	ctx := context.Background()
	n0, err := r.p.CutCount(ctx)
	if err != nil || n0 != 0 {
		t.Fatalf("fresh counter %d %v", n0, err)
	}
	doc := append([]byte("\x1b@hello\n"), 0x1D, 'V', 66, 0)
	for range 3 {
		if err := r.p.Print(ctx, doc); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := r.p.CutCount(ctx); err != nil || n != 3 {
		t.Fatalf("after three receipts %d %v", n, err)
	}
	// A stopped printer cuts nothing: the count stays.
	r.sim.SetPaperOut(true)
	before := r.sim.State().BytesIn
	r.host.Write(doc) // straight to the port: the driver would refuse to print
	deadline := time.Now().Add(10 * time.Second)
	for r.sim.State().BytesIn < before+int64(len(doc)) {
		if time.Now().After(deadline) {
			t.Fatal("emulator never consumed the receipt")
		}
		runtime.Gosched()
	}
	r.sim.SetPaperOut(false)
	if n, err := r.p.CutCount(ctx); err != nil || n != 3 {
		t.Fatalf("after a discarded receipt %d %v", n, err)
	}
	// Status still works after a counter query (no stale bytes).
	if _, err := r.p.Status(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestNearEndIsItsOwnCondition: the emulator's near-end sensor comes back through DLE EOT 4
// as a staff condition of its own that does not stop printing; with the paper out, the
// blocking paper-out condition is reported instead.
func TestNearEndIsItsOwnCondition(t *testing.T) {
	r := newRig(t, escpos.Config{})
	r.sim.SetNearEnd(true)
	st, err := r.p.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []escpos.StatusCondition{{Kind: escpos.KindPaperNearEnd, Staff: true}}
	if got := st.Conditions(); !st.NearEnd() || !st.Ready() || len(got) != 1 || got[0] != want[0] {
		t.Errorf("near end: NearEnd %v Ready %v Conditions %+v", st.NearEnd(), st.Ready(), got)
	}
	r.sim.SetPaperOut(true)
	if st, err = r.p.Status(context.Background()); err != nil {
		t.Fatal(err)
	}
	want = []escpos.StatusCondition{{Kind: escpos.KindPaperOut, Blocking: true, Staff: true}}
	if got := st.Conditions(); st.NearEnd() || len(got) != 1 || got[0] != want[0] {
		t.Errorf("paper out: NearEnd %v Conditions %+v", st.NearEnd(), got)
	}
	r.sim.SetPaperOut(false)
	r.sim.SetNearEnd(false)
	r.sim.SetCoverOpen(true)
	if st, err = r.p.Status(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := st.Conditions(); len(got) != 1 || got[0].Kind != escpos.KindCoverOpen || !got[0].Staff {
		t.Errorf("cover open: %+v", got)
	}
}
