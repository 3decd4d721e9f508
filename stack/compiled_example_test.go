package stack_test

import (
	"fmt"

	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/stack/stacktest"
)

// The loop the I/O path runs over a compiled map: one lookup per piece,
// following next pieces, doing a step's level by hand (here, a target with
// a MapIO), and collecting the EndIO hooks of each piece.
func ExampleCompiled_Lookup() {
	p := stack.NewPool(stacktest.Opener(
		stacktest.NewMemLeaf("/ex/a", "a", 1024, true),
		stacktest.NewMemLeaf("/ex/b", "b", 1024, true),
	))
	create := func(name, table string) *stack.Device {
		d, err := p.Create(name, "")
		if err == nil {
			err = p.LoadText(d, table, stack.SourceInline)
		}
		if err == nil {
			err = p.Resume(d)
		}
		if err != nil {
			panic(err)
		}
		return d
	}
	create("mid", "0 64 striped 2 8 /ex/a 0 /ex/b 100")
	top := create("top", "0 20 linear mid 4\n20 10 c-mapio /ex/a 500")
	c := stack.Compile(top)
	for s := uint64(0); s < top.Size(); {
		pl := c.Lookup(s)
		switch pl.Kind() {
		case stack.PlaceLeaf:
			fmt.Printf("%d+%d: %s %d", s, pl.Run, pl.Leaf().Name(), pl.Sector)
		case stack.PlaceStep:
			fmt.Printf("%d+%d: ask %s at %d", s, pl.Run, pl.Map().Device().Name(), pl.Sector)
		default:
			fmt.Printf("%d+%d: %v", s, pl.Run, pl.Kind())
		}
		for _, h := range c.Hooks(pl.Hooks()) {
			fmt.Printf(", EndIO at %s %d", h.Device.Name(), c.HookSector(s, h))
		}
		fmt.Println()
		s += pl.Run
	}
	// Output:
	// 0+4: a 4, EndIO at mid 4
	// 4+8: b 100, EndIO at mid 8
	// 12+8: a 8, EndIO at mid 16
	// 20+10: ask top at 20
}
