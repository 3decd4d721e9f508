package blockdev

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/daxstack/daxstack/export/devfs"
	"github.com/daxstack/daxstack/export/internal/testdev"
	"github.com/daxstack/daxstack/export/linux"
)

func TestAddRemove(t *testing.T) {
	r := newRig(t)
	_, x := r.add("top", 8<<20, false)
	out := run(t, "losetup", "-l", "-n", "-O", "DIO,LOG-SEC,RO,BACK-FILE", x.Loop.Path)
	if got := strings.Join(strings.Fields(out), " "); got != "1 512 0 "+r.fs.Path("top") {
		t.Errorf("losetup -l: %q; want direct I/O, 512-byte sectors, read-write, over %s", got, r.fs.Path("top"))
	}
	wantLinks := []string{filepath.Join(r.linkDir, "top"), filepath.Join(r.mapperDir, "top")}
	if strings.Join(x.Links, " ") != strings.Join(wantLinks, " ") {
		t.Errorf("links %v, want %v", x.Links, wantLinks)
	}
	for _, l := range wantLinks {
		if got := readlink(t, l); got != x.Loop.Path {
			t.Errorf("%s -> %s, want %s", l, got, x.Loop.Path)
		}
	}
	if n, err := linux.Size(wantLinks[0]); err != nil || n != 8<<20 {
		t.Errorf("size through the link: %d, %v", n, err)
	}
	if got, ok := r.m.Lookup("top"); !ok || got.Loop != x.Loop {
		t.Errorf("Lookup = %+v, %v", got, ok)
	}
	if _, err := r.m.Add("top", r.dev("again", 1<<20), devfs.Attr{Size: 1 << 20}); !errors.Is(err, ErrExists) {
		t.Errorf("second Add: %v, want ErrExists", err)
	}

	rm, err := r.m.Remove("top", false)
	if err != nil || rm.Deferred {
		t.Fatalf("Remove = %+v, %v", rm, err)
	}
	if _, err := linux.LoopStatus(x.Loop.Path); !errors.Is(err, linux.ErrNotAttached) {
		t.Errorf("loop after Remove: %v", err)
	}
	for _, l := range wantLinks {
		if _, err := os.Lstat(l); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("link %s after Remove: %v", l, err)
		}
	}
	if got := r.fs.List(); len(got) != 0 {
		t.Errorf("device files after Remove: %+v", got)
	}
	if _, err := r.m.Remove("top", false); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Remove: %v", err)
	}
}

// I/O through the block device reaches the device at once, both ways, and
// a failure is exactly the bad sectors; for a device read with ReadAt and
// for one that lends its bytes.
func TestIOThroughTheLoop(t *testing.T) {
	for _, lending := range []bool{false, true} {
		t.Run(fmt.Sprintf("lending=%v", lending), func(t *testing.T) {
			r := newRig(t)
			var d *testdev.Dev
			var x Export
			if lending {
				var err error
				d, err = testdev.NewMapped(filepath.Join(t.TempDir(), "a.img"), 8<<20)
				if err != nil {
					t.Fatal(err)
				}
				defer d.Close()
				x = r.export("a", testdev.Lending{Dev: d}, 8<<20, false)
			} else {
				d, x = r.add("a", 8<<20, false)
			}
			testIOThroughTheLoop(t, d, x)
			if c := d.Counts(); (c.Lends > 0) != lending {
				t.Errorf("counts %+v, lending %v", c, lending)
			}
		})
	}
}

func testIOThroughTheLoop(t *testing.T, d *testdev.Dev, x Export) {
	b := openDirect(t, x.Links[0], os.O_RDWR)
	d.File().WriteAt(bytes.Repeat([]byte("under"), 1024), 1<<20)
	got, err := b.readAt(1<<20, 4096)
	if err != nil || !bytes.HasPrefix(got, []byte("underunder")) {
		t.Errorf("read of a change underneath: %q, %v", got[:10], err)
	}
	if err := b.writeAt(bytes.Repeat([]byte("over"), 1024), 2<<20); err != nil {
		t.Fatal(err)
	}
	back := make([]byte, 4096)
	d.File().ReadAt(back, 2<<20)
	if !bytes.Equal(back, bytes.Repeat([]byte("over"), 1024)) {
		t.Error("device lacks a write through the block device")
	}

	d.SetBad(1000, 1)
	for _, tc := range []struct {
		sector int64
		n      int
		eio    bool
	}{
		{999, 512, false}, {1000, 512, true}, {1001, 512, false},
		{996, 4096, true}, {1001, 4096, false}, {984, 8 * 512, false},
	} {
		_, err := b.readAt(tc.sector*512, tc.n)
		if tc.eio != errors.Is(err, syscall.EIO) || (!tc.eio && err != nil) {
			t.Errorf("O_DIRECT read of %d bytes at sector %d: %v, want EIO %v", tc.n, tc.sector, err, tc.eio)
		}
	}
	d.SetGood(1000, 1)
	if _, err := b.readAt(1000*512, 512); err != nil {
		t.Errorf("read after the clear: %v", err)
	}
}

func TestResizeReadOnlySuspend(t *testing.T) {
	r := newRig(t)
	d, x := r.add("a", 8<<20, false)
	if err := d.Resize(24 << 20); err != nil {
		t.Fatal(err)
	}
	if err := r.m.Resize("a", 24<<20); err != nil {
		t.Fatal(err)
	}
	if out := strings.TrimSpace(run(t, "blockdev", "--getsz", x.Links[0])); out != "49152" {
		t.Errorf("blockdev --getsz right after Resize: %s, want 49152", out)
	}
	b := openDirect(t, x.Loop.Path, os.O_RDWR)
	if _, err := b.readAt(20<<20, 4096); err != nil {
		t.Errorf("read past the old end: %v", err)
	}

	if err := r.m.SetReadOnly("a", true); err != nil {
		t.Fatal(err)
	}
	if err := b.writeAt([]byte("x"), 0); !errors.Is(err, syscall.EPERM) {
		t.Errorf("write to a read-only block device: %v, want EPERM", err)
	}
	if out := run(t, "losetup", "-l", "-n", "-O", "RO", x.Loop.Path); strings.TrimSpace(out) != "1" {
		t.Errorf("losetup RO %q", out)
	}
	if err := r.m.SetReadOnly("a", false); err != nil {
		t.Fatal(err)
	}
	if err := b.writeAt([]byte("x"), 0); err != nil {
		t.Errorf("write once read-write again: %v", err)
	}

	d.Suspend()
	done := make(chan error, 1)
	go func() { _, err := b.readAt(0, 4096); done <- err }()
	select {
	case err := <-done:
		t.Fatalf("read of a suspended device returned: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	d.Resume()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("read after resume: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("resume did not release the read")
	}

	_, rx := r.add("ro", 1<<20, true)
	w := openDirect(t, rx.Loop.Path, os.O_RDWR)
	if err := w.writeAt([]byte("x"), 0); !errors.Is(err, syscall.EPERM) {
		t.Errorf("write to a device made read-only: %v, want EPERM", err)
	}
}

// Zeroing and discards through the block device reach WriteZeroes and
// Discard.
func TestZeroesAndDiscards(t *testing.T) {
	r := newRig(t)
	d, x := r.add("a", 8<<20, false)
	d.File().WriteAt(bytes.Repeat([]byte{0xff}, 8<<20), 0)
	d.SetBad(2048, 1)
	zeroed := func(off, n int64) bool {
		p := make([]byte, n)
		d.File().ReadAt(p, off)
		return bytes.Equal(p, make([]byte, n))
	}
	c0 := d.Counts()
	run(t, "fallocate", "-z", "-o", "1MiB", "-l", "64KiB", x.Links[0])
	c1 := d.Counts()
	if o, n := d.LastZero(); c1.Zeroes == c0.Zeroes || o != 1<<20 || n != 64<<10 || !zeroed(1<<20, 64<<10) || len(d.Bad()) != 0 {
		t.Errorf("fallocate -z: counts %+v -> %+v, last (%d, %d), bad %v", c0, c1, o, n, d.Bad())
	}
	run(t, "fallocate", "-p", "-o", "2MiB", "-l", "64KiB", x.Links[0])
	c2 := d.Counts()
	if o, n := d.LastDiscard(); c2.Discards == c1.Discards || c2.Zeroes == c1.Zeroes || o != 2<<20 || n != 64<<10 || !zeroed(2<<20, 64<<10) {
		t.Errorf("fallocate -p: counts %+v -> %+v, last discard (%d, %d)", c1, c2, o, n)
	}
	run(t, "blkdiscard", "-f", "-o", "4MiB", "-l", "1MiB", x.Links[0])
	c3 := d.Counts()
	if o, n := d.LastDiscard(); c3.Discards == c2.Discards || o != 4<<20 || n != 1<<20 || !zeroed(4<<20, 1<<20) {
		t.Errorf("blkdiscard: counts %+v -> %+v, last (%d, %d)", c2, c3, o, n)
	}
	if zeroed(0, 1<<20) || zeroed(7<<20, 1<<20) {
		t.Error("zeroing reached sectors outside its ranges")
	}
}

func TestLinkCollisions(t *testing.T) {
	r := newRig(t)
	taken := filepath.Join(r.linkDir, "taken")
	if err := os.WriteFile(taken, []byte("someone's"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/null", filepath.Join(r.mapperDir, "other")); err != nil {
		t.Fatal(err)
	}
	loopsBefore := len(r.ourLoops())
	for _, name := range []string{"taken", "other"} {
		_, err := r.m.Add(name, r.dev(name, 1<<20), devfs.Attr{Size: 1 << 20})
		var le *LinkError
		if !errors.As(err, &le) || !errors.Is(err, ErrLinkTaken) || !errors.Is(err, syscall.EEXIST) {
			t.Errorf("Add over %s's link: %v, want a LinkError", name, err)
		}
	}
	if b, _ := os.ReadFile(taken); string(b) != "someone's" {
		t.Errorf("the taken name was changed: %q", b)
	}
	if got := readlink(t, filepath.Join(r.mapperDir, "other")); got != "/dev/null" {
		t.Errorf("the other link now points to %s", got)
	}
	if got := r.fs.List(); len(got) != 0 {
		t.Errorf("a refused Add left device files %+v", got)
	}
	if n := len(r.ourLoops()); n != loopsBefore {
		t.Errorf("a refused Add left loops: %d, had %d", n, loopsBefore)
	}

	// A link to a detached loop device serves nothing: it is replaced.
	_, x := r.add("a", 1<<20, false)
	if _, err := r.m.Remove("a", false); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(r.linkDir, "b")
	if err := os.Symlink(x.Loop.Path, stale); err != nil {
		t.Fatal(err)
	}
	if _, err := linux.LoopStatus(x.Loop.Path); !errors.Is(err, linux.ErrNotAttached) {
		t.Skipf("%s was attached again by someone else meanwhile", x.Loop.Path)
	}
	_, bx := r.add("b", 1<<20, false)
	if got := readlink(t, stale); got != bx.Loop.Path {
		t.Errorf("stale link -> %s, want %s", got, bx.Loop.Path)
	}

	// A rename onto a taken name is refused and changes nothing.
	err := r.m.Rename("b", "taken")
	if !errors.Is(err, ErrLinkTaken) {
		t.Errorf("Rename onto a taken name: %v", err)
	}
	if _, ok := r.m.Lookup("b"); !ok || readlink(t, stale) != bx.Loop.Path {
		t.Error("a refused rename moved something")
	}
	if _, err := os.Stat(r.fs.Path("b")); err != nil {
		t.Errorf("device file after a refused rename: %v", err)
	}
}

func TestRename(t *testing.T) {
	r := newRig(t)
	_, x := r.add("old", 1<<20, false)
	if err := r.m.Rename("old", "new"); err != nil {
		t.Fatal(err)
	}
	y, ok := r.m.Lookup("new")
	if !ok || y.Loop != x.Loop {
		t.Fatalf("Lookup(new) = %+v, %v; loop was %+v", y, ok, x.Loop)
	}
	for _, l := range x.Links {
		if _, err := os.Lstat(l); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("old link %s: %v", l, err)
		}
	}
	for _, l := range y.Links {
		if got := readlink(t, l); got != x.Loop.Path || filepath.Base(l) != "new" {
			t.Errorf("new link %s -> %s", l, got)
		}
	}
	st, err := linux.LoopStatus(x.Loop.Path)
	if err != nil || st.BackingFile != r.fs.Path("new") {
		t.Errorf("backing file after rename: %q, %v", st.BackingFile, err)
	}
	if _, err := r.m.Add("old", r.dev("old2", 1<<20), devfs.Attr{Size: 1 << 20}); err != nil {
		t.Errorf("the old name is free again: %v", err)
	}
}

func TestResolve(t *testing.T) {
	r := newRig(t)
	_, x := r.add("a", 1<<20, false)
	other := filepath.Join(t.TempDir(), "elsewhere")
	if err := os.Symlink(x.Links[0], other); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{x.Links[0], x.Links[1], x.Loop.Path, x.Loop.Dev.String(), r.fs.Path("a"), other} {
		if name, ok := r.m.Resolve(s); !ok || name != "a" {
			t.Errorf("Resolve(%q) = %q, %v", s, name, ok)
		}
	}
	for _, s := range []string{"/dev/null", filepath.Join(r.linkDir, "b"), "7:99999", "1:3", "a", r.fs.Dir()} {
		if name, ok := r.m.Resolve(s); ok {
			t.Errorf("Resolve(%q) = %q", s, name)
		}
	}
}

func TestMapperMode(t *testing.T) {
	_, err := os.Stat(MapperControl)
	kernelHasDM := err == nil
	for _, tc := range []struct {
		mode MapperMode
		want bool
	}{{MapperOn, true}, {MapperOff, false}, {MapperAuto, !kernelHasDM}} {
		if got := (Options{MapperLinks: tc.mode}).mapperWanted(); got != tc.want {
			t.Errorf("%v: %v, want %v", tc.mode, got, tc.want)
		}
		if m, err := ParseMapperMode(tc.mode.String()); err != nil || m != tc.mode {
			t.Errorf("ParseMapperMode(%q) = %v, %v", tc.mode, m, err)
		}
	}
	if _, err := ParseMapperMode("yes"); !errors.Is(err, ErrInvalid) {
		t.Errorf("ParseMapperMode(yes): %v", err)
	}
}

// Close tears everything down: no loops, no links, no directories it made.
func TestClose(t *testing.T) {
	r := newRig(t)
	r.add("a", 1<<20, false)
	r.add("b", 1<<20, true)
	if err := r.m.Claim("b"); err != nil {
		t.Fatal(err)
	}
	if err := r.m.Close(); err != nil {
		t.Fatal(err)
	}
	if l := r.ourLoops(); len(l) != 0 {
		t.Errorf("loops after Close: %+v", l)
	}
	for _, d := range []string{r.linkDir, r.mapperDir} {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after Close: %v", d, err)
		}
	}
	if err := r.fs.Close(); err != nil {
		t.Errorf("devfs close after the manager's: %v", err)
	}
}

func TestNewRefusesSharedLinkDirs(t *testing.T) {
	r := newRig(t)
	shared := filepath.Join(t.TempDir(), "shared")
	if err := os.Mkdir(shared, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(shared, 0o1777)
	if _, err := New(r.fs, Options{LinkDir: shared, MapperLinks: MapperOff}); !errors.Is(err, ErrInvalid) {
		t.Errorf("New with a world-writable link directory: %v, want ErrInvalid", err)
	}
	if _, err := New(r.fs, Options{LinkDir: "relative", MapperLinks: MapperOff}); !errors.Is(err, ErrInvalid) {
		t.Errorf("New with a relative link directory: %v, want ErrInvalid", err)
	}
}
