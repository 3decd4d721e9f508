package fsfiles

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

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

// TestNoGetfsmap: block-mapped files (ext2, which this kernel mounts with
// its ext4 driver), and the path of a filesystem without GETFSMAP (no
// such filesystem with FIEMAP can be made here: the answer is switched
// off): files are found through the walk alone, and what no file holds is
// said to be free space or metadata, unknown which.
func TestNoGetfsmap(t *testing.T) {
	f := newTestFS(t, "ext2", 64)
	f.write("a", 40<<10)
	fs, err := Open(f.major, f.minor)
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	pl := f.placement("a")
	s := sectors(sectorOf(t, pl, 20<<10), 2)
	r := doLookup(t, fs, s, 0)
	wantOnlyFile(t, r, FileRange{Inode: f.ino("a"), Paths: []string{f.path("a")}, Offset: 20 << 10, Length: 1024})

	fs.mu.Lock()
	fs.caps.fsmap = false
	fs.mu.Unlock()
	r = doLookup(t, fs, s, 0)
	wantOnlyFile(t, r, FileRange{Inode: f.ino("a"), Paths: []string{f.path("a")}, Offset: 20 << 10, Length: 1024})
	r = doLookup(t, fs, sectors(fs.sectors-8, 8), 0)
	if len(r.Files) != 0 || len(r.Metadata) != 1 || r.Metadata[0].Kind != KindMetadata || !strings.Contains(r.Metadata[0].Detail, "free space or metadata") {
		t.Errorf("the device's end: %+v", r)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
