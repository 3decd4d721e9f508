package nbd

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"io"
	"math/big"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"
)

// memBackend is a small in-memory backend for the package's own tests
// (nbdtest's devices cannot be imported here: nbdtest imports nbd).
type memBackend struct {
	mu     sync.Mutex
	data   []byte
	badAt  int64 // reads meeting this byte fail with EIO there (-1: none)
	closed bool
}

func newMem(size int) *memBackend { return &memBackend{data: make([]byte, size), badAt: -1} }

func (m *memBackend) ReadAt(_ context.Context, p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.badAt >= off && m.badAt < off+int64(len(p)) {
		n := copy(p[:m.badAt-off], m.data[off:])
		return n, syscall.EIO
	}
	return copy(p, m.data[off:]), nil
}

func (m *memBackend) WriteAt(_ context.Context, p []byte, off int64, _ bool) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return copy(m.data[off:], p), nil
}

func (m *memBackend) WriteZeroes(_ context.Context, off, length int64, _ ZeroFlags) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.data[off : off+length])
	return nil
}

func (m *memBackend) Trim(context.Context, int64, int64, bool) error { return nil }
func (m *memBackend) Flush(context.Context) error                    { return nil }
func (m *memBackend) BlockStatus(_ context.Context, name string, off, length int64, ext []Extent) ([]Extent, error) {
	if name == "test:odd" {
		// Every other KiB flagged.
		for p := off / 2048 * 2048; p < off+length; p += 2048 {
			ext = append(ext, Extent{Offset: p + 1024, Length: 1024, Flags: 1})
		}
	}
	return ext, nil
}
func (m *memBackend) Close() error { m.closed = true; return nil }

// oneExport is a directory of one export, "x", over a memBackend.
type oneExport struct {
	size int
	ro   bool
	feat Features
	bs   BlockSizes
	bad  int64 // if nonzero, reads meeting this byte fail
}

func (o oneExport) Open(_ context.Context, _ *Peer, name string) (*Export, error) {
	if name != "x" && name != "y" {
		return nil, ErrUnknownExport
	}
	m := newMem(o.size)
	if o.bad != 0 {
		m.badAt = o.bad
	}
	return &Export{Name: name, Description: "test", Size: int64(o.size), ReadOnly: o.ro, Features: o.feat,
		BlockSizes: o.bs, MetaContexts: []string{"test:odd"}, Backend: m}, nil
}

func (o oneExport) List(context.Context, *Peer) ([]ExportInfo, error) {
	return []ExportInfo{{Name: "x", Description: "test"}}, nil
}

const allFeatures = CanFlush | CanFUA | CanTrim | CanWriteZeroes | CanFastZero | CanMultiConn

// fakeConn is a net.Conn that reads a fixed input and keeps what is
// written, for fuzzing without goroutines on the other end.
type fakeConn struct {
	in  io.Reader
	mu  sync.Mutex
	out bytes.Buffer
}

func (c *fakeConn) Read(p []byte) (int, error) { return c.in.Read(p) }
func (c *fakeConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.Write(p)
}
func (c *fakeConn) Close() error                     { return nil }
func (c *fakeConn) LocalAddr() net.Addr              { return &net.UnixAddr{Name: "fake", Net: "unix"} }
func (c *fakeConn) RemoteAddr() net.Addr             { return &net.UnixAddr{Name: "fake", Net: "unix"} }
func (c *fakeConn) SetDeadline(time.Time) error      { return nil }
func (c *fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fakeConn) SetWriteDeadline(time.Time) error { return nil }

// session is a test client speaking raw bytes to a server over a pipe.
type session struct {
	t    testing.TB
	c    net.Conn
	done chan error
}

func startSession(t testing.TB, srv *Server) *session {
	t.Helper()
	a, b := net.Pipe()
	s := &session{t: t, c: a, done: make(chan error, 1)}
	go func() { s.done <- srv.ServeConn(context.Background(), b) }()
	t.Cleanup(func() { a.Close() })
	a.SetDeadline(time.Now().Add(10 * time.Second))
	return s
}

func (s *session) read(n int) []byte {
	s.t.Helper()
	b := make([]byte, n)
	if _, err := io.ReadFull(s.c, b); err != nil {
		s.t.Fatalf("reading %d bytes: %v", n, err)
	}
	return b
}

func (s *session) write(b []byte) {
	s.t.Helper()
	if _, err := s.c.Write(b); err != nil {
		s.t.Fatalf("writing: %v", err)
	}
}

// greet reads the greeting and sends client flags.
func (s *session) greet(cflags uint32) {
	s.t.Helper()
	g := s.read(18)
	if binary.BigEndian.Uint64(g) != nbdMagic || binary.BigEndian.Uint64(g[8:]) != ihaveopt ||
		binary.BigEndian.Uint16(g[16:]) != flagFixedNewstyle|flagNoZeroes {
		s.t.Fatalf("greeting %x", g)
	}
	s.write(binary.BigEndian.AppendUint32(nil, cflags))
}

func optionBytes(opt uint32, data []byte) []byte {
	b := binary.BigEndian.AppendUint64(nil, ihaveopt)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

func (s *session) option(opt uint32, data []byte) { s.write(optionBytes(opt, data)) }

// reply reads one option reply to opt and returns its type and payload.
func (s *session) reply(opt uint32) (uint32, []byte) {
	s.t.Helper()
	h := s.read(20)
	if binary.BigEndian.Uint64(h) != repMagic || binary.BigEndian.Uint32(h[8:]) != opt {
		s.t.Fatalf("reply header %x to option %d", h, opt)
	}
	return binary.BigEndian.Uint32(h[12:]), s.read(int(binary.BigEndian.Uint32(h[16:])))
}

// ended reports whether the server ended the session (within a second).
func (s *session) ended() bool {
	s.c.SetReadDeadline(time.Now().Add(time.Second))
	var b [1]byte
	_, err := s.c.Read(b[:])
	return err == io.EOF || err == io.ErrClosedPipe
}

func requestBytes(flags, cmd uint16, cookie, off uint64, length uint32) []byte {
	var h [requestHeaderLen]byte
	putRequestHeader(h[:], flags, cmd, cookie, off, length)
	return h[:]
}

// testTLSConfig is a server configuration with a self-signed certificate.
func testTLSConfig(t testing.TB) *tls.Config {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}
