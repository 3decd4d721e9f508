package nbdleaf_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/nbd"
	"github.com/daxstack/daxstack/nbd/nbdtest"
	"github.com/daxstack/daxstack/nbdleaf"
)

// poisonAt checks that err is a *PoisonError whose first bad extent is
// want, and that it matches syscall.EIO.
func poisonAt(t *testing.T, what string, err error, want extent.Extent) {
	t.Helper()
	var pe *nbdleaf.PoisonError
	if !errors.As(err, &pe) || pe.Bad != want || !errors.Is(err, syscall.EIO) {
		t.Errorf("%s: %v, want a media error at sectors %v", what, err, want)
	}
}

// TestErrorFile uses nbdkit's error filter, which fails every read while
// a file exists: a read fails, the retries go down to single sectors, and
// exactly the sectors read become poison; with the file gone they still
// fail (as on pmem, until written), and a write clears them.
func TestErrorFile(t *testing.T) {
	dir := t.TempDir()
	sock, logf, trigger := filepath.Join(dir, "s"), filepath.Join(dir, "log"), filepath.Join(dir, "inject")
	startNbdkit(t, sock, "--filter=log", "--filter=error", "memory", "1M",
		"logfile="+logf, "error=EIO", "error-pread-rate=100%", "error-pread-file="+trigger)
	ev := newEvents()
	l := open(t, opener(ev, nil), unixURI(sock, ""))
	data := pattern(64<<10, 9)
	if _, err := l.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}

	if err := os.WriteFile(trigger, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 4096)
	n, err := l.ReadAt(p, 8192)
	if n != 0 {
		t.Errorf("read of failing sectors returned %d bytes", n)
	}
	poisonAt(t, "read while the file exists", err, extent.Extent{Start: 16, Len: 8})
	if got := l.BadBlocks(); !got.Equal(sectors(16, 8)) {
		t.Errorf("poison %v, want sectors 16-23", got)
	}
	if poison, _ := ev.snapshot(); fmt.Sprint(poison) != "[+{16+8}]" {
		t.Errorf("OnPoison heard %v", poison)
	}
	// Down to single sectors, each tried twice on its own.
	for s := int64(16); s < 24; s++ {
		if got := logLines(t, logf, " Read id=", "offset="+hexOff(s*512)+" count=0x200 "); len(got) < 2 {
			t.Errorf("sector %d was read alone %d times, want at least 2", s, len(got))
		}
	}

	if err := os.Remove(trigger); err != nil {
		t.Fatal(err)
	}
	before := len(logLines(t, logf, " Read id="))
	p = make([]byte, 8192)
	n, err = l.ReadAt(p, 4096) // sectors 8-15 good, then 16 bad
	if n != 4096 || !bytes.Equal(p[:n], data[4096:8192]) {
		t.Errorf("read up to the poison: %d bytes, right ones: %v", n, bytes.Equal(p[:n], data[4096:4096+n]))
	}
	poisonAt(t, "read into the poison", err, extent.Extent{Start: 16, Len: 8})
	if _, err := l.ReadAt(p[:512], 16*512+100); err == nil {
		t.Error("a bad sector read well once the server had healed: poison must last until a write")
	}
	if after := logLines(t, logf, " Read id="); len(after) != before+1 {
		t.Errorf("reads of known bad sectors reached the server: %q", after[before:])
	}

	// A write that covers a bad sector in part changes nothing.
	if _, err := l.WriteAt(make([]byte, 100), 16*512+10); err == nil {
		t.Error("a partial write over a bad sector succeeded")
	}
	if got := logLines(t, logf, " Write id=", "offset="+hexOff(16*512+10)); len(got) != 0 {
		t.Errorf("the partial write reached the server: %q", got)
	}
	// A write over whole bad sectors clears them.
	fresh := pattern(4096, 77)
	if _, err := l.WriteAt(fresh, 8192); err != nil {
		t.Fatal(err)
	}
	if got := l.BadBlocks(); !got.Empty() {
		t.Errorf("poison after the write: %v", got)
	}
	if poison, _ := ev.snapshot(); fmt.Sprint(poison) != "[+{16+8} -{16+8}]" {
		t.Errorf("OnPoison heard %v", poison)
	}
	if n, err := l.ReadAt(p[:4096], 8192); n != 4096 || err != nil || !bytes.Equal(p[:4096], fresh) {
		t.Errorf("read after clearing: %d, %v", n, err)
	}
}

// TestDdrescue uses nbdkit's ddrescue filter, which fails reads that touch
// the bad areas of a ddrescue mapfile: one read of the whole range finds
// exactly the bad sectors, and the good bytes are the file's.
func TestDdrescue(t *testing.T) {
	dir := t.TempDir()
	sock, img, mapf := filepath.Join(dir, "s"), filepath.Join(dir, "img"), filepath.Join(dir, "map")
	data := pattern(1<<20, 5)
	if err := os.WriteFile(img, data, 0o600); err != nil {
		t.Fatal(err)
	}
	// Bad: sector 128; sectors 258-260; bytes 0x30100-0x3010f (sector 384).
	mapfile := `# Mapfile. Created by a test
# current_pos  current_status  current_pass
0x00000000     +               1
#      pos        size  status
0x00000000  0x00010000  +
0x00010000  0x00000200  -
0x00010200  0x00010200  +
0x00020400  0x00000600  -
0x00020A00  0x0000F700  +
0x00030100  0x00000010  *
0x00030110  0x000CFEF0  +
`
	if err := os.WriteFile(mapf, []byte(mapfile), 0o600); err != nil {
		t.Fatal(err)
	}
	startNbdkit(t, sock, "--filter=ddrescue", "file", img, "ddrescue-mapfile="+mapf)
	ev := newEvents()
	l := open(t, opener(ev, nil), unixURI(sock, ""))

	p := make([]byte, 256<<10)
	n, err := l.ReadAt(p, 0)
	if n != 0x10000 || !bytes.Equal(p[:n], data[:n]) {
		t.Errorf("read: %d good bytes (want %d), the file's: %v", n, 0x10000, bytes.Equal(p[:n], data[:n]))
	}
	poisonAt(t, "read over the bad areas", err, extent.Extent{Start: 128, Len: 1})
	want := sectors(128, 1, 258, 3, 384, 1)
	if got := l.BadBlocks(); !got.Equal(want) {
		t.Errorf("poison %v, want %v", got, want)
	}
	// Between the bad areas the bytes are the file's.
	q := make([]byte, 258*512-129*512)
	if n, err := l.ReadAt(q, 129*512); n != len(q) || err != nil || !bytes.Equal(q, data[129*512:258*512]) {
		t.Errorf("read between bad areas: %d, %v", n, err)
	}
	// The filter serves read-only: a write is refused and poison stays.
	if _, err := l.WriteAt(make([]byte, 512), 128*512); !errors.Is(err, syscall.EROFS) {
		t.Errorf("write to a read-only export: %v", err)
	}
	if got := l.BadBlocks(); !got.Equal(want) {
		t.Errorf("poison after a refused write: %v", got)
	}
}

// flaky is a device whose reads of a range fail with EIO a given number
// of times, and whose writes into another range always fail.
type flaky struct {
	*nbdtest.Mem
	readFails         atomic.Int64
	readLo, readHi    int64
	writeBad          [][2]int64 // [lo, hi) byte ranges
	reads, writeCalls atomic.Int64
}

func (f *flaky) Handle(gone <-chan struct{}) nbd.Backend { return &flakyHandle{f.Mem.Handle(gone), f} }

type flakyHandle struct {
	nbd.Backend
	f *flaky
}

func (h *flakyHandle) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	h.f.reads.Add(1)
	if off < h.f.readHi && off+int64(len(p)) > h.f.readLo && h.f.readFails.Add(-1) >= 0 {
		return 0, syscall.EIO // the whole request, no offset: as nbdkit's filters do
	}
	return h.Backend.ReadAt(ctx, p, off)
}

func (h *flakyHandle) WriteAt(ctx context.Context, p []byte, off int64, fua bool) (int, error) {
	h.f.writeCalls.Add(1)
	for _, r := range h.f.writeBad {
		if off < r[1] && off+int64(len(p)) > r[0] {
			return 0, syscall.EIO
		}
	}
	return h.Backend.WriteAt(ctx, p, off, fua)
}

// TestCuredByRetry: a read that fails once and not again is logged, not
// recorded, and returns its data.
func TestCuredByRetry(t *testing.T) {
	f := &flaky{Mem: nbdtest.NewMem(1 << 20), readLo: 5000, readHi: 5001}
	f.readFails.Store(1)
	none := []string{}
	uri, _, _ := exportDev(t, f, nbdtest.Options{MetaContexts: none})
	ev := newEvents()
	var log logBuf
	l := open(t, opener(ev, log.logger()), uri)
	data := pattern(64<<10, 3)
	if _, err := l.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	p := make([]byte, len(data))
	if n, err := l.ReadAt(p, 0); n != len(p) || err != nil || !bytes.Equal(p, data) {
		t.Fatalf("read a retry cured: %d, %v", n, err)
	}
	if got := l.BadBlocks(); !got.Empty() {
		t.Errorf("a cured failure was recorded: %v", got)
	}
	if poison, _ := ev.snapshot(); len(poison) != 0 {
		t.Errorf("OnPoison heard %v", poison)
	}
	if !strings.Contains(log.String(), "did not come back when retried") {
		t.Errorf("the cured failure was not logged:\n%s", log.String())
	}
}

// TestExactOffsets: daxstack's server says where a read failed (an error
// offset after the good data), so the good bytes come back without being
// asked for again and the bad sectors are exact, whole ranges of them
// included. A write the server keeps failing makes its sectors poison and
// writes the rest.
func TestExactOffsets(t *testing.T) {
	f := &flaky{Mem: nbdtest.NewMem(1 << 20), writeBad: [][2]int64{{200 * 512, 202 * 512}, {230 * 512, 232 * 512}}}
	uri, _, _ := exportDev(t, f, nbdtest.Options{MetaContexts: []string{}})
	ev := newEvents()
	l := open(t, opener(ev, nil), uri)
	data := pattern(256<<10, 11)
	if _, err := l.WriteAt(data[:100<<10], 0); err != nil {
		t.Fatal(err)
	}
	f.Bad.Add(5000, 10)     // sector 9
	f.Bad.Add(70000, 2000)  // sectors 136-140
	f.Bad.Add(90112, 16384) // sectors 176-207, one per 512 bytes
	f.reads.Store(0)
	p := make([]byte, 128<<10)
	n, err := l.ReadAt(p, 0)
	if n != 9*512 || !bytes.Equal(p[:n], data[:n]) {
		t.Errorf("read: %d bytes, want %d", n, 9*512)
	}
	poisonAt(t, "read", err, extent.Extent{Start: 9, Len: 1})
	want := sectors(9, 1, 136, 5, 176, 32)
	if got := l.BadBlocks(); !got.Equal(want) {
		t.Errorf("poison %v, want %v", got, want)
	}
	// Each bad block: tried twice alone; the bisection of 256 sectors with
	// 3 bad areas is far fewer requests than one per sector.
	if r := f.reads.Load(); r > 200 {
		t.Errorf("%d reads to narrow 3 bad areas in 256 sectors", r)
	}

	// A write over sectors 192-223, which the server fails over
	// sectors 200-201: the pieces around them are written and clear the
	// bad sectors they cover; 200-201 become poison.
	ev.mu.Lock()
	ev.poison = nil
	ev.mu.Unlock()
	w := pattern(16<<10, 12)
	n, err = l.WriteAt(w, 192*512)
	if n != 8*512 {
		t.Errorf("write returned %d, want the %d bytes before the failing sectors", n, 8*512)
	}
	poisonAt(t, "write", err, extent.Extent{Start: 200, Len: 2})
	want = sectors(9, 1, 136, 5, 176, 16, 200, 2)
	if got := l.BadBlocks(); !got.Equal(want) {
		t.Errorf("poison after the write %v, want %v", got, want)
	}
	// 200-201 were bad already (the read found 176-207).
	if poison, _ := ev.snapshot(); fmt.Sprint(poison) != "[-{192+8 202+6}]" {
		t.Errorf("OnPoison heard %v", poison)
	}
	dev := f.Bytes()
	if !bytes.Equal(dev[192*512:200*512], w[:8*512]) || !bytes.Equal(dev[202*512:224*512], w[10*512:]) {
		t.Error("the pieces around the failing sectors were not written")
	}

	// A write over good sectors the server fails: they become poison.
	n, err = l.WriteAt(w, 224*512)
	if n != 6*512 {
		t.Errorf("write returned %d, want %d", n, 6*512)
	}
	poisonAt(t, "second write", err, extent.Extent{Start: 230, Len: 2})
	if poison, _ := ev.snapshot(); fmt.Sprint(poison) != "[-{192+8 202+6} +{230+2}]" {
		t.Errorf("OnPoison heard %v", poison)
	}
}

// wholeFail is a device whose reads fail whole (EIO, no offset) when they
// touch a bad byte, the way nbdkit's filters fail them.
type wholeFail struct{ *nbdtest.Mem }

func (w wholeFail) Handle(gone <-chan struct{}) nbd.Backend {
	return wholeFailHandle{w.Mem.Handle(gone), w.Mem}
}

type wholeFailHandle struct {
	nbd.Backend
	m *nbdtest.Mem
}

func (h wholeFailHandle) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if _, bad := h.m.Bad.First(off, int64(len(p))); bad {
		return 0, syscall.EIO
	}
	return h.Backend.ReadAt(ctx, p, off)
}

// TestNarrowProperty reads random ranges over random bad bytes, from a
// server that gives an exact error offset and from one that fails whole
// requests: either way the leaf returns exactly the good bytes before the
// first bad sector, and its poison is exactly the sectors of the range
// that hold a bad byte.
func TestNarrowProperty(t *testing.T) {
	for _, whole := range []bool{false, true} {
		t.Run(fmt.Sprintf("whole=%v", whole), func(t *testing.T) {
			r := rand.New(rand.NewPCG(7, uint64(len(fmt.Sprint(whole)))))
			for iter := range 25 {
				const size = 512 << 10
				m := nbdtest.NewMem(size)
				data := pattern(size, byte(iter))
				m.Handle(nil).WriteAt(context.Background(), data, 0, false)
				var dev nbdtest.Device = m
				if whole {
					dev = wholeFail{m}
				}
				uri, _, _ := exportDev(t, dev, nbdtest.Options{MetaContexts: []string{}})
				l := open(t, opener(nil, nil), uri)
				var badSectors []extent.Extent
				for range r.IntN(6) {
					off, n := r.Int64N(size-4096), 1+r.Int64N(3000)
					m.Bad.Add(off, n)
					badSectors = append(badSectors, extent.Extent{Start: uint64(off) / 512, Len: uint64(off+n+511)/512 - uint64(off)/512})
				}
				lo := r.Int64N(size - 1)
				n := 1 + r.Int64N(min(size-lo, 256<<10))
				p := make([]byte, n)
				got, err := l.ReadAt(p, lo)

				inRange := extent.Of(badSectors...).Clip(uint64(lo)/512, uint64(lo+n+511)/512)
				if inRange.Empty() {
					if err != nil || got != int(n) || !bytes.Equal(p, data[lo:lo+n]) {
						t.Fatalf("iteration %d: clean read of [%d, +%d): %d, %v", iter, lo, n, got, err)
					}
					continue
				}
				first := firstOf(inRange)
				wantN := max(0, int64(first.Start)*512-lo)
				if int64(got) != wantN || !bytes.Equal(p[:got], data[lo:lo+int64(got)]) {
					t.Fatalf("iteration %d: read of [%d, +%d) over %v: %d bytes, want %d", iter, lo, n, inRange, got, wantN)
				}
				poisonAt(t, fmt.Sprintf("iteration %d", iter), err, first)
				if bb := l.BadBlocks(); !bb.Equal(inRange) {
					t.Fatalf("iteration %d: poison %v, want %v", iter, bb, inRange)
				}
				l.Close()
			}
		})
	}
}

func firstOf(s extent.Set) extent.Extent {
	for e := range s.Extents() {
		return e
	}
	return extent.Extent{}
}
