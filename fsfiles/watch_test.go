package fsfiles

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/daxstack/daxstack/internal/testenv"
	"golang.org/x/sys/unix"
)

// TestLookupNoWatch: without the watch every lookup walks again, and
// still finds what changed.
func TestLookupNoWatch(t *testing.T) {
	f := newTestFS(t, "ext4", 64)
	f.write("a", 8192)
	fs, err := OpenWith(f.major, f.minor, Options{NoWatch: true})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	doLookup(t, fs, sectors(sectorOf(t, f.placement("a"), 0), 1), 0)
	f.write("b", 8192)
	r := doLookup(t, fs, sectors(sectorOf(t, f.placement("b"), 4096), 1), 0)
	wantOnlyFile(t, r, FileRange{Inode: f.ino("b"), Paths: []string{f.path("b")}, Offset: 4096, Length: 512})
	if fs.watch != nil {
		t.Errorf("a watch was started")
	}
}

// TestWatchBackground: changes piling up between lookups are applied in
// the background; Close ends the watch's goroutines.
func TestWatchBackground(t *testing.T) {
	before := runtime.NumGoroutine()
	f := newTestFS(t, "ext4", 64)
	fs, err := Open(f.major, f.minor)
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.Prepare(context.Background()); err != nil {
		t.Fatal(err)
	}
	if in := fs.Info(); !in.Watching || in.WatchError != nil {
		t.Fatalf("no watch: %+v", in)
	}
	for i := range 2 * tidyBacklog {
		if err := os.WriteFile(f.path(fmt.Sprintf("f%04d", i)), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fs.mu.Lock()
	w := fs.watch
	fs.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for w.pressing(0) {
		if time.Now().After(deadline) {
			t.Fatalf("the backlog was not applied")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := fs.Info().Inodes; n < 2*tidyBacklog {
		t.Errorf("names know %d inodes after the background apply", n)
	}
	fs.Close()
	for deadline = time.Now().Add(5 * time.Second); runtime.NumGoroutine() > before; {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after Close, %d before", runtime.NumGoroutine(), before)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWalkUnsupported: a tree whose files FIEMAP does not map (tmpfs) is
// refused as such, not taken for a tree of empty files.
func TestWalkUnsupported(t *testing.T) {
	testenv.NeedRoot(t)
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "tmpfs", dir).CombinedOutput(); err != nil {
		testenv.Unavailable(t, fmt.Sprintf("mount tmpfs: %v %s", err, out))
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	if err := os.WriteFile(filepath.Join(dir, "a"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	root, err := unix.Open(dir, openDir, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(root)
	var stx unix.Statx_t
	if err := unix.Statx(root, "", unix.AT_EMPTY_PATH, unix.STATX_MNT_ID|unix.STATX_INO, &stx); err != nil {
		t.Fatal(err)
	}
	w := &walker{ctx: context.Background(), root: root, rootIno: stx.Ino, mntID: stx.Mnt_id,
		dev: unix.Mkdev(stx.Dev_major, stx.Dev_minor), extents: true}
	outs, err := w.run(1)
	if err != nil {
		t.Fatal(err)
	}
	if !w.unsupported.Load() {
		t.Errorf("FIEMAP on tmpfs not found unsupported")
	}
	if len(outs[0].entries) != 1 || outs[0].entries[0].name != "a" {
		t.Errorf("entries %+v", outs[0].entries)
	}
}

// TestWatchWithoutTargetFID: the watch of a kernel before 5.17 (no
// FAN_REPORT_TARGET_FID) still follows new files and links.
func TestWatchWithoutTargetFID(t *testing.T) {
	f := newTestFS(t, "ext4", 64)
	fs, err := Open(f.major, f.minor)
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	w, err := watchFSFlags(f.mnt, fanInitFlags&^unix.FAN_REPORT_TARGET_FID)
	if err != nil {
		t.Fatal(err)
	}
	fs.mu.Lock()
	fs.watch = w
	fs.mu.Unlock()
	if err := fs.Prepare(context.Background()); err != nil {
		t.Fatal(err)
	}
	built := fs.Info().Built
	f.write("new", 8192)
	if err := os.Link(f.path("new"), f.path("link")); err != nil {
		t.Fatal(err)
	}
	r := doLookup(t, fs, sectors(sectorOf(t, f.placement("new"), 4096), 1), 0)
	wantOnlyFile(t, r, FileRange{Inode: f.ino("new"), Paths: []string{f.path("link"), f.path("new")}, Offset: 4096, Length: 512})
	if in := fs.Info(); !in.Built.Equal(built) || !in.Watching {
		t.Errorf("the lookup walked again (built %v, then %v)", built, in.Built)
	}
}
