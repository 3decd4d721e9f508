package fsfiles

import (
	"testing"

	"github.com/daxstack/daxstack/fsfiles/fstest"
)

// testFS is a filesystem made for a test on a loop device (package
// fstest), with the names this package's tests use.
type testFS struct {
	*fstest.FS
	t            testing.TB
	kind         string // "ext4", "ext2", "xfs", "xfs-rmap"
	img, dev     string
	mnt          string
	major, minor uint32
}

// newTestFS makes and mounts a filesystem of the given kind and size.
func newTestFS(t testing.TB, kind string, sizeMB int, mkfsArgs ...string) *testFS {
	t.Helper()
	f := fstest.New(t, kind, sizeMB, mkfsArgs...)
	return &testFS{FS: f, t: t, kind: kind, img: f.Img, dev: f.Dev, mnt: f.Mnt, major: f.Major, minor: f.Minor}
}

func (f *testFS) umount()                { f.Umount() }
func (f *testFS) path(rel string) string { return f.Path(rel) }

// write writes a file of n bytes of a pattern and fsyncs it, so that its
// blocks are placed.
func (f *testFS) write(rel string, n int) { f.t.Helper(); f.Write(rel, n) }
func (f *testFS) ino(rel string) uint64   { f.t.Helper(); return f.Ino(rel) }
func (f *testFS) sync()                   { f.t.Helper(); f.Sync() }

// oracleExtent is a file's extent as a tool other than this package
// reports it: file bytes [Logical, Logical+Length) at device sector Sector.
type oracleExtent = fstest.Extent

// placement returns where the file or directory rel lies, found with
// filefrag -v (ext4) or xfs_bmap -v (XFS): tools that share no code with
// this package.
func (f *testFS) placement(rel string) []oracleExtent { f.t.Helper(); return f.Placement(rel) }

// run runs a command and returns its output, failing the test on error.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	return fstest.Run(t, name, args...)
}

// journalSector returns a device sector inside the journal (ext4) or the
// internal log (XFS), from debugfs and xfs_db.
func (f *testFS) journalSector() uint64 { f.t.Helper(); return f.JournalSector() }

func (f *testFS) ext4BlockSize() uint64 { f.t.Helper(); return f.BlockSize() }

// freeSector returns a device sector in free space, from debugfs or
// xfs_db.
func (f *testFS) freeSector() uint64 { f.t.Helper(); return f.FreeSector() }

// inodeSector returns the device sector holding rel's inode, from debugfs
// imap (ext4) or xfs_db convert (XFS).
func (f *testFS) inodeSector(rel string) uint64 { f.t.Helper(); return f.InodeSector(rel) }
