package stack_test

// The estimate of I/O through compiled maps made before they were wired
// into the I/O path: a prototype of the fast path (the gate, one load of
// the published map, one lookup per piece, the leaf's own ReadAt with its
// checks, the EndIO hooks of the piece once per request) against
// Device.ReadAt (today-*: since the wiring, the real compiled path; dax's
// I/O benchmarks compare it with the per-level walk) and a plain memcpy
// from the leaves' mappings, on the stack of dax's I/O benchmarks:
//
//	top:     0 2N linear mid 0
//	mid:     0 2N striped 2 128 bottom0 0 bottom1 0      (64 KiB chunks)
//	bottomK: 0 N linear leafK 0                           (two 128 MiB files)
//
//	go test ./stack -run '^$' -bench 'CompiledIO' -benchtime 2s -count 3

import (
	"fmt"
	"github.com/daxstack/daxstack/internal/testenv"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/daxstack/daxstack/dax"
	"github.com/daxstack/daxstack/stack"
)

const (
	ioLeafBytes = 128 << 20
	ioChunk     = 64 << 10
)

type ioStack struct {
	top    *stack.Device
	leaves [2]stack.Leaf                  // the two leaves, for reads straight from them
	pub    atomic.Pointer[stack.Compiled] // top's published map
	gate   protoGate
	maps   [2][]byte // the leaves' files, mapped again by the test for the memcpy baseline
	size   int64
}

var (
	ioOnce sync.Once
	ioS    *ioStack
	ioErr  error
)

func ioBenchStack(b *testing.B) *ioStack {
	ioOnce.Do(func() { ioS, ioErr = newIOStack() })
	if ioErr != nil {
		b.Fatal(ioErr)
	}
	return ioS
}

func newIOStack() (*ioStack, error) {
	dir := os.TempDir()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		dir = "/dev/shm"
	}
	s := &ioStack{size: 2 * ioLeafBytes}
	var refs [2]string
	for k := range 2 {
		f, err := os.CreateTemp(dir, "compiledio*.img")
		if err != nil {
			return nil, err
		}
		defer os.Remove(f.Name()) // the mappings keep the files
		refs[k] = f.Name()
		fill := make([]byte, 1<<20)
		for i := range fill {
			fill[i] = byte(i*7 + k)
		}
		for at := int64(0); at < ioLeafBytes; at += int64(len(fill)) {
			if _, err := f.WriteAt(fill, at); err != nil {
				return nil, err
			}
		}
		m, err := syscall.Mmap(int(f.Fd()), 0, ioLeafBytes, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
		f.Close()
		if err != nil {
			return nil, err
		}
		s.maps[k] = m
	}
	o := &dax.Opener{}
	p := stack.NewPool(func(ref string) (stack.Leaf, error) {
		l, err := o.Open(ref)
		if err != nil {
			return nil, err
		}
		return l, nil
	})
	n := ioLeafBytes / 512
	for _, tb := range []struct{ name, text string }{
		{"bottom0", fmt.Sprintf("0 %d linear %s 0", n, refs[0])},
		{"bottom1", fmt.Sprintf("0 %d linear %s 0", n, refs[1])},
		{"mid", fmt.Sprintf("0 %d striped 2 %d bottom0 0 bottom1 0", 2*n, ioChunk/512)},
		{"top", fmt.Sprintf("0 %d linear mid 0", 2*n)},
	} {
		d, err := p.Create(tb.name, "")
		if err == nil {
			err = p.LoadText(d, tb.text, stack.SourceInline)
		}
		if err == nil {
			err = p.Resume(d)
		}
		if err != nil {
			return nil, err
		}
		s.top = d
	}
	for k := range 2 {
		d, err := p.Lookup(refs[k])
		if err != nil {
			return nil, err
		}
		s.leaves[k] = d.Leaf()
	}
	maps := stack.NewCompiledMaps()
	maps.Update(s.top)
	s.pub.Store(maps.Get(s.top))
	// Fault every page in, through both mappings.
	sum := 0
	buf := make([]byte, 1<<20)
	for o := int64(0); o < s.size; o += int64(len(buf)) {
		if _, err := s.top.ReadAt(buf, o); err != nil {
			return nil, err
		}
		sum += int(buf[0])
	}
	for k := range 2 {
		for i := 0; i < len(s.maps[k]); i += 4096 {
			sum += int(s.maps[k][i])
		}
	}
	runtime.KeepAlive(sum)
	return s, nil
}

// protoGate is the gate's enter and exit (stack's gate is internal): a
// counter in one of several padded shards chosen by the goroutine's stack.
type protoGate struct {
	gen atomic.Uint32
	_   [60]byte
	cnt [2][16]struct {
		n atomic.Int64
		_ [56]byte
	}
}

func (g *protoGate) enter() (uint32, uint32) {
	var x byte
	h := uint32((uint64(uintptr(unsafe.Pointer(&x))>>12) * 0x9e3779b97f4a7c15) >> 32)
	gen, sh := g.gen.Load()&1, h%16
	g.cnt[gen][sh].n.Add(1)
	return gen, sh
}

func (g *protoGate) exit(gen, sh uint32) { g.cnt[gen][sh].n.Add(-1) }

// request is what the prototype keeps per request (the walker will have
// its own): the Bio handed to EndIO hooks, reused.
type request struct{ bio stack.Bio }

// readCompiled is the prototype fast path: a read of buf at byte off of
// top through its published map.
func (s *ioStack) readCompiled(rq *request, buf []byte, off int64) (int, error) {
	return s.readProto(rq, buf, off, true)
}

// readProto is readCompiled, with the EndIO hooks called or not (to tell
// their cost).
func (s *ioStack) readProto(rq *request, buf []byte, off int64, endIO bool) (int, error) {
	gen, sh := s.gate.enter()
	c := s.pub.Load()
	done := 0
	var hooks uint32
	for done < len(buf) {
		pos := uint64(off) + uint64(done)
		sector, intra := pos/stack.SectorSize, pos%stack.SectorSize
		p := c.Lookup(sector)
		if p.Kind() != stack.PlaceLeaf {
			s.gate.exit(gen, sh)
			return done, fmt.Errorf("prototype: %v piece at %d", p.Kind(), sector)
		}
		if done == 0 {
			hooks = p.Hooks()
		}
		n := min(uint64(len(buf)-done), p.Run*stack.SectorSize-intra)
		m, err := p.Leaf().Leaf().ReadAt(buf[done:done+int(n)], int64(p.Sector*stack.SectorSize+intra))
		done += m
		if err != nil {
			s.gate.exit(gen, sh)
			return done, err
		}
	}
	// Once per request, the EndIO of the levels that watch outcomes (the
	// stripe): the request as it reached that level.
	if hooks != 0 && endIO {
		hs := c.Hooks(hooks)
		for i := range hs {
			h := &hs[i]
			at := c.HookSector(uint64(off)/stack.SectorSize, *h)
			b := &rq.bio
			b.Op, b.Pos, b.Len, b.Data = stack.OpRead, (at-h.Segment.Begin)*stack.SectorSize+uint64(off)%stack.SectorSize, uint64(len(buf)), buf
			h.Target.EndIO(b, nil)
		}
	}
	s.gate.exit(gen, sh)
	return done, nil
}

// leafTop reads top bytes [o, o+len(buf)) with the leaves' own ReadAt,
// chunk by chunk: what the leaf's checks cost without any stack.
func (s *ioStack) leafTop(buf []byte, o int64) {
	for done := int64(0); done < int64(len(buf)); {
		at := o + done
		n := min(int64(len(buf))-done, ioChunk-at%ioChunk)
		c := at / ioChunk
		if _, err := s.leaves[c%2].ReadAt(buf[done:done+n], (c/2)*ioChunk+at%ioChunk); err != nil {
			panic(err)
		}
		done += n
	}
}

// memcpyTop copies top bytes [o, o+len(buf)) straight from the leaves'
// mappings, chunk by chunk: the baseline.
func (s *ioStack) memcpyTop(buf []byte, o int64) {
	for done := int64(0); done < int64(len(buf)); {
		at := o + done
		n := min(int64(len(buf))-done, ioChunk-at%ioChunk)
		c := at / ioChunk
		lo := (c/2)*ioChunk + at%ioChunk
		copy(buf[done:done+n], s.maps[c%2][lo:lo+n])
		done += n
	}
}

// BenchmarkCompiledIOHotRead4KiB reads the same eight 4 KiB blocks again
// and again (data and metadata in cache): what is left over memcpy is the
// path's CPU cost. compiled-ns/op is the prototype, today-ns/op today's
// ReadAt, memcpy-ns/op the copy and leaf-ns/op the leaves' own ReadAt
// (their checks and fault guard, no stack), each timed in alternating
// batches; endio-ns is what the prototype's EndIO hook (the stripe's, once
// per request) costs.
func BenchmarkCompiledIOHotRead4KiB(b *testing.B) {
	s := ioBenchStack(b)
	buf := make([]byte, 4096)
	rq := &request{}
	runs := []func(i int){
		func(i int) { mustIO(b)(s.readCompiled(rq, buf, int64(i%8)*4096)) },
		func(i int) { mustIO(b)(s.top.ReadAt(buf, int64(i%8)*4096)) },
		func(i int) { s.memcpyTop(buf, int64(i%8)*4096) },
		func(i int) { s.leafTop(buf, int64(i%8)*4096) },
		func(i int) { mustIO(b)(s.readProto(rq, buf, int64(i%8)*4096, false)) },
	}
	alternate(b, runs, 4096, 256)
}

// BenchmarkCompiledIORandRead4KiB reads 4 KiB blocks at random places from
// GOMAXPROCS goroutines, each alternating batches of the prototype,
// today's ReadAt and memcpy at random places; the figures are per read,
// in each reader's own CPU time.
func BenchmarkCompiledIORandRead4KiB(b *testing.B) {
	s := ioBenchStack(b)
	blocks := uint64(s.size / 4096)
	var seed atomic.Uint64
	var tot [3]atomic.Int64
	var ops atomic.Int64
	b.SetBytes(4096)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		r := rand.New(rand.NewPCG(seed.Add(1), 99))
		buf := make([]byte, 4096)
		rq := &request{}
		var t [3]time.Duration
		var n int64
		for more := true; more; {
			k := 0
			t0 := testenv.ThreadTime()
			for ; k < 64; k++ {
				if more = pb.Next(); !more {
					break
				}
				mustIO(b)(s.readCompiled(rq, buf, int64(r.Uint64N(blocks))*4096))
			}
			t1 := testenv.ThreadTime()
			for range k {
				mustIO(b)(s.top.ReadAt(buf, int64(r.Uint64N(blocks))*4096))
			}
			t2 := testenv.ThreadTime()
			for range k {
				s.memcpyTop(buf, int64(r.Uint64N(blocks))*4096)
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
	per := func(i int) float64 { return float64(tot[i].Load()) / float64(ops.Load()) }
	report(b, per(0), per(1), per(2))
}

// BenchmarkCompiledIOSeqRead1MiB reads top in consecutive 1 MiB blocks
// (16 pieces each), alternating batches of the prototype, today's ReadAt,
// memcpy and the leaves' own ReadAt (the ceiling of any path through the
// leaves), and the prototype without its EndIO hook.
func BenchmarkCompiledIOSeqRead1MiB(b *testing.B) {
	s := ioBenchStack(b)
	const block = 1 << 20
	blocks := int(s.size / block)
	buf := make([]byte, block)
	rq := &request{}
	// Each works on its own quarter of the device, so none finds
	// another's data in cache.
	at := func(i, quarter int) int64 { return int64((i + quarter*blocks/4) % blocks * block) }
	runs := []func(i int){
		func(i int) { mustIO(b)(s.readCompiled(rq, buf, at(i, 0))) },
		func(i int) { mustIO(b)(s.top.ReadAt(buf, at(i, 1))) },
		func(i int) { s.memcpyTop(buf, at(i, 2)) },
		func(i int) { s.leafTop(buf, at(i, 3)) },
		func(i int) { mustIO(b)(s.readProto(rq, buf, at(i+blocks/8, 0), false)) }, // half a quarter away
	}
	alternate(b, runs, block, 8)
}

// alternate runs the three in alternating batches for b.N operations each
// and reports them, each in the thread's CPU time (ns/op is then the three
// together, in wall time).
func alternate(b *testing.B, runs []func(int), bytes int64, batch int) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	t := make([]time.Duration, len(runs))
	b.SetBytes(bytes)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += batch {
		n := min(batch, b.N-i)
		for k, run := range runs {
			t0 := testenv.ThreadTime()
			for j := range n {
				run(i + j)
			}
			t[k] += testenv.ThreadTime() - t0
		}
	}
	b.StopTimer()
	per := func(k int) float64 { return float64(t[k].Nanoseconds()) / float64(b.N) }
	report(b, per(0), per(1), per(2))
	if len(runs) > 4 {
		b.ReportMetric(per(3), "leaf-ns/op")
		b.ReportMetric(per(0)-per(3), "compiled-over-leaf-ns")
		b.ReportMetric(per(0)-per(4), "endio-ns")
	}
}

func report(b *testing.B, proto, today, memcpy float64) {
	b.ReportMetric(proto, "compiled-ns/op")
	b.ReportMetric(today, "today-ns/op")
	b.ReportMetric(memcpy, "memcpy-ns/op")
	b.ReportMetric(memcpy/proto, "compiled-x-of-memcpy")
	b.ReportMetric(memcpy/today, "today-x-of-memcpy")
	b.ReportMetric(proto-memcpy, "compiled-path-ns")
	b.ReportMetric(today-memcpy, "today-path-ns")
}

func mustIO(b *testing.B) func(int, error) {
	return func(_ int, err error) {
		if err != nil {
			b.Fatal(err)
		}
	}
}
