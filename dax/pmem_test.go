package dax

// A pmem device whose kernel keeps a badblocks list, faked: a fake sysfs
// tree names a real loop device "pmem7" and gives it a badblocks file,
// and a node made with mknod in a temporary DevRoot points at the loop
// device. The loop device has no bad sectors of its own, so the test can
// see every byte the leaf moves, and by which path (traceIO): the pages
// holding a listed bad sector must never be touched through the page-cache
// mapping, as a real pmem device would fail the whole page.

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/internal/testenv"
)

type fakePmem struct {
	sys, dev  string // roots
	file      string // the loop device's backing file
	data      []byte // what the test wrote to it
	devno     string
	badblocks string // the fake sysfs badblocks file
}

func newFakePmem(t *testing.T, sectors int, bad string) *fakePmem {
	t.Helper()
	testenv.NeedRoot(t)
	dir := t.TempDir()
	f := &fakePmem{sys: filepath.Join(dir, "sys"), dev: filepath.Join(dir, "dev"), file: filepath.Join(dir, "backing.img")}
	var b bytes.Buffer
	for k := range sectors {
		b.WriteString(strings.Repeat(fmt.Sprintf("P%07d", k), 64))
	}
	f.data = b.Bytes()
	if err := os.WriteFile(f.file, f.data, 0o644); err != nil {
		t.Fatal(err)
	}
	node := NewLoop(t, f.file)
	ma, mi := Devno(t, node)
	f.devno = fmt.Sprintf("%d:%d", ma, mi)
	f.badblocks = filepath.Join(f.sys, "block", "pmem7", "badblocks")
	WriteTree(t, f.sys, map[string]string{
		"dev/block/" + f.devno + "/uevent":  fmt.Sprintf("MAJOR=%d\nMINOR=%d\nDEVNAME=pmem7\nDEVTYPE=disk\nDISKSEQ=4242\n", ma, mi),
		"dev/block/" + f.devno + "/size":    fmt.Sprint(sectors),
		"block/pmem7/badblocks":             bad,
		"block/pmem7/device/uuid":           "c0ffee00-0000-4000-8000-000000000007",
		"dev/block/" + f.devno + "/diskseq": "4242",
	})
	if err := os.MkdirAll(f.dev, 0o755); err != nil {
		t.Fatal(err)
	}
	Mknod(t, filepath.Join(f.dev, "pmem7"), unix.S_IFBLK, ma, mi)
	return f
}

// backing reads the loop device's backing file, bypassing the leaf.
func (f *fakePmem) backing(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(f.file)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// moves records traceIO calls.
type moves struct {
	mu  sync.Mutex
	log []string
	raw [][3]int64 // how (0 mmap, 1 direct), off, n
}

func watchMoves(t *testing.T) *moves {
	mv := &moves{}
	traceIO = func(how string, off, n int64) {
		mv.mu.Lock()
		defer mv.mu.Unlock()
		mv.log = append(mv.log, fmt.Sprintf("%s %d+%d", how, off, n))
		k := int64(0)
		if how == "direct" {
			k = 1
		}
		mv.raw = append(mv.raw, [3]int64{k, off, n})
	}
	t.Cleanup(func() { traceIO = nil })
	return mv
}

func (mv *moves) take() ([]string, [][3]int64) {
	mv.mu.Lock()
	defer mv.mu.Unlock()
	l, r := mv.log, mv.raw
	mv.log, mv.raw = nil, nil
	return l, r
}

// checkNoMmapOn fails if a mapping copy touched a page holding a sector of
// bad.
func checkNoMmapOn(t *testing.T, raw [][3]int64, bad extent.Set) {
	t.Helper()
	for _, r := range raw {
		if r[0] != 0 {
			continue
		}
		plo, phi := r[1]/pageSize*pageSize, (r[1]+r[2]+pageSize-1)/pageSize*pageSize
		if bad.Overlaps(extent.Extent{Start: uint64(plo) / 512, Len: uint64(phi-plo) / 512}) {
			t.Errorf("mmap copy of bytes %d+%d touches a page with a bad sector of %v", r[1], r[2], bad)
		}
	}
}

func TestFakePmemSysfsPoison(t *testing.T) {
	f := newFakePmem(t, 2048, "40 2\n9 1\n")
	var events []string
	o := &Opener{SysfsRoot: f.sys, DevRoot: f.dev, OnPoison: func(l *Leaf, added, cleared extent.Set) {
		events = append(events, fmt.Sprintf("%s added %v cleared %v", l.Name(), added, cleared))
	}}
	l, err := o.Open(f.devno)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.Kind() != KindPmem || l.Name() != "pmem7" || l.Path() != filepath.Join(f.dev, "pmem7") || l.Ref() != f.devno ||
		l.PoisonSource() != SourceSysfs || l.Size() != 2048 {
		t.Fatalf("leaf %s %s %s %s %s size %d", l.Kind(), l.Name(), l.Path(), l.Ref(), l.PoisonSource(), l.Size())
	}
	if id := l.Identity(); id.UUID != "c0ffee00-0000-4000-8000-000000000007" || id.DiskSeq != 4242 || id.Loop {
		t.Errorf("identity %+v", id)
	}
	bad := extent.Of(extent.Extent{Start: 9, Len: 1}, extent.Extent{Start: 40, Len: 2})
	if !l.BadBlocks().Equal(bad) {
		t.Fatalf("BadBlocks = %v, want %v", l.BadBlocks(), bad)
	}
	// The same device opened by its node in DevRoot is the same leaf.
	if byPath, err := o.Open(filepath.Join(f.dev, "pmem7")); err != nil || byPath.ID() != l.ID() || byPath.Kind() != KindPmem {
		t.Fatalf("by path: %v", err)
	} else {
		byPath.Close()
	}
	mv := watchMoves(t)

	reads := []struct {
		name    string
		off, n  int64
		wantN   int64
		wantBad extent.Extent
		direct  bool // some bytes must come through O_DIRECT
	}{
		{"clean pages", 2 * 4096, 3 * 4096, 3 * 4096, extent.Extent{}, false},
		{"up to the bad sector", 0, 9 * 512, 9 * 512, extent.Extent{}, true},
		{"rest of its page", 10 * 512, 6 * 512, 6 * 512, extent.Extent{}, true},
		{"one byte after it", 10 * 512, 1, 1, extent.Extent{}, true},
		{"over it", 100, 64 << 10, 9*512 - 100, extent.Extent{Start: 9, Len: 1}, true},
		{"page 4, before 40+2's page", 32 * 512, 8 * 512, 8 * 512, extent.Extent{}, false},
		{"rest of 40+2's page", 42 * 512, 6 * 512, 6 * 512, extent.Extent{}, true},
		{"pages 5 and 6, starting in bad 40+2's page", 42*512 + 1, 4096, 4096, extent.Extent{}, true},
		{"into 40+2 from a clean page", 38 * 512, 4 * 512, 2 * 512, extent.Extent{Start: 40, Len: 2}, false},
	}
	for _, c := range reads {
		t.Run("read "+c.name, func(t *testing.T) {
			buf := make([]byte, c.n)
			n, err := l.ReadAt(buf, c.off)
			if c.wantBad == (extent.Extent{}) {
				if err != nil || int64(n) != c.wantN {
					t.Fatalf("ReadAt = %d, %v; want %d", n, err, c.wantN)
				}
			} else {
				var pe *PoisonError
				if !errors.As(err, &pe) || pe.Bad != c.wantBad || pe.Leaf != "pmem7" || int64(n) != c.wantN {
					t.Fatalf("ReadAt = %d, %v; want %d and poison %v", n, err, c.wantN, c.wantBad)
				}
			}
			if !bytes.Equal(buf[:n], f.data[c.off:c.off+int64(n)]) {
				t.Fatal("wrong bytes")
			}
			log, raw := mv.take()
			checkNoMmapOn(t, raw, bad)
			direct := false
			for _, r := range raw {
				direct = direct || r[0] == 1
			}
			if direct != c.direct {
				t.Errorf("O_DIRECT used: %v, want %v (%q)", direct, c.direct, log)
			}
		})
	}

	t.Run("inject", func(t *testing.T) {
		if err := l.Inject(extent.Of(extent.Extent{Start: 100, Len: 4})); err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(f.badblocks)
		if string(got) != "40 2\n9 1\n100 4\n" {
			t.Errorf("badblocks file after Inject: %q", got)
		}
		bad = bad.Union(extent.Of(extent.Extent{Start: 100, Len: 4}))
		if !l.BadBlocks().Equal(bad) {
			t.Errorf("BadBlocks = %v, want %v", l.BadBlocks(), bad)
		}
		if len(events) != 1 || events[0] != "pmem7 added {100+4} cleared {}" {
			t.Errorf("OnPoison: %q", events)
		}
		events = nil
		if _, err := l.ReadAt(make([]byte, 512), 101*512); !errors.Is(err, syscall.EIO) {
			t.Errorf("read of an injected sector: %v", err)
		}
	})

	t.Run("partial write refused", func(t *testing.T) {
		n, err := l.WriteAt(bytes.Repeat([]byte{'Z'}, 700), 39*512+100)
		var pe *PoisonError
		if n != 0 || !errors.As(err, &pe) || pe.Bad != (extent.Extent{Start: 40, Len: 1}) {
			t.Fatalf("WriteAt = %d, %v", n, err)
		}
		if l.Sync() != nil || !bytes.Equal(f.backing(t), f.data) {
			t.Fatal("a refused write reached the device")
		}
		mv.take()
	})

	t.Run("write over a bad sector", func(t *testing.T) {
		fresh := bytes.Repeat([]byte("new."), 3*128)
		// Sectors 8..10: 9 is covered whole; the write goes to the device
		// with O_DIRECT, so the driver would clear it.
		n, err := l.WriteAt(fresh, 8*512)
		_, raw := mv.take()
		checkNoMmapOn(t, raw, bad)
		// The fake kernel did not clear it: the leaf says so.
		var pe *PoisonError
		if n != len(fresh) || !errors.As(err, &pe) || pe.Bad != (extent.Extent{Start: 9, Len: 1}) {
			t.Fatalf("WriteAt = %d, %v; want all written and sector 9 still bad", n, err)
		}
		if err := l.Sync(); err != nil {
			t.Fatal(err)
		}
		want := append(append(append([]byte{}, f.data[:8*512]...), fresh...), f.data[11*512:]...)
		if !bytes.Equal(f.backing(t), want) {
			t.Fatal("the device does not hold the write")
		}
		f.data = want
		if len(events) != 0 {
			t.Errorf("OnPoison with nothing cleared: %q", events)
		}
		// The kernel clears it: the next look at the list sees it.
		if err := os.WriteFile(f.badblocks, []byte("40 2\n100 4\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		bad = extent.Of(extent.Extent{Start: 40, Len: 2}, extent.Extent{Start: 100, Len: 4})
		if !l.BadBlocks().Equal(bad) || len(events) != 0 {
			t.Errorf("BadBlocks = %v (events %q), want %v", l.BadBlocks(), events, bad)
		}
		buf := make([]byte, 4096)
		if _, err := l.ReadAt(buf, 8*512); err != nil || !bytes.Equal(buf, f.data[8*512:16*512]) {
			t.Errorf("read after the clear: %v", err)
		}
	})

	t.Run("clear", func(t *testing.T) {
		err := l.Clear(extent.Of(extent.Extent{Start: 38, Len: 6}))
		if !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), "still bad") {
			t.Errorf("Clear on a fake kernel that clears nothing: %v", err)
		}
		got := f.backing(t)
		for s := 38; s < 44; s++ {
			zero := s == 40 || s == 41
			isZero := bytes.Equal(got[s*512:(s+1)*512], make([]byte, 512))
			if isZero != zero || (!zero && !bytes.Equal(got[s*512:(s+1)*512], f.data[s*512:(s+1)*512])) {
				t.Errorf("sector %d: zeroed %v, want %v", s, isZero, zero)
			}
		}
		if len(events) != 0 {
			t.Errorf("OnPoison: %q", events)
		}
	})
}

func TestFakeDevdax(t *testing.T) {
	testenv.NeedRoot(t)
	dir := t.TempDir()
	sys, dev := filepath.Join(dir, "sys"), filepath.Join(dir, "dev")
	const minor = 217 // no such dax device: opening the node fails
	dd := "devices/platform/ACPI0012:00/ndbus0/region5/dax5.0/dax5.1"
	// The device lies at 0x1_0020_0000 in region 5, which starts at
	// 0x1_0000_0000: device sector 0 is region sector 4096. A second
	// mapping puts device bytes from 4 MiB at region bytes 64 MiB.
	WriteTree(t, sys, map[string]string{
		"dev/char/252:217/uevent":    "MAJOR=252\nMINOR=217\nDEVNAME=dax5.1\n",
		"dev/char/252:217/subsystem": "->../../../class/dax",
		"class/dax/.keep":            "",
		"bus/dax/devices/dax5.1":     "->../../../" + dd,
		dd + "/size":                 fmt.Sprint(8 << 20),
		dd + "/align":                fmt.Sprint(2 << 20),
		dd + "/mapping0/start":       "0x100200000",
		dd + "/mapping0/end":         "0x1005fffff",
		dd + "/mapping0/page_offset": "0x0",
		dd + "/mapping1/start":       "0x104000000",
		dd + "/mapping1/end":         "0x1043fffff",
		dd + "/mapping1/page_offset": fmt.Sprintf("%#x", (4<<20)/pageSize),
		"devices/platform/ACPI0012:00/ndbus0/region5/dax5.0/uuid": "dddddddd-0000-4000-8000-000000000005",
		"bus/nd/devices/region5":                                  "->../../../devices/platform/ACPI0012:00/ndbus0/region5",
		"devices/platform/ACPI0012:00/ndbus0/region5/resource":    "0x100000000",
		"devices/platform/ACPI0012:00/ndbus0/region5/badblocks":   "10 2\n4100 3\n131072 8\n135168 1\n200000 5\n",
	})
	if err := os.MkdirAll(dev, 0o755); err != nil {
		t.Fatal(err)
	}
	Mknod(t, filepath.Join(dev, "dax5.1"), unix.S_IFCHR, 252, minor)
	o := &Opener{SysfsRoot: sys, DevRoot: dev}
	l, err := o.Open(filepath.Join(dev, "dax5.1"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.Kind() != KindDevdax || l.ID() != "chr:252:217" || l.Name() != "dax5.1" || l.Ref() != filepath.Join(dev, "dax5.1") ||
		l.Size() != 16384 || l.PoisonSource() != SourceSysfs || l.Identity().UUID != "dddddddd-0000-4000-8000-000000000005" {
		t.Fatalf("leaf %s %s %s %s size %d %s %+v", l.Kind(), l.ID(), l.Name(), l.Ref(), l.Size(), l.PoisonSource(), l.Identity())
	}
	// Region sectors 4100+3 are device sectors 4+3; region 131072 (64 MiB)
	// is device sector 8192 (4 MiB); 10+2 and 200000+5 lie outside.
	want := extent.Of(extent.Extent{Start: 4, Len: 3}, extent.Extent{Start: 8192, Len: 8}, extent.Extent{Start: 12288, Len: 1})
	if got := l.BadBlocks(); !got.Equal(want) {
		t.Errorf("BadBlocks = %v, want %v", got, want)
	}
	if err := l.Inject(extent.Of(extent.Extent{Start: 1, Len: 1})); !errors.Is(err, ErrKernelList) {
		t.Errorf("Inject on device-dax: %v", err)
	}
	if err := l.Clear(want); !errors.Is(err, ErrKernelList) && !errors.Is(err, syscall.ENXIO) {
		t.Errorf("Clear on device-dax: %v", err)
	}
	if _, err := l.ReadAt(make([]byte, 512), 0); !errors.Is(err, syscall.ENXIO) {
		t.Errorf("read of a dax node with no device: %v, want ENXIO", err)
	}

	// A character device of another subsystem is refused.
	WriteTree(t, sys, map[string]string{"dev/char/1:3/subsystem": "->../../../class/mem"})
	Mknod(t, filepath.Join(dev, "null"), unix.S_IFCHR, 1, 3)
	if l, err := o.Open(filepath.Join(dev, "null")); !errors.Is(err, ErrUnsupported) {
		if l != nil {
			l.Close()
		}
		t.Errorf("Open of a mem device: %v", err)
	}
}
