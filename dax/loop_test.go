package dax_test

// Tests on real loop devices (root only; they fail instead of skipping
// when DAXSTACK_REQUIRE_ROOT=1).

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/daxstack/daxstack/dax"
	"github.com/daxstack/daxstack/internal/testenv"
)

// patternFile makes a file of n sectors where sector k holds "K%07d"
// repeated.
func patternFile(t testing.TB, dir string, n int) (string, []byte) {
	t.Helper()
	var b bytes.Buffer
	for k := range n {
		b.WriteString(strings.Repeat(fmt.Sprintf("K%07d", k), 64))
	}
	path := filepath.Join(dir, fmt.Sprintf("pattern%d.img", n))
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, b.Bytes()
}

func sysfsAttr(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestLoopLeaf(t *testing.T) {
	testenv.NeedRoot(t)
	dir := t.TempDir()
	file, data := patternFile(t, dir, 8192) // 4 MiB
	node := dax.NewLoop(t, file)
	ma, mi := dax.Devno(t, node)
	devno := fmt.Sprintf("%d:%d", ma, mi)
	name := filepath.Base(node)
	link := filepath.Join(dir, "by-name")
	if err := os.Symlink(node, link); err != nil {
		t.Fatal(err)
	}
	fst := stat(t, file)
	for _, ref := range []string{node, devno, link} {
		t.Run(strings.ReplaceAll(ref, "/", "_"), func(t *testing.T) {
			var o dax.Opener
			l, err := o.Open(ref)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			checks := []struct{ what, got, want string }{
				{"ID", l.ID(), "blk:" + devno},
				{"Ref", l.Ref(), devno},
				{"Name", l.Name(), name},
				{"Path", l.Path(), node},
				{"Kind", l.Kind(), dax.KindBlock},
				{"PoisonSource", l.PoisonSource(), dax.SourceEmulated},
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
				}
			}
			if l.Size() != 8192 {
				t.Errorf("Size = %d, want 8192", l.Size())
			}
			id := l.Identity()
			seq := sysfsAttr(t, "/sys/block/"+name+"/diskseq")
			if !id.Loop || id.BackingDev != fst.Dev || id.BackingIno != fst.Ino || id.LoopOffset != 0 ||
				fmt.Sprint(id.DiskSeq) != seq || id.Major != ma || id.Minor != mi {
				t.Errorf("Identity = %+v; backing file dev %d ino %d, diskseq %s", id, fst.Dev, fst.Ino, seq)
			}
		})
	}

	t.Run("io", func(t *testing.T) {
		var o dax.Opener
		l, err := o.Open(devno)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		buf := make([]byte, 3*512+17)
		if _, err := l.ReadAt(buf, 100*512-9); err != nil || !bytes.Equal(buf, data[100*512-9:][:len(buf)]) {
			t.Fatalf("read through the loop device: %v", err)
		}
		if dax.MappedSync(l) {
			t.Error("a loop device offered MAP_SYNC")
		}
		fresh := bytes.Repeat([]byte("fresh!"), 1000)
		if _, err := l.WriteAt(fresh, 12345); err != nil {
			t.Fatal(err)
		}
		if err := l.Sync(); err != nil {
			t.Fatal(err)
		}
		back, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		want := append(append(append([]byte{}, data[:12345]...), fresh...), data[12345+len(fresh):]...)
		if !bytes.Equal(back, want) {
			t.Fatal("the backing file does not hold what was written through the leaf")
		}
	})
}

// A loop device detached and attached again to the same file at the same
// offset is the same leaf, though its diskseq (and maybe its number)
// changed; another offset or another file is not.
func TestLoopIdentityAcrossReattach(t *testing.T) {
	testenv.NeedRoot(t)
	dir := t.TempDir()
	fileA, _ := patternFile(t, dir, 2048)
	fileB := filepath.Join(dir, "b.img")
	if err := os.WriteFile(fileB, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	var o dax.Opener
	identity := func(node string) (dax.Identity, uint64) {
		t.Helper()
		l, err := o.Open(node)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Identity(), l.Size()
	}
	node := dax.NewLoop(t, fileA)
	first, size := identity(node)
	if size != 2048 {
		t.Fatalf("size %d, want 2048", size)
	}
	dax.DetachLoop(t, node)
	cases := []struct {
		name string
		file string
		args []string
		same bool
		size uint64
	}{
		{"same file and offset", fileA, nil, true, 2048},
		{"same file, offset 4096", fileA, []string{"-o", "4096"}, false, 2040},
		{"another file", fileB, nil, false, 2048},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := dax.NewLoop(t, c.file, c.args...)
			defer dax.DetachLoop(t, n)
			now, size := identity(n)
			if got := first.Same(now); got != c.same {
				t.Errorf("Same = %v, want %v (was %+v, now %+v)", got, c.same, first, now)
			}
			if now.DiskSeq == first.DiskSeq {
				t.Errorf("diskseq did not change: %d", now.DiskSeq)
			}
			if size != c.size {
				t.Errorf("size %d, want %d", size, c.size)
			}
		})
	}
}

func TestLoopReadOnly(t *testing.T) {
	testenv.NeedRoot(t)
	file, data := patternFile(t, t.TempDir(), 64)
	node := dax.NewLoop(t, file, "-r")
	var o dax.Opener
	l, err := o.Open(node)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	buf := make([]byte, 1024)
	if _, err := l.ReadAt(buf, 512); err != nil || !bytes.Equal(buf, data[512:1536]) {
		t.Fatalf("read of a read-only loop: %v", err)
	}
	if _, err := l.WriteAt(buf, 0); !errors.Is(err, dax.ErrReadOnly) || !errors.Is(err, syscall.EROFS) {
		t.Fatalf("write to a read-only loop: %v, want EROFS", err)
	}
}
