package loadtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/kioskd/kioskd/sync/wire"
)

// issuer signs kiosk client certificates with the CA that deploy/dev-pki.sh made, under the
// rules that script follows (P-256 key, subject CN = the kiosk id, clientAuth only, 825
// days). dev-pki.sh runs openssl twice per name, about 20 ms each: 1,000 kiosks would spend
// most of a bounded CI run making certificates. Issuing in process takes well under a
// millisecond each, and the broker cannot tell the difference: it checks the chain, the CRL
// and the CN.
type issuer struct {
	ca    *x509.Certificate
	key   crypto.Signer
	roots *x509.CertPool
}

// loadIssuer reads ca.pem and ca.key from a dev-pki.sh directory.
func loadIssuer(dir string) (*issuer, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, "ca.key"))
	if err != nil {
		return nil, err
	}
	return parseIssuer(certPEM, keyPEM)
}

func parseIssuer(certPEM, keyPEM []byte) (*issuer, error) {
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, errors.New("ca.pem: no PEM certificate")
	}
	ca, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("ca.pem: %w", err)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, errors.New("ca.key: no PEM block")
	}
	var key any
	switch kb.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(kb.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(kb.Bytes)
	default:
		err = fmt.Errorf("PEM type %q", kb.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("ca.key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("ca.key: %T cannot sign", key)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	return &issuer{ca: ca, key: signer, roots: roots}, nil
}

// issue makes a client certificate for the kiosk id cn.
func (is *issuer) issue(cn string) (tls.Certificate, error) {
	if !wire.ValidKioskID(cn) {
		return tls.Certificate{}, fmt.Errorf("issue: %q is not a kiosk id", cn)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(825 * 24 * time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, is.ca, &key.PublicKey, is.key)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// clientTLS is the TLS configuration of a kiosk: trust the dev CA, present cert.
func (is *issuer) clientTLS(cert tls.Certificate) *tls.Config {
	return &tls.Config{RootCAs: is.roots, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}
