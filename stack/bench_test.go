package stack_test

// Benchmarks of the forward map. Each reports its ratio to a baseline
// measured in the same run (see BENCHMARKS.md for the figures):
//
//	go test ./stack -run '^$' -bench 'Map3Levels|Load100k' -benchtime 2s

import (
	"fmt"
	"github.com/daxstack/daxstack/internal/testenv"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/stack/stacktest"
	_ "github.com/daxstack/daxstack/targets/linear"
)

// BenchLevels builds a stack of three mapped devices, bottom, mid and top,
// each a table of n linear segments over the device below (bottom over
// four sparse leaves). Every level is a random partition of the level
// below into n pieces of 32 to 96 sectors (64 on average), laid out in a
// random order, so each sector of a level is used exactly once by the
// level above and segment boundaries never line up between levels.
type benchLevels struct {
	p       *stack.Pool
	leaves  []*stacktest.MemLeaf
	devs    []*stack.Device // bottom, mid, top
	size    uint64          // sectors per level
	queries []uint64        // random top sectors
}

func newBenchLevels(tb testing.TB, n int, seed uint64) *benchLevels {
	tb.Helper()
	rng := rand.New(rand.NewPCG(seed, 77))
	const avg = 64
	bl := &benchLevels{size: uint64(n) * avg}
	leafSize := bl.size / 4
	for i := range 4 {
		bl.leaves = append(bl.leaves, stacktest.NewMemLeaf(fmt.Sprintf("/bench/leaf%d", i), fmt.Sprintf("leaf%d", i), leafSize, true))
	}
	bl.p = stack.NewPool(stacktest.Opener(bl.leaves...))
	// pieces returns a random partition of [0, size) into n pieces, with
	// cuts at the given fixed points too, shuffled.
	pieces := func(fixed []uint64) [][2]uint64 {
		cuts := map[uint64]bool{}
		for _, f := range fixed {
			cuts[f] = true
		}
		// Start from even 64-sector pieces and move each inner cut by up
		// to +-32 sectors: n pieces of 32..96 sectors.
		var pts []uint64
		for i := 1; i < n; i++ {
			c := uint64(i)*avg - 32 + rng.Uint64N(33)
			pts = append(pts, c)
		}
		for f := range cuts {
			pts = append(pts, f)
		}
		sort.Slice(pts, func(i, j int) bool { return pts[i] < pts[j] })
		var out [][2]uint64
		at := uint64(0)
		for _, c := range append(pts, bl.size) {
			if c > at {
				out = append(out, [2]uint64{at, c - at})
				at = c
			}
		}
		rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
		return out
	}
	load := func(name string, lines []string) *stack.Device {
		return stacktest.MustCreate(tb, bl.p, name, strings.Join(lines, "\n"))
	}
	var lines []string
	var at uint64
	for _, pc := range pieces([]uint64{leafSize, 2 * leafSize, 3 * leafSize}) {
		leaf := pc[0] / leafSize
		lines = append(lines, fmt.Sprintf("%d %d linear %s %d", at, pc[1], bl.leaves[leaf].Ref(), pc[0]-leaf*leafSize))
		at += pc[1]
	}
	bl.devs = append(bl.devs, load("bottom", lines))
	for _, name := range []string{"mid", "top"} {
		lines, at = lines[:0], 0
		below := bl.devs[len(bl.devs)-1].Name()
		for _, pc := range pieces(nil) {
			lines = append(lines, fmt.Sprintf("%d %d linear %s %d", at, pc[1], below, pc[0]))
			at += pc[1]
		}
		bl.devs = append(bl.devs, load(name, lines))
	}
	for range 1 << 12 {
		bl.queries = append(bl.queries, rng.Uint64N(bl.size))
	}
	return bl
}

var (
	levelsMu sync.Mutex
	levels   = map[int]*benchLevels{}
)

// levelsOf returns the 3 x n-segment stack, built once per process.
func levelsOf(b *testing.B, n int) *benchLevels {
	levelsMu.Lock()
	defer levelsMu.Unlock()
	if levels[n] == nil {
		levels[n] = newBenchLevels(b, n, 1)
	}
	return levels[n]
}

// resolveFind maps sector s of d down to a leaf one level at a time with
// Table.Find (the implicit B-tree) and the target's Map. It allocates
// nothing.
func resolveFind(d *stack.Device, s uint64) (*stack.Dev, uint64) {
	dev := d.Dev()
	for md := dev.Mapped(); md != nil; md = dev.Mapped() {
		t := md.Active()
		i, _ := t.Find(s)
		seg := &t.Segments()[i]
		m, _ := seg.Target.Map(s - seg.Begin)
		dev, s = m.Dev, m.Sector
	}
	return dev, s
}

// resolveScan is the linear-scan baseline: the segment is found by walking
// the table from its start.
func resolveScan(d *stack.Device, s uint64) (*stack.Dev, uint64) {
	dev := d.Dev()
	for md := dev.Mapped(); md != nil; md = dev.Mapped() {
		segs := md.Active().Segments()
		i := 0
		for segs[i].End() <= s {
			i++
		}
		m, _ := segs[i].Target.Map(s - segs[i].Begin)
		dev, s = m.Dev, m.Sector
	}
	return dev, s
}

// highsOf returns the last sector of every segment, for the sort.Search
// baseline.
func highsOf(t *stack.Table) []uint64 {
	segs := t.Segments()
	h := make([]uint64, len(segs))
	for i := range segs {
		h[i] = segs[i].End() - 1
	}
	return h
}

// resolveSearch is the binary-search baseline: sort.Search over the
// highs of each table.
func resolveSearch(d *stack.Device, highs map[*stack.Device][]uint64, s uint64) (*stack.Dev, uint64) {
	dev := d.Dev()
	for md := dev.Mapped(); md != nil; md = dev.Mapped() {
		h := highs[md]
		i := sort.Search(len(h), func(i int) bool { return h[i] >= s })
		seg := &md.Active().Segments()[i]
		m, _ := seg.Target.Map(s - seg.Begin)
		dev, s = m.Dev, m.Sector
	}
	return dev, s
}

var sinkDev *stack.Dev
var sinkSector uint64

// BenchmarkMap3Levels resolves random sectors of top down to a leaf
// through 3 levels of n segments each with top's published compiled map
// (the I/O path's lookup: one per piece, and one more per next piece).
// The goal is for n = 100k: at least 10x the per-level walk (Table.Find
// and Map at each level, what the I/O path did before compiled maps),
// which is kept as the first baseline: walk-ns/op and x-vs-walk, the two
// taking turns in the thread's CPU time. 10k and 1k show the same with
// the tables in cache. The other baselines, in the same run, are the
// per-level walk finding each segment by a linear scan of the table, and
// by sort.Search over each table's highs (x-vs-scan and x-vs-sortsearch
// are against the compiled lookup's ns/op).
func BenchmarkMap3Levels(b *testing.B) {
	for _, n := range []int{100_000, 10_000, 1_000} {
		b.Run(fmt.Sprintf("segs=%d", n), func(b *testing.B) { benchMap3(b, n) })
	}
}

func benchMap3(b *testing.B, n int) {
	bl := levelsOf(b, n)
	top := bl.devs[2]
	highs := map[*stack.Device][]uint64{}
	for _, d := range bl.devs {
		highs[d] = highsOf(d.Active())
	}
	// The three agree on every query.
	for i, s := range bl.queries {
		d1, s1 := resolveFind(top, s)
		d2, s2 := resolveSearch(top, highs, s)
		if d1 != d2 || s1 != s2 || !d1.IsLeaf() {
			b.Fatalf("sector %d: Find gives %v:%d, sort.Search %v:%d", s, d1.Name(), s1, d2.Name(), s2)
		}
		if i < 64 {
			if d3, s3 := resolveScan(top, s); d3 != d1 || s3 != s1 {
				b.Fatalf("sector %d: Find gives %v:%d, scan %v:%d", s, d1.Name(), s1, d3.Name(), s3)
			}
		}
	}
	c := top.CompiledMap()
	if c == nil {
		b.Fatal("top has no published compiled map")
	}
	for _, s := range bl.queries {
		d1, s1 := resolveFind(top, s)
		if d2, s2 := resolveFast(c, s); d1 != d2 || s1 != s2 {
			b.Fatalf("sector %d: Find gives %v:%d, the compiled map %v:%d", s, d1.Name(), s1, d2, s2)
		}
	}
	q := bl.queries
	mask := len(q) - 1
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		sinkDev, sinkSector = resolveFast(c, q[i&mask])
	}
	b.StopTimer()
	ns := testenv.NsPerOp(b)
	// Rounds long enough that each finds the caches as its own loop left
	// them (the walk's tables evict the map, and the other way round).
	// Eight rounds (the walk is 10 to 50 times slower than the lookup, so
	// as many rounds as the lookup's own loop had would take minutes).
	rounds := 8
	compiled, walk := testenv.TurnsAfter(rounds, 1<<16,
		func(i int) { sinkDev, sinkSector = resolveFast(c, q[i&mask]) },
		func(i int) { sinkDev, sinkSector = resolveFind(top, q[i&mask]) })
	b.ReportMetric(walk, "walk-ns/op")
	b.ReportMetric(compiled, "compiled-ns/op")
	b.ReportMetric(walk/compiled, "x-vs-walk")
	scan := testenv.Paired(b, func(i int) { sinkDev, sinkSector = resolveScan(top, q[i&mask]) })
	search := testenv.Paired(b, func(i int) { sinkDev, sinkSector = resolveSearch(top, highs, q[i&mask]) })
	b.ReportMetric(scan, "scan-ns/op")
	b.ReportMetric(search, "sortsearch-ns/op")
	b.ReportMetric(scan/ns, "x-vs-scan")
	b.ReportMetric(search/ns, "x-vs-sortsearch")
}

// BenchmarkMap3LevelsStream is the same walk for an I/O stream: each
// operation maps the next 4 KiB block (8 sectors) of top, so consecutive
// lookups share index nodes, segments and targets the way sequential I/O
// does, instead of missing DRAM at every step as random sectors do. Same
// baselines, same stream.
func BenchmarkMap3LevelsStream(b *testing.B) {
	for _, n := range []int{100_000, 10_000} {
		b.Run(fmt.Sprintf("segs=%d", n), func(b *testing.B) {
			bl := levelsOf(b, n)
			top := bl.devs[2]
			highs := map[*stack.Device][]uint64{}
			for _, d := range bl.devs {
				highs[d] = highsOf(d.Active())
			}
			size := top.Size() &^ 7
			at := func(i int) uint64 { return (uint64(i) * 8) % size }
			for i := 0; i < 4096; i++ {
				d1, s1 := resolveFind(top, at(i))
				d2, s2 := resolveSearch(top, highs, at(i))
				if d1 != d2 || s1 != s2 {
					b.Fatalf("block %d: Find and sort.Search disagree", i)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				sinkDev, sinkSector = resolveFind(top, at(i))
			}
			b.StopTimer()
			ns := testenv.NsPerOp(b)
			search := testenv.Paired(b, func(i int) { sinkDev, sinkSector = resolveSearch(top, highs, at(i)) })
			b.ReportMetric(search, "sortsearch-ns/op")
			b.ReportMetric(search/ns, "x-vs-sortsearch")
			// A linear scan per lookup is far too slow to run for as long;
			// time it on a few blocks spread over the device.
			var scanT time.Duration
			const scans = 64
			for j := 0; j < scans; j++ {
				s := uint64(j) * (size / scans) &^ 7
				t0 := time.Now()
				sinkDev, sinkSector = resolveScan(top, s)
				scanT += time.Since(t0)
			}
			scan := float64(scanT.Nanoseconds()) / scans
			b.ReportMetric(scan, "scan-ns/op")
			b.ReportMetric(scan/ns, "x-vs-scan")
		})
	}
}

// BenchmarkTrace3Levels is Pool.Trace on the same stack, which also
// returns every step (and allocates them), against the Find loop above.
func BenchmarkTrace3Levels(b *testing.B) {
	bl := levelsOf(b, 100_000)
	top := bl.devs[2]
	q := bl.queries
	mask := len(q) - 1
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		steps, _ := bl.p.Trace(top, q[i&mask])
		sinkSector = steps[len(steps)-1].CSector
	}
	b.StopTimer()
	find := testenv.Paired(b, func(i int) { sinkDev, sinkSector = resolveFind(top, q[i&mask]) })
	b.ReportMetric(find, "find-ns/op")
	b.ReportMetric(testenv.NsPerOp(b)/find, "x-of-find")
}

// BenchmarkLoad100kOverMapped loads a 100k-segment table over the
// 100k-segment mid device, against the same table over a leaf: with the
// cycle check and child lookups done once per reference, the two cost
// about the same (the ratio was in the thousands when they were not).
func BenchmarkLoad100kOverMapped(b *testing.B) {
	bl := levelsOf(b, 100_000)
	var overDev, overLeaf strings.Builder
	const n, segLen = 100_000, 16
	for i := range n {
		fmt.Fprintf(&overDev, "%d %d linear mid %d\n", i*segLen, segLen, i*segLen)
		fmt.Fprintf(&overLeaf, "%d %d linear %s %d\n", i*segLen, segLen, bl.leaves[0].Ref(), i*segLen)
	}
	loadOnce := func(text string) {
		d, err := bl.p.Create("load", "")
		if err != nil {
			b.Fatal(err)
		}
		if err := bl.p.LoadText(d, text, stack.SourceInline); err != nil {
			b.Fatal(err)
		}
		if err := bl.p.Remove(d); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		loadOnce(overDev.String())
	}
	b.StopTimer()
	leaf := testenv.Paired(b, func(int) { loadOnce(overLeaf.String()) })
	b.ReportMetric(leaf, "over-leaf-ns/op")
	b.ReportMetric(testenv.NsPerOp(b)/leaf, "x-of-over-leaf")
}
