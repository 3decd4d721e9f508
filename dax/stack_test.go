package dax_test

// I/O through stacks of mapped devices over real leaves: the stack's I/O
// path (stack/io.go) splitting at segment and chunk boundaries, errors
// from the error target and from poison, and clearing poison by writing.

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/daxstack/daxstack/dax"
	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/internal/testenv"
	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/stack/stacktest"
	_ "github.com/daxstack/daxstack/targets/all"
)

// leafSet is the leaves of a test: opened dax leaves by short name, the
// reference a table uses for each, and where their bytes can be read
// without going through the leaf.
type leafSet struct {
	o       *dax.Opener
	leaves  map[string]*dax.Leaf
	ref     map[string]string
	backing map[string]string
}

// opener is the pool's LeafOpener.
func (ls *leafSet) opener(ref string) (stack.Leaf, error) {
	l, err := ls.o.Open(ref)
	if err != nil {
		return nil, err
	}
	return l, nil
}

// adopt finds the leaves the pool holds, for the test to reach them
// (Inject, Sync, BadBlocks).
func (ls *leafSet) adopt(t testing.TB, p *stack.Pool) {
	t.Helper()
	for name, ref := range ls.ref {
		d, err := p.Lookup(ref)
		if err != nil {
			continue // no table uses it
		}
		ls.leaves[name] = d.Leaf().(*dax.Leaf)
	}
	t.Cleanup(func() {
		for _, l := range ls.leaves {
			l.Close()
		}
	})
}

// contents reads a leaf's bytes from its backing file, after syncing it.
func (ls *leafSet) contents(t testing.TB, name string) []byte {
	t.Helper()
	if l := ls.leaves[name]; l != nil {
		if err := l.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(ls.backing[name])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// head reads the first sectors of a leaf's backing file, after syncing
// the leaf.
func (ls *leafSet) head(t testing.TB, name string, sectors int) []byte {
	t.Helper()
	if l := ls.leaves[name]; l != nil {
		if err := l.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(ls.backing[name])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, sectors*512)
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

// dataAfter returns the offset of the first non-zero byte of a leaf's
// (sparse) backing file at or after from, or -1: it reads only the parts
// the file system says hold data.
func (ls *leafSet) dataAfter(t testing.TB, name string, from int64) int64 {
	t.Helper()
	f, err := os.Open(ls.backing[name])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	buf := make([]byte, 1<<20)
	for at := from; at < fi.Size(); {
		data, err := unix.Seek(int(f.Fd()), at, unix.SEEK_DATA)
		if err != nil {
			return -1 // ENXIO: no data past at
		}
		hole, err := unix.Seek(int(f.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			t.Fatal(err)
		}
		for pos := data; pos < hole; pos += int64(len(buf)) {
			n, _ := f.ReadAt(buf[:min(int64(len(buf)), hole-pos)], pos)
			if i := bytes.IndexFunc(buf[:n], func(r rune) bool { return r != 0 }); i >= 0 {
				return pos + int64(i)
			}
		}
		at = hole
	}
	return -1
}

// fileLeaves makes a zero-filled file leaf of the given sectors per name.
func fileLeaves(t testing.TB, o *dax.Opener, sectors map[string]int64) *leafSet {
	t.Helper()
	dir := t.TempDir()
	ls := &leafSet{o: o, leaves: map[string]*dax.Leaf{}, ref: map[string]string{}, backing: map[string]string{}}
	for name, n := range sectors {
		path := filepath.Join(dir, name+".img")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(n * 512); err != nil {
			t.Fatal(err)
		}
		f.Close()
		ls.ref[name], ls.backing[name] = path, path
	}
	return ls
}

// loopLeaves is fileLeaves with a loop device over each file; tables name
// them by major:minor.
func loopLeaves(t testing.TB, o *dax.Opener, sectors map[string]int64) *leafSet {
	t.Helper()
	testenv.NeedRoot(t)
	ls := fileLeaves(t, o, sectors)
	for name := range sectors {
		node := dax.NewLoop(t, ls.backing[name])
		ma, mi := dax.Devno(t, node)
		ls.ref[name] = fmt.Sprintf("%d:%d", ma, mi)
	}
	return ls
}

// create makes a mapped device with a table; "<A>" in the text stands for
// leaf A's reference.
func create(t testing.TB, p *stack.Pool, ls *leafSet, name, text string) *stack.Device {
	t.Helper()
	for n, r := range ls.ref {
		text = strings.ReplaceAll(text, "<"+n+">", r)
	}
	return stacktest.MustCreate(t, p, name, text)
}

// The stack of the I/O tests, three levels deep:
//
//	bottom: 0 1024 linear A 100 / 1024 1024 linear B 200
//	mid:    0 2048 striped 2 16 bottom 0 B 2500
//	top:    0 1000 linear mid 24 / 1000 16 error / 1016 500 linear A 2000 / 1516 32 zero
const (
	bottomTable = "0 1024 linear <A> 100\n1024 1024 linear <B> 200"
	midTable    = "0 2048 striped 2 16 bottom 0 <B> 2500"
	topTable    = "0 1000 linear mid 24\n1000 16 error\n1016 500 linear <A> 2000\n1516 32 zero"
	topSectors  = 1548
)

// where is the stack above worked out by hand (not by the stack): the
// leaf and sector holding top sector t, or "error"/"zero".
func where(t uint64) (string, uint64) {
	switch {
	case t < 1000:
		m := t + 24
		chunk, within := m/16, m%16
		row := chunk / 2
		if chunk%2 == 0 {
			return "A", 100 + row*16 + within // bottom sector row*16+within < 1024
		}
		return "B", 2500 + row*16 + within
	case t < 1016:
		return "error", 0
	case t < 1516:
		return "A", 2000 + t - 1016
	default:
		return "zero", 0
	}
}

func newStack(t testing.TB, ls *leafSet) (*stack.Pool, *stack.Device) {
	p := stack.NewPool(ls.opener)
	create(t, p, ls, "bottom", bottomTable)
	create(t, p, ls, "mid", midTable)
	top := create(t, p, ls, "top", topTable)
	ls.adopt(t, p)
	return p, top
}

func TestStackIOFileLeaves(t *testing.T) {
	var log poisonLog
	o := &dax.Opener{OnPoison: log.hook}
	testStackIO(t, fileLeaves(t, o, map[string]int64{"A": 4096, "B": 4096}), &log)
}

func TestStackIOLoopLeaves(t *testing.T) {
	var log poisonLog
	o := &dax.Opener{OnPoison: log.hook}
	testStackIO(t, loopLeaves(t, o, map[string]int64{"A": 4096, "B": 4096}), &log)
}

func testStackIO(t *testing.T, ls *leafSet, log *poisonLog) {
	_, top := newStack(t, ls)
	if top.Size() != topSectors {
		t.Fatalf("top has %d sectors", top.Size())
	}
	data := randBytes(topSectors*512, 7)

	t.Run("write split at every boundary", func(t *testing.T) {
		// Odd-sized writes that straddle chunk and segment boundaries.
		for _, r := range [][2]int{{0, 1000 * 512}, {1016 * 512, topSectors * 512}} {
			for at := r[0]; at < r[1]; {
				n := min(r[1]-at, 777+int(data[at])*13)
				if m, err := top.WriteAt(data[at:at+n], int64(at)); m != n || err != nil {
					t.Fatalf("WriteAt(%d bytes at %d) = %d, %v", n, at, m, err)
				}
				at += n
			}
		}
		files := map[string][]byte{"A": ls.contents(t, "A"), "B": ls.contents(t, "B")}
		for s := uint64(0); s < topSectors; s++ {
			leaf, ls := where(s)
			if leaf == "error" || leaf == "zero" {
				continue
			}
			if got := files[leaf][ls*512 : ls*512+512]; !bytes.Equal(got, data[s*512:s*512+512]) {
				t.Fatalf("top sector %d: leaf %s sector %d does not hold it", s, leaf, ls)
			}
		}
	})

	t.Run("read across chunks and segments", func(t *testing.T) {
		buf := make([]byte, 1000*512)
		if n, err := top.ReadAt(buf, 0); n != len(buf) || err != nil {
			t.Fatalf("ReadAt = %d, %v", n, err)
		}
		if !bytes.Equal(buf, data[:1000*512]) {
			t.Fatal("wrong data")
		}
		buf = make([]byte, 532*512-300)
		if n, err := top.ReadAt(buf, 1016*512+300); n != len(buf) || err != nil {
			t.Fatalf("ReadAt = %d, %v", n, err)
		}
		want := append(append([]byte{}, data[1016*512+300:1516*512]...), make([]byte, 32*512)...)
		if !bytes.Equal(buf, want) {
			t.Fatal("wrong data (or the zero target gave something)")
		}
	})

	t.Run("error target", func(t *testing.T) {
		buf := make([]byte, 20*512)
		n, err := top.ReadAt(buf, 990*512+11)
		var ioe *stack.IOError
		if !errors.As(err, &ioe) || ioe.Device != "top" || ioe.Sector != 1000 || ioe.Op != "read" || !errors.Is(err, syscall.EIO) {
			t.Fatalf("read into the error segment: %d, %v", n, err)
		}
		if n != 10*512-11 || !bytes.Equal(buf[:n], data[990*512+11:1000*512]) {
			t.Errorf("read %d bytes before the error, want %d", n, 10*512-11)
		}
		n, err = top.WriteAt(buf, 1015*512)
		if !errors.As(err, &ioe) || ioe.Sector != 1015 || ioe.Op != "write" || n != 0 {
			t.Fatalf("write into the error segment: %d, %v", n, err)
		}
	})

	t.Run("poison names the leaf", func(t *testing.T) {
		// Top 3 is mid 27: chunk 1 (stripe 1, row 0), B sector 2511.
		// Top 30 is mid 54: chunk 3 (stripe 1, row 1), B 2500+16+6 = 2522.
		// Top 10 is mid 34: chunk 2 (stripe 0, row 1), bottom 18, A 118.
		b := ls.leaves["B"]
		a := ls.leaves["A"]
		if err := b.Inject(extent.Of(extent.Extent{Start: 2511, Len: 2}, extent.Extent{Start: 2522, Len: 1})); err != nil {
			t.Fatal(err)
		}
		if err := a.Inject(extent.Of(extent.Extent{Start: 118, Len: 1})); err != nil {
			t.Fatal(err)
		}
		log.take()
		cases := []struct {
			off, n  int64
			wantN   int64
			sector  uint64
			leaf    *dax.Leaf
			leafBad extent.Extent
		}{
			{0, 8 * 512, 3 * 512, 3, b, extent.Extent{Start: 2511, Len: 2}},
			{4*512 + 1, 512, 0, 4, b, extent.Extent{Start: 2512, Len: 1}},
			{5 * 512, 5*512 + 100, 5 * 512, 10, a, extent.Extent{Start: 118, Len: 1}},
			{11 * 512, 40 * 512, 19 * 512, 30, b, extent.Extent{Start: 2522, Len: 1}},
		}
		for _, c := range cases {
			buf := make([]byte, c.n)
			n, err := top.ReadAt(buf, c.off)
			var ioe *stack.IOError
			var pe *dax.PoisonError
			if !errors.As(err, &ioe) || !errors.As(err, &pe) || !errors.Is(err, syscall.EIO) {
				t.Fatalf("read %d+%d over poison: %d, %v", c.off, c.n, n, err)
			}
			if ioe.Device != "top" || ioe.Sector != c.sector || pe.Leaf != c.leaf.Name() || pe.Bad != c.leafBad || int64(n) != c.wantN {
				t.Errorf("read %d+%d: %d bytes, %v; want %d bytes, top sector %d, %s %v", c.off, c.n, n, err, c.wantN, c.sector, c.leaf.Name(), c.leafBad)
			}
			if !bytes.Equal(buf[:n], data[c.off:c.off+int64(n)]) {
				t.Error("wrong bytes before the poison")
			}
		}
	})

	t.Run("write clears poison", func(t *testing.T) {
		// A write over top 3..4 in part is refused; over them whole clears
		// B 2511..2512, reported in leaf sectors.
		_, err := top.WriteAt(make([]byte, 512), 3*512+256)
		var ioe *stack.IOError
		if !errors.As(err, &ioe) || ioe.Sector != 3 || !errors.Is(err, syscall.EIO) {
			t.Fatalf("partial write over poison: %v", err)
		}
		fresh := bytes.Repeat([]byte{0xc1}, 4*512)
		if n, err := top.WriteAt(fresh, 2*512); n != len(fresh) || err != nil {
			t.Fatalf("clearing write: %d, %v", n, err)
		}
		if got := log.take(); len(got) != 1 || got[0] != "added {} cleared {2511+2}" {
			t.Errorf("OnPoison after the clearing write: %q", got)
		}
		if want := extent.Of(extent.Extent{Start: 2522, Len: 1}); !ls.leaves["B"].BadBlocks().Equal(want) {
			t.Errorf("B's poison %v, want %v", ls.leaves["B"].BadBlocks(), want)
		}
		buf := make([]byte, 8*512)
		if _, err := top.ReadAt(buf, 0); err != nil {
			t.Fatal(err)
		}
		want := append(append(append([]byte{}, data[:2*512]...), fresh...), data[6*512:8*512]...)
		if !bytes.Equal(buf, want) {
			t.Fatal("wrong data after the clearing write")
		}
	})
	t.Run("lost leaf", func(t *testing.T) {
		a := ls.leaves["A"]
		a.SetLost(true)
		defer a.SetLost(false)
		// Top 1016 is A 2000 through the linear segment.
		n, err := top.ReadAt(make([]byte, 1024), 1015*512+512)
		var ioe *stack.IOError
		if !errors.As(err, &ioe) || ioe.Sector != 1016 || !errors.Is(err, syscall.ENXIO) || n != 0 {
			t.Fatalf("read of a lost leaf through the stack: %d, %v; want ENXIO at top 1016", n, err)
		}
		if a.Size() != 4096 {
			t.Errorf("lost leaf size %d", a.Size())
		}
		// B is still there: top 3 maps to it.
		if _, err := top.ReadAt(make([]byte, 512), 3*512); err != nil {
			t.Errorf("read of B while A is lost: %v", err)
		}
	})
}
