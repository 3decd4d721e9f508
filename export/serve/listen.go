package serve

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
)

// listenUnix makes the NBD unix socket: mode 0660, root and the group. A
// stale socket (nobody answers) is replaced; a live one is refused.
func listenUnix(path string, gid int) (*net.UnixListener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("nbd socket %s: another server answers on it: %w", path, ErrInvalid)
	}
	os.Remove(path)
	// The mode is set just after the bind; a peer that connects in
	// between still meets the credential check (mayUse).
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	ln.SetUnlinkOnClose(true)
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, err
	}
	if gid >= 0 {
		if err := os.Chown(path, 0, gid); err != nil {
			ln.Close()
			return nil, err
		}
	}
	return ln, nil
}

// tlsConfig is the TCP listener's x509 setup: the server's certificate,
// and client certificates verified against the CA.
func tlsConfig(cert, key, ca string) (*tls.Config, error) {
	c, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return nil, fmt.Errorf("nbd tls: %w", err)
	}
	pem, err := os.ReadFile(ca)
	if err != nil {
		return nil, fmt.Errorf("nbd tls: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("nbd tls: no certificate in %s: %w", ca, ErrInvalid)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{c},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}, nil
}
