package fsfiles

import (
	"math/rand/v2"
	"testing"

	"github.com/daxstack/daxstack/extent"
)

// randRun returns a valid run within the first 4096 sectors.
func randRun(r *rand.Rand) extent.Run {
	l := 1 + r.Uint64N(16)
	if r.IntN(3) == 0 {
		return extent.Run{Start: r.Uint64N(4000), Len: l, Count: 1}
	}
	stride := l + 1 + r.Uint64N(40)
	return extent.Run{Start: r.Uint64N(2000), Len: l, Stride: stride, Count: 2 + r.Uint64N(2000/stride)}
}

// TestClipRun holds clipRun against extent's own Clip on random runs and
// windows: the same sectors, and every piece a valid run.
func TestClipRun(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		run := randRun(r)
		lo := r.Uint64N(4200)
		hi := lo + r.Uint64N(600)
		got := clipRun(run, lo, hi, nil)
		for _, p := range got {
			if !p.Valid() {
				t.Fatalf("clipRun(%v, %d, %d): invalid piece %v", run, lo, hi, p)
			}
		}
		want := extent.FromRuns(run).Clip(lo, hi)
		if g := extent.FromRuns(got...); !g.Equal(want) || g.Sectors() != want.Sectors() {
			t.Fatalf("clipRun(%v, %d, %d) = %v, want %v", run, lo, hi, got, want)
		}
	}
}

func TestSetIndexClip(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		var runs []extent.Run
		for range 1 + r.IntN(6) {
			runs = append(runs, randRun(r))
		}
		s := extent.FromRuns(runs...)
		x := newSetIndex(s)
		lo := r.Uint64N(4200)
		hi := lo + r.Uint64N(1000)
		if got, want := extent.FromRuns(x.clip(lo, hi, nil)...), s.Clip(lo, hi); !got.Equal(want) {
			t.Fatalf("%v clip [%d,%d) = %v, want %v", s, lo, hi, got, want)
		}
	}
}

func TestUnionAndSpans(t *testing.T) {
	u := unionSet([]interval{{10, 20}, {15, 30}, {40, 50}, {30, 35}, {50, 51}})
	if want := extent.Of(extent.Extent{Start: 10, Len: 25}, extent.Extent{Start: 40, Len: 11}); !u.Equal(want) {
		t.Errorf("union %v, want %v", u, want)
	}
	s := extent.FromRuns(extent.Run{Start: 0, Len: 8, Stride: 32, Count: 4}, extent.Run{Start: 16, Len: 8, Stride: 32, Count: 4},
		extent.Run{Start: 1000, Len: 5, Count: 1})
	sp := spans(s)
	if len(sp) != 2 || sp[0] != (interval{0, 120}) || sp[1] != (interval{1000, 1005}) {
		t.Errorf("spans %v", sp)
	}
}
