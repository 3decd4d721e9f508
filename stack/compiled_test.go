package stack_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/stack/stacktest"
)

// TestCompiledRandomStacks: on many random stacks (depth 1 to 4, shared
// leaves, every kind of segment, hooks, an empty leaf and a device with no
// table), the compiled map of every device gives, for every sector and two
// past the end, what the per-level walk gives: the same leaf and sector,
// zeros, or the same failing device and sector; the same levels to ask at
// I/O time and the same EndIO hooks with their sectors; and a run that is
// contiguous and no shorter than the walk's.
func TestCompiledRandomStacks(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 1))
	seen := map[string]int{}
	for iter := range 400 {
		o := randOpts{devices: 1 + rng.IntN(6), maxSegs: 1 + rng.IntN(6), maxLen: 1 + rng.Uint64N(96), maxDepth: 1 + rng.IntN(4), hooks: iter%2 == 1}
		rs, err := newRandStack(rng, o)
		if err != nil {
			t.Fatalf("stack %d: %v", iter, err)
		}
		for _, d := range rs.devs {
			c := stack.Compile(d)
			if err := checkAll(c, d); err != nil {
				t.Fatalf("stack %d: %v\n%s", iter, err, describe(rs))
			}
			countCases(c, d, seen)
		}
	}
	// The stacks reach every case the map has.
	for _, k := range []string{"leaf", "zero", "fail", "hooks", "steps", "stripe pieces", "two lookups", "next", "depth 4"} {
		if seen[k] == 0 {
			t.Errorf("no sector of the random stacks reached case %q (%v)", k, seen)
		}
	}
}

// countCases counts, over every sector of d, the cases its map reaches.
func countCases(c *stack.Compiled, d *stack.Device, seen map[string]int) {
	if c.Stats().Stripes > 0 {
		seen["stripe pieces"]++
	}
	for s := uint64(0); s < d.Size(); s++ {
		w, n := resolveCompiled(c, s)
		seen[w.kind]++
		if w.hooks != "" {
			seen["hooks"]++
		}
		if w.steps != "" {
			seen["steps"]++
		}
		if n > 1 {
			seen["two lookups"]++
		}
		if strings.Contains(w.via, "next") {
			seen["next"]++
		}
	}
	if depthOf(d) == 4 {
		seen["depth 4"]++
	}
}

func depthOf(d *stack.Device) int {
	h := 1
	for _, c := range d.Active().Devs() {
		if md := c.Mapped(); md != nil && md.Active() != nil {
			h = max(h, 1+depthOf(md))
		}
	}
	return h
}

// describe prints a stack's tables, for failure messages.
func describe(rs *randStack) string {
	out := ""
	for _, l := range rs.leaves {
		out += fmt.Sprintf("leaf %s: %d sectors\n", l.Ref(), l.Size())
	}
	for _, d := range rs.devs {
		out += fmt.Sprintf("%s:\n%s\n", d.Name(), d.Active())
	}
	return out
}

// TestCompiledPiecesAndGraph: Graph.Compile builds from the snapshot's
// tables maps that agree with the walk; Pieces lists each map's pieces
// contiguously from 0 to the device's size, each saying what Lookup says
// at its first and last sector.
func TestCompiledPiecesAndGraph(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 3))
	for iter := range 200 {
		o := randOpts{devices: 1 + rng.IntN(6), maxSegs: 1 + rng.IntN(6), maxLen: 1 + rng.Uint64N(96), maxDepth: 1 + rng.IntN(4), hooks: iter%2 == 0}
		rs, err := newRandStack(rng, o)
		if err != nil {
			t.Fatal(err)
		}
		maps := rs.p.Graph().Compile()
		for _, d := range rs.devs {
			c := maps[d]
			if err := checkAll(c, d); err != nil {
				t.Fatalf("stack %d: %v\n%s", iter, err, describe(rs))
			}
			at := uint64(0)
			for pc := range c.Pieces() {
				if pc.Start != at || pc.End <= pc.Start {
					t.Fatalf("stack %d %s: piece [%d, %d) after %d", iter, d.Name(), pc.Start, pc.End, at)
				}
				for _, s := range []uint64{pc.Start, pc.End - 1} {
					if err := pieceSays(c, pc, s); err != nil {
						t.Fatalf("stack %d %s: %v", iter, d.Name(), err)
					}
				}
				at = pc.End
			}
			if at != d.Size() {
				t.Fatalf("stack %d %s: pieces end at %d, the device at %d", iter, d.Name(), at, d.Size())
			}
		}
	}
}

// pieceSays checks that Lookup(s) agrees with piece pc holding s.
func pieceSays(c *stack.Compiled, pc stack.CompiledPiece, s uint64) error {
	p := c.Lookup(s)
	bad := func() error { return fmt.Errorf("sector %d: lookup %+v, piece %+v", s, p, pc) }
	switch pc.Kind {
	case stack.PieceLeaf:
		if p.Kind() != stack.PlaceLeaf || p.Leaf() != pc.Leaf || p.Sector != pc.Sector+(s-pc.Start) || p.Run != pc.End-s {
			return bad()
		}
	case stack.PieceZero:
		if p.Kind() != stack.PlaceZero {
			return bad()
		}
	case stack.PieceStep, stack.PieceAsk:
		if p.Kind() != stack.PlaceStep || p.Map() != pc.Map || p.Sector != pc.Sector+(s-pc.Start) {
			return bad()
		}
	case stack.PieceStripe:
		rel := pc.Offset + (s - pc.Start)
		ch := rel / pc.Chunk
		k := uint64(len(pc.Stripes))
		d := pc.Stripes[ch%k]
		sector := d.Sector + ch/k*pc.Chunk + rel%pc.Chunk
		switch d.Kind {
		case stack.PieceLeaf:
			if p.Kind() != stack.PlaceLeaf || p.Leaf() != d.Leaf || p.Sector != sector {
				return bad()
			}
		case stack.PieceZero:
			if p.Kind() != stack.PlaceZero {
				return bad()
			}
		case stack.PieceNext:
			if p.Kind() != stack.PlaceNext || p.Map() != d.Map || p.Sector != sector {
				return bad()
			}
		default:
			return bad()
		}
	}
	return nil
}

// TestCompiledBigStacks: random stacks of thousands of segments per
// table over leaves of a million sectors, checked at random sectors.
func TestCompiledBigStacks(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 6))
	for iter := range 6 {
		o := randOpts{devices: 3 + rng.IntN(3), maxSegs: 3000, maxLen: 4096, maxDepth: 4, hooks: iter%2 == 1, leafSectors: 1 << 20}
		rs, err := newRandStack(rng, o)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range rs.devs {
			c := stack.Compile(d)
			for range 3000 {
				s := rng.Uint64N(d.Size() + 2)
				if err := checkSector(c, d, s); err != nil {
					t.Fatalf("stack %d: %v", iter, err)
				}
			}
		}
	}
}

// TestCompiledManyChildren: a step continues with the right child's map
// when a table has many mapped children (found through an index then).
func TestCompiledManyChildren(t *testing.T) {
	leaf := stacktest.NewMemLeaf("/many/leaf", "leaf", 4096, true)
	p := stack.NewPool(stacktest.Opener(leaf))
	var lines []string
	for i := range 12 {
		stacktest.MustCreate(t, p, fmt.Sprintf("c%d", i), fmt.Sprintf("0 100 linear /many/leaf %d", i*300))
		typ := "c-mapio"
		if i%3 == 0 {
			typ = "linear"
		}
		lines = append(lines, fmt.Sprintf("%d 50 %s c%d %d", i*50, typ, i, i))
	}
	top := stacktest.MustCreate(t, p, "top", strings.Join(lines, "\n"))
	c := stack.Compile(top)
	if err := checkAll(c, top); err != nil {
		t.Fatal(err)
	}
	for i := range 12 {
		d, _ := p.Device(fmt.Sprintf("c%d", i))
		if got := c.Child(d.Dev()); got == nil || got.Device() != d {
			t.Errorf("Child(c%d) = %v", i, got)
		}
	}
	if c.Child(top.Dev()) != nil {
		t.Error("Child(top) is not nil")
	}
}

// TestCompiledPastTheEnd: sectors at and past the end, up to the last
// one, are a step at the device itself, with a run of at least one.
func TestCompiledPastTheEnd(t *testing.T) {
	p := stack.NewPool(stacktest.Opener(stacktest.NewMemLeaf("/end/a", "a", 100, true)))
	d := stacktest.MustCreate(t, p, "d", "0 100 linear /end/a 0")
	empty, err := p.Create("empty", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*stack.Compiled{stack.Compile(d), stack.Compile(empty)} {
		for _, s := range []uint64{c.Size(), c.Size() + 1, 1 << 62, ^uint64(0) - 1, ^uint64(0)} {
			pl := c.Lookup(s)
			if pl.Kind() != stack.PlaceStep || pl.Map() != c || pl.Sector != s || pl.Run == 0 {
				t.Errorf("%s: Lookup(%d) = %v %v %d+%d", c.Device().Name(), s, pl.Kind(), pl.Map(), pl.Sector, pl.Run)
			}
		}
	}
}
