package stack_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/stack/stacktest"
)

// TestGraphUses checks Graph.Uses against a scan of every area of every
// active segment, on random stacks where leaves are shared freely (areas
// that overlap) and on tables that partition a leaf (areas that do not),
// for random query ranges: the same uses, in order of area start, and
// stopping when fn returns false.
func TestGraphUses(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	check := func(t *testing.T, p *stack.Pool, devs []*stack.Device) {
		g := p.Graph()
		var children []*stack.Dev
		children = append(children, g.Leaves()...)
		for _, d := range devs {
			children = append(children, d.Dev())
		}
		for _, child := range children {
			for range 40 {
				lo := rng.Uint64N(child.Size() + 10)
				hi := lo + 1 + rng.Uint64N(64)
				if rng.IntN(8) == 0 {
					lo, hi = 0, child.Size()+1
				}
				var want []string
				for _, d := range g.Devices() {
					tb := g.Table(d)
					for i, seg := range tb.Segments() {
						for _, a := range seg.Target.Areas() {
							if a.Dev == child && a.Start < hi && lo < a.Start+a.Len {
								want = append(want, fmt.Sprintf("%s/%d@%d+%d", d.Name(), i, a.Start, a.Len))
							}
						}
					}
				}
				var got []string
				var starts []uint64
				g.Uses(child, lo, hi, func(u stack.Use) bool {
					got = append(got, fmt.Sprintf("%s/%d@%d+%d", u.Device.Name(), u.Seg, u.Area.Start, u.Area.Len))
					starts = append(starts, u.Area.Start)
					if u.Segment() != &u.Table.Segments()[u.Seg] {
						t.Fatalf("Use.Segment is not the table's segment")
					}
					return true
				})
				if !slices.IsSorted(starts) {
					t.Fatalf("uses of %s in [%d,%d) not in start order: %v", child.Name(), lo, hi, got)
				}
				slices.Sort(got)
				slices.Sort(want)
				if !slices.Equal(got, want) {
					t.Fatalf("uses of %s in [%d,%d):\n got %v\nwant %v", child.Name(), lo, hi, got, want)
				}
				if len(want) > 1 {
					n := 0
					g.Uses(child, lo, hi, func(stack.Use) bool { n++; return n < 2 })
					if n != 2 {
						t.Fatalf("Uses went on after fn returned false: %d calls", n)
					}
				}
			}
		}
	}
	t.Run("shared leaves", func(t *testing.T) {
		for range 100 {
			st, err := stacktest.Random(rng, stacktest.Options{Devices: 1 + rng.IntN(6), ErrorTarget: true, ZeroTarget: true, Sparse: true, LeafSectors: 256})
			if err != nil {
				t.Fatal(err)
			}
			check(t, st.Pool, st.Devices)
		}
	})
	t.Run("partitioned leaf", func(t *testing.T) {
		for range 50 {
			leaf := stacktest.NewMemLeaf("/l", "l", 4096, true)
			p := stack.NewPool(stacktest.Opener(leaf))
			var lines []string
			var at, off uint64
			for off < 4096-64 {
				n := 1 + rng.Uint64N(64)
				lines = append(lines, fmt.Sprintf("%d %d linear /l %d", at, n, off))
				at += n
				off += n + rng.Uint64N(3) // sometimes a hole, never an overlap
			}
			d := stacktest.MustCreate(t, p, "d", strings.Join(lines, "\n"))
			check(t, p, []*stack.Device{d})
		}
	})
}
