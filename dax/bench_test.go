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
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/daxstack/daxstack/dax"
	"github.com/daxstack/daxstack/internal/testenv"
	"github.com/daxstack/daxstack/stack"
)

const (
	benchLeafBytes = 128 << 20 // per leaf; the stack is twice that, far beyond the L3
	benchChunk     = 64 << 10
)

type benchStack struct {
	top    *stack.Device
	maps   [2][]byte // the leaves' own mappings
	size   int64     // bytes of top
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
		p := stack.NewPool(func(ref string) (stack.Leaf, error) {
			l, err := o.Open(ref)
			if err != nil {
				return nil, err
			}
			return l, nil
		})
		n := benchLeafBytes / 512
		tables := []struct{ name, text string }{
			{"bottom0", fmt.Sprintf("0 %d linear %s 0", n, refs[0])},
			{"bottom1", fmt.Sprintf("0 %d linear %s 0", n, refs[1])},
			{"mid", fmt.Sprintf("0 %d striped 2 %d bottom0 0 bottom1 0", 2*n, benchChunk/512)},
			{"top", fmt.Sprintf("0 %d linear mid 0", 2*n)},
		}
		for _, tb := range tables {
			d, err := p.Create(tb.name, "")
			if err == nil {
				err = p.LoadText(d, tb.text, stack.SourceInline)
			}
			if err == nil {
				err = p.Resume(d)
			}
			if err != nil {
				benchErr = err
				return
			}
			s.top = d
		}
		for k := range 2 {
			d, err := p.Lookup(refs[k])
			if err != nil {
				benchErr = err
				return
			}
			s.leaves[k] = d.Leaf().(*dax.Leaf)
			s.maps[k] = dax.Mapping(s.leaves[k])
			os.Remove(refs[k])
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
// alternating batches, and each kind is timed on its own: the machine is
// shared, and a baseline measured a second later can be off by a third.

// BenchmarkSeqRead1MiB reads the top device in consecutive 1 MiB blocks
// (16 chunks each, 3 mapped levels). Goal: >= 0.95x memcpy. ns/op is the
// stack's read alone; the memcpy batches run with the timer stopped.
func BenchmarkSeqRead1MiB(b *testing.B) { benchSeq(b, false) }

// BenchmarkSeqWrite1MiB writes it the same way. Goal: >= 0.95x memcpy.
func BenchmarkSeqWrite1MiB(b *testing.B) { benchSeq(b, true) }

func benchSeq(b *testing.B, write bool) {
	s := getBenchStack(b)
	const block = 1 << 20
	const batch = 8
	blocks := int(s.size / block)
	buf := make([]byte, block)
	for i := range buf {
		buf[i] = byte(i)
	}
	// The baseline works half the device away from the stack's blocks, so
	// neither finds the other's data in cache.
	stackOp := func(i int) {
		off := int64(i%blocks) * block
		var err error
		if write {
			_, err = s.top.WriteAt(buf, off)
		} else {
			_, err = s.top.ReadAt(buf, off)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	baseOp := func(i int) { s.memcpyTop(buf, int64((i+blocks/2)%blocks)*block, write) }
	var stackT, baseT time.Duration
	b.SetBytes(block)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += batch {
		n := min(batch, b.N-i)
		t0 := time.Now()
		for j := range n {
			stackOp(i + j)
		}
		stackT += time.Since(t0)
		b.StopTimer()
		t1 := time.Now()
		for j := range n {
			baseOp(i + j)
		}
		baseT += time.Since(t1)
		b.StartTimer()
	}
	b.StopTimer()
	stack := float64(stackT.Nanoseconds()) / float64(b.N)
	base := float64(baseT.Nanoseconds()) / float64(b.N)
	b.ReportMetric(base, "memcpy-ns/op")
	b.ReportMetric(base/stack, "x-of-memcpy")
}

// BenchmarkRandRead4KiB reads 4 KiB blocks at random through the stack
// from GOMAXPROCS goroutines (b.RunParallel). Goal: >= 0.85x memcpy. Each
// goroutine alternates batches of stack reads and of memcpy from random
// places of the leaf mappings, so ns/op (wall time per iteration) covers
// one of each; stack-ns/op and memcpy-ns/op split it by their own timings.
func BenchmarkRandRead4KiB(b *testing.B) {
	s := getBenchStack(b)
	const block = 4096
	const batch = 64
	blocks := uint64(s.size / block)
	var seed atomic.Uint64
	var stackNs, baseNs, ops atomic.Int64
	b.SetBytes(block)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := rand.New(rand.NewPCG(seed.Add(1), 99))
		buf := make([]byte, block)
		var stackT, baseT time.Duration
		var n int64
		for more := true; more; {
			k := 0
			t0 := time.Now()
			for ; k < batch; k++ {
				if more = pb.Next(); !more {
					break
				}
				if _, err := s.top.ReadAt(buf, int64(r.Uint64N(blocks))*block); err != nil {
					b.Error(err)
					return
				}
			}
			t1 := time.Now()
			for range k {
				s.memcpyTop(buf, int64(r.Uint64N(blocks))*block, false)
			}
			stackT += t1.Sub(t0)
			baseT += time.Since(t1)
			n += int64(k)
		}
		stackNs.Add(stackT.Nanoseconds())
		baseNs.Add(baseT.Nanoseconds())
		ops.Add(n)
	})
	b.StopTimer()
	procs := float64(runtime.GOMAXPROCS(0))
	stack := float64(stackNs.Load()) / float64(ops.Load()) / procs
	base := float64(baseNs.Load()) / float64(ops.Load()) / procs
	b.ReportMetric(stack, "stack-ns/op")
	b.ReportMetric(base, "memcpy-ns/op")
	b.ReportMetric(base/stack, "x-of-memcpy")
}

// BenchmarkHotRead4KiB reads the same eight 4 KiB blocks of the top device
// over and over, so data and metadata stay in the L1 and L2 caches: what
// is left of the difference to memcpy is the CPU cost of the path (three
// levels of mapping, the gate, the leaf's checks and fault guard). It has
// no goal; it tells the random-read figure's cache misses from its
// instructions.
func BenchmarkHotRead4KiB(b *testing.B) {
	s := getBenchStack(b)
	const block = 4096
	buf := make([]byte, block)
	b.SetBytes(block)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.top.ReadAt(buf, int64(i%8)*block); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	stack := testenv.NsPerOp(b)
	base := testenv.Paired(b, func(i int) { s.memcpyTop(buf, int64(i%8)*block, false) })
	b.ReportMetric(base, "memcpy-ns/op")
	b.ReportMetric(stack-base, "path-ns/op")
	b.ReportMetric(base/stack, "x-of-memcpy")
}
