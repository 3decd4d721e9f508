package rmapchain_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/rmapchain"
	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/stack/stacktest"
)

// The whole-leaf-loss stack: four sparse 1 TiB leaves (2^31 sectors each)
// under a 4-way stripe with 8-sector chunks (s0, 2^33 sectors), and a
// linear device on top that starts 1004 sectors into s0, in the middle of
// a chunk, and stops 500 sectors before its end.
const (
	tibSectors = 1 << 31
	topOffset  = 1004
	topLen     = 4*tibSectors - topOffset - 500 // 8589933088
)

type lossStack struct {
	p       *stack.Pool
	leaves  []*stacktest.MemLeaf
	s0, top *stack.Device
}

func newLossStack(tb testing.TB) *lossStack {
	tb.Helper()
	ls := &lossStack{}
	for i := range 4 {
		ls.leaves = append(ls.leaves, stacktest.NewMemLeaf(fmt.Sprintf("/pmem/%d", i), fmt.Sprintf("pmem%d", i), tibSectors, true))
	}
	ls.p = stack.NewPool(stacktest.Opener(ls.leaves...))
	load := func(name, text string) *stack.Device {
		return stacktest.MustCreate(tb, ls.p, name, text)
	}
	ls.s0 = load("s0", fmt.Sprintf("0 %d striped 4 8 /pmem/0 0 /pmem/1 0 /pmem/2 0 /pmem/3 0", 4*tibSectors))
	ls.top = load("top", fmt.Sprintf("0 %d linear s0 %d", topLen, topOffset))
	return ls
}

func (ls *lossStack) leafDev(tb testing.TB, i int) *stack.Dev {
	d, ok := ls.p.Leaf(ls.leaves[i].ID())
	if !ok {
		tb.Fatalf("leaf %d not in the pool", i)
	}
	return d
}

// TestWholeLeafLossUnderStripe loses pmem1 (stripe 1) and checks the exact
// runs at each level. Stripe 1 holds s0's chunks 1, 5, 9, ...: sectors
// 8+32i..15+32i for i < 2^28, one run. On top (s0 shifted down by 1004 and
// cut to 8589933088 sectors): chunk i=31 (s0 1000..1007) is cut to its
// last four sectors (top 0..3); chunks 32 to 268435439 are whole (top 28,
// every 32, 268435408 of them); chunk 268435440 (s0 8589934088..95) keeps
// its first four (top 8589933084..87).
func TestWholeLeafLossUnderStripe(t *testing.T) {
	ls := newLossStack(t)
	ls.leaves[1].SetLost(true)
	lost := ls.leafDev(t, 1)
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	evs := rmapchain.Translate(ls.p.Graph(), rmapchain.Lost, lost, rmapchain.LeafBad(lost), now)

	wantLeaf := []extent.Run{{Start: 0, Len: tibSectors, Count: 1}}
	want := []struct {
		dev  string
		runs []extent.Run
	}{
		{"/pmem/1", wantLeaf},
		{"s0", []extent.Run{{Start: 8, Len: 8, Stride: 32, Count: 1 << 28}}},
		{"top", []extent.Run{
			{Start: 0, Len: 4, Count: 1},
			{Start: 28, Len: 8, Stride: 32, Count: 268435408},
			{Start: 8589933084, Len: 4, Count: 1},
		}},
	}
	if len(evs) != len(want) {
		t.Fatalf("%d events, want %d: %+v", len(evs), len(want), evs)
	}
	for i, w := range want {
		e := evs[i]
		if e.Device != w.dev || fmt.Sprint(e.Ranges.Runs()) != fmt.Sprint(w.runs) {
			t.Errorf("event %d: %s %v, want %s %v", i, e.Device, e.Ranges.Runs(), w.dev, w.runs)
		}
		if e.Kind != rmapchain.Lost || !e.Time.Equal(now) || e.Seq != 0 {
			t.Errorf("event %d: kind %q time %v seq %d", i, e.Kind, e.Time, e.Seq)
		}
		if e.Cause.Device != "/pmem/1" || fmt.Sprint(e.Cause.Ranges.Runs()) != fmt.Sprint(wantLeaf) {
			t.Errorf("event %d: cause %s %v", i, e.Cause.Device, e.Cause.Ranges)
		}
	}
	top := evs[2].Ranges
	if got, want := top.Sectors(), uint64(4+8*268435408+4); got != want {
		t.Errorf("top loses %d sectors, want %d", got, want)
	}

	// Independently: sample top sectors (the edges of the pieces and
	// random ones) and follow the forward map down.
	rng := rand.New(rand.NewPCG(1, 1))
	samples := []uint64{0, 3, 4, 27, 28, 35, 36, 59, 60, 8589933051, 8589933052, 8589933059, 8589933060, 8589933083, 8589933084, 8589933087}
	for range 2000 {
		samples = append(samples, rng.Uint64N(topLen))
	}
	for _, s := range samples {
		steps, err := ls.p.Trace(ls.top, s)
		if err != nil {
			t.Fatal(err)
		}
		onLost := steps[len(steps)-1].Child == lost
		if top.Contains(s) != onLost {
			t.Errorf("top sector %d: in the lost ranges %v, maps to pmem1 %v", s, top.Contains(s), onLost)
		}
	}

	// The event serialises as three runs, not 268 million extents.
	b, err := json.Marshal(evs[2].Ranges)
	if err != nil {
		t.Fatal(err)
	}
	if want := `[{"offset":0,"length":4},{"offset":28,"length":8,"stride":32,"count":268435408},{"offset":8589933084,"length":4}]`; string(b) != want {
		t.Errorf("top ranges JSON %s, want %s", b, want)
	}

	// BadRanges agrees: the only failure source is the lost leaf.
	br := rmapchain.BadRanges(ls.p.Graph(), ls.top.Dev())
	if !br[ls.top.Dev()].Equal(top) {
		t.Errorf("BadRanges(top) = %v, want %v", br[ls.top.Dev()], top)
	}
}

// TestWholeLeafLossTwoStripesOneLeaf: a leaf holding two stripes of one
// segment loses both, and the runs stay few.
func TestWholeLeafLossTwoStripesOneLeaf(t *testing.T) {
	l := stacktest.NewMemLeaf("/pmem/a", "pmema", tibSectors, true)
	m := stacktest.NewMemLeaf("/pmem/b", "pmemb", tibSectors, true)
	p := stack.NewPool(stacktest.Opener(l, m))
	// Stripes 0 and 2 on the first half and second half of pmema.
	half := uint64(tibSectors / 2)
	d := stacktest.MustCreate(t, p, "s", fmt.Sprintf("0 %d striped 3 8 /pmem/a 0 /pmem/b 0 /pmem/a %d", 3*half, half))
	ld, _ := p.Leaf(l.ID())
	got := rmapchain.Propagate(p.Graph(), map[*stack.Dev]extent.Set{ld: extent.Of(extent.Extent{Start: 0, Len: tibSectors})}, nil)[d.Dev()]
	// Stripe 0 holds 24i..24i+7 and stripe 2 24i+16..24i+23 for i < 2^27;
	// stripe 2's chunk i touches stripe 0's chunk i+1, so the union is the
	// first chunk, 2^27-1 pieces of 16 sectors every 24, and the last chunk.
	want := []extent.Run{
		{Start: 0, Len: 8, Count: 1},
		{Start: 16, Len: 16, Stride: 24, Count: half/8 - 1},
		{Start: 24*(half/8-1) + 16, Len: 8, Count: 1},
	}
	if fmt.Sprint(got.Runs()) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", got.Runs(), want)
	}
	// The same sectors as stripes 0 and 2 taken apart (subtraction both
	// ways: exact, and proportional to the runs, where Equal would walk
	// 2^28 extents).
	both := extent.FromRuns(extent.Run{Start: 0, Len: 8, Stride: 24, Count: half / 8}, extent.Run{Start: 16, Len: 8, Stride: 24, Count: half / 8})
	if !got.Subtract(both).Empty() || !both.Subtract(got).Empty() {
		t.Errorf("got %v, not stripes 0 and 2", got)
	}
}
