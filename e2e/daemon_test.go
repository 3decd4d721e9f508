package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// sandbox is a database, a socket and leaves in a temporary directory.
type sandbox struct {
	t   *testing.T
	dir string
	env []string
}

func newSandbox(t *testing.T) *sandbox {
	t.Helper()
	dir := t.TempDir()
	return &sandbox{t: t, dir: dir, env: append(os.Environ(),
		"DAXSTACK_DB="+filepath.Join(dir, "daxstack.db"),
		"DAXSTACK_SOCKET="+filepath.Join(dir, "daxstack.sock"),
		"DAXSTACK_LOCK_TIMEOUT=20s",
	)}
}

func (s *sandbox) path(name string) string { return filepath.Join(s.dir, name) }

func (s *sandbox) cmd(args ...string) *exec.Cmd {
	c := exec.Command(bin, args...)
	c.Env = s.env
	c.Dir = s.dir
	return c
}

// run runs daxstack and returns its stdout; it fails the test on error.
// sub runs fn as a subtest on the same sandbox, which reports to the
// subtest while it runs (subtests run one after the other).
func (s *sandbox) sub(name string, fn func(t *testing.T)) {
	s.t.Run(name, func(t *testing.T) {
		parent := s.t
		s.t = t
		defer func() { s.t = parent }()
		fn(t)
	})
}

func (s *sandbox) run(args ...string) string {
	s.t.Helper()
	var out, errb bytes.Buffer
	c := s.cmd(args...)
	c.Stdout, c.Stderr = &out, &errb
	if err := c.Run(); err != nil {
		s.t.Fatalf("daxstack %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String()
}

// file makes a zero-filled file of size bytes.
func (s *sandbox) file(name string, size int64) string {
	s.t.Helper()
	p := s.path(name)
	f, err := os.Create(p)
	if err != nil {
		s.t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		s.t.Fatal(err)
	}
	f.Close()
	return p
}

// daemon is a running `daxstack serve`.
type daemon struct {
	cmd  *exec.Cmd
	logs *bytes.Buffer
	done chan error
}

func (s *sandbox) startDaemon(args ...string) *daemon {
	s.t.Helper()
	d := &daemon{logs: &bytes.Buffer{}, done: make(chan error, 1)}
	d.cmd = s.cmd(append([]string{"serve"}, args...)...)
	d.cmd.Stderr = &lockedWriter{w: d.logs}
	if err := d.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("unix", s.path("daxstack.sock")); err == nil {
			c.Close()
			break
		}
		select {
		case err := <-d.done:
			s.t.Fatalf("daemon exited: %v\n%s", err, d.logs.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("daemon did not listen in time\n%s", d.logs.String())
		}
	}
	s.t.Cleanup(func() { d.stop() })
	return d
}

func (d *daemon) stop() {
	if d.cmd.ProcessState != nil {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
	}
}

func (d *daemon) kill9() {
	d.cmd.Process.Kill()
	<-d.done
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// event is the JSON an event line carries.
type event struct {
	Seq    uint64      `json:"seq"`
	Kind   string      `json:"kind"`
	Device string      `json:"device"`
	Ranges []jsonRange `json:"ranges"`
	Cause  struct {
		Device string      `json:"device"`
		Ranges []jsonRange `json:"ranges"`
	} `json:"cause"`
}

type jsonRange struct {
	Offset uint64 `json:"offset"`
	Length uint64 `json:"length"`
	Stride uint64 `json:"stride"`
	Count  uint64 `json:"count"`
}

// sectors expands ranges (strided runs included) into a sector set.
func sectors(rs []jsonRange) map[uint64]bool {
	out := map[uint64]bool{}
	for _, r := range rs {
		n := max(r.Count, 1)
		for i := uint64(0); i < n; i++ {
			for s := uint64(0); s < r.Length; s++ {
				out[r.Offset+i*r.Stride+s] = true
			}
		}
	}
	return out
}

// watcher is a running `daxstack watch` whose events are collected.
type watcher struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	events []event
	seen   chan struct{}
}

func (s *sandbox) watch(args ...string) *watcher {
	s.t.Helper()
	w := &watcher{seen: make(chan struct{}, 1024)}
	w.cmd = s.cmd(append([]string{"watch"}, args...)...)
	out, err := w.cmd.StdoutPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	var errb bytes.Buffer
	w.cmd.Stderr = &lockedWriter{w: &errb}
	if err := w.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var ev event
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				continue
			}
			w.mu.Lock()
			w.events = append(w.events, ev)
			w.mu.Unlock()
			w.seen <- struct{}{}
		}
	}()
	s.t.Cleanup(func() {
		w.cmd.Process.Signal(syscall.SIGTERM)
		w.cmd.Wait()
	})
	return w
}

// wait returns the first event matching pred, within d.
func (w *watcher) wait(t *testing.T, d time.Duration, what string, pred func(event) bool) event {
	t.Helper()
	deadline := time.After(d)
	for {
		w.mu.Lock()
		for _, ev := range w.events {
			if pred(ev) {
				w.mu.Unlock()
				return ev
			}
		}
		w.mu.Unlock()
		select {
		case <-w.seen:
		case <-deadline:
			w.mu.Lock()
			defer w.mu.Unlock()
			t.Fatalf("no %s event within %v; got %+v", what, d, w.events)
		}
	}
}

func (w *watcher) all() []event {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]event(nil), w.events...)
}

// losetup attaches file to a free loop device (or the given one).
func losetup(t *testing.T, file string, dev string) string {
	t.Helper()
	args := []string{"-f", "--show", file}
	if dev != "" {
		args = []string{dev, file}
	}
	out, err := exec.Command("losetup", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup %v: %v\n%s", args, err, out)
	}
	if dev == "" {
		dev = strings.TrimSpace(string(out))
	}
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	return dev
}

func detach(t *testing.T, dev string) {
	t.Helper()
	if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
		t.Fatalf("losetup -d %s: %v\n%s", dev, err, out)
	}
}

// TestDaemonLoopLostAndRestored builds linear-over-striped on two real
// loop devices, watches the top device, detaches one loop device and
// expects a "lost" event on top with exactly the translated ranges within
// a second (the periodic rescan is an hour away, so the uevent did it);
// re-attaching gives "restored".
func TestDaemonLoopLostAndRestored(t *testing.T) {
	requireRoot(t)
	s := newSandbox(t)
	const leafSectors = 65536 // 32 MiB each
	a := losetup(t, s.file("a.img", leafSectors*512), "")
	bfile := s.file("b.img", leafSectors*512)
	b := losetup(t, bfile, "")
	s.run("create", "s0", "--table", fmt.Sprintf("0 %d striped 2 8 %s 0 %s 0", 2*leafSectors, a, b))
	const topLen, topOff = 100000, 24
	s.run("create", "top", "--table", fmt.Sprintf("0 %d linear s0 %d", topLen, topOff))
	s.startDaemon("--rescan", "1h", "--no-hold") // a held loop device cannot be detached
	w := s.watch("top")
	time.Sleep(200 * time.Millisecond) // let the watcher subscribe

	detach(t, b)
	start := time.Now()
	lost := w.wait(t, 3*time.Second, "lost", func(e event) bool { return e.Kind == "lost" && e.Device == "top" })
	if d := time.Since(start); d > time.Second {
		t.Errorf("lost event took %v (want within a second)", d)
	}
	// Independently: top sector s is s0 sector s+24, on stripe ((s+24)/8)%2;
	// stripe 1 is b.
	got := sectors(lost.Ranges)
	want := 0
	for sec := uint64(0); sec < topLen; sec++ {
		onB := ((sec+topOff)/8)%2 == 1
		if onB {
			want++
		}
		if got[sec] != onB {
			t.Fatalf("lost event: top sector %d in ranges = %v, want %v", sec, got[sec], onB)
		}
	}
	if len(got) != want {
		t.Fatalf("lost event covers %d sectors, want %d", len(got), want)
	}
	if len(lost.Ranges) > 4 {
		t.Errorf("lost event is not compact: %d ranges for a periodic loss", len(lost.Ranges))
	}

	losetup(t, bfile, b) // the same backing file on the same node
	restored := w.wait(t, 3*time.Second, "restored", func(e event) bool { return e.Kind == "restored" && e.Device == "top" })
	if r := sectors(restored.Ranges); len(r) != want {
		t.Fatalf("restored covers %d sectors, want %d", len(r), want)
	}
	if out := s.run("badblocks", "top"); out != "" {
		t.Fatalf("top still has bad ranges after restore:\n%s", out)
	}
}

// TestDaemonKill9 kills the daemon between injections and their delivery,
// restarts it, and checks that a subscriber that resumes from its last
// sequence number receives every event, each at most twice.
func TestDaemonKill9(t *testing.T) {
	s := newSandbox(t)
	leaf := s.file("leaf.img", 8<<20)
	s.run("create", "top", "--table", fmt.Sprintf("0 16384 linear %s 0", leaf))
	d := s.startDaemon("--no-uevents", "--rescan", "1h")
	w := s.watch("top")
	time.Sleep(200 * time.Millisecond)
	const rounds = 20
	for i := range rounds {
		s.run("inject", "top", "--sector", fmt.Sprint(i*16), "--count", "1")
		if i%4 == 3 {
			d.kill9() // right after the commit, maybe before delivery
			d = s.startDaemon("--no-uevents", "--rescan", "1h")
		}
	}
	w.wait(t, 10*time.Second, "last", func(e event) bool {
		return e.Device == "top" && e.Kind == "media-error" && sectors(e.Ranges)[uint64((rounds-1)*16)]
	})
	count := map[uint64]int{}
	for _, e := range w.all() {
		count[e.Seq]++
	}
	got := map[uint64]bool{}
	for _, e := range w.all() {
		for sec := range sectors(e.Ranges) {
			got[sec] = true
		}
	}
	for i := range rounds {
		if !got[uint64(i*16)] {
			t.Errorf("event for sector %d never delivered", i*16)
		}
	}
	for seq, n := range count {
		if n > 2 {
			t.Errorf("event %d delivered %d times", seq, n)
		}
	}
}

var _ = context.Background

// TestDaemonFakeSysfsBadblocks stands a real loop device in for the
// oracle's nv1 (/dev/pmem0 in the guest) behind a fake sysfs tree that
// names it pmem7 and gives it a badblocks file, builds the oracle's s0 and
// top over it, and appends "300 4" to the badblocks file, as the oracle did:
// the daemon must report a media-error on top at 324+4 (nv1 300 is stripe
// 1 of s0, so s0 348, so top 324).
func TestDaemonFakeSysfsBadblocks(t *testing.T) {
	requireRoot(t)
	s := newSandbox(t)
	const sectors = 262144
	dir := s.path("fake")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	env, badblocks, node := fakePmem(t, dir, sectors)
	devno := devnoOf(t, node)
	s.env = append(s.env, env...)
	nv0 := s.file("nv0.img", sectors*512)
	s.run("create", "s0", "--table", fmt.Sprintf("0 2048 striped 2 8 %s 64 %s 128", nv0, node))
	s.run("create", "top", "--table", "0 1000 linear s0 24")
	if out := s.run("table", "s0"); !strings.Contains(out, " "+devno+" 128") {
		t.Fatalf("the fake pmem prints as its device number: %s", out)
	}
	s.startDaemon("--rescan", "100ms")
	w := s.watch("top")
	time.Sleep(200 * time.Millisecond)

	appendLine(t, badblocks, "300 4")
	ev := w.wait(t, 5*time.Second, "media-error", func(e event) bool { return e.Kind == "media-error" && e.Device == "top" })
	if len(ev.Ranges) != 1 || ev.Ranges[0].Offset != 324 || ev.Ranges[0].Length != 4 || ev.Ranges[0].Count > 1 {
		t.Fatalf("media-error on top: %+v", ev.Ranges)
	}
	if ev.Cause.Device != "/dev/pmem7" || len(ev.Cause.Ranges) != 1 || ev.Cause.Ranges[0].Offset != 300 || ev.Cause.Ranges[0].Length != 4 {
		t.Fatalf("cause: %+v", ev.Cause)
	}
	if out := s.run("badblocks", "s0"); out != "348 4\n" {
		t.Fatalf("s0 badblocks: %q", out)
	}
	// The kernel clears badblocks when the sectors are written; here the
	// fake list is emptied by hand and the daemon reports it cleared.
	if err := os.WriteFile(badblocks, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	w.wait(t, 5*time.Second, "cleared", func(e event) bool { return e.Kind == "cleared" && e.Device == "top" })
}
