package fsfiles

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/daxstack/daxstack/extent"
)

// mountMore mounts with mount(8) and unmounts when the test ends.
func mountMore(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
		t.Fatalf("mount %v: %v: %s", args, err, out)
	}
	point := args[len(args)-1]
	t.Cleanup(func() { exec.Command("umount", point).Run() })
}

// TestMountChoice: of several mounts the root mount is used; with only a
// bind mount of a subdirectory left, that one (its files under its
// path); a mount point covered by another mount is not used.
func TestMountChoice(t *testing.T) {
	f := newTestFS(t, "ext4", 64)
	f.write("sub/inside", 8192)
	f.write("outside", 8192)
	bind := filepath.Join(t.TempDir(), "bind")
	if err := os.Mkdir(bind, 0o755); err != nil {
		t.Fatal(err)
	}
	mountMore(t, "--bind", f.path("sub"), bind)
	second := filepath.Join(t.TempDir(), "second")
	if err := os.Mkdir(second, 0o755); err != nil {
		t.Fatal(err)
	}
	mountMore(t, f.dev, second) // the same filesystem mounted again
	fs, err := Open(f.major, f.minor)
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	if m := fs.Mount(); m.Point != f.mnt || m.Root != "/" {
		t.Errorf("mount used %+v, want the first root mount %s", m, f.mnt)
	}
	inside := sectorOf(t, f.placement("sub/inside"), 0)
	r := doLookup(t, fs, sectors(inside, 1), 0)
	wantOnlyFile(t, r, FileRange{Inode: f.ino("sub/inside"), Paths: []string{f.path("sub/inside")}, Length: 512})

	// Cover the first root mount: the second is used.
	mountMore(t, "-t", "tmpfs", "tmpfs", f.mnt)
	r = doLookup(t, fs, sectors(inside, 1), 0)
	wantOnlyFile(t, r, FileRange{Inode: f.ino2(second, "sub/inside"), Paths: []string{filepath.Join(second, "sub/inside")}, Length: 512})

	// Unmount the second: only the bind mount of sub is left.
	if out, err := exec.Command("umount", second).CombinedOutput(); err != nil {
		t.Fatalf("umount: %v %s", err, out)
	}
	r = doLookup(t, fs, sectors(inside, 1), 0)
	if fs.Mount().Point != bind {
		t.Errorf("mount used %+v, want the bind mount", fs.Mount())
	}
	wantOnlyFile(t, r, FileRange{Inode: f.ino2(bind, "inside"), Paths: []string{filepath.Join(bind, "inside")}, Length: 512})

	// Cover the bind mount too: nothing shows the filesystem.
	mountMore(t, "-t", "tmpfs", "tmpfs", bind)
	if _, err := fs.Lookup(context.Background(), sectors(inside, 1), 0); !errors.Is(err, ErrNotMounted) {
		t.Errorf("all mounts covered: %v, want ErrNotMounted", err)
	}
}

// ino2 is the inode of rel under another mount point.
func (f *testFS) ino2(point, rel string) uint64 {
	f.t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(point, rel), &st); err != nil {
		f.t.Fatal(err)
	}
	return st.Ino
}

// fragment writes n blocks of 4 KiB every other 4 KiB, each synced, so
// that every one is an extent of its own.
func (f *testFS) fragment(rel string, n int) {
	f.t.Helper()
	fh, err := os.Create(f.path(rel))
	if err != nil {
		f.t.Fatal(err)
	}
	defer fh.Close()
	b := make([]byte, 4096)
	for i := range n {
		if _, err := fh.WriteAt(b, int64(i)*8192); err != nil {
			f.t.Fatal(err)
		}
		if err := fh.Sync(); err != nil {
			f.t.Fatal(err)
		}
	}
}

// TestExtentTreeBlocks: the blocks of a file's extent tree (ext4 extent
// index/leaf blocks, XFS bmbt blocks where the rmap names them) are
// metadata of that file, found by debugfs and xfs_db.
func TestExtentTreeBlocks(t *testing.T) {
	t.Run("ext4", func(t *testing.T) {
		f := newTestFS(t, "ext4", 64)
		f.fragment("frag", 12)
		f.sync()
		out := run(t, "debugfs", "-R", "stat /frag", f.dev)
		m := regexp.MustCompile(`\(ETB0\):(\d+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no extent tree block in\n%s", out)
		}
		blk, _ := strconv.ParseUint(m[1], 10, 64)
		s := blk * f.ext4BlockSize() / 512
		fs, err := Open(f.major, f.minor)
		if err != nil {
			t.Fatal(err)
		}
		defer fs.Close()
		r := doLookup(t, fs, sectors(s, 1), 0)
		if len(r.Files) != 0 || len(r.Metadata) != 1 || r.Metadata[0].Kind != KindExtentMap || r.Metadata[0].Path != f.path("frag") {
			t.Errorf("want the extent map of %s, got %+v", f.path("frag"), r)
		}
	})
	t.Run("xfs-rmap", func(t *testing.T) {
		f := newTestFS(t, "xfs-rmap", 400)
		f.fragment("frag", 200)
		// Freezing writes the metadata home, where xfs_db reads it.
		run(t, "xfs_freeze", "-f", f.mnt)
		run(t, "xfs_freeze", "-u", f.mnt)
		out := run(t, "xfs_db", "-r", "-c", fmt.Sprintf("inode %d", f.ino("frag")), "-c", "print u3.bmbt.ptrs", f.dev)
		m := regexp.MustCompile(`1:(\d+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no bmbt block in %q", out)
		}
		out = run(t, "xfs_db", "-r", "-c", "convert fsb "+m[1]+" daddr", f.dev)
		d := regexp.MustCompile(`\((\d+)\)`).FindStringSubmatch(out)
		s, _ := strconv.ParseUint(d[1], 10, 64)
		fs, err := Open(f.major, f.minor)
		if err != nil {
			t.Fatal(err)
		}
		defer fs.Close()
		r := doLookup(t, fs, sectors(s, 1), 0)
		if len(r.Files) != 0 || len(r.Metadata) != 1 || r.Metadata[0].Kind != KindExtentMap || r.Metadata[0].Path != f.path("frag") {
			t.Errorf("want the extent map of %s, got %+v", f.path("frag"), r)
		}
	})
}

// TestReflink: a block two files share is both files'.
func TestReflink(t *testing.T) {
	for _, kind := range []string{"xfs", "xfs-rmap"} {
		t.Run(kind, func(t *testing.T) {
			f := newTestFS(t, kind, 400)
			f.write("a", 64<<10)
			run(t, "cp", "--reflink=always", f.path("a"), f.path("b"))
			f.sync()
			fs, err := Open(f.major, f.minor)
			if err != nil {
				t.Fatal(err)
			}
			defer fs.Close()
			r := doLookup(t, fs, sectors(sectorOf(t, f.placement("a"), 8192), 1), 0)
			var names []string
			for _, fr := range r.Files {
				if fr.Offset != 8192 || fr.Length != 512 {
					t.Errorf("range %+v, want bytes 8192+512", fr)
				}
				names = append(names, fr.Paths...)
			}
			if !slices.Equal(names, []string{f.path("a"), f.path("b")}) {
				t.Errorf("files %v, want both", names)
			}
		})
	}
}

// TestDelallocAndUnwritten: data written but not yet placed is found once
// writeback places it, with no event in between; preallocated space is
// the file's, said unwritten.
func TestDelallocAndUnwritten(t *testing.T) {
	for _, kind := range []string{"ext4", "xfs"} {
		t.Run(kind, func(t *testing.T) {
			f := newTestFS(t, kind, 400)
			fs, err := Open(f.major, f.minor)
			if err != nil {
				t.Fatal(err)
			}
			defer fs.Close()
			if err := fs.Prepare(context.Background()); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(f.path("lazy"), make([]byte, 20<<10), 0o644); err != nil {
				t.Fatal(err)
			}
			// A lookup now maps the file while its data has no place yet.
			doLookup(t, fs, sectors(0, 1), 0)
			if _, ok := fs.st.pending[f.ino("lazy")]; !ok {
				t.Logf("the file was placed before the first lookup (writeback was quick)")
			}
			f.sync()
			r := doLookup(t, fs, sectors(sectorOf(t, f.placement("lazy"), 16384), 1), 0)
			wantOnlyFile(t, r, FileRange{Inode: f.ino("lazy"), Paths: []string{f.path("lazy")}, Offset: 16384, Length: 512})

			fh, err := os.Create(f.path("prealloc"))
			if err != nil {
				t.Fatal(err)
			}
			if err := unix.Fallocate(int(fh.Fd()), 0, 0, 1<<20); err != nil {
				t.Fatal(err)
			}
			fh.Close()
			r = doLookup(t, fs, sectors(sectorOf(t, f.placement("prealloc"), 512<<10), 1), 0)
			if len(r.Files) != 1 || !r.Files[0].Unwritten || r.Files[0].Offset != 512<<10 {
				t.Errorf("want the preallocated range, unwritten: %+v", r.Files)
			}
		})
	}
}

// TestConcurrent: lookups from many goroutines, on one FS and through a
// Cache, while files are written; run with -race.
func TestConcurrent(t *testing.T) {
	f := newTestFS(t, "ext4", 64)
	f.write("a", 16<<10)
	pl := f.placement("a")
	s := sectors(sectorOf(t, pl, 0), 1)
	fs, err := Open(f.major, f.minor)
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	c := NewCache(Options{})
	defer c.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 30 {
				var r Result
				var err error
				if g%2 == 0 {
					r, err = fs.Lookup(context.Background(), s, 10)
				} else {
					r, err = c.Lookup(context.Background(), f.major, f.minor, s, 10)
				}
				if err == nil && (len(r.Files) != 1 || r.Files[0].Inode != f.ino("a")) {
					err = fmt.Errorf("lookup %d: %+v", i, r)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 50 {
			if err := os.WriteFile(f.path(fmt.Sprintf("w%d", i)), make([]byte, 4096), 0o644); err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if ok, err := c.Mounted(f.major, f.minor); !ok || err != nil {
		t.Errorf("Cache.Mounted = %v %v", ok, err)
	}
}

// TestCancel: a cancelled context ends the walk; the FS stays usable.
func TestCancel(t *testing.T) {
	f := newTestFS(t, "ext4", 64)
	f.write("a", 8192)
	fs, err := Open(f.major, f.minor)
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s := sectors(sectorOf(t, f.placement("a"), 0), 1)
	if _, err := fs.Lookup(ctx, s, 0); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled lookup: %v", err)
	}
	r := doLookup(t, fs, s, 0)
	wantOnlyFile(t, r, FileRange{Inode: f.ino("a"), Paths: []string{f.path("a")}, Length: 512})
	if err := fs.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.Lookup(context.Background(), s, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
	_ = strings.Contains
	_ = extent.Set{}
}

// TestRemount: unmounting and mounting again (maybe under the same mount
// ID) drops what was known: a file written while unmounted is found.
func TestRemount(t *testing.T) {
	f := newTestFS(t, "ext4", 64)
	f.write("a", 8192)
	fs, err := Open(f.major, f.minor)
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	if err := fs.Prepare(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.umount()
	// Write a file while the watch cannot see it: mounted elsewhere.
	other := t.TempDir()
	mountMore(t, f.dev, other)
	if err := os.WriteFile(filepath.Join(other, "b"), make([]byte, 8192), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("umount", other).CombinedOutput(); err != nil {
		t.Fatalf("umount: %v %s", err, out)
	}
	mountMore(t, f.dev, f.mnt)
	r := doLookup(t, fs, sectors(sectorOf(t, f.placement("b"), 4096), 1), 0)
	wantOnlyFile(t, r, FileRange{Inode: f.ino("b"), Paths: []string{f.path("b")}, Offset: 4096, Length: 512})
}

// TestBeyondTheFilesystem: a filesystem smaller than its device; the
// sectors past its end are said to be so, and once it grows (XFS online;
// ext4's online resize writes the mounted device, which this kernel
// refuses) they are its.
func TestBeyondTheFilesystem(t *testing.T) {
	for _, kind := range []string{"ext4", "xfs"} {
		t.Run(kind, func(t *testing.T) {
			var f *testFS
			if kind == "xfs" {
				f = newTestFS(t, kind, 400, "-d", "size=300m")
			} else {
				f = newTestFS(t, kind, 400)
				f.umount()
				run(t, "mkfs.ext4", "-q", "-F", "-b", "4096", f.dev, "300M")
				run(t, "mount", f.dev, f.mnt)
			}
			fs, err := Open(f.major, f.minor)
			if err != nil {
				t.Fatal(err)
			}
			defer fs.Close()
			at := uint64(350 << 11) // 350 MiB, in sectors
			r := doLookup(t, fs, sectors(at, 8), 0)
			if len(r.Metadata) != 1 || r.Metadata[0].Kind != KindBeyond || len(r.Files)+len(r.Free) != 0 {
				t.Fatalf("want beyond the filesystem, got %+v", r)
			}
			if kind != "xfs" {
				return
			}
			run(t, "xfs_growfs", f.mnt)
			r = doLookup(t, fs, sectors(at, 8), 0)
			if len(r.Free) != 1 || len(r.Metadata) != 0 {
				t.Errorf("after growing, want free space: %+v", r)
			}
		})
	}
}
