//go:build guest

package guest

// MAP_SYNC on real pmem. The kernel grants it to device-dax and to files
// on a filesystem mounted -o dax, and refuses it for a pmem block device
// (whose mmap goes through the page cache); a granted MAP_SYNC mapping
// carries the "sf" VmFlag in /proc/PID/smaps. daxstack maps every leaf
// asking for MAP_SYNC first: these tests check, in the smaps of the
// processes that hold daxstack's mappings, that it got it where the kernel
// gives it.

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/daxstack/daxstack/dax"
)

// mapSyncLeaves are one leaf of each kind daxstack meets on a pmem
// machine: device-dax, a fsdax namespace's block device, a file on an
// ext4 -o dax filesystem, and a file on tmpfs.
type mapSyncLeaves struct {
	devdax, pmem, daxFile, tmpFile string
}

func makeMapSyncLeaves(t *testing.T) mapSyncLeaves {
	dd := createNamespace(t, region2, "devdax", "64M")
	pm := createNamespace(t, region0, "fsdax", "64M")
	fsns := createNamespace(t, region1, "fsdax", "64M")
	mnt := daxFS(t, fsns)
	l := mapSyncLeaves{devdax: dd.node(), pmem: pm.node(), daxFile: filepath.Join(mnt, "leaf.img"), tmpFile: filepath.Join(t.TempDir(), "leaf.img")}
	for _, f := range []string{l.daxFile, l.tmpFile} {
		writeFile(t, f, make([]byte, 8<<20))
	}
	if !isDAX(t, l.daxFile) {
		t.Fatalf("%s on the -o dax mount is not DAX (statx)", l.daxFile)
	}
	return l
}

// TestMapSyncKernel records what the kernel grants, with mappings of
// this process's own: the facts the daxstack checks below stand on.
func TestMapSyncKernel(t *testing.T) {
	l := makeMapSyncLeaves(t)
	for _, c := range []struct {
		path string
		sync bool // MAP_SYNC granted
	}{{l.devdax, true}, {l.daxFile, true}, {l.pmem, false}, {l.tmpFile, false}} {
		t.Run(filepath.Base(c.path), func(t *testing.T) {
			f, err := os.OpenFile(c.path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			m, err := unix.Mmap(int(f.Fd()), 0, 2<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED_VALIDATE|unix.MAP_SYNC)
			if !c.sync {
				if !errors.Is(err, unix.EOPNOTSUPP) {
					t.Fatalf("MAP_SYNC of %s: %v, want EOPNOTSUPP", c.path, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("MAP_SYNC of %s: %v", c.path, err)
			}
			defer unix.Munmap(m)
			m[0] = 1 // fault it in
			if fl := smapsFlags(t, "self", c.path); len(fl) != 1 || !hasFlag(fl[0], "sf") {
				t.Errorf("MAP_SYNC mapping of %s: %s, want one with sf", c.path, describe(fl))
			}
		})
	}
}

// TestMapSyncLibrary opens each kind of leaf with package dax, does I/O
// (which maps it) and checks this process's mapping of it.
func TestMapSyncLibrary(t *testing.T) {
	l := makeMapSyncLeaves(t)
	o := &dax.Opener{}
	for _, c := range []struct {
		path string
		sf   bool
	}{{l.devdax, true}, {l.daxFile, true}, {l.pmem, false}, {l.tmpFile, false}} {
		t.Run(filepath.Base(c.path), func(t *testing.T) {
			leaf, err := o.Open(c.path)
			if err != nil {
				t.Fatal(err)
			}
			defer leaf.Close()
			want := bytes.Repeat([]byte("daxstack"), 64)
			if _, err := leaf.WriteAt(want, 4096); err != nil {
				t.Fatalf("write %s: %v", c.path, err)
			}
			got := make([]byte, len(want))
			if _, err := leaf.ReadAt(got, 4096); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("read %s back: %v", c.path, err)
			}
			fl := smapsFlags(t, "self", c.path)
			if len(fl) != 1 || hasFlag(fl[0], "sf") != c.sf {
				t.Errorf("dax leaf %s: %s, want one mapping with sf=%v", c.path, describe(fl), c.sf)
			}
			// Device-dax has no msync: its cache lines are written back.
			if err := leaf.Sync(); err != nil {
				t.Errorf("sync %s: %v", c.path, err)
			}
		})
	}
}

// TestMapSyncDaemon does I/O through the daemon to a mapped device over
// each kind of leaf and checks the daemon's own mappings.
func TestMapSyncDaemon(t *testing.T) {
	l := makeMapSyncLeaves(t)
	s := newSandbox(t)
	devs := map[string]string{"dd": l.devdax, "pm": l.pmem, "df": l.daxFile, "tf": l.tmpFile}
	for name, leaf := range devs {
		s.create(name, fmt.Sprintf("0 8192 linear %s 0\n", leaf))
	}
	d := s.serve()
	data := bytes.Repeat([]byte("S"), 4096)
	for name, leaf := range devs {
		r := s.try(data, "write", name, "--sector", "8")
		if r.err != nil {
			t.Errorf("write %s (over %s) through the daemon:\n%v", name, leaf, r)
		}
	}
	pid := strconv.Itoa(d.pid())
	for _, c := range []struct {
		path string
		sf   bool
	}{{l.devdax, true}, {l.daxFile, true}, {l.pmem, false}, {l.tmpFile, false}} {
		fl := smapsFlags(t, pid, c.path)
		if len(fl) != 1 || hasFlag(fl[0], "sf") != c.sf {
			t.Errorf("the daemon's mapping of %s: %s, want one with sf=%v", c.path, describe(fl), c.sf)
		}
	}
}

// TestAccessModes checks what daxstack says about how it uses each leaf:
// `daxstack leaves`, whose access column is dax-sync (MAP_SYNC), dax,
// page-cache or pread (issue #10, item 12).
func TestAccessModes(t *testing.T) {
	s := newSandbox(t)
	l := makeMapSyncLeaves(t)
	want := map[string]string{l.devdax: "dax-sync", l.daxFile: "dax-sync", l.pmem: "page-cache", l.tmpFile: "page-cache"}
	i := 0
	for leaf := range want {
		i++
		name := fmt.Sprintf("d%d", i)
		s.create(name, fmt.Sprintf("0 8192 linear %s 0\n", leaf))
	}
	s.serve()
	for i := range len(want) {
		r := s.try(bytes.Repeat([]byte("S"), 512), "write", fmt.Sprintf("d%d", i+1), "--sector", "0")
		if r.err != nil {
			t.Errorf("write d%d:\n%v", i+1, r)
		}
	}
	rows := s.anyReport("leaves")
	for leaf, mode := range want {
		row := findRow(rows, leaf)
		if row == nil {
			t.Errorf("leaves names no %s: %v", leaf, rows)
			continue
		}
		if got := row["access"]; got != mode {
			t.Errorf("leaves: %s access %v, want %s (row %v)", leaf, got, mode, row)
		}
	}
}
