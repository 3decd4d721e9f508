package nbd_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/daxstack/daxstack/nbd"
	"github.com/daxstack/daxstack/nbd/nbdtest"
)

func TestAuthorize(t *testing.T) {
	srv, _, _ := memServer(t, 1<<20, nbdtest.Options{})
	var seen atomic.Int64
	var refuse atomic.Bool
	srv.Authorize = func(p *nbd.Peer) error {
		if p.Cred == nil || int(p.Cred.Uid) != os.Getuid() || int(p.Cred.Pid) != os.Getpid() {
			t.Errorf("peer credentials %+v", p.Cred)
		}
		seen.Add(1)
		if refuse.Load() {
			return errors.New("not you")
		}
		return nil
	}
	sock := serve(t, srv)
	dial(t, unixURI(sock, "mem"), nbd.Options{})
	refuse.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := nbd.Dial(ctx, unixURI(sock, "mem"), nbd.Options{}); err == nil {
		t.Error("a refused peer connected")
	}
	if seen.Load() != 2 {
		t.Errorf("Authorize called %d times, want 2", seen.Load())
	}
}

func TestDeniedExport(t *testing.T) {
	srv, _, _ := memServer(t, 1<<20, nbdtest.Options{Deny: func(*nbd.Peer) bool { return true }})
	sock := serve(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := nbd.Dial(ctx, unixURI(sock, "mem"), nbd.Options{}); !errors.Is(err, nbd.ErrDenied) {
		t.Errorf("dial of a denied export: %v, want ErrDenied", err)
	}
	list, err := nbd.ListExports(ctx, unixURI(sock, ""), nbd.Options{})
	if err != nil || len(list) != 0 {
		t.Errorf("a denied export is listed: %v, %v", list, err)
	}
}

// TestShutdown: when Serve's context ends, requests in flight finish,
// later ones get NBD_ESHUTDOWN, and Serve returns within the grace.
func TestShutdown(t *testing.T) {
	srv, dir, _ := memServer(t, 1<<20, nbdtest.Options{})
	srv.ShutdownGrace = 500 * time.Millisecond
	sock := filepath.Join(t.TempDir(), "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	c := dial(t, unixURI(sock, "mem"), nbd.Options{})
	p := make([]byte, 4096)
	if _, err := c.ReadAt(context.Background(), p, 0); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	cancel()
	time.Sleep(50 * time.Millisecond)
	if _, err := c.ReadAt(context.Background(), p, 0); !errors.Is(err, nbd.ESHUTDOWN) && !errors.Is(err, nbd.ErrClosed) {
		t.Errorf("read during shutdown: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("Serve took %v to return", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	select {
	case <-c.Done():
	case <-time.After(time.Second):
		t.Error("the client did not see its connection end")
	}
	if n := dir.Handles("mem"); n != 0 {
		t.Errorf("%d handles still open", n)
	}
	if _, err := os.Stat(sock); err == nil {
		// The listener is closed (Go removes the socket file of a
		// unix listener it created when it closes it).
		t.Error("the socket file is still there")
	}
}

func TestMaxConnections(t *testing.T) {
	srv, _, _ := memServer(t, 1<<20, nbdtest.Options{})
	srv.MaxConnections = 2
	sock := serve(t, srv)
	dial(t, unixURI(sock, "mem"), nbd.Options{})
	dial(t, unixURI(sock, "mem"), nbd.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := nbd.Dial(ctx, unixURI(sock, "mem"), nbd.Options{}); err == nil {
		t.Error("a third connection was served")
	}
}
