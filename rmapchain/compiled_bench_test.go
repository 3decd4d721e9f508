package rmapchain_test

// Benchmarks of the compiled reverse index, each with its baseline in the
// same run:
//
//	go test ./rmapchain -run '^$' -bench 'Compiled' -benchtime 2s -count 3

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/daxstack/daxstack/internal/testenv"
	"github.com/daxstack/daxstack/rmapchain"
	"github.com/daxstack/daxstack/stack"
)

// BenchmarkCompiledRmap8Sectors3Levels carries the random 8-sector leaf
// extents of BenchmarkRmap8Sectors3Levels (3 levels of n linear segments)
// to every device above with the reverse index, against Propagate on the
// same cached Graph in the same run. Goal for n = 10k: at least 2x. Both
// are checked to give the same sets, in the same runs, for every extent
// before timing. They take turns in rounds of 1024, timed in the thread's
// CPU time (the machine is shared), and report index-ns/op,
// propagate-ns/op and x-vs-propagate.
func BenchmarkCompiledRmap8Sectors3Levels(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("segs=%d", n), func(b *testing.B) {
			rl := rmapLevelsOf(b, n)
			rev := rmapchain.ReverseOf(rl.g)
			for _, src := range rl.srcs {
				if err := sameResult(rev.Propagate(src, nil), rmapchain.Propagate(rl.g, src, nil)); err != nil {
					b.Fatal(err)
				}
				if !rmapchain.AnsweredFast(rev, rl.leaf, src[rl.leaf]) {
					b.Fatal("the index does not answer")
				}
			}
			mask := len(rl.srcs) - 1
			idx, prop := testenv.Turns(b, 1024,
				func(i int) { sinkMap = rev.Propagate(rl.srcs[i&mask], nil) },
				func(i int) { sinkMap = rmapchain.Propagate(rl.g, rl.srcs[i&mask], nil) })
			b.ReportMetric(idx, "index-ns/op")
			b.ReportMetric(prop, "propagate-ns/op")
			b.ReportMetric(prop/idx, "x-vs-propagate")
		})
	}
}

var sinkGraph *stack.Graph

// BenchmarkCompiledReverseBuild builds the reverse index of the 3 x n
// stack (compiling every device's map from the graph), against building
// the graph itself (Pool.Graph after a change), and reports the live heap
// the index holds (index-MB, the compiled maps it is built from included).
func BenchmarkCompiledReverseBuild(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("segs=%d", n), func(b *testing.B) {
			rl := rmapLevelsOf(b, n)
			h0 := heapNow()
			keep := rmapchain.NewReverse(rl.g)
			revBytes := heapNow() - h0
			runtime.KeepAlive(keep)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				rmapchain.NewReverse(rl.g)
			}
			b.StopTimer()
			// A device created and removed changes the pool, so that Graph
			// builds a new snapshot.
			graph := testenv.Paired(b, func(int) {
				d, err := rl.p.Create("bump", "")
				if err == nil {
					err = rl.p.Remove(d)
				}
				if err != nil {
					b.Fatal(err)
				}
				sinkGraph = rl.p.Graph()
			})
			b.ReportMetric(float64(revBytes)/1e6, "index-MB")
			b.ReportMetric(graph/1e6, "graph-ms/op")
			b.ReportMetric(testenv.NsPerOp(b)/graph, "x-of-graph")
		})
	}
}

// heapNow returns the live heap after a collection.
func heapNow() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
