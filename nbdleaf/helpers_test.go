package nbdleaf_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/internal/testenv"
	"github.com/daxstack/daxstack/nbd"
	"github.com/daxstack/daxstack/nbd/nbdtest"
	"github.com/daxstack/daxstack/nbdleaf"
)

// proc is a server process started for a test (nbdkit, qemu-nbd) on a
// unix socket.
type proc struct {
	t      testing.TB
	name   string
	args   []string
	sock   string
	cmd    *exec.Cmd
	out    *bytes.Buffer // read only once exited is closed
	exited chan struct{}
}

// toolEnv puts the system's programs first: nbdsh and friends must not
// pick up another Python.
func toolEnv() []string {
	return append(os.Environ(), "PATH=/usr/bin:/usr/sbin:/bin:/sbin:"+os.Getenv("PATH"), "LIBNBD_DEBUG=0")
}

// startNbdkit runs nbdkit -U sock with args (filters, plugin, parameters)
// until the test ends.
func startNbdkit(t testing.TB, sock string, args ...string) *proc {
	t.Helper()
	testenv.NeedCommand(t, "nbdkit")
	p := &proc{t: t, name: "nbdkit", sock: sock}
	p.args = append([]string{"-U", sock, "-f", "--exit-with-parent"}, args...)
	p.start()
	return p
}

// startQemuNBD serves file raw on sock with qemu-nbd until the test ends.
func startQemuNBD(t testing.TB, sock, file string, extra ...string) *proc {
	t.Helper()
	testenv.NeedCommand(t, "qemu-nbd")
	p := &proc{t: t, name: "qemu-nbd", sock: sock}
	p.args = append([]string{"-k", sock, "-f", "raw", "-t", "--cache=writeback"}, extra...)
	p.args = append(p.args, file)
	p.start()
	return p
}

func (p *proc) start() {
	t := p.t
	t.Helper()
	pid := filepath.Join(filepath.Dir(p.sock), filepath.Base(p.sock)+".pid")
	os.Remove(pid)
	os.Remove(p.sock)
	args := append([]string(nil), p.args...)
	if p.name == "nbdkit" {
		args = append([]string{"--pidfile", pid}, args...)
	} else {
		args = append([]string{"--pid-file", pid}, args...)
	}
	cmd := exec.Command(p.name, args...)
	cmd.Env = toolEnv()
	p.out = &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
	p.cmd = cmd
	t.Cleanup(p.kill)
	exited := make(chan struct{})
	p.exited = exited
	go func() {
		cmd.Wait()
		close(exited)
	}()
	for deadline := time.Now().Add(10 * time.Second); ; {
		select {
		case <-exited:
			t.Fatalf("%s %s exited:\n%s", p.name, strings.Join(args, " "), p.out)
		default:
		}
		if _, err := os.Stat(pid); err == nil {
			if _, err := os.Stat(p.sock); err == nil {
				return
			}
		}
		if time.Now().After(deadline) {
			p.kill()
			t.Fatalf("%s %s did not start:\n%s", p.name, strings.Join(args, " "), p.out)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// kill stops the server at once (SIGKILL: a crash, no goodbye to the
// clients) and removes its socket.
func (p *proc) kill() {
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Kill()
	<-p.exited
	p.cmd = nil
	os.Remove(p.sock)
}

// restart kills the server and starts it again with the same arguments.
func (p *proc) restart() {
	p.kill()
	p.start()
}

// unixURI is the URI of export on a unix socket.
func unixURI(sock, export string) string { return "nbd+unix:///" + export + "?socket=" + sock }

// serveOwn runs an nbd.Server with dir's exports on a unix socket in
// t.TempDir() until stop is called or the test ends.
func serveOwn(t testing.TB, srv *nbd.Server, sock string) (stop func()) {
	t.Helper()
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ctx, l)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Errorf("Serve did not return")
			}
			os.Remove(sock)
		})
	}
	t.Cleanup(stop)
	return stop
}

// memExport serves one nbdtest.Mem as export "mem" and returns its URI.
func memExport(t testing.TB, size int64, opt nbdtest.Options) (string, *nbdtest.Mem, *nbdtest.Dir) {
	t.Helper()
	m := nbdtest.NewMem(size)
	uri, dir, _ := exportDev(t, m, opt)
	return uri, m, dir
}

// exportDev serves dev as export "mem" on daxstack's server and returns
// its URI, the directory and a function that stops the server.
func exportDev(t testing.TB, dev nbdtest.Device, opt nbdtest.Options) (string, *nbdtest.Dir, func()) {
	t.Helper()
	dir := &nbdtest.Dir{}
	dir.Add("mem", dev, opt)
	sock := filepath.Join(t.TempDir(), "own.sock")
	stop := serveOwn(t, &nbd.Server{Exports: dir, Log: quietLog()}, sock)
	return unixURI(sock, "mem"), dir, stop
}

// quietLog drops everything below errors.
func quietLog() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}

// logBuf is a logger whose lines a test reads.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuf) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// events records what a leaf's callbacks heard.
type events struct {
	mu      sync.Mutex
	added   extent.Set
	cleared extent.Set
	poison  []string // "+set" and "-set", in order
	lost    []string // "lost: reason" and "restored"
	sum     uint64   // sectors of every change heard, added and cleared
	changed chan struct{}
}

func newEvents() *events { return &events{changed: make(chan struct{}, 1000)} }

func (e *events) onPoison(_ *nbdleaf.Leaf, added, cleared extent.Set) {
	e.mu.Lock()
	e.added = e.added.Union(added)
	e.cleared = e.cleared.Union(cleared)
	e.sum += added.Sectors() + cleared.Sectors()
	if !added.Empty() {
		e.poison = append(e.poison, "+"+added.String())
	}
	if !cleared.Empty() {
		e.poison = append(e.poison, "-"+cleared.String())
	}
	e.mu.Unlock()
	e.changed <- struct{}{}
}

func (e *events) onLost(_ *nbdleaf.Leaf, lost bool, why error) {
	e.mu.Lock()
	if lost {
		e.lost = append(e.lost, "lost: "+why.Error())
	} else {
		e.lost = append(e.lost, "restored")
	}
	e.mu.Unlock()
	e.changed <- struct{}{}
}

func (e *events) snapshot() (poison, lost []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.poison...), append([]string(nil), e.lost...)
}

// opener returns an Opener with short timings for tests, wired to ev.
func opener(ev *events, log *slog.Logger) *nbdleaf.Opener {
	o := &nbdleaf.Opener{Poll: 50 * time.Millisecond, Grace: 400 * time.Millisecond, Log: log}
	if log == nil {
		o.Log = quietLog()
	}
	if ev != nil {
		o.OnPoison, o.OnLost = ev.onPoison, ev.onLost
	}
	return o
}

// open opens ref with o and closes the leaf when the test ends.
func open(t testing.TB, o *nbdleaf.Opener, ref string) *nbdleaf.Leaf {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := o.Open(ctx, ref, nil)
	if err != nil {
		t.Fatalf("Open %s: %v", ref, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(start)
}

// pattern fills n bytes with a pattern that differs per offset and seed.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7+i/512) ^ seed
	}
	return b
}

// sectors makes a set of sector extents given as start, count pairs.
func sectors(pairs ...uint64) extent.Set {
	var ex []extent.Extent
	for i := 0; i+1 < len(pairs); i += 2 {
		ex = append(ex, extent.Extent{Start: pairs[i], Len: pairs[i+1]})
	}
	return extent.Of(ex...)
}

// logLines returns the lines of an nbdkit log filter's file that contain
// every one of the words.
func logLines(t testing.TB, file string, words ...string) []string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		ok := true
		for _, w := range words {
			ok = ok && strings.Contains(line, w)
		}
		if ok && line != "" {
			out = append(out, line)
		}
	}
	return out
}

func hexOff(v int64) string { return fmt.Sprintf("%#x", v) }
