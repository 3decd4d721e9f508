package blockdev

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/daxstack/daxstack/export/devfs"
	"github.com/daxstack/daxstack/export/internal/testdev"
	"github.com/daxstack/daxstack/export/linux"
)

// helperEnv makes the test binary a daemon that exports one device and
// waits to be killed (see TestLeftovers).
const helperEnv = "DAXSTACK_BLOCKDEV_TEST_DAEMON"

func TestMain(m *testing.M) {
	if dir := os.Getenv(helperEnv); dir != "" {
		os.Exit(fakeDaemon(dir))
	}
	os.Exit(m.Run())
}

func leftoverOptions(dir string) Options {
	return Options{LinkDir: filepath.Join(dir, "links"), MapperDir: filepath.Join(dir, "mapper"), MapperLinks: MapperOn}
}

func fakeDaemon(dir string) int {
	fs, err := devfs.Mount(filepath.Join(dir, "dev"), devfs.Options{})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	m, err := New(fs, leftoverOptions(dir))
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	d, err := testdev.New(filepath.Join(dir, "leaf"), 64<<20)
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	x, err := m.Add("dead", d, devfs.Attr{Size: 64 << 20})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Println("ready", x.Loop.Path)
	select {}
}

// A daemon killed with its exports in place leaves a dead FUSE mount, a
// loop over a file in it, and links; CleanLeftovers removes them (a loop
// a filesystem is still mounted from detaches at its unmount), other loops
// are left alone, and a new daemon can serve the same names again.
func TestLeftovers(t *testing.T) {
	for _, mounted := range []bool{false, true} {
		t.Run(fmt.Sprintf("mounted=%v", mounted), func(t *testing.T) {
			testdev.NeedLoop(t)
			dir := t.TempDir()
			devDir := filepath.Join(dir, "dev")
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), helperEnv+"="+dir)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			var loopPath string
			t.Cleanup(func() {
				cmd.Process.Kill()
				cmd.Wait()
				unix.Unmount(devDir, unix.MNT_DETACH)
				if loopPath != "" {
					if st, err := linux.LoopStatus(loopPath); err == nil && strings.HasPrefix(st.Tag, tagPrefix(devDir)) {
						linux.DetachLoop(loopPath)
					}
				}
			})
			line, err := bufio.NewReader(out).ReadString('\n')
			if err != nil || !strings.HasPrefix(line, "ready ") {
				t.Fatalf("fake daemon: %q, %v", line, err)
			}
			loopPath = strings.TrimSpace(strings.TrimPrefix(line, "ready "))

			// Someone else's loop, which must survive the cleaning.
			otherFile := filepath.Join(t.TempDir(), "other")
			os.WriteFile(otherFile, make([]byte, 1<<20), 0o600)
			of, _ := os.Open(otherFile)
			other, err := linux.AttachLoop(of, linux.LoopConfig{ReadOnly: true})
			of.Close()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { linux.DetachLoop(other.Path) })

			var mnt string
			if mounted {
				run(t, "mkfs.ext4", "-q", "-F", loopPath)
				mnt = mountFS(t, loopPath, "ext4", 0)
				if err := os.WriteFile(filepath.Join(mnt, "f"), []byte("before"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			cmd.Process.Kill()
			cmd.Wait()

			var sfs unix.Statfs_t
			if err := unix.Statfs(devDir, &sfs); !errors.Is(err, syscall.ENOTCONN) {
				t.Errorf("the dead daemon's mount: %v, want ENOTCONN", err)
			}
			if mounted {
				f, err := os.OpenFile(filepath.Join(mnt, "g"), os.O_CREATE|os.O_WRONLY, 0o644)
				if err == nil {
					_, err = f.Write([]byte("after"))
					if err == nil {
						err = f.Sync()
					}
					f.Close()
				}
				if !errors.Is(err, syscall.EIO) {
					t.Errorf("a filesystem on the dead daemon's loop: %v, want EIO", err)
				}
			}

			o := leftoverOptions(dir)
			left, err := CleanLeftovers(devDir, o)
			if err != nil {
				t.Fatal(err)
			}
			if len(left.Loops) != 1 || left.Loops[0].Path != loopPath {
				t.Errorf("leftover loops %+v, want %s", left.Loops, loopPath)
			}
			sort.Strings(left.Links)
			wantLinks := []string{filepath.Join(o.LinkDir, "dead"), filepath.Join(o.MapperDir, "dead")}
			if strings.Join(left.Links, " ") != strings.Join(wantLinks, " ") {
				t.Errorf("leftover links %v, want %v", left.Links, wantLinks)
			}
			for _, l := range wantLinks {
				if _, err := os.Lstat(l); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s after cleaning: %v", l, err)
				}
			}
			if mounted {
				if len(left.Deferred) != 1 || len(left.Mounts) != 1 || left.Mounts[0] != mnt {
					t.Errorf("deferred %v, mounts %v; want the loop and %s", left.Deferred, left.Mounts, mnt)
				}
			} else {
				if len(left.Deferred) != 0 {
					t.Errorf("deferred %v with nothing mounted", left.Deferred)
				}
				if _, err := linux.LoopStatus(loopPath); !errors.Is(err, linux.ErrNotAttached) {
					t.Errorf("leftover loop after cleaning: %v", err)
				}
			}
			if st, err := linux.LoopStatus(other.Path); err != nil || st.BackingFile != otherFile {
				t.Errorf("someone else's loop after cleaning: %+v, %v", st, err)
			}

			// A new daemon on the same directory.
			fs, err := devfs.Mount(devDir, devfs.Options{})
			if err != nil {
				t.Fatalf("mount over the dead mount: %v", err)
			}
			m, err := New(fs, o)
			if err != nil {
				t.Fatal(err)
			}
			d, err := testdev.New(filepath.Join(t.TempDir(), "leaf2"), 64<<20)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			x, err := m.Add("dead", d, devfs.Attr{Size: 64 << 20})
			if err != nil {
				t.Errorf("export the same name again: %v", err)
			} else if readlink(t, x.Links[0]) != x.Loop.Path {
				t.Errorf("new link -> %s", readlink(t, x.Links[0]))
			}
			if mounted {
				umount(t, mnt)
				if st, err := linux.LoopStatus(loopPath); err == nil && strings.HasPrefix(st.Tag, tagPrefix(devDir)) && st.Dev != x.Loop.Dev {
					t.Errorf("the dead loop stayed after its filesystem was unmounted: %+v", st)
				}
			}
			if err := m.Close(); err != nil {
				t.Error(err)
			}
			if err := fs.Close(); err != nil {
				t.Error(err)
			}
		})
	}
}
