package dax_test

// Benchmarks of I/O through a three-level stack of file leaves, each
// reporting its ratio to raw memcpy from the same leaf mappings, with the
// same access pattern, measured in the same run:
//
//	go test ./dax -run '^$' -bench . -benchtime 2s -count 3
//
// The leaves are files on tmpfs (/dev/shm) when it exists, else in the
// test's temporary directory; DAX_BENCH_DIR overrides. The stack is
//
//	top:     0 2N linear mid 0
//	mid:     0 2N striped 2 128 bottom0 0 bottom1 0      (64 KiB chunks)
//	bottomK: 0 N linear leafK 0                           (K = 0, 1)
//
// so top byte o lives in leaf (o/64Ki)%2 at byte (o/64Ki/2)*64Ki + o%64Ki,
// which is where the baselines copy from.

import (
	"fmt"
	"github.com/daxstack/daxstack/internal/testenv"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/daxstack/daxstack/dax"
	"github.com/daxstack/daxstack/stack"
)

const (
	benchLeafBytes = 128 << 20 // per leaf; the stack is twice that, far beyond the L3
	benchChunk     = 64 << 10
)

type benchStack struct {
	top    *stack.Device // through compiled maps (the I/O path's default)
	levels *stack.Device // the same stack in a pool that walks it level by level
	maps   [2][]byte     // the leaves' own mappings
	size   int64         // bytes of top
	dir    string
	leaves [2]*dax.Leaf
}

var (
	benchOnce sync.Once
	benchS    *benchStack
	benchErr  error
)

func benchDir() string {
	if d := os.Getenv("DAX_BENCH_DIR"); d != "" {
		return d
	}
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		return "/dev/shm"
	}
	return os.TempDir()
}

// getBenchStack builds the stack once per process (the files are
// removed at once: the mappings keep them).
func getBenchStack(b *testing.B) *benchStack {
	benchOnce.Do(func() {
		s := &benchStack{dir: benchDir()}
		var refs [2]string
		for k := range 2 {
			f, err := os.CreateTemp(s.dir, "daxbench*.img")
			if err != nil {
				benchErr = err
				return
			}
			refs[k] = f.Name()
			fill := make([]byte, 1<<20)
			for i := range fill {
				fill[i] = byte(i*7 + k)
			}
			for at := int64(0); at < benchLeafBytes; at += int64(len(fill)) {
				if _, err := f.WriteAt(fill, at); err != nil {
					benchErr = err
					return
				}
			}
			f.Close()
		}
		o := &dax.Opener{}
		newPool := func() *stack.Pool {
			return stack.NewPool(func(ref string) (stack.Leaf, error) {
				l, err := o.Open(ref)
				if err != nil {
					return nil, err
				}
				return l, nil
			})
		}
		p, pl := newPool(), newPool()
		pl.SetCompiledMaps(false)
		n := benchLeafBytes / 512
		tables := []struct{ name, text string }{
			{"bottom0", fmt.Sprintf("0 %d linear %s 0", n, refs[0])},
			{"bottom1", fmt.Sprintf("0 %d linear %s 0", n, refs[1])},
			{"mid", fmt.Sprintf("0 %d striped 2 %d bottom0 0 bottom1 0", 2*n, benchChunk/512)},
			{"top", fmt.Sprintf("0 %d linear mid 0", 2*n)},
		}
		for _, pp := range []*stack.Pool{p, pl} {
			for _, tb := range tables {
				d, err := pp.Create(tb.name, "")
				if err == nil {
					err = pp.LoadText(d, tb.text, stack.SourceInline)
				}
				if err == nil {
					err = pp.Resume(d)
				}
				if err != nil {
					benchErr = err
					return
				}
				if pp == p {
					s.top = d
				} else {
					s.levels = d
				}
			}
		}
		if s.top.CompiledMap() == nil || s.levels.CompiledMap() != nil {
			benchErr = fmt.Errorf("compiled maps: %v in the compiled pool, %v in the other", s.top.CompiledMap() != nil, s.levels.CompiledMap() != nil)
			return
		}
		for k := range 2 {
			d, err := p.Lookup(refs[k])
			if err != nil {
				benchErr = err
				return
			}
			s.leaves[k] = d.Leaf().(*dax.Leaf)
			s.maps[k] = dax.Mapping(s.leaves[k])
		}
		s.size = 2 * benchLeafBytes
		// Fault every page in through the mappings, so neither the stack
		// nor the baseline pays first-touch faults.
		sum := 0
		for k := range 2 {
			for i := 0; i < len(s.maps[k]); i += 4096 {
				sum += int(s.maps[k][i])
			}
		}
		buf := make([]byte, 1<<20)
		for _, d := range []*stack.Device{s.top, s.levels} {
			for off := int64(0); off < s.size; off += int64(len(buf)) {
				if _, err := d.ReadAt(buf, off); err != nil {
					benchErr = err
					return
				}
				sum += int(buf[0])
			}
		}
		for k := range 2 {
			os.Remove(refs[k]) // the mappings keep them
		}
		runtime.KeepAlive(sum)
		benchS = s
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchS
}

// leafSlice returns the bytes of leaf mapping holding top bytes [o, o+n),
// n not crossing a chunk.
func (s *benchStack) leafSlice(o, n int64) []byte {
	c := o / benchChunk
	at := (c/2)*benchChunk + o%benchChunk
	return s.maps[c%2][at : at+n]
}

// memcpyTop copies top bytes [o, o+len(buf)) straight from the leaf
// mappings, chunk by chunk: the baseline.
func (s *benchStack) memcpyTop(buf []byte, o int64, write bool) {
	for done := int64(0); done < int64(len(buf)); {
		n := min(int64(len(buf))-done, benchChunk-(o+done)%benchChunk)
		if write {
			copy(s.leafSlice(o+done, n), buf[done:done+n])
		} else {
			copy(buf[done:done+n], s.leafSlice(o+done, n))
		}
		done += n
	}
}

// The baselines run interleaved with the benchmark's own operations, in
// alternating batches, and each kind is timed on its own, in the thread's
// CPU time (the machine is shared: a baseline measured a second later can
// be off by a third, and time spent descheduled is nobody's). Besides
// memcpy, each reads or writes the same stack in a pool whose compiled
// maps are off (the per-level walk, levels-*).

// BenchmarkSeqRead1MiB reads the top device in consecutive 1 MiB blocks
// (16 chunks each, 3 mapped levels). Goal: >= 0.97x memcpy. ns/op is the
// stack's read alone (wall time); the baselines' batches run with the
// timer stopped. leaf-x-of-memcpy is the leaves' own ReadAt, chunk by
// chunk, with no stack: the ceiling of any path through them.
func BenchmarkSeqRead1MiB(b *testing.B) { benchSeq(b, false) }

// BenchmarkSeqWrite1MiB writes it the same way. Goal: >= 0.97x memcpy.
func BenchmarkSeqWrite1MiB(b *testing.B) { benchSeq(b, true) }

func benchSeq(b *testing.B, write bool) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	s := getBenchStack(b)
	const block = 1 << 20
	const batch = 8
	blocks := int(s.size / block)
	buf := make([]byte, block)
	for i := range buf {
		buf[i] = byte(i)
	}
	// Each works a quarter of the device away from the others, so none
	// finds another's data in cache, and the quarters go round from batch
	// to batch (parts of the memory are faster than others).
	devOp := func(d *stack.Device, i int) {
		off := int64(i%blocks) * block
		var err error
		if write {
			_, err = d.WriteAt(buf, off)
		} else {
			_, err = d.ReadAt(buf, off)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	var t [3]time.Duration
	var leafT time.Duration
	b.SetBytes(block)
	b.ReportAllocs()
	b.ResetTimer()
	for i, round := 0, 0; i < b.N; i, round = i+batch, round+1 {
		n := min(batch, b.N-i)
		third := func(k int) int { return (k + round) % 4 * blocks / 4 }
		t0 := testenv.ThreadTime()
		for j := range n {
			devOp(s.top, i+j+third(0))
		}
		t1 := testenv.ThreadTime()
		b.StopTimer()
		for j := range n {
			devOp(s.levels, i+j+third(1))
		}
		t2 := testenv.ThreadTime()
		for j := range n {
			s.memcpyTop(buf, int64((i+j+third(2))%blocks)*block, write)
		}
		t3 := testenv.ThreadTime()
		if !write {
			for j := range n {
				s.leafTop(buf, int64((i+j+third(3))%blocks)*block)
			}
		}
		leafT += testenv.ThreadTime() - t3
		b.StartTimer()
		t[0] += t1 - t0
		t[1] += t2 - t1
		t[2] += t3 - t2
	}
	b.StopTimer()
	reportIO(b, t)
	if !write {
		b.ReportMetric(float64(t[2].Nanoseconds())/float64(leafT.Nanoseconds()), "leaf-x-of-memcpy")
	}
}

// reportIO reports the compiled path's, the per-level walk's and memcpy's
// thread CPU times per operation, and their ratios.
func reportIO(b *testing.B, t [3]time.Duration) {
	per := func(k int) float64 { return float64(t[k].Nanoseconds()) / float64(b.N) }
	b.ReportMetric(per(0), "stack-ns/op")
	b.ReportMetric(per(1), "levels-ns/op")
	b.ReportMetric(per(2), "memcpy-ns/op")
	b.ReportMetric(per(2)/per(0), "x-of-memcpy")
	b.ReportMetric(per(2)/per(1), "levels-x-of-memcpy")
}

// BenchmarkRandRead4KiB reads 4 KiB blocks at random through the stack
// from GOMAXPROCS goroutines (b.RunParallel). Goal: >= 0.90x memcpy. Each
// goroutine alternates batches of stack reads, of reads through the
// per-level walk and of memcpy from random places of the leaf mappings,
// so ns/op (wall time per iteration) covers one of each; the other
// figures are per read, in each reader's own CPU time.
func BenchmarkRandRead4KiB(b *testing.B) {
	s := getBenchStack(b)
	const block = 4096
	const batch = 64
	blocks := uint64(s.size / block)
	var seed atomic.Uint64
	var tot [3]atomic.Int64
	var ops atomic.Int64
	b.SetBytes(block)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		r := rand.New(rand.NewPCG(seed.Add(1), 99))
		buf := make([]byte, block)
		var t [3]time.Duration
		var n int64
		for more := true; more; {
			k := 0
			t0 := testenv.ThreadTime()
			for ; k < batch; k++ {
				if more = pb.Next(); !more {
					break
				}
				if _, err := s.top.ReadAt(buf, int64(r.Uint64N(blocks))*block); err != nil {
					b.Error(err)
					return
				}
			}
			t1 := testenv.ThreadTime()
			for range k {
				if _, err := s.levels.ReadAt(buf, int64(r.Uint64N(blocks))*block); err != nil {
					b.Error(err)
					return
				}
			}
			t2 := testenv.ThreadTime()
			for range k {
				s.memcpyTop(buf, int64(r.Uint64N(blocks))*block, false)
			}
			t[0] += t1 - t0
			t[1] += t2 - t1
			t[2] += testenv.ThreadTime() - t2
			n += int64(k)
		}
		for i := range t {
			tot[i].Add(t[i].Nanoseconds())
		}
		ops.Add(n)
	})
	b.StopTimer()
	var t [3]time.Duration
	for i := range t {
		t[i] = time.Duration(tot[i].Load())
	}
	b.N = int(ops.Load()) // per read, whichever goroutine made it
	reportIO(b, t)
}

// BenchmarkHotRead4KiB reads the same eight 4 KiB blocks of the top device
// over and over, so data and metadata stay in the L1 and L2 caches: what
// is left of the difference to memcpy is the CPU cost of the path (the
// compiled map's lookup, the gate, the leaf's checks and fault guard).
// path-ns/op is the stack's, levels-path-ns/op the per-level walk's in
// the same run (three levels, the gate, the leaf), and path-x-of-levels
// their ratio: the goal is <= 0.5 (the path cost halved). leaf-path-ns/op
// is what the leaves' own ReadAt costs over memcpy (their checks and fault
// guard, no stack: a floor under both paths), and stack-path-x-of-levels
// the ratio of the two paths' costs above that floor.
func BenchmarkHotRead4KiB(b *testing.B) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	s := getBenchStack(b)
	const block = 4096
	const batch = 256
	buf := make([]byte, block)
	var t [3]time.Duration
	var leafT time.Duration
	b.SetBytes(block)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += batch {
		n := min(batch, b.N-i)
		tl := testenv.ThreadTime()
		for j := range n {
			s.leafTop(buf, int64((i+j)%8)*block)
		}
		t0 := testenv.ThreadTime()
		leafT += t0 - tl
		for j := range n {
			if _, err := s.top.ReadAt(buf, int64((i+j)%8)*block); err != nil {
				b.Fatal(err)
			}
		}
		t1 := testenv.ThreadTime()
		for j := range n {
			if _, err := s.levels.ReadAt(buf, int64((i+j)%8)*block); err != nil {
				b.Fatal(err)
			}
		}
		t2 := testenv.ThreadTime()
		for j := range n {
			s.memcpyTop(buf, int64((i+j)%8)*block, false)
		}
		t3 := testenv.ThreadTime()
		t[0] += t1 - t0
		t[1] += t2 - t1
		t[2] += t3 - t2
	}
	b.StopTimer()
	per := func(k int) float64 { return float64(t[k].Nanoseconds()) / float64(b.N) }
	reportIO(b, t)
	b.ReportMetric(per(0)-per(2), "path-ns/op")
	b.ReportMetric(per(1)-per(2), "levels-path-ns/op")
	b.ReportMetric((per(0)-per(2))/(per(1)-per(2)), "path-x-of-levels")
	leaf := float64(leafT.Nanoseconds()) / float64(b.N)
	b.ReportMetric(leaf-per(2), "leaf-path-ns/op")
	b.ReportMetric((per(0)-leaf)/(per(1)-leaf), "stack-path-x-of-levels")
}

// leafTop reads top bytes [o, o+len(buf)) with the leaves' own ReadAt,
// chunk by chunk where the stripe places them: the leaf's checks without
// any stack.
func (s *benchStack) leafTop(buf []byte, o int64) {
	for done := int64(0); done < int64(len(buf)); {
		at := o + done
		n := min(int64(len(buf))-done, benchChunk-at%benchChunk)
		c := at / benchChunk
		if _, err := s.leaves[c%2].ReadAt(buf[done:done+n], (c/2)*benchChunk+at%benchChunk); err != nil {
			panic(err)
		}
		done += n
	}
}
