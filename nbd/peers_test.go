package nbd_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/daxstack/daxstack/internal/testenv"
	"github.com/daxstack/daxstack/nbd"
	"github.com/daxstack/daxstack/nbd/nbdtest"
)

// The client against real servers: nbdkit (memory, file, the error and
// ddrescue filters, TLS) and qemu-nbd.

// startServer runs an NBD server program that listens on a new unix
// socket (passed by sockArg as its socket argument, its remaining args
// after) and returns the socket once it accepts connections.
func startServer(t *testing.T, name string, args func(sock string) []string) string {
	t.Helper()
	testenv.NeedCommand(t, name)
	sock := filepath.Join(t.TempDir(), name+".sock")
	cmd := exec.Command(name, args(sock)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		select {
		case <-done:
			t.Fatalf("%s exited: %s", name, stderr.String())
		default:
		}
		if _, err := os.Stat(sock); err == nil {
			return sock
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s did not create its socket", name)
	return ""
}

func nbdkit(t *testing.T, args ...string) string {
	return startServer(t, "nbdkit", func(sock string) []string {
		return append([]string{"-f", "--exit-with-parent", "-U", sock}, args...)
	})
}

// exercise writes, reads back, flushes, zeroes and trims through c.
func exercise(t *testing.T, c *nbd.Client) {
	t.Helper()
	ctx := context.Background()
	size := c.Info().Size
	want := make([]byte, min(size, 4<<20))
	for i := range want {
		want[i] = byte(i * 7)
	}
	if _, err := c.WriteAt(ctx, want, 0, false); err != nil {
		t.Fatal(err)
	}
	if c.Info().Flags&nbd.FlagSendFUA != 0 {
		if _, err := c.WriteAt(ctx, want[:4096], 0, true); err != nil {
			t.Fatal(err)
		}
	}
	got := make([]byte, len(want))
	if n, err := c.ReadAt(ctx, got, 0); err != nil || n != len(got) || !bytes.Equal(got, want) {
		t.Fatalf("read back: %d, %v, equal %v", n, err, bytes.Equal(got, want))
	}
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteZeroes(ctx, 4096, 4096, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadAt(ctx, got[:8192], 0); err != nil || !bytes.Equal(got[4096:8192], make([]byte, 4096)) {
		t.Fatalf("write zeroes: %v", err)
	}
	if c.Info().Flags&nbd.FlagSendTrim != 0 {
		if err := c.Trim(ctx, size/2&^4095, 4096, false); err != nil {
			t.Fatal(err)
		}
	}
}

func TestClientNbdkitMemory(t *testing.T) {
	sock := nbdkit(t, "memory", "64M")
	c := dial(t, unixURI(sock, ""), nbd.Options{MetaContexts: []string{nbd.BaseAllocation}})
	if c.Info().Size != 64<<20 || !c.Info().Structured {
		t.Fatalf("info %+v", c.Info())
	}
	exercise(t, c)
	st, err := c.BlockStatus(context.Background(), 0, 64<<20, false)
	if err != nil {
		t.Fatal(err)
	}
	ext := st[nbd.BaseAllocation]
	if len(ext) < 2 || ext[0].Offset != 0 || ext[0].Flags&nbd.StateHole != 0 {
		t.Errorf("base:allocation of nbdkit memory: %v", ext)
	}
	var end int64
	for _, e := range ext {
		if e.Offset != end {
			t.Fatalf("extents not consecutive: %v", ext)
		}
		end += e.Length
	}
	// nbdkit's memory plugin allocates what was written: the tail is a hole.
	if last := ext[len(ext)-1]; last.Flags&nbd.StateHole == 0 {
		t.Errorf("the unwritten tail is not a hole: %v", ext)
	}
}

func TestClientNbdkitFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f.img")
	if err := os.WriteFile(path, make([]byte, 8<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := nbdkit(t, "file", path)
	c := dial(t, unixURI(sock, ""), nbd.Options{})
	exercise(t, c)
	b, _ := os.ReadFile(path)
	if b[1] != 7 || b[4096] != 0 || b[8191] != 0 || b[8193] != 7 {
		t.Error("the file does not hold what was written")
	}
}

func TestClientQemuNbd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.img")
	if err := os.WriteFile(path, make([]byte, 8<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := startServer(t, "qemu-nbd", func(sock string) []string {
		return []string{"-k", sock, "-f", "raw", "-x", "qexp", "-t", "-e", "4", path}
	})
	c := dial(t, unixURI(sock, "qexp"), nbd.Options{MetaContexts: []string{nbd.BaseAllocation}})
	exercise(t, c)
	if _, err := c.BlockStatus(context.Background(), 0, 8<<20, true); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := nbd.Dial(ctx, unixURI(sock, "nosuch"), nbd.Options{}); !errors.Is(err, nbd.ErrUnknownExport) {
		t.Errorf("dial of a missing qemu-nbd export: %v", err)
	}
	list, err := nbd.ListExports(ctx, unixURI(sock, ""), nbd.Options{})
	if err != nil || len(list) != 1 || list[0].Name != "qexp" {
		t.Errorf("list: %v, %v", list, err)
	}
}

// TestClientNbdkitErrors: nbdkit's error filter fails reads (a structured
// NBD_REPLY_TYPE_ERROR) while a file exists; each failure is a media
// error of that request alone.
func TestClientNbdkitErrors(t *testing.T) {
	trigger := filepath.Join(t.TempDir(), "fail")
	sock := nbdkit(t, "--filter=error", "memory", "1M", "error-pread=EIO", "error-pread-rate=100%", "error-file="+trigger)
	c := dial(t, unixURI(sock, ""), nbd.Options{})
	ctx := context.Background()
	p := make([]byte, 4096)
	if _, err := c.ReadAt(ctx, p, 0); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(trigger, nil, 0o600)
	n, err := c.ReadAt(ctx, p, 8192)
	var ne *nbd.Error
	if !errors.Is(err, syscall.EIO) || !errors.As(err, &ne) || ne.Op != "read" || n != 0 {
		t.Fatalf("read with errors on: %d, %v", n, err)
	}
	if _, err := c.WriteAt(ctx, p, 0, false); err != nil {
		t.Errorf("a write failed with only reads failing: %v", err)
	}
	os.Remove(trigger)
	if _, err := c.ReadAt(ctx, p, 8192); err != nil {
		t.Fatalf("read after the errors stopped: %v", err)
	}
}

// TestClientNbdkitDdrescue: errors at chosen offsets (nbdkit's ddrescue
// filter over a read-only file).
func TestClientNbdkitDdrescue(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "img")
	os.WriteFile(img, bytes.Repeat([]byte{0x42}, 1<<20), 0o600)
	mapfile := filepath.Join(dir, "map")
	os.WriteFile(mapfile, []byte("# mapfile\n0x00000000 +\n0x00000000 0x00010000 +\n0x00010000 0x00000200 -\n0x00010200 0x000efe00 +\n"), 0o600)
	sock := nbdkit(t, "--filter=ddrescue", "file", img, "ddrescue-mapfile="+mapfile)
	c := dial(t, unixURI(sock, ""), nbd.Options{})
	if c.Info().Flags&nbd.FlagReadOnly == 0 {
		t.Error("ddrescue export not read-only")
	}
	ctx := context.Background()
	p := make([]byte, 512)
	for _, tc := range []struct {
		off  int64
		fail bool
	}{{0xfe00, false}, {0x10000, true}, {0x10200, false}} {
		_, err := c.ReadAt(ctx, p, tc.off)
		if got := errors.Is(err, syscall.EIO); got != tc.fail {
			t.Errorf("read at %#x: %v, want failure %v", tc.off, err, tc.fail)
		}
	}
	if _, err := c.WriteAt(ctx, p, 0, false); !errors.Is(err, nbd.ErrReadOnly) {
		t.Errorf("write to a read-only export: %v", err)
	}
}

func TestClientNbdkitTLS(t *testing.T) {
	certs := nbdtest.NewCerts(t, "kit")
	sock := nbdkit(t, "--tls=require", "--tls-certificates="+certs.Dir, "--tls-verify-peer", "memory", "1M")
	c := dial(t, "nbds+unix:///?socket="+sock, nbd.Options{TLSConfig: certs.ClientConfig()})
	if !c.Info().TLS {
		t.Fatal("no TLS")
	}
	exercise(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := nbd.Dial(ctx, unixURI(sock, ""), nbd.Options{}); !errors.Is(err, nbd.ErrTLSRequired) {
		t.Errorf("plain dial of nbdkit --tls=require: %v", err)
	}
	rogue := nbdtest.NewCerts(t, "rogue")
	bad := certs.ClientConfig()
	bad.Certificates = rogue.ClientConfig().Certificates
	if _, err := nbd.Dial(ctx, "nbds+unix:///?socket="+sock, nbd.Options{TLSConfig: bad}); err == nil {
		t.Error("nbdkit accepted a client certificate of another CA")
	}
}

// TestClientOwnServerExportGone: a removed export fails the later
// requests of its connections with NBD_ESHUTDOWN; a resize is seen by new
// connections.
func TestClientOwnServerExportGone(t *testing.T) {
	srv, dir, m := memServer(t, 1<<20, nbdtest.Options{})
	sock := serve(t, srv)
	c := dial(t, unixURI(sock, "mem"), nbd.Options{})
	ctx := context.Background()
	p := make([]byte, 4096)
	if _, err := c.ReadAt(ctx, p, 0); err != nil {
		t.Fatal(err)
	}
	m.Resize(2 << 20)
	if c2 := dial(t, unixURI(sock, "mem"), nbd.Options{}); c2.Info().Size != 2<<20 || c.Info().Size != 1<<20 {
		t.Errorf("after a resize: new connection %d, old %d", c2.Info().Size, c.Info().Size)
	}
	if dir.Handles("mem") != 2 {
		t.Errorf("%d handles open, want 2", dir.Handles("mem"))
	}
	dir.Remove("mem")
	if _, err := c.ReadAt(ctx, p, 0); !errors.Is(err, nbd.ESHUTDOWN) {
		t.Errorf("read after removal: %v, want ESHUTDOWN", err)
	}
	// The spec: told NBD_ESHUTDOWN, the client disconnects.
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Error("the client stayed connected after NBD_ESHUTDOWN")
	}
	if _, err := c.ReadAt(ctx, p, 0); !errors.Is(err, nbd.ErrClosed) {
		t.Errorf("read after the disconnect: %v, want ErrClosed", err)
	}
	ctx2, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := nbd.Dial(ctx2, unixURI(sock, "mem"), nbd.Options{}); !errors.Is(err, nbd.ErrUnknownExport) {
		t.Errorf("dial of a removed export: %v", err)
	}
}
