package fsfiles

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestExtentIndex holds each() against a scan of the current extents,
// through replacements and compactions, with overlapping (shared) extents.
func TestExtentIndex(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	cur := map[uint64][]mapped{}
	var base []mapped
	for ino := uint64(1); ino <= 300; ino++ {
		for range 1 + r.IntN(3) {
			m := mapped{Start: r.Uint64N(100000), Len: 1 + r.Uint64N(64), Logical: r.Uint64N(1 << 20), Ino: ino}
			cur[ino] = append(cur[ino], m)
			base = append(base, m)
		}
	}
	x := newExtentIndex(slices.Clone(base))
	key := func(a, b mapped) int {
		if c := cmp.Compare(a.Ino, b.Ino); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Start, b.Start); c != 0 {
			return c
		}
		return cmp.Compare(a.Logical, b.Logical)
	}
	for step := range 3000 {
		if step%3 == 0 {
			ino := 1 + r.Uint64N(400)
			var exts []mapped
			for range r.IntN(3) {
				exts = append(exts, mapped{Start: r.Uint64N(100000), Len: 1 + r.Uint64N(64), Ino: ino, Flags: xDir})
			}
			cur[ino] = exts
			x.replace(ino, slices.Clone(exts))
		}
		if step == 2000 {
			x.compact()
		}
		lo := r.Uint64N(100100)
		hi := lo + 1 + r.Uint64N(3000)
		var got, want []mapped
		x.each(lo, hi, func(m mapped) { got = append(got, m) })
		for _, exts := range cur {
			for _, m := range exts {
				if m.Start < hi && m.end() > lo {
					want = append(want, m)
				}
			}
		}
		slices.SortFunc(got, key)
		slices.SortFunc(want, key)
		if !slices.Equal(got, want) {
			t.Fatalf("step %d [%d,%d): got %d extents, want %d", step, lo, hi, len(got), len(want))
		}
	}
	n := 0
	for _, e := range cur {
		n += len(e)
	}
	if x.size() != n {
		t.Errorf("size %d, want %d", x.size(), n)
	}
	if got := x.inodeExtents(7); !slices.EqualFunc(sortedBy(got, key), sortedBy(cur[7], key), func(a, b mapped) bool { return a == b }) {
		t.Errorf("inodeExtents(7) = %v, want %v", got, cur[7])
	}
}

func sortedBy(m []mapped, f func(a, b mapped) int) []mapped {
	m = slices.Clone(m)
	slices.SortFunc(m, f)
	return m
}

func TestNames(t *testing.T) {
	n := newNames(2, 0)
	n.add(2, "d", 10, dtDir)
	n.add(10, "a", 11, dtReg)
	n.add(10, "a-link", 11, dtReg)
	n.add(2, "top", 11, dtReg)
	n.add(10, "sub", 12, dtDir)
	n.add(12, "deep", 13, dtReg)
	cache := map[uint64]string{}
	if got := n.paths(11, cache); !slices.Equal(got, []string{"d/a", "d/a-link", "top"}) {
		t.Errorf("paths(11) = %v", got)
	}
	if got := n.paths(13, cache); !slices.Equal(got, []string{"d/sub/deep"}) {
		t.Errorf("paths(13) = %v", got)
	}
	// rename d/sub -> sub2 (a directory has one name)
	n.remove(10, "sub")
	n.add(2, "sub2", 12, dtDir)
	if got := n.paths(13, nil); !slices.Equal(got, []string{"sub2/deep"}) {
		t.Errorf("after rename: %v", got)
	}
	// rename over an existing entry replaces it
	n.add(2, "top", 13, dtReg)
	if got := n.paths(11, nil); !slices.Equal(got, []string{"d/a", "d/a-link"}) {
		t.Errorf("replaced entry still named: %v", got)
	}
	if ino := n.remove(10, "a"); ino != 11 {
		t.Errorf("remove = %d", ino)
	}
	n.remove(10, "a-link")
	if nd := n.nodes[11]; nd == nil || len(nd.links) != 0 {
		t.Errorf("node 11 after last unlink: %+v", nd)
	}
	n.forget(11)
	if _, ok := n.typeOf(11); ok {
		t.Errorf("forgotten inode known")
	}
	if got := n.paths(2, nil); !slices.Equal(got, []string{""}) {
		t.Errorf("root paths %v", got)
	}
	// A loop the index should never hold ends, and names nothing.
	n.add(20, "x", 21, dtDir)
	n.add(21, "y", 20, dtDir)
	if got := n.paths(21, nil); len(got) != 0 {
		t.Errorf("loop named %v", got)
	}
}
