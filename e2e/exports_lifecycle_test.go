package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// getsz is blockdev --getsz of path.
func getsz(t *testing.T, path string) string {
	t.Helper()
	return strings.TrimSpace(sh(t, "blockdev", "--getsz", path))
}

// isBlock reports whether path is (a link to) a block device.
func isBlock(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0
}

// Create, rename, load/resume and remove return once the block device and
// its links follow: the next line of a script can use them.
func TestExportsLifecycleSync(t *testing.T) {
	s := newExportSandbox(t, "blockdev")
	leaf := s.file("l.img", 65536*512)
	s.start()
	for i := 0; i < 3; i++ {
		name := fmt.Sprintf("d%d", i)
		s.run("create", name, "--table", fmt.Sprintf("0 8192 linear %s %d", leaf, i*8192))
		if !isBlock(s.link(name)) {
			t.Fatalf("%s is not a block device when create returns", s.link(name))
		}
		if got := getsz(t, s.link(name)); got != "8192" {
			t.Errorf("size of %s: %s", name, got)
		}
		info := s.run("info", "-c", "--noheadings", "-o", "blkdev", name)
		if target, _ := filepath.EvalSymlinks(s.link(name)); strings.TrimSpace(info) != target {
			t.Errorf("info -o blkdev %s = %q, link points to %q", name, info, target)
		}
		if fi, err := os.Stat(s.path("dev/" + name)); err != nil || fi.Size() != 8192*512 || fi.Mode().Perm() != 0o660 {
			t.Errorf("device file of %s: %v %v", name, fi, err)
		}
	}
	s.run("rename", "d0", "r0")
	if !isBlock(s.link("r0")) {
		t.Errorf("%s missing when rename returns", s.link("r0"))
	}
	if _, err := os.Lstat(s.link("d0")); !os.IsNotExist(err) {
		t.Errorf("old link after rename: %v", err)
	}
	s.run("load", "r0", "--table", fmt.Sprintf("0 16384 linear %s 0", leaf))
	s.run("resume", "r0")
	if got := getsz(t, s.link("r0")); got != "16384" {
		t.Errorf("size after load/resume of a larger table: %s, want 16384", got)
	}
	for _, n := range []string{"r0", "d1", "d2"} {
		s.run("remove", n)
		if _, err := os.Lstat(s.link(n)); !os.IsNotExist(err) {
			t.Errorf("link of %s when remove returns: %v", n, err)
		}
		if _, err := os.Lstat(s.path("dev/" + n)); !os.IsNotExist(err) {
			t.Errorf("device file of %s when remove returns: %v", n, err)
		}
	}
}

// Who makes a device busy: a mounted filesystem, a client's open of the
// device file; remove --deferred waits for the last one. suspend without
// --nolockfs freezes the filesystem, resume thaws it.
func TestExportsBusyAndLockfs(t *testing.T) {
	s := newExportSandbox(t, "mkfs.ext4", "fsfreeze")
	leaf := s.file("l.img", 131072*512)
	s.start()
	s.run("create", "m", "--table", fmt.Sprintf("0 131072 linear %s 0", leaf))
	sh(t, "mkfs.ext4", "-q", "-F", s.link("m"))
	mnt := s.path("mnt")
	mountFS(t, s.link("m"), mnt)
	os.WriteFile(filepath.Join(mnt, "f"), []byte("x"), 0o644)

	if _, stderr, err := s.tryRun("remove", "m"); err == nil || !strings.Contains(stderr, "mounted on "+mnt) {
		t.Errorf("remove of a mounted device: %v %s", err, stderr)
	}

	// suspend freezes (a second freeze is EBUSY), resume thaws.
	s.run("suspend", "m")
	if out, err := exec.Command("fsfreeze", "-f", mnt).CombinedOutput(); err == nil || !strings.Contains(string(out), "busy") {
		exec.Command("fsfreeze", "-u", mnt).Run()
		t.Errorf("filesystem not frozen by suspend: fsfreeze -f: %v %s", err, out)
	}
	s.run("resume", "m")
	if out, err := exec.Command("fsfreeze", "-f", mnt).CombinedOutput(); err != nil {
		t.Errorf("filesystem still frozen after resume: %v %s", err, out)
	} else {
		sh(t, "fsfreeze", "-u", mnt)
	}
	// (Whether suspend --nolockfs left it thawed can't be probed while
	// suspended: a freeze then waits for the device, as it does on dm.)

	// remove --deferred goes when the filesystem is unmounted.
	s.run("remove", "--deferred", "m")
	if !strings.Contains(s.run("ls"), "m\t") {
		t.Fatal("remove --deferred removed a mounted device")
	}
	umountFS(t, mnt)
	waitFor(t, 5*time.Second, "the deferred removal", func() bool { return strings.Contains(s.run("ls"), "No devices found") })
	if _, err := os.Lstat(s.link("m")); !os.IsNotExist(err) {
		t.Errorf("link after the deferred removal: %v", err)
	}

	// A client's open of the device file is a user.
	s.run("create", "f", "--table", fmt.Sprintf("0 8192 linear %s 0", leaf))
	fh, err := os.Open(s.path("dev/f"))
	if err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := s.tryRun("remove", "f"); err == nil || !strings.Contains(stderr, "device file open") {
		t.Errorf("remove with the device file open: %v %s", err, stderr)
	}
	fh.Close()
	waitFor(t, 5*time.Second, "the file's release", func() bool {
		_, _, err := s.tryRun("remove", "f")
		return err == nil
	})
}

// A device a table uses is claimed: its block device can't be mounted or
// opened exclusively while the table above lives. A table can't name one
// of the exports (no I/O out through the kernel and back).
func TestExportsClaimsAndLoops(t *testing.T) {
	s := newExportSandbox(t, "mkfs.ext4")
	leaf := s.file("l.img", 65536*512)
	s.start()
	s.run("create", "low", "--table", fmt.Sprintf("0 65536 linear %s 0", leaf))
	sh(t, "mkfs.ext4", "-q", "-F", s.link("low"))
	s.run("create", "up", "--table", "0 65536 linear low 0")
	if fd, err := unix.Open(s.link("low"), unix.O_RDONLY|unix.O_EXCL, 0); err == nil {
		unix.Close(fd)
		t.Error("the block device of a device used by a table opens exclusively")
	}
	s.run("remove", "up")
	fd, err := unix.Open(s.link("low"), unix.O_RDONLY|unix.O_EXCL, 0)
	if err != nil {
		t.Errorf("claim not released after the table above went: %v", err)
	} else {
		unix.Close(fd)
	}

	// A device whose block device is mounted cannot go under a table, as
	// the kernel's dm cannot open such a child exclusively: refused
	// (EBUSY, naming the mount), changing nothing.
	mnt := s.path("mnt")
	mountFS(t, s.link("low"), mnt)
	_, stderr, err := s.tryRun("create", "up2", "--table", "0 65536 linear low 0")
	if err == nil || !strings.Contains(stderr, "in use") || !strings.Contains(stderr, mnt) {
		t.Errorf("a table over a mounted device: err %v, stderr %q", err, stderr)
	}
	if _, _, err := s.tryRun("info", "up2"); err == nil {
		t.Errorf("the refused create left device up2 behind")
	}
	umountFS(t, mnt)
	s.run("create", "up2", "--table", "0 65536 linear low 0")
	s.run("remove", "up2")

	loop, _ := filepath.EvalSymlinks(s.link("low"))
	var st unix.Stat_t
	unix.Stat(loop, &st)
	devno := fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	for _, ref := range []string{s.link("low"), loop, devno, s.path("dev/low"), s.uri("low")} {
		_, stderr, err := s.tryRun("create", "bad", "--table", fmt.Sprintf("0 8 linear %s 0", ref))
		if err == nil {
			t.Errorf("a table naming %s (an export of low) was accepted", ref)
			s.run("remove", "bad")
			continue
		}
		if !strings.Contains(stderr, "own export of low") && !strings.HasPrefix(ref, "nbd") {
			t.Errorf("table naming %s: %s", ref, stderr)
		}
	}
}

// After a daemon restart the exports come back; a dead daemon's loop
// devices and links are cleaned.
func TestExportsRestart(t *testing.T) {
	s := newExportSandbox(t, "losetup")
	leaf := s.file("l.img", 16384*512)
	s.start()
	s.run("create", "k", "--table", fmt.Sprintf("0 16384 linear %s 0", leaf))
	data := strings.Repeat("daxstack", 512)
	f, err := os.OpenFile(s.link("k"), os.O_WRONLY|unix.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	buf, _ := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	copy(buf, data)
	if _, err := f.WriteAt(buf, 8192); err != nil {
		t.Fatal(err)
	}
	f.Sync()
	f.Close()
	oldLoop, _ := filepath.EvalSymlinks(s.link("k"))
	s.d.kill9()
	s.start()
	// The daemon's socket takes connections (into its backlog) from the
	// moment it is bound, a moment before the exports are back; it
	// answers commands once they are.
	blk := strings.TrimSpace(s.run("info", "-c", "--noheadings", "-o", "blkdev", "k"))
	newLoop, err := filepath.EvalSymlinks(s.link("k"))
	if err != nil || !isBlock(newLoop) || newLoop != blk {
		t.Fatalf("link after restart: %q %v (info says %q)", newLoop, err, blk)
	}
	out := sh(t, "losetup", "-a")
	if n := strings.Count(out, s.path("dev")+"/k"); n != 1 {
		t.Errorf("%d loop devices over the device file after restart (old %s, new %s):\n%s", n, oldLoop, newLoop, out)
	}
	got := s.run("read", "k", "--sector", "16", "--count", "8")
	if got != data {
		t.Errorf("data written before the restart: %q...", got[:16])
	}
	b, err := os.ReadFile(s.path("dev/k"))
	if err != nil || len(b) != 16384*512 || string(b[8192:12288]) != data {
		t.Errorf("device file after restart: %d bytes, %v", len(b), err)
	}
	_ = strconv.Itoa
}
