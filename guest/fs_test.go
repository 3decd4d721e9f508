//go:build guest

package guest

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// daxFS makes an ext4 filesystem on a fsdax namespace, mounts it with
// -o dax in a temporary directory and returns the mount point; it is
// unmounted when the test ends.
func daxFS(t testing.TB, n *namespace) string {
	t.Helper()
	// -o dax needs the filesystem block to be the page size; mke2fs
	// would pick 1 KiB blocks on a device this small.
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-b", "4096", n.node()).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 %s: %v\n%s", n.node(), err, out)
	}
	dir := t.TempDir()
	if err := unix.Mount(n.node(), dir, "ext4", 0, "dax"); err != nil {
		t.Fatalf("mount -o dax %s %s: %v", n.node(), dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("umount %s: %v", dir, err)
		}
	})
	return dir
}

// writeFile creates path with data, synced.
func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// isDAX reports whether the kernel says path's data is accessed with DAX
// (statx's STATX_ATTR_DAX).
func isDAX(t testing.TB, path string) bool {
	t.Helper()
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, 0, unix.STATX_BASIC_STATS, &st); err != nil {
		t.Fatal(err)
	}
	return st.Attributes_mask&unix.STATX_ATTR_DAX != 0 && st.Attributes&unix.STATX_ATTR_DAX != 0
}

// fileExtent is one FIEMAP extent, in bytes.
type fileExtent struct {
	Logical, Physical, Length uint64
	Flags                     uint32
}

// The kernel's struct fiemap and struct fiemap_extent (linux/fiemap.h).
type fiemapHead struct {
	Start, Length                        uint64
	Flags, Mapped, ExtentCount, Reserved uint32
}

type fiemapExtent struct {
	Logical, Physical, Length uint64
	_                         [2]uint64
	Flags                     uint32
	_                         [3]uint32
}

const fsIocFiemap = 0xc020660b // _IOWR('f', 11, struct fiemap)

// fiemap returns where a file's data lies on its device (FS_IOC_FIEMAP,
// synced first), found without daxstack.
func fiemap(t testing.TB, path string) []fileExtent {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const max = 64
	buf := make([]byte, unsafe.Sizeof(fiemapHead{})+max*unsafe.Sizeof(fiemapExtent{}))
	h := (*fiemapHead)(unsafe.Pointer(&buf[0]))
	h.Length, h.Flags, h.ExtentCount = ^uint64(0), 1 /* FIEMAP_FLAG_SYNC */, max
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), fsIocFiemap, uintptr(unsafe.Pointer(&buf[0]))); e != 0 {
		t.Fatalf("FIEMAP %s: %v", path, e)
	}
	exts := unsafe.Slice((*fiemapExtent)(unsafe.Pointer(&buf[unsafe.Sizeof(fiemapHead{})])), max)[:h.Mapped]
	var out []fileExtent
	for _, e := range exts {
		out = append(out, fileExtent{e.Logical, e.Physical, e.Length, e.Flags})
	}
	return out
}

// smapsFlags returns the VmFlags of every mapping of path in process
// pid's /proc/PID/smaps ("self" for this process), one string per mapping.
func smapsFlags(t testing.TB, pid string, path string) []string {
	t.Helper()
	f, err := os.Open("/proc/" + pid + "/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		// A mapping starts "start-end perms offset dev inode [path]".
		if len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			in = len(fields) >= 6 && fields[5] == path
			continue
		}
		if in && strings.HasPrefix(line, "VmFlags:") {
			out = append(out, strings.TrimSpace(strings.TrimPrefix(line, "VmFlags:")))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// hasFlag reports whether a VmFlags string holds flag.
func hasFlag(vmflags, flag string) bool {
	for _, f := range strings.Fields(vmflags) {
		if f == flag {
			return true
		}
	}
	return false
}

func describe(flags []string) string {
	if len(flags) == 0 {
		return "no mapping"
	}
	return fmt.Sprintf("%d mapping(s), VmFlags %q", len(flags), flags)
}
