package e2e

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/daxstack/daxstack/internal/testenv"
	"github.com/daxstack/daxstack/nbd"
	"github.com/daxstack/daxstack/nbd/nbdtest"
)

// Remote leaves: stacks whose leaves are NBD exports of real servers on
// this machine (nbdkit, qemu-nbd, another daxstack), driven through the
// CLI and a daemon as an admin would.

// nbdProc is an NBD server process (nbdkit, qemu-nbd) that a test kills
// and starts again with the same arguments.
type nbdProc struct {
	t    *testing.T
	name string
	args []string
	sock string // unix socket, or "" for TCP
	port int    // TCP port on 127.0.0.1, or 0
	pid  string
	cmd  *exec.Cmd
	out  *bytes.Buffer
	done chan struct{}
}

// startNBDProc starts name with args (which say where it listens: on
// sock, or on port) and waits until it accepts connections.
func startNBDProc(t *testing.T, name, sock string, port int, args ...string) *nbdProc {
	t.Helper()
	testenv.NeedCommand(t, name)
	p := &nbdProc{t: t, name: name, args: args, sock: sock, port: port,
		pid: filepath.Join(t.TempDir(), name+".pid")}
	p.start()
	t.Cleanup(p.kill)
	return p
}

func (p *nbdProc) start() {
	t := p.t
	t.Helper()
	os.Remove(p.pid)
	if p.sock != "" {
		os.Remove(p.sock)
	}
	args := append([]string{"--pid-file", p.pid}, p.args...)
	if p.name == "nbdkit" {
		args = append([]string{"--pidfile", p.pid, "-f"}, p.args...)
	}
	p.cmd = exec.Command(p.name, args...)
	p.cmd.Env = append(os.Environ(), "PATH=/usr/bin:/usr/sbin:/bin:/sbin:"+os.Getenv("PATH"))
	p.out = &bytes.Buffer{}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
	done := make(chan struct{})
	p.done = done
	go func() { p.cmd.Wait(); close(done) }()
	for deadline := time.Now().Add(10 * time.Second); ; {
		select {
		case <-done:
			t.Fatalf("%s %s exited:\n%s", p.name, strings.Join(args, " "), p.out)
		default:
		}
		if _, err := os.Stat(p.pid); err == nil && p.accepts() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %s did not start:\n%s", p.name, strings.Join(args, " "), p.out)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (p *nbdProc) accepts() bool {
	network, addr := "unix", p.sock
	if p.sock == "" {
		network, addr = "tcp", "127.0.0.1:"+strconv.Itoa(p.port)
	}
	c, err := net.Dial(network, addr)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// kill ends the server at once, as a crash would.
func (p *nbdProc) kill() {
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Kill()
	<-p.done
	p.cmd = nil
	if p.sock != "" {
		os.Remove(p.sock)
	}
}

// uri is the server's export (the default one) as a table names it.
func (p *nbdProc) uri() string {
	if p.sock != "" {
		return "nbd+unix:///?socket=" + p.sock
	}
	return fmt.Sprintf("nbd://127.0.0.1:%d/", p.port)
}

// freePort returns a TCP port on 127.0.0.1 nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// leafOf returns the leaf and leaf sector that `map` says sector of dev
// is on.
func leafOf(s *sandbox, dev string, sector uint64) (string, uint64) {
	s.t.Helper()
	out := s.run("map", dev, strconv.FormatUint(sector, 10), "1")
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasSuffix(line, " (leaf)") {
			continue
		}
		f := strings.Fields(line)
		n, err := strconv.ParseUint(f[len(f)-2], 10, 64)
		if err != nil {
			s.t.Fatalf("map %s %d: %q", dev, sector, line)
		}
		return f[len(f)-3], n
	}
	s.t.Fatalf("map %s %d names no leaf:\n%s", dev, sector, out)
	return "", 0
}

// writeDev writes data at sector of dev through the CLI.
func writeDev(s *sandbox, dev string, sector uint64, data []byte) runResult {
	s.t.Helper()
	c := s.cmd("write", dev, "--sector", strconv.FormatUint(sector, 10))
	c.Stdin = bytes.NewReader(data)
	return s.tryCmd(c)
}

// readDev reads count sectors at sector of dev through the CLI.
func readDev(s *sandbox, dev string, sector, count uint64) runResult {
	s.t.Helper()
	return s.tryRun("read", dev, "--sector", strconv.FormatUint(sector, 10), "--count", strconv.FormatUint(count, 10))
}

// remoteSandbox is a sandbox with a daemon whose NBD leaves are lost
// after a short grace period and polled often.
func remoteSandbox(t *testing.T, grace time.Duration) (*sandbox, *daemon) {
	t.Helper()
	requireRoot(t)
	s := newQuickSandbox(t)
	d := s.startDaemon("--no-uevents", "--rescan", "1h", "--nbd-grace", grace.String(), "--nbd-poll", "100ms")
	return s, d
}

// TestRemoteStripe: a stripe over an nbdkit memory export, a qemu-nbd
// export and a local file, under a device that goes on over an nbdkit file
// export on TCP: what is written reads back, and every leaf holds the
// bytes where `map` says; tables print the exports' canonical URIs.
func TestRemoteStripe(t *testing.T) {
	s, _ := remoteSandbox(t, 5*time.Second)
	const leafSectors = 2048
	mem := startNBDProc(t, "nbdkit", s.path("m.sock"), 0, "-U", s.path("m.sock"), "memory", "size=1M")
	qimg := s.file("q.img", leafSectors*512)
	qemu := startNBDProc(t, "qemu-nbd", s.path("q.sock"), 0, "-k", s.path("q.sock"), "-f", "raw", "-t", "--cache=writeback", qimg)
	fimg := s.file("f.img", leafSectors*512)
	port := freePort(t)
	file := startNBDProc(t, "nbdkit", "", port, "-i", "127.0.0.1", "-p", strconv.Itoa(port), "file", "file="+fimg)
	local := s.file("local.img", leafSectors*512)

	s.run("create", "s0", "--table", fmt.Sprintf("0 %d striped 3 8 %s 0 %s 0 %s 0", 3*leafSectors, mem.uri(), qemu.uri(), local))
	s.run("create", "top", "--table", fmt.Sprintf("0 %d linear s0 0\n%d %d linear %s 0", 3*leafSectors, 3*leafSectors, leafSectors, file.uri()))
	if got, want := s.run("table", "s0"), fmt.Sprintf("0 %d striped 3 8 %s 0 %s 0 %s 0\n", 3*leafSectors, mem.uri(), qemu.uri(), local); got != want {
		t.Fatalf("table s0:\n%s\nwant:\n%s", got, want)
	}
	if got := s.run("table", "top"); !strings.Contains(got, fmt.Sprintf("linear nbd://127.0.0.1:%d/ 0", port)) {
		t.Fatalf("table top: %s", got)
	}

	const total = 4 * leafSectors
	data := make([]byte, total*512)
	rng := rand.New(rand.NewPCG(16, 1))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	if r := writeDev(s, "top", 0, data); r.code != 0 {
		t.Fatalf("write top: %s", r.err)
	}
	r := readDev(s, "top", 0, total)
	if r.code != 0 || r.out != string(data) {
		t.Fatalf("read top back: status %d, %d bytes, same %v: %s", r.code, len(r.out), r.out == string(data), r.err)
	}

	// The leaves' own bytes, read without daxstack.
	memImg := s.path("mem.raw")
	if out, err := exec.Command("nbdcopy", mem.uri(), memImg).CombinedOutput(); err != nil {
		t.Fatalf("nbdcopy: %v: %s", err, out)
	}
	files := map[string]string{mem.uri(): memImg, qemu.uri(): qimg, file.uri(): fimg, local: local}
	seen := map[string]bool{}
	for _, sector := range []uint64{0, 7, 8, 17, 23, 24, 1001, 3*leafSectors - 1, 3 * leafSectors, total - 1} {
		leaf, at := leafOf(s, "top", sector)
		img, ok := files[leaf]
		if !ok {
			t.Fatalf("map top %d names leaf %q, none of the stack's", sector, leaf)
		}
		seen[leaf] = true
		b, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b[at*512:(at+1)*512], data[sector*512:(sector+1)*512]) {
			t.Errorf("sector %d of top: %s sector %d does not hold it", sector, leaf, at)
		}
	}
	if len(seen) != 4 {
		t.Fatalf("the sectors checked fell on %d leaves, want all 4: %v", len(seen), seen)
	}
}

// TestRemoteErrorFilters: nbdkit's error filter fails reads while a file
// exists; the sectors that keep failing become the leaf's bad ranges,
// translated up to the top device (badblocks, media-error events); a
// write clears them. The ddrescue filter fails reads at chosen offsets,
// found to the sector; the export is read-only, so a write fails and the
// range stays bad.
func TestRemoteErrorFilters(t *testing.T) {
	s, _ := remoteSandbox(t, 5*time.Second)
	trigger := s.path("fail-now")
	errs := startNBDProc(t, "nbdkit", s.path("e.sock"), 0, "-U", s.path("e.sock"), "--filter=error", "memory", "size=1M",
		"error-pread=EIO", "error-pread-rate=100%", "error-pread-file="+trigger)
	dimg := s.file("d.img", 1<<20)
	dmap := s.path("d.map")
	// Bytes 0x10000.. (sector 128) for 0x800 (4 sectors) were not rescued.
	os.WriteFile(dmap, []byte("# Mapfile. Created by GNU ddrescue\n# current_pos  current_status  current_pass\n0x00000000     +               1\n"+
		"#      pos        size  status\n0x00000000  0x00010000  +\n0x00010000  0x00000800  -\n0x00010800  0x000EF800  +\n"), 0o644)
	dd := startNBDProc(t, "nbdkit", s.path("d.sock"), 0, "-U", s.path("d.sock"), "--filter=ddrescue", "file", "file="+dimg, "ddrescue-mapfile="+dmap)

	s.run("create", "top", "--table", fmt.Sprintf("0 1000 linear %s 24\n1000 1000 linear %s 0", errs.uri(), dd.uri()))
	w := s.watch("top")
	time.Sleep(200 * time.Millisecond)

	// The error filter: reads of sectors 10..13 of top (34..37 of the
	// export) fail while the file exists.
	if r := readDev(s, "top", 10, 4); r.code != 0 {
		t.Fatalf("read before the errors: %s", r.err)
	}
	os.WriteFile(trigger, nil, 0o644)
	if r := readDev(s, "top", 10, 4); r.code == 0 {
		t.Fatal("read with the error filter failing reads succeeded")
	}
	os.Remove(trigger)
	ev := w.wait(t, 5*time.Second, "media-error", func(e event) bool { return e.Kind == "media-error" && e.Device == "top" })
	if got := sectors(ev.Ranges); len(got) != 4 || !got[10] || !got[13] {
		t.Fatalf("media-error on top: %+v", ev.Ranges)
	}
	if ev.Cause.Device != errs.uri() || len(ev.Cause.Ranges) != 1 || ev.Cause.Ranges[0].Offset != 34 || ev.Cause.Ranges[0].Length != 4 {
		t.Fatalf("cause: %+v", ev.Cause)
	}
	if out := s.run("badblocks", "top"); out != "10 4\n" {
		t.Fatalf("badblocks top: %q", out)
	}
	// The bad sectors stay bad after the server heals, until written.
	if r := readDev(s, "top", 10, 4); r.code == 0 {
		t.Fatal("read of recorded bad sectors succeeded")
	}
	if r := writeDev(s, "top", 10, bytes.Repeat([]byte{0xa5}, 4*512)); r.code != 0 {
		t.Fatalf("write over the bad sectors: %s", r.err)
	}
	w.wait(t, 5*time.Second, "cleared", func(e event) bool { return e.Kind == "cleared" && e.Device == "top" })
	if out := s.run("badblocks", "top"); out != "" {
		t.Fatalf("badblocks top after the write: %q", out)
	}
	if r := readDev(s, "top", 10, 4); r.code != 0 || r.out != string(bytes.Repeat([]byte{0xa5}, 4*512)) {
		t.Fatalf("read after the write: %d %s", r.code, r.err)
	}

	// ddrescue: sectors 128..131 of the export, 1128.. of top; a read
	// over 1120..1139 finds exactly those.
	if r := readDev(s, "top", 1120, 20); r.code == 0 {
		t.Fatal("read over the unrescued range succeeded")
	}
	ev = w.wait(t, 5*time.Second, "media-error", func(e event) bool {
		return e.Kind == "media-error" && e.Device == "top" && sectors(e.Ranges)[1128]
	})
	if got := sectors(ev.Ranges); len(got) != 4 || !got[1131] {
		t.Fatalf("media-error on top from ddrescue: %+v", ev.Ranges)
	}
	if r := writeDev(s, "top", 1128, make([]byte, 4*512)); r.code == 0 {
		t.Fatal("write to a read-only export succeeded")
	}
	if out := s.run("badblocks", "top"); out != "1128 4\n" {
		t.Fatalf("badblocks top after a refused write: %q", out)
	}
}

// TestRemoteLostAndRestored: the server of one leaf of a stripe dies:
// past the grace period every device above logs `lost` over what the
// leaf backs, and `info` shows the leaf lost; the server back, they log
// `restored` and the data reads as before.
func TestRemoteLostAndRestored(t *testing.T) {
	const grace = time.Second
	s, _ := remoteSandbox(t, grace)
	img := s.file("a.img", 1<<20)
	srv := startNBDProc(t, "nbdkit", s.path("a.sock"), 0, "-U", s.path("a.sock"), "file", "file="+img)
	local := s.file("local.img", 1<<20)
	s.run("create", "s0", "--table", fmt.Sprintf("0 4096 striped 2 8 %s 0 %s 0", srv.uri(), local))
	s.run("create", "top", "--table", "0 4000 linear s0 16")
	data := bytes.Repeat([]byte("remote!\n"), 64*8)
	if r := writeDev(s, "top", 0, data); r.code != 0 {
		t.Fatalf("write: %s", r.err)
	}
	w := s.watch("top", "s0")
	time.Sleep(200 * time.Millisecond)

	killed := time.Now()
	srv.kill()
	for _, dev := range []string{"top", "s0"} {
		ev := w.wait(t, grace+10*time.Second, "lost on "+dev, func(e event) bool { return e.Kind == "lost" && e.Device == dev })
		got := sectors(ev.Ranges)
		// Stripe 0 (the remote leaf) is s0's even 8-sector chunks; top
		// starts at s0's sector 16, chunk 2.
		for sec := range uint64(64) {
			s0 := sec
			if dev == "top" {
				s0 = sec + 16
			}
			if want := (s0/8)%2 == 0; got[sec] != want {
				t.Fatalf("lost on %s: sector %d is %v in %+v", dev, sec, got[sec], ev.Ranges)
			}
		}
	}
	if d := time.Since(killed); d < grace {
		t.Fatalf("lost %v after the kill, before the grace period (%v)", d, grace)
	}
	if out := s.run("info", "top"); !strings.Contains(out, srv.uri()) {
		t.Fatalf("info top does not name the lost leaf:\n%s", out)
	}
	if r := readDev(s, "top", 0, 1); r.code == 0 {
		t.Fatal("read of a lost leaf's sector succeeded")
	}
	srv.start()
	for _, dev := range []string{"top", "s0"} {
		w.wait(t, 10*time.Second, "restored on "+dev, func(e event) bool { return e.Kind == "restored" && e.Device == dev })
	}
	if r := readDev(s, "top", 0, uint64(len(data)/512)); r.code != 0 || r.out != string(data) {
		t.Fatalf("read after the return: %d %s", r.code, r.err)
	}
}

// TestRemoteBadblocksCrossDaemons: the far side is a daxstack server with
// daxstack:badblocks; poison injected there shows in the near daemon's
// badblocks of its top device and as a media-error event, and clearing it
// there shows as cleared here.
func TestRemoteBadblocksCrossDaemons(t *testing.T) {
	s, _ := remoteSandbox(t, 5*time.Second)
	far := newFarServer(t)
	s.run("create", "top", "--table", "0 1000 linear "+far.uri+" 24")
	w := s.watch("top")
	time.Sleep(200 * time.Millisecond)
	far.inject(100, 4)
	ev := w.wait(t, 5*time.Second, "media-error", func(e event) bool { return e.Kind == "media-error" && e.Device == "top" })
	if got := sectors(ev.Ranges); len(got) != 4 || !got[76] || !got[79] {
		t.Fatalf("media-error on top: %+v", ev.Ranges)
	}
	if out := s.run("badblocks", "top"); out != "76 4\n" {
		t.Fatalf("badblocks top: %q", out)
	}
	far.clear(100, 4)
	w.wait(t, 5*time.Second, "cleared", func(e event) bool { return e.Kind == "cleared" && e.Device == "top" })
	if out := s.run("badblocks", "top"); out != "" {
		t.Fatalf("badblocks top after the far side cleared: %q", out)
	}
}

// farServer is the far side of TestRemoteBadblocksCrossDaemons: a
// device "far" of 2048 sectors exported over NBD, whose bad ranges show
// in daxstack:badblocks.
type farServer struct {
	uri           string
	inject, clear func(sector, count int64)
}

// newFarServer is a second daxstack daemon exporting a device over NBD
// when this daxstack's serve exports (--nbd-socket); until then, the nbd
// package's server in this process over an nbdtest device, which shows
// its bad ranges as daxstack's server does.
func newFarServer(t *testing.T) *farServer {
	t.Helper()
	if serveExportsNBD() {
		far, img := newFarDaxstack(t)
		img("far.img", 2048)
		far.run("create", "far", "--table", "0 2048 linear "+far.path("far.img")+" 0")
		return farDevice(t, far, "far")
	}
	dir, err := os.MkdirTemp("", "far")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "nbd.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	mem := nbdtest.NewMem(2048 * 512)
	exports := &nbdtest.Dir{}
	exports.Add("far", mem, nbdtest.Options{Description: "far-device-uuid"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		(&nbd.Server{Exports: exports, ShutdownGrace: time.Millisecond}).Serve(ctx, l)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return &farServer{
		uri:    "nbd+unix:///far?socket=" + sock,
		inject: func(sector, count int64) { mem.Bad.Add(sector*512, count*512) },
		clear:  func(sector, count int64) { mem.Bad.Clear(sector*512, count*512) },
	}
}

// serveExportsNBD reports whether this daxstack's serve exports devices
// over NBD (--nbd-socket).
func serveExportsNBD() bool {
	out, _ := exec.Command(bin, "serve", "--help").CombinedOutput()
	return bytes.Contains(out, []byte("--nbd-socket"))
}

// newFarDaxstack runs a second `daxstack serve` of its own (database,
// socket) exporting only NBD, on far.path("nbd.sock"); img makes a leaf
// file of so many sectors in its directory.
func newFarDaxstack(t *testing.T) (far *sandbox, img func(name string, sectors int64)) {
	t.Helper()
	far = newQuickSandbox(t)
	far.env = append(far.env, "DAXSTACK_NO_EXPORTS=0")
	far.startDaemon("--no-uevents", "--rescan", "1h", "--no-mount", "--no-block", "--mapper-links", "off",
		"--links", far.path("links"), "--nbd-socket", far.path("nbd.sock"))
	return far, func(name string, sectors int64) { far.file(name, sectors*512) }
}

// farDevice is device dev of the far daemon as an NBD export, once it
// answers.
func farDevice(t *testing.T, far *sandbox, dev string) *farServer {
	t.Helper()
	uri := "nbd+unix:///" + dev + "?socket=" + far.path("nbd.sock")
	pollUntil(t, 10*time.Second, "the far device exported", func() bool {
		c, err := nbd.Dial(context.Background(), uri, nbd.Options{})
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	sec := func(n int64) string { return strconv.FormatInt(n, 10) }
	return &farServer{
		uri:    uri,
		inject: func(sector, count int64) { far.run("inject", dev, "--sector", sec(sector), "--count", sec(count)) },
		clear: func(sector, count int64) {
			far.run("clear-errors", dev, "--sector", sec(sector), "--count", sec(count))
		},
	}
}

// TestRemoteRestart: with the daemon stopped and the server away, ls,
// table and info (embedded) never connect to the server's socket; a
// daemon started then watches the leaf: lost past the grace period,
// restored when the server is back, with the data as it was.
func TestRemoteRestart(t *testing.T) {
	const grace = time.Second
	s, d := remoteSandbox(t, grace)
	img := s.file("a.img", 1<<20)
	srv := startNBDProc(t, "nbdkit", s.path("a.sock"), 0, "-U", s.path("a.sock"), "file", "file="+img)
	s.run("create", "top", "--table", "0 2048 linear "+srv.uri()+" 0")
	data := bytes.Repeat([]byte("far away"), 64)
	if r := writeDev(s, "top", 5, data); r.code != 0 {
		t.Fatalf("write: %s", r.err)
	}
	d.stop()
	srv.kill()

	counter, err := net.Listen("unix", s.path("a.sock"))
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan int)
	go func() {
		n := 0
		for {
			c, err := counter.Accept()
			if err != nil {
				accepted <- n
				return
			}
			n++
			c.Close()
		}
	}()
	table := s.run("--no-daemon", "table", "top")
	s.run("--no-daemon", "info", "top")
	deps := s.run("--no-daemon", "deps", "-o", "devname", "top")
	s.run("--no-daemon", "ls")
	counter.Close()
	if n := <-accepted; n != 0 {
		t.Fatalf("embedded ls, table and info connected to the server %d times", n)
	}
	os.Remove(s.path("a.sock"))
	if table != "0 2048 linear "+srv.uri()+" 0\n" || !strings.Contains(deps, srv.uri()) {
		t.Fatalf("with the server away: table %q, deps %q", table, deps)
	}

	s.startDaemon("--no-uevents", "--rescan", "1h", "--nbd-grace", grace.String(), "--nbd-poll", "100ms")
	w := s.watch("--since", "0", "top")
	w.wait(t, grace+10*time.Second, "lost", func(e event) bool { return e.Kind == "lost" && e.Device == "top" })
	srv.start()
	w.wait(t, 10*time.Second, "restored", func(e event) bool { return e.Kind == "restored" && e.Device == "top" })
	if r := readDev(s, "top", 5, 1); r.code != 0 || r.out != string(data) {
		t.Fatalf("read after the return: %d %q %s", r.code, r.out, r.err)
	}
}

// TestRemoteTLS: nbds+unix:// to an nbdkit that requires TLS and verifies
// its clients: the daemon's --nbd-tls-* certificate, key and CA make the
// connection; data written reads back. Without them the URI is refused.
func TestRemoteTLS(t *testing.T) {
	requireRoot(t)
	certs := nbdtest.NewCerts(t, "remote")
	s := newQuickSandbox(t)
	sock := s.path("t.sock")
	startNBDProc(t, "nbdkit", sock, 0, "-U", sock, "--tls=require", "--tls-certificates="+certs.Dir, "--tls-verify-peer", "memory", "size=1M")
	uri := "nbds+unix:///?socket=" + sock

	d := s.startDaemon("--no-uevents", "--rescan", "1h")
	if r := s.tryRun("create", "top", "--table", "0 2048 linear "+uri+" 0"); r.code == 0 {
		t.Fatal("nbds:// without TLS settings was accepted")
	}
	d.stop()
	s.startDaemon("--no-uevents", "--rescan", "1h", "--nbd-tls-cert", filepath.Join(certs.Dir, "client-cert.pem"),
		"--nbd-tls-key", filepath.Join(certs.Dir, "client-key.pem"), "--nbd-tls-ca", filepath.Join(certs.Dir, "ca-cert.pem"))
	s.run("create", "top", "--table", "0 2048 linear "+uri+" 0")
	data := bytes.Repeat([]byte("over tls"), 128)
	if r := writeDev(s, "top", 3, data); r.code != 0 {
		t.Fatalf("write: %s", r.err)
	}
	if r := readDev(s, "top", 3, 2); r.code != 0 || r.out != string(data) {
		t.Fatalf("read back: %d %s", r.code, r.err)
	}
}

// TestRemoteStripeOverDaxstack: a second daxstack daemon exports a stack
// of its own (a stripe over two files) over NBD; here a stripe goes over
// that export, an nbdkit memory export and a local file. What is written
// reads back, and the bytes are in the far daemon's leaf files where the
// two daemons' maps, one after the other, say.
func TestRemoteStripeOverDaxstack(t *testing.T) {
	requireRoot(t)
	if !serveExportsNBD() {
		t.Skip("this daxstack's serve does not export over NBD (--nbd-socket)")
	}
	s, _ := remoteSandbox(t, 5*time.Second)
	far, img := newFarDaxstack(t)
	img("f0.img", 1024)
	img("f1.img", 1024)
	far.run("create", "fs", "--table", fmt.Sprintf("0 2048 striped 2 16 %s 0 %s 0", far.path("f0.img"), far.path("f1.img")))
	fs := farDevice(t, far, "fs")
	mem := startNBDProc(t, "nbdkit", s.path("m.sock"), 0, "-U", s.path("m.sock"), "memory", "size=1M")
	local := s.file("local.img", 1<<20)
	s.run("create", "top", "--table", fmt.Sprintf("0 6144 striped 3 8 %s 0 %s 0 %s 0", fs.uri, mem.uri(), local))

	data := make([]byte, 6144*512)
	rng := rand.New(rand.NewPCG(16, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	if r := writeDev(s, "top", 0, data); r.code != 0 {
		t.Fatalf("write top: %s", r.err)
	}
	if r := readDev(s, "top", 0, 6144); r.code != 0 || r.out != string(data) {
		t.Fatalf("read top back: %d %s", r.code, r.err)
	}
	checked := 0
	for _, sector := range []uint64{0, 7, 24, 31, 100, 1000, 4000, 6143} {
		leaf, at := leafOf(s, "top", sector)
		if leaf != fs.uri {
			continue
		}
		file, fat := leafOf(far, "fs", at)
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b[fat*512:(fat+1)*512], data[sector*512:(sector+1)*512]) {
			t.Errorf("sector %d of top: fs %d, %s %d does not hold it", sector, at, file, fat)
		}
		checked++
	}
	if checked < 3 {
		t.Fatalf("only %d of the sectors checked fell on the far export", checked)
	}
}
