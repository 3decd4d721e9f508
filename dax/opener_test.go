package dax_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/daxstack/daxstack/dax"
	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/stack"
)

// *dax.Leaf is a stack.Leaf, with the optional methods the reverse map
// and the pool use.
var (
	_ stack.Leaf = (*dax.Leaf)(nil)
	_ interface {
		BadBlocks() extent.Set
		Lost() bool
		Close() error
	} = (*dax.Leaf)(nil)
)

// tempFile makes a file of size bytes in dir whose every byte is fill.
func tempFile(t testing.TB, dir string, size int64, fill byte) string {
	t.Helper()
	f, err := os.CreateTemp(dir, "leaf*.img")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if fill == 0 {
		if err := f.Truncate(size); err != nil {
			t.Fatal(err)
		}
		return f.Name()
	}
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = fill
	}
	for at := int64(0); at < size; at += int64(len(buf)) {
		if _, err := f.WriteAt(buf[:min(int64(len(buf)), size-at)], at); err != nil {
			t.Fatal(err)
		}
	}
	return f.Name()
}

func stat(t testing.TB, path string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestOpenFile(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name            string
		size            int64
		want            uint64
		viaRel, viaLink bool
	}{
		{"whole sectors", 64 << 10, 128, false, false},
		{"rounded down", 8<<10 + 100, 16, false, false},
		{"under a sector", 100, 0, false, false},
		{"relative path", 4096, 8, true, false},
		{"through a symlink", 4096, 8, false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := tempFile(t, dir, c.size, 0)
			ref := path
			switch {
			case c.viaRel:
				t.Chdir(dir)
				ref = filepath.Base(path)
			case c.viaLink:
				ref = filepath.Join(dir, "link-"+filepath.Base(path))
				if err := os.Symlink(path, ref); err != nil {
					t.Fatal(err)
				}
			}
			var o dax.Opener
			l, err := o.Open(ref)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			st := stat(t, path)
			wantPath := path
			if c.viaLink {
				wantPath = ref // files keep the path they were named by
			}
			checks := []struct{ what, got, want string }{
				{"ID", l.ID(), fmt.Sprintf("file:%d:%d", st.Dev, st.Ino)},
				{"Ref", l.Ref(), wantPath},
				{"Name", l.Name(), wantPath},
				{"Path", l.Path(), wantPath},
				{"Kind", l.Kind(), dax.KindFile},
				{"PoisonSource", l.PoisonSource(), dax.SourceEmulated},
			}
			for _, ch := range checks {
				if ch.got != ch.want {
					t.Errorf("%s = %q, want %q", ch.what, ch.got, ch.want)
				}
			}
			if l.Size() != c.want {
				t.Errorf("Size = %d, want %d", l.Size(), c.want)
			}
			id := l.Identity()
			if id.Kind != dax.KindFile || id.Dev != st.Dev || id.Ino != st.Ino {
				t.Errorf("Identity = %+v, stat dev %d ino %d", id, st.Dev, st.Ino)
			}
			again, err := o.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer again.Close()
			if again.ID() != l.ID() || !l.Identity().Same(again.Identity()) {
				t.Errorf("reopening gives ID %s identity %+v", again.ID(), again.Identity())
			}
			if l.Lost() || !l.BadBlocks().Empty() {
				t.Errorf("fresh leaf lost=%v bad=%v", l.Lost(), l.BadBlocks())
			}
		})
	}
}

func TestOpenRefused(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name string
		ref  string
		is   []error
	}{
		{"empty", "", []error{syscall.ENOENT}},
		{"no such file", filepath.Join(dir, "nope"), []error{fs.ErrNotExist, syscall.ENOENT}},
		{"directory", dir, []error{dax.ErrUnsupported, syscall.ENOTBLK}},
		{"no such device number", "4094:1048575", []error{fs.ErrNotExist, syscall.ENOENT}},
		{"character device not dax", "/dev/null", []error{dax.ErrUnsupported, syscall.ENOTBLK}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var o dax.Opener
			l, err := o.Open(c.ref)
			if err == nil {
				l.Close()
				t.Fatalf("Open(%q) = %s, want an error", c.ref, l.ID())
			}
			for _, want := range c.is {
				if !errors.Is(err, want) {
					t.Errorf("Open(%q): %v does not match %v", c.ref, err, want)
				}
			}
			t.Logf("Open(%q): %v", c.ref, err)
		})
	}
}

func TestIdentitySame(t *testing.T) {
	file := dax.Identity{Kind: dax.KindFile, Dev: 2049, Ino: 77}
	loop := dax.Identity{Kind: dax.KindBlock, Major: 7, Minor: 3, DiskSeq: 12, Loop: true, BackingDev: 2049, BackingIno: 99, LoopOffset: 4096}
	pmem := dax.Identity{Kind: dax.KindPmem, Major: 259, Minor: 0, DiskSeq: 5}
	pmemU := dax.Identity{Kind: dax.KindPmem, Major: 259, Minor: 0, DiskSeq: 5, UUID: "a-b-c"}
	with := func(id dax.Identity, f func(*dax.Identity)) dax.Identity { f(&id); return id }
	cases := []struct {
		name string
		a, b dax.Identity
		want bool
	}{
		{"file, same inode", file, file, true},
		{"file, other inode", file, with(file, func(i *dax.Identity) { i.Ino = 78 }), false},
		{"file, other fs", file, with(file, func(i *dax.Identity) { i.Dev = 2050 }), false},
		{"file vs block", file, with(file, func(i *dax.Identity) { i.Kind = dax.KindBlock }), false},
		{"zero identity", dax.Identity{}, dax.Identity{}, false},
		{"loop, new diskseq and minor", loop, with(loop, func(i *dax.Identity) { i.DiskSeq, i.Minor = 40, 5 }), true},
		{"loop, other offset", loop, with(loop, func(i *dax.Identity) { i.LoopOffset = 0 }), false},
		{"loop, other backing file", loop, with(loop, func(i *dax.Identity) { i.BackingIno = 100 }), false},
		{"loop, now detached", loop, with(loop, func(i *dax.Identity) { i.Loop, i.BackingDev, i.BackingIno, i.LoopOffset = false, 0, 0, 0 }), false},
		{"pmem, same diskseq", pmem, pmem, true},
		{"pmem, new diskseq", pmem, with(pmem, func(i *dax.Identity) { i.DiskSeq = 6 }), false},
		{"pmem, other minor", pmem, with(pmem, func(i *dax.Identity) { i.Minor = 1 }), false},
		{"pmem, diskseq unknown", pmem, with(pmem, func(i *dax.Identity) { i.DiskSeq = 0 }), true},
		{"pmem, same uuid after reboot", pmemU, with(pmemU, func(i *dax.Identity) { i.DiskSeq, i.Minor = 1, 2 }), true},
		{"pmem, other uuid", pmemU, with(pmemU, func(i *dax.Identity) { i.UUID = "d-e-f" }), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.a.Same(c.b); got != c.want {
				t.Errorf("%+v.Same(%+v) = %v, want %v", c.a, c.b, got, c.want)
			}
			if got := c.b.Same(c.a); got != c.want {
				t.Errorf("not symmetric: %+v.Same(%+v) = %v", c.b, c.a, got)
			}
		})
	}
	// It survives a trip through a store.
	b, err := json.Marshal(loop)
	if err != nil {
		t.Fatal(err)
	}
	var back dax.Identity
	if err := json.Unmarshal(b, &back); err != nil || back != loop {
		t.Fatalf("JSON round trip: %s -> %+v, %v", b, back, err)
	}
}

func TestMissing(t *testing.T) {
	l := dax.Missing("blk:259:3", "259:3", "pmem3", dax.KindPmem, 4096)
	if !l.Lost() || l.Size() != 4096 || l.ID() != "blk:259:3" || l.Ref() != "259:3" || l.Name() != "pmem3" || l.Kind() != dax.KindPmem {
		t.Fatalf("Missing gives %s %s %s %s size %d lost %v", l.ID(), l.Ref(), l.Name(), l.Kind(), l.Size(), l.Lost())
	}
	l.SetLost(false)
	if !l.Lost() {
		t.Error("a missing leaf came back with SetLost(false)")
	}
	buf := make([]byte, 512)
	if _, err := l.ReadAt(buf, 0); !errors.Is(err, syscall.ENXIO) {
		t.Errorf("read of a missing leaf: %v, want ENXIO", err)
	}
	if _, err := l.WriteAt(buf, 0); !errors.Is(err, syscall.ENXIO) {
		t.Errorf("write to a missing leaf: %v, want ENXIO", err)
	}
	saved := extent.Of(extent.Extent{Start: 8, Len: 8})
	l.SetPoison(saved)
	if !l.BadBlocks().Equal(saved) || l.PoisonSource() != dax.SourceEmulated {
		t.Errorf("restored poison %v (%s), want %v", l.BadBlocks(), l.PoisonSource(), saved)
	}
	if err := l.Sync(); err != nil {
		t.Errorf("Sync of a missing leaf: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("Close of a missing leaf: %v", err)
	}
	f := dax.Missing("file:1:2", "/srv/leaf.img", "/srv/leaf.img", dax.KindFile, 8)
	if f.Path() != "/srv/leaf.img" {
		t.Errorf("missing file leaf path %q", f.Path())
	}
}
