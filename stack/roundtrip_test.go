package stack_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/daxstack/daxstack/stack"
	"github.com/daxstack/daxstack/stack/stacktest"
)

// TestTableTextRoundTrip checks on random stacks (linear, striped with any
// chunk, error with and without a device, zero; up to 6 levels) that the
// printed table of every device parses and loads back, into the same pool
// and into a new pool rebuilt from printed text alone, as the same text
// and the same mapping of every sector.
func TestTableTextRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 8))
	for iter := 0; iter < 300; iter++ {
		opts := stacktest.Options{Devices: 1 + rng.IntN(6), ErrorTarget: true, ZeroTarget: true, Sparse: true, LeafSectors: 256}
		st, err := stacktest.Random(rng, opts)
		if err != nil {
			t.Fatal(err)
		}
		// Rebuild the stack in a fresh pool over the same leaves from the
		// printed tables, in creation order.
		p2 := stack.NewPool(stacktest.Opener(st.Leaves...))
		for i, d := range st.Devices {
			printed := d.Active().String()
			if got := reload(t, st.Pool, fmt.Sprintf("copy%d", i), printed); got.Active().String() != printed {
				t.Fatalf("iter %d: %s reloaded in place as\n%s\nprinted\n%s", iter, d.Name(), got.Active(), printed)
			} else {
				sameMapping(t, st.Pool, d, got)
			}
			d2 := reload(t, p2, d.Name(), printed)
			if d2.Active().String() != printed {
				t.Fatalf("iter %d: %s rebuilt as\n%s\nprinted\n%s\nloaded from\n%s", iter, d.Name(), d2.Active(), printed, st.Tables[i])
			}
		}
	}
}

// reload creates name in p and loads text into it.
func reload(t *testing.T, p *stack.Pool, name, text string) *stack.Device {
	t.Helper()
	d, err := p.Create(name, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.LoadText(d, text, stack.SourceInline); err != nil {
		t.Fatalf("reload of\n%s\n%v", text, err)
	}
	if err := p.Resume(d); err != nil {
		t.Fatal(err)
	}
	return d
}

// sameMapping checks that every sector of a and b ends on the same leaf
// sector, or fails in both.
func sameMapping(t *testing.T, p *stack.Pool, a, b *stack.Device) {
	t.Helper()
	if a.Size() != b.Size() {
		t.Fatalf("%s has %d sectors, %s %d", a.Name(), a.Size(), b.Name(), b.Size())
	}
	for s := uint64(0); s < a.Size(); s++ {
		sa, err1 := p.Trace(a, s)
		sb, err2 := p.Trace(b, s)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		la, lb := sa[len(sa)-1], sb[len(sb)-1]
		if (la.Err == nil) != (lb.Err == nil) || la.Child != lb.Child || la.CSector != lb.CSector || len(sa) != len(sb) {
			t.Fatalf("sector %d: %s ends at %v:%d, %s at %v:%d", s, a.Name(), la.Child, la.CSector, b.Name(), lb.Child, lb.CSector)
		}
	}
}

// TestTableTextRoundTripNames checks the names a printed table must escape
// or qualify: whitespace and backslashes in leaf paths and device names,
// and a device named like a device number.
func TestTableTextRoundTripNames(t *testing.T) {
	tests := []struct {
		name    string
		kid     string // a mapped device over the leaf that the table may use
		leafRef string
		table   string // loaded into "top"
		printed string
	}{
		{"space in the leaf path", "kid", "/leaves/my leaf", `0 8 linear /leaves/my\ leaf 2`, `0 8 linear /leaves/my\ leaf 2`},
		{"backslash in the leaf path", "kid", `/leaves/a\b`, `0 8 linear /leaves/a\\b 2`, `0 8 linear /leaves/a\\b 2`},
		// (Control characters, tabs included, are refused in names.)
		{"space in a device name", "kid x", "/l", `0 8 linear kid\ x 0`, `0 8 linear kid\ x 0`},
		{"device named like a number", "0:7", "/l", "0 8 linear /dev/mapper/0:7 0", "0 8 linear /dev/mapper/0:7 0"},
		{"stripes", "kid", "/leaves/my leaf", `0 16 striped 2 4 /leaves/my\ leaf 0 kid 0`, `0 16 striped 2 4 /leaves/my\ leaf 0 kid 0`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			leaf := stacktest.NewMemLeaf(tc.leafRef, "leaf", 64, true)
			p := stack.NewPool(stacktest.Opener(leaf))
			reload(t, p, tc.kid, "0 32 linear "+stack.EscapeArg(tc.leafRef)+" 0")
			top := reload(t, p, "top", tc.table)
			if got := top.Active().String(); got != tc.printed {
				t.Fatalf("printed %q, want %q", got, tc.printed)
			}
			again := reload(t, p, "again", top.Active().String())
			if again.Active().String() != tc.printed {
				t.Fatalf("reloaded as %q", again.Active().String())
			}
			sameMapping(t, p, top, again)
		})
	}
}
