package extent

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// universe is the sector range the bitmap model covers.
const universe = 512

type bitmap [universe]bool

func (b *bitmap) addRun(r Run) {
	for i := uint64(0); i < r.Count; i++ {
		e := r.Elem(i)
		for s := e.Start; s < e.End(); s++ {
			b[s] = true
		}
	}
}

func model(s Set) bitmap {
	var b bitmap
	for _, r := range s.runs {
		b.addRun(r)
	}
	return b
}

// extentsOf returns the coalesced extents of a bitmap.
func (b *bitmap) extents() []Extent {
	var out []Extent
	for s := 0; s < universe; s++ {
		if !b[s] {
			continue
		}
		e := s
		for e < universe && b[e] {
			e++
		}
		out = append(out, Extent{uint64(s), uint64(e - s)})
		s = e
	}
	return out
}

func randRun(rng *rand.Rand) Run {
	for {
		r := Run{Start: rng.Uint64N(universe / 2), Len: 1 + rng.Uint64N(12), Count: 1}
		if rng.IntN(3) > 0 {
			r.Count = 2 + rng.Uint64N(12)
			r.Stride = r.Len + 1 + rng.Uint64N(20)
			if rng.IntN(4) == 0 {
				r.Stride = 16 // shared strides exercise the periodic fast path
				if r.Len >= 16 {
					r.Len = 1 + rng.Uint64N(15)
				}
			}
		}
		if r.End() <= universe && r.Valid() {
			return r
		}
	}
}

func randSet(rng *rand.Rand) Set {
	runs := make([]Run, rng.IntN(6))
	for i := range runs {
		runs[i] = randRun(rng)
	}
	return FromRuns(runs...)
}

// checkInvariants verifies the representation: valid runs, sorted by start,
// pairwise disjoint members.
func checkInvariants(t *testing.T, s Set) {
	t.Helper()
	var seen bitmap
	for i, r := range s.runs {
		if !r.Valid() {
			t.Fatalf("run %d invalid: %v in %v", i, r, s)
		}
		if i > 0 && r.Start < s.runs[i-1].Start {
			t.Fatalf("runs not sorted: %v", s)
		}
		for j := uint64(0); j < r.Count; j++ {
			e := r.Elem(j)
			for x := e.Start; x < e.End(); x++ {
				if seen[x] {
					t.Fatalf("sector %d held twice in %v", x, s)
				}
				seen[x] = true
			}
		}
	}
}

func checkEqualModel(t *testing.T, what string, got Set, want bitmap) {
	t.Helper()
	checkInvariants(t, got)
	if model(got) != want {
		t.Fatalf("%s: got %v\n extents %v\nwant extents %v", what, got, slices.Collect(got.Extents()), want.extents())
	}
	if ext := slices.Collect(got.Extents()); !slices.Equal(ext, want.extents()) {
		t.Fatalf("%s: Extents() = %v, want %v", what, ext, want.extents())
	}
}

func TestSetOperationsAgainstBitmap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := 0; iter < 20000; iter++ {
		a, b := randSet(rng), randSet(rng)
		ma, mb := model(a), model(b)
		checkInvariants(t, a)
		var union, inter, diff bitmap
		for i := range universe {
			union[i] = ma[i] || mb[i]
			inter[i] = ma[i] && mb[i]
			diff[i] = ma[i] && !mb[i]
		}
		checkEqualModel(t, "union "+a.String()+" "+b.String(), a.Union(b), union)
		checkEqualModel(t, "intersect "+a.String()+" "+b.String(), a.Intersect(b), inter)
		checkEqualModel(t, "subtract "+a.String()+" "+b.String(), a.Subtract(b), diff)

		lo := rng.Uint64N(universe)
		hi := lo + rng.Uint64N(universe-lo+1)
		var clip bitmap
		for i := lo; i < hi; i++ {
			clip[i] = ma[i]
		}
		checkEqualModel(t, "clip", a.Clip(lo, hi), clip)

		if !a.Union(b).Equal(b.Union(a)) {
			t.Fatalf("union not commutative: %v %v", a, b)
		}
		var n uint64
		for _, v := range ma {
			if v {
				n++
			}
		}
		if a.Sectors() != n {
			t.Fatalf("Sectors(%v) = %d, want %d", a, a.Sectors(), n)
		}
		x := rng.Uint64N(universe)
		if a.Contains(x) != ma[x] {
			t.Fatalf("Contains(%v, %d) = %v", a, x, a.Contains(x))
		}
		e := Extent{lo, hi - lo}
		want := false
		for i := lo; i < hi; i++ {
			want = want || ma[i]
		}
		if a.Overlaps(e) != want {
			t.Fatalf("Overlaps(%v, %v) = %v", a, e, !want)
		}
	}
}

func TestShift(t *testing.T) {
	s := FromRuns(Run{10, 2, 8, 4}, ExtentRun(Extent{100, 5}))
	got := s.Shift(-10).Shift(3)
	want := FromRuns(Run{3, 2, 8, 4}, ExtentRun(Extent{93, 5}))
	if !got.Equal(want) {
		t.Fatalf("Shift: got %v, want %v", got, want)
	}
}

func TestNormalizeShapes(t *testing.T) {
	tests := []struct {
		name string
		in   []Run
		want []Run
	}{
		{"touching extents coalesce",
			[]Run{ExtentRun(Extent{0, 4}), ExtentRun(Extent{4, 4})},
			[]Run{ExtentRun(Extent{0, 8})}},
		{"three evenly spaced extents become a run",
			[]Run{ExtentRun(Extent{0, 8}), ExtentRun(Extent{32, 8}), ExtentRun(Extent{64, 8})},
			[]Run{{0, 8, 32, 3}}},
		{"two extents stay extents",
			[]Run{ExtentRun(Extent{0, 8}), ExtentRun(Extent{32, 8})},
			[]Run{ExtentRun(Extent{0, 8}), ExtentRun(Extent{32, 8})}},
		{"neighbouring stripes merge",
			[]Run{{0, 8, 32, 100}, {8, 8, 32, 100}},
			[]Run{{0, 16, 32, 100}}},
		{"all stripes of a device make one extent",
			[]Run{{0, 8, 16, 100}, {8, 8, 16, 100}},
			[]Run{ExtentRun(Extent{0, 1600})}},
		{"run continued by a run",
			[]Run{{0, 8, 32, 10}, {320, 8, 32, 5}},
			[]Run{{0, 8, 32, 15}}},
		{"extent touching a run's last element absorbs it",
			[]Run{{0, 8, 32, 4}, ExtentRun(Extent{104, 10})},
			[]Run{{0, 8, 32, 3}, ExtentRun(Extent{96, 18})}},
		{"extent touching a run's first element absorbs it",
			[]Run{ExtentRun(Extent{0, 10}), {10, 8, 32, 4}},
			[]Run{ExtentRun(Extent{0, 18}), {42, 8, 32, 3}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := FromRuns(tc.in...)
			if !slices.Equal(got.Runs(), tc.want) {
				t.Fatalf("got %v, want %v", got.Runs(), tc.want)
			}
			if !got.Equal(FromRuns(tc.want...)) {
				t.Fatalf("sets differ")
			}
		})
	}
}

// TestCompactness checks that periodic operands give results proportional
// to the number of runs, not the number of elements.
func TestCompactness(t *testing.T) {
	const chunks = 1 << 28 // a 1 TiB leaf cut into 4 KiB chunks
	stripe0 := Run{0, 8, 32, chunks}
	stripe1 := Run{8, 8, 32, chunks}
	s := FromRuns(stripe0)
	u := s.Union(FromRuns(stripe1))
	if got := u.Runs(); len(got) != 1 || got[0] != (Run{0, 16, 32, chunks}) {
		t.Fatalf("union of neighbouring stripes = %v", got)
	}
	cut := u.Subtract(Of(Extent{1000, 100}, Extent{1 << 30, 1 << 20}))
	if n := len(cut.Runs()); n > 12 {
		t.Fatalf("subtracting two extents gave %d runs: %v", n, cut)
	}
	if want := u.Sectors() - 100 + 4 - 1<<19; cut.Sectors() != want {
		// [1000,1100) removes 100 sectors minus the holes inside it; count exactly:
		inHoles := uint64(0)
		for x := uint64(1000); x < 1100; x++ {
			if x%32 >= 16 {
				inHoles++
			}
		}
		want = u.Sectors() - (100 - inHoles) - (1<<20)/2
		if cut.Sectors() != want {
			t.Fatalf("Sectors = %d, want %d", cut.Sectors(), want)
		}
	}
	inter := u.Intersect(FromRuns(Run{4, 8, 32, chunks}))
	if n := len(inter.Runs()); n != 1 || inter.Sectors() != 8*chunks {
		t.Fatalf("intersect of same-stride runs = %v", inter)
	}
}

func TestExtentsStopsEarly(t *testing.T) {
	s := FromRuns(Run{0, 1, 2, 1 << 40 / 2})
	n := 0
	for range s.Extents() {
		if n++; n == 3 {
			break
		}
	}
	if n != 3 {
		t.Fatalf("iterated %d", n)
	}
}

func FuzzSetOps(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	f.Fuzz(func(t *testing.T, data []byte) {
		var seed [2]uint64
		for i, b := range data {
			seed[i%2] = seed[i%2]*131 + uint64(b)
		}
		rng := rand.New(rand.NewPCG(seed[0], seed[1]))
		a, b := randSet(rng), randSet(rng)
		ma, mb := model(a), model(b)
		var diff, inter bitmap
		for i := range universe {
			diff[i] = ma[i] && !mb[i]
			inter[i] = ma[i] && mb[i]
		}
		checkEqualModel(t, "subtract", a.Subtract(b), diff)
		checkEqualModel(t, "intersect", a.Intersect(b), inter)
	})
}
