package rmapchain_test

// Benchmarks of the compiled reverse index, each with its baseline in the
// same run:
//
//	go test ./rmapchain -run '^$' -bench 'Compiled' -benchtime 2s -count 3

import (
	"fmt"
	"testing"

	"github.com/daxstack/daxstack/internal/testenv"
	"github.com/daxstack/daxstack/rmapchain"
	"github.com/daxstack/daxstack/stack"
)

// BenchmarkCompiledRmap8Sectors3Levels carries the random 8-sector leaf
// extents of BenchmarkRmap8Sectors3Levels (3 levels of n linear segments)
// to every device above with the reverse index, against Propagate on the
// same cached Graph in the same run (propagate-ns/op). Goal for n = 10k:
// at least 2x. Both are checked to give the same sets, in the same runs,
// for every extent before timing.
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
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				sinkMap = rev.Propagate(rl.srcs[i&mask], nil)
			}
			b.StopTimer()
			prop := testenv.Paired(b, func(i int) { sinkMap = rmapchain.Propagate(rl.g, rl.srcs[i&mask], nil) })
			b.ReportMetric(prop, "propagate-ns/op")
			b.ReportMetric(prop/testenv.NsPerOp(b), "x-vs-propagate")
		})
	}
}

var sinkGraph *stack.Graph

// BenchmarkCompiledReverseBuild builds the reverse index of the 3 x n
// stack (compiling every device's map from the graph), against building
// the graph itself (Pool.Graph after a change).
func BenchmarkCompiledReverseBuild(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("segs=%d", n), func(b *testing.B) {
			rl := rmapLevelsOf(b, n)
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
			b.ReportMetric(graph/1e6, "graph-ms/op")
			b.ReportMetric(testenv.NsPerOp(b)/graph, "x-of-graph")
		})
	}
}
