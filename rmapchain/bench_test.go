package rmapchain_test

// Benchmarks of the reverse map. Each reports its ratio to a baseline
// measured in the same run (see BENCHMARKS.md for the figures):
//
//	go test ./rmapchain -run '^$' -bench . -benchtime 2s

import (
	"fmt"
	"github.com/daxstack/daxstack/internal/testenv"
	"math/rand/v2"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/rmapchain"
	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/stack/stacktest"
)

// rmapLevels is a stack of three mapped devices (bottom, mid, top), each a
// table of n linear segments over the device below, bottom over one sparse
// leaf. Every level is a random partition of the level below into pieces
// of 32 to 96 sectors laid out in a random order, so every sector of the
// leaf is used exactly once at each level and segment boundaries never
// line up between levels.
type rmapLevels struct {
	p     *stack.Pool
	leaf  *stack.Dev
	devs  []*stack.Device
	g     *stack.Graph
	size  uint64
	srcs  []map[*stack.Dev]extent.Set // random 8-sector leaf extents
	areas [][]stack.Area              // per level, every segment's area, for the scan baseline
	begin [][]uint64                  // per level, every segment's first sector
	segs  [][]*stack.Segment
}

func newRmapLevels(tb testing.TB, n int) *rmapLevels {
	tb.Helper()
	rng := rand.New(rand.NewPCG(uint64(n), 5))
	rl := &rmapLevels{size: uint64(n) * 64}
	leaf := stacktest.NewMemLeaf("/bench/leaf", "leaf", rl.size, true)
	rl.p = stack.NewPool(stacktest.Opener(leaf))
	below := leaf.Ref()
	for _, name := range []string{"bottom", "mid", "top"} {
		var cuts []uint64
		for i := 1; i < n; i++ {
			cuts = append(cuts, uint64(i)*64-32+rng.Uint64N(33))
		}
		sort.Slice(cuts, func(i, j int) bool { return cuts[i] < cuts[j] })
		var pieces [][2]uint64
		at := uint64(0)
		for _, c := range append(cuts, rl.size) {
			pieces = append(pieces, [2]uint64{at, c - at})
			at = c
		}
		rng.Shuffle(len(pieces), func(i, j int) { pieces[i], pieces[j] = pieces[j], pieces[i] })
		var lines []string
		at = 0
		for _, pc := range pieces {
			lines = append(lines, fmt.Sprintf("%d %d linear %s %d", at, pc[1], below, pc[0]))
			at += pc[1]
		}
		d := stacktest.MustCreate(tb, rl.p, name, strings.Join(lines, "\n"))
		rl.devs = append(rl.devs, d)
		below = name
	}
	rl.leaf, _ = rl.p.Leaf(leaf.ID())
	rl.g = rl.p.Graph()
	for range 1 << 10 {
		rl.srcs = append(rl.srcs, map[*stack.Dev]extent.Set{rl.leaf: extent.Of(extent.Extent{Start: rng.Uint64N(rl.size - 8), Len: 8})})
	}
	for _, d := range rl.devs {
		var areas []stack.Area
		var begins []uint64
		var segs []*stack.Segment
		t := d.Active()
		for i := range t.Segments() {
			seg := &t.Segments()[i]
			for _, a := range seg.Target.Areas() {
				areas = append(areas, a)
				begins = append(begins, seg.Begin)
				segs = append(segs, seg)
			}
		}
		rl.areas, rl.begin, rl.segs = append(rl.areas, areas), append(rl.begin, begins), append(rl.segs, segs)
	}
	return rl
}

// scanPropagate is the baseline: the same walk as Propagate, finding the
// segments that use each level's set by scanning every segment's area
// (precomputed, so the scan itself allocates nothing).
func (rl *rmapLevels) scanPropagate(src extent.Set) extent.Set {
	cur, child := src, rl.leaf
	for lvl, d := range rl.devs {
		var runs []extent.Run
		for i, a := range rl.areas[lvl] {
			if a.Dev != child || !cur.Overlaps(extent.Extent{Start: a.Start, Len: a.Len}) {
				continue
			}
			for _, r := range rl.segs[lvl][i].Target.Rmap(child, cur).Runs() {
				r.Start += rl.begin[lvl][i]
				runs = append(runs, r)
			}
		}
		cur, child = extent.Disjoint(runs...), d.Dev()
	}
	return cur
}

var (
	rmapMu    sync.Mutex
	rmapCache = map[int]*rmapLevels{}
)

func rmapLevelsOf(b *testing.B, n int) *rmapLevels {
	rmapMu.Lock()
	defer rmapMu.Unlock()
	if rmapCache[n] == nil {
		rmapCache[n] = newRmapLevels(b, n)
	}
	return rmapCache[n]
}

// The naive enumeration takes about a second; it is measured once per
// process, as a projection to the 1 TiB leaf rather than a paired figure.
var (
	naiveOnce                           sync.Once
	naivePerChunkNs, naivePerChunkBytes float64
)

var sinkSet extent.Set
var sinkMap map[*stack.Dev]extent.Set

// BenchmarkRmap8Sectors3Levels carries an 8-sector leaf extent up to the
// top through 3 levels of 10k segments with Propagate on a cached Graph
// (the goal: at most 2 us). Baseline in the same run: the same walk
// finding each level's segments by scanning all of them.
func BenchmarkRmap8Sectors3Levels(b *testing.B) {
	rl := rmapLevelsOf(b, 10_000)
	top := rl.devs[2].Dev()
	for _, src := range rl.srcs {
		got := rmapchain.Propagate(rl.g, src, nil)[top]
		if want := rl.scanPropagate(src[rl.leaf]); !got.Equal(want) || got.Sectors() != 8 {
			b.Fatalf("Propagate gives %v, the scan %v", got, want)
		}
	}
	mask := len(rl.srcs) - 1
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		sinkMap = rmapchain.Propagate(rl.g, rl.srcs[i&mask], nil)
	}
	b.StopTimer()
	scan := testenv.Paired(b, func(i int) { sinkSet = rl.scanPropagate(rl.srcs[i&mask][rl.leaf]) })
	b.ReportMetric(scan, "scan-ns/op")
	b.ReportMetric(scan/testenv.NsPerOp(b), "x-vs-scan")
}

// BenchmarkWholeLeafLoss translates the loss of one 1 TiB leaf under a
// 4-way stripe and a linear (the stack of TestWholeLeafLossUnderStripe)
// into events (the goal: at most 1 ms and 1 MiB allocated). The baseline
// enumerates one extent per 8-sector chunk of the lost leaf, carrying each
// up with the targets' Rmap and collecting the extents; it is measured on
// the same geometry with 64 MiB leaves (16384 chunks), and its time and
// bytes per chunk are scaled to the 2^28 chunks of the 1 TiB leaf.
func BenchmarkWholeLeafLoss(b *testing.B) {
	ls := newLossStack(b)
	ls.leaves[1].SetLost(true)
	lost := ls.leafDev(b, 1)
	g := ls.p.Graph()
	delta := rmapchain.LeafBad(lost)
	if evs := rmapchain.Translate(g, rmapchain.Lost, lost, delta, time.Time{}); len(evs) != 3 || len(evs[2].Ranges.Runs()) != 3 {
		b.Fatalf("events %+v", evs)
	}

	naiveOnce.Do(func() { naivePerChunkNs, naivePerChunkBytes = naiveLossPerChunk(b, 1<<17) }) // 64 MiB leaves
	perChunkNs, perChunkBytes := naivePerChunkNs, naivePerChunkBytes
	const chunks = tibSectors / 8
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rmapchain.Translate(g, rmapchain.Lost, lost, delta, time.Time{})
	}
	b.StopTimer()
	b.ReportMetric(perChunkNs*chunks/1e6, "naive-ms/op")
	b.ReportMetric(perChunkBytes*chunks/(1<<20), "naive-MiB/op")
	b.ReportMetric(perChunkNs*chunks/testenv.NsPerOp(b), "x-vs-naive")
}

// naiveLossPerChunk builds the loss stack with leaves of leafSectors,
// enumerates the lost leaf chunk by chunk up to the top, checks the result
// against Propagate, and returns the time and bytes allocated per chunk.
func naiveLossPerChunk(b *testing.B, leafSectors uint64) (ns, bytes float64) {
	var leaves []*stacktest.MemLeaf
	for i := range 4 {
		leaves = append(leaves, stacktest.NewMemLeaf(fmt.Sprintf("/small/%d", i), fmt.Sprintf("small%d", i), leafSectors, true))
	}
	p := stack.NewPool(stacktest.Opener(leaves...))
	for _, d := range []struct{ name, table string }{
		{"s0", fmt.Sprintf("0 %d striped 4 8 /small/0 0 /small/1 0 /small/2 0 /small/3 0", 4*leafSectors)},
		{"top", fmt.Sprintf("0 %d linear s0 %d", 4*leafSectors-topOffset-500, topOffset)},
	} {
		stacktest.MustCreate(b, p, d.name, d.table)
	}
	g := p.Graph()
	lost, _ := p.Leaf(leaves[1].ID())
	top, _ := p.Device("top")
	naive := func() []extent.Extent {
		var out []extent.Extent
		for c := uint64(0); c < leafSectors; c += 8 {
			cur := map[*stack.Dev]extent.Set{lost: extent.Of(extent.Extent{Start: c, Len: 8})}
			for len(cur) > 0 {
				next := map[*stack.Dev]extent.Set{}
				for child, set := range cur {
					g.Uses(child, c, c+8, func(stack.Use) bool { return true }) // the index, as a real walk would
					for _, parent := range g.Parents(child) {
						for _, seg := range g.Table(parent).Segments() {
							r := seg.Target.Rmap(child, set)
							if r.Empty() {
								continue
							}
							r = r.Shift(int64(seg.Begin))
							if parent == top {
								for e := range r.Extents() {
									out = append(out, e)
								}
							}
							next[parent.Dev()] = next[parent.Dev()].Union(r)
						}
					}
				}
				cur = next
			}
		}
		return out
	}
	want := rmapchain.Propagate(g, map[*stack.Dev]extent.Set{lost: extent.Of(extent.Extent{Start: 0, Len: leafSectors})}, nil)[top.Dev()]
	got := naive()
	if !extent.Of(got...).Equal(want) {
		b.Fatalf("naive enumeration differs from Propagate")
	}
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	start := time.Now()
	naiveSink = naive()
	el := time.Since(start)
	runtime.ReadMemStats(&m1)
	chunks := float64(leafSectors / 8)
	return float64(el.Nanoseconds()) / chunks, float64(m1.TotalAlloc-m0.TotalAlloc) / chunks
}

// naiveSink keeps the timed naive enumeration from being optimised away.
var naiveSink []extent.Extent
