package nbdleaf_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/nbd"
	"github.com/daxstack/daxstack/nbd/nbdtest"
	"github.com/daxstack/daxstack/nbdleaf"
	"github.com/daxstack/daxstack/stack"
)

var _ stack.Leaf = (*nbdleaf.Leaf)(nil)

// server is one kind of NBD server a test runs: it returns the URI to
// open, how many connections the leaf should keep, and, for servers with
// a backing file, that file.
type server struct {
	name  string
	conns int
	start func(t *testing.T, dir string, size int64) (uri, file string)
}

var servers = []server{
	{"nbdkit-memory", 2, func(t *testing.T, dir string, size int64) (string, string) {
		sock := filepath.Join(dir, "s")
		startNbdkit(t, sock, "memory", fmt.Sprint(size))
		return unixURI(sock, ""), ""
	}},
	{"nbdkit-file", 2, func(t *testing.T, dir string, size int64) (string, string) {
		sock, file := filepath.Join(dir, "s"), filepath.Join(dir, "img")
		mkfile(t, file, size)
		startNbdkit(t, sock, "file", file)
		return unixURI(sock, ""), file
	}},
	{"qemu-nbd", 1, func(t *testing.T, dir string, size int64) (string, string) {
		sock, file := filepath.Join(dir, "s"), filepath.Join(dir, "img")
		mkfile(t, file, size)
		startQemuNBD(t, sock, file, "--shared=4")
		return unixURI(sock, ""), file
	}},
	{"daxstack-nbd", 2, func(t *testing.T, dir string, size int64) (string, string) {
		uri, _, _ := memExport(t, size, nbdtest.Options{Description: "uuid-1"})
		return uri, ""
	}},
}

func mkfile(t *testing.T, file string, size int64) {
	t.Helper()
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(file, size); err != nil {
		t.Fatal(err)
	}
}

// TestReadWrite writes and reads back through a leaf on every kind of
// server, checks the bytes in the backing file where there is one, and
// runs several goroutines at once.
func TestReadWrite(t *testing.T) {
	const size = 8 << 20
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) {
			uri, file := srv.start(t, t.TempDir(), size)
			l := open(t, opener(nil, nil), uri)
			if l.Size() != size/512 || l.Kind() != "nbd" || l.Ref() != uri || l.ID() != "nbd:"+uri || l.Path() != uri {
				t.Fatalf("leaf: size %d kind %s ref %s id %s", l.Size(), l.Kind(), l.Ref(), l.ID())
			}
			waitFor(t, 5e9, "connections up", func() bool { return l.Connected() == srv.conns })

			// Writes here and there, aligned and not, each read back;
			// then the whole leaf, and the backing file, hold image.
			image := make([]byte, size)
			cases := []struct{ off, n int64 }{{0, 4096}, {1000, 3000}, {1 << 20, 1 << 20}, {size - 700, 700}, {3 << 20, 5<<20 - 1<<19}}
			for i, c := range cases {
				want := pattern(int(c.n), byte(i+1))
				if n, err := l.WriteAt(want, c.off); n != len(want) || err != nil {
					t.Fatalf("WriteAt(%d bytes at %d) = %d, %v", c.n, c.off, n, err)
				}
				copy(image[c.off:], want)
				got := make([]byte, c.n)
				if n, err := l.ReadAt(got, c.off); n != len(got) || err != nil || !bytes.Equal(got, want) {
					t.Fatalf("ReadAt(%d at %d) = %d, %v; same bytes: %v", c.n, c.off, n, err, bytes.Equal(got, want))
				}
			}
			if err := l.Sync(); err != nil {
				t.Fatalf("Sync: %v", err)
			}
			all := make([]byte, size)
			if n, err := l.ReadAt(all, 0); n != size || err != nil || !bytes.Equal(all, image) {
				t.Fatalf("whole leaf: %d, %v, as written: %v", n, err, bytes.Equal(all, image))
			}
			if file != "" {
				b, err := os.ReadFile(file)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(b, image) {
					t.Errorf("the backing file does not hold the bytes written where they were written")
				}
			}

			// The end: a read that passes it gets what there is and
			// io.EOF, a write that passes it ENOSPC.
			p := make([]byte, 2048)
			if n, err := l.ReadAt(p, size-1024); n != 1024 || err != io.EOF {
				t.Errorf("read over the end = %d, %v", n, err)
			}
			if n, err := l.ReadAt(p, size); n != 0 || err != io.EOF {
				t.Errorf("read at the end = %d, %v", n, err)
			}
			if n, err := l.WriteAt(p, size-1024); n != 1024 || !errors.Is(err, syscall.ENOSPC) {
				t.Errorf("write over the end = %d, %v", n, err)
			}
			if _, err := l.ReadAt(p, -1); !errors.Is(err, nbdleaf.ErrRange) {
				t.Errorf("read at -1: %v", err)
			}

			// Goroutines at once, each on its own region, in pieces that
			// are not aligned to anything.
			var wg sync.WaitGroup
			errs := make(chan error, 8)
			for g := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					base := int64(g) << 20
					for k := range 16 {
						off, n := base+int64(k)*(61<<10)+int64(g), 61<<10-int64(k)
						want := pattern(int(n), byte(g*16+k))
						if _, err := l.WriteAt(want, off); err != nil {
							errs <- err
							return
						}
						got := make([]byte, n)
						if _, err := l.ReadAt(got, off); err != nil || !bytes.Equal(got, want) {
							errs <- fmt.Errorf("goroutine %d piece %d: %v, same: %v", g, k, err, bytes.Equal(got, want))
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

// TestFlushFUA shows through nbdkit's log filter that Sync sends
// NBD_CMD_FLUSH (once for a multi-conn server, none when nothing was
// written), WriteAtFUA sends NBD_CMD_FLAG_FUA (or write and flush on a
// server without FUA), and WriteZeroes and Discard reach the server as
// WRITE_ZEROES and TRIM, or say the server does not offer them.
func TestFlushFUA(t *testing.T) {
	dir := t.TempDir()
	logf := filepath.Join(dir, "log")
	sock := filepath.Join(dir, "s")
	startNbdkit(t, sock, "--filter=log", "memory", "4M", "logfile="+logf)
	l := open(t, opener(nil, nil), unixURI(sock, ""))
	waitFor(t, 5e9, "two connections", func() bool { return l.Connected() == 2 })

	for i := range 8 { // round robin: both connections take writes
		if _, err := l.WriteAt(pattern(4096, 1), int64(i)*4096); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := l.Sync(); err != nil { // nothing new: no flush
		t.Fatal(err)
	}
	if got := len(logLines(t, logf, " Flush id=")); got != 1 {
		t.Errorf("%d flushes for two Syncs of a multi-conn server with writes on both connections, want 1", got)
	}
	if got := len(logLines(t, logf, " Write id=", "fua=1")); got != 0 {
		t.Errorf("FUA writes before any WriteAtFUA: %d", got)
	}
	if _, err := l.WriteAtFUA(pattern(512, 2), 65536); err != nil {
		t.Fatal(err)
	}
	if got := logLines(t, logf, " Write id=", "offset=0x10000 count=0x200 fua=1"); len(got) != 1 {
		t.Errorf("WriteAtFUA: log has %q", got)
	}
	if err := l.WriteZeroes(8192, 16384); err != nil {
		t.Fatal(err)
	}
	if got := logLines(t, logf, " Zero id=", "offset=0x2000 count=0x4000"); len(got) != 1 {
		t.Errorf("WriteZeroes: log has %q", got)
	}
	zero := make([]byte, 16384)
	if _, err := l.ReadAt(zero, 8192); err != nil || !bytes.Equal(zero, make([]byte, 16384)) {
		t.Errorf("zeroed range reads %v, zero: %v", err, bytes.Equal(zero, make([]byte, 16384)))
	}
	if err := l.Discard(1<<20, 1<<20); err != nil {
		t.Fatal(err)
	}
	if got := logLines(t, logf, " Trim id=", "offset=0x100000 count=0x100000"); len(got) != 1 {
		t.Errorf("Discard: log has %q", got)
	}

	// A server without FUA, WRITE_ZEROES or TRIM: daxstack's, counting.
	dev := &counting{Mem: nbdtest.NewMem(4 << 20)}
	feat := nbd.CanFlush | nbd.CanMultiConn
	uri, _, _ := exportDev(t, dev, nbdtest.Options{Features: &feat})
	l2 := open(t, opener(nil, nil), uri)
	if _, err := l2.WriteAtFUA(pattern(512, 3), 4096); err != nil {
		t.Fatal(err)
	}
	if w, f, fw := dev.writes.Load(), dev.flushes.Load(), dev.fuaWrites.Load(); w != 1 || f != 1 || fw != 0 {
		t.Errorf("FUA by write and flush: %d writes (%d with FUA), %d flushes", w, fw, f)
	}
	if err := l2.WriteZeroes(0, 4096); !errors.Is(err, nbdleaf.ErrUnsupported) || !errors.Is(err, syscall.EOPNOTSUPP) {
		t.Errorf("WriteZeroes without WRITE_ZEROES: %v", err)
	}
	if err := l2.Discard(0, 4096); !errors.Is(err, nbdleaf.ErrUnsupported) {
		t.Errorf("Discard without TRIM: %v", err)
	}
	if err := l2.Sync(); err != nil || dev.flushes.Load() != 1 {
		t.Errorf("Sync after a FUA write: %v, %d flushes", err, dev.flushes.Load())
	}
	if _, err := l2.WriteAt(pattern(512, 4), 0); err != nil {
		t.Fatal(err)
	}
	if err := l2.Sync(); err != nil || dev.flushes.Load() != 2 {
		t.Errorf("Sync after a write: %v, %d flushes", err, dev.flushes.Load())
	}
}

// counting is a device that counts writes, FUA writes and flushes.
type counting struct {
	*nbdtest.Mem
	writes, fuaWrites, flushes atomic.Int64
}

func (c *counting) Handle(gone <-chan struct{}) nbd.Backend {
	return &countingHandle{Backend: c.Mem.Handle(gone), c: c}
}

type countingHandle struct {
	nbd.Backend
	c *counting
}

func (h *countingHandle) WriteAt(ctx context.Context, p []byte, off int64, fua bool) (int, error) {
	h.c.writes.Add(1)
	if fua {
		h.c.fuaWrites.Add(1)
	}
	return h.Backend.WriteAt(ctx, p, off, fua)
}

func (h *countingHandle) Flush(ctx context.Context) error {
	h.c.flushes.Add(1)
	return h.Backend.Flush(ctx)
}

// TestMinimumBlock runs unaligned I/O against a server whose minimum block
// is 4 KiB: reads go through a bounce buffer, writes read, modify and
// write the partial blocks, and writes to neighbouring bytes of one block
// from several goroutines do not undo each other.
func TestMinimumBlock(t *testing.T) {
	uri, m, _ := memExport(t, 1<<20, nbdtest.Options{MetaContexts: []string{},
		BlockSizes: nbd.BlockSizes{Minimum: 4096, Preferred: 4096, MaxPayload: 1 << 20}})
	l := open(t, opener(nil, nil), uri)
	want := make([]byte, 1<<20)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range 32 {
				off := int64(k*8192 + g*512 + 100)
				p := pattern(300, byte(g+k))
				if _, err := l.WriteAt(p, off); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				copy(want[off:], p)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if !bytes.Equal(m.Bytes(), want) {
		t.Fatal("the device does not hold what the unaligned writes wrote")
	}
	got := make([]byte, 5000)
	if n, err := l.ReadAt(got, 8192+7); n != 5000 || err != nil || !bytes.Equal(got, want[8192+7:8192+7+5000]) {
		t.Errorf("unaligned read: %d, %v", n, err)
	}

	// A media error is narrowed down to the server's minimum block, not
	// below: one bad byte makes its 4 KiB block (8 sectors) bad.
	m.Bad.Add(5000, 1)
	all := make([]byte, 16384)
	n, err := l.ReadAt(all, 1)
	var pe *nbdleaf.PoisonError
	if n != 4095 || !errors.As(err, &pe) || pe.Bad != (extent.Extent{Start: 8, Len: 8}) || !l.BadBlocks().Equal(sectors(8, 8)) {
		t.Errorf("read over a bad byte: %d, %v; poison %v", n, err, l.BadBlocks())
	}
}

// TestTLS reads and writes over nbds+unix:// with client certificates, on
// daxstack's server and on nbdkit, with the configuration ClientTLS
// builds from the files the server side uses.
func TestTLS(t *testing.T) {
	certs := nbdtest.NewCerts(t, "tls")
	cfg, err := nbdleaf.ClientTLS(filepath.Join(certs.Dir, "client-cert.pem"), filepath.Join(certs.Dir, "client-key.pem"),
		filepath.Join(certs.Dir, "ca-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	dir := &nbdtest.Dir{}
	dir.Add("mem", nbdtest.NewMem(1<<20), nbdtest.Options{})
	own := filepath.Join(t.TempDir(), "own.sock")
	serveOwn(t, &nbd.Server{Exports: dir, TLSConfig: certs.ServerConfig(), RequireTLS: true, Log: quietLog()}, own)
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &nbd.Server{Exports: dir, TLSConfig: certs.ServerConfig(), RequireTLS: true, Log: quietLog()}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { srv.Serve(ctx, tcp); close(served) }()
	t.Cleanup(func() { cancel(); <-served })
	kit := filepath.Join(t.TempDir(), "kit.sock")
	startNbdkit(t, kit, "--tls=require", "--tls-certificates="+certs.Dir, "--tls-verify-peer", "memory", "1M")

	// Over TCP the server's name is the URI's host (an IP address here,
	// which the test certificate names).
	for _, uri := range []string{"nbds+unix:///mem?socket=" + own, "nbds+unix:///?socket=" + kit, "nbds://" + tcp.Addr().String() + "/mem"} {
		o := opener(nil, nil)
		if _, err := o.Open(t.Context(), uri, nil); !errors.Is(err, nbdleaf.ErrTLS) {
			t.Errorf("%s without a TLS configuration: %v", uri, err)
		}
		o.TLSConfig = cfg
		l := open(t, o, uri)
		if _, err := l.WriteAtFUA([]byte("over TLS"), 512); err != nil {
			t.Fatalf("%s: %v", uri, err)
		}
		p := make([]byte, 8)
		if _, err := l.ReadAt(p, 512); err != nil || string(p) != "over TLS" {
			t.Errorf("%s: read %q, %v", uri, p, err)
		}
		if _, err := (&nbdleaf.Opener{}).Open(t.Context(), "nbd+unix:///mem?socket="+own, nil); err == nil {
			t.Errorf("plain connection to a server that requires TLS succeeded")
		}
	}
	if _, err := nbdleaf.ClientTLS(filepath.Join(certs.Dir, "client-cert.pem"), "", ""); err == nil {
		t.Error("ClientTLS took a certificate without its key")
	}
}
