package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// NBD over TCP needs TLS with verified client certificates (or an
// explicit --nbd-insecure); nbdinfo with a certificate signed by the CA
// gets in, without TLS it does not.
func TestExportsNBDOverTLS(t *testing.T) {
	s := newExportSandbox(t, "nbdinfo")
	if _, stderr, err := s.tryRun(append([]string{"serve"}, append(s.exportArgs(), "--nbd-listen", "127.0.0.1:0")...)...); err == nil || !strings.Contains(stderr, "needs TLS") {
		t.Fatalf("serve with plain TCP and no --nbd-insecure: %v %s", err, stderr)
	}

	ca, caKey := newCert(t, "daxstack test CA", nil, nil, true)
	srv, srvKey := newCert(t, "localhost", ca, caKey, false)
	cli, cliKey := newCert(t, "client", ca, caKey, false)
	pki := s.path("pki")
	os.MkdirAll(pki, 0o700)
	writePEM(t, filepath.Join(pki, "ca.pem"), "CERTIFICATE", ca.Raw)
	writePEM(t, filepath.Join(pki, "server.pem"), "CERTIFICATE", srv.Raw)
	writeKey(t, filepath.Join(pki, "server-key.pem"), srvKey)
	// The client's directory, as libnbd (gnutls) wants it.
	cdir := s.path("client")
	os.MkdirAll(cdir, 0o700)
	writePEM(t, filepath.Join(cdir, "ca-cert.pem"), "CERTIFICATE", ca.Raw)
	writePEM(t, filepath.Join(cdir, "client-cert.pem"), "CERTIFICATE", cli.Raw)
	writeKey(t, filepath.Join(cdir, "client-key.pem"), cliKey)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s.start("--nbd-listen", addr, "--nbd-tls-cert", filepath.Join(pki, "server.pem"),
		"--nbd-tls-key", filepath.Join(pki, "server-key.pem"), "--nbd-tls-ca", filepath.Join(pki, "ca.pem"))
	leaf := s.file("l.img", 2048*512)
	s.run("create", "n", "--table", fmt.Sprintf("0 2048 linear %s 0", leaf))

	out := sh(t, "nbdinfo", "--size", fmt.Sprintf("nbds://%s/n?tls-certificates=%s", addr, cdir))
	if strings.TrimSpace(out) != fmt.Sprint(2048*512) {
		t.Errorf("nbdinfo --size over TLS: %s", out)
	}
	if out, err := exec.Command("nbdinfo", "--size", fmt.Sprintf("nbd://%s/n", addr)).CombinedOutput(); err == nil {
		t.Errorf("plain NBD to the TLS port got in: %s", out)
	}
}

func newCert(t *testing.T, cn string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, isCA bool) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if isCA {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
		tmpl.ExtKeyUsage = nil
	} else {
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, key
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func writeKey(t *testing.T, path string, k *ecdsa.PrivateKey) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, path, "PRIVATE KEY", der)
}
