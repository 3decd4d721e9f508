package control_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/daxstack/daxstack/control"
	"github.com/daxstack/daxstack/internal/testenv"
	"github.com/daxstack/daxstack/nbd"
	"github.com/daxstack/daxstack/nbd/nbdtest"
	"github.com/daxstack/daxstack/nbdleaf"
	"github.com/daxstack/daxstack/rmapchain"
)

// nbdServer is an in-process NBD server (the nbd package's) on a unix
// socket, which a test stops and starts again.
type nbdServer struct {
	t    *testing.T
	sock string
	dir  *nbdtest.Dir
	mu   sync.Mutex
	stop func()
}

func newNBDServer(t *testing.T) *nbdServer {
	t.Helper()
	d, err := os.MkdirTemp("", "nbdleaves") // short: socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	s := &nbdServer{t: t, sock: filepath.Join(d, "s"), dir: &nbdtest.Dir{}}
	s.start()
	t.Cleanup(s.kill)
	return s
}

func (s *nbdServer) start() {
	s.t.Helper()
	l, err := net.Listen("unix", s.sock)
	if err != nil {
		s.t.Fatal(err)
	}
	srv := &nbd.Server{Exports: s.dir, ShutdownGrace: time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ctx, l)
	}()
	s.mu.Lock()
	s.stop = func() { cancel(); <-done; os.Remove(s.sock) }
	s.mu.Unlock()
}

func (s *nbdServer) kill() {
	s.mu.Lock()
	stop := s.stop
	s.stop = nil
	s.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// uri names export in the spelling a user might type; the canonical one
// is what tables print.
func (s *nbdServer) uri(export string) string { return "nbd+unix:///" + export + "?socket=" + s.sock }

func (f *fixture) nbdEngine(daemon bool, cfg control.NBDConfig) *control.Engine {
	f.t.Helper()
	e, err := control.Open(control.Config{DB: f.db, LockTimeout: 2 * time.Second, Daemon: daemon,
		SysfsRoot: filepath.Join(f.dir, "nosys"), Now: func() time.Time { return f.now }, NBD: cfg})
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { e.Close() })
	return e
}

var rootPeer = control.WithPeer(context.Background(), control.Peer{})

// waitEvent waits for an event of kind on device after seq.
func waitEvent(t *testing.T, e *control.Engine, seq uint64, device string, kind rmapchain.Kind) rmapchain.Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := e.Events(bg, control.EventsReq{Since: seq, Devices: []string{device}})
		ok(t, err)
		for _, ev := range r.Events {
			if ev.Kind == kind {
				return ev
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s event on %s after %d: %+v", kind, device, seq, r.Events)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestNBDLeafTableAndLazyReopen: a table naming an export prints its
// canonical URI and is recorded with its identity; an engine opened later
// lists, prints and describes it with the server gone, without dialling,
// and dials when I/O comes.
func TestNBDLeafTableAndLazyReopen(t *testing.T) {
	f := newFixture(t, 1, 4096)
	s := newNBDServer(t)
	mem := nbdtest.NewMem(2048 * 512)
	s.dir.Add("a", mem, nbdtest.Options{MetaContexts: []string{}})
	// A query parameter order and an empty host the canonical form drops.
	typed := "nbd+unix:///a?socket=" + s.sock
	want, err := nbdleaf.Canonical(typed)
	ok(t, err)
	table := fmt.Sprintf("0 2048 linear %s 0\n2048 2048 linear %s 0", typed, f.leaves[0])
	e := f.nbdEngine(false, control.NBDConfig{})
	ok(t, e.Create(bg, control.CreateReq{Name: "top", Table: &table}))
	h, err := e.Open(bg, control.OpenReq{Name: "top", Write: true})
	ok(t, err)
	msg := []byte("remote sector 8")
	_, err = h.WriteAt(msg, 8*512)
	ok(t, err)
	ok(t, h.Close())
	if got := mem.Bytes()[8*512 : 8*512+len(msg)]; string(got) != string(msg) {
		t.Fatalf("server holds %q at sector 8", got)
	}
	ok(t, e.Close())

	// In the server's place, a socket that counts who connects and never
	// answers: reports must not connect at all.
	s.kill()
	counter, err := net.Listen("unix", s.sock)
	ok(t, err)
	var dialled atomic.Int64
	go func() {
		for {
			c, err := counter.Accept()
			if err != nil {
				return
			}
			dialled.Add(1)
			defer c.Close()
		}
	}()
	e = f.nbdEngine(false, control.NBDConfig{Grace: 100 * time.Millisecond})
	tr, err := e.Table(bg, control.TableReq{Name: "top"})
	ok(t, err)
	if got := tableLines(tr); got != fmt.Sprintf("0 2048 linear %s 0\n2048 2048 linear %s 0", want, f.leaves[0]) {
		t.Fatalf("table:\n%s", got)
	}
	info, err := e.Info(bg, control.NameReq{Name: "top"})
	ok(t, err)
	if len(info.Lost) != 0 || info.Size != 4096 || len(info.Deps) != 2 || info.Deps[0].Ref != want && info.Deps[1].Ref != want {
		t.Fatalf("info with the server away: %+v", info)
	}
	_, err = e.List(bg)
	ok(t, err)
	_, err = e.Badblocks(bg, control.NameReq{Name: "top"})
	ok(t, err)
	counter.Close()
	if n := dialled.Load(); n != 0 {
		t.Fatalf("table, info, ls and badblocks connected to the server %d times", n)
	}
	os.Remove(s.sock)
	// I/O dials: the server is away, so the read fails (lost after the
	// grace period), and works once it is back.
	h, err = e.Open(bg, control.OpenReq{Name: "top"})
	ok(t, err)
	defer h.Close()
	if _, err := h.ReadAt(make([]byte, 512), 8*512); err == nil {
		t.Fatal("read of an export whose server is away succeeded")
	}
	s.start()
	buf := make([]byte, len(msg))
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := h.ReadAt(buf, 8*512)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("read after the server came back: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if string(buf) != string(msg) {
		t.Fatalf("read back %q", buf)
	}
}

// TestNBDLeafLostAndRestored: in the daemon, a server gone past the grace
// period makes the leaf lost with events over what it backs on every
// device above, recorded; its return restores it.
func TestNBDLeafLostAndRestored(t *testing.T) {
	f := newFixture(t, 1, 4096)
	s := newNBDServer(t)
	s.dir.Add("a", nbdtest.NewMem(1024*512), nbdtest.Options{MetaContexts: []string{}})
	e := f.nbdEngine(true, control.NBDConfig{Grace: 200 * time.Millisecond})
	s0 := fmt.Sprintf("0 2048 striped 2 8 %s 0 %s 0", s.uri("a"), f.leaves[0])
	top := "0 2048 linear s0 0"
	ok(t, e.Create(rootPeer, control.CreateReq{Name: "s0", Table: &s0}))
	ok(t, e.Create(rootPeer, control.CreateReq{Name: "top", Table: &top}))
	r, err := e.Events(bg, control.EventsReq{})
	ok(t, err)
	base := r.Last
	s.kill()
	ev := waitEvent(t, e, base, "top", rmapchain.Lost)
	// Stripe 0 of 8-sector chunks: the even chunks of top.
	if got, want := ev.Ranges.String(), "{0+8*128/16}"; got != want {
		t.Fatalf("lost ranges on top: %s, want %s", got, want)
	}
	waitEvent(t, e, base, "s0", rmapchain.Lost)
	info, err := e.Info(bg, control.NameReq{Name: "top"})
	ok(t, err)
	if len(info.Lost) != 1 || !strings.HasPrefix(info.Lost[0], "nbd+unix:") {
		t.Fatalf("top after the loss: %+v", info)
	}
	s.start()
	waitEvent(t, e, base, "top", rmapchain.Restored)
	info, err = e.Info(bg, control.NameReq{Name: "top"})
	ok(t, err)
	if len(info.Lost) != 0 {
		t.Fatalf("top after the return: %+v", info)
	}
}

// TestNBDLeafRemotePoison: a server that shows its bad ranges in
// daxstack:badblocks has them polled into the leaf's poison, translated to
// the top device's badblocks and logged as media errors; a write clears
// them on the server, and the next poll clears them here.
func TestNBDLeafRemotePoison(t *testing.T) {
	f := newFixture(t, 0, 0)
	s := newNBDServer(t)
	mem := nbdtest.NewMem(1024 * 512)
	s.dir.Add("a", mem, nbdtest.Options{Description: "far-uuid"})
	e := f.nbdEngine(true, control.NBDConfig{Poll: 20 * time.Millisecond})
	top := fmt.Sprintf("0 1000 linear %s 24", s.uri("a"))
	ok(t, e.Create(rootPeer, control.CreateReq{Name: "top", Table: &top}))
	r, err := e.Events(bg, control.EventsReq{})
	ok(t, err)
	mem.Bad.Add(100*512, 4*512)
	ev := waitEvent(t, e, r.Last, "top", rmapchain.MediaError)
	if got := ev.Ranges.String(); got != "{76+4}" {
		t.Fatalf("media error on top: %s", got)
	}
	bb, err := e.Badblocks(bg, control.NameReq{Name: "top"})
	ok(t, err)
	if got := bb.Ranges.String(); got != "{76+4}" {
		t.Fatalf("badblocks of top: %s", got)
	}
	h, err := e.Open(bg, control.OpenReq{Name: "top", Write: true})
	ok(t, err)
	defer h.Close()
	_, err = h.WriteAt(make([]byte, 4*512), 76*512)
	ok(t, err)
	waitEvent(t, e, r.Last, "top", rmapchain.Cleared)
	if l := mem.Bad.List(); len(l) != 0 {
		t.Fatalf("server's bad ranges after the write: %v", l)
	}
}

// TestNBDLeafAccess: a peer that is not root may not name a TCP server,
// nor a socket it cannot reach; a refused create changes nothing; a socket
// it can reach it may name.
func TestNBDLeafAccess(t *testing.T) {
	testenv.NeedRoot(t) // the checks run as another user
	f := newFixture(t, 0, 0)
	s := newNBDServer(t)
	s.dir.Add("a", nbdtest.NewMem(1024*512), nbdtest.Options{})
	ok(t, os.Chmod(s.sock, 0o600)) // root's only
	e := f.nbdEngine(true, control.NBDConfig{})
	user := control.WithPeer(bg, control.Peer{Cred: nbdleaf.Cred{UID: 65534, GID: 65534}})
	before := f.sum()
	for _, c := range []struct {
		ctx   context.Context
		table string
	}{
		{user, "0 8 linear nbd://127.0.0.1:1/a 0"},
		{user, "0 8 linear " + s.uri("a") + " 0"},
	} {
		err := e.Create(c.ctx, control.CreateReq{Name: "x", Table: &c.table})
		if !errors.Is(err, syscall.EACCES) {
			t.Errorf("create %q: %v, want EACCES", c.table, err)
		}
	}
	if f.sum() != before {
		t.Fatal("refused creates changed the database")
	}
	ok(t, os.Chmod(filepath.Dir(s.sock), 0o755))
	ok(t, os.Chmod(s.sock, 0o666))
	table := "0 8 linear " + s.uri("a") + " 0"
	ok(t, e.Create(user, control.CreateReq{Name: "x", Table: &table}))
}

// TestNBDLeafZeroesAndTrim: write-zeroes and discards through a device
// reach an nbdkit memory export as NBD_CMD_WRITE_ZEROES and NBD_CMD_TRIM
// (its log filter shows them), and the zeroed range reads as zeroes.
func TestNBDLeafZeroesAndTrim(t *testing.T) {
	f := newFixture(t, 0, 0)
	dir, err := os.MkdirTemp("", "nbdzero")
	ok(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock, log := filepath.Join(dir, "s"), filepath.Join(dir, "log")
	runNbdkit(t, sock, "--filter=log", "memory", "size=1M", "logfile="+log)
	e := f.nbdEngine(true, control.NBDConfig{})
	table := "0 2048 linear nbd+unix:///?socket=" + sock + " 0"
	ok(t, e.Create(rootPeer, control.CreateReq{Name: "top", Table: &table}))
	h, err := e.Open(bg, control.OpenReq{Name: "top", Write: true})
	ok(t, err)
	defer h.Close()
	_, err = h.WriteAt(bytes.Repeat([]byte{1}, 128<<10), 0)
	ok(t, err)
	ok(t, h.WriteZeroes(bg, 4096, 64<<10))
	ok(t, h.Discard(bg, 256<<10, 64<<10))
	ok(t, h.Flush(bg))
	got := make([]byte, 128<<10)
	_, err = h.ReadAt(got, 0)
	ok(t, err)
	want := bytes.Repeat([]byte{1}, 128<<10)
	copy(want[4096:4096+64<<10], make([]byte, 64<<10))
	if !bytes.Equal(got, want) {
		t.Fatal("the zeroed range does not read as zeroes around the data")
	}
	b, err := os.ReadFile(log)
	ok(t, err)
	for _, req := range []string{"Zero id=", "Trim id=", "Flush id="} {
		if !bytes.Contains(b, []byte(req)) {
			t.Errorf("nbdkit's log has no %q request:\n%s", req, b)
		}
	}
}
