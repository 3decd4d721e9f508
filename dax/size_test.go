package dax_test

// A leaf that got smaller under a stack (#10 item 5), and the files and
// devices that are not what they were (a file replaced at the same path).

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/daxstack/daxstack/dax"
	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/internal/testenv"
)

func ext(start, n uint64) extent.Set { return extent.Of(extent.Extent{Start: start, Len: n}) }

// wantTruncated checks that err is a *TruncatedError for bad, now.
func wantTruncated(t *testing.T, what string, err error, bad extent.Extent, now uint64) {
	t.Helper()
	var te *dax.TruncatedError
	if !errors.As(err, &te) || !errors.Is(err, syscall.EIO) || te.Bad != bad || te.Now != now {
		t.Fatalf("%s: %v; want sectors %v past the end of %d", what, err, bad, now)
	}
}

// TestShrunkFile: truncate -s under a mapped file leaf, in both access
// modes. I/O past the new end fails naming the sectors (never a SIGBUS),
// I/O before it works, Recheck reports what became bad, and when the file
// grows back the same leaf works again.
func TestShrunkFile(t *testing.T) {
	for _, pread := range []bool{false, true} {
		t.Run(fmt.Sprintf("pread=%v", pread), func(t *testing.T) {
			o := &dax.Opener{Pread: pread}
			l := openFile(t, 64<<10, 'x', o) // 128 sectors
			buf := make([]byte, 8<<10)
			if _, err := l.ReadAt(buf, 0); err != nil {
				t.Fatal(err)
			}
			if !l.Truncated().Empty() || l.CurrentSize() != 128 {
				t.Fatalf("fresh leaf: truncated %v, current %d", l.Truncated(), l.CurrentSize())
			}
			if err := os.Truncate(l.Path(), 20<<10-100); err != nil { // 39 whole sectors and a part
				t.Fatal(err)
			}
			// Recheck sees it before any I/O does.
			was, now, err := l.Recheck()
			if err != nil || !was.Empty() || !now.Equal(ext(39, 89)) {
				t.Fatalf("Recheck: was %v now %v, %v; want now 39+89", was, now, err)
			}
			if l.Size() != 128 || l.CurrentSize() != 39 {
				t.Errorf("Size %d CurrentSize %d; want 128 and 39", l.Size(), l.CurrentSize())
			}
			// A read across the end: the whole sectors before it are read.
			n, err := l.ReadAt(buf, 36*512)
			wantTruncated(t, "read across the end", err, extent.Extent{Start: 39, Len: 13}, 39)
			if n != 3*512 || !bytes.Equal(buf[:n], bytes.Repeat([]byte{'x'}, n)) {
				t.Errorf("read %d bytes before the end, want 1536 of x", n)
			}
			// The part-sector at the end is not trusted either.
			_, err = l.ReadAt(buf[:10], 39*512)
			wantTruncated(t, "read of the part-sector", err, extent.Extent{Start: 39, Len: 1}, 39)
			if _, err := l.ReadAt(buf, 0); err != nil {
				t.Errorf("read before the end: %v", err)
			}
			// A write past the end fails and does not grow the file.
			n, err = l.WriteAt(buf, 100*512)
			wantTruncated(t, "write past the end", err, extent.Extent{Start: 100, Len: 16}, 39)
			if n != 0 {
				t.Errorf("wrote %d bytes past the end", n)
			}
			if fi, err := os.Stat(l.Path()); err != nil || fi.Size() != 20<<10-100 {
				t.Errorf("the file is %v bytes after the refused write (%v), want it untouched", fi.Size(), err)
			}
			// It grows back: the same mapping works; what was cut off
			// is gone (zeros).
			if err := os.Truncate(l.Path(), 64<<10); err != nil {
				t.Fatal(err)
			}
			was, now, err = l.Recheck()
			if err != nil || !was.Equal(ext(39, 89)) || !now.Empty() {
				t.Fatalf("Recheck after growing back: was %v now %v, %v", was, now, err)
			}
			if n, err := l.ReadAt(buf, 40*512); err != nil || n != len(buf) || !bytes.Equal(buf, make([]byte, len(buf))) {
				t.Errorf("read after growing back: %d, %v", n, err)
			}
			if _, err := l.WriteAt([]byte("back"), 100*512); err != nil {
				t.Errorf("write after growing back: %v", err)
			}
		})
	}
}

// TestShrunkBeforeAnyIO: the file shrank before the leaf's first I/O;
// I/O finds it out by itself (the fault, or pread's short read).
func TestShrunkBeforeAnyIO(t *testing.T) {
	for _, pread := range []bool{false, true} {
		l := openFile(t, 64<<10, 'y', &dax.Opener{Pread: pread})
		if err := os.Truncate(l.Path(), 16<<10); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 8<<10)
		n, err := l.ReadAt(buf, 12<<10)
		wantTruncated(t, fmt.Sprintf("pread=%v: first read", pread), err, extent.Extent{Start: 32, Len: 8}, 32)
		if n != 4<<10 {
			t.Errorf("pread=%v: read %d bytes, want 4096", pread, n)
		}
		if !l.Truncated().Equal(ext(32, 96)) {
			t.Errorf("pread=%v: Truncated %v, want 32+96", pread, l.Truncated())
		}
	}
}

// TestOpenKnown: a leaf reopened after a restart keeps its recorded size
// though the file is smaller now, and a file that is not the recorded one
// is refused (lost, never used).
func TestOpenKnown(t *testing.T) {
	dir := t.TempDir()
	path := tempFile(t, dir, 64<<10, 'k')
	var o dax.Opener
	first, err := o.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	known := dax.Known{Identity: first.Identity(), Size: first.Size()}
	first.Close()
	if err := os.Truncate(path, 10<<10); err != nil {
		t.Fatal(err)
	}
	l, err := o.OpenKnown(path, known)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.Size() != 128 || l.CurrentSize() != 20 || !l.Truncated().Equal(ext(20, 108)) {
		t.Errorf("Size %d CurrentSize %d Truncated %v; want 128, 20, 20+108", l.Size(), l.CurrentSize(), l.Truncated())
	}
	_, err = l.ReadAt(make([]byte, 512), 64*512)
	wantTruncated(t, "read past the end", err, extent.Extent{Start: 64, Len: 1}, 20)

	// Replaced at the same path by another file of the same size.
	other := tempFile(t, dir, 64<<10, 'o')
	if err := os.Rename(other, path); err != nil {
		t.Fatal(err)
	}
	if _, err := o.OpenKnown(path, known); !errors.Is(err, dax.ErrChanged) || !errors.Is(err, syscall.ENXIO) {
		t.Errorf("OpenKnown of a replaced file: %v; want ErrChanged", err)
	}
	// And the leaf opened on the old file says so on Recheck.
	if _, _, err := l.Recheck(); !errors.Is(err, dax.ErrChanged) {
		t.Errorf("Recheck after the file was replaced: %v; want ErrChanged", err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.Recheck(); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Recheck after the file was removed: %v; want ErrNotExist", err)
	}
	if _, _, err := dax.Missing("file:1:2", path, path, dax.KindFile, 8).Recheck(); !errors.Is(err, dax.ErrLost) {
		t.Errorf("Recheck of a missing leaf: %v; want ErrLost", err)
	}
}

// TestShrunkLoop: the backing file of a loop device shrinks and the loop
// device is told (losetup -c): its leaf's I/O past the new end fails with
// the sectors, through the page-cache mapping of the block device.
func TestShrunkLoop(t *testing.T) {
	testenv.NeedRoot(t)
	file, data := patternFile(t, t.TempDir(), 2048) // 1 MiB
	node := dax.NewLoop(t, file)
	var o dax.Opener
	l, err := o.Open(node)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	buf := make([]byte, 4096)
	if _, err := l.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(file, 256<<10); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("losetup", "-c", node).CombinedOutput(); err != nil {
		t.Fatalf("losetup -c: %v: %s", err, out)
	}
	was, now, err := l.Recheck()
	if err != nil || !was.Empty() || !now.Equal(ext(512, 1536)) {
		t.Fatalf("Recheck: was %v now %v, %v; want 512+1536", was, now, err)
	}
	_, err = l.ReadAt(buf, 600*512)
	wantTruncated(t, "read past the end", err, extent.Extent{Start: 600, Len: 8}, 512)
	if n, err := l.ReadAt(buf, 100*512); err != nil || !bytes.Equal(buf[:n], data[100*512:100*512+4096]) {
		t.Errorf("read before the end: %d, %v", n, err)
	}
}

// TestOddPaths: what Open makes of paths that are not leaves, and of
// files whose size is not whole sectors.
func TestOddPaths(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "sock")
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: sock}); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{fifo, sock, "/dev/zero", dir} {
		var o dax.Opener
		l, err := o.Open(ref)
		if err == nil {
			l.Close()
			t.Errorf("Open(%s) succeeded", ref)
			continue
		}
		if !errors.Is(err, dax.ErrUnsupported) {
			t.Errorf("Open(%s): %v; want ErrUnsupported", ref, err)
		}
	}
	// 1000 bytes: one sector; the 488 bytes after it are never touched.
	path := filepath.Join(dir, "odd.img")
	odd := bytes.Repeat([]byte{'o'}, 1000)
	if err := os.WriteFile(path, odd, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, pread := range []bool{false, true} {
		o := dax.Opener{Pread: pread}
		l, err := o.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		if l.Size() != 1 {
			t.Fatalf("size %d, want 1", l.Size())
		}
		if n, err := l.WriteAt(make([]byte, 1000), 0); n != 512 || !errors.Is(err, syscall.ENOSPC) {
			t.Errorf("pread=%v: write over the tail: %d, %v; want 512, ENOSPC", pread, n, err)
		}
		l.Close()
		back, _ := os.ReadFile(path)
		if len(back) != 1000 || !bytes.Equal(back[512:], odd[512:]) {
			t.Errorf("pread=%v: the tail after the last whole sector changed (%d bytes)", pread, len(back))
		}
		if err := os.WriteFile(path, odd, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestHugeSparseFile: a file too large to map (on tmpfs, which allows it)
// is used through pread and pwrite, and says so.
func TestHugeSparseFile(t *testing.T) {
	fi, err := os.Stat("/dev/shm")
	if err != nil || !fi.IsDir() {
		t.Skip("no /dev/shm")
	}
	f, err := os.CreateTemp("/dev/shm", "daxstack-huge-*.img")
	if err != nil {
		t.Skip(err)
	}
	t.Cleanup(func() { os.Remove(f.Name()) })
	const size = 200 << 40 // 200 TiB, more than x86-64 user space
	if err := f.Truncate(size); err != nil {
		f.Close()
		t.Skipf("tmpfs refuses a %d-byte file: %v", int64(size), err)
	}
	f.Close()
	var o dax.Opener
	l, err := o.Open(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if access, err := l.Access(); access != dax.AccessPread || err != nil {
		t.Fatalf("Access = %s, %v; want pread", access, err)
	}
	at := int64(size - 4096)
	if _, err := l.WriteAt([]byte("the far end"), at); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 11)
	if _, err := l.ReadAt(buf, at); err != nil || string(buf) != "the far end" {
		t.Fatalf("read back %q, %v", buf, err)
	}
	if fi, _ := os.Stat(f.Name()); fi.Size() != size {
		t.Errorf("the file is %d bytes, want %d", fi.Size(), int64(size))
	}
	if !strings.Contains(fmt.Sprint(l.Report()), "pread") {
		t.Errorf("report %+v does not say pread", l.Report())
	}
}

// TestFIFOAtThePath: a file leaf's path becomes a FIFO before its first
// I/O; the I/O is refused instead of blocking in open. (An O_RDWR open of
// a FIFO never blocks; the read-only retry, which a user without write
// permission reaches, would without O_NONBLOCK. As root the test takes
// the O_RDWR path.)
func TestFIFOAtThePath(t *testing.T) {
	l := openFile(t, 4096, 'f', nil)
	if err := os.Remove(l.Path()); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(l.Path(), 0o400); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := l.ReadAt(make([]byte, 512), 0); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, dax.ErrChanged) {
			t.Errorf("read: %v; want ErrChanged", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the read blocked opening a FIFO")
	}
}
