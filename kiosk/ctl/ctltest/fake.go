// Package ctltest is a fake kioskd behind a real control socket, for the tests of the
// control API's clients.
package ctltest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kioskd/kioskd/kiosk/ctl"
	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/kiosk/session"
)

// Fake is a ctl.Backend with canned state: set its fields before Serve, and use its
// methods while it serves. Maintenance on waits (when asked to) until
// Release is called, like a kiosk with a customer in session.
type Fake struct {
	mu         sync.Mutex
	St         ctl.Status
	Conds      []health.Condition
	Cassette   ctl.Counters
	Pending    []journal.Topup
	Uncertains []journal.Uncertain
	Receipts   map[uint64]ctl.Receipt
	Reprinted  []uint64
	ReprintErr error
	Events     []journal.Record
	VerifyErr  error
	Config     any
	Busy       bool // a customer is in session: maintenance on waits
	// Tests are the canned self-test results by device; a device without one is
	// ErrUnsupported.
	Tests map[string]ctl.SelfTest
	// SignedOff records the sign-offs as "condition|who|why"; a sign-off of a condition
	// not in Conds is session.ErrNothingToSignOff.
	SignedOff   []string
	release     chan struct{} // closed by Release
	maintenance bool
	// Collects are the collect_* commands received (ctl.Collector).
	Collects []session.Command
}

// Collect records a collect command and answers the fake's status (ctl.Collector).
func (f *Fake) Collect(ctx context.Context, cmd session.Command) (session.Reply, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Collects = append(f.Collects, cmd)
	return session.Reply{Progress: session.ProgressDone, Status: f.St.Engine}, nil
}

// CollectCommands returns the collect commands received so far.
func (f *Fake) CollectCommands() []session.Command {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]session.Command(nil), f.Collects...)
}

// NewFake returns a fake kiosk in idle.
func NewFake() *Fake {
	return &Fake{St: ctl.Status{KioskID: "K-FAKE", Version: "test", BootID: "b00t", Uptime: "1m0s", Engine: session.Status{State: "idle"}},
		Receipts: map[uint64]ctl.Receipt{}, release: make(chan struct{})}
}

// SetVerifyErr makes the next verifications fail with err.
func (f *Fake) SetVerifyErr(err error) {
	f.mu.Lock()
	f.VerifyErr = err
	f.mu.Unlock()
}

// SetReprintErr makes the next reprints fail with err.
func (f *Fake) SetReprintErr(err error) {
	f.mu.Lock()
	f.ReprintErr = err
	f.mu.Unlock()
}

// Reprints returns the receipt numbers reprinted so far.
func (f *Fake) Reprints() []uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]uint64(nil), f.Reprinted...)
}

// Release lets a waiting maintenance request finish (the customer finished).
func (f *Fake) Release() { close(f.release) }

func (f *Fake) Status(ctx context.Context) (ctl.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.St
	st.Engine.Maintenance = f.maintenance
	if f.maintenance {
		st.Engine.State = "maintenance"
	}
	return st, nil
}

func (f *Fake) Devices(ctx context.Context) ([]ctl.Device, error) {
	return []ctl.Device{{Name: "acceptor", State: "ok"}, {Name: "printer", State: "ok"}, {Name: "scanner", State: "not configured"}}, nil
}

func (f *Fake) Conditions() []health.Condition {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]health.Condition(nil), f.Conds...)
}

func (f *Fake) Counters() (ctl.Counters, error) { return f.Cassette, nil }

func (f *Fake) Outbox() ([]journal.Topup, error) { return f.Pending, nil }

func (f *Fake) Uncertain() ([]journal.Uncertain, error) { return f.Uncertains, nil }

func (f *Fake) Receipt(no uint64) (ctl.Receipt, bool, error) {
	r, ok := f.Receipts[no]
	return r, ok, nil
}

func (f *Fake) Verify() (journal.VerifyReport, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.VerifyErr != nil {
		return journal.VerifyReport{}, f.VerifyErr
	}
	return journal.VerifyReport{Events: uint64(len(f.Events)), Head: "abcd"}, nil
}

func (f *Fake) Export(w io.Writer) error {
	enc := json.NewEncoder(w)
	for _, r := range f.Events {
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	return nil
}

func (f *Fake) Maintenance(ctx context.Context, on, wait bool) (session.Reply, error) {
	f.mu.Lock()
	busy := f.Busy
	f.mu.Unlock()
	if !on {
		f.mu.Lock()
		f.maintenance = false
		f.mu.Unlock()
		return session.Reply{Progress: session.ProgressDone, Status: session.Status{State: "idle"}}, nil
	}
	if busy {
		if !wait {
			return session.Reply{Progress: session.ProgressWaitingIdle, Status: session.Status{State: "accepting", Waiting: true}}, nil
		}
		select {
		case <-f.release:
		case <-ctx.Done():
			return session.Reply{Progress: session.ProgressWaitingIdle}, ctx.Err()
		}
	}
	f.mu.Lock()
	f.maintenance = true
	f.mu.Unlock()
	return session.Reply{Progress: session.ProgressDone, Status: session.Status{State: "maintenance", Maintenance: true}}, nil
}

func (f *Fake) Reprint(ctx context.Context, no uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ReprintErr != nil {
		return f.ReprintErr
	}
	f.Reprinted = append(f.Reprinted, no)
	return nil
}

func (f *Fake) Diag(ctx context.Context) (ctl.Diag, error) {
	st, _ := f.Status(ctx)
	d, _ := f.Devices(ctx)
	cfg, err := ctl.RedactConfig(f.Config)
	return ctl.Diag{At: time.Now().UTC(), Versions: map[string]string{"kioskd": "test"}, Status: st, Devices: d, Conds: f.Conds, Config: cfg}, err
}

func (f *Fake) PrinterSelfTest(ctx context.Context) (ctl.PrinterTest, error) {
	return ctl.PrinterTest{}, fmt.Errorf("fake: %w", ctl.ErrUnsupported)
}

func (f *Fake) SelfTest(ctx context.Context, device string) (ctl.SelfTest, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.Tests[device]
	if !ok {
		return ctl.SelfTest{}, fmt.Errorf("fake %s: %w", device, ctl.ErrUnsupported)
	}
	return r, nil
}

func (f *Fake) SignOff(ctx context.Context, condition, who, why string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, c := range f.Conds {
		if c.Kind == condition {
			f.Conds = append(f.Conds[:i:i], f.Conds[i+1:]...)
			f.SignedOff = append(f.SignedOff, condition+"|"+who+"|"+why)
			return nil
		}
	}
	return fmt.Errorf("%w: %s", session.ErrNothingToSignOff, condition)
}

// ShortDir is a temporary directory with a path short enough for a UNIX socket (at most
// 108 bytes on Linux; a test's TempDir can be longer).
func ShortDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "kctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// Serve serves b on a socket in a new directory with the policy p and returns the socket's
// path; the server stops when the test ends.
func Serve(t testing.TB, b ctl.Backend, p ctl.Policy) string {
	t.Helper()
	path := filepath.Join(ShortDir(t), "kioskd.sock")
	ln, err := ctl.Listen(path, p)
	if err != nil {
		t.Fatal(err)
	}
	srv := ctl.NewServer(b, p, nil)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("control server shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("control server: %v", err)
		}
	})
	return path
}

// Self is the policy that serves this process's user only.
func Self() ctl.Policy {
	return ctl.Policy{SelfUID: uint32(os.Getuid()), Group: "nogroup-test", GID: -1}
}
