// Package simrig puts a whole simulated kiosk's hardware on pseudo-terminals: a bill
// acceptor emulator, an ESC/POS receipt printer and a QR scanner, each behind its own pty,
// plus a control API on loopback HTTP and a small web panel for people. The daemon opens the
// pty paths with its real serial code.
//
// It is a library (used in-process by the demo and the end-to-end tests, which need the Go
// API) and the body of cmd/hw-sim, which prints one JSON line naming the ptys and the control
// URL once everything is ready.
//
// It also holds the simulator's side of the acceptor driver table (Protocols): per protocol
// of devices/acceptor/registry, its emulator, its demo notes, and the hooks the conformance
// suite and the benchmark table use. A test keeps the two tables' names identical.
package simrig

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/hw-sim/escpossim"
	"github.com/kioskd/kioskd/hw-sim/hidsim"
	"github.com/kioskd/kioskd/hw-sim/linespeed"
	"github.com/kioskd/kioskd/hw-sim/ptypair"
	"github.com/kioskd/kioskd/hw-sim/scannersim"
)

// Config describes the simulated hardware.
type Config struct {
	// Acceptor names the acceptor protocol, a name of Protocols() (default "id003").
	Acceptor string
	// Denominations the acceptor knows, by protocol code.
	Denominations acceptor.Denominations
	// EscrowTimeout of the acceptor (0: the emulator's default).
	EscrowTimeout time.Duration
	// SSPFixedKey is the eSSP fixed key of the simulated ITL unit.
	SSPFixedKey uint64
	// Wallet, when set, lets the control API scan validly signed demo wallet codes.
	WalletKey ed25519.PrivateKey
	WalletKID string
	// LineSpeed paces the emulators at their serial lines' speed (see LineSpeed); it can be
	// switched later with SetLineSpeed or the control API.
	LineSpeed LineSpeed
	// Listen is the control API address (default 127.0.0.1:0).
	Listen string
	// HIDScanner also emulates a USB HID (keyboard-wedge) scanner: a virtual keyboard made
	// through /dev/uinput (Linux, root or group input), to which scans then go instead of the
	// serial scanner; Ready names its event device for kioskd's scanner.hid.device.
	HIDScanner bool
	Logger     *slog.Logger
	Now        func() time.Time
}

// defaultAcceptor is the protocol of a rig whose Config names none.
const defaultAcceptor = "id003"

// Ready is what cmd/hw-sim prints once everything listens.
type Ready struct {
	Acceptor     string `json:"acceptor"`
	AcceptorPort string `json:"acceptor_port"`
	PrinterPort  string `json:"printer_port"`
	ScannerPort  string `json:"scanner_port"`
	ControlURL   string `json:"control_url"`
	// HIDScanner is the virtual HID scanner's event device (Config.HIDScanner).
	HIDScanner string `json:"hid_scanner,omitempty"`
	// Pins are the simulated GPIO pins (usable only in-process, through Rig.Pin).
	Pins []string `json:"pins,omitempty"`
}

// Rig is the running simulated hardware.
type Rig struct {
	cfg     Config
	Acc     AcceptorSim
	Printer *escpossim.Sim
	Scanner *scannersim.Sim

	accPty, prnPty, scnPty *ptypair.Pair
	hid                    *hidsim.Keyboard
	lines                  lines
	lineMu                 sync.Mutex
	lineSpeed              LineSpeed
	sensors                *sensorPins
	ln                     net.Listener
	srv                    *http.Server
	cancel                 context.CancelFunc
	wg                     sync.WaitGroup
	log                    *slog.Logger
	closeOnce              sync.Once

	signOffMu sync.Mutex
	signOff   SignOffFunc
}

// SignOffFunc is a technician's sign-off of a latched condition (the acceptor's cheat attempt,
// the tamper alarm) on the kiosk: who signs off and why. The rig is only hardware; a kioskd
// running in the same process (the demo) gives it its engine's sign-off command.
type SignOffFunc func(ctx context.Context, condition, who, why string) error

// SetSignOff wires the control panel's sign-off to a kiosk (nil: not available).
func (r *Rig) SetSignOff(f SignOffFunc) {
	r.signOffMu.Lock()
	r.signOff = f
	r.signOffMu.Unlock()
}

// Start allocates the ptys, starts the emulators and the control API.
func Start(ctx context.Context, cfg Config) (*Rig, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.Acceptor == "" {
		cfg.Acceptor = defaultAcceptor
	}
	acc, err := newAcceptorSim(cfg)
	if err != nil {
		return nil, err
	}
	r := &Rig{cfg: cfg, Acc: acc, log: cfg.Logger.With("component", "hw-sim"), sensors: newSensorPins(),
		// Tests and the crash campaign count every receipt ever printed.
		Printer: escpossim.New(escpossim.Config{Logger: cfg.Logger.With("device", "printer"), Now: cfg.Now, MaxDocuments: 1 << 20}),
		Scanner: scannersim.New(scannersim.Config{Logger: cfg.Logger.With("device", "scanner")})}
	for _, p := range []**ptypair.Pair{&r.accPty, &r.prnPty, &r.scnPty} {
		if *p, err = ptypair.Open(); err != nil {
			r.closePtys()
			return nil, err
		}
	}
	if cfg.HIDScanner {
		if r.hid, err = hidsim.NewKeyboard("kioskd hw-sim QR scanner"); err != nil {
			r.closePtys()
			return nil, err
		}
	}
	r.lines = lines{acc: linespeed.NewPort(r.accPty, linespeed.Line{}), prn: linespeed.NewPort(r.prnPty, linespeed.Line{}),
		scn: linespeed.NewPort(r.scnPty, linespeed.Line{})}
	if err := r.SetLineSpeed(cfg.LineSpeed); err != nil {
		r.closePtys()
		return nil, err
	}
	r.ln, err = net.Listen("tcp", cfg.Listen)
	if err != nil {
		r.closePtys()
		return nil, fmt.Errorf("simrig: control API: %w", err)
	}
	ctx, r.cancel = context.WithCancel(ctx)
	serve := func(name string, fn func(context.Context) error) {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			if err := fn(ctx); err != nil && ctx.Err() == nil {
				r.log.Error("emulator stopped", "device", name, "err", err)
			}
		}()
	}
	serve("acceptor", func(ctx context.Context) error { return acc.Serve(ctx, r.lines.acc) })
	serve("printer", func(ctx context.Context) error { return r.Printer.Serve(ctx, r.lines.prn) })
	serve("scanner", func(ctx context.Context) error { return r.Scanner.Serve(ctx, r.lines.scn) })
	r.srv = &http.Server{Handler: r.Handler(), ReadHeaderTimeout: 5 * time.Second}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		if err := r.srv.Serve(r.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.log.Error("control API", "err", err)
		}
	}()
	// Closing the ptys is what releases the emulators' blocked reads.
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		<-ctx.Done()
		r.closePtys()
	}()
	return r, nil
}

// Ready describes the rig for outside tests and the daemon's config. A pulse acceptor has
// no port: its pins (and the sensors') are opened in-process through Rig.Pin.
func (r *Rig) Ready() Ready {
	rd := Ready{Acceptor: r.cfg.Acceptor, AcceptorPort: r.accPty.Path(), PrinterPort: r.prnPty.Path(), ScannerPort: r.scnPty.Path(),
		ControlURL: "http://" + r.ln.Addr().String() + "/", Pins: []string{PinCabinetDoor, PinVaultDoor, PinTamper}}
	if r.hid != nil {
		rd.HIDScanner = r.hid.Path()
	}
	if p, err := LookupProtocol(r.cfg.Acceptor); err == nil && p.Pins != nil {
		rd.AcceptorPort = ""
		rd.Pins = append(rd.Pins, p.Pins...)
	}
	return rd
}

// Close stops everything and waits.
func (r *Rig) Close() error {
	r.closeOnce.Do(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		r.srv.Shutdown(sctx)
		cancel()
		r.cancel()
		r.wg.Wait()
		if r.hid != nil {
			_ = r.hid.Close()
		}
	})
	return nil
}

// Scan shows code to the kiosk's scanner: typed on the virtual HID scanner when the rig has
// one, else sent by the serial scanner.
func (r *Rig) Scan(code string) error {
	if r.hid != nil {
		return r.hid.Type(code, "enter")
	}
	return r.Scanner.Scan(code)
}

func (r *Rig) closePtys() {
	for _, p := range []*ptypair.Pair{r.accPty, r.prnPty, r.scnPty} {
		if p != nil {
			_ = p.Close()
		}
	}
}

// ScanWallet scans a freshly signed demo wallet code for account.
func (r *Rig) ScanWallet(account string) (string, error) {
	if len(r.cfg.WalletKey) != ed25519.PrivateKeySize {
		return "", errors.New("simrig: no demo wallet key configured")
	}
	code := scannersim.DemoWallet{Key: r.cfg.WalletKey, KeyID: r.cfg.WalletKID, Account: account, TTL: 5 * time.Minute, Now: r.cfg.Now}.Payload()
	return code, r.Scan(code)
}

// AcceptorSim is the protocol-neutral control surface of a bill acceptor emulator: what the
// control API, the demo panel and the end-to-end tests use whatever the protocol.
type AcceptorSim interface {
	Serve(ctx context.Context, port io.ReadWriter) error
	// Insert feeds a note by protocol code.
	Insert(code int) error
	// CodeFor finds the protocol code of a note value.
	CodeFor(valueMinor int64) (int, bool)
	// RejectNext makes the next note be rejected with the protocol's reason code.
	RejectNext(reason int)
	Jam(stacker bool)
	ClearJam()
	PullCassette() error
	ReplaceCassette() error
	SetCassetteFull(bool)
	Cheat()
	Fail(code int)
	// PowerCycle: where is "auto", "none", "acceptor" or "stacker".
	PowerCycle(where string) error
	// Fault injects a link fault into one reply: "bad_crc", "no_reply", "garbage",
	// "split", "slow".
	Fault(kind string, delay time.Duration) error
	// Stacked is the emulator's own log of notes in the cassette: the money ground truth.
	Stacked() []Stacked
	State() any
}

// UnitSwapper is an AcceptorSim whose unit can be replaced by another one with a
// different serial number on the same port (a technician swapping the unit, or a thief
// swapping it for a doctored one); only emulators whose protocol reports a serial the
// driver checks implement it.
type UnitSwapper interface {
	SwapUnit(serial uint32) error
}

// Stacked is one note the emulator put in its cassette.
type Stacked struct {
	Code       int       `json:"code"`
	ValueMinor int64     `json:"value_minor"`
	At         time.Time `json:"at"`
	// Acked: the host acknowledged the credit (where the protocol has such an ACK).
	Acked bool   `json:"acked"`
	Via   string `json:"via"`
	// Cassette numbers cassettes since the emulator started.
	Cassette int `json:"cassette"`
}

func newAcceptorSim(cfg Config) (AcceptorSim, error) {
	p, err := LookupProtocol(cfg.Acceptor)
	if err != nil {
		return nil, err
	}
	return p.newSim(cfg), nil
}

// DemoDenominations is the demo's table for a protocol (Protocol.Denominations): 1, 5, 10,
// 20, 50 and 100 in the currency (minor units with two decimals), on ID-003 escrow codes
// 0x61..0x66, CCNET bill types 1..6 or SSP channels 1..6; a pulse unit's codes are pulse
// counts, 1 pulse per 10. "" is ID-003, the rig's default; an unknown protocol has an empty
// table.
func DemoDenominations(protocol, currency string) acceptor.Denominations {
	if protocol == "" {
		protocol = defaultAcceptor
	}
	p, err := LookupProtocol(protocol)
	if err != nil {
		return acceptor.Denominations{}
	}
	return p.Denominations(currency)
}
