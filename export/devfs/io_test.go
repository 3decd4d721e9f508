package devfs

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/daxstack/daxstack/export/internal/testdev"
	"github.com/daxstack/daxstack/internal/testenv"
)

func unixTime(s int64) time.Time { return time.Unix(s, 0) }

func TestReadWrite(t *testing.T) { readPaths(t, testReadWrite) }

func testReadWrite(t *testing.T, lending bool) *testdev.Dev {
	fs := mount(t, Options{})
	d := addAs(t, fs, "a", Attr{Size: 1 << 20}, lending)
	f := openFile(t, fs.Path("a"), os.O_RDWR)
	data := bytes.Repeat([]byte("daxstack"), 1024)
	if _, err := f.WriteAt(data, 4096); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(data))
	d.File().ReadAt(got, 4096)
	if !bytes.Equal(got, data) {
		t.Error("device lacks the bytes written")
	}
	// A change underneath shows at once: no page cache.
	d.File().WriteAt([]byte("UNDER"), 4096)
	if _, err := f.ReadAt(got[:5], 4096); err != nil || string(got[:5]) != "UNDER" {
		t.Errorf("read after a change underneath: %q, %v", got[:5], err)
	}
	// End of the device: reads end, writes fail with ENOSPC, a write
	// across the end is cut short.
	if n, err := f.ReadAt(make([]byte, 4096), 1<<20-100); n != 100 {
		t.Errorf("read across the end: %d, %v", n, err)
	}
	if n, _ := f.ReadAt(make([]byte, 10), 1<<20); n != 0 {
		t.Errorf("read at the end: %d", n)
	}
	if _, err := f.WriteAt([]byte("x"), 1<<20); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("write at the end: %v, want ENOSPC", err)
	}
	if n, err := unix.Pwrite(int(f.Fd()), make([]byte, 4096), 1<<20-512); n != 512 || err != nil {
		t.Errorf("write across the end: %d, %v; want 512", n, err)
	}
	return d
}

// A read fails exactly at the bad sectors: the good prefix is returned,
// then EIO.
func TestReadErrorIsSectorExact(t *testing.T) { readPaths(t, testReadErrorIsSectorExact) }

func testReadErrorIsSectorExact(t *testing.T, lending bool) *testdev.Dev {
	fs := mount(t, Options{})
	d := addAs(t, fs, "a", Attr{Size: 1 << 20}, lending)
	d.SetBad(10, 2)
	f := openFile(t, fs.Path("a"), os.O_RDONLY)
	fd := int(f.Fd())
	buf := make([]byte, 8*512)
	for _, tc := range []struct {
		off  int64
		n    int
		want int // bytes, -1 for EIO
	}{
		{9 * 512, 512, 512},
		{10 * 512, 512, -1},
		{11 * 512, 512, -1},
		{12 * 512, 512, 512},
		{8 * 512, 8 * 512, 2 * 512},  // short: the two good sectors
		{10*512 - 100, 512, 100},     // unaligned: up to the bad sector
		{12*512 - 1, 2, -1},          // the last byte of a bad sector
		{11*512 + 511, 1 + 512, -1},  // from inside a bad one
		{12 * 512, 4 * 512, 4 * 512}, // just after
	} {
		n, err := unix.Pread(fd, buf[:tc.n], tc.off)
		if tc.want < 0 {
			if !errors.Is(err, syscall.EIO) {
				t.Errorf("pread(%d, %d) = %d, %v; want EIO", tc.off, tc.n, n, err)
			}
		} else if n != tc.want || err != nil {
			t.Errorf("pread(%d, %d) = %d, %v; want %d", tc.off, tc.n, n, err, tc.want)
		}
	}
	// A write over the bad sectors clears them.
	w := openFile(t, fs.Path("a"), os.O_WRONLY)
	if _, err := w.WriteAt(make([]byte, 1024), 10*512); err != nil {
		t.Fatal(err)
	}
	if n, err := unix.Pread(fd, buf[:1024], 10*512); n != 1024 || err != nil {
		t.Errorf("read after the clearing write: %d, %v", n, err)
	}
	// A write that fails fails whole.
	d.SetBad(21, 1)
	if n, err := unix.Pwrite(int(w.Fd()), make([]byte, 600), 20*512); !errors.Is(err, syscall.EIO) {
		t.Errorf("write over part of a bad sector: %d, %v; want EIO", n, err)
	}
	return d
}

func TestReadOnly(t *testing.T) {
	fs := mount(t, Options{})
	d := add(t, fs, "ro", Attr{Size: 1 << 20, ReadOnly: true})
	if _, err := os.OpenFile(fs.Path("ro"), os.O_RDWR, 0); !errors.Is(err, syscall.EROFS) {
		t.Errorf("open for writing: %v, want EROFS", err)
	}
	r := openFile(t, fs.Path("ro"), os.O_RDONLY)
	if _, err := r.ReadAt(make([]byte, 512), 0); err != nil {
		t.Errorf("read: %v", err)
	}
	// The plumbing may open it for writing; its writes are refused too.
	in, err := fs.OpenInternal("ro", os.O_RDWR)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if _, err := in.WriteAt([]byte("x"), 0); !errors.Is(err, syscall.EROFS) {
		t.Errorf("internal write: %v, want EROFS", err)
	}
	if err := fs.SetReadOnly("ro", false); err != nil {
		t.Fatal(err)
	}
	w := openFile(t, fs.Path("ro"), os.O_RDWR)
	if _, err := w.WriteAt([]byte("x"), 0); err != nil {
		t.Errorf("write once read-write: %v", err)
	}
	if err := fs.SetReadOnly("ro", true); err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt([]byte("y"), 0); !errors.Is(err, syscall.EROFS) {
		t.Errorf("write on an open file after SetReadOnly: %v, want EROFS", err)
	}
	if err := unix.Fallocate(int(w.Fd()), unix.FALLOC_FL_ZERO_RANGE, 0, 512); !errors.Is(err, syscall.EROFS) {
		t.Errorf("fallocate on a read-only device: %v, want EROFS", err)
	}
	if c := d.Counts(); c.Writes != 1 || c.Zeroes != 0 {
		t.Errorf("counts %+v: one write should have reached the device", c)
	}
}

func TestFsyncAndSyncWrites(t *testing.T) {
	fs := mount(t, Options{})
	d := add(t, fs, "a", Attr{Size: 1 << 20})
	f := openFile(t, fs.Path("a"), os.O_RDWR)
	if _, err := f.WriteAt([]byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	before := d.Counts()
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if c := d.Counts(); c.Flushes != before.Flushes+1 {
		t.Errorf("fsync: %d flushes, want %d", c.Flushes, before.Flushes+1)
	}
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		t.Fatal(err)
	}
	// O_DSYNC and RWF_DSYNC writes are FUA writes.
	s := openFile(t, fs.Path("a"), os.O_RDWR|unix.O_DSYNC)
	before = d.Counts()
	if _, err := s.WriteAt([]byte("y"), 512); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Pwritev2(int(f.Fd()), [][]byte{[]byte("z")}, 1024, unix.RWF_DSYNC); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("plain"), 2048); err != nil {
		t.Fatal(err)
	}
	if c := d.Counts(); c.FUAWrites != before.FUAWrites+2 || c.Writes != before.Writes+3 {
		t.Errorf("after two sync writes and a plain one: %+v (before %+v)", c, before)
	}
}

func TestFallocate(t *testing.T) {
	fs := mount(t, Options{})
	d := add(t, fs, "a", Attr{Size: 1 << 20})
	f := openFile(t, fs.Path("a"), os.O_RDWR)
	fd := int(f.Fd())
	fill := func() {
		t.Helper()
		if _, err := d.File().WriteAt(bytes.Repeat([]byte{0xff}, 1<<20), 0); err != nil {
			t.Fatal(err)
		}
	}
	zeroAt := func(off, n int64) bool {
		got := make([]byte, n)
		if _, err := f.ReadAt(got, off); err != nil {
			t.Fatal(err)
		}
		return bytes.Equal(got, make([]byte, n))
	}

	// Zero range: WriteZeroes, which clears the bad sectors it covers.
	fill()
	d.SetBad(16, 1)
	if err := unix.Fallocate(fd, unix.FALLOC_FL_ZERO_RANGE|unix.FALLOC_FL_KEEP_SIZE, 4096, 8192); err != nil {
		t.Fatal(err)
	}
	if off, n := d.LastZero(); off != 4096 || n != 8192 {
		t.Errorf("WriteZeroes(%d, %d), want (4096, 8192)", off, n)
	}
	if len(d.Bad()) != 0 || !zeroAt(4096, 8192) || zeroAt(0, 4096) {
		t.Errorf("after zero range: bad %v, zeros where they should be: %v", d.Bad(), zeroAt(4096, 8192))
	}
	// Punch: zeros, then the Discard hint.
	fill()
	c0 := d.Counts()
	if err := unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 65536, 4096); err != nil {
		t.Fatal(err)
	}
	c1 := d.Counts()
	if c1.Zeroes != c0.Zeroes+1 || c1.Discards != c0.Discards+1 || !zeroAt(65536, 4096) {
		t.Errorf("punch: %+v -> %+v, zeros %v", c0, c1, zeroAt(65536, 4096))
	}
	if off, n := d.LastDiscard(); off != 65536 || n != 4096 {
		t.Errorf("Discard(%d, %d)", off, n)
	}
	// Cut at the end with KEEP_SIZE; ENOSPC without.
	if err := unix.Fallocate(fd, unix.FALLOC_FL_ZERO_RANGE|unix.FALLOC_FL_KEEP_SIZE, 1<<20-512, 4096); err != nil {
		t.Errorf("zero range across the end, keep size: %v", err)
	} else if off, n := d.LastZero(); off != 1<<20-512 || n != 512 {
		t.Errorf("WriteZeroes(%d, %d), want cut at the end", off, n)
	}
	for _, tc := range []struct {
		name      string
		mode      uint32
		off, size int64
		want      error
	}{
		{"zero past the end", unix.FALLOC_FL_ZERO_RANGE, 1<<20 - 512, 4096, syscall.ENOSPC},
		{"allocate inside", 0, 0, 1 << 20, nil},
		{"allocate past the end", 0, 0, 2 << 20, syscall.ENOSPC},
		{"allocate past the end, keep size", unix.FALLOC_FL_KEEP_SIZE, 0, 2 << 20, nil},
		{"collapse", unix.FALLOC_FL_COLLAPSE_RANGE, 0, 4096, syscall.EOPNOTSUPP},
		{"insert", unix.FALLOC_FL_INSERT_RANGE, 0, 4096, syscall.EOPNOTSUPP},
	} {
		c0 := d.Counts()
		err := unix.Fallocate(fd, tc.mode, tc.off, tc.size)
		if !errors.Is(err, tc.want) && !(tc.want == nil && err == nil) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if c := d.Counts(); c.Zeroes != c0.Zeroes || c.Discards != c0.Discards {
			t.Errorf("%s reached the device: %+v", tc.name, c)
		}
	}
	if st := stat(t, fs.Path("a")); st.Size != 1<<20 {
		t.Errorf("size %d after fallocate calls", st.Size)
	}
}

// Suspended I/O waits; resume releases it; a signal to the waiting process
// ends its wait.
func TestSuspend(t *testing.T) {
	fs := mount(t, Options{})
	d := add(t, fs, "a", Attr{Size: 1 << 20})
	f := openFile(t, fs.Path("a"), os.O_RDWR)
	d.Suspend()
	done := make(chan error, 1)
	go func() {
		_, err := f.WriteAt([]byte("waited"), 0)
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("a write to a suspended device returned: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	d.Resume()
	if err := <-done; err != nil {
		t.Fatalf("write after resume: %v", err)
	}
	got := make([]byte, 6)
	d.File().ReadAt(got, 0)
	if string(got) != "waited" {
		t.Errorf("device has %q", got)
	}

	testenv.NeedCommand(t, "dd")
	d.Suspend()
	defer d.Resume()
	cmd := exec.Command("dd", "if="+fs.Path("a"), "of=/dev/null", "bs=512", "count=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		t.Fatalf("dd of a suspended device exited: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	// A killed process waits for the server to answer its request: it ends
	// only because the interrupt ends the wait in the device.
	cmd.Process.Kill()
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("a killed reader of a suspended device did not exit")
	}
}

// No page cache, so no shared mapping (FUSE refuses one on a direct-I/O
// file); a private one is a copy.
func TestMmap(t *testing.T) {
	fs := mount(t, Options{})
	add(t, fs, "a", Attr{Size: 1 << 20})
	f := openFile(t, fs.Path("a"), os.O_RDWR)
	if m, err := unix.Mmap(int(f.Fd()), 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); !errors.Is(err, syscall.ENODEV) {
		if err == nil {
			unix.Munmap(m)
		}
		t.Errorf("shared writable mmap: %v, want ENODEV", err)
	}
	if m, err := unix.Mmap(int(f.Fd()), 0, 4096, unix.PROT_READ, unix.MAP_SHARED); !errors.Is(err, syscall.ENODEV) {
		if err == nil {
			unix.Munmap(m)
		}
		t.Errorf("shared read-only mmap: %v, want ENODEV", err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, 4096, unix.PROT_READ, unix.MAP_PRIVATE)
	if err != nil {
		t.Fatalf("private mmap: %v", err)
	}
	unix.Munmap(m)
}
