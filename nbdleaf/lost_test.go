package nbdleaf_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/daxstack/daxstack/nbd"
	"github.com/daxstack/daxstack/nbd/nbdtest"
	"github.com/daxstack/daxstack/nbdleaf"
)

// lostWith checks that err is a *LostError matching ENXIO and reason.
func lostWith(t *testing.T, what string, err error, reason error) {
	t.Helper()
	var le *nbdleaf.LostError
	if !errors.As(err, &le) || !errors.Is(err, nbdleaf.ErrLost) || !errors.Is(err, syscall.ENXIO) || !errors.Is(err, reason) {
		t.Errorf("%s: %v, want a loss because %v", what, err, reason)
	}
}

// TestKillRestart kills the nbdkit process under a leaf: the leaf is lost
// within the grace period, restored when nbdkit comes back on the same
// socket with the same export, and not restored when another export
// (another size) answers there, with the reason given.
func TestKillRestart(t *testing.T) {
	dir := t.TempDir()
	sock, img, other := filepath.Join(dir, "s"), filepath.Join(dir, "img"), filepath.Join(dir, "other")
	mkfile(t, img, 4<<20)
	mkfile(t, other, 8<<20)
	srv := startNbdkit(t, sock, "file", img)
	ev := newEvents()
	o := opener(ev, nil)
	l := open(t, o, unixURI(sock, ""))
	l.Watch()
	data := pattern(64<<10, 21)
	if _, err := l.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}

	killed := time.Now()
	srv.kill()
	waitFor(t, o.Grace+3*time.Second, "lost after the kill", l.Lost)
	took := time.Since(killed)
	t.Logf("lost %v after the kill (grace %v)", took.Round(time.Millisecond), o.Grace)
	if took < o.Grace {
		t.Errorf("lost after %v, before the grace period %v was over", took, o.Grace)
	}
	_, err := l.ReadAt(make([]byte, 512), 0)
	lostWith(t, "read of a lost leaf", err, nbdleaf.ErrDisconnected)
	if !errors.Is(l.LostReason(), nbdleaf.ErrDisconnected) {
		t.Errorf("reason %v", l.LostReason())
	}

	srv.start()
	waitFor(t, 5*time.Second, "restored", func() bool { return !l.Lost() })
	p := make([]byte, len(data))
	if n, err := l.ReadAt(p, 0); n != len(p) || err != nil || !bytes.Equal(p, data) {
		t.Fatalf("read after the restore: %d, %v", n, err)
	}
	if err := l.Sync(); err != nil {
		t.Errorf("Sync after a restore, all writes flushed before: %v", err)
	}

	// Writes no flush covered, then a crash: the next Sync says so, once.
	if _, err := l.WriteAt(data[:4096], 128<<10); err != nil {
		t.Fatal(err)
	}
	srv.restart()
	waitFor(t, 5*time.Second, "reconnected", func() bool { return l.Connected() > 0 })
	if err := l.Sync(); !errors.Is(err, nbdleaf.ErrUnflushed) || !errors.Is(err, syscall.EIO) {
		t.Errorf("Sync after a crash that may have lost writes: %v", err)
	}
	if err := l.Sync(); err != nil {
		t.Errorf("second Sync: %v", err)
	}

	// Another export behind the socket: not taken.
	srv.kill()
	imposter := startNbdkit(t, sock, "file", other)
	waitFor(t, o.Grace+3*time.Second, "lost to another export", l.Lost)
	time.Sleep(o.Grace + 300*time.Millisecond) // time to be wrongly restored
	var ie *nbdleaf.IdentityError
	if !l.Lost() || !errors.As(l.LostReason(), &ie) || ie.Want.Size != 4<<20 || ie.Got.Size != 8<<20 {
		t.Fatalf("with another export behind the socket: lost %v, reason %v", l.Lost(), l.LostReason())
	}
	if !strings.Contains(l.LostReason().Error(), "recorded 4194304 bytes, no description, found 8388608 bytes") {
		t.Errorf("reason does not say what differs: %v", l.LostReason())
	}
	_, err = l.ReadAt(p, 0)
	lostWith(t, "read with another export behind the socket", err, nbdleaf.ErrChanged)

	// The right one again: restored.
	imposter.kill()
	srv.start()
	waitFor(t, 5*time.Second, "restored again", func() bool { return !l.Lost() })
	if n, err := l.ReadAt(p, 0); n != len(p) || err != nil || !bytes.Equal(p, data) {
		t.Fatalf("read after the second restore: %d, %v", n, err)
	}
	// Losses and returns alternate, each heard once; the quick restart
	// above is not a loss unless starting nbdkit took longer than the
	// grace period.
	_, lost := ev.snapshot()
	ok := len(lost) >= 4 && len(lost)%2 == 0 && strings.HasPrefix(lost[0], "lost: no connection to the server for 400ms")
	for i, e := range lost {
		ok = ok && (i%2 == 1) == (e == "restored")
	}
	if !ok {
		t.Errorf("OnLost heard %q", lost)
	}
}

// TestSameSizeTaken shows the rule the README states: NBD gives no other
// witness, so another server with an export of the same size and no
// description behind the address is taken as the same leaf (here qemu-nbd
// on another file where nbdkit was), while a description tells daxstack's
// devices apart (TestLazy).
func TestSameSizeTaken(t *testing.T) {
	dir := t.TempDir()
	sock, a, b := filepath.Join(dir, "s"), filepath.Join(dir, "a"), filepath.Join(dir, "b")
	mkfile(t, a, 1<<20)
	mkfile(t, b, 1<<20)
	srv := startNbdkit(t, sock, "file", a)
	ev := newEvents()
	o := opener(ev, nil)
	l := open(t, o, unixURI(sock, ""))
	l.Watch()
	srv.kill()
	waitFor(t, o.Grace+3*time.Second, "lost", l.Lost)
	startQemuNBD(t, sock, b)
	waitFor(t, 5*time.Second, "taken as restored", func() bool { return !l.Lost() })
}

// TestOutage: a drop shorter than the grace period is not a loss: I/O
// made meanwhile waits and succeeds.
func TestOutage(t *testing.T) {
	dir := t.TempDir()
	sock, img := filepath.Join(dir, "s"), filepath.Join(dir, "img")
	mkfile(t, img, 1<<20)
	srv := startNbdkit(t, sock, "file", img)
	ev := newEvents()
	o := opener(ev, nil)
	o.Grace = 3 * time.Second
	l := open(t, o, unixURI(sock, ""))
	data := pattern(8192, 4)
	if _, err := l.WriteAtFUA(data, 0); err != nil {
		t.Fatal(err)
	}
	srv.kill()
	waitFor(t, 5*time.Second, "connections gone", func() bool { return l.Connected() == 0 })
	done := make(chan error, 1)
	go func() {
		p := make([]byte, len(data))
		_, err := l.ReadAt(p, 0)
		if err == nil && !bytes.Equal(p, data) {
			err = errors.New("wrong bytes")
		}
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	srv.start()
	if err := <-done; err != nil {
		t.Errorf("read across an outage: %v", err)
	}
	if _, lost := ev.snapshot(); len(lost) != 0 || l.Lost() {
		t.Errorf("an outage within the grace period was a loss: %v", lost)
	}
}

// TestLazy opens a recorded leaf without dialling: nothing reaches the
// server until I/O; a recorded leaf whose server is not there is lost
// after the grace period; one whose server has another export is lost.
func TestLazy(t *testing.T) {
	dev := nbdtest.NewMem(1 << 20)
	dir := &nbdtest.Dir{}
	dir.Add("mem", dev, nbdtest.Options{Description: "uuid-lazy"})
	sock := filepath.Join(t.TempDir(), "own.sock")
	serveOwn(t, &nbd.Server{Exports: dir, Log: quietLog()}, sock)
	uri := unixURI(sock, "mem")
	id := nbdleaf.Identity{Kind: "nbd", URI: uri, Size: 1 << 20, Description: "uuid-lazy"}

	ev := newEvents()
	o := opener(ev, nil)
	l, err := o.Lazy(id, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.Size() != 2048 || l.Ref() != uri || !l.Identity().Same(id) || l.Lost() || !l.BadBlocks().Empty() {
		t.Errorf("lazy leaf: size %d ref %s identity %+v", l.Size(), l.Ref(), l.Identity())
	}
	time.Sleep(50 * time.Millisecond)
	if n := dir.Opens(); n != 0 {
		t.Fatalf("a lazy leaf dialled before any I/O: %d opens", n)
	}
	if _, err := l.WriteAt([]byte("lazy"), 0); err != nil {
		t.Fatal(err)
	}
	if dir.Opens() == 0 || !bytes.Equal(dev.Bytes()[:4], []byte("lazy")) {
		t.Error("the first I/O did not reach the server")
	}

	// Recorded lost: lost until a watched leaf reaches the export, which
	// OnLost reports as a return.
	back, err := o.Lazy(id, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	back.AssumeLost()
	_, err = back.ReadAt(make([]byte, 512), 0)
	lostWith(t, "read of a leaf recorded lost", err, nbdleaf.ErrDisconnected)
	back.Watch()
	waitFor(t, 5*time.Second, "restored", func() bool { return !back.Lost() })
	if _, lost := ev.snapshot(); len(lost) != 1 || lost[0] != "restored" {
		t.Errorf("OnLost heard %q", lost)
	}
	if n, err := back.ReadAt(make([]byte, 4), 0); n != 4 || err != nil {
		t.Errorf("read after the return: %d, %v", n, err)
	}

	// Nobody listens: lost after the grace period, through OnLost.
	gone := id
	gone.URI = unixURI(filepath.Join(t.TempDir(), "nobody.sock"), "mem")
	l2, err := o.Lazy(gone, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	start := time.Now()
	_, err = l2.ReadAt(make([]byte, 512), 0)
	lostWith(t, "first read with no server", err, nbdleaf.ErrDisconnected)
	if took := time.Since(start); took < o.Grace {
		t.Errorf("gave up after %v, before the grace period", took)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.ENOENT) {
		t.Errorf("the loss does not say why the dial failed: %v", err)
	}

	// A recorded size that is not the export's: another export.
	wrong := id
	wrong.Size = 2 << 20
	l3, err := o.Lazy(wrong, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l3.Close()
	_, err = l3.ReadAt(make([]byte, 512), 0)
	lostWith(t, "first read of another export", err, nbdleaf.ErrChanged)
	var ie *nbdleaf.IdentityError
	if !errors.As(err, &ie) || ie.Got.Description != "uuid-lazy" || ie.Got.Size != 1<<20 {
		t.Errorf("identity error %v", err)
	}

	// Another description (another daxstack device) at the same size.
	desc := id
	desc.Description = "uuid-other"
	l4, err := o.Lazy(desc, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l4.Close()
	_, err = l4.ReadAt(make([]byte, 512), 0)
	lostWith(t, "first read of another device", err, nbdleaf.ErrChanged)

	if _, err := o.Lazy(nbdleaf.Identity{Kind: "file", URI: uri}, nil); err == nil {
		t.Error("Lazy took a non-NBD identity")
	}
	if _, err := o.Lazy(nbdleaf.Identity{Kind: "nbd", URI: "nbds+unix:///x?socket=/s", Size: 0}, nil); !errors.Is(err, nbdleaf.ErrTLS) {
		t.Errorf("Lazy of nbds:// without TLS: %v", err)
	}
}

// TestSetLost: the engine's verdict closes the connections, fails I/O
// with ErrHeld and calls no callback; lifting it dials again.
func TestSetLost(t *testing.T) {
	uri, dev, dir := memExport(t, 1<<20, nbdtest.Options{})
	ev := newEvents()
	l := open(t, opener(ev, nil), uri)
	l.SetLost(true)
	if !l.Lost() {
		t.Fatal("not lost")
	}
	_, err := l.WriteAt([]byte("x"), 0)
	lostWith(t, "write while held", err, nbdleaf.ErrHeld)
	waitFor(t, 5*time.Second, "connections closed", func() bool { return dir.Handles("mem") == 0 })
	l.SetLost(false)
	if _, err := l.WriteAt([]byte("x"), 0); err != nil || dev.Bytes()[0] != 'x' {
		t.Errorf("write after SetLost(false): %v", err)
	}
	if _, lost := ev.snapshot(); len(lost) != 0 {
		t.Errorf("SetLost called OnLost: %v", lost)
	}
}

// hanging is a device whose first read at byte 0 never answers.
type hanging struct {
	*nbdtest.Mem
	hung    atomic.Bool
	release chan struct{} // closed when the test ends
}

func (h *hanging) Handle(gone <-chan struct{}) nbd.Backend { return &hangHandle{h.Mem.Handle(gone), h} }

type hangHandle struct {
	nbd.Backend
	h *hanging
}

func (x *hangHandle) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off == 0 && x.h.hung.CompareAndSwap(false, true) {
		select {
		case <-ctx.Done():
		case <-x.h.release:
		}
		return 0, syscall.EIO
	}
	return x.Backend.ReadAt(ctx, p, off)
}

// TestIOTimeout: a request left unanswered past IOTimeout drops its
// connection and goes again on another.
func TestIOTimeout(t *testing.T) {
	dev := &hanging{Mem: nbdtest.NewMem(1 << 20), release: make(chan struct{})}
	uri, _, _ := exportDev(t, dev, nbdtest.Options{})
	t.Cleanup(func() { close(dev.release) }) // before the server stops
	var log logBuf
	o := opener(nil, log.logger())
	o.IOTimeout = 200 * time.Millisecond
	o.Grace = 5 * time.Second
	l := open(t, o, uri)
	start := time.Now()
	if _, err := l.ReadAt(make([]byte, 4096), 0); err != nil {
		t.Fatalf("read after a hung request: %v", err)
	}
	if took := time.Since(start); took < o.IOTimeout {
		t.Errorf("answered in %v: the hung request was not the one that timed out", took)
	}
	if !strings.Contains(log.String(), "unanswered for 200ms") {
		t.Errorf("the dropped connection was not logged:\n%s", log.String())
	}
}
