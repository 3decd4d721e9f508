// Package fstest makes real filesystems for tests, on loop devices, and
// says where their files lie with tools that share no code with package
// fsfiles (filefrag -v, xfs_bmap -v, debugfs, xfs_db): the oracle of the
// tests of files behind bad ranges, in fsfiles and above it.
//
// Everything a test makes is undone when it ends, failed or not: the
// filesystem unmounted, the loop device detached. It needs root and the
// tools; without them the test skips, or fails under
// DAXSTACK_REQUIRE_ROOT=1 (internal/testenv).
package fstest

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

// FS is a filesystem made for a test on a loop device, mounted in a
// temporary directory.
type FS struct {
	T            testing.TB
	Kind         string // "ext4", "ext2", "xfs" (without rmapbt), "xfs-rmap"
	Img          string // the file under the loop device
	Dev          string // the loop device, /dev/loopN
	Mnt          string // the mount point
	Major, Minor uint32
}

// Kinds are the filesystems the tests above fsfiles cover (New also makes
// "ext2").
var Kinds = []string{"ext4", "xfs", "xfs-rmap"}

// New makes and mounts a filesystem of the given kind on a loop device
// over a new sparse file of sizeMB MiB.
func New(t testing.TB, kind string, sizeMB int, mkfsArgs ...string) *FS {
	t.Helper()
	img := filepath.Join(t.TempDir(), "fs.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, int64(sizeMB)<<20); err != nil {
		t.Fatal(err)
	}
	return OnImage(t, kind, img, mkfsArgs...)
}

// OnImage makes and mounts a filesystem of the given kind on a loop
// device over the existing file img (a daxstack leaf, say).
func OnImage(t testing.TB, kind, img string, mkfsArgs ...string) *FS {
	t.Helper()
	testenv.NeedRoot(t)
	testenv.NeedCommand(t, "losetup")
	testenv.NeedCommand(t, "mount")
	mkfs := map[string]string{"ext4": "mkfs.ext4", "ext2": "mkfs.ext2", "xfs": "mkfs.xfs", "xfs-rmap": "mkfs.xfs"}[kind]
	if mkfs == "" {
		t.Fatalf("fstest: unknown kind %q", kind)
	}
	testenv.NeedCommand(t, mkfs)
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		testenv.Unavailable(t, "needs loop devices: "+err.Error())
	}
	f := &FS{T: t, Kind: kind, Img: img, Mnt: filepath.Join(t.TempDir(), "mnt")}
	out, err := exec.Command("losetup", "-f", "--show", img).CombinedOutput()
	if err != nil {
		testenv.Unavailable(t, "losetup: "+strings.TrimSpace(string(out))+": "+err.Error())
	}
	f.Dev = strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", f.Dev).CombinedOutput(); err != nil {
			t.Logf("losetup -d %s: %v: %s", f.Dev, err, out)
		}
	})
	// A loop device keeps a read-only flag (blockdev --setro) across
	// detach and attach: clear it on ours.
	if out, err := exec.Command("blockdev", "--setrw", f.Dev).CombinedOutput(); err != nil {
		t.Fatalf("blockdev --setrw %s: %v: %s", f.Dev, err, out)
	}
	var st unix.Stat_t
	if err := unix.Stat(f.Dev, &st); err != nil {
		t.Fatal(err)
	}
	f.Major, f.Minor = unix.Major(st.Rdev), unix.Minor(st.Rdev)
	var args []string
	switch kind {
	case "ext4", "ext2":
		args = []string{"-q", "-F"}
	case "xfs":
		args = []string{"-q", "-f", "-m", "rmapbt=0"}
	case "xfs-rmap":
		args = []string{"-q", "-f", "-m", "rmapbt=1"}
	}
	args = append(append(args, mkfsArgs...), f.Dev)
	if out, err := exec.Command(mkfs, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v: %s", mkfs, args, err, out)
	}
	if err := os.Mkdir(f.Mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", f.Dev, f.Mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount %s: %v: %s", f.Dev, err, out)
	}
	t.Cleanup(f.Umount)
	return f
}

// Umount unmounts, retrying while something still holds the mount.
func (f *FS) Umount() {
	for i := 0; ; i++ {
		out, err := exec.Command("umount", f.Mnt).CombinedOutput()
		if err == nil || strings.Contains(string(out), "not mounted") {
			return
		}
		if i == 50 {
			f.T.Logf("umount %s: %v: %s; detaching lazily", f.Mnt, err, out)
			exec.Command("umount", "-l", f.Mnt).Run()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Path is the absolute path of rel.
func (f *FS) Path(rel string) string { return filepath.Join(f.Mnt, rel) }

// Write writes a file of n bytes of a pattern and fsyncs it, so that its
// blocks are placed.
func (f *FS) Write(rel string, n int) {
	f.T.Helper()
	p := f.Path(rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		f.T.Fatal(err)
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + len(rel))
	}
	fh, err := os.Create(p)
	if err != nil {
		f.T.Fatal(err)
	}
	defer fh.Close()
	if _, err := fh.Write(b); err != nil {
		f.T.Fatal(err)
	}
	if err := fh.Sync(); err != nil {
		f.T.Fatal(err)
	}
}

// Ino returns rel's inode number.
func (f *FS) Ino(rel string) uint64 {
	f.T.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(f.Path(rel), &st); err != nil {
		f.T.Fatal(err)
	}
	return st.Ino
}

// Sync syncs the filesystem.
func (f *FS) Sync() {
	f.T.Helper()
	if out, err := exec.Command("sync", "-f", f.Mnt).CombinedOutput(); err != nil {
		f.T.Fatalf("sync: %v: %s", err, out)
	}
}

// Extent is a file's extent as filefrag or xfs_bmap report it: file bytes
// [Logical, Logical+Length) at device sector Sector.
type Extent struct {
	Logical, Length uint64
	Sector          uint64
}

// ext reports whether the filesystem is of the ext2/3/4 family.
func (f *FS) ext() bool { return f.Kind == "ext4" || f.Kind == "ext2" }

// Placement returns where the file or directory rel lies: filefrag -v
// (ext4), xfs_bmap -v (XFS).
func (f *FS) Placement(rel string) []Extent {
	f.T.Helper()
	if f.ext() {
		return filefragExtents(f.T, f.Path(rel))
	}
	return xfsBmapExtents(f.T, f.Path(rel))
}

var (
	filefragBlock = regexp.MustCompile(`\((\d+) blocks? of (\d+) bytes\)`)
	filefragExt   = regexp.MustCompile(`^\s*\d+:\s+(\d+)\.\.\s*(\d+):\s+(\d+)\.\.\s*(\d+):\s+(\d+):`)
	xfsBmapExt    = regexp.MustCompile(`^\s*\d+: \[(\d+)\.\.(\d+)\]:\s+(\d+)\.\.(\d+)\s`)
)

func filefragExtents(t testing.TB, p string) []Extent {
	t.Helper()
	out := Run(t, "filefrag", "-v", p)
	var bs uint64
	var exts []Extent
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if m := filefragBlock.FindStringSubmatch(sc.Text()); m != nil {
			bs, _ = strconv.ParseUint(m[2], 10, 64)
		}
		if m := filefragExt.FindStringSubmatch(sc.Text()); m != nil {
			lo, _ := strconv.ParseUint(m[1], 10, 64)
			phys, _ := strconv.ParseUint(m[3], 10, 64)
			n, _ := strconv.ParseUint(m[5], 10, 64)
			exts = append(exts, Extent{Logical: lo * bs, Length: n * bs, Sector: phys * bs / 512})
		}
	}
	if bs == 0 || len(exts) == 0 {
		t.Fatalf("filefrag -v %s: no extents in\n%s", p, out)
	}
	return exts
}

func xfsBmapExtents(t testing.TB, p string) []Extent {
	t.Helper()
	out := Run(t, "xfs_bmap", "-v", p)
	var exts []Extent
	for line := range strings.SplitSeq(out, "\n") {
		m := xfsBmapExt.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		lo, _ := strconv.ParseUint(m[1], 10, 64)
		hi, _ := strconv.ParseUint(m[2], 10, 64)
		phys, _ := strconv.ParseUint(m[3], 10, 64)
		exts = append(exts, Extent{Logical: lo * 512, Length: (hi - lo + 1) * 512, Sector: phys})
	}
	if len(exts) == 0 {
		t.Fatalf("xfs_bmap -v %s: no extents in\n%s", p, out)
	}
	return exts
}

// Run runs a command and returns its output, failing the test on error.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	testenv.NeedCommand(t, name)
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v: %s", name, args, err, out)
	}
	return string(out)
}

// BlockSize returns the filesystem's block size in bytes (dumpe2fs,
// xfs_info).
func (f *FS) BlockSize() uint64 {
	f.T.Helper()
	var m []string
	if f.ext() {
		m = regexp.MustCompile(`(?m)^Block size:\s+(\d+)`).FindStringSubmatch(Run(f.T, "dumpe2fs", "-h", f.Dev))
	} else {
		m = regexp.MustCompile(`(?m)^data\s+=\s+bsize=(\d+)`).FindStringSubmatch(Run(f.T, "xfs_info", f.Mnt))
	}
	if m == nil {
		f.T.Fatalf("no block size of %s", f.Dev)
	}
	n, _ := strconv.ParseUint(m[1], 10, 64)
	return n
}

// JournalSector returns a device sector inside the journal (ext4, from
// debugfs) or the internal log (XFS, from xfs_db).
func (f *FS) JournalSector() uint64 {
	f.T.Helper()
	if f.ext() {
		out := strings.TrimSpace(Run(f.T, "debugfs", "-R", "bmap <8> 100", f.Dev))
		lines := strings.Split(out, "\n")
		blk, err := strconv.ParseUint(strings.TrimSpace(lines[len(lines)-1]), 10, 64)
		if err != nil {
			f.T.Fatalf("debugfs bmap: %q", out)
		}
		return blk*f.BlockSize()/512 + 1
	}
	out := Run(f.T, "xfs_db", "-r", "-c", "sb 0", "-c", "print logstart", f.Dev)
	v := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(out), "logstart ="))
	out = Run(f.T, "xfs_db", "-r", "-c", "convert fsb "+v+" daddr", f.Dev)
	m := regexp.MustCompile(`\((\d+)\)`).FindStringSubmatch(out) // "0x64038 (409656)"
	if m == nil {
		f.T.Fatalf("xfs_db convert: %q", out)
	}
	d, _ := strconv.ParseUint(m[1], 10, 64)
	return d + 100
}

// FreeSector returns a device sector in free space: debugfs's first free
// block from the middle of the device on (ext4), or three quarters into
// the largest free extent of AG 1 from xfs_db (XFS).
func (f *FS) FreeSector() uint64 {
	f.T.Helper()
	f.Sync()
	fi, err := os.Stat(f.Img)
	if err != nil {
		f.T.Fatal(err)
	}
	if f.ext() {
		bs := f.BlockSize()
		out := Run(f.T, "debugfs", "-R", fmt.Sprintf("ffb 1 %d", uint64(fi.Size())/bs/2), f.Dev)
		m := regexp.MustCompile(`Free blocks found: (\d+)`).FindStringSubmatch(out)
		if m == nil {
			f.T.Fatalf("debugfs ffb: %q", out)
		}
		b, _ := strconv.ParseUint(m[1], 10, 64)
		return b * bs / 512
	}
	out := Run(f.T, "xfs_db", "-r", "-c", "agf 1", "-c", "addr bnoroot", "-c", "print recs", "-c", "sb 0", "-c", "print agblocks blocksize", f.Dev)
	m := regexp.MustCompile(`agblocks = (\d+)`).FindStringSubmatch(out)
	b := regexp.MustCompile(`blocksize = (\d+)`).FindStringSubmatch(out)
	if m == nil || b == nil {
		f.T.Fatalf("xfs_db: %q", out)
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
		f.T.Fatalf("xfs_db: no free extent in AG 1: %q", out)
	}
	return (agb + best + bestLen*3/4) * bs / 512
}

// InodeSector returns the device sector holding rel's inode: debugfs imap
// (ext4), xfs_db convert (XFS).
func (f *FS) InodeSector(rel string) uint64 {
	f.T.Helper()
	ino := f.Ino(rel)
	if f.ext() {
		out := Run(f.T, "debugfs", "-R", fmt.Sprintf("imap <%d>", ino), f.Dev)
		m := regexp.MustCompile(`located at block (\d+), offset 0x([0-9a-f]+)`).FindStringSubmatch(out)
		if m == nil {
			f.T.Fatalf("debugfs imap: %q", out)
		}
		blk, _ := strconv.ParseUint(m[1], 10, 64)
		off, _ := strconv.ParseUint(m[2], 16, 64)
		return (blk*f.BlockSize() + off) / 512
	}
	out := Run(f.T, "xfs_db", "-r", "-c", fmt.Sprintf("convert ino %d daddr", ino), f.Dev)
	m := regexp.MustCompile(`\((\d+)\)`).FindStringSubmatch(out)
	if m == nil {
		f.T.Fatalf("xfs_db convert: %q", out)
	}
	d, _ := strconv.ParseUint(m[1], 10, 64)
	return d
}
