package loadtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"testing"
	"time"
)

// testCA makes a CA as deploy/dev-pki.sh does (P-256, PKCS #8 key), in PEM.
func testCA(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kioskd dev CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

// A kiosk certificate chains to the CA, names the kiosk in its CN and is for client
// authentication only: what the broker checks before it makes the CN the username.
func TestIssueKioskCert(t *testing.T) {
	certPEM, keyPEM := testCA(t)
	is, err := parseIssuer(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	c, err := is.issue("LT-00042")
	if err != nil {
		t.Fatal(err)
	}
	if c.Leaf.Subject.CommonName != "LT-00042" {
		t.Errorf("CN %q", c.Leaf.Subject.CommonName)
	}
	if _, err := c.Leaf.Verify(x509.VerifyOptions{Roots: is.roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client chain: %v", err)
	}
	if _, err := c.Leaf.Verify(x509.VerifyOptions{Roots: is.roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("a kiosk certificate is accepted for a server")
	}
	if c2, err := is.issue("LT-00043"); err != nil || c2.Leaf.SerialNumber.Cmp(c.Leaf.SerialNumber) == 0 {
		t.Errorf("second certificate: %v, same serial %v", err, c2.Leaf.SerialNumber)
	}
	for _, bad := range []string{"", "a/b", "K+1", "ledger#"} {
		if _, err := is.issue(bad); err == nil {
			t.Errorf("issued a certificate for %q", bad)
		}
	}
	if _, err := parseIssuer(certPEM, certPEM); err == nil {
		t.Error("a certificate accepted as the CA key")
	}
	if _, err := parseIssuer([]byte("junk"), keyPEM); err == nil {
		t.Error("junk accepted as the CA certificate")
	}
}
