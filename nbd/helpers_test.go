package nbd_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/daxstack/daxstack/internal/testenv"
	"github.com/daxstack/daxstack/nbd"
	"github.com/daxstack/daxstack/nbd/nbdtest"
)

// serve runs srv on a new unix socket in t.TempDir() until the test ends
// and returns the socket's path.
func serve(t testing.TB, srv *nbd.Server) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "nbd.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	serveOn(t, srv, l)
	return sock
}

// serveTCP runs srv on a loopback port and returns its address.
func serveTCP(t testing.TB, srv *nbd.Server) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveOn(t, srv, l)
	return l.Addr().String()
}

func serveOn(t testing.TB, srv *nbd.Server, l net.Listener) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Serve did not return after its context ended")
		}
	})
}

// memServer serves one Mem device as export "mem".
func memServer(t testing.TB, size int64, opt nbdtest.Options) (*nbd.Server, *nbdtest.Dir, *nbdtest.Mem) {
	dir := &nbdtest.Dir{}
	m := nbdtest.NewMem(size)
	dir.Add("mem", m, opt)
	return &nbd.Server{Exports: dir}, dir, m
}

func unixURI(sock, export string) string {
	return "nbd+unix:///" + export + "?socket=" + sock
}

// run runs a command and returns its standard output; a failure fails t.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := runErr(t, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// runErr runs a command (with a time limit) and returns its combined
// output.
func runErr(t testing.TB, name string, args ...string) (string, error) {
	t.Helper()
	testenv.NeedCommand(t, name)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "PATH=/usr/bin:/usr/sbin:/bin:"+os.Getenv("PATH"), "LIBNBD_DEBUG=0")
	out, err := cmd.CombinedOutput()
	return string(out), err
}
