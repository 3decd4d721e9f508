package fsfiles

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/daxstack/daxstack/internal/testenv"
)

// testFS is a filesystem made for a test on a loop device over a sparse
// file, mounted in a temporary directory; everything is undone when the
// test ends, failed or not.
type testFS struct {
	t            testing.TB
	kind         string // "ext4", "ext2", "xfs", "xfs-rmap"
	img, dev     string
	mnt          string
	major, minor uint32
}

// newTestFS makes and mounts a filesystem of the given kind and size.
func newTestFS(t testing.TB, kind string, sizeMB int, mkfsArgs ...string) *testFS {
	t.Helper()
	testenv.NeedRoot(t)
	testenv.NeedCommand(t, "losetup")
	testenv.NeedCommand(t, "mount")
	mkfs := map[string]string{"ext4": "mkfs.ext4", "ext2": "mkfs.ext2", "xfs": "mkfs.xfs", "xfs-rmap": "mkfs.xfs"}[kind]
	testenv.NeedCommand(t, mkfs)
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		testenv.Unavailable(t, "needs loop devices: "+err.Error())
	}
	dir := t.TempDir()
	f := &testFS{t: t, kind: kind, img: filepath.Join(dir, "fs.img"), mnt: filepath.Join(dir, "mnt")}
	if err := os.WriteFile(f.img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(f.img, int64(sizeMB)<<20); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "-f", "--show", f.img).CombinedOutput()
	if err != nil {
		testenv.Unavailable(t, "losetup: "+strings.TrimSpace(string(out))+": "+err.Error())
	}
	f.dev = strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", f.dev).CombinedOutput(); err != nil {
			t.Logf("losetup -d %s: %v: %s", f.dev, err, out)
		}
	})
	// A loop device keeps a read-only flag set on it by BLKROSET
	// (blockdev --setro) across detach and attach: clear it on ours.
	if out, err := exec.Command("blockdev", "--setrw", f.dev).CombinedOutput(); err != nil {
		t.Fatalf("blockdev --setrw %s: %v: %s", f.dev, err, out)
	}
	var st unix.Stat_t
	if err := unix.Stat(f.dev, &st); err != nil {
		t.Fatal(err)
	}
	f.major, f.minor = unix.Major(st.Rdev), unix.Minor(st.Rdev)
	args := []string{}
	switch kind {
	case "ext4", "ext2":
		args = append(args, "-q", "-F")
	case "xfs":
		args = append(args, "-q", "-f", "-m", "rmapbt=0")
	case "xfs-rmap":
		args = append(args, "-q", "-f", "-m", "rmapbt=1")
	}
	args = append(append(args, mkfsArgs...), f.dev)
	if out, err := exec.Command(mkfs, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v: %s", mkfs, args, err, out)
	}
	if err := os.Mkdir(f.mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", f.dev, f.mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount %s: %v: %s", f.dev, err, out)
	}
	t.Cleanup(func() { f.umount() })
	return f
}

// umount unmounts, retrying while something still holds the mount.
func (f *testFS) umount() {
	for i := 0; ; i++ {
		out, err := exec.Command("umount", f.mnt).CombinedOutput()
		if err == nil || strings.Contains(string(out), "not mounted") {
			return
		}
		if i == 50 {
			f.t.Logf("umount %s: %v: %s; detaching lazily", f.mnt, err, out)
			exec.Command("umount", "-l", f.mnt).Run()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (f *testFS) path(rel string) string { return filepath.Join(f.mnt, rel) }

// write writes a file of n bytes of a pattern and fsyncs it, so that its
// blocks are placed.
func (f *testFS) write(rel string, n int) {
	f.t.Helper()
	p := f.path(rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		f.t.Fatal(err)
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + len(rel))
	}
	fh, err := os.Create(p)
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := fh.Write(b); err != nil {
		f.t.Fatal(err)
	}
	if err := fh.Sync(); err != nil {
		f.t.Fatal(err)
	}
	fh.Close()
}

func (f *testFS) ino(rel string) uint64 {
	f.t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(f.path(rel), &st); err != nil {
		f.t.Fatal(err)
	}
	return st.Ino
}

func (f *testFS) sync() {
	f.t.Helper()
	if out, err := exec.Command("sync", "-f", f.mnt).CombinedOutput(); err != nil {
		f.t.Fatalf("sync: %v: %s", err, out)
	}
}

// oracleExtent is a file's extent as a tool other than this package
// reports it: file bytes [Logical, Logical+Length) at device sector Sector.
type oracleExtent struct {
	Logical, Length uint64
	Sector          uint64
}

// placement returns where the file or directory rel lies, found with
// filefrag -v (ext4) or xfs_bmap -v (XFS): tools that share no code with
// this package.
func (f *testFS) placement(rel string) []oracleExtent {
	f.t.Helper()
	if f.kind == "ext4" || f.kind == "ext2" {
		return filefragExtents(f.t, f.path(rel))
	}
	return xfsBmapExtents(f.t, f.path(rel))
}

var (
	filefragBlock = regexp.MustCompile(`\((\d+) blocks? of (\d+) bytes\)`)
	filefragExt   = regexp.MustCompile(`^\s*\d+:\s+(\d+)\.\.\s*(\d+):\s+(\d+)\.\.\s*(\d+):\s+(\d+):`)
	xfsBmapExt    = regexp.MustCompile(`^\s*\d+: \[(\d+)\.\.(\d+)\]:\s+(\d+)\.\.(\d+)\s`)
)

func filefragExtents(t testing.TB, p string) []oracleExtent {
	t.Helper()
	testenv.NeedCommand(t, "filefrag")
	out, err := exec.Command("filefrag", "-v", p).CombinedOutput()
	if err != nil {
		t.Fatalf("filefrag -v %s: %v: %s", p, err, out)
	}
	var bs uint64
	var exts []oracleExtent
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if m := filefragBlock.FindStringSubmatch(sc.Text()); m != nil {
			bs, _ = strconv.ParseUint(m[2], 10, 64)
		}
		if m := filefragExt.FindStringSubmatch(sc.Text()); m != nil {
			lo, _ := strconv.ParseUint(m[1], 10, 64)
			phys, _ := strconv.ParseUint(m[3], 10, 64)
			n, _ := strconv.ParseUint(m[5], 10, 64)
			exts = append(exts, oracleExtent{Logical: lo * bs, Length: n * bs, Sector: phys * bs / 512})
		}
	}
	if bs == 0 || len(exts) == 0 {
		t.Fatalf("filefrag -v %s: no extents in\n%s", p, out)
	}
	return exts
}

func xfsBmapExtents(t testing.TB, p string) []oracleExtent {
	t.Helper()
	testenv.NeedCommand(t, "xfs_bmap")
	out, err := exec.Command("xfs_bmap", "-v", p).CombinedOutput()
	if err != nil {
		t.Fatalf("xfs_bmap -v %s: %v: %s", p, err, out)
	}
	var exts []oracleExtent
	for line := range strings.SplitSeq(string(out), "\n") {
		m := xfsBmapExt.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		lo, _ := strconv.ParseUint(m[1], 10, 64)
		hi, _ := strconv.ParseUint(m[2], 10, 64)
		phys, _ := strconv.ParseUint(m[3], 10, 64)
		exts = append(exts, oracleExtent{Logical: lo * 512, Length: (hi - lo + 1) * 512, Sector: phys})
	}
	if len(exts) == 0 {
		t.Fatalf("xfs_bmap -v %s: no extents in\n%s", p, out)
	}
	return exts
}

// run runs a command and returns its output, failing the test on error.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	testenv.NeedCommand(t, name)
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v: %s", name, args, err, out)
	}
	return string(out)
}

// journalSector returns a device sector inside the journal (ext4) or the
// internal log (XFS), from debugfs and xfs_db.
func (f *testFS) journalSector() uint64 {
	f.t.Helper()
	if f.kind == "ext4" {
		// bmap of the journal inode's block 100; the block size from dumpe2fs.
		out := strings.TrimSpace(run(f.t, "debugfs", "-R", "bmap <8> 100", f.dev))
		blk, err := strconv.ParseUint(lastLine(out), 10, 64)
		if err != nil {
			f.t.Fatalf("debugfs bmap: %q", out)
		}
		return blk*f.ext4BlockSize()/512 + 1
	}
	out := run(f.t, "xfs_db", "-r", "-c", "sb 0", "-c", "print logstart", f.dev)
	v := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(out), "logstart ="))
	out = run(f.t, "xfs_db", "-r", "-c", "convert fsb "+v+" daddr", f.dev)
	// "0x64038 (409656)"
	m := regexp.MustCompile(`\((\d+)\)`).FindStringSubmatch(out)
	if m == nil {
		f.t.Fatalf("xfs_db convert: %q", out)
	}
	d, _ := strconv.ParseUint(m[1], 10, 64)
	return d + 100
}

func (f *testFS) ext4BlockSize() uint64 {
	out := run(f.t, "dumpe2fs", "-h", f.dev)
	m := regexp.MustCompile(`(?m)^Block size:\s+(\d+)`).FindStringSubmatch(out)
	if m == nil {
		f.t.Fatalf("dumpe2fs: no block size")
	}
	n, _ := strconv.ParseUint(m[1], 10, 64)
	return n
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// freeSector returns a device sector in free space, from debugfs (ext4:
// the first free block from the middle of the device on) or xfs_db's free
// space listing (XFS).
func (f *testFS) freeSector() uint64 {
	f.t.Helper()
	f.sync()
	var size int64
	if fi, err := os.Stat(f.img); err == nil {
		size = fi.Size()
	}
	if f.kind == "ext4" {
		bs := f.ext4BlockSize()
		goal := uint64(size) / bs / 2
		out := run(f.t, "debugfs", "-R", fmt.Sprintf("ffb 1 %d", goal), f.dev)
		m := regexp.MustCompile(`Free blocks found: (\d+)`).FindStringSubmatch(out)
		if m == nil {
			f.t.Fatalf("debugfs ffb: %q", out)
		}
		b, _ := strconv.ParseUint(m[1], 10, 64)
		return b * bs / 512
	}
	// The free-space btree of AG 1 (a leaf: the tests' few files do not
	// split it), read from the disk after the sync; AG 1 starts at
	// agblocks.
	out := run(f.t, "xfs_db", "-r", "-c", "agf 1", "-c", "addr bnoroot", "-c", "print recs", "-c", "sb 0", "-c", "print agblocks blocksize", f.dev)
	m := regexp.MustCompile(`agblocks = (\d+)`).FindStringSubmatch(out)
	b := regexp.MustCompile(`blocksize = (\d+)`).FindStringSubmatch(out)
	if m == nil || b == nil {
		f.t.Fatalf("xfs_db: %q", out)
	}
	agb, _ := strconv.ParseUint(m[1], 10, 64)
	bs, _ := strconv.ParseUint(b[1], 10, 64)
	var best, bestLen uint64
	for _, r := range regexp.MustCompile(`\d+:\[(\d+),(\d+)\]`).FindAllStringSubmatch(out, -1) {
		start, _ := strconv.ParseUint(r[1], 10, 64)
		n, _ := strconv.ParseUint(r[2], 10, 64)
		if n > bestLen {
			best, bestLen = start, n
		}
	}
	if bestLen < 4 {
		f.t.Fatalf("xfs_db: no free extent in AG 1: %q", out)
	}
	// Three quarters into the largest free extent: allocations start low.
	return (agb + best + bestLen*3/4) * bs / 512
}

// inodeSector returns the device sector holding rel's inode, from debugfs
// imap (ext4) or xfs_db convert (XFS).
func (f *testFS) inodeSector(rel string) uint64 {
	f.t.Helper()
	ino := f.ino(rel)
	if f.kind == "ext4" || f.kind == "ext2" {
		out := run(f.t, "debugfs", "-R", fmt.Sprintf("imap <%d>", ino), f.dev)
		m := regexp.MustCompile(`located at block (\d+), offset 0x([0-9a-f]+)`).FindStringSubmatch(out)
		if m == nil {
			f.t.Fatalf("debugfs imap: %q", out)
		}
		blk, _ := strconv.ParseUint(m[1], 10, 64)
		off, _ := strconv.ParseUint(m[2], 16, 64)
		return (blk*f.ext4BlockSize() + off) / 512
	}
	out := run(f.t, "xfs_db", "-r", "-c", fmt.Sprintf("convert ino %d daddr", ino), f.dev)
	m := regexp.MustCompile(`\((\d+)\)`).FindStringSubmatch(out)
	if m == nil {
		f.t.Fatalf("xfs_db convert: %q", out)
	}
	d, _ := strconv.ParseUint(m[1], 10, 64)
	return d
}
