package dax

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// testdata/smaps.txt is two mappings of a real smaps (this machine's
// locale files) followed by what the kernel shows for a device-dax
// mapping with MAP_SYNC ("sf"), a file on a -o dax filesystem mapped
// without it (a path with spaces), and the vsyscall page.
func TestParseSmapsFlags(t *testing.T) {
	b, err := os.ReadFile("testdata/smaps.txt")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		addr  uintptr
		found bool
		flags string
	}{
		{0x7f1c2a000000, true, "rd wr sh mr mw me ms sf hg"},
		{0x7f1c6a000000, true, "rd wr sh mr mw me ms hg"},
		{0xffffffffff600000, true, "ex"},
		{0x7f1c2a001000, false, ""}, // inside a mapping, not its start
		{0x1c2a000000, false, ""},
	}
	for _, c := range cases {
		flags, found, err := parseSmapsFlags(strings.NewReader(string(b)), c.addr)
		if err != nil || found != c.found || strings.Join(flags, " ") != c.flags {
			t.Errorf("%#x: %q %v %v; want %q %v", c.addr, flags, found, err, c.flags, c.found)
		}
	}
	// A header line longer than any buffer is skipped whole.
	long := "7f00-7f01 rw-s 0 0:0 0 /" + strings.Repeat("x", 200<<10) + "\nVmFlags: sf\n7f02-7f03 rw-s 0 0:0 0 /y\nVmFlags: rd\n"
	if flags, found, _ := parseSmapsFlags(strings.NewReader(long), 0x7f02); !found || !slices.Equal(flags, []string{"rd"}) {
		t.Errorf("after a long line: %q %v", flags, found)
	}
	if _, found, _ := parseSmapsFlags(strings.NewReader(long), 0x7f00); found {
		t.Error("the flags of a mapping whose header was cut were taken")
	}
}

// TestVMFlagsOfRealMapping reads this process's smaps for a mapping it
// just made: shared, readable, writable, and no MAP_SYNC (a file on the
// test's file system, which is not DAX).
func TestVMFlagsOfRealMapping(t *testing.T) {
	path := t.TempDir() + "/leaf.img"
	if err := os.WriteFile(path, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	data, err := unix.Mmap(fd, 0, 1<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(data)
	flags, ok := vmFlagsOf(uintptr(unsafe.Pointer(&data[0])))
	if !ok {
		t.Skip("no /proc/self/smaps")
	}
	for _, want := range []string{"rd", "wr", "sh"} {
		if !slices.Contains(flags, want) {
			t.Errorf("VmFlags %q lack %q", flags, want)
		}
	}
	if slices.Contains(flags, "sf") {
		t.Errorf("VmFlags %q say MAP_SYNC for a page-cache mapping", flags)
	}
	if a, v := classify(KindFile, flags, ok, false, false); a != AccessPageCache || !v {
		t.Errorf("classify: %s %v", a, v)
	}
}

func FuzzParseSmapsFlags(f *testing.F) {
	if b, err := os.ReadFile("testdata/smaps.txt"); err == nil {
		f.Add(b, uint64(0x7f1c2a000000))
	}
	f.Add([]byte("0-1 r 0 0 0\nVmFlags: sf\n"), uint64(0))
	f.Add([]byte("-\n-1 \nVmFlags:\n"), uint64(1))
	f.Fuzz(func(t *testing.T, b []byte, addr uint64) {
		flags, found, err := parseSmapsFlags(strings.NewReader(string(b)), uintptr(addr))
		if err != nil {
			t.Fatalf("error reading from memory: %v", err)
		}
		if !found && flags != nil {
			t.Fatalf("flags %q without a mapping", flags)
		}
		for _, f := range flags {
			if f == "" || strings.ContainsAny(f, " \t\n") {
				t.Fatalf("flag %q", f)
			}
		}
	})
}

func TestClassify(t *testing.T) {
	cases := []struct {
		kind                    string
		flags                   []string
		have, mappedSync, inode bool
		access                  string
		verified                bool
	}{
		{KindDevdax, []string{"rd", "wr", "sh", "sf", "hg"}, true, true, false, AccessDAXSync, true},
		{KindFile, []string{"rd", "wr", "sh", "sf"}, true, true, true, AccessDAXSync, true},
		{KindFile, []string{"rd", "wr", "sh", "hg"}, true, false, true, AccessDAX, true},
		{KindDevdax, []string{"rd", "wr", "sh"}, true, false, false, AccessDAX, true},
		{KindPmem, []string{"rd", "wr", "sh"}, true, false, false, AccessPageCache, true},
		{KindFile, []string{"rd", "wr", "sh"}, true, false, false, AccessPageCache, true},
		// The kernel says no MAP_SYNC although mmap took the flag: the
		// kernel is believed.
		{KindFile, []string{"rd", "wr", "sh"}, true, true, true, AccessDAX, true},
		// No smaps: what mmap and statx said, unverified.
		{KindFile, nil, false, true, true, AccessDAXSync, false},
		{KindFile, nil, false, false, true, AccessDAX, false},
		{KindBlock, nil, false, false, false, AccessPageCache, false},
	}
	for _, c := range cases {
		a, v := classify(c.kind, c.flags, c.have, c.mappedSync, c.inode)
		if a != c.access || v != c.verified {
			t.Errorf("classify(%s, %q, %v, %v, %v) = %s %v; want %s %v", c.kind, c.flags, c.have, c.mappedSync, c.inode, a, v, c.access, c.verified)
		}
	}
}

// BenchmarkAccessCheck measures the one read of smaps a mapping costs to
// say how it is used, against what the same first I/O costs anyway:
// open, mmap and munmap of the file (a 1 GiB sparse file: the mapping's
// size does not matter to either), measured in the same run.
//
//	go test ./dax -run '^$' -bench AccessCheck -count 3
func BenchmarkAccessCheck(b *testing.B) {
	path := b.TempDir() + "/leaf.img"
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.Truncate(path, 1<<30); err != nil {
		b.Fatal(err)
	}
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(fd)
	data, err := unix.Mmap(fd, 0, 1<<30, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Munmap(data)
	addr := uintptr(unsafe.Pointer(&data[0]))
	if _, ok := vmFlagsOf(addr); !ok {
		b.Skip("no smaps")
	}
	b.ResetTimer()
	for range b.N {
		if _, ok := vmFlagsOf(addr); !ok {
			b.Fatal("mapping not found")
		}
	}
	b.StopTimer()
	check := b.Elapsed() / time.Duration(b.N)
	start := time.Now()
	n := max(b.N, 100)
	for range n {
		fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			b.Fatal(err)
		}
		d, err := unix.Mmap(fd, 0, 1<<30, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			b.Fatal(err)
		}
		unix.Munmap(d)
		unix.Close(fd)
	}
	base := time.Since(start) / time.Duration(n)
	b.ReportMetric(float64(base.Nanoseconds()), "open+mmap-ns")
	b.ReportMetric(float64(check)/float64(base), "x-open+mmap")
}
