package dax_test

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/daxstack/daxstack/dax"
	"github.com/daxstack/daxstack/stack"
)

// Two stacks share leaf A: s1 is linear over A's first half, s2 stripes
// over A's second half and B. Writers write whole blocks of one byte value
// through both (each writer its own blocks), readers read both devices
// whole, and another goroutine suspends and resumes s2 all along. A
// reader may see a block mid-write, but only ever bytes of the writer
// that owns it.
func TestConcurrentStacks(t *testing.T) {
	const half = 2048 // sectors
	ls := fileLeaves(t, &dax.Opener{}, map[string]int64{"A": 2 * half, "B": half})
	p := stack.NewPool(ls.opener)
	s1 := create(t, p, ls, "s1", fmt.Sprintf("0 %d linear <A> 0", half))
	s2 := create(t, p, ls, "s2", fmt.Sprintf("0 %d striped 2 16 <A> %d <B> 0", 2*half, half))
	ls.adopt(t, p)
	const block = 8 * 512
	type writer struct {
		dev   *stack.Device
		first int // first block; a writer owns every 4th block from it
		vals  [2]byte
	}
	var writers []writer
	for i := range 4 {
		writers = append(writers, writer{s1, i, [2]byte{byte(10 + 2*i), byte(11 + 2*i)}})
		writers = append(writers, writer{s2, i, [2]byte{byte(20 + 2*i), byte(21 + 2*i)}})
	}
	// allowed[dev][block] lists the values a block may hold.
	allowed := func(d *stack.Device, b int) []byte {
		for _, w := range writers {
			if w.dev == d && b%4 == w.first {
				return []byte{0, w.vals[0], w.vals[1]}
			}
		}
		return []byte{0}
	}
	const rounds = 30
	var wg sync.WaitGroup
	var stop atomic.Bool
	for _, w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			blocks := int(w.dev.Size() * 512 / block)
			for r := range rounds {
				buf := bytes.Repeat([]byte{w.vals[r%2]}, block)
				for b := w.first; b < blocks; b += 4 {
					if _, err := w.dev.WriteAt(buf, int64(b*block)); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	for _, d := range []*stack.Device{s1, s2, s1, s2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, d.Size()*512)
			for range rounds {
				if _, err := d.ReadAt(buf, 0); err != nil {
					t.Error(err)
					return
				}
				for b := 0; b < len(buf)/block; b++ {
					ok := allowed(d, b)
					for _, c := range buf[b*block : (b+1)*block] {
						if bytes.IndexByte(ok, c) < 0 {
							t.Errorf("%s block %d holds %d, allowed %v", d.Name(), b, c, ok)
							return
						}
					}
				}
			}
		}()
	}
	var sw sync.WaitGroup
	sw.Add(1)
	go func() {
		defer sw.Done()
		for !stop.Load() {
			if err := p.Suspend(s2); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(100 * time.Microsecond)
			if err := p.Resume(s2); err != nil {
				t.Error(err)
				return
			}
			// Give the I/O held by the suspension time to get going: a
			// device suspended again at once can hold it indefinitely (as
			// in dm, where held bios wait for a resume that lasts).
			time.Sleep(time.Millisecond)
		}
	}()
	wg.Wait()
	stop.Store(true)
	sw.Wait()
	// Every block ends with its writer's last value.
	for _, d := range []*stack.Device{s1, s2} {
		buf := make([]byte, d.Size()*512)
		if _, err := d.ReadAt(buf, 0); err != nil {
			t.Fatal(err)
		}
		for b := 0; b < len(buf)/block; b++ {
			want := allowed(d, b)[2]
			if !bytes.Equal(buf[b*block:(b+1)*block], bytes.Repeat([]byte{want}, block)) {
				t.Fatalf("%s block %d does not hold %d", d.Name(), b, want)
			}
		}
	}
}

// A table swap (Load + Resume) is atomic for I/O in flight: top stripes
// over leaf A (all 'a') and is swapped again and again to the same
// stripes over leaf B (all 'b'), while readers read 1 MiB spans, each of
// which the stack splits into 16 chunk-sized pieces. No read may see both
// letters.
func TestTableSwapAtomic(t *testing.T) {
	const sectors = 8192 // 4 MiB
	dir := t.TempDir()
	o := &dax.Opener{}
	ls := &leafSet{o: o, leaves: map[string]*dax.Leaf{}, ref: map[string]string{}, backing: map[string]string{}}
	for name, fill := range map[string]byte{"A": 'a', "B": 'b'} {
		path := tempFile(t, dir, sectors*512, fill)
		ls.ref[name], ls.backing[name] = path, path
	}
	p := stack.NewPool(ls.opener)
	tableOver := func(leaf string) string {
		return fmt.Sprintf("0 %d striped 2 128 <%s> 0 <%s> %d", sectors, leaf, leaf, sectors/2)
	}
	top := create(t, p, ls, "top", tableOver("A"))
	// Keep both leaves open in the pool whatever top uses.
	create(t, p, ls, "holdA", "0 8 linear <A> 0")
	create(t, p, ls, "holdB", "0 8 linear <B> 0")
	ls.adopt(t, p)

	var stop atomic.Bool
	var reads, swaps atomic.Int64
	var wg sync.WaitGroup
	for g := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1<<20)
			for i := 0; !stop.Load() || i < 20; i++ {
				off := int64((i*7+g*3)%24) * 128 << 10 // 128 KiB steps, spans up to the end
				if _, err := top.ReadAt(buf, off); err != nil {
					t.Error(err)
					return
				}
				if c := buf[0]; (c != 'a' && c != 'b') || bytes.IndexFunc(buf, func(r rune) bool { return byte(r) != c }) >= 0 {
					i := bytes.IndexFunc(buf, func(r rune) bool { return byte(r) != c })
					t.Errorf("read at %d saw %q then %q at byte %d", off, c, buf[i], i)
					return
				}
				reads.Add(1)
			}
		}()
	}
	for i := 0; i < 200 || reads.Load() < 100; i++ {
		text := tableOver("B")
		if i%2 == 1 {
			text = tableOver("A")
		}
		for n, r := range ls.ref {
			text = strings.ReplaceAll(text, "<"+n+">", r)
		}
		if err := p.LoadText(top, text, stack.SourceInline); err != nil {
			t.Fatal(err)
		}
		if err := p.Resume(top); err != nil {
			t.Fatal(err)
		}
		swaps.Add(1)
		if t.Failed() {
			break
		}
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d swaps, %d reads of 1 MiB", swaps.Load(), reads.Load())
}

// Suspend holds new I/O until Resume, then lets it through.
func TestSuspendHoldsIO(t *testing.T) {
	ls := fileLeaves(t, &dax.Opener{}, map[string]int64{"A": 64})
	p := stack.NewPool(ls.opener)
	top := create(t, p, ls, "top", "0 64 linear <A> 0")
	ls.adopt(t, p)
	if err := p.Suspend(top); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 2)
	go func() {
		_, err := top.WriteAt(bytes.Repeat([]byte{'w'}, 512), 0)
		done <- err
	}()
	go func() {
		_, err := top.ReadAt(make([]byte, 512), 512)
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("I/O finished on a suspended device: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	if b := ls.head(t, "A", 1); b[0] != 0 {
		t.Fatal("a write reached the leaf while the device was suspended")
	}
	if err := p.Resume(top); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("I/O still held after Resume")
		}
	}
	if b := ls.head(t, "A", 1); b[0] != 'w' {
		t.Fatal("the held write did not reach the leaf after Resume")
	}
}
