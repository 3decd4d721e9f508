package fsfiles

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestNotMounted(t *testing.T) {
	f := newTestFS(t, "ext4", 64)
	fs, err := Open(f.major, f.minor)
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	if ok, err := Mounted(f.major, f.minor); !ok || err != nil {
		t.Errorf("Mounted = %v, %v", ok, err)
	}
	f.umount()
	if ok, err := Mounted(f.major, f.minor); ok || err != nil {
		t.Errorf("after umount: Mounted = %v, %v", ok, err)
	}
	_, err = fs.Lookup(context.Background(), sectors(0, 1), 0)
	if !errors.Is(err, ErrNotMounted) || !errors.Is(err, unix.ENOENT) {
		t.Errorf("Lookup after umount: %v, want ErrNotMounted", err)
	}
	if _, err := Open(f.major, f.minor); !errors.Is(err, ErrNotMounted) {
		t.Errorf("Open after umount: %v", err)
	}
}

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

// TestRemount: unmounting and mounting again (maybe under the same mount
// ID) drops what was known: a file written while unmounted is found.
func TestRemount(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		t.Run(map[bool]string{false: "unique mount ID", true: "sysfs stamp"}[legacy], func(t *testing.T) { testRemount(t, legacy) })
	}
}

// testRemount, with legacy, does without the unique mount ID, as kernels
// before 6.8 must.
func testRemount(t *testing.T, legacy bool) {
	f := newTestFS(t, "ext4", 64)
	f.write("a", 8192)
	fs, err := Open(f.major, f.minor)
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	if legacy {
		fs.mu.Lock()
		fs.unique, fs.stamp = 0, fs.sbStamp()
		fs.mu.Unlock()
		if fs.stamp == 0 {
			t.Fatalf("no sysfs stamp")
		}
	}
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
	// Mounted for good again: the next lookup trusts the new index.
	built := fs.Info().Built
	doLookup(t, fs, sectors(0, 1), 0)
	if !fs.Info().Built.Equal(built) {
		t.Errorf("walked again without a remount")
	}
}
