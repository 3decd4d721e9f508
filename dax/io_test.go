package dax_test

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"syscall"
	"testing"

	"github.com/daxstack/daxstack/dax"
	"github.com/daxstack/daxstack/extent"
)

// openFile opens a new file leaf of size bytes filled with fill.
func openFile(t testing.TB, size int64, fill byte, o *dax.Opener) *dax.Leaf {
	t.Helper()
	if o == nil {
		o = &dax.Opener{}
	}
	l, err := o.Open(tempFile(t, t.TempDir(), size, fill))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func randBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b9))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestFileReadWrite(t *testing.T) {
	const size = 64 << 10
	l := openFile(t, size, 0, nil)
	data := randBytes(size, 1)
	// Odd offsets and lengths: the leaf is byte-addressable.
	for at := 0; at < size; {
		n := min(size-at, 1+int(data[at])*37)
		if m, err := l.WriteAt(data[at:at+n], int64(at)); m != n || err != nil {
			t.Fatalf("WriteAt(%d bytes at %d) = %d, %v", n, at, m, err)
		}
		at += n
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	onDisk, err := os.ReadFile(l.Path())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(onDisk, data) {
		t.Fatal("file content differs from what was written through the leaf")
	}
	cases := []struct {
		name    string
		off     int64
		n       int
		wantN   int
		wantErr error
	}{
		{"inside", 1000, 3000, 3000, nil},
		{"to the end", size - 512, 512, 512, nil},
		{"across the end", size - 100, 512, 100, io.EOF},
		{"at the end", size, 10, 0, io.EOF},
		{"past the end", size + 4096, 10, 0, io.EOF},
		{"empty at the end", size, 0, 0, nil},
		{"negative", -1, 10, 0, syscall.EINVAL},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			buf := make([]byte, c.n)
			n, err := l.ReadAt(buf, c.off)
			if n != c.wantN || !errors.Is(err, c.wantErr) || (c.wantErr == nil && err != nil) {
				t.Fatalf("ReadAt(%d, %d) = %d, %v; want %d, %v", c.n, c.off, n, err, c.wantN, c.wantErr)
			}
			if n > 0 && !bytes.Equal(buf[:n], data[c.off:c.off+int64(n)]) {
				t.Fatal("wrong bytes")
			}
		})
	}
	t.Run("write across the end", func(t *testing.T) {
		n, err := l.WriteAt(make([]byte, 300), size-100)
		if n != 100 || !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("WriteAt across the end = %d, %v; want 100, ENOSPC", n, err)
		}
	})
}

// A file truncated under the mapping makes the copy fault: the leaf turns
// the SIGBUS into an error naming the sectors past its new end instead of
// crashing (size_test.go goes further).
func TestTruncatedFileFaults(t *testing.T) {
	l := openFile(t, 64<<10, 'x', nil)
	buf := make([]byte, 16<<10)
	if _, err := l.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(l.Path(), 20<<10); err != nil {
		t.Fatal(err)
	}
	n, err := l.ReadAt(buf, 16<<10)
	var te *dax.TruncatedError
	if !errors.As(err, &te) || !errors.Is(err, syscall.EIO) || te.Leaf != l.Name() {
		t.Fatalf("read over the truncated part: %d, %v; want a *TruncatedError matching EIO", n, err)
	}
	// The page that still has data was copied; the rest is past the end.
	if n != 4<<10 || te.Bad != (extent.Extent{Start: 40, Len: 24}) || te.Now != 40 || te.Size != 128 ||
		!bytes.Equal(buf[:n], bytes.Repeat([]byte{'x'}, n)) {
		t.Errorf("read %d bytes, %+v; want 4096 bytes and sectors 40+24 past the end of 40", n, te)
	}
	if n, err := l.WriteAt(buf, 32<<10); !errors.As(err, &te) || n != 0 {
		t.Errorf("write over the truncated part: %d, %v; want a *TruncatedError", n, err)
	}
}

func TestLostAndClosed(t *testing.T) {
	l := openFile(t, 8<<10, 'a', nil)
	buf := make([]byte, 512)
	l.SetLost(true)
	if _, err := l.ReadAt(buf, 0); !errors.Is(err, syscall.ENXIO) || !errors.Is(err, dax.ErrLost) {
		t.Errorf("read of a lost leaf: %v, want ENXIO", err)
	}
	if _, err := l.WriteAt(buf, 0); !errors.Is(err, syscall.ENXIO) {
		t.Errorf("write to a lost leaf: %v, want ENXIO", err)
	}
	if l.Size() != 16 {
		t.Errorf("lost leaf size %d, want 16", l.Size())
	}
	l.SetLost(false)
	if n, err := l.ReadAt(buf, 0); n != 512 || err != nil || buf[0] != 'a' {
		t.Errorf("read after coming back: %d, %v", n, err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := l.ReadAt(buf, 0); !errors.Is(err, dax.ErrClosed) {
		t.Errorf("read after Close: %v", err)
	}
}

// Close waits for I/O in flight and later I/O fails cleanly, without
// touching the unmapped memory.
func TestCloseDuringIO(t *testing.T) {
	for range 20 {
		l := openFile(t, 1<<20, 'c', nil)
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, 64<<10)
				for i := 0; ; i++ {
					var err error
					if g%2 == 0 {
						_, err = l.ReadAt(buf, int64(i%16)*(64<<10))
					} else {
						_, err = l.WriteAt(buf, int64(i%16)*(64<<10))
					}
					if errors.Is(err, dax.ErrClosed) {
						return
					}
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
}

func TestConcurrentFileIO(t *testing.T) {
	const block = 4096
	const blocks = 64
	l := openFile(t, block*blocks, 0, nil)
	var wg sync.WaitGroup
	// Each writer owns every 4th block and fills it with its own byte;
	// readers check that every block holds a single byte value (writers
	// write whole blocks of one value, so a torn block can only mix the
	// writer's two values).
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := range 50 {
				v := byte(w*2 + round%2 + 1)
				buf := bytes.Repeat([]byte{v}, block)
				for b := w; b < blocks; b += 4 {
					if _, err := l.WriteAt(buf, int64(b*block)); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, block*blocks)
			for range 50 {
				if _, err := l.ReadAt(buf, 0); err != nil {
					t.Error(err)
					return
				}
				for b := range blocks {
					w := b % 4
					for _, c := range buf[b*block : (b+1)*block] {
						if c != 0 && c != byte(w*2+1) && c != byte(w*2+2) {
							t.Errorf("block %d holds %d, not a value of writer %d", b, c, w)
							return
						}
					}
				}
			}
		}()
	}
	wg.Wait()
	buf := make([]byte, block*blocks)
	if _, err := l.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	for b := range blocks {
		if want := byte((b%4)*2 + 2); !bytes.Equal(buf[b*block:(b+1)*block], bytes.Repeat([]byte{want}, block)) {
			t.Fatalf("block %d does not hold the last round's %d", b, want)
		}
	}
}

// poisonLog records OnPoison calls.
type poisonLog struct {
	mu     sync.Mutex
	events []string
}

func (p *poisonLog) hook(l *dax.Leaf, added, cleared extent.Set) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events = append(p.events, "added "+added.String()+" cleared "+cleared.String())
}

func (p *poisonLog) take() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.events
	p.events = nil
	return e
}

func TestEmulatedPoison(t *testing.T) {
	var log poisonLog
	o := &dax.Opener{OnPoison: log.hook}
	const size = 32 << 10
	l := openFile(t, size, 0, o)
	data := randBytes(size, 2)
	if _, err := l.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	bad := extent.Of(extent.Extent{Start: 10, Len: 3}, extent.Extent{Start: 40, Len: 1})
	if err := l.Inject(bad); err != nil {
		t.Fatal(err)
	}
	if got := log.take(); len(got) != 1 || got[0] != "added {10+3 40+1} cleared {}" {
		t.Errorf("OnPoison after Inject: %q", got)
	}
	if !l.BadBlocks().Equal(bad) {
		t.Fatalf("BadBlocks = %v, want %v", l.BadBlocks(), bad)
	}
	if err := l.Inject(extent.Of(extent.Extent{Start: 64, Len: 1})); !errors.Is(err, dax.ErrRange) {
		t.Errorf("Inject past the end: %v", err)
	}

	reads := []struct {
		name    string
		off, n  int64
		wantN   int64
		wantBad extent.Extent // zero: no error
	}{
		{"up to the bad sector", 0, 10 * 512, 10 * 512, extent.Extent{}},
		{"from after it", 13 * 512, 512, 512, extent.Extent{}},
		{"last byte before", 10*512 - 1, 1, 1, extent.Extent{}},
		{"first byte after", 13 * 512, 1, 1, extent.Extent{}},
		{"into the bad sectors", 9 * 512, 1024, 512, extent.Extent{Start: 10, Len: 1}},
		{"across them", 5*512 + 7, 20 * 512, 5*512 - 7, extent.Extent{Start: 10, Len: 3}},
		{"one byte inside", 11*512 + 3, 1, 0, extent.Extent{Start: 11, Len: 1}},
		{"from the middle", 12 * 512, 4096, 0, extent.Extent{Start: 12, Len: 1}},
		{"the second range", 38 * 512, 4096, 1024, extent.Extent{Start: 40, Len: 1}},
	}
	for _, c := range reads {
		t.Run("read "+c.name, func(t *testing.T) {
			buf := make([]byte, c.n)
			n, err := l.ReadAt(buf, c.off)
			if c.wantBad == (extent.Extent{}) {
				if err != nil || int64(n) != c.wantN {
					t.Fatalf("ReadAt = %d, %v; want %d, nil", n, err, c.wantN)
				}
			} else {
				var pe *dax.PoisonError
				if !errors.As(err, &pe) || !errors.Is(err, syscall.EIO) || pe.Leaf != l.Name() || pe.Bad != c.wantBad || int64(n) != c.wantN {
					t.Fatalf("ReadAt = %d, %v; want %d and poison at %v", n, err, c.wantN, c.wantBad)
				}
			}
			if !bytes.Equal(buf[:n], data[c.off:c.off+int64(n)]) {
				t.Fatal("wrong bytes before the error")
			}
		})
	}

	t.Run("partial write refused", func(t *testing.T) {
		junk := bytes.Repeat([]byte{0xee}, 1000)
		n, err := l.WriteAt(junk, 10*512+100) // covers 10 in part, 11 whole, 12 in part
		var pe *dax.PoisonError
		if n != 0 || !errors.As(err, &pe) || pe.Bad != (extent.Extent{Start: 10, Len: 1}) {
			t.Fatalf("WriteAt = %d, %v; want 0 and poison at 10+1", n, err)
		}
		if !l.BadBlocks().Equal(bad) || len(log.take()) != 0 {
			t.Fatalf("a refused write changed the poison: %v", l.BadBlocks())
		}
		buf := make([]byte, 512)
		if _, err := l.ReadAt(buf, 9*512); err != nil || !bytes.Equal(buf, data[9*512:10*512]) {
			t.Fatalf("a refused write changed the data: %v", err)
		}
	})
	t.Run("whole write clears", func(t *testing.T) {
		fresh := bytes.Repeat([]byte{0x5a}, 3*512+24)
		n, err := l.WriteAt(fresh, 9*512+500) // sector 9 in part (good), 10..12 whole, 13 in part (good)
		if n != len(fresh) || err != nil {
			t.Fatalf("WriteAt = %d, %v", n, err)
		}
		if got := log.take(); len(got) != 1 || got[0] != "added {} cleared {10+3}" {
			t.Errorf("OnPoison after the clearing write: %q", got)
		}
		if want := extent.Of(extent.Extent{Start: 40, Len: 1}); !l.BadBlocks().Equal(want) {
			t.Errorf("BadBlocks = %v, want %v", l.BadBlocks(), want)
		}
		buf := make([]byte, 5*512)
		if _, err := l.ReadAt(buf, 9*512); err != nil {
			t.Fatal(err)
		}
		want := append(append(append([]byte{}, data[9*512:9*512+500]...), fresh...), data[13*512+12:14*512]...)
		if !bytes.Equal(buf, want) {
			t.Fatal("wrong data after the clearing write")
		}
	})
	t.Run("clear and restore", func(t *testing.T) {
		if err := l.Clear(extent.Of(extent.Extent{Start: 30, Len: 20})); err != nil {
			t.Fatal(err)
		}
		if got := log.take(); len(got) != 1 || got[0] != "added {} cleared {40+1}" {
			t.Errorf("OnPoison after Clear: %q", got)
		}
		if err := l.Clear(extent.Of(extent.Extent{Start: 30, Len: 20})); err != nil || len(log.take()) != 0 {
			t.Errorf("clearing good sectors: %v, or it was reported", err)
		}
		buf := make([]byte, 512)
		if _, err := l.ReadAt(buf, 40*512); err != nil || !bytes.Equal(buf, data[40*512:41*512]) {
			t.Errorf("an emulated clear lost the data under it: %v", err)
		}
		saved := extent.Of(extent.Extent{Start: 1, Len: 2})
		l.SetPoison(saved)
		if !l.BadBlocks().Equal(saved) || len(log.take()) != 0 {
			t.Errorf("SetPoison: %v, or it was reported", l.BadBlocks())
		}
		if _, err := l.ReadAt(make([]byte, 2048), 0); !errors.Is(err, syscall.EIO) {
			t.Errorf("read over restored poison: %v", err)
		}
	})
}
