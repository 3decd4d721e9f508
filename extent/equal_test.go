package extent

import (
	"math/rand/v2"
	"testing"
)

// TestEqualAgainstBitmap checks Equal against the bitmap model, for pairs
// of random sets and for pairs holding the same sectors in different runs
// (a rebuilt through a detour of unions and subtractions, or from its
// coalesced extents).
func TestEqualAgainstBitmap(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	for iter := 0; iter < 5000; iter++ {
		a, b, c := randSet(rng), randSet(rng), randSet(rng)
		if got, want := a.Equal(b), model(a) == model(b); got != want {
			t.Fatalf("Equal(%v, %v) = %v, want %v", a, b, got, want)
		}
		detour := a.Union(c).Subtract(c.Subtract(a))
		var exts []Extent
		for e := range a.Extents() {
			exts = append(exts, e)
		}
		for _, same := range []Set{detour, Of(exts...), a.Union(a.Intersect(b))} {
			if model(same) != model(a) {
				t.Fatalf("test setup: %v and %v differ", same, a)
			}
			if !a.Equal(same) || !same.Equal(a) {
				t.Fatalf("Equal(%v, %v) = false for the same sectors", a, same)
			}
		}
		// One sector more or less is seen, wherever it is.
		x := rng.Uint64N(universe)
		flipped := a.Subtract(Of(Extent{x, 1}))
		if !a.Contains(x) {
			flipped = a.Union(Of(Extent{x, 1}))
		}
		if a.Equal(flipped) || flipped.Equal(a) {
			t.Fatalf("Equal(%v, %v) = true with sector %d flipped", a, flipped, x)
		}
	}
}

// TestEqualLarge: sets of hundreds of millions of sectors compare without
// walking them when their runs agree or their sizes differ, and correctly
// when the runs differ but the sectors do not.
func TestEqualLarge(t *testing.T) {
	const n = 1 << 28
	a := FromRuns(Run{0, 8, 32, n}, Run{8, 8, 32, n}) // normalised to one run of 16
	b := FromRuns(Run{0, 16, 32, n})
	if !a.Equal(b) {
		t.Fatalf("%v != %v", a, b)
	}
	c := FromRuns(Run{0, 16, 32, n - 1})
	if a.Equal(c) || c.Equal(a) {
		t.Fatalf("%v == %v", a, c)
	}
	// Same sectors, different runs: an extent split off the front.
	d := Of(Extent{0, 16}).Union(FromRuns(Run{32, 16, 32, 3}))
	e := FromRuns(Run{0, 16, 32, 4})
	if !d.Equal(e) {
		t.Fatalf("%v != %v", d, e)
	}
}
