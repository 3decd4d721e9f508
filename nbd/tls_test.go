package nbd_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/daxstack/daxstack/nbd"
	"github.com/daxstack/daxstack/nbd/nbdtest"
)

// tlsServer serves export "mem" with FORCEDTLS and verified client
// certificates; Open refuses a peer without a verified chain (so the
// directory sees the TLS state).
func tlsServer(t *testing.T, certs *nbdtest.Certs) *nbd.Server {
	dir := &nbdtest.Dir{}
	dir.Add("mem", nbdtest.NewMem(1<<20), nbdtest.Options{Deny: func(p *nbd.Peer) bool {
		return p.TLS == nil || len(p.TLS.VerifiedChains) == 0
	}})
	return &nbd.Server{Exports: dir, TLSConfig: certs.ServerConfig(), RequireTLS: true}
}

// mixedDir is a directory with the good CA (so the server is trusted) and
// the client credentials of another CA.
func mixedDir(t *testing.T, good, rogue *nbdtest.Certs) string {
	d := filepath.Join(t.TempDir(), "mixed")
	os.Mkdir(d, 0o700)
	for _, f := range []string{"ca-cert.pem"} {
		b, _ := os.ReadFile(filepath.Join(good.Dir, f))
		os.WriteFile(filepath.Join(d, f), b, 0o600)
	}
	for _, f := range []string{"client-cert.pem", "client-key.pem"} {
		b, _ := os.ReadFile(filepath.Join(rogue.Dir, f))
		os.WriteFile(filepath.Join(d, f), b, 0o600)
	}
	return d
}

func TestTLSNbdinfo(t *testing.T) {
	certs := nbdtest.NewCerts(t, "good")
	rogue := nbdtest.NewCerts(t, "rogue")
	sock := serve(t, tlsServer(t, certs))
	tlsURI := "nbds+unix:///mem?socket=" + sock + "&tls-certificates="
	info := nbdinfo(t, tlsURI+certs.Dir)
	if !info.TLS || len(info.Exports) != 1 || info.Exports[0].Size != 1<<20 {
		t.Fatalf("nbdinfo over TLS: %+v", info)
	}
	for name, uri := range map[string]string{
		"without TLS":                unixURI(sock, "mem"),
		"with another CA's client":   tlsURI + mixedDir(t, certs, rogue),
		"trusting another CA":        tlsURI + rogue.Dir,
		"with no client certificate": tlsURI + onlyCA(t, certs),
	} {
		if out, err := runErr(t, "nbdinfo", uri); err == nil {
			t.Errorf("nbdinfo %s succeeded:\n%s", name, out)
		}
	}
}

func onlyCA(t *testing.T, c *nbdtest.Certs) string {
	d := filepath.Join(t.TempDir(), "ca-only")
	os.Mkdir(d, 0o700)
	b, _ := os.ReadFile(filepath.Join(c.Dir, "ca-cert.pem"))
	os.WriteFile(filepath.Join(d, "ca-cert.pem"), b, 0o600)
	return d
}

func TestTLSQemu(t *testing.T) {
	certs := nbdtest.NewCerts(t, "good")
	rogue := nbdtest.NewCerts(t, "rogue")
	addr := serveTCP(t, tlsServer(t, certs))
	host, port, _ := net.SplitHostPort(addr)
	opts := func(dir string) []string {
		return []string{"--object", "tls-creds-x509,id=tls0,endpoint=client,dir=" + dir,
			"--image-opts", "driver=nbd,host=" + host + ",port=" + port + ",export=mem,tls-creds=tls0"}
	}
	out := run(t, "qemu-io", append(opts(certs.Dir), "-c", "write -P 0x5a 0 64k", "-c", "read -P 0x5a 0 64k")...)
	if strings.Contains(out, "failed") || !strings.Contains(out, "read 65536/65536") {
		t.Fatalf("qemu-io over TLS:\n%s", out)
	}
	if out, err := runErr(t, "qemu-img", append([]string{"info"}, opts(mixedDir(t, certs, rogue))...)...); err == nil {
		t.Errorf("qemu-img with another CA's client certificate succeeded:\n%s", out)
	}
	if out, err := runErr(t, "qemu-img", "info", "nbd://"+addr+"/mem"); err == nil {
		t.Errorf("qemu-img without TLS succeeded:\n%s", out)
	}
}

func TestTLSClient(t *testing.T) {
	certs := nbdtest.NewCerts(t, "good")
	rogue := nbdtest.NewCerts(t, "rogue")
	addr := serveTCP(t, tlsServer(t, certs))
	c := dial(t, "nbds://"+addr+"/mem", nbd.Options{TLSConfig: certs.ClientConfig()})
	if !c.Info().TLS || c.Info().Size != 1<<20 {
		t.Fatalf("info %+v", c.Info())
	}
	ctx := context.Background()
	if _, err := c.WriteAt(ctx, []byte("over tls"), 0, true); err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 8)
	if _, err := c.ReadAt(ctx, p, 0); err != nil || string(p) != "over tls" {
		t.Fatalf("read %q, %v", p, err)
	}

	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := nbd.Dial(ctx, "nbd://"+addr+"/mem", nbd.Options{}); !errors.Is(err, nbd.ErrTLSRequired) {
		t.Errorf("plain dial of a TLS server: %v, want ErrTLSRequired", err)
	}
	bad := certs.ClientConfig()
	bad.Certificates = rogue.ClientConfig().Certificates
	if _, err := nbd.Dial(ctx, "nbds://"+addr+"/mem", nbd.Options{TLSConfig: bad}); err == nil {
		t.Error("a client certificate of another CA was accepted")
	}
	if _, err := nbd.Dial(ctx, "nbds://"+addr+"/mem", nbd.Options{TLSConfig: rogue.ClientConfig()}); err == nil {
		t.Error("a server certificate of another CA was trusted")
	}
}
