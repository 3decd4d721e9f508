//go:build guest

package guest

import (
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestClaimedNamespace: the daemon holds the pmem leaves of its tables
// exclusively, as device-mapper holds its children (issue #10 item 15):
// the filesystem on a leaf cannot be mounted under a live table (EBUSY,
// fstests generic/741), mkfs refuses it, and ndctl cannot destroy its
// namespace, not even with -f. A table over a mounted pmem is refused.
func TestClaimedNamespace(t *testing.T) {
	s := newSandbox(t)
	x := createNamespace(t, region0, "fsdax", "64M")
	node := x.node()
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", node).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 %s: %v\n%s", node, err, out)
	}
	mnt := t.TempDir()

	// Mounted first: a table over it is refused, changing nothing.
	if err := unix.Mount(node, mnt, "ext4", 0, ""); err != nil {
		t.Fatalf("mount %s: %v", node, err)
	}
	r := s.try([]byte("0 1000 linear "+node+" 0\n"), "create", "top")
	unix.Unmount(mnt, 0)
	if r.err == nil || !strings.Contains(r.stderr, "mounted") {
		t.Fatalf("create over a mounted pmem: %v\n%s", r.err, r.stderr)
	}

	s.create("top", fmt.Sprintf("0 1000 linear %s 0\n", node))
	d := s.serve()
	if err := unix.Mount(node, mnt, "ext4", 0, ""); err != syscall.EBUSY {
		if err == nil {
			unix.Unmount(mnt, 0)
		}
		t.Fatalf("mount of a pmem under the daemon's live table: %v, want EBUSY", err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", node).CombinedOutput(); err == nil {
		t.Errorf("mkfs.ext4 of a pmem under a live table succeeded:\n%s", out)
	}
	if out, err := exec.Command("ndctl", "destroy-namespace", "-f", x.Dev).CombinedOutput(); err == nil || !strings.Contains(strings.ToLower(string(out)), "busy") {
		t.Fatalf("ndctl destroy-namespace -f of a held namespace: %v\n%s", err, out)
	}
	// The daemon gone, nothing holds it.
	d.stop()
	if err := unix.Mount(node, mnt, "ext4", 0, ""); err != nil {
		t.Fatalf("mount once the daemon is gone: %v", err)
	}
	unix.Unmount(mnt, 0)
}
