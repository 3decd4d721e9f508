package dax

// Test helpers, exported to the external test package (dax_test) through
// this file, which is compiled only with the tests.

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/daxstack/daxstack/internal/testenv"
)

// NewLoop attaches a loop device to file (with extra losetup arguments,
// e.g. "-o", "4096") and detaches it when the test ends. It returns the
// device node.
func NewLoop(t testing.TB, file string, args ...string) string {
	t.Helper()
	testenv.NeedRoot(t)
	if _, err := exec.LookPath("losetup"); err != nil {
		testenv.Unavailable(t, "needs losetup: "+err.Error())
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		testenv.Unavailable(t, "needs loop devices: "+err.Error())
	}
	out, err := exec.Command("losetup", append(append([]string{"-f", "--show"}, args...), file)...).CombinedOutput()
	if err != nil {
		testenv.Unavailable(t, "losetup: "+strings.TrimSpace(string(out))+": "+err.Error())
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { DetachLoop(t, dev) })
	return dev
}

// DetachLoop detaches a loop device (no error if it already is).
func DetachLoop(t testing.TB, dev string) {
	t.Helper()
	out, err := exec.Command("losetup", "-d", dev).CombinedOutput()
	if err != nil && !strings.Contains(string(out), "No such device") {
		t.Logf("losetup -d %s: %v: %s", dev, err, out)
	}
}

// Devno returns the major and minor numbers of a device node.
func Devno(t testing.TB, node string) (uint32, uint32) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(node, &st); err != nil {
		t.Fatal(err)
	}
	return unix.Major(st.Rdev), unix.Minor(st.Rdev)
}

// Mknod makes a device node (mode unix.S_IFBLK or unix.S_IFCHR) in dir.
func Mknod(t testing.TB, path string, mode uint32, major, minor uint32) {
	t.Helper()
	testenv.NeedRoot(t)
	if err := unix.Mknod(path, mode|0o600, int(unix.Mkdev(major, minor))); err != nil {
		testenv.Unavailable(t, "mknod "+path+": "+err.Error())
	}
}

// WriteTree writes files under root: path -> content. A content starting
// with "->" makes a symlink to the rest.
func WriteTree(t testing.TB, root string, files map[string]string) {
	t.Helper()
	for p, c := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if target, ok := strings.CutPrefix(c, "->"); ok {
			if err := os.Symlink(target, full); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// Mapping returns the leaf's mapping (mapping it if needed), for
// benchmarks whose baseline copies from it.
func Mapping(l *Leaf) []byte {
	m, s, err := l.enter()
	l.exit(s)
	if err != nil {
		return nil
	}
	return m.data
}

// MappedSync reports whether the leaf was mapped with MAP_SYNC.
func MappedSync(l *Leaf) bool {
	if m := l.m.Load(); m != nil {
		return m.sync
	}
	return false
}
