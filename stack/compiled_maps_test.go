package stack_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/stack/stacktest"
)

// dependsOn reports whether d's active table reaches x, through the
// tables (not through any compiled map).
func dependsOn(d, x *stack.Device) bool {
	if d == x {
		return true
	}
	for _, c := range d.Active().Devs() {
		if md := c.Mapped(); md != nil && dependsOn(md, x) {
			return true
		}
	}
	return false
}

// TestCompiledMapsSwaps swaps random tables into random devices of random
// stacks and checks, after each swap, that Update rebuilt exactly the maps
// of the swapped device and of the devices above it (found from the
// tables), kept every other map as it was, and that every map is current
// and agrees with the per-level walk on every sector.
func TestCompiledMapsSwaps(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 2))
	for iter := range 60 {
		o := randOpts{devices: 2 + rng.IntN(5), maxSegs: 1 + rng.IntN(5), maxLen: 1 + rng.Uint64N(64), maxDepth: 1 + rng.IntN(4), hooks: iter%2 == 0}
		rs, err := newRandStack(rng, o)
		if err != nil {
			t.Fatal(err)
		}
		maps := stack.NewCompiledMaps()
		// The first Update builds every device's map, and that of the
		// device with no table if a table uses it.
		for _, x := range maps.Update(rs.devs...) {
			if !slices.Contains(rs.devs, x) && x != rs.noTable {
				t.Fatalf("stack %d: first Update built a map for %s", iter, x.Name())
			}
		}
		for _, x := range rs.devs {
			if maps.Get(x) == nil {
				t.Fatalf("stack %d: first Update built no map for %s", iter, x.Name())
			}
		}
		for swap := range 10 {
			i := rng.IntN(len(rs.devs))
			d := rs.devs[i]
			text := rs.randTableBelow(rng, o, i)
			if err := rs.p.LoadText(d, text, stack.SourceInline); err != nil {
				if isRefusal(err) {
					continue
				}
				t.Fatal(err)
			}
			if err := rs.p.Resume(d); err != nil {
				t.Fatal(err)
			}
			rs.noteDepths()
			before := map[*stack.Device]*stack.Compiled{}
			for _, x := range rs.devs {
				before[x] = maps.Get(x)
			}
			hadNoTable := rs.noTable != nil && maps.Get(rs.noTable) != nil
			rebuilt := maps.Update(d)
			// A table that starts using the device with no table builds
			// its (empty) map too.
			if !hadNoTable && slices.Contains(rebuilt, rs.noTable) {
				rebuilt = slices.DeleteFunc(rebuilt, func(x *stack.Device) bool { return x == rs.noTable })
			}
			var want []*stack.Device
			for _, x := range rs.devs {
				if dependsOn(x, d) {
					want = append(want, x)
				}
			}
			if !sameDevices(rebuilt, want) {
				t.Fatalf("stack %d swap %d of %s: rebuilt %v, want %v\n%s", iter, swap, d.Name(), names(rebuilt), names(want), describe(rs))
			}
			if got := maps.Above(d); !sameDevices(got, want) {
				t.Fatalf("stack %d swap %d: Above(%s) = %v, want %v", iter, swap, d.Name(), names(got), names(want))
			}
			for _, x := range rs.devs {
				c := maps.Get(x)
				if (c == before[x]) == slices.Contains(want, x) {
					t.Fatalf("stack %d swap %d of %s: map of %s rebuilt=%v", iter, swap, d.Name(), x.Name(), c != before[x])
				}
				if !c.Current() {
					t.Fatalf("stack %d swap %d: map of %s is not current", iter, swap, x.Name())
				}
				if err := checkAll(c, x); err != nil {
					t.Fatalf("stack %d swap %d of %s: %v\n%s", iter, swap, d.Name(), err, describe(rs))
				}
			}
			// Children come before their parents.
			for j, x := range rebuilt {
				for _, y := range rebuilt[j+1:] {
					if dependsOn(x, y) && x != y {
						t.Fatalf("stack %d: %s rebuilt before %s, which it uses", iter, x.Name(), y.Name())
					}
				}
			}
		}
	}
}

func sameDevices(a, b []*stack.Device) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

func names(ds []*stack.Device) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Name())
	}
	return out
}

// TestCompiledBottomSwap: top linear over mid striped over two bottoms;
// bottom1 is swapped to another leaf. Before Update the old maps are no
// longer current; after it top's map lands on the new leaf exactly where
// the walk does, and bottom0's map is the one it had.
func TestCompiledBottomSwap(t *testing.T) {
	leaves := []*stacktest.MemLeaf{
		stacktest.NewMemLeaf("/b/0", "l0", 1024, true),
		stacktest.NewMemLeaf("/b/1", "l1", 1024, true),
		stacktest.NewMemLeaf("/b/2", "l2", 1024, true),
	}
	p := stack.NewPool(stacktest.Opener(leaves...))
	b0 := stacktest.MustCreate(t, p, "bottom0", "0 512 linear /b/0 100")
	b1 := stacktest.MustCreate(t, p, "bottom1", "0 512 linear /b/1 0")
	mid := stacktest.MustCreate(t, p, "mid", "0 1024 striped 2 8 bottom0 0 bottom1 0")
	top := stacktest.MustCreate(t, p, "top", "0 1000 linear mid 24")
	maps := stack.NewCompiledMaps()
	maps.Update(top)
	old0, oldTop := maps.Get(b0), maps.Get(top)
	if st := oldTop.Stats(); st.Stripes != 1 || st.Pieces != 2 {
		t.Errorf("top's map: %+v, want one stripe piece and the sentinel", st)
	}
	// Top sector 0 is mid sector 24: chunk 3, stripe 1 (bottom1), row 1.
	if w, _ := resolveCompiled(oldTop, 0); w.kind != "leaf" || w.dev != "l1" || w.sector != 8 {
		t.Fatalf("before the swap: top sector 0 lands on %v, want l1:8", w)
	}
	if err := p.LoadText(b1, "0 512 linear /b/2 300", stack.SourceInline); err != nil {
		t.Fatal(err)
	}
	if err := p.Resume(b1); err != nil {
		t.Fatal(err)
	}
	if oldTop.Current() || maps.Get(mid).Current() || !old0.Current() {
		t.Errorf("after the swap: top current %v, mid current %v, bottom0 current %v; want false false true",
			oldTop.Current(), maps.Get(mid).Current(), old0.Current())
	}
	rebuilt := maps.Update(b1)
	if fmt.Sprint(names(rebuilt)) != "[bottom1 mid top]" {
		t.Errorf("rebuilt %v, want [bottom1 mid top]", names(rebuilt))
	}
	if maps.Get(b0) != old0 {
		t.Error("bottom0's map was rebuilt")
	}
	if w, _ := resolveCompiled(maps.Get(top), 0); w.kind != "leaf" || w.dev != "l2" || w.sector != 308 {
		t.Errorf("after the swap: top sector 0 lands on %v, want l2:308", w)
	}
	for _, d := range []*stack.Device{b0, b1, mid, top} {
		if err := checkAll(maps.Get(d), d); err != nil {
			t.Error(err)
		}
	}
	// A smaller bottom1: mid and top now map past its end, and say so
	// where the walk does.
	if err := p.LoadText(b1, "0 100 linear /b/2 300", stack.SourceInline); err != nil {
		t.Fatal(err)
	}
	if err := p.Resume(b1); err != nil {
		t.Fatal(err)
	}
	maps.Update(b1)
	for _, d := range []*stack.Device{b0, b1, mid, top} {
		if err := checkAll(maps.Get(d), d); err != nil {
			t.Error(err)
		}
	}
	// Removing top forgets it: bottom1's users no longer reach it.
	if err := p.Remove(top); err != nil {
		t.Fatal(err)
	}
	maps.Forget(top)
	if got := names(maps.Above(b1)); fmt.Sprint(got) != "[bottom1 mid]" {
		t.Errorf("Above(bottom1) after removing top = %v", got)
	}
}
