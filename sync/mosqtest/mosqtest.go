// Package mosqtest starts a real mosquitto broker for integration tests, configured as in
// production (deploy/mosquitto): TLS with a private CA, a client certificate per kiosk whose
// CN is the kiosk id and becomes the MQTT username, and a topic ACL that confines each kiosk
// to its own topics. It generates all the key material in the test's temporary directory.
//
// When mosquitto is not installed the test is skipped with a message, unless the environment
// variable KIOSKD_REQUIRE_SERVICES is set (CI sets it after installing the package), in
// which case the test fails.
package mosqtest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
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

// Require returns the mosquitto binary or skips (or fails under KIOSKD_REQUIRE_SERVICES).
func Require(t testing.TB) string {
	t.Helper()
	p := Find()
	if p == "" {
		if os.Getenv("KIOSKD_REQUIRE_SERVICES") != "" {
			t.Fatal("mosquitto is required (KIOSKD_REQUIRE_SERVICES is set) but not installed")
		}
		t.Skip("mosquitto not installed: skipping the real-broker test (apt-get install mosquitto; .ci/run does)")
	}
	return p
}

// shippedACL locates deploy/mosquitto/kioskd.acl from this source file.
func shippedACL() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "deploy", "mosquitto", "kioskd.acl")
}

// Broker is a running mosquitto.
type Broker struct {
	t    testing.TB
	bin  string
	dir  string
	conf string
	// Port of the TLS listener.
	Port int
	// PlainPort is a loopback listener without TLS or ACL, for tests that only need a real
	// broker (0 when disabled).
	PlainPort int
	ca        *x509.Certificate
	caKey     *ecdsa.PrivateKey
	// CAFile is the CA certificate PEM clients trust.
	CAFile string

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
	// LedgerUser is the certificate CN allowed to read all kiosks' up topics and write their
	// down topics. Default "ledger".
	LedgerUser string
	// Plain adds a plain loopback listener.
	Plain bool
}

// Start runs mosquitto until the test ends.
func Start(t testing.TB, opts Options) *Broker {
	t.Helper()
	bin := Require(t)
	if opts.LedgerUser == "" {
		opts.LedgerUser = "ledger"
	}
	dir := t.TempDir()
	b := &Broker{t: t, bin: bin, dir: dir, Port: freePort(t)}
	if opts.Plain {
		b.PlainPort = freePort(t)
	}
	b.makePKI()
	// The ACL is the one shipped in deploy/, so the production rule is what gets tested.
	acl, err := os.ReadFile(shippedACL())
	if err != nil {
		t.Fatalf("shipped ACL: %v", err)
	}
	acl = bytes.ReplaceAll(acl, []byte("user ledger\n"), []byte("user "+opts.LedgerUser+"\n"))
	if err := os.WriteFile(filepath.Join(dir, "acl"), acl, 0o644); err != nil {
		t.Fatal(err)
	}
	// As root, mosquitto drops to the "mosquitto" user, which cannot read the test's 0700
	// temporary directory; keep it as the invoking user.
	userLine := ""
	if os.Getuid() == 0 {
		userLine = "user root\n"
	}
	conf := userLine + fmt.Sprintf(`per_listener_settings true
persistence false
log_dest stderr
log_type error
log_type warning
log_type notice

listener %d 127.0.0.1
cafile %s
certfile %s
keyfile %s
require_certificate true
use_identity_as_username true
allow_anonymous false
acl_file %s
`, b.Port, b.CAFile, filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key"), filepath.Join(dir, "acl"))
	if b.PlainPort != 0 {
		conf += fmt.Sprintf("\nlistener %d 127.0.0.1\nallow_anonymous true\n", b.PlainPort)
	}
	b.conf = filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(b.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	b.start()
	t.Cleanup(b.Stop)
	return b
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
	go func(done chan struct{}) { cmd.Wait(); close(done) }(b.done)
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
	cmd.Process.Kill()
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

// ClientTLS returns a TLS config with a fresh client certificate whose CN is cn.
func (b *Broker) ClientTLS(cn string) *tls.Config {
	certPEM, keyPEM := b.issue(cn, false)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		b.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(b.ca)
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

// ClientFiles writes a client certificate and key for cn and returns their paths (for a
// kioskd config file).
func (b *Broker) ClientFiles(cn string) (certFile, keyFile string) {
	certPEM, keyPEM := b.issue(cn, false)
	certFile = filepath.Join(b.dir, cn+".pem")
	keyFile = filepath.Join(b.dir, cn+".key")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		b.t.Fatal(err)
	}
	return certFile, keyFile
}

func (b *Broker) makePKI() {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kioskd test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		b.t.Fatal(err)
	}
	b.ca, _ = x509.ParseCertificate(der)
	b.caKey = key
	b.CAFile = filepath.Join(b.dir, "ca.pem")
	os.WriteFile(b.CAFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	certPEM, keyPEM := b.issue("127.0.0.1", true)
	os.WriteFile(filepath.Join(b.dir, "server.pem"), certPEM, 0o644)
	os.WriteFile(filepath.Join(b.dir, "server.key"), keyPEM, 0o600)
}

var serial int64 = 1

func (b *Broker) issue(cn string, server bool) (certPEM, keyPEM []byte) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial++
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial + time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.DNSNames = []string{"localhost"}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, b.ca, &key.PublicKey, b.caKey)
	if err != nil {
		b.t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
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
