package rmapchain_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/daxstack/daxstack/extent"
	"github.com/daxstack/daxstack/rmapchain"
	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/stack/stacktest"
)

// TestReverseMatchesPropagate: on many random stacks (linear, striped with
// every chunk size, error and zero segments, shared leaves, depth up to
// the device count), the reverse index gives for random small sets of
// every leaf (some past its end) exactly what Propagate gives: the same
// devices, the same sectors, in the same runs (events print them).
func TestReverseMatchesPropagate(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 4))
	fast := 0
	for iter := range 400 {
		st, err := stacktest.Random(rng, stacktest.Options{ErrorTarget: true, ZeroTarget: true, Sparse: true, LeafSectors: uint64(64 + rng.IntN(512)), Devices: 1 + rng.IntN(6)})
		if err != nil {
			t.Fatal(err)
		}
		g := st.Pool.Graph()
		rev := rmapchain.NewReverse(g)
		for _, l := range g.Leaves() {
			for range 20 {
				var exts []extent.Extent
				for range 1 + rng.IntN(3) {
					n := 1 + rng.Uint64N(16)
					exts = append(exts, extent.Extent{Start: rng.Uint64N(l.Size() + 4), Len: n})
				}
				src := map[*stack.Dev]extent.Set{l: extent.Of(exts...)}
				want := rmapchain.Propagate(g, src, nil)
				got := rev.Propagate(src, nil)
				if err := sameContent(got, want); err != nil {
					t.Fatalf("content: stack %d, leaf %s, sectors %v: %v\n%s", iter, l.Name(), src[l], err, tables(st))
				}
				if err := sameResult(got, want); err != nil {
					t.Fatalf("stack %d, leaf %s, sectors %v: %v\n%s", iter, l.Name(), src[l], err, tables(st))
				}
				if rmapchain.AnsweredFast(rev, l, src[l]) {
					fast++
				}
			}
		}
	}
	if fast == 0 {
		t.Error("the index never answered by itself")
	}
	t.Logf("%d answers from the index", fast)
}

func sameResult(got, want map[*stack.Dev]extent.Set) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d devices, want %d (%v, want %v)", len(got), len(want), got, want)
	}
	for d, w := range want {
		g, ok := got[d]
		if !ok || !g.Equal(w) || g.String() != w.String() {
			return fmt.Errorf("%s: %v, want %v", rmapchain.DevName(d), g, w)
		}
	}
	return nil
}

func tables(st *stacktest.Stack) string {
	out := ""
	for i, d := range st.Devices {
		out += d.Name() + ":\n" + st.Tables[i] + "\n"
	}
	return out
}

func sameContent(got, want map[*stack.Dev]extent.Set) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d devices, want %d (%v, want %v)", len(got), len(want), got, want)
	}
	for d, w := range want {
		g, ok := got[d]
		if !ok || !g.Equal(w) {
			return fmt.Errorf("%s: %v, want %v", rmapchain.DevName(d), g, w)
		}
	}
	return nil
}

// TestReverseStripeSectors: the index's stripe entries find exactly the
// sectors Propagate finds (the arrangement may differ, so the index leaves
// such answers to Propagate; the sectors are checked here).
func TestReverseStripeSectors(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 5))
	checked := 0
	for iter := range 300 {
		st, err := stacktest.Random(rng, stacktest.Options{ErrorTarget: true, ZeroTarget: true, Sparse: true, LeafSectors: uint64(64 + rng.IntN(512)), Devices: 1 + rng.IntN(6)})
		if err != nil {
			t.Fatal(err)
		}
		g := st.Pool.Graph()
		rev := rmapchain.NewReverse(g)
		for _, l := range g.Leaves() {
			for range 20 {
				set := extent.Of(extent.Extent{Start: rng.Uint64N(l.Size()), Len: 1 + rng.Uint64N(16)}).Clip(0, l.Size())
				got, ok := rmapchain.IndexAnswer(rev, l, set)
				if !ok {
					continue
				}
				checked++
				if err := sameContent(got, rmapchain.Propagate(g, map[*stack.Dev]extent.Set{l: set}, nil)); err != nil {
					t.Fatalf("stack %d, leaf %s, sectors %v: %v\n%s", iter, l.Name(), set, err, tables(st))
				}
			}
		}
	}
	if checked == 0 {
		t.Error("no answer checked")
	}
}

// mapioTarget is linear with a MapIO: compiled maps do not flatten it.
type mapioTarget struct{ stack.Target }

func (mapioTarget) MapIO(*stack.Bio) (stack.Action, error) { return stack.Remap, nil }

func init() {
	stack.Register(stack.TargetType{Name: "r-mapio", Version: [3]uint32{1, 0, 0}, New: func(ti *stack.TargetInfo, args []string) (stack.Target, error) {
		tt, _ := stack.LookupType("linear")
		tg, err := tt.New(ti, args)
		if err != nil {
			return nil, err
		}
		return mapioTarget{tg}, nil
	}})
}

// TestReverseLeavesUnflattenedToPropagate: a leaf under a target with
// run-time behaviour (whose placement the compiled map leaves to the
// target) is answered by Propagate, and so is a leaf beside it only above
// which no such target is; both answers are Propagate's.
func TestReverseLeavesUnflattenedToPropagate(t *testing.T) {
	a := stacktest.NewMemLeaf("/r/a", "a", 1000, true)
	b := stacktest.NewMemLeaf("/r/b", "b", 1000, true)
	p := stack.NewPool(stacktest.Opener(a, b))
	stacktest.MustCreate(t, p, "hooked", "0 100 r-mapio /r/a 10")
	stacktest.MustCreate(t, p, "top", "0 100 linear hooked 0\n100 100 linear /r/b 0")
	stacktest.MustCreate(t, p, "plain", "0 50 linear /r/b 500")
	g := p.Graph()
	rev := rmapchain.NewReverse(g)
	la, _ := p.Leaf(a.ID())
	lb, _ := p.Leaf(b.ID())
	for _, tc := range []struct {
		leaf *stack.Dev
		at   uint64
		fast bool
	}{{la, 20, false}, {lb, 20, false}, {lb, 510, false}} {
		set := extent.Of(extent.Extent{Start: tc.at, Len: 8})
		src := map[*stack.Dev]extent.Set{tc.leaf: set}
		if err := sameResult(rev.Propagate(src, nil), rmapchain.Propagate(g, src, nil)); err != nil {
			t.Errorf("%s %v: %v", tc.leaf.Name(), set, err)
		}
		if got := rmapchain.AnsweredFast(rev, tc.leaf, set); got != tc.fast {
			t.Errorf("%s %v: answered from the index %v, want %v", tc.leaf.Name(), set, got, tc.fast)
		}
	}
	// Without the hooked device, leaf b is answered from the index.
	p2 := stack.NewPool(stacktest.Opener(b))
	stacktest.MustCreate(t, p2, "plain", "0 50 linear /r/b 500")
	g2 := p2.Graph()
	lb2, _ := p2.Leaf(b.ID())
	set := extent.Of(extent.Extent{Start: 510, Len: 8})
	if !rmapchain.AnsweredFast(rmapchain.NewReverse(g2), lb2, set) {
		t.Error("a leaf under linear only is not answered from the index")
	}
}
