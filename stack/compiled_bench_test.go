package stack_test

// Benchmarks of compiled maps, each with its baseline in the same run:
//
//	go test ./stack -run '^$' -bench 'Compiled' -benchtime 2s -count 3

import (
	"fmt"
	"github.com/daxstack/daxstack/internal/testenv"
	"math/bits"
	"runtime"
	"testing"
	"time"

	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/stack/stacktest"
)

// resolveFast follows a compiled map to a leaf the way the I/O path does
// when no step is in the way: one lookup, and one more per next piece.
func resolveFast(c *stack.Compiled, s uint64) (*stack.Dev, uint64) {
	for {
		p := c.Lookup(s)
		if p.Kind() != stack.PlaceNext {
			return p.Leaf(), p.Sector
		}
		c, s = p.Map(), p.Sector
	}
}

// BenchmarkCompiledMap3Levels resolves random top sectors of the stack of
// BenchmarkMap3Levels (3 levels of n linear segments in random order) with
// top's compiled map, against the per-level walk of that benchmark
// (Table.Find and Map at each level). Goal for n = 100k: at least 10x.
//
// The two take turns in rounds of 4096 lookups, each timed in the thread's
// CPU time (the machine is shared; see BenchmarkCompiledLayouts), and
// report compiled-ns/op, walk-ns/op and x-vs-walk. Two streams of sectors:
//
//   - queries: the 4096 random sectors of BenchmarkMap3Levels, over and
//     over (with a compiled map of 3 x 100k, they end up in the L2 cache);
//   - fresh: a new random sector every time (as I/O at random places).
func BenchmarkCompiledMap3Levels(b *testing.B) {
	benchCompiledMap3Levels(b, "")
}

// BenchmarkCompiledBucketWidths is BenchmarkCompiledMap3Levels at 3 x 100k
// with buckets 2^w average pieces wide (the map in use has w = 4).
func BenchmarkCompiledBucketWidths(b *testing.B) {
	for _, w := range []uint{2, 3, 4, 5, 6} {
		b.Run(fmt.Sprintf("w=%d", w), func(b *testing.B) {
			old := stack.SetBucketPieces(w)
			defer stack.SetBucketPieces(old)
			benchCompiledMap3Levels(b, "100000")
		})
	}
}

func benchCompiledMap3Levels(b *testing.B, only string) {
	for _, n := range []int{100_000, 10_000, 1_000} {
		if only != "" && fmt.Sprint(n) != only {
			continue
		}
		for _, fresh := range []bool{false, true} {
			name := fmt.Sprintf("segs=%d/queries", n)
			if fresh {
				name = fmt.Sprintf("segs=%d/fresh", n)
			}
			b.Run(name, func(b *testing.B) {
				bl := levelsOf(b, n)
				top := bl.devs[2]
				c := stack.Compile(top)
				q, mask := bl.queries, len(bl.queries)-1
				r := &randSectors{x: 88172645463325252, size: top.Size()}
				next := func(i int) uint64 { return q[i&mask] }
				if fresh {
					next = func(int) uint64 { return r.next() }
				}
				for i := range 1 << 14 {
					s := next(i)
					d1, s1 := resolveFind(top, s)
					if d2, s2 := resolveFast(c, s); d1 != d2 || s1 != s2 {
						b.Fatalf("sector %d: walk gives %s:%d, compiled %v:%d", s, d1.Name(), s1, d2, s2)
					}
				}
				compiled, walk := testenv.Turns(b, 1<<16,
					func(i int) { sinkDev, sinkSector = resolveFast(c, next(i)) },
					func(i int) { sinkDev, sinkSector = resolveFind(top, next(i)) })
				b.ReportMetric(compiled, "compiled-ns/op")
				b.ReportMetric(walk, "walk-ns/op")
				b.ReportMetric(walk/compiled, "x-vs-walk")
			})
		}
	}
}

// BenchmarkCompiledLayouts is how the compiled map's layout was chosen:
// the pieces of top's map (3 x 100k segments) found by each alternative
// layout at fresh random sectors, the alternatives taking turns in short
// rounds so that all see the same machine (it is shared: a figure
// measured a second later can be off by half), timed in the thread's own
// CPU time (so that time the thread spends descheduled on a loaded
// machine counts for none of them). Each reports two figures:
// <name>-ns, lookups that may overlap (throughput), and <name>-dep-ns,
// each sector depending on the previous result (the latency a piece of
// I/O waits for). ns/op is one round of all of them.
func BenchmarkCompiledLayouts(b *testing.B) {
	bl := levelsOf(b, 100_000)
	c := stack.Compile(bl.devs[2])
	alts := stack.CompiledLayouts(c)
	r := &randSectors{x: 1, size: c.Size()}
	for range 1 << 12 {
		s := r.next()
		want := alts[0].Find(s)
		for _, a := range alts[1:] {
			if got := a.Find(s); got != want {
				b.Fatalf("%s: sector %d gives %d, want %d", a.Name, s, got, want)
			}
		}
	}
	const batch = 1 << 15
	free := make([]time.Duration, len(alts))
	dep := make([]time.Duration, len(alts))
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for kk := range alts {
			k := (kk + i) % len(alts) // each round starts with another, so none always follows the same one
			a := alts[k]
			t0 := testenv.ThreadTime()
			for range batch {
				sinkSector = a.Find(r.next())
			}
			t1 := testenv.ThreadTime()
			var prev uint64
			for range batch {
				prev = a.Find(r.next() + prev&zeroMask)
			}
			sinkSector = prev
			free[k] += t1 - t0
			dep[k] += testenv.ThreadTime() - t1
		}
	}
	b.StopTimer()
	n := float64(b.N) * batch
	for k, a := range alts {
		b.ReportMetric(float64(free[k].Nanoseconds())/n, a.Name+"-ns")
		b.ReportMetric(float64(dep[k].Nanoseconds())/n, a.Name+"-dep-ns")
	}
}

// zeroMask is 0, but the compiler cannot know it: x + y&zeroMask makes x
// wait for y.
var zeroMask uint64

// heapNow returns the live heap after a collection.
func heapNow() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkCompiledBuild builds the compiled maps of the 3 x n stack
// (bottom, mid and top, each from scratch) the way an embedded process
// would after loading the tables from the store. Baseline in the same
// run: loading and resuming the same three tables into a new pool (the
// part of every embedded command that re-reads the tables). A resume that
// also builds the maps costs at most (1 + x-of-load) times today's, and
// less, since the process does more than load the tables. The two take
// turns, timed in the thread's CPU time (the collector's background work
// is left out of both). It also reports the memory of the maps and of the
// tables (the live heap they add).
func BenchmarkCompiledBuild(b *testing.B) {
	for _, n := range []int{100_000, 10_000} {
		b.Run(fmt.Sprintf("segs=%d", n), func(b *testing.B) {
			bl := levelsOf(b, n)
			texts := make([]string, 3)
			for i, d := range bl.devs {
				texts[i] = d.Active().String()
			}
			loadAll := func() *stack.Device {
				p := stack.NewPool(stacktest.Opener(bl.leaves...))
				var d *stack.Device
				for i, name := range []string{"bottom", "mid", "top"} {
					d = stacktest.MustCreate(b, p, name, texts[i])
				}
				return d
			}
			top := loadAll()
			h0 := heapNow()
			maps := stack.NewCompiledMaps()
			maps.Update(top)
			mapBytes := heapNow() - h0
			var statBytes int
			for _, d := range maps.Below(top) {
				statBytes += maps.Get(d).Stats().Bytes
			}
			h0 = heapNow()
			top2 := loadAll()
			tableBytes := heapNow() - h0
			runtime.KeepAlive(top2)
			runtime.KeepAlive(maps)
			build, load := testenv.Turns(b, 1, func(int) { stack.NewCompiledMaps().Update(top) }, func(int) { loadAll() })
			b.ReportMetric(build/1e6, "build-ms/op")
			b.ReportMetric(load/1e6, "load-ms/op")
			b.ReportMetric(build/load, "x-of-load")
			b.ReportMetric(float64(mapBytes)/1e6, "maps-MB")
			b.ReportMetric(float64(statBytes)/1e6, "maps-stats-MB")
			b.ReportMetric(float64(tableBytes)/1e6, "tables-MB")
		})
	}
}

// BenchmarkCompiledLookup times Lookup alone on the shapes the I/O
// benchmarks use, against the per-level walk in the same run:
//
//   - daxstack: top linear over mid striped 2 x 64 KiB over two linear
//     bottoms over two 128 MiB leaves (dax's I/O benchmarks; one stripe
//     piece), random 4 KiB blocks;
//   - stream-100k: the 3 x 100k stack, consecutive 4 KiB blocks (the
//     start of each piece of a sequential read).
func BenchmarkCompiledLookup(b *testing.B) {
	b.Run("daxstack", func(b *testing.B) {
		const n = 128 << 20 / 512
		l0 := stacktest.NewMemLeaf("/io/0", "io0", n, true)
		l1 := stacktest.NewMemLeaf("/io/1", "io1", n, true)
		p := stack.NewPool(stacktest.Opener(l0, l1))
		stacktest.MustCreate(b, p, "bottom0", fmt.Sprintf("0 %d linear /io/0 0", n))
		stacktest.MustCreate(b, p, "bottom1", fmt.Sprintf("0 %d linear /io/1 0", n))
		stacktest.MustCreate(b, p, "mid", fmt.Sprintf("0 %d striped 2 128 bottom0 0 bottom1 0", 2*n))
		top := stacktest.MustCreate(b, p, "top", fmt.Sprintf("0 %d linear mid 0", 2*n))
		c := stack.Compile(top)
		if st := c.Stats(); st.Pieces != 2 || st.Stripes != 1 {
			b.Fatalf("top's map: %+v", st)
		}
		r := &randSectors{x: 7, size: top.Size() / 8}
		benchLookup(b, top, c, func() uint64 { return r.next() * 8 })
	})
	b.Run("stream-100k", func(b *testing.B) {
		bl := levelsOf(b, 100_000)
		top := bl.devs[2]
		c := stack.Compile(top)
		size := top.Size() &^ 7
		var at uint64
		benchLookup(b, top, c, func() uint64 { at = (at + 8) % size; return at })
	})
}

func benchLookup(b *testing.B, top *stack.Device, c *stack.Compiled, next func() uint64) {
	for range 1 << 12 {
		s := next()
		d1, s1 := resolveFind(top, s)
		if d2, s2 := resolveFast(c, s); d1 != d2 || s1 != s2 {
			b.Fatalf("sector %d: walk gives %s:%d, compiled %v:%d", s, d1.Name(), s1, d2, s2)
		}
	}
	compiled, walk := testenv.Turns(b, 1<<16,
		func(int) { sinkDev, sinkSector = resolveFast(c, next()) },
		func(int) { sinkDev, sinkSector = resolveFind(top, next()) })
	b.ReportMetric(compiled, "compiled-ns/op")
	b.ReportMetric(walk, "walk-ns/op")
	b.ReportMetric(walk/compiled, "x-vs-walk")
}

// randSectors is a cheap stream of uniform random sectors below size
// (xorshift64*, scaled by a multiply), so that a benchmark can touch a
// structure at a new place every time instead of cycling through a few
// thousand queries that end up in the cache.
type randSectors struct{ x, size uint64 }

func (r *randSectors) next() uint64 {
	r.x ^= r.x >> 12
	r.x ^= r.x << 25
	r.x ^= r.x >> 27
	hi, _ := bits.Mul64(r.x*0x2545F4914F6CDD1D, r.size)
	return hi
}
