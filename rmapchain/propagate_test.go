package rmapchain_test

import (
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/rmapchain"
	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/stack/stacktest"
	_ "github.com/daxstack/daxstack/targets/all"
)

// bruteBad decides whether sector s of d reads as failed by walking the
// forward map down, one sector at a time, the way I/O does.
func bruteBad(d *stack.Dev, s uint64) bool {
	for d.Mapped() != nil {
		t := d.Mapped().Active()
		i, ok := t.Find(s)
		if !ok {
			return true
		}
		seg := t.Segments()[i]
		m, err := seg.Target.Map(s - seg.Begin)
		if errors.Is(err, stack.ErrKill) {
			return true
		}
		if m.Dev == nil {
			return false
		}
		d, s = m.Dev, m.Sector
	}
	if s >= d.Size() {
		return true
	}
	l := d.Leaf().(*stacktest.MemLeaf)
	return l.Lost() || l.BadBlocks().Contains(s)
}

func bruteSet(d *stack.Dev) extent.Set {
	var ext []extent.Extent
	for s := uint64(0); s < d.Size(); s++ {
		if bruteBad(d, s) {
			ext = append(ext, extent.Extent{Start: s, Len: 1})
		}
	}
	return extent.Of(ext...)
}

// TestBadRangesMatchBruteForce builds random stacks (depth up to 6, shared
// leaves, linear, striped, error and zero segments), poisons or loses random
// leaves, and checks that the translated bad ranges of every device are
// exactly the sectors whose forward map hits a failure.
func TestBadRangesMatchBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 13))
	for iter := 0; iter < 400; iter++ {
		st, err := stacktest.Random(rng, stacktest.Options{
			Devices: 1 + rng.IntN(6), ErrorTarget: true, ZeroTarget: true, Sparse: true, LeafSectors: 300,
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range st.Leaves {
			switch rng.IntN(5) {
			case 0:
				l.SetLost(true)
			case 1, 2:
				var runs []extent.Run
				for range 1 + rng.IntN(4) {
					runs = append(runs, extent.Run{Start: rng.Uint64N(300), Len: 1 + rng.Uint64N(6), Count: 1})
				}
				if rng.IntN(2) == 0 {
					runs = append(runs, extent.Run{Start: rng.Uint64N(40), Len: 1 + rng.Uint64N(4), Stride: 8 + rng.Uint64N(9), Count: 2 + rng.Uint64N(12)})
				}
				l.Poison(extent.FromRuns(runs...))
			}
		}
		g := st.Pool.Graph()
		var devs []*stack.Dev
		for _, d := range st.Devices {
			devs = append(devs, d.Dev())
		}
		got := rmapchain.BadRanges(g, devs...)
		for _, d := range devs {
			want := bruteSet(d)
			if !got[d].Equal(want) {
				t.Fatalf("iter %d: %s bad ranges\n got %v\nwant %v\ntables: %q", iter, d.Name(), got[d], want, st.Tables)
			}
		}
	}
}

// TestPropagateMatchesInverse checks Propagate alone from random leaf sets:
// the set reached at each device is exactly the sectors that map into them.
func TestPropagateMatchesInverse(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 3))
	for iter := 0; iter < 300; iter++ {
		st, err := stacktest.Random(rng, stacktest.Options{Devices: 1 + rng.IntN(5), Sparse: true, LeafSectors: 200})
		if err != nil {
			t.Fatal(err)
		}
		g := st.Pool.Graph()
		src := map[*stack.Dev]extent.Set{}
		for _, l := range st.Leaves {
			if rng.IntN(2) == 0 {
				l.Poison(extent.Of(extent.Extent{Start: rng.Uint64N(200), Len: 1 + rng.Uint64N(30)}))
				if d, ok := st.Pool.Leaf(l.ID()); ok {
					src[d] = l.BadBlocks()
				}
			}
		}
		got := rmapchain.Propagate(g, src, nil)
		for _, d := range st.Devices {
			var ext []extent.Extent
			for s := uint64(0); s < d.Size(); s++ {
				if bruteBad(d.Dev(), s) {
					ext = append(ext, extent.Extent{Start: s, Len: 1})
				}
			}
			if want := extent.Of(ext...); !got[d.Dev()].Clip(0, d.Size()).Equal(want) {
				t.Fatalf("iter %d: %s\n got %v\nwant %v\ntables %q", iter, d.Name(), got[d.Dev()], want, st.Tables)
			}
		}
	}
}
