// Package mosqtest starts a real mosquitto broker for integration tests, configured exactly as
// shipped: it runs deploy/mosquitto/kioskd.conf and deploy/mosquitto/kioskd.acl, rewriting only
// file paths and the listener port, with certificates made by deploy/dev-pki.sh (TLS with a
// private CA, a client certificate per identity whose CN the broker makes the username and the
// client id, a CRL). What the tests prove about the broker is therefore true of the files an
// installer copies.
//
// When mosquitto or openssl is not installed the test is skipped with a message, unless the
// environment variable KIOSKD_REQUIRE_SERVICES is set (CI sets it after installing the
// packages), in which case the test fails.
package mosqtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// LedgerCN is the certificate CN (so the MQTT username and client id) of the first ledger
// instance in the shipped ACL; FleetCN that of the first operations console.
const (
	LedgerCN = "ledger-1"
	FleetCN  = "fleetd-1"
)

// Find returns the mosquitto binary, or "".
func Find() string {
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// Require returns the mosquitto binary or skips (or fails under KIOSKD_REQUIRE_SERVICES);
// it also needs openssl, which deploy/dev-pki.sh runs.
func Require(t testing.TB) string {
	t.Helper()
	p := Find()
	_, errSSL := exec.LookPath("openssl")
	_, errSh := exec.LookPath("sh")
	if p == "" || errSSL != nil || errSh != nil {
		if os.Getenv("KIOSKD_REQUIRE_SERVICES") != "" {
			t.Fatal("mosquitto, openssl and sh are required (KIOSKD_REQUIRE_SERVICES is set) but not all are installed")
		}
		t.Skip("mosquitto or openssl not installed: skipping the real-broker test (apt-get install mosquitto openssl; .ci/run does)")
	}
	return p
}

// deployDir locates deploy/ from this source file.
func deployDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "deploy")
}

// ShippedConf and ShippedACL are the files the broker runs; PKIScript makes its certificates.
func ShippedConf() string { return filepath.Join(deployDir(), "mosquitto", "kioskd.conf") }

// ShippedACL is deploy/mosquitto/kioskd.acl.
func ShippedACL() string { return filepath.Join(deployDir(), "mosquitto", "kioskd.acl") }

// PKIScript is deploy/dev-pki.sh.
func PKIScript() string { return filepath.Join(deployDir(), "dev-pki.sh") }

// Broker is a running mosquitto.
type Broker struct {
	t    testing.TB
	bin  string
	dir  string
	conf string
	// Port of the TLS listener.
	Port int
	// PlainPort is a loopback listener without TLS or ACL, for tests that only need a real
	// broker (0 when disabled). It is the one addition to the shipped configuration.
	PlainPort int
	// CAFile is the CA certificate PEM clients trust.
	CAFile string
	// PKIDir holds what deploy/dev-pki.sh made: <cn>.pem and <cn>.key per identity.
	PKIDir string

	pkiMu sync.Mutex

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	logs *syncBuf
}

// syncBuf is a buffer the child's output copier writes while tests read it.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// Options tunes Start.
type Options struct {
	// LedgerUser is ignored: the ACL is the shipped one, whose ledger identities are
	// ledger-1 and ledger-2 (LedgerCN). Kept so that older callers compile.
	LedgerUser string
	// Plain adds a plain loopback listener.
	Plain bool
}

// Start runs mosquitto until the test ends.
func Start(t testing.TB, opts Options) *Broker {
	t.Helper()
	bin := Require(t)
	dir := t.TempDir()
	b := &Broker{t: t, bin: bin, dir: dir, Port: freePort(t), PKIDir: filepath.Join(dir, "pki")}
	if opts.Plain {
		b.PlainPort = freePort(t)
	}
	b.pki()
	b.CAFile = filepath.Join(b.PKIDir, "ca.pem")
	shipped, err := os.ReadFile(ShippedConf())
	if err != nil {
		t.Fatalf("shipped config: %v", err)
	}
	persist := filepath.Join(dir, "persist") + "/"
	if err := os.MkdirAll(persist, 0o700); err != nil {
		t.Fatal(err)
	}
	conf, err := RenderConf(shipped, map[string]string{
		"listener":             fmt.Sprintf("%d 127.0.0.1", b.Port),
		"cafile":               b.CAFile,
		"certfile":             filepath.Join(b.PKIDir, "server.pem"),
		"keyfile":              filepath.Join(b.PKIDir, "server.key"),
		"crlfile":              filepath.Join(b.PKIDir, "crl.pem"),
		"acl_file":             ShippedACL(),
		"persistence_location": persist,
	})
	if err != nil {
		t.Fatalf("shipped config %s: %v", ShippedConf(), err)
	}
	// As root, mosquitto drops to the "mosquitto" user, which cannot read the test's 0700
	// temporary directory; keep it as the invoking user.
	head := "log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
	if os.Getuid() == 0 {
		head = "user root\n" + head
	}
	conf = append([]byte(head), conf...)
	if b.PlainPort != 0 {
		conf = fmt.Appendf(conf, "\nlistener %d 127.0.0.1\nallow_anonymous true\n", b.PlainPort)
	}
	b.conf = filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(b.conf, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	b.start()
	t.Cleanup(b.Stop)
	return b
}

// RenderConf rewrites the values of the named directives in a mosquitto configuration and
// leaves every other line as it is. Each named directive must occur exactly once, so that a
// change to the shipped file that the tests would silently stop covering fails instead.
func RenderConf(conf []byte, values map[string]string) ([]byte, error) {
	seen := map[string]int{}
	var out bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(conf))
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) > 0 && !strings.HasPrefix(fields[0], "#") {
			if v, ok := values[fields[0]]; ok {
				seen[fields[0]]++
				line = fields[0] + " " + v
			}
		}
		out.WriteString(line)
		out.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for k := range values {
		if seen[k] != 1 {
			return nil, fmt.Errorf("directive %q occurs %d times, want once", k, seen[k])
		}
	}
	return out.Bytes(), nil
}

// pki runs deploy/dev-pki.sh in PKIDir with args.
func (b *Broker) pki(args ...string) {
	b.t.Helper()
	b.pkiMu.Lock()
	defer b.pkiMu.Unlock()
	runPKI(b.t, b.PKIDir, args...)
}

func runPKI(t testing.TB, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("sh", append([]string{PKIScript(), dir}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dev-pki.sh %v: %v\n%s", args, err, out)
	}
}

func (b *Broker) start() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.logs = &syncBuf{}
	cmd := exec.Command(b.bin, "-c", b.conf)
	cmd.Stdout, cmd.Stderr = b.logs, b.logs
	if err := cmd.Start(); err != nil {
		b.t.Fatalf("mosquitto: %v", err)
	}
	b.cmd = cmd
	b.done = make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(b.done)
	// Ready when the port accepts connections.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", b.Port), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-b.done:
			b.t.Fatalf("mosquitto exited at start: %s", b.logs.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("mosquitto did not listen within 10 s: %s", b.logs.String())
		}
	}
}

// Stop stops the broker (clients see the connection drop).
func (b *Broker) Stop() {
	b.mu.Lock()
	cmd, done := b.cmd, b.done
	b.cmd = nil
	b.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// Restart stops and starts the broker on the same ports.
func (b *Broker) Restart() {
	b.Stop()
	b.start()
}

// Logs returns what mosquitto printed.
func (b *Broker) Logs() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.logs.String()
}

// URL is the TLS listener's URL for mqttc.
func (b *Broker) URL() string { return fmt.Sprintf("ssl://127.0.0.1:%d", b.Port) }

// PlainURL is the plain listener's URL.
func (b *Broker) PlainURL() string { return fmt.Sprintf("tcp://127.0.0.1:%d", b.PlainPort) }

// ClientTLS returns a TLS config with the client certificate whose CN is cn, issued by
// deploy/dev-pki.sh on first use.
func (b *Broker) ClientTLS(cn string) *tls.Config {
	b.t.Helper()
	certFile, keyFile := b.ClientFiles(cn)
	return b.tlsConfig(certFile, keyFile)
}

func (b *Broker) tlsConfig(certFile, keyFile string) *tls.Config {
	b.t.Helper()
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(b.CAFile)
	if err != nil || !pool.AppendCertsFromPEM(ca) {
		b.t.Fatalf("CA %s: %v", b.CAFile, err)
	}
	conf := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			b.t.Fatal(err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf
}

// NoCertTLS trusts the broker but presents no client certificate.
func (b *Broker) NoCertTLS() *tls.Config { return b.tlsConfig("", "") }

// ForeignTLS returns a client certificate with CN cn from another CA (made by dev-pki.sh in
// another directory): the broker must refuse it although its CN is a known identity.
func (b *Broker) ForeignTLS(cn string) *tls.Config {
	b.t.Helper()
	dir := filepath.Join(b.dir, "foreign")
	b.pkiMu.Lock()
	runPKI(b.t, dir, cn)
	b.pkiMu.Unlock()
	conf := b.tlsConfig(filepath.Join(dir, cn+".pem"), filepath.Join(dir, cn+".key"))
	return conf
}

// ClientFiles issues (once) the client certificate and key for cn and returns their paths
// (for a kioskd config file).
func (b *Broker) ClientFiles(cn string) (certFile, keyFile string) {
	b.t.Helper()
	certFile = filepath.Join(b.PKIDir, cn+".pem")
	keyFile = filepath.Join(b.PKIDir, cn+".key")
	b.pki(cn)
	return certFile, keyFile
}

// Revoke revokes cn's certificate with dev-pki.sh and restarts the broker so that it reads
// the new CRL.
func (b *Broker) Revoke(cn string) {
	b.t.Helper()
	b.pki("-revoke", cn)
	b.Restart()
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// WaitLog waits until mosquitto's log contains s.
func (b *Broker) WaitLog(ctx context.Context, s string) bool {
	for {
		if strings.Contains(b.Logs(), s) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
}
