package blockdev

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/daxstack/daxstack/export/devfs"
	"github.com/daxstack/daxstack/export/internal/testdev"
	"github.com/daxstack/daxstack/export/linux"
	"github.com/daxstack/daxstack/internal/testenv"
)

// rig is a devfs mount and a Manager over it, with link directories of
// the test's own.
type rig struct {
	t         *testing.T
	fs        *devfs.FS
	m         *Manager
	dir       string
	linkDir   string
	mapperDir string
}

func newRig(t *testing.T) *rig {
	t.Helper()
	testdev.NeedLoop(t)
	dir := t.TempDir()
	fs, err := devfs.Mount(filepath.Join(dir, "dev"), devfs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, fs: fs, dir: dir, linkDir: filepath.Join(dir, "links"), mapperDir: filepath.Join(dir, "mapper")}
	m, err := New(fs, Options{LinkDir: r.linkDir, MapperDir: r.mapperDir, MapperLinks: MapperOn})
	if err != nil {
		fs.Close()
		t.Fatal(err)
	}
	r.m = m
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("manager close: %v", err)
		}
		if err := fs.Close(); err != nil {
			t.Errorf("devfs close: %v", err)
		}
	})
	return r
}

// add exports a fresh test device of size bytes.
func (r *rig) add(name string, size int64, ro bool) (*testdev.Dev, Export) {
	r.t.Helper()
	d := r.dev(name, size)
	return d, r.export(name, d, size, ro)
}

func (r *rig) export(name string, d devfs.Device, size int64, ro bool) Export {
	r.t.Helper()
	x, err := r.m.Add(name, d, devfs.Attr{Size: size, ReadOnly: ro})
	if err != nil {
		r.t.Fatal(err)
	}
	return x
}

func (r *rig) dev(name string, size int64) *testdev.Dev {
	r.t.Helper()
	d, err := testdev.New(filepath.Join(r.t.TempDir(), name+".img"), size)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { d.Close() })
	return d
}

// ourLoops lists the attached loops whose backing file is in the rig's
// mount.
func (r *rig) ourLoops() []linux.LoopInfo {
	r.t.Helper()
	all, err := linux.Loops()
	if err != nil {
		r.t.Fatal(err)
	}
	var out []linux.LoopInfo
	for _, l := range all {
		if strings.HasPrefix(l.BackingFile, r.fs.Dir()+"/") {
			out = append(out, l)
		}
	}
	return out
}

// directFile is a file opened with O_DIRECT and a page-aligned buffer.
type directFile struct {
	f   *os.File
	buf []byte
}

func openDirect(t *testing.T, path string, flag int) *directFile {
	t.Helper()
	f, err := os.OpenFile(path, flag|unix.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	buf, err := unix.Mmap(-1, 0, 1<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close(); unix.Munmap(buf) })
	return &directFile{f: f, buf: buf}
}

func (d *directFile) readAt(off int64, n int) ([]byte, error) {
	k, err := unix.Pread(int(d.f.Fd()), d.buf[:n], off)
	if err != nil {
		return nil, err
	}
	return d.buf[:k], nil
}

func (d *directFile) writeAt(p []byte, off int64) error {
	copy(d.buf, p)
	n := (len(p) + 511) &^ 511
	_, err := unix.Pwrite(int(d.f.Fd()), d.buf[:n], off)
	return err
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	testenv.NeedCommand(t, name)
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// mountFS mounts dev on a fresh directory, unmounted when t ends.
func mountFS(t *testing.T, dev, fstype string, flags uintptr) string {
	t.Helper()
	mnt := t.TempDir()
	if err := unix.Mount(dev, mnt, fstype, flags, ""); err != nil {
		t.Fatalf("mount %s on %s: %v", dev, mnt, err)
	}
	t.Cleanup(func() {
		for i := 0; i < 50; i++ {
			err := unix.Unmount(mnt, 0)
			if err == nil || errors.Is(err, unix.EINVAL) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		unix.Unmount(mnt, unix.MNT_DETACH)
	})
	return mnt
}

func umount(t *testing.T, mnt string) {
	t.Helper()
	if err := unix.Unmount(mnt, 0); err != nil {
		t.Fatalf("unmount %s: %v", mnt, err)
	}
}

func readlink(t *testing.T, p string) string {
	t.Helper()
	s, err := os.Readlink(p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
