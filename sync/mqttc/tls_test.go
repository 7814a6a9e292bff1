package mqttc

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/kioskd/kioskd/sync/broker"
)

// testPKI makes a CA, a server certificate for 127.0.0.1 and a client certificate whose CN
// is a kiosk id, as the production PKI does.
func testPKI(t *testing.T) (ca *x509.CertPool, server, client tls.Certificate) {
	t.Helper()
	now := time.Now()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	ca = x509.NewCertPool()
	ca.AddCert(caCert)
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage, ips []net.IP) tls.Certificate {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{usage},
			KeyUsage: x509.KeyUsageDigitalSignature, IPAddresses: ips}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	}
	server = leaf(2, "broker", x509.ExtKeyUsageServerAuth, []net.IP{net.IPv4(127, 0, 0, 1)})
	client = leaf(3, "K1", x509.ExtKeyUsageClientAuth, nil)
	return ca, server, client
}

func TestTLSClientCertificate(t *testing.T) {
	ca, server, client := testPKI(t)
	b, err := broker.Start(t.Context(), broker.Config{TLS: &tls.Config{
		Certificates: []tls.Certificate{server}, ClientCAs: ca, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12,
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if b.URL()[:6] != "ssl://" {
		t.Fatalf("URL %s", b.URL())
	}
	c := dial(t, Config{Brokers: []string{b.URL()}, ClientID: "K1",
		TLS: &tls.Config{RootCAs: ca, Certificates: []tls.Certificate{client}, MinVersion: tls.VersionTLS12}})
	got := make(chan string, 1)
	if err := c.Subscribe(ctxT(t), "kiosk/K1/down/#", 1, func(topic string, _ []byte) { got <- topic }); err != nil {
		t.Fatal(err)
	}
	if err := c.Publish(ctxT(t), "kiosk/K1/down/ack", 1, false, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	select {
	case topic := <-got:
		if topic != "kiosk/K1/down/ack" {
			t.Errorf("got %s", topic)
		}
	case <-time.After(wait):
		t.Fatal("no message over TLS")
	}

	// Without a client certificate the broker refuses the handshake.
	conn, err := tls.Dial("tcp", b.Addr(), &tls.Config{RootCAs: ca, MinVersion: tls.VersionTLS12})
	if err == nil {
		conn.SetDeadline(time.Now().Add(wait))
		_, err = conn.Read(make([]byte, 1)) // TLS 1.3 reports the refusal on the first read
		conn.Close()
	}
	if err == nil {
		t.Error("connected without a client certificate")
	}
}
