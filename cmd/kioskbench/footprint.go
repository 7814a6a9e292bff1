package main

// The footprint rows: kioskd as shipped (built like `make cross` builds it), run as a process
// against the emulators on pseudo-terminals, the in-process broker and the reference ledger,
// measured from /proc: resident memory idle and in a session, the peak, the CPU it burns idle
// at the default polling, and the binaries' sizes per board architecture. They need the go
// tool and the source tree (`make bench`); on a kiosk without them the section says so.

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/kioskd/kioskd/hw-sim/simrig"
	"github.com/kioskd/kioskd/kiosk/config"
	"github.com/kioskd/kioskd/kiosk/ctl"
	"github.com/kioskd/kioskd/kiosk/session"
	"github.com/kioskd/kioskd/kiosk/ui"
	"github.com/kioskd/kioskd/sync/broker"
	"github.com/kioskd/kioskd/sync/ledger"
	"github.com/kioskd/kioskd/sync/mqttc"
	"github.com/kioskd/kioskd/sync/wire"
)

// Limits the footprint rows are held to.
const (
	// rssLimit: a kiosk board with 512 MB runs kioskd next to a browser in kiosk mode.
	rssLimit = 20_000_000
	// idleCPULimit: the share of one core kioskd may burn idle at the default polling. Idle
	// kioskd is mostly wake-ups, not work: the acceptor poll (5/s), the serial readers' read
	// time-outs (100 ms on each of three ports), the Go runtime's monitor; measured at 0.8 to
	// 1.3% of one core of a loaded 2-core virtual machine, where a context switch is dear.
	idleCPULimit = 2.0 // percent
	// binLimit: a binary must fit an update over a slow mobile link (per binary).
	binLimit = 16 << 20
	// userHZ is the unit of utime and stime in /proc/PID/stat on Linux (USER_HZ, 100 on every
	// architecture the kiosks use).
	userHZ = 100
)

// crossTargets are the boards' architectures, as `make cross` and `make deb` build them.
var crossTargets = []struct{ name, goarch, goarm string }{
	{"amd64", "amd64", ""}, {"arm64", "arm64", ""}, {"armv7", "arm", "7"},
}

// footprint builds and measures; it prints its own table. A missing go tool or source tree
// skips it with a note.
func footprint(out io.Writer, dir string, idleFor time.Duration) error {
	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintf(out, "\nfootprint: skipped (%v)\n", err)
		return nil
	}
	fmt.Fprintf(out, "\nfootprint (kioskd and kioskctl built with -trimpath -ldflags='-s -w', CGO_ENABLED=0; kioskd run against the emulators)...\n")
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "measurement\tvalue\tlimit\t\t")
	verdict := func(ok bool) string {
		if ok {
			return "ok"
		}
		return "OVER LIMIT"
	}
	var hostBin string
	for _, t := range crossTargets {
		for _, c := range []string{"kioskd", "kioskctl"} {
			bin := filepath.Join(dir, "bin-"+t.name, c)
			if err := goBuild(root, t.goarch, t.goarm, "./cmd/"+c, bin); err != nil {
				return err
			}
			st, err := os.Stat(bin)
			if err != nil {
				return err
			}
			fmt.Fprintf(tw, "binary %s linux/%s\t%.1f MiB\t%.0f MiB\t%s\t\n", c, t.name, float64(st.Size())/(1<<20), float64(binLimit)/(1<<20), verdict(st.Size() <= binLimit))
			if c == "kioskd" && t.goarch == hostArch() {
				hostBin = bin
			}
		}
	}
	if hostBin == "" {
		tw.Flush()
		fmt.Fprintf(out, "(no kioskd for this machine's architecture %s: memory and CPU not measured)\n", hostArch())
		return nil
	}
	m, err := measureKioskd(hostBin, dir, idleFor)
	if err != nil {
		tw.Flush()
		return fmt.Errorf("footprint: %w", err)
	}
	mb := func(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/1e6) }
	fmt.Fprintf(tw, "kioskd RSS idle (VmRSS)\t%s\t%s\t%s\t\n", mb(m.idleRSS), mb(rssLimit), verdict(m.idleRSS <= rssLimit))
	fmt.Fprintf(tw, "kioskd RSS in a session (VmRSS, a note in)\t%s\t%s\t%s\t\n", mb(m.sessionRSS), mb(rssLimit), verdict(m.sessionRSS <= rssLimit))
	fmt.Fprintf(tw, "kioskd peak RSS after a top-up (VmHWM)\t%s\t%s\t%s\t\n", mb(m.peakRSS), mb(rssLimit), verdict(m.peakRSS <= rssLimit))
	fmt.Fprintf(tw, "kioskd idle CPU (utime+stime over %s, poll %s)\t%.2f%% of one core\t%.1f%%\t%s\t\n", m.idleFor, m.poll, m.idleCPU, idleCPULimit, verdict(m.idleCPU <= idleCPULimit))
	tw.Flush()
	fmt.Fprintf(out, "(VmRSS counts the journal's bbolt memory map only in the pages touched; the Go runtime runs with its defaults, GOGC=100 and no memory limit)\n")
	return nil
}

func hostArch() string {
	out, err := exec.Command("go", "env", "GOARCH").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// moduleRoot is the kioskd source tree the go tool sees from here.
func moduleRoot() (string, error) {
	if _, err := exec.LookPath("go"); err != nil {
		return "", errors.New("needs the go tool")
	}
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("needs the kioskd source tree (run it as make bench)")
	}
	return filepath.Dir(mod), nil
}

func goBuild(root, goarch, goarm, pkg, out string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch, "GOARM="+goarm)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building %s for %s: %v\n%s", pkg, goarch, err, b)
	}
	return nil
}

type kioskdFootprint struct {
	idleRSS, sessionRSS, peakRSS int64
	idleCPU                      float64
	idleFor, poll                time.Duration
}

// measureKioskd runs bin against the emulators, a broker and a ledger, and measures it idle,
// with a note in a session, and after the top-up was credited.
func measureKioskd(bin, dir string, idleFor time.Duration) (kioskdFootprint, error) {
	var m kioskdFootprint
	ctx, cancel := context.WithTimeout(context.Background(), idleFor+3*time.Minute)
	defer cancel()
	_, walletKey, _ := ed25519.GenerateKey(nil)
	_, ledgerKey, _ := ed25519.GenerateKey(nil)
	quiet := slog.New(slog.DiscardHandler)
	rig, err := simrig.Start(ctx, simrig.Config{Acceptor: "id003", Denominations: simrig.DemoDenominations("id003", "CNY"),
		WalletKey: walletKey, WalletKID: "w1", Logger: quiet})
	if err != nil {
		return m, err
	}
	defer func() { _ = rig.Close() }()
	brk, err := broker.Start(ctx, broker.Config{Addr: "127.0.0.1:0"})
	if err != nil {
		return m, err
	}
	defer func() { _ = brk.Close() }()
	work := filepath.Join(dir, "footprint")
	if err := os.MkdirAll(work, 0o700); err != nil {
		return m, err
	}
	store, err := ledger.OpenBolt(filepath.Join(work, "ledger.db"), ledger.Options{})
	if err != nil {
		return m, err
	}
	defer func() { _ = store.Close() }()
	led, err := ledger.New(ledger.Config{MQTT: mqttc.Config{Brokers: []string{"tcp://" + brk.Addr()}, ClientID: "ledger"}, Store: store,
		Signer: wire.Signer{KID: "l1", Key: ledgerKey}, Limits: ledger.Limits{Currency: "CNY", DailyMinor: 10_000_000, PerTopupMaxMinor: 1_000_000},
		WalletKeys: map[string]ed25519.PublicKey{"w1": walletKey.Public().(ed25519.PublicKey)}, Logger: quiet})
	if err != nil {
		return m, err
	}
	lctx, lstop := context.WithCancel(ctx)
	ldone := make(chan error, 1)
	go func() { ldone <- led.Run(lctx) }()
	defer func() {
		lstop()
		if err := <-ldone; err != nil && !errors.Is(err, context.Canceled) {
			fmt.Fprintln(os.Stderr, "kioskbench: ledger:", err)
		}
	}()
	select {
	case <-led.Ready():
	case <-ctx.Done():
		return m, errors.New("ledger not ready")
	}

	ports := rig.Ready()
	c := config.Default()
	c.Kiosk = config.Kiosk{ID: "BENCH-01", Timezone: "UTC", Currency: "CNY", Language: "en"}
	c.Journal.Path = filepath.Join(work, "journal.db")
	c.Acceptor.Driver, c.Acceptor.Port = "id003", ports.AcceptorPort
	for code, n := range simrig.DemoDenominations("id003", "CNY") {
		c.Acceptor.Denominations = append(c.Acceptor.Denominations, config.Denomination{Code: code, ValueMinor: n.ValueMinor})
	}
	c.Printer = config.Printer{Enabled: true, Port: ports.PrinterPort, Baud: 9600, Profile: "generic80"}
	c.Scanner = config.Scanner{Port: ports.ScannerPort, Baud: 9600}
	c.Limits = config.Limits{SessionMaxMinor: 200000, OfflineSessionMaxMinor: 30000, OfflineTotalMaxMinor: 100000}
	c.Wallet.Keys = map[string]string{"w1": base64.StdEncoding.EncodeToString(walletKey.Public().(ed25519.PublicKey))}
	c.MQTT.Broker, c.MQTT.AllowInsecure = "tcp://"+brk.Addr(), true
	c.MQTT.LedgerKeys = map[string]string{"l1": base64.StdEncoding.EncodeToString(ledgerKey.Public().(ed25519.PublicKey))}
	addr, err := freePort()
	if err != nil {
		return m, err
	}
	c.HTTP.Listen = addr
	c.Control = config.Control{Socket: filepath.Join(work, "kioskd.sock")}
	c.Log.Level = "warn"
	if err := c.Validate(); err != nil {
		return m, err
	}
	cfgPath := filepath.Join(work, "kioskd.json")
	if err := config.WriteFile(cfgPath, c); err != nil {
		return m, err
	}
	m.poll = c.Acceptor.PollInterval.D()

	logs := &lockedLog{}
	cmd := exec.Command(bin, "-config", cfgPath)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		return m, err
	}
	// exited is closed when kioskd has ended; waitErr is then its exit status.
	var waitErr error
	exited := make(chan struct{})
	go func() { waitErr = cmd.Wait(); close(exited) }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	base := "http://" + addr
	fail := func(what string, err error) error {
		return fmt.Errorf("%s: %w (kioskd log: %s)", what, err, lastLines(logs.String(), 10))
	}
	wait := func(what string, cond func() bool) error {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for !cond() {
			select {
			case <-exited:
				return fail(what, fmt.Errorf("kioskd exited: %v", waitErr))
			case <-ctx.Done():
				return fail(what, errors.New("timed out"))
			case <-tick.C:
			}
		}
		return nil
	}
	view := func() session.View {
		var v session.View
		res, err := http.Get(base + "/api/state")
		if err != nil {
			return v
		}
		defer res.Body.Close()
		_ = json.NewDecoder(res.Body).Decode(&v)
		return v
	}
	online := func() bool {
		var d struct {
			Connected bool `json:"mqtt_connected"`
		}
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		defer ccancel()
		return ctl.NewClient(c.Control.Socket).Get(cctx, "/v1/diag", &d) == nil && d.Connected
	}
	if err := wait("kioskd idle and online", func() bool { return view().State == session.Idle.String() && online() }); err != nil {
		return m, err
	}
	pid := cmd.Process.Pid

	// Idle: what the polling, heartbeats and screen cost, and what stays resident.
	t0, cpu0, err := cpuTicks(pid)
	if err != nil {
		return m, err
	}
	select {
	case <-time.After(idleFor):
	case <-exited:
		return m, fail("idle", fmt.Errorf("kioskd exited: %v", waitErr))
	}
	t1, cpu1, err := cpuTicks(pid)
	if err != nil {
		return m, err
	}
	m.idleFor = t1.Sub(t0).Round(time.Second)
	m.idleCPU = 100 * float64(cpu1-cpu0) / userHZ / t1.Sub(t0).Seconds()
	if m.idleRSS, _, err = memStatus(pid); err != nil {
		return m, err
	}

	// A customer: scan, a note in (measured here), finish, credited.
	if _, err := rig.ScanWallet("bench_customer"); err != nil {
		return m, err
	}
	if err := wait("accepting", func() bool { return view().State == session.Accepting.String() }); err != nil {
		return m, err
	}
	code, ok := rig.Acc.CodeFor(5000)
	if !ok {
		return m, errors.New("no 50.00 note in the emulator")
	}
	if err := wait("note taken", func() bool { return rig.Acc.Insert(code) == nil }); err != nil {
		return m, err
	}
	if err := wait("note credited", func() bool { return view().TotalMinor == 5000 }); err != nil {
		return m, err
	}
	if m.sessionRSS, _, err = memStatus(pid); err != nil {
		return m, err
	}
	if err := finish(base); err != nil {
		return m, fail("finish", err)
	}
	if err := wait("credited", func() bool {
		v := view()
		return v.Result != nil && v.Result.Status == "credited"
	}); err != nil {
		return m, err
	}
	_, m.peakRSS, err = memStatus(pid)
	return m, err
}

// cpuTicks reads utime+stime (fields 14 and 15 of /proc/PID/stat, in USER_HZ ticks).
func cpuTicks(pid int) (time.Time, uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	now := time.Now()
	if err != nil {
		return now, 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces: count from after it.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return now, 0, fmt.Errorf("unreadable /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return now, 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return now, 0, fmt.Errorf("unreadable /proc/%d/stat", pid)
	}
	return now, ut + st, nil
}

// memStatus reads VmRSS and VmHWM (bytes) from /proc/PID/status.
func memStatus(pid int) (rss, hwm int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %q", k, v)
		}
		if k == "VmRSS" {
			rss = kb << 10
		} else {
			hwm = kb << 10
		}
	}
	if rss == 0 || hwm == 0 {
		return 0, 0, fmt.Errorf("no VmRSS/VmHWM in /proc/%d/status", pid)
	}
	return rss, hwm, sc.Err()
}

var tokenRe = regexp.MustCompile(`<meta name="kiosk-token" content="([0-9a-f]+)">`)

// finish presses Finish as the customer page does: a POST from the page's origin with its
// token.
func finish(base string) error {
	res, err := http.Get(base + "/")
	if err != nil {
		return err
	}
	page, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		return err
	}
	tok := tokenRe.FindSubmatch(page)
	if tok == nil {
		return errors.New("no token in the customer page")
	}
	req, err := http.NewRequest(http.MethodPost, base+"/api/finish", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Origin", base)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set(ui.TokenHeader, string(tok[1]))
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("finish: HTTP %d", res.StatusCode)
	}
	return nil
}

// lockedLog collects kioskd's output, written by exec's copier while a failure may read it.
type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, " | ")
}
