package stack

import (
	"math/rand/v2"
	"sort"
	"testing"
)

// linearFind is the obvious lookup the implicit B-tree must agree with:
// the first segment whose last sector is at or after s.
func linearFind(highs []uint64, s uint64) int {
	for i, h := range highs {
		if h >= s {
			return i
		}
	}
	return -1
}

// wantDepth is the depth of the kernel's tree for n segments, computed
// independently of intLog: the number of levels a tree of nodes with 9
// children needs to reach ceil(n/8) leaf nodes.
func wantDepth(n int) int {
	leafNodes := (n + keysPerNode - 1) / keysPerNode
	depth, reach := 1, 1
	for reach < leafNodes {
		reach *= childrenPerNode
		depth++
	}
	return depth
}

// TestIndexAgainstLinearScan builds the lookup index for segment counts on
// both sides of every depth boundary (8 keys to a leaf node, 9 children to
// an inner node: 8, 72, 648, 5832, 52488, 472392 segments) and checks
// every lookup against a linear scan of the highs: each segment's first
// and last sector, and random sectors.
func TestIndexAgainstLinearScan(t *testing.T) {
	sizes := []int{1, 2, 7, 8, 9, 10, 71, 72, 73, 80, 81, 647, 648, 649, 5831, 5832, 5833, 52488, 52489}
	if !testing.Short() {
		sizes = append(sizes, 472392, 472393)
	}
	rng := rand.New(rand.NewPCG(42, 1))
	for _, n := range sizes {
		// Random segment lengths, mostly short, sometimes huge, so that
		// highs are irregular.
		highs := make([]uint64, n)
		var at uint64
		for i := range highs {
			l := 1 + rng.Uint64N(16)
			if rng.IntN(50) == 0 {
				l = 1 + rng.Uint64N(1<<40)
			}
			at += l
			highs[i] = at - 1
		}
		ix := newIndex(highs)
		if ix.depth != wantDepth(n) {
			t.Errorf("n=%d: depth %d, want %d", n, ix.depth, wantDepth(n))
		}
		// Boundaries: every segment's first and last sector. Checked
		// against sort.Search for big n (cheap), and against the linear
		// scan for a sample.
		check := func(s uint64, linear bool) {
			got := ix.find(s)
			want := sort.Search(n, func(i int) bool { return highs[i] >= s })
			if linear {
				if lw := linearFind(highs, s); lw != want {
					t.Fatalf("n=%d: linear scan %d and sort.Search %d disagree at %d", n, lw, want, s)
				}
			}
			if got != want {
				t.Fatalf("n=%d (depth %d): find(%d) = %d, want %d", n, ix.depth, s, got, want)
			}
		}
		// Keep the linear scans to about two million steps per size.
		linearEvery := max(1, n*n/(2<<20))
		for i, h := range highs {
			first := uint64(0)
			if i > 0 {
				first = highs[i-1] + 1
			}
			lin := i%linearEvery == 0
			check(first, lin)
			check(h, lin)
		}
		for i := range 200 {
			check(rng.Uint64N(highs[n-1]+1), i < max(4, (2<<20)/n))
		}
	}
}

// TestTableFindPastEnd checks the bounds of Table.Find, which guards the
// index: a sector at or past the size, or a nil table, finds nothing.
func TestTableFindPastEnd(t *testing.T) {
	highs := []uint64{9, 19, 29}
	tb := &Table{ix: newIndex(highs), size: 30}
	for _, c := range []struct {
		s    uint64
		want int
		ok   bool
	}{{0, 0, true}, {9, 0, true}, {10, 1, true}, {29, 2, true}, {30, 0, false}, {1 << 63, 0, false}} {
		i, ok := tb.Find(c.s)
		if i != c.want || ok != c.ok {
			t.Errorf("Find(%d) = %d, %v; want %d, %v", c.s, i, ok, c.want, c.ok)
		}
	}
	var nilTable *Table
	if _, ok := nilTable.Find(0); ok {
		t.Errorf("nil table found sector 0")
	}
}

func TestIntLog(t *testing.T) {
	for _, c := range []struct{ n, base, want int }{
		{1, 9, 0}, {2, 9, 1}, {9, 9, 1}, {10, 9, 2}, {81, 9, 2}, {82, 9, 3}, {729, 9, 3}, {730, 9, 4},
	} {
		if got := intLog(c.n, c.base); got != c.want {
			t.Errorf("intLog(%d, %d) = %d, want %d", c.n, c.base, got, c.want)
		}
	}
}
