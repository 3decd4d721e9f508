package stack_test

import (
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/stack/stacktest"
	_ "github.com/daxstack/daxstack/targets/all"
)

// TestTargetRmapInvertsMap checks the target contract on every segment of
// many random stacks: Rmap(Map(s)) contains s, every sector Rmap returns
// maps back into what it was given, and Map's run is really contiguous.
func TestTargetRmapInvertsMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for iter := 0; iter < 300; iter++ {
		st, err := stacktest.Random(rng, stacktest.Options{ErrorTarget: true, ZeroTarget: true, Sparse: true, LeafSectors: 256})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range st.Devices {
			for _, seg := range d.Active().Segments() {
				checkSegment(t, rng, d.Name(), seg)
			}
		}
	}
}

func checkSegment(t *testing.T, rng *rand.Rand, dev string, seg stack.Segment) {
	t.Helper()
	tg := seg.Target
	for off := uint64(0); off < seg.Len; off++ {
		m, err := tg.Map(off)
		if err != nil {
			if !errors.Is(err, stack.ErrKill) || seg.Type != "error" {
				t.Fatalf("%s %s: Map(%d): %v", dev, seg.Type, off, err)
			}
			continue
		}
		if m.Run == 0 || off+m.Run > seg.Len {
			t.Fatalf("%s %s: Map(%d) run %d outside segment of %d", dev, seg.Type, off, m.Run, seg.Len)
		}
		if m.Dev == nil {
			continue
		}
		// The run is contiguous on the child.
		for j := uint64(1); j < m.Run; j++ {
			mj, _ := tg.Map(off + j)
			if mj.Dev != m.Dev || mj.Sector != m.Sector+j {
				t.Fatalf("%s %s: Map(%d) run %d not contiguous at +%d", dev, seg.Type, off, m.Run, j)
			}
		}
		back := tg.Rmap(m.Dev, extent.Of(extent.Extent{Start: m.Sector, Len: 1}))
		if !back.Contains(off) {
			t.Fatalf("%s %s: Rmap(Map(%d)=%s:%d) = %v lacks %d", dev, seg.Type, off, m.Dev.Name(), m.Sector, back, off)
		}
	}
	// Every sector Rmap returns maps back into its source.
	for _, a := range tg.Areas() {
		src := randomSet(rng, a.Start, a.Len)
		got := tg.Rmap(a.Dev, src)
		for e := range got.Extents() {
			for x := e.Start; x < e.End(); x++ {
				if x >= seg.Len {
					t.Fatalf("%s %s: Rmap gave %d outside segment", dev, seg.Type, x)
				}
				m, err := tg.Map(x)
				if err != nil || m.Dev != a.Dev || !src.Contains(m.Sector) {
					t.Fatalf("%s %s: Rmap(%v) gave %d, which maps to %v:%d", dev, seg.Type, src, x, m.Dev, m.Sector)
				}
			}
		}
		// And nothing is missed: every segment sector mapping into src is in got.
		for off := uint64(0); off < seg.Len; off++ {
			m, err := tg.Map(off)
			if err == nil && m.Dev == a.Dev && src.Contains(m.Sector) && !got.Contains(off) {
				t.Fatalf("%s %s: Rmap(%v) = %v misses %d", dev, seg.Type, src, got, off)
			}
		}
	}
}

// randomSet returns a random set of extents and strided runs around
// [start, start+n), reaching a little outside it.
func randomSet(rng *rand.Rand, start, n uint64) extent.Set {
	lo := start - min(start, 8)
	span := n + 16
	var runs []extent.Run
	for range 1 + rng.IntN(3) {
		s := lo + rng.Uint64N(span)
		l := 1 + rng.Uint64N(8)
		if rng.IntN(2) == 0 {
			runs = append(runs, extent.Run{Start: s, Len: l, Count: 1})
		} else {
			stride := l + 1 + rng.Uint64N(24)
			runs = append(runs, extent.Run{Start: s, Len: l, Stride: stride, Count: 2 + rng.Uint64N(8)})
		}
	}
	return extent.FromRuns(runs...)
}
