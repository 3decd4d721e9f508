package service_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/daxstack/daxstack/control"
	"github.com/daxstack/daxstack/fsfiles"
	"github.com/daxstack/daxstack/fsfiles/fstest"
	"github.com/daxstack/daxstack/internal/testenv"
	"github.com/daxstack/daxstack/rmapchain"
	"github.com/daxstack/daxstack/service"
)

// filesStack is a daemon with a stack top (linear) → mid (dust,
// 512-byte blocks) → low (linear) → leaf, a file that also lies under a loop device with a mounted
// filesystem: the seam (SetBlockDevice) says top is that loop device, as
// the exports will, so that sector S of top is sector S of the
// filesystem.
type filesStack struct {
	d   *daemon
	cl  *service.Client
	fs  *fstest.FS
	img string
}

func newFilesStack(t testing.TB, kind string, sizeMB int) *filesStack {
	t.Helper()
	testenv.NeedRoot(t)
	d := startDaemon(t, "", service.Config{Group: fmt.Sprint(peerGroup)})
	sectors := int64(sizeMB) << 11
	img := d.leaf(t, "leaf.img", sectors)
	fs := fstest.OnImage(t, kind, img)
	cl := d.client(t)
	create(t, cl, "low", fmt.Sprintf("0 %d linear %s 0", sectors, img))
	create(t, cl, "mid", fmt.Sprintf("0 %d dust low 0 512", sectors))
	create(t, cl, "top", fmt.Sprintf("0 %d linear mid 0", sectors))
	major, minor := fs.Major, fs.Minor
	d.srv.SetBlockDevice(func(dev string) (uint32, uint32, bool) { return major, minor, dev == "top" })
	return &filesStack{d: d, cl: cl, fs: fs, img: img}
}

// nextFiles returns the next follow-up of kind files on sub for device
// (skipping the sector events), failing after a minute.
func nextFiles(t *testing.T, sub *service.Subscription, device string) rmapchain.Event {
	t.Helper()
	timeout := time.After(time.Minute)
	for {
		select {
		case ev, ok := <-sub.Events():
			if !ok {
				t.Fatalf("stream ended: %v", sub.Err())
			}
			if ev.Kind == service.KindFiles && ev.Device == device {
				return ev
			}
		case <-timeout:
			t.Fatalf("no files event for %s", device)
		}
	}
}

func fileRows(t *testing.T, ev rmapchain.Event) []fsfiles.FileRow {
	t.Helper()
	var rows []fsfiles.FileRow
	if err := json.Unmarshal(ev.Files, &rows); err != nil {
		t.Fatalf("files of event %d: %v: %s", ev.Seq, err, ev.Files)
	}
	return rows
}

// TestEventFiles: every source of bad ranges under top — a leaf's
// poison, an error range at top and one level below, dust blocks below,
// a lost leaf — is followed on top's holder stream by an event of kind
// files naming exactly the file and bytes hit (found with filefrag or
// xfs_bmap); the lost leaf hits every file, at most 1000 rows and then
// files_truncated. The sector events come first, unchanged. A watcher that
// may not administer gets the same sector events and no file names.
func TestEventFiles(t *testing.T) {
	for _, kind := range []string{"ext4", "xfs-rmap"} {
		t.Run(kind, func(t *testing.T) {
			size := 400
			if kind == "ext4" {
				size = 64
			}
			s := newFilesStack(t, kind, size)
			fs := s.fs
			for i := range 4 {
				fs.Write(fmt.Sprintf("f%d", i), 64<<10)
			}
			for i := range 1100 {
				fs.Write(fmt.Sprintf("many/m%04d", i), 1024)
			}
			fs.Sync()
			since := lastSeq(t, s.cl)
			hold, err := service.Hold(s.d.sock, since, []string{"top"}, "files-test")
			if err != nil {
				t.Fatal(err)
			}
			defer hold.Close()
			other := startUnprivilegedWatcher(t, s.d, since)

			// One source per file: its third 4 KiB hit.
			const off, n = 8192, 4096
			at := func(i int) uint64 {
				for _, e := range fs.Placement(fmt.Sprintf("f%d", i)) {
					if off >= e.Logical && off+n <= e.Logical+e.Length {
						return e.Sector + (off-e.Logical)/512
					}
				}
				t.Fatalf("no extent of f%d holds bytes %d+%d", i, off, n)
				return 0
			}
			sources := []struct {
				name string
				do   func(sector uint64)
			}{
				{"leaf poison", func(sec uint64) {
					call(t, s.cl, "inject", control.RangeReq{Name: s.img, Sector: sec, Count: n / 512}, nil)
				}},
				{"error-range on top", func(sec uint64) {
					call(t, s.cl, "error-range", control.RangeReq{Name: "top", Sector: sec, Count: n / 512}, nil)
				}},
				{"error-range two levels below", func(sec uint64) {
					call(t, s.cl, "error-range", control.RangeReq{Name: "low", Sector: sec, Count: n / 512}, nil)
				}},
				{"dust blocks", func(sec uint64) {
					for b := sec; b < sec+n/512; b++ {
						call(t, s.cl, "message", control.MessageReq{Name: "mid", Args: []string{"addbadblock", fmt.Sprint(b)}}, nil)
					}
					call(t, s.cl, "message", control.MessageReq{Name: "mid", Args: []string{"enable"}}, nil)
				}},
			}
			for i, src := range sources {
				sec := at(i)
				src.do(sec)
				ev := nextFiles(t, hold, "top")
				rows := fileRows(t, ev)
				want := fsfiles.FileRow{Path: fs.Path(fmt.Sprintf("f%d", i)), Inode: fs.Ino(fmt.Sprintf("f%d", i)), Offset: off, Length: n}
				if len(rows) != 1 || rows[0].Path != want.Path || rows[0].Inode != want.Inode || rows[0].Offset != want.Offset || rows[0].Length != want.Length || ev.FilesTruncated {
					t.Errorf("%s at sector %d: files %s, want only %+v", src.name, sec, ev.Files, want)
				}
				if !ev.Ranges.Contains(sec) {
					t.Errorf("%s: the files event's ranges %v do not hold sector %d", src.name, ev.Ranges, sec)
				}
			}

			// The leaf lost: top's every sector, so every file.
			call(t, s.cl, "offline", control.NameReq{Name: s.img}, nil)
			ev := nextFiles(t, hold, "top")
			if rows := fileRows(t, ev); len(rows) != 1000 || !ev.FilesTruncated {
				t.Errorf("lost leaf: %d file rows, truncated %v; want 1000 and truncated", len(rows), ev.FilesTruncated)
			}

			// The unprivileged watcher got every sector event of top and
			// no file name. The last event it must see is the lost one.
			got := other.until(t, ev.Seq)
			var topEvents int
			for _, e := range got {
				if e.Kind == service.KindFiles || len(e.Files) > 0 || len(e.Metadata) > 0 {
					t.Errorf("unprivileged watcher got files: event %d of kind %s: files %s metadata %s", e.Seq, e.Kind, e.Files, e.Metadata)
				}
				if e.Device == "top" {
					topEvents++
				}
			}
			if topEvents < len(sources)+1 {
				t.Errorf("unprivileged watcher got %d events of top, want at least %d", topEvents, len(sources)+1)
			}
		})
	}
}

// TestFilesMethod: the daemon's files method uses the seam and the
// daemon's filesystems: top's bad ranges hit the file; a peer that may
// not administer is refused (it names files); a mapped device the seam
// does not know has no filesystem, said plainly.
func TestFilesMethod(t *testing.T) {
	s := newFilesStack(t, "ext4", 64)
	s.fs.Write("a", 64<<10)
	s.fs.Write("b", 64<<10)
	s.fs.Sync()
	e := s.fs.Placement("b")[0]
	call(t, s.cl, "inject", control.RangeReq{Name: s.img, Sector: e.Sector + 16, Count: 2}, nil)
	r, err := s.cl.Files(context.Background(), control.FilesReq{Name: "top"})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Files) != 1 || r.Files[0].Path != s.fs.Path("b") || r.Files[0].Offset != e.Logical+16*512 || r.Files[0].Length != 1024 ||
		r.Mount != s.fs.Mnt || r.Major != s.fs.Major || r.Minor != s.fs.Minor {
		t.Errorf("files top: %+v, want %s bytes %d+1024", r, s.fs.Path("b"), e.Logical+16*512)
	}
	// The range given instead of the bad ranges.
	r, err = s.cl.Files(context.Background(), control.FilesReq{Name: "top", Sector: s.fs.Placement("a")[0].Sector, Count: 8})
	if err != nil || len(r.Files) != 1 || r.Files[0].Path != s.fs.Path("a") || r.Files[0].Offset != 0 || r.Files[0].Length != 4096 {
		t.Errorf("files top 8 sectors at a's start: %+v, %v", r, err)
	}
	// mid is not exported.
	if _, err := s.cl.Files(context.Background(), control.FilesReq{Name: "mid"}); !errors.Is(err, syscall.ENOENT) || !strings.Contains(err.Error(), "no filesystem is mounted on mid: it is not exported") {
		t.Errorf("files mid: %v, want no filesystem mounted", err)
	}
	// Names are for peers allowed to administer: others are refused; the
	// daemon's group may ask about daxstack's devices, and only root
	// about any other block device.
	for _, c := range []struct {
		gid       uint32
		dev, want string
	}{
		{65534, "top", "EACCES"},
		{peerGroup, "top", s.fs.Path("b")},
		{peerGroup, s.fs.Dev, "EACCES"},
	} {
		if out := unprivileged(t, s.d, c.gid, c.dev); out != c.want {
			t.Errorf("files %s as uid 65534 gid %d: %q, want %q", c.dev, c.gid, out, c.want)
		}
	}
	if r, err := s.cl.Files(context.Background(), control.FilesReq{Name: s.fs.Dev, Sector: e.Sector + 16, Count: 2}); err != nil || len(r.Files) != 1 || r.Files[0].Path != s.fs.Path("b") {
		t.Errorf("files %s as root: %+v, %v", s.fs.Dev, r, err)
	}
}

// The unprivileged peer is this test binary run again as nobody (uid
// 65534, with gid 65534 or the daemon's group), TestUnprivilegedPeer doing
// what the environment says.
const (
	envPeerSock  = "DAXSTACK_TEST_PEER_SOCK"
	envPeerDo    = "DAXSTACK_TEST_PEER_DO"
	envPeerSince = "DAXSTACK_TEST_PEER_SINCE"
	envPeerDev   = "DAXSTACK_TEST_PEER_DEV"

	peerGroup = 4242 // the daemon's group in these tests: a gid no account uses
)

// peerCmd prepares this binary to run TestUnprivilegedPeer as nobody
// against d, whose socket it opens to others.
func peerCmd(t *testing.T, d *daemon, gid uint32, do, dev string, since uint64) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	exe := filepath.Join(dir, "peer.test")
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, b, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, filepath.Dir(dir), d.dir, filepath.Dir(d.dir)} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(d.sock, 0o666); err != nil {
		t.Fatal(err)
	}
	c := exec.Command(exe, "-test.run=^TestUnprivilegedPeer$", "-test.count=1")
	c.Env = append(os.Environ(), envPeerSock+"="+d.sock, envPeerDo+"="+do, envPeerDev+"="+dev, fmt.Sprintf("%s=%d", envPeerSince, since))
	c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: gid}}
	c.Stderr = os.Stderr
	return c
}

// unprivileged asks for the files of dev as nobody in group gid and
// returns the first path of the answer, or "EACCES", or the error.
func unprivileged(t *testing.T, d *daemon, gid uint32, dev string) string {
	t.Helper()
	out, err := peerCmd(t, d, gid, "files", dev, 0).Output()
	if err != nil {
		t.Fatalf("unprivileged files %s: %v", dev, err)
	}
	var line string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if l := sc.Text(); len(l) > 5 && l[:5] == "PEER " {
			line = l[5:]
		}
	}
	return line
}

// peerWatcher is an unprivileged watcher's stream of events.
type peerWatcher struct {
	cmd    *exec.Cmd
	events chan rmapchain.Event
}

func startUnprivilegedWatcher(t *testing.T, d *daemon, since uint64) *peerWatcher {
	t.Helper()
	c := peerCmd(t, d, 65534, "watch", "", since)
	out, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	w := &peerWatcher{cmd: c, events: make(chan rmapchain.Event, 4096)}
	go func() {
		defer close(w.events)
		sc := bufio.NewScanner(out)
		sc.Buffer(nil, 16<<20)
		for sc.Scan() {
			l := sc.Text()
			if len(l) < 5 || l[:5] != "PEER " {
				continue
			}
			var ev rmapchain.Event
			if json.Unmarshal([]byte(l[5:]), &ev) == nil {
				w.events <- ev
			}
		}
	}()
	t.Cleanup(func() {
		c.Process.Kill()
		c.Wait()
	})
	return w
}

// until returns the events the watcher got up to and including seq.
func (w *peerWatcher) until(t *testing.T, seq uint64) []rmapchain.Event {
	t.Helper()
	var got []rmapchain.Event
	timeout := time.After(time.Minute)
	for {
		select {
		case ev, ok := <-w.events:
			if !ok {
				t.Fatalf("unprivileged watcher ended before event %d", seq)
			}
			got = append(got, ev)
			if ev.Seq >= seq && ev.Kind != service.KindFiles {
				return got
			}
		case <-timeout:
			t.Fatalf("unprivileged watcher: no event %d", seq)
		}
	}
}

// TestUnprivilegedPeer is not a test of its own: it is the body of the
// unprivileged peer of the tests above, run as another process.
func TestUnprivilegedPeer(t *testing.T) {
	sock := os.Getenv(envPeerSock)
	if sock == "" {
		t.Skip("the unprivileged peer of TestEventFiles and TestFilesMethod (run by them)")
	}
	switch os.Getenv(envPeerDo) {
	case "watch":
		var since uint64
		fmt.Sscan(os.Getenv(envPeerSince), &since)
		sub, err := service.Subscribe(sock, since, nil)
		if err != nil {
			t.Fatal(err)
		}
		for ev := range sub.Events() {
			b, _ := json.Marshal(ev)
			fmt.Printf("PEER %s\n", b)
		}
	case "files":
		cl, err := service.Dial(sock)
		if err != nil {
			t.Fatal(err)
		}
		r, err := cl.Files(context.Background(), control.FilesReq{Name: os.Getenv(envPeerDev)})
		switch {
		case err == nil && len(r.Files) > 0:
			fmt.Printf("PEER %s\n", r.Files[0].Path)
		case err == nil:
			fmt.Println("PEER no files")
		case errors.Is(err, syscall.EACCES):
			fmt.Println("PEER EACCES")
		default:
			fmt.Printf("PEER %v\n", err)
		}
	}
}
