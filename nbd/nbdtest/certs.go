package nbdtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Certs are x509 credentials made for one test: a CA, a server
// certificate for localhost (127.0.0.1, ::1) and a client certificate,
// both signed by the CA, written into Dir the way nbdkit, libnbd and
// qemu look for them (ca-cert.pem, server-cert.pem, server-key.pem,
// client-cert.pem, client-key.pem).
type Certs struct {
	Dir    string
	CA     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	Server tls.Certificate
	Client tls.Certificate
}

// NewCerts makes a CA named name and its certificates in a new directory
// of t.TempDir().
func NewCerts(t testing.TB, name string) *Certs {
	t.Helper()
	c := &Certs{Dir: filepath.Join(t.TempDir(), name)}
	if err := os.Mkdir(c.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	var err error
	c.caKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name + " CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &c.caKey.PublicKey, c.caKey)
	if err != nil {
		t.Fatal(err)
	}
	c.CA, _ = x509.ParseCertificate(der)
	writePEM(t, filepath.Join(c.Dir, "ca-cert.pem"), "CERTIFICATE", der)
	c.Server = c.issue(t, "server", 2, x509.ExtKeyUsageServerAuth)
	c.Client = c.issue(t, "client", 3, x509.ExtKeyUsageClientAuth)
	return c
}

func (c *Certs) issue(t testing.TB, who string, serial int64, usage x509.ExtKeyUsage) tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: "localhost", Organization: []string{who}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{usage},
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.CA, &key.PublicKey, c.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(c.Dir, who+"-cert.pem"), "CERTIFICATE", der)
	writePEM(t, filepath.Join(c.Dir, who+"-key.pem"), "EC PRIVATE KEY", kder)
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (c *Certs) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.CA)
	return p
}

// ServerConfig is a server's TLS configuration: its certificate, and
// client certificates required and verified against the CA.
func (c *Certs) ServerConfig() *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{c.Server},
		ClientCAs:    c.pool(),
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}
}

// ClientConfig is a client's TLS configuration: its certificate, and the
// server's verified against the CA.
func (c *Certs) ClientConfig() *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{c.Client},
		RootCAs:      c.pool(),
		MinVersion:   tls.VersionTLS12,
	}
}
